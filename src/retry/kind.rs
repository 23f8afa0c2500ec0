//! The shared vocabulary of failures and retries: [`FailureKind`] (what went wrong, reduced
//! to the classes the retry policy and callers care about) and [`RetryRecord`] (one retry the
//! client made). Every layer names failures with these; this module imports nothing of ours.

use std::{fmt, io};

/// Declares [`FailureKind`] from one table: variant, stable name, doc. The names appear in
/// logs, in `ChatResponse::retries` and in the CLI's JSON, so they are defined here once.
macro_rules! failure_kinds {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// What went wrong, reduced to the few classes the retry policy and callers care about.
        ///
        /// `Display` gives a short lowercase phrase (`unexpected eof`); [`FailureKind::as_str`]
        /// gives the stable snake_case name (`unexpected_eof`) used in logs and JSON.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum FailureKind {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl FailureKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stable snake_case name (`"unexpected_eof"`, `"connection_reset"`, ...).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
    };
}

failure_kinds! {
    /// The connection ended before the response was complete (FIN, or an RST that the HTTP
    /// layer reports as an end of input).
    UnexpectedEof => "unexpected_eof",
    /// The peer reset the connection.
    ConnectionReset => "connection_reset",
    /// The connection was aborted locally.
    ConnectionAborted => "connection_aborted",
    /// Writing the request failed because the peer had closed.
    BrokenPipe => "broken_pipe",
    /// Nothing was listening (a local server being restarted).
    ConnectionRefused => "connection_refused",
    /// Connecting took longer than the connect timeout.
    ConnectTimeout => "connect_timeout",
    /// No response byte (headers, then the first body byte) arrived within the first-byte
    /// timeout.
    FirstByteTimeout => "first_byte_timeout",
    /// No body bytes arrived within the idle timeout.
    IdleTimeout => "idle_timeout",
    /// The total deadline for the call passed.
    DeadlineExceeded => "deadline_exceeded",
    /// Some other timeout.
    TimedOut => "timed_out",
    /// The SSE stream ended before `[DONE]` or before every choice finished.
    IncompleteStream => "incomplete_stream",
    /// Tool-call arguments were not valid JSON at the end of a stream that did not stop for
    /// `length`.
    TruncatedToolCallArguments => "truncated_tool_call_arguments",
    /// Tool-call arguments were cut because the model hit its token limit
    /// (`finish_reason: length`).
    ToolCallArgumentsCutByLength => "tool_call_arguments_cut_by_length",
    /// The server answered with a non-success HTTP status.
    HttpStatus => "http_status",
    /// The server sent an error object inside the stream.
    ApiError => "api_error",
    /// A gateway's error event saying its own connection to the model server failed
    /// mid-stream (LiteLLM's `APIConnectionError`, OpenRouter's `Provider disconnected`, a
    /// 502/503/504 or a timeout inside the stream): a break, like a cut connection.
    UpstreamBroke => "upstream_broke",
    /// A `200` event stream that ended without a single event: a server bug (llama-cpp-python
    /// answers a context overflow that way), not a network fault.
    EmptyStream => "empty_stream",
    /// A complete SSE line carried data that is not a valid chunk.
    MalformedChunk => "malformed_chunk",
    /// The server broke HTTP itself: a malformed status line, headers or chunk framing.
    Protocol => "protocol",
    /// The server sent a line, event, header or body larger than the configured limits.
    LimitExceeded => "limit_exceeded",
    /// The 200 response had a content type (or content encoding) we cannot read.
    UnexpectedContentType => "unexpected_content_type",
    /// The host name could not be resolved.
    Dns => "dns",
    /// TLS handshake or certificate failure.
    Tls => "tls",
    /// The call was cancelled through its cancel handle.
    Cancelled => "cancelled",
    /// The client was misconfigured (bad URL, bad header, ...).
    InvalidConfig => "invalid_config",
    /// Any other I/O or protocol failure.
    Other => "other",
}

impl FailureKind {
    /// Whether this is a connection that broke under an exchange: cut, reset, aborted, or
    /// gone while writing.
    pub fn is_broken_connection(self) -> bool {
        matches!(
            self,
            Self::UnexpectedEof
                | Self::ConnectionReset
                | Self::ConnectionAborted
                | Self::BrokenPipe
        )
    }

    /// Whether a stream that failed this way broke *under* its exchange, so the rest of the
    /// answer may still be had (a replay, a continuation): a broken connection, a stall, an
    /// early end, or an error event in which a gateway says its upstream connection failed.
    pub fn is_break(self) -> bool {
        self.is_broken_connection()
            || matches!(
                self,
                Self::FirstByteTimeout
                    | Self::IdleTimeout
                    | Self::TimedOut
                    | Self::IncompleteStream
                    | Self::UpstreamBroke
            )
    }

