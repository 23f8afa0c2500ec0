//! The Responses API on the driver: the request with `stream: true` to `{api}/responses`,
//! each dispatched event into the [`ResponsesAccumulator`], and what a break needs. The
//! recovery is the driver's, as for chat: a verified llama.cpp replay resumes (llama.cpp
//! keeps every completion handler's stream, this one included, for a request that carries
//! `X-Conversation-Id`), otherwise the response restarts. A restart after output was handed
//! out is announced with [`ResponseEvent::Restart`]; a replay with
//! [`ResponseEvent::Resumed`]. A response is not continued (the API has no prefill).
//!
//! [`ResponsesStream`] is the caller's handle.

use super::protocol::{Accept, BodyKind, Outgoing, Progress, Protocol, Recovered, Report};
use super::{Call, Setup, Shared};
use crate::cancel::CancelHandle;
use crate::chat::Completion;
use crate::error::Error;
use crate::http::{self, MAX_ERROR_BODY, Response};
use crate::responses::{
    OwnedResponseEvent, ResponseEvent, ResponseLimits, ResponseObject, ResponsesAccumulator,
    ResponsesRequest,
};
use crate::retry::{FailureKind, RetryRecord};
use crate::sse::Item;
use crate::wire::{StreamError, StreamTail};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;
use ureq::http::{HeaderValue, Method, header};

/// A notice for the caller, handed out before anything else.
#[derive(Debug, Clone, Copy)]
enum Notice {
    Restart { attempt: u32, reason: FailureKind },
    Resumed { attempt: u32, offset: u64 },
}

/// The Responses API as a protocol of the driver.
pub(crate) struct ResponsesProtocol {
    body: Vec<u8>,
    limits: ResponseLimits,
    acc: ResponsesAccumulator,
    /// Output of this call was handed to the caller.
    delivered: bool,
    /// Output of the current answer was handed out (a restart must be announced).
    shown: bool,
    /// The body is a replay.
    replaying: bool,
    notice: Option<Notice>,
}

impl ResponsesProtocol {
    fn new(shared: &Shared, request: &ResponsesRequest) -> Result<Self, Error> {
        let mut streaming = request.clone();
        streaming.stream = Some(true);
        let body = serde_json::to_vec(&streaming)
            .map_err(|e| Error::Config(format!("request does not serialize: {e}")))?;
        let limits = ResponseLimits {
            max_response_bytes: shared.chat_limits.max_response_bytes,
            ..ResponseLimits::default()
        };
        Ok(Self {
            body,
            limits,
            acc: ResponsesAccumulator::with_limits(limits),
            delivered: false,
            shown: false,
            replaying: false,
            notice: None,
        })
    }
}

impl super::PullEvents for ResponsesProtocol {
    type Event<'a> = ResponseEvent<'a>;

    /// The next event for the caller: a notice first, then the accumulator's.
    fn next_event(&mut self) -> Option<ResponseEvent<'_>> {
        if let Some(notice) = self.notice.take() {
            return Some(match notice {
                Notice::Restart { attempt, reason } => ResponseEvent::Restart { attempt, reason },
                Notice::Resumed { attempt, offset } => ResponseEvent::Resumed { attempt, offset },
            });
        }
        let event = self.acc.next_event();
        if event.as_ref().is_some_and(ResponseEvent::is_output) {
            self.delivered = true;
            self.shown = true;
        }
        event
    }

    fn has_event(&mut self) -> bool {
        self.notice.is_some() || self.acc.has_events()
    }

    fn is_output(event: &ResponseEvent<'_>) -> bool {
        event.is_output()
    }
}

impl Protocol for ResponsesProtocol {
    type Output = ResponseObject;
    const GENERATES: bool = true;
    const RECONNECTS: bool = false;

