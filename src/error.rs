//! The caller-facing error: one type for every call, shaped for the questions a caller asks
//! (what kind of failure, which status, what did the server say, was it retried, would a
//! retry help), whichever layer noticed the failure.

use crate::chat::{ApiError, ChatError};
use crate::kind::{FailureKind, RetryRecord};
use crate::redact::sanitize;
use crate::retry::retry_after;
use crate::sse::SseError;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use std::{fmt, io};

/// Everything a call can fail with.
///
/// Most callers need only the helpers: [`kind`](Self::kind) (a [`FailureKind`]),
/// [`status`](Self::status), [`api_error`](Self::api_error), [`retries`](Self::retries) and
/// [`is_transient`](Self::is_transient) — they all look through [`Error::AfterRetries`].
///
/// # Examples
///
/// ```
/// use oai_sse::{Error, FailureKind};
///
/// fn explain(err: &Error) -> String {
///     match (err.status(), err.kind()) {
///         (Some(429), _) => format!("rate limited after {} retries", err.retries().len()),
///         (_, FailureKind::ConnectionRefused) => "is the server running?".into(),
///         _ => err.to_string(),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was built with an invalid setting (URL, header, proxy, certificate). Fix
    /// the setting.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The connection or the HTTP exchange failed: refused, reset, cut, a timeout, DNS,
    /// TLS, broken HTTP framing. [`TransportError::kind`] says which; most are transient and
    /// were retried before you see them.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered with a non-success status. Retried for 408/429/502/503/504
    /// unless the body or headers say not to.
    #[error("http {}: {}", .0.status, .0.error)]
    Http(Box<HttpError>),
    /// The chat stream itself was wrong: an error event, a malformed chunk, an early end,
    /// truncated tool-call arguments, a response size limit.
    #[error(transparent)]
    Stream(#[from] ChatError),
    /// The event stream crossed a size bound (a line or an event too long). Raise
    /// [`sse::Limits`](crate::sse::Limits) if the server's events are legitimately that large.
    #[error(transparent)]
    Sse(#[from] SseError),
    /// A 200 response whose content type (or content encoding) we cannot read: a captive
    /// portal, a misrouted proxy, a compressing gateway. Check the base URL.
    #[error("unexpected content type {content_type:?} in a 200 response: {snippet}")]
    UnexpectedContentType {
        /// The `Content-Type` header (empty if absent), or `Content-Encoding: <coding>`.
        content_type: String,
        /// The start of the body.
        snippet: String,
    },
    /// The call was cancelled through its [`CancelHandle`](crate::CancelHandle).
    #[error("cancelled")]
    Cancelled,
    /// The call failed after at least one retry: either transient failures went on past the
    /// retry policy's limits, or a permanent failure followed. Holds the last error and
    /// what was tried.
    #[error("{0}")]
    AfterRetries(Box<AfterRetries>),
}

/// A failure of the connection or the HTTP exchange (see [`Error::Transport`]).
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: FailureKind,
    limit: Option<Duration>,
    /// Shared so that errors can be cloned (a stream hands its failure out more than once).
    source: Arc<io::Error>,
}

impl TransportError {
    /// A failure of this kind caused by `source`.
    pub(crate) fn new(kind: FailureKind, source: io::Error) -> Self {
        Self {
            kind,
            limit: None,
            source: Arc::new(source),
        }
    }

    /// A timeout of this kind: the configured `limit` passed.
    pub(crate) fn timeout(kind: FailureKind, limit: Duration) -> Self {
        let message = format!("{kind} after {} ms", limit.as_millis());
        Self {
            kind,
            limit: Some(limit),
            source: Arc::new(io::Error::new(io::ErrorKind::TimedOut, message)),
        }
    }

    /// The normalized kind: `unexpected_eof`, `connection_reset`, `idle_timeout`, `tls`, ...
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// For a timeout, the configured limit that was crossed.
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// The underlying I/O error, with its real [`io::ErrorKind`].
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "{} ({} ms)", self.kind, limit.as_millis()),
            None => write!(f, "{}: {}", self.kind, self.source),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Details of [`Error::AfterRetries`].
