//! [`ChatStream`]: one chat call as a pull-style stream of events, with retries and resumes
//! happening inside it.
//!
//! # How a call goes
//!
//! The first [`ChatStream::next_event`] sends the POST (with `stream: true` and, when resume
//! is on, an `X-Conversation-Id` header carrying a fresh random id). Each dispatched SSE
//! event goes into the [`Accumulator`], whose events the caller then takes one by one; the
//! reader's position after each event is the *resume offset*: the byte of the event stream
//! up to which everything was read and accumulated.
//!
//! When the stream breaks after the server started answering (end of input, reset, an idle
//! or first-byte timeout, an incomplete stream), the next attempt is, if the server supports
//! it, `GET {base}/stream?conv_id=<id>&from=<offset>`: llama.cpp's stream replay serves the
//! bytes from that offset while the generation keeps running, so its events continue the
//! same accumulator — nothing regenerated, nothing repeated, nothing lost — and the caller
//! gets one [`StreamEvent::Resumed`]. The first resume waits at most
//! [`FIRST_RESUME_WAIT`]; later ones back off as usual. If the replay cannot be had (a
//! 404/400/405/501, a non-SSE answer, a failed GET), the call falls back to a restart within
//! the same retry budget: the POST again, a fresh accumulator, and a
//! [`StreamEvent::Restart`] if output had been delivered. A server found without the route
//! is remembered (per client, for a while) so later calls do not probe it again.
//!
//! A call that ends without completing — failed for good, cancelled, stopped by the caller
//! or dropped — tells a resumable server to stop generating (`DELETE /v1/stream?conv_id=..`,
//! best effort, bounded by [`RELEASE_LIMIT`]): with the header set, the server would
//! otherwise keep generating for nobody.

use crate::attempts::{Attempts, Wait};
use crate::cancel::CancelHandle;
use crate::chat::{
    Accumulator, ApiError, AttemptTimings, ChatError, ChatRequest, ChatResponse, Completion,
    OwnedStreamEvent, ReadCompletionError, StreamEvent, StreamOptions, StreamTail, read_completion,
};
use crate::client::{CallOptions, Inner, ReplayRoute};
use crate::error::{Error, HttpError};
use crate::kind::{FailureKind, RetryAction};
use crate::redact::redact_userinfo;
use crate::sse::{EventReader, Item, ReadError};
use crate::transport::{self, AttemptIo, BodyRead, Limits, Phase, Request, Response};
use std::io::{BufReader, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::http::{HeaderName, HeaderValue, Method};

/// The longest wait before the first resume: the server keeps generating meanwhile.
pub const FIRST_RESUME_WAIT: Duration = Duration::from_millis(100);
/// The most a `DELETE` telling the server to stop may hold the caller: half the cancel
/// promise (a cancelled call returns within 100 ms). The server acts on the request as soon
/// as it has read it, so a slow answer is dropped, not waited for.
pub const RELEASE_LIMIT: Duration = Duration::from_millis(50);
/// Read buffer for the event stream: a few chunks per refill, small for edge machines.
const READ_BUFFER: usize = 16 << 10;
/// Most bytes read from an error response or an unexpected body.
pub(crate) const MAX_ERROR_BODY: u64 = 64 << 10;
/// The longest an error body may take to arrive, whatever its size.
pub(crate) const ERROR_BODY_TIME: Duration = Duration::from_secs(10);
/// Most bytes read after a complete response to reach its end (and pool the connection).
const MAX_DRAIN: u64 = 64 << 10;
/// The header that makes llama.cpp keep a generation (and its bytes) past a disconnect.
const CONVERSATION_ID: &str = "x-conversation-id";

/// One chat call, pulled event by event. Get one from [`Client::stream`](crate::Client::stream).
///
/// [`next_event`](Self::next_event) hands out borrowed events, zero-copy, with retries and
/// resumes happening inside (their [`StreamEvent::Restart`] / [`StreamEvent::Resumed`]
/// appear in order); [`finish`](Self::finish) returns the aggregated response. As an
/// [`Iterator`] it yields owned events (`Result<OwnedStreamEvent, Error>`) for plain `for`
/// loops. [`stop`](Self::stop) — or dropping the stream — ends the call early.
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
    client: Arc<Inner>,
    body: Vec<u8>,
    usage_requested: bool,
    choices: u32,
    /// The conversation id sent with the POST, when resume is on.
    conv_id: Option<HeaderValue>,
    attempts: Attempts,
    acc: Accumulator,
    open: Option<Open>,
    next: Next,
    /// Absolute offset in the generation's event stream just past the last event read.
    offset: u64,
    /// A restart or resume event to hand out before anything else.
    notice: Option<Notice>,
    /// The failure being resumed from, returned if the resume cannot be had and a restart
    /// is not allowed.
    broken: Option<Error>,
    /// Output of the current generation was handed to the caller.
    delivered: bool,
    /// The last push completed the response; hand out its events, then finish.
    completing: bool,
    /// Every choice finished but `[DONE]` has not come: read what follows (the usage chunk,
    /// `[DONE]`) for a moment before finishing.
    tail: bool,
    /// The client added `stream_options.include_usage` itself (the caller set none).
    default_usage: bool,
    /// The current attempt's clock, and the finished attempts' timings.
    clock: Option<Clock>,
    timings: Vec<AttemptTimings>,
    /// A POST with the conversation id went out and the call has not ended cleanly.
    generation_live: bool,
    state: State,
}

