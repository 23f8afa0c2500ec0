//! The blocking chat client: one HTTP attempt over ureq, read through the SSE reader into
//! the accumulator, wrapped in the retry loop.
//!
//! Every attempt runs on its own ureq agent. That costs a fresh connection per attempt (no
//! keep-alive pool across calls), and buys two things: the watchdog can shut one attempt's
//! socket without touching any other call, and a stale pooled connection can never eat the
//! first request of a turn.

use crate::cancel::{CancelHandle, WatchLimits, Watchdog};
use crate::chat::{
    Accumulator, ApiError, ChatLimits, ChatRequest, ChatResponse, OwnedStreamEvent, Progress,
    StreamEvent, response_from_completion_json,
};
use crate::error::{Error, HttpError, RetriesExhausted};
use crate::retry::{Decision, RetryPolicy, RetryRecord, Rng, decide};
use crate::sse::{EventReader, Item, Limits as SseLimits, ReadError};
use std::fmt;
use std::io::{self, BufReader, Read};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Most bytes read from an error response or an unexpected body.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Read buffer for the event stream: a few chunks per refill, small for edge machines.
const READ_BUFFER: usize = 16 << 10;

/// An API key. `Debug` and `Display` print `<redacted>`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where requests go through a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProxyConfig {
    /// From `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, honouring `NO_PROXY` (ureq's default).
    #[default]
    FromEnv,
    /// Never use a proxy.
    None,
    /// This proxy (`http://host:port`, `socks5://...` needs ureq's socks feature).
    Url(String),
}

/// Builds a [`Client`]. Every setting has a default chosen for LLM servers; see each method.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<ApiKey>,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    proxy: ProxyConfig,
    sse_limits: SseLimits,
    chat_limits: ChatLimits,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/v1".into(),
            api_key: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            deadline: None,
            retry: RetryPolicy::default(),
            proxy: ProxyConfig::FromEnv,
            sse_limits: SseLimits::default(),
            chat_limits: ChatLimits::default(),
        }
    }
}

