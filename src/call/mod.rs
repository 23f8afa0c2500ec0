//! One call, from the first request to its end: the single loop that opens an attempt,
//! reads its event stream, classifies a failure, waits, and carries on — resumes, continues,
//! restarts or reconnects — with cancel and deadline, written once for every protocol.
//!
//! A [`Protocol`] (chat completions in [`chat`], an event source in [`events`]) is sans-IO:
//! it builds requests as data and decides over the SSE items of a body. This driver does all
//! the I/O around it and owns the recovery ([`recovery`]): after a break it schedules *one*
//! retry, then tries the ways of carrying on in order — a verified replay ([`replay`]), a
//! continuation of the delivered output, a restart — passing a way that cannot be had on to
//! the next within that retry.
//!
//! # The conversation id
//!
//! A generating request (chat, Responses) with resume on carries `X-Conversation-Id`: a fresh
//! random token per call, from which llama.cpp keeps the stream for replay. Whoever holds it
//! can read or stop that stream (llama.cpp asks for nothing else), so it is treated as a
//! credential: redacted in logs and errors, and sent only to the client's own server. A call
//! that ends without completing tells the server to stop generating (`DELETE`), but only if
//! a `200` event stream for that id was received.

mod attempts;
mod chat;
mod conversation;
mod events;
mod protocol;
mod recovery;
mod replay;
mod responses;
mod shared;

pub use attempts::{DelaySource, RetryHook, RetryNotice};
pub use chat::ChatStream;
pub use events::{
    EventSource, EventSourceBuilder, OwnedEvent, OwnedSourceEvent, Reconnect, SourceEvent,
};
pub use responses::ResponsesStream;
pub(crate) use shared::{Known, Shared, Urls};

use crate::cancel::CancelHandle;
use crate::chat::AttemptTimings;
use crate::error::Error;
use crate::http::{
    self, AttemptIo, HasAttempt, Limits, Phase, Request, Response, drain, http_error, interrupted,
    unexpected_type, unreadable_encoding,
};
use crate::redact::redact_userinfo;
use crate::retry::{FailureKind, RetryAction, RetryPolicy, RetryRecord};
use crate::sse::{EventReader, Item, ReadError};
use attempts::{Attempts, Wait};
use protocol::{Accept, BodyKind, Outgoing, Progress, Protocol, Recovered, Report, Scheduled};
use recovery::{Facts, Ladder, PassedOver, Rung};
use replay::{BodyTap, RouteShape};
use shared::ReplayRoute;
use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::http::{HeaderName, HeaderValue, Method, header};

/// The longest wait before the first resume: the server keeps generating meanwhile.
pub const FIRST_RESUME_WAIT: Duration = Duration::from_millis(100);
/// The most a `DELETE` telling the server to stop may hold the caller: half the cancel
/// promise (a cancelled call returns within 100 ms). The server acts on the request as soon
/// as it has read it, so a slow answer is dropped, not waited for.
pub const RELEASE_LIMIT: Duration = Duration::from_millis(50);
/// The most a question about the replay routes may take (asked once per client).
const PROBE_LIMIT: Duration = Duration::from_secs(10);
/// Read buffer for an event stream: a few chunks per refill, small for edge machines.
pub(crate) const READ_BUFFER: usize = 16 << 10;
/// The header that makes llama.cpp keep a generation (and its bytes) past a disconnect.
const CONVERSATION_ID: HeaderName = HeaderName::from_static("x-conversation-id");
/// Most bytes read from a replay-route answer (a lookup, a list).
const MAX_PROBE_BODY: u64 = 64 << 10;

/// The body being read.
pub(crate) struct Open {
    pub(crate) reader: EventReader<BufReader<BodyTap>>,
    /// Offset of the body's first byte in the generation's stream.
    base: u64,
    kind: BodyKind,
    /// The answer is complete; what follows is read for a moment only.
    tail: bool,
    /// This body dispatched an event.
    evented: bool,
}

impl Open {
    fn io(&self) -> &Arc<AttemptIo> {
        self.reader.get_ref().attempt_io()
    }
}

/// Where a resume asks the replay to start, and the bytes it must begin with: the events
/// delivered since `from`, then the `partial` bytes of an event received but not complete
/// (verified too, then parsed again).
#[derive(Debug, Clone, Default)]
struct ResumePlan {
    from: u64,
    expect: Vec<u8>,
    partial: usize,
}

impl ResumePlan {
    /// The offset just past the last complete event, where the parser picks up.
    fn offset(&self) -> u64 {
        self.from + (self.expect.len() - self.partial) as u64
    }

