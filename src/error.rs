//! Error types shared across layers and the normalized failure kind the retry classifier matches on.

use std::fmt;

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
    /// The response headers did not arrive in time.
    HeadersTimeout,
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
            Self::HeadersTimeout => "headers_timeout",
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

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}
