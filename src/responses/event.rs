//! What a Responses stream hands its caller, event by event: the deltas of the output items
//! (borrowed from the aggregated response), the items' starts and ends, the events this crate
//! does not interpret (passed through), and the recoveries.

use crate::retry::FailureKind;

/// The type of an output item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemKind {
    /// An assistant message.
    Message,
    /// Reasoning.
    Reasoning,
    /// A function call.
    FunctionCall,
    /// Another item type.
    Other,
}

impl ItemKind {
    pub(crate) fn of(kind: &str) -> Self {
        match kind {
            "message" => Self::Message,
            "reasoning" => Self::Reasoning,
            "function_call" => Self::FunctionCall,
            _ => Self::Other,
        }
    }
}

/// One event of a Responses stream, as [`ResponsesStream::next_event`](crate::ResponsesStream::next_event)
/// hands it out. Text borrows from the aggregated response: no copy per delta. `index` is
/// the item's position in [`ResponseObject::output`](crate::ResponseObject::output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseEvent<'a> {
    /// `response.created`: the response's id and model.
    Created {
        /// `resp_...`.
        id: &'a str,
        /// The model (may be empty).
        model: &'a str,
    },
    /// An output item started.
    ItemAdded {
        /// Its position.
        index: usize,
        /// Its type.
        kind: ItemKind,
        /// Its id (may be empty).
        id: &'a str,
    },
    /// Message text.
    Text {
        /// The message's position.
        index: usize,
        /// The new text.
        text: &'a str,
    },
    /// Reasoning text.
    Reasoning {
        /// The item's position.
        index: usize,
        /// The new text.
        text: &'a str,
    },
    /// A piece of a function call's arguments.
    Arguments {
        /// The call's position.
        index: usize,
        /// Its `call_id`.
        call_id: &'a str,
        /// The function.
        name: &'a str,
        /// The new piece.
        delta: &'a str,
    },
    /// An output item is complete (a function call's arguments are valid JSON).
    ItemDone {
        /// Its position.
        index: usize,
        /// Its type.
        kind: ItemKind,
    },
    /// An event this crate does not interpret (`response.output_text.annotation.added`, a
    /// server's own), passed through as it came.
    Other {
        /// Its `type`.
        event_type: &'a str,
        /// Its data (JSON).
        data: &'a str,
    },
    /// The stream broke after output was handed out, and the response starts over: discard
    /// what this call showed so far.
    Restart {
        /// The attempt that starts (2 = the first retry).
        attempt: u32,
        /// Why the previous attempt failed.
        reason: FailureKind,
    },
    /// The stream broke and was resumed where it broke (llama.cpp's replay, verified): the
    /// deltas simply go on.
    Resumed {
        /// The attempt that resumed.
        attempt: u32,
        /// The byte offset of the stream it resumed from.
        offset: u64,
    },
}

impl ResponseEvent<'_> {
    /// Whether this event carries output (text, reasoning, arguments).
    pub fn is_output(&self) -> bool {
        matches!(
            self,
            Self::Text { .. } | Self::Reasoning { .. } | Self::Arguments { .. }
        )
    }

    /// An owned copy, for an iterator or another thread.
    pub fn to_owned_event(&self) -> OwnedResponseEvent {
        match *self {
            Self::Created { id, model } => OwnedResponseEvent::Created {
                id: id.to_owned(),
                model: model.to_owned(),
            },
            Self::ItemAdded { index, kind, id } => OwnedResponseEvent::ItemAdded {
                index,
                kind,
                id: id.to_owned(),
            },
            Self::Text { index, text } => OwnedResponseEvent::Text {
                index,
                text: text.to_owned(),
            },
            Self::Reasoning { index, text } => OwnedResponseEvent::Reasoning {
                index,
                text: text.to_owned(),
            },
            Self::Arguments {
                index,
                call_id,
                name,
                delta,
            } => OwnedResponseEvent::Arguments {
                index,
                call_id: call_id.to_owned(),
                name: name.to_owned(),
                delta: delta.to_owned(),
            },
            Self::ItemDone { index, kind } => OwnedResponseEvent::ItemDone { index, kind },
            Self::Other { event_type, data } => OwnedResponseEvent::Other {
                event_type: event_type.to_owned(),
                data: data.to_owned(),
            },
            Self::Restart { attempt, reason } => OwnedResponseEvent::Restart { attempt, reason },
            Self::Resumed { attempt, offset } => OwnedResponseEvent::Resumed { attempt, offset },
        }
    }
}

/// [`ResponseEvent`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[allow(missing_docs)] // The fields are those of `ResponseEvent`.
pub enum OwnedResponseEvent {
    Created {
        id: String,
        model: String,
    },
    ItemAdded {
        index: usize,
        kind: ItemKind,
        id: String,
    },
    Text {
        index: usize,
        text: String,
    },
    Reasoning {
        index: usize,
        text: String,
    },
    Arguments {
        index: usize,
        call_id: String,
        name: String,
        delta: String,
    },
    ItemDone {
        index: usize,
        kind: ItemKind,
    },
    Other {
        event_type: String,
        data: String,
    },
    Restart {
        attempt: u32,
        reason: FailureKind,
    },
    Resumed {
        attempt: u32,
        offset: u64,
    },
}
