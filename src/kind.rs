//! The shared vocabulary of failures and retries: [`FailureKind`] (what went wrong, reduced
//! to the classes the retry policy and callers care about) and [`RetryRecord`] (one retry the
//! client made). Every layer names failures with these; this module imports nothing of ours.

use std::fmt;

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
    /// The request was sent again and the answer started over (a chat caller first gets
    /// a `Restart` event and discards what it showed).
    Restarted,
    /// The stream was continued from this byte offset of the response body (llama.cpp's
    /// stream replay): nothing was generated twice, nothing shown is discarded.
    Resumed {
        /// Bytes of the (de-chunked) event stream already read.
        offset: u64,
    },
    /// An event stream was reopened, sending this `Last-Event-ID` (none if no event had an
    /// id yet).
    Reconnected {
        /// The last event ID sent with the reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_event_id: Option<String>,
    },
}

/// One retry the client made: which attempt failed, why, how long it waited, and how it
/// carried on.
///
/// As JSON (the CLI's `retries` entries):
/// `{"attempt":1,"reason":"unexpected_eof","delay_ms":90,"action":"resumed","offset":5812}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
            let record = RetryRecord {
                attempt: 1,
                reason: FailureKind::UnexpectedEof,
                delay_ms: 262,
                action,
            };
            let json = serde_json::to_string(&record).expect("serializable");
            assert_eq!(json, want);
            assert_eq!(
                serde_json::from_str::<RetryRecord>(&json).expect("round trip"),
                record
            );
        }
    }
}