#[derive(Debug, Clone)]
pub struct AfterRetries {
    /// Attempts made.
    pub attempts: u32,
    /// The error of the last attempt.
    pub last: Error,
    /// One record per retry that was made.
    pub history: Vec<RetryRecord>,
    /// The last failure was transient but the retry budget (count, time or deadline) was
    /// spent; `false` when a permanent failure followed the retries.
    pub exhausted: bool,
}

impl fmt::Display for AfterRetries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exhausted {
            write!(f, "gave up after {} attempts: {}", self.attempts, self.last)
        } else {
            let retries = self.history.len();
            let s = if retries == 1 { "y" } else { "ies" };
            write!(f, "{} (after {retries} retr{s})", self.last)
        }
    }
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
    /// The wait the server asked for, if any (see [`retry::server_delay`](crate::retry::server_delay)).
    /// A value too large to represent reads as [`Duration::MAX`] (so it is "too long").
    pub fn server_delay(&self, now: SystemTime) -> Option<Duration> {
        retry_after::server_delay(
            self.retry_after_ms.as_deref(),
            self.retry_after.as_deref(),
            now,
        )
    }
}

impl Error {
    /// The normalized kind of the (last) failure, for retry decisions and logs.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Config(_) => FailureKind::InvalidConfig,
            Self::Transport(err) => err.kind,
            Self::Http(_) => FailureKind::HttpStatus,
            Self::Stream(err) => err.kind(),
            Self::Sse(_) => FailureKind::LimitExceeded,
            Self::UnexpectedContentType { .. } => FailureKind::UnexpectedContentType,
            Self::Cancelled => FailureKind::Cancelled,
            Self::AfterRetries(after) => after.last.kind(),
        }
    }

    /// The HTTP status of the (last) failure, if the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self.last() {
            Self::Http(http) => Some(http.status),
            _ => None,
        }
    }

    /// The server's error, from an error status or an error event in the stream.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self.last() {
            Self::Http(http) => Some(&http.error),
            Self::Stream(ChatError::Api(api)) => Some(api),
            _ => None,
        }
    }

    /// The transport failure, if the (last) failure was one.
    pub fn transport(&self) -> Option<&TransportError> {
        match self.last() {
            Self::Transport(err) => Some(err),
            _ => None,
        }
    }

    /// The retries made before this error (empty if the first attempt failed for good).
    pub fn retries(&self) -> &[RetryRecord] {
        match self {
            Self::AfterRetries(after) => &after.history,
            _ => &[],
        }
    }

    /// The error of the last attempt (this error itself unless it is
    /// [`Error::AfterRetries`]).
    pub fn last(&self) -> &Error {
        match self {
            Self::AfterRetries(after) => after.last.last(),
            other => other,
        }
    }

    /// Whether the (last) failure was of a transient kind under the default
    /// [`RetryPolicy`](crate::retry::RetryPolicy): trying again later may succeed. A failure
    /// that exhausted the retry budget is transient; a 400 or a malformed chunk is not.
    pub fn is_transient(&self) -> bool {
        match self.last() {
            Self::Transport(err) => err.kind.is_transient_transport(),
            Self::Http(http) => matches!(http.status, 408 | 429 | 502 | 503 | 504),
            Self::Stream(err) => matches!(
                err.kind(),
                FailureKind::IncompleteStream | FailureKind::TruncatedToolCallArguments
            ),
            _ => false,
        }
    }

    pub(crate) fn io(kind: FailureKind, source: io::Error) -> Self {
        Self::Transport(TransportError::new(kind, source))
    }

    /// The error with every text that came from the server (error messages, types, codes,
    /// snippets of bodies and chunks, content types) made fit for a human: `secrets` (the
    /// client's API key, header values, passwords) and URL userinfo replaced by
    /// `<redacted>`, terminal controls escaped. Errors reach logs, retry hooks and
    /// terminals; a server that echoes the key back must not put it there.
    pub(crate) fn sanitized(self, secrets: &[&str]) -> Self {
        let clean = |text: String| match sanitize(&text, secrets) {
            Cow::Borrowed(_) => text,
            Cow::Owned(clean) => clean,
        };
        let clean_api = |api: ApiError| ApiError {
            message: clean(api.message),
            kind: api.kind.map(clean),
            param: api.param.map(clean),
            code: api.code.map(clean),
        };
        match self {
            Self::Http(mut http) => {
                http.error = clean_api(std::mem::take(&mut http.error));
                Self::Http(http)
            }
            Self::Stream(ChatError::Api(api)) => {
                Self::Stream(ChatError::Api(Box::new(clean_api(*api))))
            }
            Self::Stream(ChatError::MalformedChunk { reason, snippet }) => {
                Self::Stream(ChatError::MalformedChunk {
                    reason: clean(reason),
                    snippet: clean(snippet),
                })
            }
            Self::UnexpectedContentType {
                content_type,
                snippet,
            } => Self::UnexpectedContentType {
                content_type: clean(content_type),
                snippet: clean(snippet),
            },
            Self::Config(message) => Self::Config(clean(message)),
            Self::AfterRetries(mut after) => {
                after.last = std::mem::replace(&mut after.last, Self::Cancelled).sanitized(secrets);
                Self::AfterRetries(after)
            }
            other => other,
        }
    }
}