/// The current attempt's times.
struct Clock {
    attempt: u32,
    io: Arc<AttemptIo>,
    first_byte: Option<Duration>,
    first_token: Option<Duration>,
    last_token: Option<Duration>,
}

impl Clock {
    fn since_start(&self) -> Duration {
        self.io.started().elapsed()
    }

    fn timings(&self) -> AttemptTimings {
        AttemptTimings {
            attempt: self.attempt,
            connect: self.io.connect_time(),
            first_byte: self.first_byte,
            first_token: self.first_token,
            last_token: self.last_token,
            total: self.since_start(),
            bytes: self.io.received(),
        }
    }
}

/// The response being read.
struct Open {
    reader: EventReader<BufReader<TailRead>>,
    /// Offset of the body's first byte in the generation's event stream.
    base: u64,
    /// Whether this body is a replay (for choosing how to carry on after a failure).
    replay: bool,
}

/// What the next attempt sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Post,
    Resume { from: u64 },
}

#[derive(Debug, Clone, Copy)]
enum Notice {
    Restart { attempt: u32, reason: FailureKind },
    Resumed { attempt: u32, offset: u64 },
}

#[derive(Debug)]
enum State {
    Running,
    Complete(Box<ChatResponse>),
    Failed(Error),
    /// The response was taken (by `finish` or `stop`).
    Taken,
}

