//! [`EventSource`]: any Server-Sent Events endpoint as a pull-style stream that reconnects
//! as the WHATWG standard says, on the client's connection pool and failure handling — a
//! protocol of the driver whose one way of carrying on is to reconnect with
//! `Last-Event-ID`.

use super::attempts::{DelaySource, Wait};
use super::protocol::{Accept, Outgoing, Progress, Protocol, Recovered, Report, Scheduled};
use super::{Call, Setup, Shared, Step};
use crate::cancel::CancelHandle;
use crate::error::Error;
use crate::http::Response;
use crate::retry::{FailureKind, RetryPolicy};
use crate::sse::{Event, Item, Parser, ReadError};
use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use ureq::http::{HeaderName, HeaderValue, Method, header};

/// The media type an event stream must have.
const EVENT_STREAM: &str = "text/event-stream";
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const MIN_RECONNECTION_TIME: Duration = EventSource::MIN_RECONNECTION_TIME;
const MAX_LAST_EVENT_ID: usize = EventSource::MAX_LAST_EVENT_ID;

/// Builds an [`EventSource`]: from [`Client::events`](crate::Client::events) (sharing the
/// client's connection pool, TLS, proxy, timeouts, API key and headers) or
/// [`EventSource::builder`] (a default client of its own).
#[derive(Clone)]
pub struct EventSourceBuilder {
    shared: Result<Arc<Shared>, Error>,
    url: String,
    method: Method,
    body: Option<(String, Vec<u8>)>,
    headers: Vec<(String, String)>,
    last_event_id: String,
    retry: Option<RetryPolicy>,
    idle_timeout: Option<Duration>,
    comments: bool,
    reconnect_on_eof: bool,
    cancel: Option<CancelHandle>,
}

impl fmt::Debug for EventSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials as often as not.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("EventSourceBuilder")
            .field("url", &crate::redact::redact_userinfo(&self.url))
            .field("method", &self.method)
            .field("headers", &names)
            .field("last_event_id", &self.last_event_id)
            .field("retry", &self.retry)
            .field("comments", &self.comments)
            .field("reconnect_on_eof", &self.reconnect_on_eof)
            .finish_non_exhaustive()
    }
}

impl EventSourceBuilder {
    pub(crate) fn new(shared: Result<Arc<Shared>, Error>, url: String) -> Self {
        Self {
            shared,
            url,
            method: Method::GET,
            body: None,
            headers: Vec::new(),
            last_event_id: String::new(),
            retry: None,
            idle_timeout: None,
            comments: false,
            reconnect_on_eof: true,
            cancel: None,
        }
    }

    /// An extra header on every request of this source (e.g. MCP's `Mcp-Session-Id`). It
    /// replaces a client header or a default (`Accept`, `Cache-Control`, `Content-Type`) of
    /// the same name. `Last-Event-ID` is not allowed here: use
    /// [`last_event_id`](Self::last_event_id).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `POST` with this body (and `Content-Type`) on every connection, reconnects
    /// included, as MCP's Streamable HTTP transport does.
    pub fn post(mut self, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        self.method = Method::POST;
        self.body = Some((content_type.into(), body.into()));
        self
    }

    /// Starts from this last event ID: the first request already sends it as
    /// `Last-Event-ID` (to resume a feed read earlier), and events without an `id` field
    /// carry it until one arrives. Empty (the default) sends none.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// How reconnects are paced and bounded (default: the client's policy).
    /// `max_retries` and `max_elapsed` count reconnects in a row, since the last connection
    /// that delivered an event.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How long one read may wait for the server once the response has begun (default:
    /// the client's `idle_timeout`, 60 s). Keep-alive comments count as reads; time the
    /// caller spends between reads does not. An idle connection is dropped and reconnected.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Hands out comment lines as [`SourceEvent::Comment`] (default false: servers send
    /// them as keep-alives, which count as liveness either way).
    pub fn comments(mut self, comments: bool) -> Self {
        self.comments = comments;
        self
    }

