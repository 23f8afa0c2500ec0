//! Reading a response past its head: an error status as an [`Error`] with its bounded body,
//! bodies we cannot read, draining a complete response so its connection is pooled, and why
//! an attempt was interrupted.

use super::{AttemptIo, BodyRead, Phase, Response};
use crate::error::{Error, HttpError, TransportError};
use crate::retry::FailureKind;
use crate::wire::ApiError;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Most bytes read from an error response or an unexpected body.
pub(crate) const MAX_ERROR_BODY: u64 = 64 << 10;
/// The longest an error body may take to arrive, whatever its size.
pub(crate) const ERROR_BODY_TIME: Duration = Duration::from_secs(10);
/// Most bytes read after a complete response to reach its end (and pool the connection).
const MAX_DRAIN: u64 = 64 << 10;

/// A body reader that knows its attempt.
pub(crate) trait HasAttempt {
    fn attempt_io(&self) -> &Arc<AttemptIo>;
}

impl HasAttempt for BodyRead {
    fn attempt_io(&self) -> &Arc<AttemptIo> {
        self.attempt()
    }
}

impl<R: HasAttempt> HasAttempt for std::io::BufReader<R> {
    fn attempt_io(&self) -> &Arc<AttemptIo> {
        self.get_ref().attempt_io()
    }
}

/// Why the attempt was interrupted, if a limit or a cancel did it.
pub(crate) fn interrupted(io: &AttemptIo) -> Option<Error> {
    io.interrupted().map(|(kind, limit)| match kind {
        FailureKind::Cancelled => Error::Cancelled,
        kind => Error::Transport(TransportError::timeout(kind, limit)),
    })
}

/// A non-success response as an error, with its (bounded) body read.
pub(crate) fn http_error(response: Response) -> Error {
    let header = |name: &str| response.header(name).map(str::to_owned);
    let (retry_after, retry_after_ms, should_retry) = (
        header("retry-after"),
        header("retry-after-ms"),
        header("x-should-retry"),
    );
    let status = response.status;
    let text = read_bounded(response.body, MAX_ERROR_BODY, ERROR_BODY_TIME);
    Error::Http(Box::new(HttpError {
        status,
        error: ApiError::from_body(&text),
        retry_after,
        retry_after_ms,
        should_retry,
    }))
}

/// A body we cannot read because it is compressed (we never ask for compression).
pub(crate) fn unreadable_encoding(response: &Response) -> Option<Error> {
    let encoding = response.header("content-encoding")?.trim();
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return None;
    }
    Some(Error::UnexpectedContentType {
        content_type: format!("Content-Encoding: {encoding}"),
        snippet:
            "the server compressed the response although the request did not accept any encoding"
                .into(),
    })
}

/// A 2xx answer of a type we cannot read, with the start of its body.
pub(crate) fn unexpected_type(response: Response) -> Error {
    let content_type = response.media_type();
    let text = read_bounded(response.body, 1024, ERROR_BODY_TIME);
    Error::UnexpectedContentType {
        content_type,
        snippet: ApiError::from_body(&text).message,
    }
}

/// Reads at most `limit` bytes within `time`, keeping what arrived before any error.
pub(crate) fn read_bounded(
    mut body: impl Read + HasAttempt,
    limit: u64,
    time: Duration,
) -> Vec<u8> {
    body.attempt_io().set_phase(Phase::Tail(time));
    let mut text = Vec::new();
    if let Err(err) = (&mut body).take(limit).read_to_end(&mut text) {
        log::debug!("error body cut short: {err}");
    }
    text
}

/// Reads the rest of a complete response so the connection goes back to the pool: at most
/// [`MAX_DRAIN`] bytes within the drain limit; otherwise the connection is dropped.
pub(crate) fn drain(mut body: impl Read + HasAttempt) {
    let limit = body.attempt_io().limits().drain;
    body.attempt_io().set_phase(Phase::Tail(limit));
    match std::io::copy(&mut (&mut body).take(MAX_DRAIN), &mut std::io::sink()) {
        Ok(n) if n < MAX_DRAIN => {}
        Ok(_) => log::debug!(
            "more than {MAX_DRAIN} bytes after a complete response; dropping the connection"
        ),
        Err(err) => log::debug!(
            "end of a complete response did not arrive ({err}); dropping the connection"
        ),
    }
}
