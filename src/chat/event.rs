//! What a streaming caller sees: [`StreamEvent`] borrows its text, [`OwnedStreamEvent`]
//! owns it (for channels and iterators).

use super::response::Usage;
use crate::retry::FailureKind;

/// One piece of a streamed response, borrowing its text from the chunk being decoded.
///
/// `choice` is the choice index (0 unless `n > 1`). Text variants are never empty.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent<'a> {
    /// The choice's role, delivered once per choice.
    Role {
        /// Choice index.
        choice: u32,
        /// Usually `"assistant"`.
        role: &'a str,
    },
    /// Answer text to append.
    Content {
        /// Choice index.
        choice: u32,
        /// The new text.
        text: &'a str,
    },
    /// Reasoning text to append.
    Reasoning {
        /// Choice index.
        choice: u32,
        /// The new text.
        text: &'a str,
    },
    /// Refusal text to append.
    Refusal {
        /// Choice index.
        choice: u32,
        /// The new text.
        text: &'a str,
    },
    /// A fragment of a tool call.
    ToolCall {
        /// Choice index.
        choice: u32,
        /// The call's slot in the final `tool_calls` array (0, 1, ... after normalizing
        /// missing, -1 and sparse server indices).
        index: u32,
        /// The call id, when this fragment carries it.
        id: Option<&'a str>,
        /// The function name, when this fragment carries it.
        name: Option<&'a str>,
        /// The next piece of the arguments JSON text (may be empty).
        arguments: &'a str,
    },
    /// The choice finished, with `"stop"`, `"length"`, `"tool_calls"`, ...
    Finish {
        /// Choice index.
        choice: u32,
        /// The finish reason.
        reason: &'a str,
    },
    /// Token counts arrived.
    Usage(&'a Usage),
    /// The answer starts over and differs from what was shown: discard everything shown so
    /// far; the answer follows again from its start. Only a restarted answer that says
    /// something else than the one shown causes this (one that repeats it is
    /// [`Continued`](Self::Continued)). Emitted by the retry layer, never by the
    /// [`Accumulator`](crate::chat::Accumulator).
    Restart {
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// Why the previous attempt failed.
        reason: FailureKind,
    },
    /// The connection broke and the stream was picked up where it broke (llama.cpp's stream
    /// replay): keep everything shown so far; the next deltas continue it, nothing is
    /// repeated. Emitted by the retry layer.
    Resumed {
        /// The attempt that resumed (2 for the first retry).
        attempt: u32,
        /// Bytes of the event stream already read before the break.
        offset: u64,
    },
    /// The stream broke and the answer goes on from what was shown: keep everything; the
    /// next deltas continue it, nothing is repeated. Either the server continued the
    /// delivered text (`regenerated: false`), or a restarted answer repeated all of it and
    /// the repeat was swallowed (`regenerated: true`). Emitted by the retry layer.
    Continued {
        /// The attempt that continued (2 for the first retry).
        attempt: u32,
        /// The server generated the shown part again (a restart).
        regenerated: bool,
    },
}

/// A [`StreamEvent`] that owns its text, for sending over a channel.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OwnedStreamEvent {
    /// See [`StreamEvent::Role`].
    Role {
        /// Choice index.
        choice: u32,
        /// Usually `"assistant"`.
        role: String,
    },
    /// See [`StreamEvent::Content`].
    Content {
        /// Choice index.
        choice: u32,
        /// The new text.
        text: String,
    },
    /// See [`StreamEvent::Reasoning`].
    Reasoning {
        /// Choice index.
        choice: u32,
        /// The new text.
        text: String,
    },
    /// See [`StreamEvent::Refusal`].
    Refusal {
        /// Choice index.
        choice: u32,
        /// The new text.
        text: String,
    },
    /// See [`StreamEvent::ToolCall`].
    ToolCall {
        /// Choice index.
        choice: u32,
        /// Normalized slot.
        index: u32,
        /// The call id, when this fragment carries it.
        id: Option<String>,
        /// The function name, when this fragment carries it.
        name: Option<String>,
        /// The next piece of the arguments JSON text.
        arguments: String,
    },
    /// See [`StreamEvent::Finish`].
    Finish {
        /// Choice index.
        choice: u32,
        /// The finish reason.
        reason: String,
    },
    /// See [`StreamEvent::Usage`].
    Usage(Usage),
    /// See [`StreamEvent::Restart`].
    Restart {
        /// The attempt about to start.
        attempt: u32,
        /// Why the previous attempt failed.
        reason: FailureKind,
    },
    /// See [`StreamEvent::Resumed`].
    Resumed {
        /// The attempt that resumed.
        attempt: u32,
        /// Bytes of the event stream already read before the break.
        offset: u64,
    },
    /// See [`StreamEvent::Continued`].
    Continued {
        /// The attempt that continued.
        attempt: u32,
        /// The server generated the shown part again.
        regenerated: bool,
    },
}