    fn request<'a>(&'a self, shared: &'a Shared, _continuation: bool) -> Outgoing<'a> {
        Outgoing {
            method: Method::POST,
            url: Cow::Borrowed(shared.urls.responses.as_str()),
            headers: vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    header::ACCEPT,
                    HeaderValue::from_static("text/event-stream"),
                ),
            ],
            overrides: Vec::new(),
            body: Some(Cow::Borrowed(self.body.as_slice())),
        }
    }

    fn accept(&self, response: &Response) -> Accept {
        match response.media_type().as_str() {
            "text/event-stream" | "" => Accept::EventStream {
                silence_from_head: false,
            },
            "application/json" => Accept::Whole,
            _ => Accept::Unexpected,
        }
    }

    fn whole(&mut self, response: Response) -> Result<(), Error> {
        // A server that ignored `stream: true` sends the response object at once: it is read
        // as the final event that carries it.
        let limit = self.limits.max_response_bytes as u64 + MAX_ERROR_BODY;
        let io = Arc::clone(response.body.attempt());
        let mut text = Vec::new();
        let mut body = response.body;
        (&mut body)
            .take(limit.saturating_add(1))
            .read_to_end(&mut text)
            .map_err(|err| http::read_error(err, &io))?;
        if text.len() as u64 > limit {
            return Err(StreamError::ResponseTooLarge {
                limit: self.limits.max_response_bytes,
            }
            .into());
        }
        let object: Value = serde_json::from_slice(&text).map_err(|e| {
            StreamError::malformed(
                format!("not a response object: {e}"),
                &String::from_utf8_lossy(&text),
            )
        })?;
        let kind = match object.get("status").and_then(Value::as_str) {
            Some("failed") => "response.failed",
            Some("incomplete") => "response.incomplete",
            _ => "response.completed",
        };
        let event = json!({"type": kind, "response": object}).to_string();
        self.acc = ResponsesAccumulator::with_limits(self.limits);
        self.acc.push_event("", &event)?;
        Ok(())
    }

    fn body_started(&mut self, kind: BodyKind) {
        self.replaying = kind == BodyKind::Replay;
    }

    fn item(&mut self, item: &Item<'_>) -> Result<Progress, Error> {
        let Item::Event(event) = item else {
            return Ok(Progress::More);
        };
        Ok(match self.acc.push_event(event.event, event.data)? {
            // Nothing follows the final event but, on some gateways, `[DONE]`: a server
            // that holds the connection open gets a moment.
            Completion::Complete => Progress::Tail,
            Completion::Pending => Progress::More,
        })
    }

    fn end(&mut self) -> Result<Progress, Error> {
        match self.acc.check_complete() {
            Ok(()) => Ok(Progress::Complete),
            Err(_) if self.acc.received_events() == 0 && !self.replaying => {
                Err(StreamError::EmptyStream.into())
            }
            Err(err) => Err(err.into()),
        }
    }

    fn error_in_tail(&self, tail: &StreamTail) -> Option<Error> {
        let api = tail.error()?;
        Some(Error::Stream(StreamError::Api(Box::new(api))))
    }

    fn delivered(&self) -> bool {
        self.delivered
    }

    fn recovered(&mut self, how: Recovered) {
        match how {
            Recovered::Resumed { attempt, offset } => {
                self.notice = Some(Notice::Resumed { attempt, offset });
            }
            Recovered::Restarted { attempt, reason } => {
                self.acc = ResponsesAccumulator::with_limits(self.limits);
                if std::mem::take(&mut self.shown) {
                    self.notice = Some(Notice::Restart { attempt, reason });
                }
            }
            // Never offered: `can_continue` is false.
            Recovered::Continued { .. } => {}
        }
    }

    fn finish(&mut self, report: Report) -> Result<ResponseObject, Error> {
        // The arguments may fail the final check, and a restart then starts afresh anyway.
        let acc = std::mem::replace(
            &mut self.acc,
            ResponsesAccumulator::with_limits(self.limits),
        );
        let checked = acc.clone().finish();
        let mut response = match checked {
            Ok(response) => response,
            Err(err) => {
                self.acc = acc;
                return Err(err.into());
            }
        };
        response.retries = report.retries;
        response.timings = report.timings;
        Ok(response)
    }

    fn generated_tokens(&self) -> Option<u64> {
        self.acc.usage().map(|u| u.output_tokens)
    }
}

