//! Chat completions on the driver: the request with `stream: true`, each dispatched event
//! into the [`Accumulator`], and what a break needs — a continuation request that prefills
//! the delivered text, and a restarted answer held against what the caller was shown.
//!
//! [`ChatStream`] is the caller's handle: a pull-style stream of [`StreamEvent`]s with the
//! recoveries happening inside it.

use super::protocol::{Accept, BodyKind, Outgoing, Progress, Protocol, Recovered, Report};
use super::{Call, Setup, Shared};
use crate::cancel::CancelHandle;
use crate::chat::{
    Accumulator, Against, ChatRequest, ChatResponse, Completion, Message, OwnedStreamEvent,
    ReadCompletionError, Shown, StreamEvent, StreamOptions, read_completion,
};
use crate::error::Error;
use crate::http::{self, MAX_ERROR_BODY, Response};
use crate::retry::{FailureKind, RetryRecord};
use crate::sse::Item;
use crate::wire::{StreamError, StreamTail};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use ureq::http::{HeaderValue, Method, header};

/// A notice for the caller, handed out before anything else.
#[derive(Debug, Clone, Copy)]
enum Notice {
    Restart { attempt: u32, reason: FailureKind },
    Resumed { attempt: u32, offset: u64 },
    Continued { attempt: u32, regenerated: bool },
}

/// Chat completions as a protocol of the driver.
pub(crate) struct ChatProtocol {
    /// The request as sent (with `stream: true`): the continuation extends it.
    request: ChatRequest,
    body: Vec<u8>,
    usage_requested: bool,
    choices: u32,
    /// The client added `stream_options.include_usage` itself (the caller set none).
    default_usage: bool,
    acc: Accumulator,
    /// Output of this answer was handed to the caller.
    delivered: bool,
    /// What was shown of an answer that broke, while a restart repeats it.
    shown: Option<Shown>,
    /// Tool-call ids to keep from the shown answer.
    shown_ids: Option<Shown>,
    /// The pending restart's reason and attempt (its `Restart` notice waits for a
    /// difference).
    restart: Option<(u32, FailureKind)>,
    /// The body is a replay: its chunks must be of the same completion.
    replaying: bool,
    notice: Option<Notice>,
    /// The whole answer of a server that ignored `stream: true`.
    whole: Option<ChatResponse>,
}

impl ChatProtocol {
    fn new(shared: &Shared, request: &ChatRequest) -> Result<Self, Error> {
        let mut streaming = request.clone();
        streaming.stream = Some(true);
        // Ask for usage unless the caller set stream options (or the server rejected them).
        // Only a caller's own request makes the stream incomplete without the usage chunk.
        let usage_requested = streaming.usage_requested();
        let default_usage = streaming.stream_options.is_none() && shared.stream_options_accepted();
        if default_usage {
            streaming.stream_options = Some(StreamOptions {
                include_usage: true,
            });
        }
        let body = serde_json::to_vec(&streaming)
            .map_err(|e| Error::Config(format!("request does not serialize: {e}")))?;
        let choices = streaming.choices_requested();
        Ok(Self {
            acc: new_accumulator(shared, usage_requested, choices),
            request: streaming,
            body,
            usage_requested,
            choices,
            default_usage,
            delivered: false,
            shown: None,
            shown_ids: None,
            restart: None,
            replaying: false,
            notice: None,
            whole: None,
        })
    }

    /// The continuation: the request with the delivered content as a final assistant
    /// message, flagged to be continued rather than answered (the vLLM/SGLang spelling,
    /// which llama.cpp accepts and LiteLLM passes through).
    fn continuation_body(&self) -> Option<Vec<u8>> {
        let prefix = self.acc.continuable()?;
        let mut request = self.request.clone();
        request.messages.push(Message::assistant(prefix));
        // The token limit is the answer's: what was delivered counts against it (one token
        // per chunk, as servers stream; a few more when a chunk held several).
        let spent = u32::try_from(self.acc.output_chunks()).unwrap_or(u32::MAX);
        for n in [&mut request.max_tokens, &mut request.max_completion_tokens]
            .into_iter()
            .flatten()
        {
            *n = n.saturating_sub(spent).max(1);
        }
        request
            .extra
            .insert("continue_final_message".into(), Value::Bool(true));
        request
            .extra
            .insert("add_generation_prompt".into(), Value::Bool(false));
        serde_json::to_vec(&request).ok()
    }