impl ClientBuilder {
    /// The server's base URL (default `http://127.0.0.1:8080/v1`). `http://host:port` gets
    /// `/v1` added; a URL already ending in `/chat/completions` is used as it is; any other
    /// path (`https://openrouter.ai/api/v1`) gets `/chat/completions` appended.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sends `Authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// An extra header on every request (e.g. `OpenAI-Organization`, a gateway's routing key).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Limit on establishing a connection, DNS and TLS included (default 10 s: a healthy
    /// server accepts in milliseconds; a dead host should fail fast and be retried).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Limit from sending the request to the first byte of the response body (default
    /// 300 s: prompt evaluation of a long context on a small machine takes minutes).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// Limit between two reads of the body once it flows (default 60 s). Keep-alive
    /// comments count as reads. There is deliberately no total body timeout, which would
    /// kill long healthy generations.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Limit on a whole call, retries and waits included (default none).
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// How transient failures are retried (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Shorthand for the policy's `max_retries`.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// Proxy selection (default: from the environment, as ureq does).
    pub fn proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = proxy;
        self
    }

    /// Bounds on SSE lines and events.
    pub fn sse_limits(mut self, limits: SseLimits) -> Self {
        self.sse_limits = limits;
        self
    }

    /// Bounds on the aggregated response.
    pub fn chat_limits(mut self, limits: ChatLimits) -> Self {
        self.chat_limits = limits;
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not `http(s)://`, an `https` URL without the
    /// `tls` feature, an invalid header name or value, or an invalid proxy URL.
    pub fn build(self) -> Result<Client, Error> {
        let url = chat_completions_url(&self.base_url)?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            let name = ureq::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
            let value = ureq::http::HeaderValue::from_str(&value)
                .map_err(|_| Error::Config(format!("invalid value for header {name}")))?;
            headers.push((name, value));
        }
        let auth = match &self.api_key {
            Some(key) => {
                let mut value = ureq::http::HeaderValue::from_str(&format!("Bearer {}", key.0))
                    .map_err(|_| {
                        Error::Config("the API key has characters not allowed in a header".into())
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let proxy = match self.proxy {
            ProxyConfig::FromEnv => ureq::Proxy::try_from_env(),
            ProxyConfig::None => None,
            ProxyConfig::Url(url) => Some(
                ureq::Proxy::new(&url)
                    .map_err(|e| Error::Config(format!("invalid proxy {url:?}: {e}")))?,
            ),
        };
        let agent_config = ureq::Agent::config_builder()
            // Error statuses are read and classified here, body included.
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_resolve(Some(self.connect_timeout))
            // Time to headers is also bounded by the watchdog's first-byte limit; this makes
            // ureq report it with its own error if it fires first.
            .timeout_recv_response(Some(self.first_byte_timeout))
            .proxy(proxy)
            .max_redirects(0)
            .user_agent(concat!("oai-sse/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            inner: Arc::new(Inner {
                url,
                auth,
                headers,
                agent_config,
                watch: WatchLimits {
                    first_byte: self.first_byte_timeout,
                    idle: self.idle_timeout,
                    deadline: self.deadline,
                },
                retry: self.retry,
                sse_limits: self.sse_limits,
                chat_limits: self.chat_limits,
            }),
        })
    }
}

/// `base` → the chat-completions endpoint (see [`ClientBuilder::base_url`]).
fn chat_completions_url(base: &str) -> Result<String, Error> {
    let trimmed = base.trim().trim_end_matches('/');
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
            if !cfg!(feature = "tls") {
                return Err(Error::Config(format!(
                    "{base:?} needs TLS, but oai-sse was built without the `tls` feature"
                )));
            }
            rest
        }
        _ => {
            return Err(Error::Config(format!(
                "base URL {base:?} must start with http:// or https://"
            )));
        }
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::Config(format!("base URL {base:?} has no host")));
    }
    let url = if trimmed.ends_with("/chat/completions") {
        trimmed.to_owned()
    } else if rest.contains('/') {
        format!("{trimmed}/chat/completions")
    } else {
        format!("{trimmed}/v1/chat/completions")
    };
    url.parse::<ureq::http::Uri>()
        .map_err(|e| Error::Config(format!("invalid base URL {base:?}: {e}")))?;
    Ok(url)
}

/// Per-call settings.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Cancels the call from another thread.
    pub cancel: Option<CancelHandle>,
    /// Replaces the client's retry policy for this call.
    pub retry: Option<RetryPolicy>,
    /// Seeds the backoff jitter (for reproducible tests); random when `None`.
    pub jitter_seed: Option<u64>,
    /// Called before each backoff wait, e.g. to show "retry 1/3 after 262 ms: ..." to a
    /// user. (Output already delivered is announced separately by
    /// [`StreamEvent::Restart`] when the next attempt starts.)
    pub on_retry: Option<RetryHook>,
}

/// A callback told about each retry; see [`CallOptions::on_retry`].
pub type RetryHook = Arc<dyn Fn(&RetryNotice<'_>) + Send + Sync>;

/// What [`CallOptions::on_retry`] is told.
#[derive(Debug)]
pub struct RetryNotice<'a> {
    /// The retry about to happen (1-based).
    pub retry: u32,
    /// The policy's `max_retries`.
    pub max_retries: u32,
    /// The wait before it.
    pub delay: Duration,
    /// Why the attempt failed.
    pub error: &'a Error,
}