/// One Responses API call, pulled event by event. Get one from
/// [`Client::responses_stream`](crate::Client::responses_stream).
///
/// [`next_event`](Self::next_event) hands out borrowed events, zero-copy, with recoveries
/// happening inside: a verified replay ([`ResponseEvent::Resumed`]), after which the deltas
/// simply go on, or — after output was handed out — a restart ([`ResponseEvent::Restart`]),
/// after which the response comes again from its start. [`finish`](Self::finish) returns
/// the [`ResponseObject`]. As an [`Iterator`] it yields owned events.
/// [`stop`](Self::stop) — or dropping the stream — ends the call early.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "mock")] {
/// use oai_sse::mock::{MockServer, Script};
/// use oai_sse::{Client, ResponseEvent, ResponsesRequest};
///
/// let server = MockServer::start(Script::new().text("Hello there"))?;
/// let client = Client::new(&server.base_url())?;
/// let request = ResponsesRequest::new("mock-model", "hi");
///
/// let mut stream = client.responses_stream(&request)?;
/// let mut shown = String::new();
/// while let Some(event) = stream.next_event()? {
///     if let ResponseEvent::Text { text, .. } = event {
///         shown.push_str(text);
///     }
/// }
/// let response = stream.finish()?;
/// assert_eq!(response.output_text(), shown);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ResponsesStream {
    call: Call<ResponsesProtocol>,
}

impl std::fmt::Debug for ResponsesStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponsesStream")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl ResponsesStream {
    pub(crate) fn new(
        shared: Arc<Shared>,
        request: &ResponsesRequest,
        setup: Setup,
    ) -> Result<Self, Error> {
        let proto = ResponsesProtocol::new(&shared, request)?;
        Ok(Self {
            call: Call::new(shared, proto, setup),
        })
    }

    /// The next event, or `None` when the response is complete. Text borrows from the
    /// aggregated response: no copy per delta.
    ///
    /// # Errors
    ///
    /// The call's failure once retries (or resumes) cannot help; every later call returns
    /// the same error, and so does [`finish`](Self::finish).
    pub fn next_event(&mut self) -> Result<Option<ResponseEvent<'_>>, Error> {
        super::pull(&mut self.call)
    }

    /// Reads the call to its end (events not taken yet are dropped) and returns the
    /// response, with the retries it took.
    ///
    /// # Errors
    ///
    /// The call's failure.
    pub fn finish(mut self) -> Result<ResponseObject, Error> {
        while self.next_event()?.is_some() {}
        self.call.take_output()?.ok_or(Error::Cancelled)
    }

    /// Ends the call now and returns what arrived so far, marked
    /// [`stopped_by_caller`](ResponseObject::stopped_by_caller) (unless it was already
    /// complete). The connection is closed, and a resumable server is told to stop
    /// generating.
    pub fn stop(mut self) -> ResponseObject {
        if let Ok(Some(response)) = self.call.take_output() {
            return response;
        }
        let report = self.call.stop();
        let mut response = self.call.proto.acc.partial_response();
        response.stopped_by_caller = true;
        response.retries = report.retries;
        response.timings = report.timings;
        response
    }

    /// A handle that cancels this call from another thread (the call then fails with
    /// [`Error::Cancelled`]).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.call.attempts.cancel().clone()
    }

    /// The retries made so far.
    pub fn retries(&self) -> &[RetryRecord] {
        super::history(&self.call)
    }
}

impl Iterator for ResponsesStream {
    type Item = Result<OwnedResponseEvent, Error>;

    /// The next event, owned; an error is yielded once, then the iteration ends.
    fn next(&mut self) -> Option<Self::Item> {
        super::pull_owned(&mut self.call, |e| e.to_owned_event())
    }
}