    /// After a push: a restarted answer compared with what was shown.
    fn check_restart(&mut self) {
        let Some(shown) = &self.shown else {
            return;
        };
        match self.acc.against(shown) {
            Against::Repeating => {}
            Against::CaughtUp => {
                let (attempt, _) = self.restart.take().unwrap_or((0, FailureKind::Other));
                log::info!("the restarted answer repeated what was shown; it goes on from there");
                self.notice = Some(Notice::Continued {
                    attempt,
                    regenerated: true,
                });
                self.shown_ids = self.shown.take();
            }
            Against::Differs => {
                let (attempt, reason) = self.restart.take().unwrap_or((0, FailureKind::Other));
                log::warn!("the restarted answer differs from what was shown: starting over");
                self.shown = None;
                self.acc.reveal_all();
                self.notice = Some(Notice::Restart { attempt, reason });
            }
        }
    }
}

impl super::PullEvents for ChatProtocol {
    type Event<'a> = StreamEvent<'a>;

    /// The next event for the caller: a notice first, then the accumulator's.
    fn next_event(&mut self) -> Option<StreamEvent<'_>> {
        if let Some(notice) = self.notice.take() {
            return Some(match notice {
                Notice::Restart { attempt, reason } => StreamEvent::Restart { attempt, reason },
                Notice::Resumed { attempt, offset } => StreamEvent::Resumed { attempt, offset },
                Notice::Continued {
                    attempt,
                    regenerated,
                } => StreamEvent::Continued {
                    attempt,
                    regenerated,
                },
            });
        }
        let event = self.acc.next_event();
        if event.as_ref().is_some_and(StreamEvent::is_output) {
            self.delivered = true;
        }
        event
    }

    fn has_event(&mut self) -> bool {
        self.notice.is_some() || self.acc.has_visible()
    }

    fn is_output(event: &StreamEvent<'_>) -> bool {
        event.is_output()
    }
}

impl Protocol for ChatProtocol {
    type Output = ChatResponse;
    const GENERATES: bool = true;
    const RECONNECTS: bool = false;

    fn request<'a>(&'a self, shared: &'a Shared, continuation: bool) -> Outgoing<'a> {
        let body = match continuation.then(|| self.continuation_body()).flatten() {
            Some(body) => Cow::Owned(body),
            None => Cow::Borrowed(self.body.as_slice()),
        };
        Outgoing {
            method: Method::POST,
            url: Cow::Borrowed(shared.urls.chat.as_str()),
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
            body: Some(body),
        }
    }

    fn rejected(&mut self, shared: &Shared, err: &Error) -> bool {
        if !(self.default_usage && rejects_stream_options(err)) {
            return false;
        }
        // Servers that do not know `stream_options` may refuse the request: send it again
        // without, at once, and remember for this client.
        log::debug!("the server rejects stream_options; sending without: {err}");
        shared.set_stream_options_accepted(false);
        self.default_usage = false;
        self.request.stream_options = None;
        if let Ok(body) = serde_json::to_vec(&self.request) {
            self.body = body;
        }
        true
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
        // A server that ignored `stream: true` sends the whole completion at once; it is
        // decoded as it arrives, never held as a whole.
        let limits = self.acc_limits();
        let max_body = limits as u64 + MAX_ERROR_BODY;
        let io = Arc::clone(response.body.attempt());
        match read_completion(response.body, max_body, limits, self.acc.splits_think()) {
            Ok(response) => {
                self.whole = Some(response);
                Ok(())
            }
            Err(ReadCompletionError::Io(err)) => Err(http::read_error(err, &io)),
            Err(ReadCompletionError::Chat(err)) => Err(err.into()),
        }
    }