    /// Whether a response body that ends cleanly is reconnected, as the standard says
    /// (default true). With false, a clean end ends the source
    /// ([`next_event`](EventSource::next_event) returns `Ok(None)`); failures still
    /// reconnect.
    pub fn reconnect_on_eof(mut self, reconnect: bool) -> Self {
        self.reconnect_on_eof = reconnect;
        self
    }

    /// Cancels the source from another thread: a blocked read, a connect or a wait between
    /// reconnects returns [`Error::Cancelled`] within a few milliseconds.
    pub fn cancel(mut self, cancel: CancelHandle) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Checks the settings. Nothing is sent until the first
    /// [`next_event`](EventSource::next_event).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not `http(s)://host...`, an `https` URL without
    /// the `tls` feature, an invalid header name or value, a `Last-Event-ID` header, a last
    /// event ID that cannot be sent as a header (control characters, longer than
    /// 4096 bytes), or a default client that cannot be built (see
    /// [`ClientBuilder::build`](crate::ClientBuilder::build)).
    pub fn build(self) -> Result<EventSource, Error> {
        check_url(&self.url)?;
        let shared = self.shared?;
        let mut given = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
            if name == LAST_EVENT_ID {
                return Err(Error::Config(
                    "set Last-Event-ID with EventSourceBuilder::last_event_id".into(),
                ));
            }
            let mut value = HeaderValue::from_str(value.trim())
                .map_err(|_| Error::Config(format!("invalid value for header {name}")))?;
            value.set_sensitive(true);
            given.push((name, value));
        }
        if !sendable(&self.last_event_id) {
            return Err(Error::Config(format!(
                "the last event ID cannot be sent as a Last-Event-ID header (control \
                 characters, or longer than {MAX_LAST_EVENT_ID} bytes): {:?}",
                crate::wire::truncate_chars(&self.last_event_id, 40)
            )));
        }
        let mut defaults = vec![
            (header::ACCEPT, HeaderValue::from_static(EVENT_STREAM)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        let body = match self.body {
            Some((content_type, body)) => {
                let value = HeaderValue::from_str(&content_type)
                    .map_err(|_| Error::Config(format!("invalid content type {content_type:?}")))?;
                defaults.push((header::CONTENT_TYPE, value));
                Some(body)
            }
            None => None,
        };
        let policy = self.retry.unwrap_or_else(|| shared.retry.clone());
        let mut limits = shared.limits;
        if let Some(idle) = self.idle_timeout {
            limits.idle = idle;
        }
        let proto = Feed {
            url: self.url,
            method: self.method,
            body,
            defaults,
            given,
            comments: self.comments,
            reconnect_on_eof: self.reconnect_on_eof,
            last_event_id: self.last_event_id,
            unsendable_reported: false,
            reconnection_time: None,
            notice: None,
        };
        // An event source has no natural end, so the client's call deadline does not
        // apply: cancel the source to bound it.
        let setup = Setup {
            policy,
            cancel: self.cancel.unwrap_or_default(),
            hook: None,
            jitter_seed: None,
            deadline: None,
            limits,
        };
        Ok(EventSource {
            call: Call::new(shared, proto, setup),
        })
    }
}

/// Whether `id` can be sent as `Last-Event-ID`: at most [`MAX_LAST_EVENT_ID`] bytes, no
/// control characters but tab (the SSE parser already keeps NUL, CR and LF out of ids).
/// Checked per event, so it allocates nothing.
fn sendable(id: &str) -> bool {
    id.len() <= MAX_LAST_EVENT_ID && id.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Accepts `http(s)://host[:port][/path][?query]`.
fn check_url(url: &str) -> Result<(), Error> {
    let shown = crate::redact::redact_userinfo(url);
    let uri = url
        .parse::<ureq::http::Uri>()
        .map_err(|e| Error::Config(format!("invalid URL {shown:?}: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(Error::Config(format!(
            "URL {shown:?} must start with http:// or https://"
        )));
    }
    if scheme == "https" && !cfg!(feature = "tls") {
        return Err(Error::Config(format!(
            "{shown:?} needs TLS, but oai-sse was built without the `tls` feature"
        )));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::Config(format!("URL {shown:?} has no host")));
    }
    Ok(())
}