/// One unit of progress of [`ChatStream::step`].
enum Step {
    Continue,
    End,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("attempt", &self.attempts.attempt())
            .field("offset", &self.offset)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn new(
        client: Arc<Inner>,
        request: &ChatRequest,
        options: CallOptions,
    ) -> Result<Self, Error> {
        let policy = options.retry.unwrap_or_else(|| client.retry.clone());
        let mut streaming = request.clone();
        streaming.stream = Some(true);
        // Ask for usage unless the caller set stream options (or the server rejected them).
        // Only a caller's own request makes the stream incomplete without the usage chunk.
        let usage_requested = streaming.usage_requested();
        let default_usage = streaming.stream_options.is_none() && client.stream_options_accepted();
        if default_usage {
            streaming.stream_options = Some(StreamOptions {
                include_usage: true,
            });
        }
        let body = serde_json::to_vec(&streaming)
            .map_err(|e| Error::Config(format!("request does not serialize: {e}")))?;
        let conv_id = policy
            .resume
            .then(|| HeaderValue::from_str(&conversation_id()).ok())
            .flatten();
        let acc = new_accumulator(&client, usage_requested, streaming.choices_requested());
        let cancel = options.cancel.unwrap_or_default();
        Ok(Self {
            attempts: Attempts::new(
                policy,
                cancel,
                options.on_retry,
                options.jitter_seed,
                client.deadline,
            ),
            usage_requested,
            choices: streaming.choices_requested(),
            body,
            conv_id,
            acc,
            open: None,
            next: Next::Post,
            offset: 0,
            notice: None,
            broken: None,
            delivered: false,
            completing: false,
            tail: false,
            default_usage,
            clock: None,
            timings: Vec::new(),
            generation_live: false,
            state: State::Running,
            client,
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
        loop {
            if let Some(notice) = self.notice.take() {
                return Ok(Some(match notice {
                    Notice::Restart { attempt, reason } => StreamEvent::Restart { attempt, reason },
                    Notice::Resumed { attempt, offset } => StreamEvent::Resumed { attempt, offset },
                }));
            }
            if self.acc.has_pending() {
                break;
            }
            match self.step() {
                Ok(Step::Continue) => {}
                Ok(Step::End) => return Ok(None),
                Err(err) => return Err(err),
            }
        }
        let event = self.acc.next_event();
        if event.as_ref().is_some_and(StreamEvent::is_output) {
            self.delivered = true;
            if let Some(clock) = &mut self.clock {
                let now = clock.since_start();
                clock.first_token.get_or_insert(now);
                clock.last_token = Some(now);
            }
        }
        Ok(event)
    }

    /// Reads the call to its end (events not taken yet are dropped) and returns the
    /// aggregated response, with the retries it took.
    ///
    /// # Errors
    ///
    /// The call's failure.
    pub fn finish(mut self) -> Result<ChatResponse, Error> {
        while self.next_event()?.is_some() {}
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Complete(response) => Ok(*response),
            State::Failed(err) => Err(err),
            State::Running | State::Taken => Err(Error::Cancelled),
        }
    }

    /// Ends the call now and returns what arrived so far, marked
    /// [`stopped_by_caller`](ChatResponse::stopped_by_caller) (unless it was already
    /// complete). The connection is closed, and a resumable server is told to stop
    /// generating.
    pub fn stop(mut self) -> ChatResponse {
        let response = match std::mem::replace(&mut self.state, State::Taken) {
            State::Complete(response) => return *response,
            State::Running | State::Failed(_) | State::Taken => {
                self.open = None;
                let acc = std::mem::replace(&mut self.acc, Accumulator::new(false));
                let mut response = acc.partial_response();
                response.stopped_by_caller = true;
                response.retries = self.attempts.take_history();
                self.stop_clock();
                response.timings.attempts = std::mem::take(&mut self.timings);
                response
            }
        };
        self.release_server();
        response
    }

    /// A handle that cancels this call from another thread (the call then fails with
    /// [`Error::Cancelled`]).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.attempts.cancel().clone()
    }

    /// The retries made so far.
    pub fn retries(&self) -> &[crate::RetryRecord] {
        self.attempts.history()
    }

    /// One unit of progress: open a response, read one item, complete, or fail.
    fn step(&mut self) -> Result<Step, Error> {
        match &self.state {
            State::Running => {}
            State::Complete(_) | State::Taken => return Ok(Step::End),
            State::Failed(err) => return Err(err.clone()),
        }
        // Also between events: a cancel must stop a response that is already buffered, not
        // only a read that blocks.
        if self.attempts.cancel().is_cancelled() {
            return self.end(Error::Cancelled);
        }
        if self.completing {
            self.completing = false;
            return self.complete();
        }
        if self.open.is_none() {
            return match self.next {
                Next::Post => self.post(),
                Next::Resume { from } => self.resume(from),
            };
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(Step::Continue);
        };
        let tail = self.tail;
        match open.reader.next_item() {
            Ok(Some(Item::Event(event))) => {
                let pushed = self.acc.push_event(event.event, event.data);
                self.offset = open.base + open.reader.position();
                match pushed {
                    // After [DONE] nothing follows.
                    Ok(Completion::Complete) if self.acc.saw_done() => self.completing = true,
                    // Every choice finished: the usage chunk and [DONE] usually follow at
                    // once; a server that holds the connection open gets a moment.
                    Ok(Completion::Complete) if !tail => {
                        self.tail = true;
                        let drain = self.client.limits.drain;
                        open.reader
                            .get_ref()
                            .attempt_io()
                            .set_phase(Phase::Tail(drain));
                    }
                    Ok(_) => {}
                    // Whatever breaks after the response was complete costs nothing.
                    Err(_) if tail => self.completing = true,
                    Err(err) => return self.failed(err.into()),
                }
                Ok(Step::Continue)
            }
            Ok(Some(Item::Comment(_) | Item::Retry(_))) => Ok(Step::Continue),
            Ok(None) if tail => self.complete(),
            Err(_) if tail => self.complete(),
            Ok(None) => {
                // Shutting a socket down (cancel, a limit) can look like a clean end.
                let io = Arc::clone(open.reader.get_ref().attempt_io());
                if let Some(err) = interrupted(&io) {
                    return self.failed(err);
                }
                match self.acc.check_complete() {
                    Ok(()) => self.complete(),
                    Err(err) => {
                        let err = self.error_in_tail().unwrap_or(err.into());
                        self.failed(err)
                    }
                }
            }
            Err(ReadError::Io(err)) => {
                let io = Arc::clone(open.reader.get_ref().attempt_io());
                let err = match transport::read_error(err, &io) {
                    Error::Cancelled => Error::Cancelled,
                    err => self.error_in_tail().unwrap_or(err),
                };
                self.failed(err)
            }
            Err(ReadError::Sse(err)) => self.failed(err.into()),
        }
    }