impl FailureKind {
    /// Whether this is a connection that broke under an exchange: cut, reset, aborted, or
    /// gone while writing.
    pub(crate) fn is_broken_connection(self) -> bool {
        matches!(
            self,
            Self::UnexpectedEof
                | Self::ConnectionReset
                | Self::ConnectionAborted
                | Self::BrokenPipe
        )
    }

    /// Whether a transport failure of this kind is worth retrying (DNS failures are not by
    /// default: usually a typo).
    pub(crate) fn is_transient_transport(self) -> bool {
        self.is_broken_connection()
            || matches!(
                self,
                Self::ConnectionRefused
                    | Self::ConnectTimeout
                    | Self::FirstByteTimeout
                    | Self::IdleTimeout
                    | Self::TimedOut
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::RetryAction;

    #[test]
    fn error_stays_small() {
        // `Result<_, Error>` travels through every layer; grow it only on purpose.
        assert!(
            std::mem::size_of::<Error>() <= 56,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    fn http(status: u16) -> Error {
        Error::Http(Box::new(HttpError {
            status,
            error: ApiError {
                message: "slow down".into(),
                ..ApiError::default()
            },
            retry_after: None,
            retry_after_ms: None,
            should_retry: None,
        }))
    }

    fn after(last: Error, exhausted: bool) -> Error {
        Error::AfterRetries(Box::new(AfterRetries {
            attempts: 2,
            last,
            history: vec![RetryRecord {
                attempt: 1,
                reason: FailureKind::HttpStatus,
                delay_ms: 250,
                action: RetryAction::Restarted,
            }],
            exhausted,
        }))
    }

    #[test]
    fn helpers_look_through_retries() {
        let err = after(http(429), true);
        assert_eq!(err.status(), Some(429));
        assert_eq!(err.kind(), FailureKind::HttpStatus);
        assert_eq!(
            err.api_error().map(|e| e.message.as_str()),
            Some("slow down")
        );
        assert_eq!(err.retries().len(), 1);
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            "gave up after 2 attempts: http 429: slow down"
        );

        let err = after(http(400), false);
        assert!(!err.is_transient());
        assert_eq!(err.to_string(), "http 400: slow down (after 1 retry)");

        let eof = Error::io(
            FailureKind::UnexpectedEof,
            io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"),
        );
        assert_eq!(eof.to_string(), "unexpected eof: peer closed");
        assert!(eof.is_transient());
        assert_eq!(eof.status(), None);
        assert_eq!(
            eof.transport().map(|t| t.io_error().kind()),
            Some(io::ErrorKind::UnexpectedEof)
        );
        let idle = Error::Transport(TransportError::timeout(
            FailureKind::IdleTimeout,
            Duration::from_secs(60),
        ));
        assert_eq!(idle.to_string(), "idle timeout (60000 ms)");
        assert_eq!(
            idle.transport().and_then(TransportError::limit),
            Some(Duration::from_secs(60))
        );
    }
}