/// An event feed as a protocol of the driver.
pub(crate) struct Feed {
    url: String,
    method: Method,
    body: Option<Vec<u8>>,
    /// `Accept`, `Cache-Control`, `Content-Type`: a client or source header replaces them.
    defaults: Vec<(HeaderName, HeaderValue)>,
    /// The source's own headers: they replace client headers of the same name.
    given: Vec<(HeaderName, HeaderValue)>,
    comments: bool,
    reconnect_on_eof: bool,
    /// The last event ID a reconnect sends: the last one that can go in a header.
    last_event_id: String,
    /// An id that cannot be sent was reported.
    unsendable_reported: bool,
    /// The last `retry` field's value, kept across connections.
    reconnection_time: Option<Duration>,
    /// A reconnect to hand out before anything else.
    notice: Option<Reconnect>,
}

impl Feed {
    /// An event's id: kept as the one to resume from if it can be sent.
    fn saw_id(&mut self, id: &str) {
        if id == self.last_event_id {
            return;
        }
        if sendable(id) {
            self.last_event_id.clear();
            self.last_event_id.push_str(id);
        } else if !std::mem::replace(&mut self.unsendable_reported, true) {
            log::warn!(
                "the event ID {:?} cannot be sent as Last-Event-ID (control characters, or \
                 longer than {MAX_LAST_EVENT_ID} bytes); a reconnect sends the last one that \
                 can ({:?})",
                crate::wire::truncate_chars(id, 40),
                self.last_event_id
            );
        }
    }
}

impl Protocol for Feed {
    type Output = ();
    const GENERATES: bool = false;
    const RECONNECTS: bool = true;

    fn request<'a>(&'a self, _shared: &'a Shared, _continuation: bool) -> Outgoing<'a> {
        let mut overrides = self.given.clone();
        if !self.last_event_id.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&self.last_event_id) {
                overrides.push((LAST_EVENT_ID, value));
            }
        }
        Outgoing {
            method: self.method.clone(),
            url: Cow::Borrowed(&self.url),
            headers: self.defaults.clone(),
            overrides,
            body: self.body.as_deref().map(Cow::Borrowed),
        }
    }

    fn accept(&self, response: &Response) -> Accept {
        if response.status == 204 {
            return Accept::Over;
        }
        if response.media_type() == EVENT_STREAM {
            // Silence is measured from the head on: the first event may be long in coming,
            // but a feed that says nothing (not even a keep-alive) for the idle limit is dead.
            Accept::EventStream {
                silence_from_head: true,
            }
        } else {
            Accept::Unexpected
        }
    }

    fn parser(&self, shared: &Shared) -> Parser {
        Parser::with_limits(shared.sse_limits).with_last_event_id(&self.last_event_id)
    }

    fn item(&mut self, item: &Item<'_>) -> Result<Progress, Error> {
        Ok(match item {
            Item::Event(event) => {
                self.saw_id(event.id);
                Progress::Ready
            }
            Item::Comment(_) if !self.comments => Progress::More,
            Item::Comment(_) => Progress::Ready,
            Item::Retry(ms) => {
                self.reconnection_time = Some(Duration::from_millis(*ms));
                Progress::Ready
            }
        })
    }

    fn end(&mut self) -> Result<Progress, Error> {
        if !self.reconnect_on_eof {
            return Ok(Progress::Over);
        }
        let end = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server ended the event stream",
        );
        Err(Error::io(FailureKind::UnexpectedEof, end))
    }

    fn closed(&mut self, parser: &Parser) {
        // An event without data dispatches nothing but still sets the last event ID.
        self.saw_id(parser.last_event_id());
        if let Some(ms) = parser.retry() {
            self.reconnection_time = Some(Duration::from_millis(ms));
        }
    }

    fn delivered(&self) -> bool {
        false
    }

    fn last_event_id(&self) -> Option<String> {
        (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone())
    }

    fn wait(&self) -> Wait {
        self.reconnection_time.map_or(Wait::Backoff, |time| {
            Wait::ReconnectionTime(time.max(MIN_RECONNECTION_TIME))
        })
    }

    fn scheduled(&mut self, scheduled: &Scheduled<'_>) {
        self.notice = Some(Reconnect {
            retry: scheduled.retry,
            reason: scheduled.error.kind(),
            error: scheduled.error.clone(),
            delay: scheduled.delay,
            delay_source: scheduled.delay_source,
            last_event_id: self.last_event_id.clone(),
        });
    }

    fn recovered(&mut self, _how: Recovered) {}

    fn finish(&mut self, _report: Report) -> Result<(), Error> {
        Ok(())
    }
}