    /// The received bytes held before the parser's offset, and those it reads again.
    fn split(&self) -> (&[u8], &[u8]) {
        self.expect.split_at(self.expect.len() - self.partial)
    }
}

enum State<O> {
    Running,
    Complete(Box<O>),
    /// Ended for good without an output (an event source's end).
    Over,
    Failed(Error),
    /// The output was taken.
    Taken,
}

/// One unit of progress of [`Call::step`].
pub(crate) enum Step {
    /// Nothing for the caller yet.
    Continue,
    /// The reader holds an item the protocol hands out as it is.
    Ready,
    /// The call is over.
    End,
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

/// An attempt's timings for the debug log: `attempt 1 ended after 212 ms (connect 1 ms,
/// first byte 40 ms, first token 41 ms, last token 210 ms, 5120 bytes)`.
fn timings_line(t: &AttemptTimings) -> String {
    let marks = [
        ("connect", t.connect),
        ("first byte", t.first_byte),
        ("first token", t.first_token),
        ("last token", t.last_token),
    ];
    let mut parts: Vec<String> = marks
        .iter()
        .filter_map(|(name, at)| Some(format!("{name} {} ms", at.as_ref()?.as_millis())))
        .collect();
    parts.push(format!("{} bytes", t.bytes));
    format!(
        "attempt {} ended after {} ms ({})",
        t.attempt,
        t.total.as_millis(),
        parts.join(", ")
    )
}

/// Per-call settings the driver needs.
pub(crate) struct Setup {
    pub policy: RetryPolicy,
    pub cancel: CancelHandle,
    pub hook: Option<RetryHook>,
    pub jitter_seed: Option<u64>,
    pub deadline: Option<Duration>,
    pub limits: Limits,
}

/// One call over protocol `P`.
pub(crate) struct Call<P: Protocol> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) proto: P,
    pub(crate) attempts: Attempts,
    pub(crate) open: Option<Open>,
    limits: Limits,
    /// The conversation id generating requests carry (resume on).
    conv_id: Option<String>,
    /// The caller set `X-Conversation-Id` itself: it is not added again.
    conv_id_given: bool,
    /// A request with the conversation id went out and the call has not ended cleanly.
    generation_live: bool,
    /// A `200` event stream for the conversation id was received.
    stream_seen: bool,
    ladder: Ladder,
    /// The way the current attempt carries on (`None`: the first attempt).
    rung: Option<Rung>,
    /// Where the next resume starts.
    resume: Option<ResumePlan>,
    resumed_before: bool,
    /// The break being recovered from: returned if no way of carrying on can be had.
    broken: Option<Error>,
    /// The wait before the next attempt.
    wait: Option<Duration>,
    /// Send the current request again at once (the protocol changed it).
    resend: bool,
    /// Where the last events of this generation's stream began, oldest first.
    starts: VecDeque<u64>,
    /// The offset just past the last complete event of this generation's stream.
    offset: u64,
    /// A `200` event stream ended without any event once already.
    empty_seen: bool,
    /// The answer is complete once the caller took the last item's events.
    completing: bool,
    clock: Option<Clock>,
    timings: Vec<AttemptTimings>,
    state: State<P::Output>,
}