impl StreamEvent<'_> {
    /// Copy the borrowed text into an [`OwnedStreamEvent`].
    pub fn to_owned_event(&self) -> OwnedStreamEvent {
        match *self {
            Self::Role { choice, role } => OwnedStreamEvent::Role {
                choice,
                role: role.to_owned(),
            },
            Self::Content { choice, text } => OwnedStreamEvent::Content {
                choice,
                text: text.to_owned(),
            },
            Self::Reasoning { choice, text } => OwnedStreamEvent::Reasoning {
                choice,
                text: text.to_owned(),
            },
            Self::Refusal { choice, text } => OwnedStreamEvent::Refusal {
                choice,
                text: text.to_owned(),
            },
            Self::ToolCall {
                choice,
                index,
                id,
                name,
                arguments,
            } => OwnedStreamEvent::ToolCall {
                choice,
                index,
                id: id.map(str::to_owned),
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            },
            Self::Finish { choice, reason } => OwnedStreamEvent::Finish {
                choice,
                reason: reason.to_owned(),
            },
            Self::Usage(u) => OwnedStreamEvent::Usage(u.clone()),
            Self::Restart { attempt, reason } => OwnedStreamEvent::Restart { attempt, reason },
            Self::Resumed { attempt, offset } => OwnedStreamEvent::Resumed { attempt, offset },
            Self::Continued {
                attempt,
                regenerated,
            } => OwnedStreamEvent::Continued {
                attempt,
                regenerated,
            },
        }
    }

    /// Whether this is model output (content, reasoning, refusal or a tool-call fragment), as
    /// opposed to bookkeeping (role, finish, usage, restart, resume).
    pub fn is_output(&self) -> bool {
        matches!(
            self,
            Self::Content { .. }
                | Self::Reasoning { .. }
                | Self::Refusal { .. }
                | Self::ToolCall { .. }
        )
    }

    /// The choice index, for the per-choice variants.
    pub fn choice(&self) -> Option<u32> {
        match *self {
            Self::Role { choice, .. }
            | Self::Content { choice, .. }
            | Self::Reasoning { choice, .. }
            | Self::Refusal { choice, .. }
            | Self::ToolCall { choice, .. }
            | Self::Finish { choice, .. } => Some(choice),
            Self::Usage(_)
            | Self::Restart { .. }
            | Self::Resumed { .. }
            | Self::Continued { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_owned_event_copies_every_variant() {
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            total_tokens: 7,
            ..Usage::default()
        };
        let cases: Vec<(StreamEvent<'_>, OwnedStreamEvent, Option<u32>)> = vec![
            (
                StreamEvent::Role {
                    choice: 0,
                    role: "assistant",
                },
                OwnedStreamEvent::Role {
                    choice: 0,
                    role: "assistant".into(),
                },
                Some(0),
            ),
            (
                StreamEvent::Content {
                    choice: 1,
                    text: "hi",
                },
                OwnedStreamEvent::Content {
                    choice: 1,
                    text: "hi".into(),
                },
                Some(1),
            ),
            (
                StreamEvent::Reasoning {
                    choice: 0,
                    text: "hmm",
                },
                OwnedStreamEvent::Reasoning {
                    choice: 0,
                    text: "hmm".into(),
                },
                Some(0),
            ),
            (
                StreamEvent::Refusal {
                    choice: 0,
                    text: "no",
                },
                OwnedStreamEvent::Refusal {
                    choice: 0,
                    text: "no".into(),
                },
                Some(0),
            ),
            (
                StreamEvent::ToolCall {
                    choice: 2,
                    index: 1,
                    id: Some("call_1"),
                    name: None,
                    arguments: "{",
                },
                OwnedStreamEvent::ToolCall {
                    choice: 2,
                    index: 1,
                    id: Some("call_1".into()),
                    name: None,
                    arguments: "{".into(),
                },
                Some(2),
            ),
            (
                StreamEvent::Finish {
                    choice: 0,
                    reason: "stop",
                },
                OwnedStreamEvent::Finish {
                    choice: 0,
                    reason: "stop".into(),
                },
                Some(0),
            ),
            (
                StreamEvent::Usage(&usage),
                OwnedStreamEvent::Usage(usage.clone()),
                None,
            ),
            (
                StreamEvent::Restart {
                    attempt: 2,
                    reason: FailureKind::UnexpectedEof,
                },
                OwnedStreamEvent::Restart {
                    attempt: 2,
                    reason: FailureKind::UnexpectedEof,
                },
                None,
            ),
            (
                StreamEvent::Resumed {
                    attempt: 2,
                    offset: 5812,
                },
                OwnedStreamEvent::Resumed {
                    attempt: 2,
                    offset: 5812,
                },
                None,
            ),
        ];
        for (ev, owned, choice) in cases {
            assert_eq!(ev.to_owned_event(), owned, "{ev:?}");
            assert_eq!(ev.choice(), choice, "{ev:?}");
        }
    }
}