/// One thing an [`EventSource`] hands out. Events and comments borrow from the reader's
/// buffers: no copy, no allocation per event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceEvent<'a> {
    /// A dispatched event: its type (`message` unless an `event` field said otherwise),
    /// its data, and the last event ID.
    Event(Event<'a>),
    /// A comment line (only with [`EventSourceBuilder::comments`]).
    Comment(&'a str),
    /// A valid `retry` field: the new reconnection time.
    Retry(Duration),
    /// The connection failed or ended; the source waits [`Reconnect::delay`] (during the
    /// next [`EventSource::next_event`]) and reconnects.
    Reconnect(Reconnect),
}

impl SourceEvent<'_> {
    /// This item with owned text, to keep or send to another thread.
    pub fn to_owned_event(&self) -> OwnedSourceEvent {
        match self {
            Self::Event(event) => OwnedSourceEvent::Event(OwnedEvent::from(*event)),
            Self::Comment(text) => OwnedSourceEvent::Comment((*text).to_owned()),
            Self::Retry(time) => OwnedSourceEvent::Retry(*time),
            Self::Reconnect(reconnect) => OwnedSourceEvent::Reconnect(reconnect.clone()),
        }
    }
}

/// [`SourceEvent`] with owned text: what the [`Iterator`] of an [`EventSource`] yields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OwnedSourceEvent {
    /// See [`SourceEvent::Event`].
    Event(OwnedEvent),
    /// See [`SourceEvent::Comment`].
    Comment(String),
    /// See [`SourceEvent::Retry`].
    Retry(Duration),
    /// See [`SourceEvent::Reconnect`].
    Reconnect(Reconnect),
}

/// An [`Event`] with owned text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedEvent {
    /// The event type.
    pub event: String,
    /// The data lines joined by LF.
    pub data: String,
    /// The last event ID at dispatch time (empty if none was ever set).
    pub id: String,
}

impl From<Event<'_>> for OwnedEvent {
    fn from(event: Event<'_>) -> Self {
        Self {
            event: event.event.to_owned(),
            data: event.data.to_owned(),
            id: event.id.to_owned(),
        }
    }
}

/// A reconnect the source is about to make.
///
/// The wait (the *reconnection time*) is the stream's last `retry:` value if it sent one —
/// at least that long, jittered upwards by the policy's `jitter`, capped at
/// `max_retry_after` — or else the policy's exponential backoff; a server's `Retry-After`
/// on a 429/503 wins when longer. When reconnects fail in a row, each waits the larger of
/// the reconnection time and the backoff.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reconnect {
    /// Reconnects in a row, this one included: 1 after a connection that delivered
    /// something, 2 if that reconnect failed too, and so on.
    pub retry: u32,
    /// Why the connection ended.
    pub reason: FailureKind,
    /// The failure itself (a clean end of the body is an `unexpected_eof` transport error).
    pub error: Error,
    /// The wait before the reconnect.
    pub delay: Duration,
    /// Where the wait comes from.
    pub delay_source: DelaySource,
    /// The `Last-Event-ID` the reconnect sends; empty: none.
    pub last_event_id: String,
}