impl<P: Protocol> std::fmt::Debug for Call<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Running => "running",
            State::Complete(_) => "complete",
            State::Over => "over",
            State::Failed(_) => "failed",
            State::Taken => "taken",
        };
        f.debug_struct("Call")
            .field("attempt", &self.attempts.attempt())
            .field("offset", &self.offset)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> Call<P> {
    pub(crate) fn new(shared: Arc<Shared>, proto: P, setup: Setup) -> Self {
        let given = shared
            .headers
            .iter()
            .find(|(n, _)| *n == CONVERSATION_ID)
            .and_then(|(_, v)| v.to_str().ok())
            .map(str::to_owned);
        let conv_id_given = given.is_some();
        let conv_id = (P::GENERATES && setup.policy.resume)
            .then(|| given.unwrap_or_else(conversation::new_id));
        let answered = P::GENERATES && shared.ever_answered();
        let attempts = Attempts::new(
            setup.policy,
            setup.cancel,
            setup.hook,
            setup.jitter_seed,
            setup.deadline,
            answered,
        );
        Self {
            shared,
            proto,
            attempts,
            open: None,
            limits: setup.limits,
            conv_id,
            conv_id_given,
            generation_live: false,
            stream_seen: false,
            ladder: Ladder::default(),
            rung: None,
            resume: None,
            resumed_before: false,
            broken: None,
            wait: None,
            resend: false,
            starts: VecDeque::new(),
            offset: 0,
            empty_seen: false,
            completing: false,
            clock: None,
            timings: Vec::new(),
            state: State::Running,
        }
    }

    /// Whether the call ended (complete, over or failed).
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.state, State::Running)
    }

    /// Whether the call failed.
    pub(crate) fn has_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// The output, once complete: `Err` with the call's failure, or [`Error::Cancelled`] if
    /// it was stopped.
    pub(crate) fn take_output(&mut self) -> Result<Option<P::Output>, Error> {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Complete(output) => Ok(Some(*output)),
            State::Over => Ok(None),
            State::Failed(err) => Err(err),
            State::Running | State::Taken => Err(Error::Cancelled),
        }
    }

    /// One unit of progress: open an attempt, read one item, complete, or fail.
    pub(crate) fn step(&mut self) -> Result<Step, Error> {
        match &self.state {
            State::Running => {}
            State::Complete(_) | State::Over | State::Taken => return Ok(Step::End),
            State::Failed(err) => return Err(err.clone()),
        }
        // Also between items: a cancel must stop what is already buffered, not only a read
        // that blocks.
        if self.attempts.cancel().is_cancelled() {
            return self.end(Error::Cancelled);
        }
        // The last item completed the answer and its events have been taken.
        if std::mem::take(&mut self.completing) {
            return self.complete();
        }
        let Some(open) = self.open.as_mut() else {
            return self.open_next();
        };
        let before = open.base + open.reader.position();
        match open.reader.advance() {
            Ok(true) => {}
            Ok(false) => return self.body_ended(),
            Err(err) => return self.read_failed(err),
        }
        let item = match open.reader.item() {
            Ok(Some(item)) => item,
            Ok(None) => return Ok(Step::Continue),
            Err(err) => return self.read_failed(err),
        };
        let is_event = matches!(item, Item::Event(_));
        let progress = self.proto.item(&item);
        if is_event {
            self.starts.push_back(before);
            if self.starts.len() > replay::OVERLAP_EVENTS + 1 {
                self.starts.pop_front();
            }
            self.offset = open.base + open.reader.position();
            // A feed's retry budget counts reconnects in a row: only a connection that
            // delivered an event renews it (a `retry:` field or a comment does not).
            if P::RECONNECTS && !open.evented {
                self.attempts.fresh_budget();
            }
            open.evented = true;
        }
        let tail = open.tail;
        match progress {
            Ok(Progress::More) => Ok(Step::Continue),
            Ok(Progress::Ready) => Ok(Step::Ready),
            Ok(Progress::Tail) => {
                if !tail {
                    open.tail = true;
                    open.io().set_phase(Phase::Tail(self.limits.drain));
                }
                Ok(Step::Continue)
            }
            Ok(Progress::Complete) => {
                self.completing = true;
                Ok(Step::Continue)
            }
            Ok(Progress::Over) => self.over(),
            // Whatever breaks after the answer was complete costs nothing.
            Err(_) if tail => self.complete(),
            Err(err) => self.failed(err),
        }
    }

    /// The body ended cleanly.
    fn body_ended(&mut self) -> Result<Step, Error> {
        let Some(open) = self.open.as_ref() else {
            return Ok(Step::Continue);
        };
        if open.tail {
            return self.complete();
        }
        // Shutting a socket down (cancel, a limit) can look like a clean end.
        if let Some(err) = interrupted(open.io()) {
            return self.failed(err);
        }
        match self.proto.end() {
            Ok(Progress::Over) => self.over(),
            Ok(_) => self.complete(),
            Err(err) => {
                let tail = open.reader.get_ref().get_ref().tail();
                let err = self.proto.error_in_tail(tail).unwrap_or(err);
                self.failed(err)
            }
        }
    }

    /// A read of the body failed.
    fn read_failed(&mut self, err: ReadError) -> Result<Step, Error> {
        let Some(open) = self.open.as_ref() else {
            return Ok(Step::Continue);
        };
        if open.tail {
            return self.complete();
        }
        let err = match err {
            ReadError::Io(err) => match http::read_error(err, open.io()) {
                Error::Cancelled => Error::Cancelled,
                err => {
                    let tail = open.reader.get_ref().get_ref().tail();
                    self.proto.error_in_tail(tail).unwrap_or(err)
                }
            },
            ReadError::Sse(err) => err.into(),
        };
        self.failed(err)
    }

    /// Waits out the scheduled wait, then opens the next attempt the way the ladder says.
    fn open_next(&mut self) -> Result<Step, Error> {
        if let Some(wait) = self.wait.take() {
            if !self.attempts.cancel().sleep(wait) {
                return self.end(Error::Cancelled);
            }
        }
        if self.attempts.cancel().is_cancelled() {
            return self.end(Error::Cancelled);
        }
        if !std::mem::take(&mut self.resend) && self.attempts.attempt() > 1 {
            self.rung = self.ladder.pop();
        }
        match self.rung {
            Some(Rung::Resume) => self.resume(),
            Some(Rung::Continue) => self.send(true),
            Some(Rung::Restart | Rung::Reconnect) | None => self.send(false),
        }
    }

    /// The attempt's I/O context, with the call's cancel handle and deadline.
    fn attempt_io(&self) -> Arc<AttemptIo> {
        AttemptIo::new(
            self.attempts.cancel(),
            self.limits,
            self.attempts.deadline(),
        )
    }

    /// Every header of a request: the defaults, unless a client header or an override of
    /// the same name replaces them; the client's (API key, the caller's headers), unless an
    /// override replaces them; the overrides.
    fn headers(
        &self,
        defaults: Vec<(HeaderName, HeaderValue)>,
        overrides: Vec<(HeaderName, HeaderValue)>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let client = &self.shared.headers;
        let overridden = |name: &HeaderName| overrides.iter().any(|(n, _)| n == name);
        let mut headers: Vec<_> = defaults
            .into_iter()
            .filter(|(name, _)| !client.iter().any(|(n, _)| n == name) && !overridden(name))
            .collect();
        headers.extend(client.iter().filter(|(n, _)| !overridden(n)).cloned());
        headers.extend(overrides);
        headers
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

    /// The current attempt ended: keep its timings.
    fn stop_clock(&mut self) {
        if let Some(clock) = self.clock.take() {
            let timings = clock.timings();
            log::debug!("{}", timings_line(&timings));
            self.timings.push(timings);
        }
    }

    fn clock_first_byte(&mut self) {
        if let Some(clock) = &mut self.clock {
            clock.first_byte = Some(clock.since_start());
        }
    }

    /// Sends the protocol's request (or its continuation) and opens the answer.
    fn send(&mut self, continuation: bool) -> Result<Step, Error> {
        let Outgoing {
            method,
            url,
            headers: defaults,
            overrides,
            body,
        } = self.proto.request(&self.shared, continuation);
        let url = url.into_owned();
        let body = body.map(std::borrow::Cow::into_owned);
        let mut headers = self.headers(defaults, overrides);
        let with_id = P::GENERATES && self.shared.replay_available();
        let conv_id = self.conv_id.clone().filter(|_| with_id);
        if let Some(id) = conv_id.as_deref().filter(|_| !self.conv_id_given) {
            if let Ok(mut value) = HeaderValue::from_str(id) {
                value.set_sensitive(true);
                headers.push((CONVERSATION_ID, value));
            }
        }
        let io = self.attempt_io();
        self.start_clock(&io);
        log::debug!(
            "attempt {}: {method} {}{}",
            self.attempts.attempt(),
            redact_userinfo(&url),
            if continuation { " (continuation)" } else { "" }
        );
        let request = Request {
            method,
            url: &url,
            headers: &headers,
            body: body.as_deref(),
        };
        let sent_id = conv_id.is_some();
        if sent_id {
            // This request replaces the server's stream for the id: offsets count anew.
            self.starts.clear();
            self.offset = 0;
            self.resume = None;
        }
        let result = self.shared.transport.send(&request, &io);
        self.generation_live |= sent_id;
        let response = match result {
            Ok(response) => response,
            Err(err) => return self.failed(err),
        };
        self.answered();
        if !(200..300).contains(&response.status) {
            let status = response.status;
            let err = http_error(response);
            if !continuation && self.proto.rejected(&self.shared, &err) {
                self.resend = true;
                return Ok(Step::Continue);
            }
            if continuation && (400..500).contains(&status) && !matches!(status, 408 | 429) {
                log::debug!("the server refused the continuation: {err}");
                self.shared.refuse_continuation();
                return self.pass_over(PassedOver::ContinuationRefused(status));
            }
            return self.failed(err);
        }
        if let Some(err) = unreadable_encoding(&response) {
            return self.failed(err);
        }
        let server = response
            .header("server")
            .or_else(|| response.header("llm_provider-server"));
        self.shared.observe_server(server);
        match self.proto.accept(&response) {
            Accept::EventStream { silence_from_head } => {
                self.stream_seen |= sent_id;
                if silence_from_head {
                    response.body.attempt().set_phase(Phase::Body);
                }
                let kind = if continuation {
                    BodyKind::Continuation
                } else {
                    BodyKind::Fresh
                };
                self.open_body(response, 0, &[], &[], kind);
                let attempt = self.attempts.attempt();
                match self.rung {
                    Some(Rung::Continue) => self.proto.recovered(Recovered::Continued { attempt }),
                    Some(Rung::Restart) => {
                        let reason = self.broken.as_ref().map_or(FailureKind::Other, Error::kind);
                        self.proto
                            .recovered(Recovered::Restarted { attempt, reason });
                    }
                    _ => {}
                }
                Ok(Step::Continue)
            }
            Accept::Whole => {
                if let Some(Rung::Restart) = self.rung {
                    let reason = self.broken.as_ref().map_or(FailureKind::Other, Error::kind);
                    let attempt = self.attempts.attempt();
                    self.proto
                        .recovered(Recovered::Restarted { attempt, reason });
                }
                match self.proto.whole(response) {
                    Ok(()) => self.complete(),
                    Err(err) => self.failed(err),
                }
            }
            Accept::Over => {
                log::debug!("{}: the stream is over", response.status);
                self.over()
            }
            Accept::Unexpected => {
                let err = unexpected_type(response);
                self.failed(err)
            }
        }
    }

    /// The server answered (any status).
    fn answered(&mut self) {
        self.attempts.server_answered();
        self.shared.server_answered();
        self.clock_first_byte();
    }

    /// Opens `response` for reading at offset `base` of the stream: `held` are the verified
    /// bytes just before it, `pending` verified bytes from `base` on that the parser reads
    /// before the body's own.
    fn open_body(
        &mut self,
        response: Response,
        base: u64,
        held: &[u8],
        pending: &[u8],
        kind: BodyKind,
    ) {
        let parser = self.proto.parser(&self.shared);
        let tap = BodyTap::new(response.body, base, held, pending);
        self.open = Some(Open {
            reader: EventReader::with_parser(BufReader::with_capacity(READ_BUFFER, tap), parser),
            base,
            kind,
            tail: false,
            evented: false,
        });
        self.proto.body_started(kind);
    }

    /// Asks the server to replay the stream from before the break; opens it if its first
    /// bytes are the ones received, passes the break on otherwise.
    fn resume(&mut self) -> Result<Step, Error> {
        let (Some(id), Some(plan)) = (self.conv_id.clone(), self.resume.clone()) else {
            return self.pass_over(PassedOver::NoReplayRoute);
        };
        // `known`: the server showed it has the routes (so a 404 means the stream is gone).
        let (shape, known) = match self.shared.replay_route() {
            ReplayRoute::Present(shape) => (shape, true),
            ReplayRoute::Absent(_) => return self.pass_over(PassedOver::NoReplayRoute),
            ReplayRoute::Unknown => self.probe_routes(&id),
        };
        let url = shape.replay_url(&self.shared.urls.api, &id, plan.from);
        let headers = self.headers(
            vec![(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            )],
            Vec::new(),
        );
        let io = self.attempt_io();
        self.start_clock(&io);
        log::debug!(
            "attempt {}: GET {} (replay from byte {}, {} bytes to verify)",
            self.attempts.attempt(),
            redact_userinfo(&url).replace(&id, &conversation::redacted(&id)),
            plan.from,
            plan.expect.len()
        );
        let request = Request {
            method: Method::GET,
            url: &url,
            headers: &headers,
            body: None,
        };
        let mut response = match self.shared.transport.send(&request, &io) {
            Ok(response) => response,
            Err(err) => return self.failed(err),
        };
        self.answered();
        let status = response.status;
        let sse = response.media_type() == "text/event-stream";
        if status == 200 && sse && unreadable_encoding(&response).is_none() {
            self.shared.set_replay_route(Some(shape));
            match replay::replay_matches(&mut response.body, &plan.expect) {
                Ok(true) => {}
                Ok(false) => {
                    log::warn!(
                        "the replay from byte {} does not match the {} bytes received there; \
                         not using it",
                        plan.from,
                        plan.expect.len()
                    );
                    return self.pass_over(PassedOver::NotVerified);
                }
                Err(err) => {
                    let err = http::read_error(err, response.body.attempt());
                    return self.failed(err);
                }
            }
            let base = plan.offset();
            let (held, pending) = plan.split();
            self.open_body(response, base, held, pending, BodyKind::Replay);
            self.stream_seen = true;
            self.resumed_before = true;
            self.broken = None;
            let attempt = self.attempts.attempt();
            self.proto.recovered(Recovered::Resumed {
                attempt,
                offset: base,
            });
            return Ok(Step::Continue);
        }
        drain(response.body);
        let why = match status {
            200..=299 => {
                self.shared.set_replay_route(None);
                PassedOver::NotEventStream
            }
            // The route speaks: the offset is lost (or malformed).
            400 => PassedOver::OffsetLost,
            404 if known => PassedOver::StreamGone,
            404 => {
                self.shared.set_replay_route(None);
                PassedOver::ResumeStatus(404)
            }
            405 | 501 => {
                self.shared.set_replay_route(None);
                PassedOver::ResumeStatus(status)
            }
            _ => PassedOver::ResumeStatus(status),
        };
        self.pass_over(why)
    }

    /// Finds which replay routes the server has (once per client): the lookup route, then
    /// the list route; a server with neither is asked for the replay itself (a gateway may
    /// pass only that route on). Returns the shape and whether the server showed it.
    fn probe_routes(&mut self, id: &str) -> (RouteShape, bool) {
        let api = self.shared.urls.api.clone();
        let json = HeaderValue::from_static("application/json");
        let body = replay::lookup_body(id);
        let lookup = self.probe(
            Method::POST,
            &replay::lookup_url(&api),
            Some(&body),
            vec![
                (header::CONTENT_TYPE, json.clone()),
                (header::ACCEPT, json.clone()),
            ],
            id,
        );
        if lookup.is_some() {
            self.shared.set_replay_route(Some(RouteShape::Query));
            return (RouteShape::Query, true);
        }
        let list = self.probe(
            Method::GET,
            &replay::list_url(&api),
            None,
            vec![(header::ACCEPT, json)],
            id,
        );
        if list.is_some() {
            self.shared.set_replay_route(Some(RouteShape::Path));
            return (RouteShape::Path, true);
        }
        // Neither route: a server (or a gateway's pass-through) may still replay.
        (RouteShape::Query, false)
    }

    /// One question to the replay routes: whether the server holds `id`, if it answered as
    /// the route does.
    fn probe(
        &mut self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        own: Vec<(HeaderName, HeaderValue)>,
        id: &str,
    ) -> Option<bool> {
        let headers = self.headers(own, Vec::new());
        let limits = Limits {
            first_byte: PROBE_LIMIT.min(self.limits.first_byte),
            idle: PROBE_LIMIT.min(self.limits.idle),
            ..self.limits
        };
        let io = AttemptIo::new(self.attempts.cancel(), limits, self.attempts.deadline());
        let request = Request {
            method: method.clone(),
            url,
            headers: &headers,
            body,
        };
        let response = self.shared.transport.send(&request, &io).ok()?;
        let status = response.status;
        let text = http::read_bounded(response.body, MAX_PROBE_BODY, PROBE_LIMIT);
        let holds = (status == 200)
            .then(|| replay::lookup_holds(&text, id))
            .flatten();
        log::debug!(
            "{method} {}: {status}{}",
            redact_userinfo(url),
            match holds {
                Some(true) => ", holds the stream",
                Some(false) => ", does not hold the stream",
                None => "",
            }
        );
        holds
    }

    /// The way being tried cannot be had: the next one, within the same retry.
    fn pass_over(&mut self, why: PassedOver) -> Result<Step, Error> {
        log::info!("{why}");
        match self.ladder.peek() {
            Some(next) => {
                let action = match next {
                    Rung::Continue => RetryAction::Continued,
                    Rung::Resume => RetryAction::Resumed {
                        offset: self.offset,
                    },
                    Rung::Restart => RetryAction::Restarted,
                    Rung::Reconnect => RetryAction::Reconnected {
                        last_event_id: None,
                    },
                };
                self.attempts.amend_last(action, why.to_string());
                Ok(Step::Continue)
            }
            None => {
                let err = self
                    .broken
                    .take()
                    .unwrap_or_else(|| Error::Config(why.to_string()));
                let err = self.attempts.give_up(err, false);
                self.end(err)
            }
        }
    }

    /// The answer is complete: reach the end of the body so the connection is pooled, then
    /// let the protocol check it.
    fn complete(&mut self) -> Result<Step, Error> {
        if let Some(open) = self.open.take() {
            drain(open.reader.into_inner());
        }
        self.stop_clock();
        self.attempts.note_tokens(self.proto.generated_tokens());
        let report = Report {
            retries: self.attempts.history().to_vec(),
            timings: self.timings.clone(),
        };
        self.generation_live = false;
        match self.proto.finish(report) {
            Ok(output) => {
                self.attempts.take_history();
                self.timings.clear();
                self.state = State::Complete(Box::new(output));
                Ok(Step::End)
            }
            // E.g. truncated tool-call arguments: a replay would repeat the same bytes.
            Err(err) => self.failed(err),
        }
    }

    /// The stream is over for good, without an output.
    fn over(&mut self) -> Result<Step, Error> {
        if let Some(open) = self.open.take() {
            self.proto.closed(open.reader.parser());
        }
        self.stop_clock();
        self.state = State::Over;
        Ok(Step::End)
    }

    /// The attempt failed: schedule one retry and the ways to carry on, or give up.
    fn failed(&mut self, err: Error) -> Result<Step, Error> {
        self.stop_clock();
        let secret = self.conv_id.clone();
        let secrets: Vec<&str> = secret.iter().map(String::as_str).collect();
        let err = self.shared.sanitized(err, &secrets);
        let open = self.open.take();
        let replaying = open.as_ref().is_some_and(|o| o.kind == BodyKind::Replay);
        if let Some(open) = &open {
            self.proto.closed(open.reader.parser());
            let tap = open.reader.get_ref().get_ref();
            let starts: Vec<u64> = self.starts.iter().copied().collect();
            // Verified from the earliest event start kept (or the stream's first byte), to the
            // last byte received: a partial event is checked too, so that a resume with no
            // complete event before the break still has bytes to verify.
            let from = replay::overlap_start(&starts, self.offset, tap.held_from())
                .or((self.offset == 0).then_some(0));
            let end = tap.end();
            self.resume = from.and_then(|from| {
                // `from` is at or before the offset, so `expect` holds the partial event.
                let partial = usize::try_from(end.checked_sub(self.offset)?).ok()?;
                if let Some(expect) = tap.held(from, end) {
                    return Some(ResumePlan {
                        from,
                        expect,
                        partial,
                    });
                }
                // The partial event is no longer held: the complete events alone, unless
                // that leaves nothing to verify after bytes were received.
                let expect = tap
                    .held(from, self.offset)
                    .filter(|expect| !expect.is_empty() || end == 0)?;
                Some(ResumePlan {
                    from,
                    expect,
                    partial: 0,
                })
            });
        } else if self.offset == 0 {
            self.resume.get_or_insert_with(ResumePlan::default);
        }
        drop(open);
        if matches!(err, Error::Cancelled) {
            return self.end(err);
        }
        if err.kind() == FailureKind::EmptyStream {
            if self.empty_seen {
                log::warn!("the server sent an empty event stream twice for the same request");
                let err = self.attempts.give_up(err, false);
                return self.end(err);
            }
            self.empty_seen = true;
        }
        let policy = self.attempts.policy();
        // A replay that ended cleanly but incomplete is the whole generation: the server
        // ended it that way, and replaying it again would end the same.
        let generation_over = replaying && err.kind() == FailureKind::IncompleteStream;
        let facts = Facts {
            kind: Some(err.kind()),
            delivered: self.proto.delivered(),
            resumable: P::GENERATES
                && policy.resume
                && self.conv_id.is_some()
                && self.generation_live
                && self.resume.is_some()
                && !generation_over
                && self.shared.replay_available(),
            continuable: P::GENERATES
                && policy.continuation
                && self.proto.can_continue()
                && self.shared.continues() == Known::Yes,
            restart_after_output: policy.retry_after_output,
            reconnects: P::RECONNECTS,
        };
        let ladder = recovery::ladder(&facts);
        let Some(first) = ladder.peek() else {
            log::debug!(
                "attempt {} failed, no way to carry on: {err}",
                self.attempts.attempt()
            );
            let err = self.attempts.give_up(err, false);
            return self.end(err);
        };
        let (action, wait) = match first {
            Rung::Resume => {
                let offset = self.resume.as_ref().map_or(0, ResumePlan::offset);
                let wait = if self.resumed_before {
                    Wait::Backoff
                } else {
                    Wait::AtMost(FIRST_RESUME_WAIT)
                };
                (RetryAction::Resumed { offset }, wait)
            }
            Rung::Continue => (RetryAction::Continued, Wait::Backoff),
            Rung::Restart => (RetryAction::Restarted, Wait::Backoff),
            Rung::Reconnect => (
                RetryAction::Reconnected {
                    last_event_id: self.proto.last_event_id(),
                },
                self.proto.wait(),
            ),
        };
        let broken = err.clone();
        match self.attempts.schedule(err, action, self.offset, wait) {
            Ok((delay, delay_source)) => {
                self.wait = Some(delay);
                self.ladder = ladder;
                self.proto.scheduled(&Scheduled {
                    retry: self.attempts.attempt().saturating_sub(1),
                    error: &broken,
                    delay,
                    delay_source,
                });
                self.broken = Some(broken);
                Ok(Step::Continue)
            }
            Err(err) => self.end(err),
        }
    }

    /// The call failed for good.
    fn end(&mut self, err: Error) -> Result<Step, Error> {
        if let Some(open) = self.open.take() {
            self.proto.closed(open.reader.parser());
        }
        self.release_server();
        self.state = State::Failed(err.clone());
        Err(err)
    }

    /// Ends the call now: the connection is closed and the server told to stop generating.
    /// Returns the report so far.
    pub(crate) fn stop(&mut self) -> Report {
        self.open = None;
        self.stop_clock();
        self.release_server();
        if self.is_running() {
            self.state = State::Taken;
        }
        Report {
            retries: self.attempts.take_history(),
            timings: std::mem::take(&mut self.timings),
        }
    }

    /// Tells a resumable server to stop a generation nobody will read (best effort, within
    /// [`RELEASE_LIMIT`], on a fresh cancel handle: the call's own may be cancelled) — only
    /// if a `200` event stream for the conversation was received.
    fn release_server(&mut self) {
        if !std::mem::take(&mut self.generation_live) || !self.stream_seen {
            return;
        }
        let Some(id) = self.conv_id.clone() else {
            return;
        };
        let shape = match self.shared.replay_route() {
            ReplayRoute::Present(shape) => shape,
            ReplayRoute::Unknown => RouteShape::Query,
            ReplayRoute::Absent(_) => return,
        };
        let url = shape.stop_url(&self.shared.urls.api, &id);
        let shown = redact_userinfo(&url).replace(&id, &conversation::redacted(&id));
        let headers = self.headers(Vec::new(), Vec::new());
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
        match self.shared.transport.send(&request, &io) {
            Ok(response) => {
                log::debug!("DELETE {shown}: {}", response.status);
                if response.status == 204 && self.shared.replay_route() == ReplayRoute::Unknown {
                    self.shared.set_replay_route(Some(shape));
                }
                drain(response.body);
            }
            Err(err) => log::debug!("DELETE {shown} failed: {err}"),
        }
    }
}