    /// Starts timing a new attempt on `io`.
    fn start_clock(&mut self, io: &Arc<AttemptIo>) {
        self.stop_clock();
        self.clock = Some(Clock {
            attempt: self.attempts.attempt(),
            io: Arc::clone(io),
            first_byte: None,
            first_token: None,
            last_token: None,
        });
    }

    /// The response head arrived.
    fn clock_first_byte(&mut self) {
        if let Some(clock) = &mut self.clock {
            clock.first_byte = Some(clock.since_start());
        }
    }

    /// The current attempt ended: keep its timings.
    fn stop_clock(&mut self) {
        if let Some(clock) = self.clock.take() {
            self.timings.push(clock.timings());
        }
    }

    /// The attempt's I/O context, with the call's cancel handle and deadline.
    fn attempt_io(&self) -> Arc<AttemptIo> {
        AttemptIo::new(
            self.attempts.cancel(),
            self.client.limits,
            self.attempts.deadline(),
        )
    }

    fn headers(&self, extra: &[(HeaderName, HeaderValue)]) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::with_capacity(self.client.headers.len() + extra.len());
        headers.extend(extra.iter().cloned());
        headers.extend(self.client.headers.iter().cloned());
        headers
    }

    /// Sends the POST and opens its answer.
    fn post(&mut self) -> Result<Step, Error> {
        let mut extra = vec![
            (
                ureq::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                ureq::http::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            ),
        ];
        let replay = self.conv_id.is_some() && self.client.replay_available();
        if let (true, Some(id)) = (replay, &self.conv_id) {
            extra.push((HeaderName::from_static(CONVERSATION_ID), id.clone()));
        }
        let headers = self.headers(&extra);
        let io = self.attempt_io();
        self.start_clock(&io);
        log::debug!(
            "attempt {}: POST {}",
            self.attempts.attempt(),
            redact_userinfo(&self.client.urls.chat)
        );
        let request = Request {
            method: Method::POST,
            url: &self.client.urls.chat,
            headers: &headers,
            body: Some(&self.body),
        };
        let result = self.client.transport.send(&request, &io);
        // The server may have the request even when no answer came.
        self.generation_live |= replay;
        let response = match result {
            Ok(response) => response,
            Err(err) => return self.failed(err),
        };
        self.attempts.server_answered();
        self.clock_first_byte();
        if !(200..300).contains(&response.status) {
            let err = http_error(response);
            if self.default_usage && rejects_stream_options(&err) {
                // Servers that do not know `stream_options` may refuse the request: send it
                // again without, at once, and remember for this client.
                log::debug!("the server rejects stream_options; sending without: {err}");
                self.client.set_stream_options_accepted(false);
                self.default_usage = false;
                self.body = self.body_without_stream_options();
                return Ok(Step::Continue);
            }
            return self.failed(err);
        }
        if let Some(err) = unreadable_encoding(&response) {
            return self.failed(err);
        }
        match response.media_type().as_str() {
            "text/event-stream" | "" => {
                self.open = Some(Open {
                    reader: self.event_reader(response.body),
                    base: 0,
                    replay: false,
                });
                Ok(Step::Continue)
            }
            "application/json" => {
                // A server that ignored `stream: true` sends the whole completion at once;
                // it is decoded as it arrives, never held as a whole.
                let max_response = self.client.chat_limits.max_response_bytes;
                let max_body = max_response as u64 + MAX_ERROR_BODY;
                let io = Arc::clone(response.body.attempt());
                let read = read_completion(
                    response.body,
                    max_body,
                    max_response,
                    self.client.split_think,
                );
                match read {
                    Ok(mut response) => {
                        self.stop_clock();
                        response.retries = self.attempts.take_history();
                        response.timings.attempts = std::mem::take(&mut self.timings);
                        self.generation_live = false;
                        self.state = State::Complete(Box::new(response));
                        Ok(Step::End)
                    }
                    Err(ReadCompletionError::Io(err)) => {
                        self.failed(transport::read_error(err, &io))
                    }
                    Err(ReadCompletionError::Chat(err)) => self.failed(err.into()),
                }
            }
            _ => {
                let content_type = response.media_type();
                let text = read_bounded(response.body, 1024, ERROR_BODY_TIME);
                self.failed(Error::UnexpectedContentType {
                    content_type,
                    snippet: ApiError::from_body(&text).message,
                })
            }
        }
    }

    /// The request body without `stream_options`.
    fn body_without_stream_options(&self) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("stream_options");
        }
        serde_json::to_vec(&value).unwrap_or_else(|_| self.body.clone())
    }

    /// Asks the server to replay the event stream from `from`; falls back to a restart if
    /// it cannot.
    fn resume(&mut self, from: u64) -> Result<Step, Error> {
        let Some(id) = self.conv_id.as_ref().and_then(|id| id.to_str().ok()) else {
            return self.fall_back(None);
        };
        let url = format!(
            "{}?conv_id={}&from={from}",
            self.client.urls.stream,
            encode_query(id)
        );
        let extra = [(
            ureq::http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        )];
        let headers = self.headers(&extra);
        let io = self.attempt_io();
        self.start_clock(&io);
        log::debug!(
            "attempt {}: GET {}",
            self.attempts.attempt(),
            redact_userinfo(&url)
        );
        let request = Request {
            method: Method::GET,
            url: &url,
            headers: &headers,
            body: None,
        };
        let response = match self.client.transport.send(&request, &io) {
            Ok(response) => response,
            Err(Error::Cancelled) => return self.end(Error::Cancelled),
            Err(err) => return self.fall_back(Some(err)),
        };
        self.attempts.server_answered();
        self.clock_first_byte();
        let status = response.status;
        let sse = response.media_type() == "text/event-stream";
        if status == 200 && sse && unreadable_encoding(&response).is_none() {
            self.client.set_replay_available(true);
            self.broken = None;
            self.open = Some(Open {
                reader: self.event_reader(response.body),
                base: from,
                replay: true,
            });
            self.notice = Some(Notice::Resumed {
                attempt: self.attempts.attempt(),
                offset: from,
            });
            return Ok(Step::Continue);
        }
        let err = if (200..300).contains(&status) {
            Error::UnexpectedContentType {
                content_type: response.media_type(),
                snippet: String::new(),
            }
        } else {
            http_error(response)
        };
        // A 404 is ambiguous: llama.cpp answers a session it no longer has with the same
        // generic 404 as a server without the route. Its DELETE answers 204 for any id, so
        // when the route is not known yet, asking it to drop the session tells the two apart
        // (and cleans up). A 400 is the route speaking (offset lost, bad offset); a 405, a 501
        // or a 2xx that is not an event stream means the route is not there.
        match status {
            400 => self.client.set_replay_available(true),
            404 if self.client.replay_route() == ReplayRoute::Unknown => {
                let present = self.release_server() == Some(204);
                self.client.set_replay_available(present);
            }
            404 => {}
            _ => {
                log::debug!("no stream replay route ({status}); restarting instead");
                self.client.set_replay_available(false);
            }
        }
        self.fall_back(Some(err))
    }

    /// A resume could not be had: restart within the same budget, at once.
    fn fall_back(&mut self, why: Option<Error>) -> Result<Step, Error> {
        let why = why.unwrap_or_else(|| Error::Config("no conversation id to resume".into()));
        let why = self.sanitized(why);
        let original = self.broken.take().unwrap_or_else(|| why.clone());
        match self.attempts.fall_back(&why, original, self.delivered) {
            Ok(()) => {
                self.restart(why.kind());
                Ok(Step::Continue)
            }
            Err(err) => self.end(err),
        }
    }

    fn event_reader(&self, body: BodyRead) -> EventReader<BufReader<TailRead>> {
        let body = TailRead {
            body,
            tail: StreamTail::default(),
        };
        EventReader::with_limits(
            BufReader::with_capacity(READ_BUFFER, body),
            self.client.sse_limits,
        )
    }

    /// An error the server wrote into the stream's last lines in a shape the SSE parser
    /// skips (see `chat::tail`), for a stream that ended without completing.
    fn error_in_tail(&self) -> Option<Error> {
        let open = self.open.as_ref()?;
        let api = open.reader.get_ref().get_ref().tail.error()?;
        Some(Error::Stream(ChatError::Api(Box::new(api))))
    }

    /// `err` with the server's text made fit for logs, hooks and terminals: this client's
    /// secrets redacted, controls escaped (see [`Error::sanitized`]).
    fn sanitized(&self, err: Error) -> Error {
        let client = &self.client;
        let headers = client
            .headers
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .filter_map(|(_, v)| v.to_str().ok())
            .flat_map(crate::redact::header_secrets);
        let urls = crate::redact::userinfo_secrets(&client.urls.chat);
        let secrets: Vec<&str> = headers
            .chain(urls.iter().map(|s| s.as_ref()))
            .chain(client.transport.proxy_password())
            .collect();
        err.sanitized(&secrets)
    }

    /// The stream is complete: reach the end of the body so the connection is pooled, then
    /// check the response.
    fn complete(&mut self) -> Result<Step, Error> {
        self.tail = false;
        if let Some(open) = self.open.take() {
            drain(open.reader.into_inner());
        }
        self.stop_clock();
        let fresh = new_accumulator(&self.client, self.usage_requested, self.choices);
        let acc = std::mem::replace(&mut self.acc, fresh);
        match acc.finish() {
            Ok(mut response) => {
                response.retries = self.attempts.take_history();
                response.timings.attempts = std::mem::take(&mut self.timings);
                self.generation_live = false;
                self.state = State::Complete(Box::new(response));
                Ok(Step::End)
            }
            // E.g. truncated tool-call arguments: a replay would repeat the same bytes.
            Err(err) => {
                self.generation_live = false;
                self.failed(err.into())
            }
        }
    }

    /// The attempt failed: resume, restart, or give up.
    fn failed(&mut self, err: Error) -> Result<Step, Error> {
        self.stop_clock();
        self.tail = false;
        let err = self.sanitized(err);
        let open = self.open.take();
        let replaying = open.as_ref().is_some_and(|o| o.replay);
        drop(open);
        if matches!(err, Error::Cancelled) {
            return self.end(err);
        }
        // A replay that ended cleanly but incomplete is the whole generation: the server
        // ended it that way, and replaying it again would end the same.
        let generation_over = replaying && err.kind() == FailureKind::IncompleteStream;
        if !generation_over && self.can_resume(&err) {
            let from = self.offset;
            let wait = if replaying
                || self
                    .attempts
                    .history()
                    .iter()
                    .any(|r| matches!(r.action, RetryAction::Resumed { .. }))
            {
                Wait::Backoff
            } else {
                Wait::AtMost(FIRST_RESUME_WAIT)
            };
            self.broken = Some(err.clone());
            return match self.attempts.retry(
                err,
                RetryAction::Resumed { offset: from },
                false,
                wait,
            ) {
                Ok(()) => {
                    self.next = Next::Resume { from };
                    Ok(Step::Continue)
                }
                Err(err) => self.end(err),
            };
        }
        let reason = err.kind();
        match self
            .attempts
            .retry(err, RetryAction::Restarted, self.delivered, Wait::Backoff)
        {
            Ok(()) => {
                self.restart(reason);
                Ok(Step::Continue)
            }
            Err(err) => self.end(err),
        }
    }

    /// Whether a failure can be picked up by a replay rather than a new generation.
    fn can_resume(&self, err: &Error) -> bool {
        self.conv_id.is_some()
            && self.generation_live
            && self.attempts.policy().resume
            && self.client.replay_available()
            && (err.kind().is_broken_connection()
                || matches!(
                    err.kind(),
                    FailureKind::FirstByteTimeout
                        | FailureKind::IdleTimeout
                        | FailureKind::TimedOut
                        | FailureKind::IncompleteStream
                ))
    }

    /// The next attempt starts the answer over.
    fn restart(&mut self, reason: FailureKind) {
        self.acc = new_accumulator(&self.client, self.usage_requested, self.choices);
        self.offset = 0;
        self.next = Next::Post;
        self.completing = false;
        if std::mem::take(&mut self.delivered) {
            self.notice = Some(Notice::Restart {
                attempt: self.attempts.attempt(),
                reason,
            });
        }
    }

    /// The call failed for good.
    fn end(&mut self, err: Error) -> Result<Step, Error> {
        self.open = None;
        self.release_server();
        self.state = State::Failed(err.clone());
        Err(err)
    }

    /// Tells a resumable server to stop a generation nobody will read (best effort, within
    /// [`RELEASE_LIMIT`], on a fresh cancel handle: the call's own may be cancelled). Returns
    /// the answer's status, if one came.
    fn release_server(&mut self) -> Option<u16> {
        if !std::mem::take(&mut self.generation_live) {
            return None;
        }
        let id = self.conv_id.as_ref().and_then(|id| id.to_str().ok())?;
        if !self.client.replay_available() {
            return None;
        }
        let url = format!("{}?conv_id={}", self.client.urls.stream, encode_query(id));
        let headers = self.headers(&[]);
        let limits = Limits {
            connect: RELEASE_LIMIT,
            first_byte: RELEASE_LIMIT,
            idle: RELEASE_LIMIT,
            drain: RELEASE_LIMIT,
        };
        let deadline = Instant::now()
            .checked_add(RELEASE_LIMIT)
            .map(|at| (at, RELEASE_LIMIT));
        let io = AttemptIo::new(&CancelHandle::new(), limits, deadline);
        let request = Request {
            method: Method::DELETE,
            url: &url,
            headers: &headers,
            body: None,
        };
        match self.client.transport.send(&request, &io) {
            Ok(response) => {
                let status = response.status;
                log::debug!("DELETE {}: {status}", redact_userinfo(&url));
                drain(response.body);
                match status {
                    204 => self.client.set_replay_available(true),
                    404 | 405 | 501 => self.client.set_replay_available(false),
                    _ => {}
                }
                Some(status)
            }
            Err(err) => {
                log::debug!("DELETE {} failed: {err}", redact_userinfo(&url));
                None
            }
        }
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if matches!(self.state, State::Running) {
            self.open = None;
            self.release_server();
        }
    }
}