/// Any Server-Sent Events endpoint, pulled item by item, reconnecting as the WHATWG
/// standard says. Get one from [`Client::events`](crate::Client::events) or [`EventSource::builder`].
///
/// # On the wire
///
/// The first [`EventSource::next_event`] sends the request (`GET`, or `POST` with a body)
/// with `Accept: text/event-stream` and `Cache-Control: no-cache`. A `2xx` answer of type
/// `text/event-stream` is read item by item through the zero-copy [`EventReader`](crate::sse::EventReader); a fresh
/// parser per connection is seeded with the last event ID, which (as the standard says)
/// belongs to the source and outlives each connection.
///
/// When the connection fails transiently (cut, reset, idle timeout, refused, a 408, 429,
/// 502, 503 or 504) — or the body simply ends, which for an event stream is a reason to
/// reconnect — the source hands out a [`SourceEvent::Reconnect`], then waits the
/// reconnection time and asks again with `Last-Event-ID` set to the last event ID (if it is
/// not empty). The reconnection time is the stream's last `retry:` value, else the retry
/// policy's backoff; see [`Reconnect`]. A `204 No Content` ends the source for good; any
/// other status, a wrong content type, or a limit crossed fails it without reconnecting.
///
/// The retry budget ([`RetryPolicy::max_retries`], `max_elapsed`) counts reconnects in a
/// row: a connection that delivers anything (an event, a comment, a `retry` field) renews
/// it, so a feed that runs for days survives any number of separate outages.
///
/// Nothing is lost or doubled across a reconnect when the server honours `Last-Event-ID`
/// by sending exactly the events after that id: the ID advances only when an event is
/// dispatched whole, so an event cut in half is asked for again. Events without an `id`
/// field after the last one that had it carry that older ID, so a server resuming from it
/// sends them again; and a server that ignores the header starts over. Both are the
/// server's business.
///
/// [`next_event`](Self::next_event) hands out borrowed items; as an [`Iterator`] the source
/// yields owned ones (`Result<OwnedSourceEvent, Error>`) for plain `for` loops. Dropping the
/// source closes its connection.
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "mock")] {
/// use oai_sse::mock::{MockServer, Script};
/// use oai_sse::{EventSource, SourceEvent};
///
/// // A feed of 3 events whose server answers 204 once the client has them all.
/// let server = MockServer::start(Script::new())?;
/// let url = format!("{}/events?count=3&end=204", server.base_url());
///
/// let mut source = EventSource::builder(url).build()?;
/// let mut ids = Vec::new();
/// while let Some(item) = source.next_event()? {
///     match item {
///         SourceEvent::Event(event) => ids.push(event.id.to_owned()),
///         SourceEvent::Reconnect(r) => println!("reconnecting in {:?}: {}", r.delay, r.reason),
///         _ => {}
///     }
/// }
/// assert_eq!(ids, ["1", "2", "3"]);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EventSource {
    call: Call<Feed>,
}

