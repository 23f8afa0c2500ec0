//! The crate's error type and the normalized failure kind the retry classifier matches on.

use crate::chat::{ApiError, ChatError};
use crate::retry::RetryRecord;
use crate::sse::SseError;
use std::time::{Duration, SystemTime};
use std::{fmt, io};

/// What went wrong, reduced to the few classes the retry policy and callers care about.
///
/// `Display` gives a short lowercase phrase; [`FailureKind::as_str`] gives the stable
/// snake_case name used in logs and in the CLI's `"retries"` JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The connection ended before the response was complete (FIN, or an RST that ureq reports as EOF).
    UnexpectedEof,
    /// The peer reset the connection.
    ConnectionReset,
    /// The connection was aborted locally.
    ConnectionAborted,
    /// Writing the request failed because the peer had closed.
    BrokenPipe,
    /// Nothing was listening (a local server being restarted).
    ConnectionRefused,
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// No response byte (headers, then the first body byte) arrived within the first-byte
    /// timeout.
    FirstByteTimeout,
    /// No body bytes arrived within the idle timeout.
    IdleTimeout,
    /// The total deadline for the call passed.
    DeadlineExceeded,
    /// Some other timeout.
    TimedOut,
    /// The SSE stream ended before `[DONE]` or before every choice finished.
    IncompleteStream,
    /// Tool-call arguments were not valid JSON at the end of a stream that did not stop for `length`.
    TruncatedToolCallArguments,
    /// Tool-call arguments were cut because the model hit its token limit (`finish_reason: length`).
    ToolCallArgumentsCutByLength,
    /// The server answered with a non-success HTTP status.
    HttpStatus,
    /// The server sent an error object inside the stream.
    ApiError,
    /// A complete SSE line carried data that is not a valid chunk.
    MalformedChunk,
    /// The server sent a line or event larger than the configured limits.
    LimitExceeded,
    /// The 200 response had a content type we cannot read.
    UnexpectedContentType,
    /// The host name could not be resolved.
    Dns,
    /// TLS handshake or certificate failure.
    Tls,
    /// The call was cancelled through its cancel handle.
    Cancelled,
    /// The client was misconfigured (bad URL, bad header, ...).
    InvalidConfig,
    /// Any other I/O or protocol failure.
    Other,
}

impl FailureKind {
    /// The stable snake_case name (`"unexpected_eof"`, `"connection_reset"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnexpectedEof => "unexpected_eof",
            Self::ConnectionReset => "connection_reset",
            Self::ConnectionAborted => "connection_aborted",
            Self::BrokenPipe => "broken_pipe",
            Self::ConnectionRefused => "connection_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::FirstByteTimeout => "first_byte_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::TimedOut => "timed_out",
            Self::IncompleteStream => "incomplete_stream",
            Self::TruncatedToolCallArguments => "truncated_tool_call_arguments",
            Self::ToolCallArgumentsCutByLength => "tool_call_arguments_cut_by_length",
            Self::HttpStatus => "http_status",
            Self::ApiError => "api_error",
            Self::MalformedChunk => "malformed_chunk",
            Self::LimitExceeded => "limit_exceeded",
            Self::UnexpectedContentType => "unexpected_content_type",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Cancelled => "cancelled",
            Self::InvalidConfig => "invalid_config",
            Self::Other => "other",
        }
    }
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 23] = [
        Self::UnexpectedEof,
        Self::ConnectionReset,
        Self::ConnectionAborted,
        Self::BrokenPipe,
        Self::ConnectionRefused,
        Self::ConnectTimeout,
        Self::FirstByteTimeout,
        Self::IdleTimeout,
        Self::DeadlineExceeded,
        Self::TimedOut,
        Self::IncompleteStream,
        Self::TruncatedToolCallArguments,
        Self::ToolCallArgumentsCutByLength,
        Self::HttpStatus,
        Self::ApiError,
        Self::MalformedChunk,
        Self::LimitExceeded,
        Self::UnexpectedContentType,
        Self::Dns,
        Self::Tls,
        Self::Cancelled,
        Self::InvalidConfig,
        Self::Other,
    ];

    /// The kind with this [`as_str`](Self::as_str) name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
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

