//! What a stream protocol gives the driver: requests as data, and decisions over the SSE
//! items of a body. A protocol never sees a socket: the driver ([`Call`](super::Call))
//! sends, reads, classifies, waits and recovers.

use super::Shared;
use super::attempts::Wait;
use crate::chat::AttemptTimings;
use crate::error::Error;
use crate::http::Response;
use crate::retry::{FailureKind, RetryRecord};
use crate::sse::{Item, Parser};
use crate::wire::StreamTail;
use std::borrow::Cow;
use std::time::Duration;
use ureq::http::{HeaderName, HeaderValue, Method};

/// A request to send.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub method: Method,
    pub url: Cow<'a, str>,
    /// Defaults (content type, accept): a client header of the same name replaces one.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers of this request that replace client headers of the same name (a source's
    /// own headers, `Last-Event-ID`).
    pub overrides: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Cow<'a, [u8]>>,
}

/// How to read a 2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// An event stream. `silence_from_head`: the idle limit applies from the head on (a feed
    /// that says nothing for that long is dead), instead of the first-byte limit.
    EventStream { silence_from_head: bool },
    /// The whole answer at once (a server that ignored `stream: true`).
    Whole,
    /// The stream is over for good (`204 No Content` to an event source).
    Over,
    /// Not a type this protocol reads.
    Unexpected,
}

/// What a body is, for the protocol reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// A new answer: the first attempt, a restart, a reconnect.
    Fresh,
    /// A verified replay: it continues the broken body where it broke.
    Replay,
    /// The server's continuation of what was delivered.
    Continuation,
}

/// What the driver does after an item or the end of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Read on.
    More,
    /// The reader's item is for the caller (an event source hands items out as they are).
    Ready,
    /// The answer is complete, but what usually follows (a usage chunk, `[DONE]`) may still
    /// come: read it for a moment; whatever breaks now costs nothing.
    Tail,
    /// The answer is complete.
    Complete,
    /// The stream is over (a source that does not reconnect on a clean end).
    Over,
}

/// A retry the driver scheduled, for a protocol that announces it before the wait.
#[derive(Debug)]
pub(crate) struct Scheduled<'a> {
    /// Retries in a row, this one included.
    pub retry: u32,
    pub error: &'a Error,
    pub delay: Duration,
    pub delay_source: super::DelaySource,
}

/// How the driver carried on after a break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// The replay picked up at this offset.
    Resumed { attempt: u32, offset: u64 },
    /// The server continues the delivered output.
    Continued { attempt: u32 },
    /// The answer starts over (what it repeats is the protocol's to swallow).
    Restarted { attempt: u32, reason: FailureKind },
}

/// What a finished call hands its protocol to put beside the answer.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub retries: Vec<RetryRecord>,
    pub timings: Vec<AttemptTimings>,
}

/// A stream protocol: chat completions, an event source, the Responses API.
pub(crate) trait Protocol {
    /// What a complete call returns.
    type Output;
    /// Whether a body is one llama.cpp may keep for replay (a generation): the request then
    /// carries a conversation id, and a break may resume.
    const GENERATES: bool;
    /// Whether a clean end or a failure reconnects (an event source) rather than recovering
    /// an answer.
    const RECONNECTS: bool;

    /// The request of a fresh attempt, or of a continuation of what was delivered.
    fn request<'a>(&'a self, shared: &'a Shared, continuation: bool) -> Outgoing<'a>;

    /// An error status to a fresh request: `true` if the protocol changed its request and it
    /// should go again at once, without a retry (a server that refuses `stream_options`).
    fn rejected(&mut self, _shared: &Shared, _err: &Error) -> bool {
        false
    }

    /// How to read a 2xx answer.
    fn accept(&self, response: &Response) -> Accept;

    /// The parser for a new body (an event source seeds it with the last event ID).
    fn parser(&self, shared: &Shared) -> Parser {
        Parser::with_limits(shared.sse_limits)
    }

    /// A body starts.
    fn body_started(&mut self, _kind: BodyKind) {}

    /// Reads a whole answer (after [`Accept::Whole`]).
    ///
    /// # Errors
    ///
    /// The answer's failure.
    fn whole(&mut self, response: Response) -> Result<(), Error> {
        Err(crate::http::unexpected_type(response))
    }

    /// One item of the body.
    ///
    /// # Errors
    ///
    /// An error event, a malformed event, a crossed limit.
    fn item(&mut self, item: &Item<'_>) -> Result<Progress, Error>;

    /// The body ended cleanly.
    ///
    /// # Errors
    ///
    /// An incomplete answer; for an event source, the end itself (it reconnects).
    fn end(&mut self) -> Result<Progress, Error>;

    /// An error the server wrote into the stream's last lines in a shape the parser skips,
    /// for a body that failed or ended without completing.
    fn error_in_tail(&self, _tail: &StreamTail) -> Option<Error> {
        None
    }

    /// The body ended (failed, reconnecting): keep what the stream set (an event source's
    /// last event ID and reconnection time).
    fn closed(&mut self, _parser: &Parser) {}

    /// Output of this answer was handed to the caller.
    fn delivered(&self) -> bool;

    /// The delivered output can be continued by a server that continues a final assistant
    /// message.
    fn can_continue(&self) -> bool {
        false
    }

    /// The `Last-Event-ID` a reconnect sends (an event source).
    fn last_event_id(&self) -> Option<String> {
        None
    }

    /// How long to wait before the next attempt.
    fn wait(&self) -> Wait {
        Wait::Backoff
    }

    /// The retry the driver just scheduled.
    fn scheduled(&mut self, _scheduled: &Scheduled<'_>) {}

    /// The next attempt started as `how`.
    fn recovered(&mut self, how: Recovered);

    /// The answer is complete: the output, with the call's report.
    ///
    /// # Errors
    ///
    /// A response that fails the final checks (truncated tool-call arguments).
    fn finish(&mut self, report: Report) -> Result<Self::Output, Error>;

    /// The tokens the server reported generating for the answer so far, if it did.
    fn generated_tokens(&self) -> Option<u64> {
        None
    }
}