impl fmt::Debug for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("url", &crate::redact::redact_userinfo(&self.call.proto.url))
            .field("method", &self.call.proto.method)
            .field("last_event_id", &self.last_event_id())
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl EventSource {
    /// The shortest wait before a reconnect, whatever the stream's `retry:` field says: the
    /// standard's reconnection time is a minimum the server may raise, not a way to make the
    /// client spin (a feed sending `retry: 0` and closing would otherwise be reconnected
    /// thousands of times a second). Waits from the caller's own [`RetryPolicy`] are kept as
    /// given.
    pub const MIN_RECONNECTION_TIME: Duration = Duration::from_millis(100);

    /// The longest last event ID sent as `Last-Event-ID`: a longer one would not fit a
    /// request head (and no server needs it). An ID beyond it, or one with control
    /// characters a header cannot carry, is reported once (a `warn` log line) and the last
    /// ID that can be sent is kept instead — never a silent replay from the start.
    pub const MAX_LAST_EVENT_ID: usize = 4096;

    /// The next item, or `None` once the server ended the stream for good (`204 No
    /// Content`, or a clean end with [`reconnect_on_eof(false)`](EventSourceBuilder::reconnect_on_eof)).
    /// Connects, reconnects and waits inside; each reconnect is handed out first as a
    /// [`SourceEvent::Reconnect`].
    ///
    /// # Errors
    ///
    /// The failure once reconnecting cannot help: a status that is not transient (404,
    /// 401, 500...), a content type other than `text/event-stream`, a limit crossed, the
    /// retry budget spent ([`Error::AfterRetries`]), or [`Error::Cancelled`]. Every later
    /// call returns the same error.
    pub fn next_event(&mut self) -> Result<Option<SourceEvent<'_>>, Error> {
        loop {
            if let Some(reconnect) = self.call.proto.notice.take() {
                return Ok(Some(SourceEvent::Reconnect(reconnect)));
            }
            match self.call.step()? {
                Step::Continue => {}
                Step::Ready => break,
                Step::End => return Ok(None),
            }
        }
        // Fetched after the loop: see `EventReader::advance`.
        let Some(open) = self.call.open.as_mut() else {
            return Ok(None);
        };
        match open.reader.item() {
            Ok(Some(Item::Event(event))) => Ok(Some(SourceEvent::Event(event))),
            Ok(Some(Item::Comment(text))) => Ok(Some(SourceEvent::Comment(text))),
            Ok(Some(Item::Retry(ms))) => Ok(Some(SourceEvent::Retry(Duration::from_millis(ms)))),
            Ok(None) => Ok(None),
            // Not reached with a `BufReader`, which hands its buffer back without I/O. The
            // reader has latched the failure: the next call reconnects.
            Err(ReadError::Io(err)) => Err(Error::io(FailureKind::Other, err)),
            Err(ReadError::Sse(err)) => Err(err.into()),
        }
    }

    /// The last event ID: what a reconnect would send now (empty: nothing).
    pub fn last_event_id(&self) -> &str {
        let now = self
            .call
            .open
            .as_ref()
            .map(|o| o.reader.parser().last_event_id());
        match now {
            Some(id) if sendable(id) => id,
            _ => &self.call.proto.last_event_id,
        }
    }

    /// The reconnection time from the stream's last `retry` field, if one came (a reconnect
    /// waits at least 100 ms whatever it says).
    pub fn reconnection_time(&self) -> Option<Duration> {
        self.call.proto.reconnection_time
    }

    /// A handle that cancels this source from another thread (it then fails with
    /// [`Error::Cancelled`]).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.call.attempts.cancel().clone()
    }
}

impl Iterator for EventSource {
    type Item = Result<OwnedSourceEvent, Error>;

    /// The next item, owned; an error is yielded once, then the iteration ends.
    fn next(&mut self) -> Option<Self::Item> {
        if self.call.has_failed() {
            return None;
        }
        match self.next_event() {
            Ok(item) => item.map(|item| Ok(item.to_owned_event())),
            Err(err) => Some(Err(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in [
            "http://127.0.0.1:8080/v1/events",
            "HTTP://[::1]:9/x?a=b",
            "http://h",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1:8080/x",
            "ftp://h/x",
            "http://",
            "http:///x",
            "/x",
        ] {
            assert!(matches!(check_url(bad), Err(Error::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let url = "http://127.0.0.1:9/events";
        for builder in [
            EventSource::builder(url).header("bad name", "x"),
            EventSource::builder(url).header("x-ok", "bad\nvalue"),
            EventSource::builder(url).header("Last-Event-ID", "3"),
            EventSource::builder(url).post("bad\ntype", "{}"),
            EventSource::builder("ftp://h/x"),
        ] {
            assert!(matches!(builder.build(), Err(Error::Config(_))));
        }
    }

    #[test]
    fn sources_move_to_other_threads() {
        fn send<T: Send>() {}
        send::<EventSource>();
        send::<EventSourceBuilder>();
        send::<OwnedSourceEvent>();
    }

    #[test]
    fn header_values_never_print() {
        let builder = EventSource::builder("http://alice:pw-123@127.0.0.1:9/events")
            .header("Mcp-Session-Id", "secret-session-456");
        let source = builder.clone().build().expect("valid");
        let shown = format!("{builder:?} {source:?}");
        for secret in ["pw-123", "secret-session"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