    fn body_started(&mut self, kind: BodyKind) {
        self.replaying = kind == BodyKind::Replay;
    }

    fn item(&mut self, item: &Item<'_>) -> Result<Progress, Error> {
        let Item::Event(event) = item else {
            return Ok(Progress::More);
        };
        if self.replaying && !same_completion(self.acc.id(), event.data) {
            return Err(Error::Stream(StreamError::malformed(
                "a replayed chunk belongs to another completion",
                event.data,
            )));
        }
        let pushed = self.acc.push_event(event.event, event.data)?;
        self.check_restart();
        Ok(match pushed {
            // After [DONE] nothing follows.
            Completion::Complete if self.acc.saw_done() => Progress::Complete,
            // Every choice finished: the usage chunk and [DONE] usually follow at once; a
            // server that holds the connection open gets a moment.
            Completion::Complete => Progress::Tail,
            Completion::Pending => Progress::More,
        })
    }

    fn end(&mut self) -> Result<Progress, Error> {
        match self.acc.check_complete() {
            Ok(()) => Ok(Progress::Complete),
            Err(StreamError::IncompleteStream {
                received_events: 0, ..
            }) if !self.replaying => Err(StreamError::EmptyStream.into()),
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

    fn can_continue(&self) -> bool {
        self.shown.is_none() && self.acc.continuable().is_some()
    }

    fn recovered(&mut self, how: Recovered) {
        match how {
            Recovered::Resumed { attempt, offset } => {
                self.notice = Some(Notice::Resumed { attempt, offset });
            }
            Recovered::Continued { attempt } => {
                self.acc.expect_echo();
                self.notice = Some(Notice::Continued {
                    attempt,
                    regenerated: false,
                });
            }
            Recovered::Restarted { attempt, reason } => {
                let old = std::mem::replace(&mut self.acc, Accumulator::new(false));
                let shown = match self.shown.take() {
                    // A restart of a restart that had not caught up: the caller saw the
                    // first answer.
                    Some(shown) => Some(shown),
                    None => self.delivered.then(|| old.shown()),
                };
                self.acc = new_accumulator_like(&old, self.usage_requested, self.choices);
                if let Some(shown) = &shown {
                    self.acc.hide(shown);
                    self.restart = Some((attempt, reason));
                }
                self.shown = shown;
                self.shown_ids = None;
            }
        }
    }

    fn finish(&mut self, report: Report) -> Result<ChatResponse, Error> {
        if let Some(shown) = &self.shown_ids {
            self.acc.keep_shown_ids(shown);
        }
        let mut response = match self.whole.take() {
            Some(response) => response,
            // Tool-call arguments may fail the final check, and a restart then needs the
            // answer as shown: check a copy.
            None if self.acc.has_tool_calls() => self.acc.clone().finish()?,
            None => std::mem::replace(&mut self.acc, Accumulator::new(false)).finish()?,
        };
        response.retries = report.retries;
        response.timings.attempts = report.timings;
        Ok(response)
    }

    fn generated_tokens(&self) -> Option<u64> {
        self.acc.usage().map(|u| u.completion_tokens)
    }
}

impl ChatProtocol {
    fn acc_limits(&self) -> usize {
        self.acc.limits().max_response_bytes
    }
}

/// Whether a chunk's `id` is the completion's (or either is unknown).
fn same_completion(id: &str, data: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(default, borrow)]
        id: Option<Cow<'a, str>>,
    }
    if id.is_empty() {
        return true;
    }
    match serde_json::from_str::<Id<'_>>(data.trim()) {
        Ok(chunk) => chunk.id.is_none_or(|got| got.is_empty() || got == id),
        // Not a chunk ([DONE], an error): the accumulator judges it.
        Err(_) => true,
    }
}

/// Whether an error status says the server does not accept `stream_options`.
fn rejects_stream_options(err: &Error) -> bool {
    matches!(err, Error::Http(http) if matches!(http.status, 400 | 422)
    && {
        let message = http.error.message.to_ascii_lowercase();
        message.contains("stream_options") || message.contains("include_usage")
    })
}