impl fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallOptions")
            .field("cancel", &self.cancel)
            .field("retry", &self.retry)
            .field("jitter_seed", &self.jitter_seed)
            .field("on_retry", &self.on_retry.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

/// A streaming chat client for one OpenAI-compatible server. Build once, share freely:
/// it is `Send + Sync` and cloning it is cheap.
///
/// # Examples
///
/// ```no_run
/// use oai_sse::{ChatRequest, Client, Message, StreamEvent};
///
/// let client = Client::builder().base_url("http://127.0.0.1:8080/v1").build()?;
/// let request = ChatRequest::new("qwen3", vec![Message::user("Say hello")]);
/// let response = client.chat_stream(&request, |event| {
///     if let StreamEvent::Content { text, .. } = event {
///         print!("{text}");
///     }
/// })?;
/// println!("\n{} retries", response.retries.len());
/// # Ok::<(), oai_sse::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    auth: Option<ureq::http::HeaderValue>,
    headers: Vec<(ureq::http::HeaderName, ureq::http::HeaderValue)>,
    agent_config: ureq::config::Config,
    watch: WatchLimits,
    retry: RetryPolicy,
    sse_limits: SseLimits,
    chat_limits: ChatLimits,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("api_key", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("watch", &self.watch)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A call running on its own thread: owned events arrive on `events`; [`join`](Self::join)
/// returns the result.
#[derive(Debug)]
pub struct ChatThread {
    /// The deltas as they arrive. The channel is unbounded; its size is bounded by the
    /// response size limit.
    pub events: mpsc::Receiver<OwnedStreamEvent>,
    cancel: CancelHandle,
    handle: JoinHandle<Result<ChatResponse, Error>>,
}

impl ChatThread {
    /// Cancels the call.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A handle that cancels the call from elsewhere.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Waits for the call to end.
    ///
    /// # Errors
    ///
    /// The call's error.
    pub fn join(self) -> Result<ChatResponse, Error> {
        self.handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client for `base_url` with every other setting at its default.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid URL.
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::builder().base_url(base_url).build()
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Sends `request` (with `stream: true`) and returns the aggregated response.
    ///
    /// # Errors
    ///
    /// See [`Error`]; transient failures are retried first.
    pub fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, Error> {
        self.chat_with(request, &CallOptions::default(), |_| {})
    }

    /// Like [`chat`](Self::chat), handing each delta to `on_event` as it arrives.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn chat_stream(
        &self,
        request: &ChatRequest,
        on_event: impl FnMut(&StreamEvent<'_>),
    ) -> Result<ChatResponse, Error> {
        self.chat_with(request, &CallOptions::default(), on_event)
    }

    /// The general form: streaming with per-call options (cancel handle, retry policy).
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn chat_with(
        &self,
        request: &ChatRequest,
        options: &CallOptions,
        mut on_event: impl FnMut(&StreamEvent<'_>),
    ) -> Result<ChatResponse, Error> {
        self.run(request, options, &mut on_event)
    }

    /// Runs the call on a new thread and delivers owned events over a channel.
    pub fn chat_in_thread(&self, request: ChatRequest, mut options: CallOptions) -> ChatThread {
        let cancel = options.cancel.get_or_insert_with(CancelHandle::new).clone();
        let (tx, events) = mpsc::channel();
        let client = self.clone();
        let handle = std::thread::spawn(move || {
            // A receiver that hung up only loses the live view; the call still completes.
            client.chat_with(&request, &options, |event| {
                let _ = tx.send(event.to_owned_event());
            })
        });
        ChatThread {
            events,
            cancel,
            handle,
        }
    }

    fn run(
        &self,
        request: &ChatRequest,
        options: &CallOptions,
        on_event: &mut dyn FnMut(&StreamEvent<'_>),
    ) -> Result<ChatResponse, Error> {
        let policy = options.retry.as_ref().unwrap_or(&self.inner.retry);
        let cancel = options.cancel.clone().unwrap_or_default();
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let mut streaming = request.clone();
        streaming.stream = Some(true);
        let expect = (streaming.usage_requested(), streaming.choices_requested());
        let body = serde_json::to_vec(&streaming)
            .map_err(|e| Error::Config(format!("request does not serialize: {e}")))?;
        let mut rng = options
            .jitter_seed
            .map_or_else(Rng::from_entropy, Rng::seeded);
        let watchdog = Watchdog::start(&cancel, self.inner.watch);
        let mut history: Vec<RetryRecord> = Vec::new();
        let mut attempt: u32 = 1;
        loop {
            log::debug!("attempt {attempt}: POST {}", self.inner.url);
            let agent = self.inner.agent_config.new_agent();
            watchdog.arm(&agent);
            let mut delivered = false;
            let result = self.attempt(&agent, &body, expect, &watchdog, &mut |event| {
                delivered = true;
                on_event(event);
            });
            watchdog.disarm();
            let err = match result {
                Ok(mut response) => {
                    if attempt > 1 {
                        log::info!(
                            "recovered on attempt {attempt} after {} retries",
                            history.len()
                        );
                    }
                    response.retries = history;
                    return Ok(response);
                }
                Err(err) => err,
            };
            let retries_done = attempt - 1;
            let decision = decide(
                &err,
                policy,
                retries_done,
                delivered,
                watchdog.elapsed(),
                self.inner.watch.deadline,
                SystemTime::now(),
                &mut rng,
            );
            let delay = match decision {
                Decision::Retry(delay) => delay,
                Decision::GiveUp => {
                    log::debug!("attempt {attempt} failed, not retried: {err}");
                    return Err(err);
                }
                Decision::Exhausted if history.is_empty() => {
                    // No retry was allowed at all: the error speaks for itself.
                    log::debug!("attempt {attempt} failed, no retries allowed: {err}");
                    return Err(err);
                }
                Decision::Exhausted => {
                    log::warn!("giving up after {attempt} attempts: {err}");
                    return Err(Error::RetriesExhausted(Box::new(RetriesExhausted {
                        attempts: attempt,
                        last: err,
                        history,
                    })));
                }
            };
            let reason = err.kind();
            log::warn!(
                "retry {}/{} after {} ms: {err}",
                retries_done + 1,
                policy.max_retries,
                delay.as_millis()
            );
            if let Some(hook) = &options.on_retry {
                hook(&RetryNotice {
                    retry: retries_done + 1,
                    max_retries: policy.max_retries,
                    delay,
                    error: &err,
                });
            }
            history.push(RetryRecord {
                attempt,
                reason,
                delay_ms: delay.as_millis() as u64,
            });
            if !cancel.sleep(delay) {
                return Err(Error::Cancelled);
            }
            attempt += 1;
            if delivered {
                on_event(&StreamEvent::Restart { attempt, reason });
            }
        }
    }

    /// One HTTP exchange.
    fn attempt(
        &self,
        agent: &ureq::Agent,
        body: &[u8],
        expect: (bool, u32),
        watchdog: &Watchdog,
        on_event: &mut dyn FnMut(&StreamEvent<'_>),
    ) -> Result<ChatResponse, Error> {
        let inner = &self.inner;
        let mut request = agent
            .post(&inner.url)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream");
        if let Some(auth) = &inner.auth {
            request = request.header("authorization", auth.clone());
        }
        for (name, value) in &inner.headers {
            request = request.header(name.clone(), value.clone());
        }
        let response = request
            .send(body)
            .map_err(|e| interrupted(watchdog).unwrap_or_else(|| Error::ureq(e)))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (retry_after, retry_after_ms, should_retry) = (
            header("retry-after"),
            header("retry-after-ms"),
            header("x-should-retry"),
        );
        let content_type = response
            .body()
            .mime_type()
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = Watched {
            inner: response.into_body().into_reader(),
            watchdog,
        };
        if !(200..300).contains(&status) {
            let text = read_bounded(body, MAX_ERROR_BODY);
            return Err(Error::Http(Box::new(HttpError {
                status,
                error: ApiError::from_body(&text),
                retry_after,
                retry_after_ms,
                should_retry,
            })));
        }
        match content_type.as_str() {
            "text/event-stream" | "" => self.read_stream(body, expect, watchdog, on_event),
            "application/json" => {
                // A server that ignored `stream: true` sends the whole completion at once.
                let limit = inner.chat_limits.max_response_bytes as u64 + MAX_ERROR_BODY;
                let mut text = Vec::new();
                body.take(limit)
                    .read_to_end(&mut text)
                    .map_err(|e| interrupted(watchdog).unwrap_or_else(|| Error::io(e)))?;
                Ok(response_from_completion_json(&text)?)
            }
            _ => {
                let text = read_bounded(body, 1024);
                Err(Error::UnexpectedContentType {
                    content_type,
                    snippet: ApiError::from_body(&text).message,
                })
            }
        }
    }

    fn read_stream(
        &self,
        body: impl Read,
        (usage_requested, choices): (bool, u32),
        watchdog: &Watchdog,
        on_event: &mut dyn FnMut(&StreamEvent<'_>),
    ) -> Result<ChatResponse, Error> {
        let inner = &self.inner;
        let mut accumulator =
            Accumulator::with_limits(usage_requested, inner.chat_limits).expect_choices(choices);
        let source = BufReader::with_capacity(READ_BUFFER, body);
        let mut events = EventReader::with_limits(source, inner.sse_limits);
        loop {
            match events.next_item() {
                Ok(Some(Item::Event(event))) => {
                    if accumulator.push_event(event.event, event.data, on_event)?
                        == Progress::Complete
                    {
                        // Done, even if the server holds the connection open without [DONE].
                        break;
                    }
                }
                Ok(Some(Item::Comment(_) | Item::Retry(_))) => {}
                Ok(None) => {
                    // Shutting the socket can look like a clean end: ask the watchdog first.
                    if let Some(err) = interrupted(watchdog) {
                        return Err(err);
                    }
                    break;
                }
                Err(ReadError::Io(err)) => {
                    return Err(interrupted(watchdog).unwrap_or_else(|| Error::io(err)));
                }
                Err(ReadError::Sse(err)) => return Err(err.into()),
            }
        }
        Ok(accumulator.finish()?)
    }
}

/// The watchdog's reason, if it interrupted the attempt.
fn interrupted(watchdog: &Watchdog) -> Option<Error> {
    watchdog.fired().map(|(kind, after)| match kind {
        crate::FailureKind::Cancelled => Error::Cancelled,
        kind => Error::Timeout { kind, after },
    })
}

/// Reads at most `limit` bytes, keeping what arrived before any error.
fn read_bounded(body: impl Read, limit: u64) -> Vec<u8> {
    let mut text = Vec::new();
    if let Err(err) = body.take(limit).read_to_end(&mut text) {
        log::debug!("error body cut short: {err}");
    }
    text
}

/// A body reader that tells the watchdog whenever bytes arrive.
struct Watched<'w, R> {
    inner: R,
    watchdog: &'w Watchdog,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.watchdog.saw_bytes();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalization() {
        let table = [
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:8080/",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:8080/v1",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:8080/v1/",
                "http://127.0.0.1:8080/v1/chat/completions",
            ),
            ("http://h/api/v1", "http://h/api/v1/chat/completions"),
            (
                "http://h/v1/chat/completions",
                "http://h/v1/chat/completions",
            ),
            (
                " HTTP://[::1]:9000 ",
                "HTTP://[::1]:9000/v1/chat/completions",
            ),
        ];
        for (base, want) in table {
            assert_eq!(
                chat_completions_url(base).ok().as_deref(),
                Some(want),
                "{base}"
            );
        }
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://h/v1",
            "http://",
            "http:///v1",
            "http://h h/v1",
        ] {
            assert!(
                matches!(chat_completions_url(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn api_key_never_prints() {
        let client = Client::builder()
            .api_key("sk-secret-123")
            .build()
            .expect("valid");
        let shown = format!(
            "{client:?} {:?} {}",
            ApiKey::new("sk-secret-123"),
            ApiKey::new("sk-secret-123")
        );
        assert!(!shown.contains("sk-secret"), "{shown}");
    }

    #[test]
    fn bad_settings_are_config_errors() {
        assert!(matches!(
            Client::builder().header("bad name", "x").build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder().header("x-ok", "bad\nvalue").build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder().api_key("line\nbreak").build(),
            Err(Error::Config(_))
        ));
    }
}
