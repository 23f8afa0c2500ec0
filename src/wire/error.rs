//! The one error a stream protocol (chat completions, the Responses API) fails with, whatever
//! the protocol: an error event from the server, a malformed event, an early end, truncated
//! tool-call arguments, a size bound.

use super::api_error::{ApiError, truncate_chars};
use crate::retry::FailureKind;

/// Why a streamed response could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The server reported an error (`event: error`, an `error` object in the stream, or an
    /// error body). Retried only when it says the failure was behind the server — a
    /// gateway's upstream connection broke or timed out, or the server is overloaded —
    /// which [`kind`](Self::kind) then calls [`FailureKind::UpstreamBroke`].
    #[error("api error: {0}")]
    Api(Box<ApiError>),
    /// A data line was not a chat chunk (or a body was not a chat completion). The server or a
    /// proxy is broken; retrying may help.
    #[error("malformed chunk: {reason} (data: {snippet})")]
    MalformedChunk {
        /// The JSON parser's message.
        reason: String,
        /// The first [`StreamError::SNIPPET_CHARS`] characters of the data.
        snippet: String,
    },
    /// The stream ended before `[DONE]` or before every choice finished. Retry; or, when
    /// `finish_seen` and only the trailer was lost, decide whether the EOF was clean.
    #[error("stream ended early after {received_events} events (finish seen: {finish_seen})")]
    IncompleteStream {
        /// Chunks (and `[DONE]`) decoded so far.
        received_events: u64,
        /// Every choice seen had reported a finish reason.
        finish_seen: bool,
    },
    /// The server answered `200` with an event stream that ended without a single event
    /// (llama-cpp-python does so for a prompt longer than its context). Retried once; a
    /// second time for the same request it is reported as the server's fault.
    #[error("the server sent an empty event stream (no event at all)")]
    EmptyStream,
    /// A tool call's arguments are not valid JSON although the model did not stop for
    /// `length`: the stream was cut. Retry.
    #[error("tool call {index} ({name}) of choice {choice} has truncated arguments")]
    TruncatedToolCallArguments {
        /// Choice index.
        choice: u32,
        /// Tool-call slot.
        index: u32,
        /// Call id.
        id: String,
        /// Function name.
        name: String,
    },
    /// A tool call's arguments were cut by the token limit (`finish_reason: length`). Raise
    /// `max_tokens` before retrying.
    #[error("tool call {index} ({name}) of choice {choice} was cut by the token limit")]
    ToolCallArgumentsCutByLength {
        /// Choice index.
        choice: u32,
        /// Tool-call slot.
        index: u32,
        /// Function name.
        name: String,
    },
    /// The response has more choices than [`ChatLimits::max_choices`](crate::chat::ChatLimits::max_choices). Lower `n` or raise the limit.
    #[error("more than {limit} choices")]
    TooManyChoices {
        /// The limit.
        limit: u32,
    },
    /// A choice has more tool calls than [`ChatLimits::max_tool_calls`](crate::chat::ChatLimits::max_tool_calls). Raise the limit or
    /// disable `parallel_tool_calls`.
    #[error("more than {limit} tool calls in one choice")]
    TooManyToolCalls {
        /// The limit.
        limit: u32,
    },
    /// A Responses stream has more output items than
    /// [`ResponseLimits::max_output_items`](crate::responses::ResponseLimits::max_output_items). Raise
    /// the limit.
    #[error("more than {limit} output items")]
    TooManyOutputItems {
        /// The limit.
        limit: usize,
    },
    /// The aggregated text exceeds [`ChatLimits::max_response_bytes`](crate::chat::ChatLimits::max_response_bytes). Lower `max_tokens` or raise
    /// the limit.
    #[error("response larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: usize,
    },
}

impl StreamError {
    /// Length of [`StreamError::MalformedChunk`]'s snippet, in characters.
    pub const SNIPPET_CHARS: usize = 120;

    /// The normalized failure class, for the retry policy.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Api(api) => {
                let facts = crate::retry::ApiFacts {
                    message: &api.message,
                    kind: api.kind.as_deref(),
                    code: api.code.as_deref(),
                };
                if crate::retry::api_error_is_transient(&facts) {
                    FailureKind::UpstreamBroke
                } else {
                    FailureKind::ApiError
                }
            }
            Self::EmptyStream => FailureKind::EmptyStream,
            Self::MalformedChunk { .. } => FailureKind::MalformedChunk,
            Self::IncompleteStream { .. } => FailureKind::IncompleteStream,
            Self::TruncatedToolCallArguments { .. } => FailureKind::TruncatedToolCallArguments,
            Self::ToolCallArgumentsCutByLength { .. } => FailureKind::ToolCallArgumentsCutByLength,
            Self::TooManyChoices { .. }
            | Self::TooManyToolCalls { .. }
            | Self::TooManyOutputItems { .. }
            | Self::ResponseTooLarge { .. } => FailureKind::LimitExceeded,
        }
    }

    /// The JSON parser's message is cut too: it quotes the offending value (`invalid type:
    /// string "…"`), which can be megabytes.
    pub(crate) fn malformed(reason: impl ToString, data: &str) -> Self {
        Self::MalformedChunk {
            reason: truncate_chars(&reason.to_string(), 2 * Self::SNIPPET_CHARS),
            snippet: truncate_chars(data, Self::SNIPPET_CHARS),
        }
    }
}
