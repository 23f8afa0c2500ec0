//! The one table of what is transient. Every retry decision and [`Error::is_transient`]
//! answer from [`classify`]; adding a retryable kind is a row here (and the kind itself in
//! `kind.rs`).
//!
//! The table reads a [`Failure`]: the error reduced to facts (its kind, the HTTP answer, the
//! server's error object), so this layer knows no error type and imports nothing of ours.
//!
//! [`Error::is_transient`]: crate::Error::is_transient

use super::RetryPolicy;
use super::kind::FailureKind;
use super::retry_after::{server_delay, should_retry_header};
use std::time::{Duration, SystemTime};

/// What the classifier needs to know about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure<'a> {
    /// The normalized kind.
    pub kind: FailureKind,
    /// The HTTP answer, for an error status.
    pub http: Option<HttpFacts<'a>>,
    /// The server's error object: from an error status's body or an error event.
    pub api: Option<ApiFacts<'a>>,
}

/// The parts of an error status the classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpFacts<'a> {
    /// The status code.
    pub status: u16,
    /// The raw `Retry-After` header.
    pub retry_after: Option<&'a str>,
    /// The raw `retry-after-ms` header.
    pub retry_after_ms: Option<&'a str>,
    /// The raw `x-should-retry` header.
    pub should_retry: Option<&'a str>,
}

/// The parts of a server's error object the classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiFacts<'a> {
    /// `message`.
    pub message: &'a str,
    /// `type`.
    pub kind: Option<&'a str>,
    /// `code` (a number is given as its decimal text).
    pub code: Option<&'a str>,
}

/// Whether a failure is worth another attempt, judged from the failure alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient; the server may have said how long to wait.
    Transient {
        /// The server's `retry-after-ms` / `Retry-After`, when given and within bounds.
        server_delay: Option<Duration>,
    },
    /// Retrying would fail the same way (or must not happen, like after a cancel).
    Permanent,
    /// Transient, but the server asked for a wait longer than the policy allows: the error
    /// goes back to the caller, who can read the delay from it.
    WaitTooLong(Duration),
}

impl Verdict {
    /// Transient, whatever the wait.
    pub fn is_transient(self) -> bool {
        !matches!(self, Self::Permanent)
    }
}

const TRANSIENT: Verdict = Verdict::Transient { server_delay: None };

/// Classifies a failure: the error table in `docs::errors`, row by row.
pub fn classify(failure: &Failure<'_>, policy: &RetryPolicy, now: SystemTime) -> Verdict {
    use FailureKind as K;
    match failure.kind {
        // The connection broke or stalled under the exchange, or nothing listened yet.
        kind if kind.is_break() => TRANSIENT,
        K::ConnectionRefused | K::ConnectTimeout => TRANSIENT,
        // Usually a typo in the host name.
        K::Dns if policy.retry_dns => TRANSIENT,
        // The same bytes again would end the same way only if the server is broken; the
        // driver reports a second empty stream for the same request as such.
        K::TruncatedToolCallArguments | K::EmptyStream => TRANSIENT,
        K::HttpStatus => failure.http.map_or(Verdict::Permanent, |http| {
            classify_status(&http, failure.api.as_ref(), policy, now)
        }),
        K::ApiError => match failure.api {
            Some(api) if api_error_is_transient(&api) => TRANSIENT,
            _ => Verdict::Permanent,
        },
        _ => Verdict::Permanent,
    }
}

fn classify_status(
    http: &HttpFacts<'_>,
    api: Option<&ApiFacts<'_>>,
    policy: &RetryPolicy,
    now: SystemTime,
) -> Verdict {
    let retryable = match should_retry_header(http.should_retry) {
        Some(verdict) => verdict,
        None => {
            // OpenAI's 429 for an empty account: waiting does not refill it.
            let no_quota =
                http.status == 429 && api.and_then(|a| a.code) == Some("insufficient_quota");
            !no_quota && policy.retry_statuses.contains(&http.status)
        }
    };
    match (
        retryable,
        server_delay(http.retry_after_ms, http.retry_after, now),
    ) {
        (false, _) => Verdict::Permanent,
        (true, Some(delay)) if delay > policy.max_retry_after => Verdict::WaitTooLong(delay),
        (true, server_delay) => Verdict::Transient { server_delay },
    }
}

