//! The caller-facing error: one type for every call, shaped for the questions a caller asks
//! (what kind of failure, which status, what did the server say, was it retried, would a
//! retry help), whichever layer noticed the failure.

use crate::redact::sanitize;
use crate::retry::{
    self, ApiFacts, Failure, FailureKind, HttpFacts, RetryPolicy, RetryRecord, retry_after,
};
use crate::sse::SseError;
use crate::wire::{ApiError, StreamError};
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
    Stream(#[from] StreamError),
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
#[non_exhaustive]
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
            Self::Stream(StreamError::Api(api)) => Some(api),
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
    /// [`RetryPolicy`]: trying again later may succeed. A failure that exhausted the retry
    /// budget is transient; a 400 or a malformed chunk is not. The answer comes from the same
    /// table as the client's retry decisions ([`retry::classify`]).
    pub fn is_transient(&self) -> bool {
        retry::classify(&self.failure(), &RetryPolicy::default(), SystemTime::now()).is_transient()
    }

    /// The (last) failure as the facts the retry table reads.
    pub fn failure(&self) -> Failure<'_> {
        let last = self.last();
        let api = last.api_error().map(|api| ApiFacts {
            message: &api.message,
            kind: api.kind.as_deref(),
            code: api.code.as_deref(),
        });
        let http = match last {
            Self::Http(http) => Some(HttpFacts {
                status: http.status,
                retry_after: http.retry_after.as_deref(),
                retry_after_ms: http.retry_after_ms.as_deref(),
                should_retry: http.should_retry.as_deref(),
            }),
            _ => None,
        };
        Failure {
            kind: last.kind(),
            http,
            api,
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
            Self::Stream(StreamError::Api(api)) => {
                Self::Stream(StreamError::Api(Box::new(clean_api(*api))))
            }
            Self::Stream(StreamError::MalformedChunk { reason, snippet }) => {
                Self::Stream(StreamError::MalformedChunk {
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

#[cfg(test)]
mod tests;