impl FailureKind {
    /// The kind an I/O error stands for. `WouldBlock` is what a socket read timeout raises
    /// on some platforms, so it counts as a timeout.
    pub fn from_io(err: &io::Error) -> Self {
        if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<ureq::Error>()) {
            return Self::from_ureq(inner);
        }
        match err.kind() {
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

    /// The kind a ureq error stands for, looking through ureq's wrapping of I/O errors.
    pub fn from_ureq(err: &ureq::Error) -> Self {
        use ureq::Timeout as T;
        match err {
            ureq::Error::Io(io) => Self::from_io(io),
            ureq::Error::Timeout(T::Connect | T::Resolve) => Self::ConnectTimeout,
            ureq::Error::Timeout(T::RecvResponse | T::SendRequest | T::SendBody) => {
                Self::FirstByteTimeout
            }
            ureq::Error::Timeout(T::PerRead | T::RecvBody) => Self::IdleTimeout,
            ureq::Error::Timeout(T::Global | T::PerCall) => Self::DeadlineExceeded,
            ureq::Error::Timeout(_) => Self::TimedOut,
            ureq::Error::HostNotFound => Self::Dns,
            ureq::Error::Tls(_) => Self::Tls,
            #[cfg(feature = "tls")]
            ureq::Error::Rustls(_) => Self::Tls,
            ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl => {
                Self::InvalidConfig
            }
            ureq::Error::BodyExceedsLimit(_) => Self::LimitExceeded,
            // ureq's reader reports a connection closed inside the chunked framing (in a
            // chunk-size line, or before a chunk's CRLF) as a stalled body: a cut connection.
            ureq::Error::BodyStalled => Self::UnexpectedEof,
            _ => Self::Other,
        }
    }
}

/// Everything a chat call can fail with.
///
/// [`Error::kind`] reduces it to a [`FailureKind`]; the retry policy decides on that (plus
/// status and headers for [`Error::Http`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was built with an invalid setting (URL, header, proxy). Fix the setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The connection failed: refused, reset, cut (`UnexpectedEof`), ... The source keeps the
    /// real [`io::ErrorKind`]. Usually transient: the retry layer retries these.
    #[error("{kind}: {source}")]
    Io {
        /// The normalized kind.
        kind: FailureKind,
        /// The error as the socket (or ureq) reported it.
        #[source]
        source: io::Error,
    },
    /// A failure inside ureq that is not plain I/O: DNS, TLS, a malformed HTTP response.
    #[error("{kind}: {source}")]
    Transport {
        /// The normalized kind.
        kind: FailureKind,
        /// ureq's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A timeout fired: connect, first byte, idle between reads, or the total deadline.
    #[error("{kind} ({} ms)", .after.as_millis())]
    Timeout {
        /// Which timeout.
        kind: FailureKind,
        /// The configured limit that was crossed.
        after: Duration,
    },
    /// The server answered with a non-success status. Retried for 408/429/502/503/504
    /// unless the body or headers say not to.
    #[error("http {}: {}", .0.status, .0.error)]
    Http(Box<HttpError>),
    /// The stream itself was wrong: an error event, a malformed chunk, an early end,
    /// truncated tool-call arguments, a size limit.
    #[error(transparent)]
    Stream(#[from] ChatError),
    /// The event stream crossed a size bound.
    #[error(transparent)]
    Sse(#[from] SseError),
    /// A 200 response that is neither `text/event-stream` nor JSON (a captive portal, a
    /// misrouted proxy). Check the base URL.
    #[error("unexpected content type {content_type:?} in a 200 response: {snippet}")]
    UnexpectedContentType {
        /// The `Content-Type` header (empty if absent).
        content_type: String,
        /// The start of the body.
        snippet: String,
    },
    /// The call was cancelled through its [`CancelHandle`](crate::CancelHandle).
    #[error("cancelled")]
    Cancelled,
    /// Transient failures went on past the retry policy's limits (at least one retry was
    /// made). Holds the last error and what was tried.
    #[error("gave up after {} attempts: {}", .0.attempts, .0.last)]
    RetriesExhausted(Box<RetriesExhausted>),
}

/// Details of [`Error::RetriesExhausted`].
#[derive(Debug)]
pub struct RetriesExhausted {
    /// Attempts made.
    pub attempts: u32,
    /// The error of the last attempt.
    pub last: Error,
    /// One record per retry that was made.
    pub history: Vec<RetryRecord>,
}

/// A non-success HTTP response, with what the retry policy needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status code.
    pub status: u16,
    /// The error from the body (`{"error":{...}}`, `{"detail":...}`, or a text snippet).
    pub error: ApiError,
    /// The raw `Retry-After` header.
    pub retry_after: Option<String>,
    /// The raw `retry-after-ms` header.
    pub retry_after_ms: Option<String>,
    /// The raw `x-should-retry` header.
    pub should_retry: Option<String>,
}

impl HttpError {
    /// The wait the server asked for, if any (see [`crate::retry::server_delay`]).
    pub fn server_delay(&self, now: SystemTime) -> Option<Duration> {
        crate::retry::server_delay(
            self.retry_after_ms.as_deref(),
            self.retry_after.as_deref(),
            now,
        )
    }
}

impl Error {
    /// The normalized kind, for retry decisions and logs.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Config(_) => FailureKind::InvalidConfig,
            Self::Io { kind, .. } | Self::Transport { kind, .. } | Self::Timeout { kind, .. } => {
                *kind
            }
            Self::Http(_) => FailureKind::HttpStatus,
            Self::Stream(err) => err.kind(),
            Self::Sse(_) => FailureKind::LimitExceeded,
            Self::UnexpectedContentType { .. } => FailureKind::UnexpectedContentType,
            Self::Cancelled => FailureKind::Cancelled,
            Self::RetriesExhausted(exhausted) => exhausted.last.kind(),
        }
    }

    /// The server's error, from an error status or an error event in the stream.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::Http(http) => Some(&http.error),
            Self::Stream(ChatError::Api(api)) => Some(api),
            Self::RetriesExhausted(exhausted) => exhausted.last.api_error(),
            _ => None,
        }
    }

    pub(crate) fn io(source: io::Error) -> Self {
        Self::Io {
            kind: FailureKind::from_io(&source),
            source,
        }
    }

    pub(crate) fn ureq(err: ureq::Error) -> Self {
        match err {
            ureq::Error::Io(source) => Self::io(source),
            other => Self::Transport {
                kind: FailureKind::from_ureq(&other),
                source: Box::new(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // `Result<_, Error>` travels through every layer; grow it only on purpose.
        assert_eq!(std::mem::size_of::<Error>(), 56);
    }
}