/// Words in an error object's `code`, `type` or `message` that make it permanent whatever
/// else it says: the request itself is wrong (too long, unauthorized, refused by a content
/// filter, invalid, out of quota), so sending it again fails the same way.
const PERMANENT_WORDS: &[&str] = &[
    "context_length",
    "context length",
    "context window",
    "context size",
    "exceed_context",
    "n_ctx",
    "contextwindowexceeded",
    "maximum context",
    "exceeds the available context",
    "too many tokens",
    "invalid_api_key",
    "incorrect api key",
    "authentication",
    "unauthorized",
    "permission",
    "forbidden",
    "content_filter",
    "content_policy",
    "contentpolicyviolation",
    "moderation",
    "invalid_request",
    "ratelimit",
    "rate_limit",
    "rate limit",
    "badrequest",
    "bad request",
    "unprocessable",
    "validation",
    "insufficient_quota",
    "budget",
    "notfounderror",
    "model_not_found",
    "does not exist",
];

/// Words that say the failure happened *behind* the server that sent the event — its
/// connection to the model server broke or timed out, or the server is overloaded — so the
/// same request may well succeed: LiteLLM's `APIConnectionError` / `Response payload is not
/// completed`, OpenRouter's `Provider disconnected unexpectedly`, OpenAI's `server_error`,
/// vLLM's `InternalServerError`, and the gateways' 502/503/504 and timeouts.
const TRANSIENT_WORDS: &[&str] = &[
    "apiconnectionerror",
    "api_connection_error",
    "response payload is not completed",
    "provider disconnected",
    "network connection lost",
    "connection reset",
    "connection closed",
    "connection error",
    "connection aborted",
    "peer closed connection",
    "server disconnected",
    "upstream",
    "server_error",
    "internalservererror",
    "internal_server_error",
    "serviceunavailable",
    "service_unavailable",
    "service unavailable",
    "bad gateway",
    "gateway timeout",
    "overloaded",
    "temporarily unavailable",
    "timed out",
    "timeout",
];

/// Codes a gateway puts on an error event when the failure is behind it (it may send the
/// number as text: LiteLLM's `"code": "500"`).
/// (A rate limit inside a stream is not among them: without a wait from the server, sending
/// again hits the same limit.)
const TRANSIENT_CODES: &[&str] = &[
    "408", "500", "502", "503", "504", "520", "521", "522", "524", "529",
];
/// Codes that name a request the server refuses.
const PERMANENT_CODES: &[&str] = &[
    "400", "401", "402", "403", "404", "409", "413", "422", "429",
];

/// Whether an error object sent *inside* a stream (an error event) describes a transient
/// failure. Unknown errors are permanent: only what is known to pass is retried.
pub fn api_error_is_transient(api: &ApiFacts<'_>) -> bool {
    let code = api.code.map(str::trim);
    if code.is_some_and(|c| PERMANENT_CODES.contains(&c)) {
        return false;
    }
    let mut text = String::with_capacity(api.message.len().min(512) + 64);
    for part in [api.code.unwrap_or(""), api.kind.unwrap_or(""), api.message] {
        // The words are ASCII; a long message is judged by its start.
        let part = part.get(..512.min(part.len())).unwrap_or(part);
        text.push_str(&part.to_ascii_lowercase());
        text.push(' ');
    }
    if PERMANENT_WORDS.iter().any(|w| text.contains(w)) {
        return false;
    }
    code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
        || TRANSIENT_WORDS.iter().any(|w| text.contains(w))
}