/// A fresh accumulator for this client's calls.
fn new_accumulator(shared: &Shared, usage_requested: bool, choices: u32) -> Accumulator {
    Accumulator::with_limits(usage_requested, shared.chat_limits)
        .expect_choices(choices)
        .split_think(shared.split_think)
}

/// A fresh accumulator with `old`'s settings.
fn new_accumulator_like(old: &Accumulator, usage_requested: bool, choices: u32) -> Accumulator {
    Accumulator::with_limits(usage_requested, old.limits())
        .expect_choices(choices)
        .split_think(old.splits_think())
}

/// One chat call, pulled event by event. Get one from [`Client::stream`](crate::Client::stream).
///
/// [`next_event`](Self::next_event) hands out borrowed events, zero-copy, with recoveries
/// happening inside: a verified replay ([`StreamEvent::Resumed`]), a continuation or a
/// restart that repeated what was shown ([`StreamEvent::Continued`]) — after which the
/// deltas simply go on — or, only when a restarted answer differs from what was shown,
/// [`StreamEvent::Restart`], after which the answer comes again from its start.
/// [`finish`](Self::finish) returns the aggregated response. As an [`Iterator`] it yields
/// owned events (`Result<OwnedStreamEvent, Error>`) for plain `for` loops.
/// [`stop`](Self::stop) — or dropping the stream — ends the call early.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "mock")] {
/// use oai_sse::mock::{MockServer, Script};
/// use oai_sse::{ChatRequest, Client, Message, StreamEvent};
///
/// let server = MockServer::start(Script::new().text("Hello there"))?;
/// let client = Client::new(&server.base_url())?;
/// let request = ChatRequest::new("mock-model", vec![Message::user("hi")]);
///
/// let mut stream = client.stream(&request)?;
/// let mut shown = String::new();
/// while let Some(event) = stream.next_event()? {
///     if let StreamEvent::Content { text, .. } = event {
///         shown.push_str(text); // borrowed: no copy per delta
///     }
/// }
/// let response = stream.finish()?;
/// assert_eq!(response.content(), shown);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChatStream {
    call: Call<ChatProtocol>,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn new(
        shared: Arc<Shared>,
        request: &ChatRequest,
        setup: Setup,
    ) -> Result<Self, Error> {
        let proto = ChatProtocol::new(&shared, request)?;
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
    pub fn next_event(&mut self) -> Result<Option<StreamEvent<'_>>, Error> {
        super::pull(&mut self.call)
    }

    /// Reads the call to its end (events not taken yet are dropped) and returns the
    /// aggregated response, with the retries it took.
    ///
    /// # Errors
    ///
    /// The call's failure.
    pub fn finish(mut self) -> Result<ChatResponse, Error> {
        while self.next_event()?.is_some() {}
        self.call.take_output()?.ok_or(Error::Cancelled)
    }

    /// Ends the call now and returns what arrived so far, marked
    /// [`stopped_by_caller`](ChatResponse::stopped_by_caller) (unless it was already
    /// complete). The connection is closed, and a resumable server is told to stop
    /// generating.
    pub fn stop(mut self) -> ChatResponse {
        if let Ok(Some(response)) = self.call.take_output() {
            return response;
        }
        let report = self.call.stop();
        let acc = std::mem::replace(&mut self.call.proto.acc, Accumulator::new(false));
        let mut response = acc.partial_response();
        response.stopped_by_caller = true;
        response.retries = report.retries;
        response.timings.attempts = report.timings;
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

impl Iterator for ChatStream {
    type Item = Result<OwnedStreamEvent, Error>;

    /// The next event, owned; an error is yielded once, then the iteration ends.
    /// [`finish`](ChatStream::finish) afterwards returns the response (or the error).
    fn next(&mut self) -> Option<Self::Item> {
        super::pull_owned(&mut self.call, |e| e.to_owned_event())
    }
}