impl<P: Protocol> Drop for Call<P> {
    fn drop(&mut self) {
        if self.is_running() {
            self.open = None;
            self.release_server();
        }
    }
}

/// Output was handed to the caller: the current attempt's token times.
fn note_output(clock: &mut Option<Clock>) {
    if let Some(clock) = clock {
        let now = clock.since_start();
        clock.first_token.get_or_insert(now);
        clock.last_token = Some(now);
    }
}

/// A protocol whose caller pulls its events one at a time (chat, the Responses API).
pub(crate) trait PullEvents: Protocol {
    /// The borrowed event handed out.
    type Event<'a>
    where
        Self: 'a;

    /// Whether an event waits to be handed out.
    fn has_event(&mut self) -> bool;

    /// The next event waiting: a recovery notice first, then the accumulator's.
    fn next_event(&mut self) -> Option<Self::Event<'_>>;

    /// Whether `event` is output (text, reasoning, arguments): it times the first token.
    fn is_output(event: &Self::Event<'_>) -> bool;
}

/// The next event of a pull stream: steps the call until its protocol has one waiting, or
/// `None` once the call ended without one.
pub(crate) fn pull<P: PullEvents>(call: &mut Call<P>) -> Result<Option<P::Event<'_>>, Error> {
    while !call.proto.has_event() {
        if matches!(call.step()?, Step::End) && !call.proto.has_event() {
            return Ok(None);
        }
    }
    let Call { proto, clock, .. } = call;
    let event = proto.next_event();
    if event.as_ref().is_some_and(|e| P::is_output(e)) {
        note_output(clock);
    }
    Ok(event)
}

/// The next event of a pull stream, owned by `to_owned`: an error is yielded once, then
/// `None` (what a stream's `Iterator` hands out).
pub(crate) fn pull_owned<P: PullEvents, T>(
    call: &mut Call<P>,
    to_owned: impl FnOnce(P::Event<'_>) -> T,
) -> Option<Result<T, Error>> {
    if call.has_failed() {
        return None;
    }
    match pull(call) {
        Ok(event) => event.map(|e| Ok(to_owned(e))),
        Err(err) => Some(Err(err)),
    }
}

/// The history records of a call so far.
pub(crate) fn history<P: Protocol>(call: &Call<P>) -> &[RetryRecord] {
    call.attempts.history()
}