    /// The kind an I/O error stands for. `WouldBlock` is what a socket read timeout raises on
    /// some platforms, so it counts as a timeout.
    pub(crate) fn from_io_kind(kind: io::ErrorKind) -> Self {
        match kind {
            io::ErrorKind::UnexpectedEof => Self::UnexpectedEof,
            io::ErrorKind::ConnectionReset => Self::ConnectionReset,
            io::ErrorKind::ConnectionAborted | io::ErrorKind::NotConnected => {
                Self::ConnectionAborted
            }
            io::ErrorKind::BrokenPipe => Self::BrokenPipe,
            io::ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Self::TimedOut,
            _ => Self::Other,
        }
    }

    /// The kind with this [`as_str`](Self::as_str) name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.as_str().split('_').enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

impl serde::Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FailureKind {
    /// Unknown names (from a newer version) read as [`FailureKind::Other`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Ok(Self::from_name(&name).unwrap_or(Self::Other))
    }
}

/// How the client carried on after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryAction {
    /// The request was sent again and the answer started over. What the new answer repeats
    /// of the delivered one is swallowed; only an answer that differs reaches a chat caller,
    /// after a `Restart` event.
    Restarted,
    /// The stream was continued from this byte offset of the response body (llama.cpp's
    /// stream replay, verified on an overlap): nothing was generated twice, nothing shown is
    /// discarded.
    Resumed {
        /// Bytes of the (de-chunked) event stream already read.
        offset: u64,
    },
    /// The request was sent again with the delivered text as a final assistant message,
    /// which the server continued: only the rest was generated, nothing shown is discarded.
    Continued,
    /// An event stream was reopened, sending this `Last-Event-ID` (none if no event had an
    /// id yet).
    Reconnected {
        /// The last event ID sent with the reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_event_id: Option<String>,
    },
}

impl RetryAction {
    /// A short lowercase name: `restarted`, `resumed`, `continued`, `reconnected`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Restarted => "restarted",
            Self::Resumed { .. } => "resumed",
            Self::Continued => "continued",
            Self::Reconnected { .. } => "reconnected",
        }
    }
}

/// One retry the client made: which attempt failed, why, how long it waited, and how it
/// carried on. One break is one record, whatever it took to recover from it.
///
/// As JSON (the CLI's `retries` entries):
/// `{"attempt":1,"reason":"unexpected_eof","delay_ms":90,"action":"resumed","offset":5812,"at_byte":6020}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RetryRecord {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Why it failed (`"unexpected_eof"`, `"http_status"`, ...).
    pub reason: FailureKind,
    /// The wait before the next attempt, in milliseconds.
    pub delay_ms: u64,
    /// What the next attempt did.
    #[serde(flatten)]
    pub action: RetryAction,
    /// Bytes of the event stream the failed attempt had read when it broke (0: it broke
    /// before any).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_byte: u64,
    /// Why a better way of carrying on was passed over, in words (`the server cannot resume
    /// (404)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_over: Option<String>,
    /// Tokens the server reported generating in the attempt this retry led to
    /// (`usage.completion_tokens`), when it reported usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RetryRecord {
    /// A record of attempt `attempt` failing with `reason`, then `action` after `delay_ms`.
    pub fn new(attempt: u32, reason: FailureKind, delay_ms: u64, action: RetryAction) -> Self {
        Self {
            attempt,
            reason,
            delay_ms,
            action,
            at_byte: 0,
            passed_over: None,
            tokens: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_unique_name_that_round_trips() {
        let mut names = std::collections::HashSet::new();
        for &kind in FailureKind::ALL {
            assert!(names.insert(kind.as_str()), "{kind:?}");
            assert_eq!(FailureKind::from_name(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).expect("serializable");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(
                serde_json::from_str::<FailureKind>(&json).expect("valid"),
                kind
            );
        }
        assert_eq!(
            serde_json::from_str::<FailureKind>("\"from_the_future\"").expect("lenient"),
            FailureKind::Other
        );
        assert_eq!(FailureKind::UnexpectedEof.to_string(), "unexpected eof");
    }

    #[test]
    fn retry_record_json_shapes() {
        let table = [
            (
                RetryAction::Restarted,
                r#"{"attempt":1,"reason":"unexpected_eof","delay_ms":262,"action":"restarted"}"#,
            ),
            (
                RetryAction::Resumed { offset: 5812 },
                r#"{"attempt":1,"reason":"unexpected_eof","delay_ms":262,"action":"resumed","offset":5812}"#,
            ),
            (
                RetryAction::Continued,
                r#"{"attempt":1,"reason":"unexpected_eof","delay_ms":262,"action":"continued"}"#,
            ),
            (
                RetryAction::Reconnected {
                    last_event_id: Some("41".into()),
                },
                r#"{"attempt":1,"reason":"unexpected_eof","delay_ms":262,"action":"reconnected","last_event_id":"41"}"#,
            ),
            (
                RetryAction::Reconnected {
                    last_event_id: None,
                },
                r#"{"attempt":1,"reason":"unexpected_eof","delay_ms":262,"action":"reconnected"}"#,
            ),
        ];
        for (action, want) in table {
            let record = RetryRecord::new(1, FailureKind::UnexpectedEof, 262, action);
            let json = serde_json::to_string(&record).expect("serializable");
            assert_eq!(json, want);
            assert_eq!(
                serde_json::from_str::<RetryRecord>(&json).expect("round trip"),
                record
            );
        }
    }
}