impl Iterator for ChatStream {
    type Item = Result<OwnedStreamEvent, Error>;

    /// The next event, owned; an error is yielded once, then the iteration ends.
    /// [`finish`](ChatStream::finish) afterwards returns the response (or the error).
    fn next(&mut self) -> Option<Self::Item> {
        if matches!(self.state, State::Failed(_)) {
            return None;
        }
        match self.next_event() {
            Ok(event) => event.map(|e| Ok(e.to_owned_event())),
            Err(err) => Some(Err(err)),
        }
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

/// Why the attempt was interrupted, if a limit or a cancel did it.
pub(crate) fn interrupted(io: &AttemptIo) -> Option<Error> {
    io.interrupted().map(|(kind, limit)| match kind {
        FailureKind::Cancelled => Error::Cancelled,
        kind => Error::Transport(crate::error::TransportError::timeout(kind, limit)),
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
fn drain(mut body: impl Read + HasAttempt) {
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

/// A body reader that knows its attempt.
pub(crate) trait HasAttempt {
    fn attempt_io(&self) -> &Arc<AttemptIo>;
}

impl HasAttempt for BodyRead {
    fn attempt_io(&self) -> &Arc<AttemptIo> {
        self.attempt()
    }
}

impl HasAttempt for BufReader<TailRead> {
    fn attempt_io(&self) -> &Arc<AttemptIo> {
        self.get_ref().body.attempt()
    }
}

/// An event stream's body, keeping its last bytes for [`ChatStream::error_in_tail`].
struct TailRead {
    body: BodyRead,
    tail: StreamTail,
}

impl Read for TailRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.body.read(buf)?;
        self.tail.record(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// A fresh accumulator for this client's calls.
fn new_accumulator(client: &Inner, usage_requested: bool, choices: u32) -> Accumulator {
    Accumulator::with_limits(usage_requested, client.chat_limits)
        .expect_choices(choices)
        .split_think(client.split_think)
}

/// A fresh conversation id: 128 random bits as hex. The randomness comes from std's
/// per-process hash keys (seeded by the OS) mixed with the clock and a counter; it is only
/// an id, unrelated to any secret.
fn conversation_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut words = [0u64; 2];
    for word in &mut words {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        *word = hasher.finish();
    }
    format!("oai-sse-{:016x}{:016x}", words[0], words[1])
}

/// Percent-encodes a query value (ids are hex, but the server may be given any).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| conversation_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let hex = id.strip_prefix("oai-sse-").expect("prefix");
            assert_eq!(hex.len(), 32, "{id}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("oai-sse-0af"), "oai-sse-0af");
        assert_eq!(encode_query("org/repo a&b"), "org%2Frepo%20a%26b");
    }
}
