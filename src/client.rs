//! The client: its builder, the settings every call shares (one connection pool, the retry
//! policy, limits, trust), and the entry points — [`Client::stream`] for a pull-style
//! [`ChatStream`], and the conveniences over it ([`Client::chat`], [`Client::chat_stream`],
//! [`Client::chat_in_thread`]).

use crate::attempts::RetryHook;
use crate::cancel::CancelHandle;
use crate::chat::{ChatLimits, ChatRequest, ChatResponse, OwnedStreamEvent, StreamEvent};
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::sse::Limits as SseLimits;
use crate::stream::ChatStream;
use crate::stream::ERROR_BODY_TIME;
use crate::transport::{self, AttemptIo, Limits, Request, TlsSettings, Transport};
use std::fmt;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ureq::http::{HeaderName, HeaderValue, Method};

/// How long the rest of a complete response (the chunked terminator) may take before the
/// connection is dropped instead of pooled.
const DRAIN_LIMIT: Duration = Duration::from_millis(50);
/// How long a server found without the stream-replay route is not asked again.
const REPLAY_MEMORY: Duration = Duration::from_secs(600);
/// Most bytes read from a model list.
const MAX_MODEL_LIST: u64 = 1 << 20;
/// Events a [`ChatThread`] channel holds before the call waits for its reader.
const THREAD_CHANNEL: usize = 64;

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
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ProxyConfig {
    /// From `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, honouring `NO_PROXY` (ureq's default).
    #[default]
    FromEnv,
    /// Never use a proxy.
    None,
    /// This proxy (`http://host:port`, `http://user:password@host:port`).
    Url(String),
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FromEnv => f.write_str("FromEnv"),
            Self::None => f.write_str("None"),
            Self::Url(url) => f
                .debug_tuple("Url")
                .field(&crate::redact::redact_userinfo(url))
                .finish(),
        }
    }
}

/// Builds a [`Client`]. Every setting has a default chosen for LLM servers; see each method.
#[derive(Clone)]
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
    root_pems: Vec<(Vec<u8>, String)>,
    root_files: Vec<PathBuf>,
    roots_from_env: bool,
    platform_verifier: bool,
    pinned: Vec<(String, Vec<IpAddr>)>,
    split_think: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials as often as not (Azure's `api-key`, gateway keys).
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ClientBuilder")
            .field("base_url", &crate::redact::redact_userinfo(&self.base_url))
            .field("api_key", &self.api_key)
            .field("headers", &header_names)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("proxy", &self.proxy)
            .field("root_certificates", &self.root_pems.len())
            .field("root_certificate_files", &self.root_files)
            .field("split_think", &self.split_think)
            .finish_non_exhaustive()
    }
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
            root_pems: Vec::new(),
            root_files: Vec::new(),
            roots_from_env: true,
            platform_verifier: false,
            pinned: Vec::new(),
            split_think: true,
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

    /// An extra header on every request (e.g. `OpenAI-Organization`, a gateway's routing
    /// key). Values never appear in `Debug` output.
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

    /// How long one read of the body may wait for the server once the body flows
    /// (default 60 s). Keep-alive comments count as reads; time the caller spends between
    /// reads (a slow callback, a blocked pipe) does not. There is deliberately no total body
    /// timeout, which would kill long healthy generations.
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

    /// Shorthand for the policy's `resume`: continue a broken stream where it broke on
    /// servers that support it (default on; see the README's "Resume, don't restart").
    pub fn resume(mut self, resume: bool) -> Self {
        self.retry.resume = resume;
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

    /// Whether content that opens with `<think>` is split off as reasoning, up to
    /// `</think>` (default true): models served without a reasoning parser (llama.cpp with
    /// `--reasoning-format none`, older Ollama, some gateways) send their thinking that way.
    /// It then arrives as [`StreamEvent::Reasoning`] and in the response's reasoning; see
    /// [`Accumulator::split_think`](crate::Accumulator::split_think).
    pub fn split_think(mut self, on: bool) -> Self {
        self.split_think = on;
        self
    }

    /// Trusts the certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----` blocks),
    /// e.g. an internal CA. Given roots replace the built-in Mozilla roots, like
    /// `curl --cacert`; call it again (or [`root_certificate_file`](Self::root_certificate_file))
    /// to trust several. Without this, the file named by `SSL_CERT_FILE` is used if set.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        let n = self.root_pems.len() + 1;
        self.root_pems
            .push((pem.into(), format!("root certificate PEM #{n}")));
        self
    }

    /// Trusts the certificates in the PEM file at `path` (read when the client is built).
    /// See [`root_certificate_pem`](Self::root_certificate_pem).
    pub fn root_certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_files.push(path.into());
        self
    }

    /// Whether `SSL_CERT_FILE` names the trusted roots when none are given (default true,
    /// as curl and Python do).
    pub fn roots_from_env(mut self, honour: bool) -> Self {
        self.roots_from_env = honour;
        self
    }

    /// Verifies certificates with the operating system's verifier and trust store (feature
    /// `platform-verifier`).
    #[cfg(feature = "platform-verifier")]
    pub fn platform_verifier(mut self) -> Self {
        self.platform_verifier = true;
        self
    }

    /// Connects to `ip` for `host` without asking DNS, like `curl --resolve`; the URL (and
    /// the TLS server name) keep the host name.
    pub fn resolve(mut self, host: impl Into<String>, ip: IpAddr) -> Self {
        let host = host.into();
        match self
            .pinned
            .iter_mut()
            .find(|(h, _)| h.eq_ignore_ascii_case(&host))
        {
            Some((_, ips)) => ips.push(ip),
            None => self.pinned.push((host, vec![ip])),
        }
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not `http(s)://`, an `https` URL without the
    /// `tls` feature, an invalid header name or value, an invalid proxy URL, or root
    /// certificates that cannot be read.
    pub fn build(self) -> Result<Client, Error> {
        let urls = Urls::from_base(&self.base_url)?;
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        if let Some(key) = &self.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    Error::Config("the API key has characters not allowed in a header".into())
                })?;
            value.set_sensitive(true);
            headers.push((ureq::http::header::AUTHORIZATION, value));
        }
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| Error::Config(format!("invalid value for header {name}")))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let proxy = match &self.proxy {
            ProxyConfig::FromEnv => ureq::Proxy::try_from_env(),
            ProxyConfig::None => None,
            ProxyConfig::Url(url) => Some(ureq::Proxy::new(url).map_err(|e| {
                Error::Config(format!(
                    "invalid proxy {}: {e}",
                    crate::redact::redact_userinfo(url)
                ))
            })?),
        };
        let mut tls = TlsSettings::default();
        for (pem, source) in &self.root_pems {
            tls.add_pem(pem, source)?;
        }
        for path in &self.root_files {
            tls.add_pem_file(path)?;
        }
        // The environment's bundle matters only for HTTPS (and costs a parse of a few
        // hundred certificates), so a plain-HTTP client skips it.
        let https = self
            .base_url
            .trim_start()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if !tls.has_roots() && self.roots_from_env && https {
            if let Some(path) = std::env::var_os(transport::SSL_CERT_FILE).filter(|p| !p.is_empty())
            {
                tls.add_pem_file(std::path::Path::new(&path))
                    .map_err(|e| Error::Config(format!("{}: {e}", transport::SSL_CERT_FILE)))?;
            }
        }
        tls.platform_verifier = self.platform_verifier;
        let transport = Transport::new(transport::Settings {
            connect_timeout: self.connect_timeout,
            proxy,
            tls,
            pinned: self.pinned,
            user_agent: concat!("oai-sse/", env!("CARGO_PKG_VERSION")).to_owned(),
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                urls,
                headers,
                limits: Limits {
                    connect: self.connect_timeout,
                    first_byte: self.first_byte_timeout,
                    idle: self.idle_timeout,
                    drain: DRAIN_LIMIT,
                },
                deadline: self.deadline,
                retry: self.retry,
                sse_limits: self.sse_limits,
                chat_limits: self.chat_limits,
                split_think: self.split_think,
                replay: Mutex::new(ReplayRoute::Unknown),
                stream_options: AtomicBool::new(true),
            }),
        })
    }
}

/// The endpoints a client talks to, derived from its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Urls {
    /// `POST` chat completions here.
    pub chat: String,
    /// llama.cpp's stream replay: `GET`/`DELETE {base}/stream?conv_id=...`.
    pub stream: String,
    /// The model list: `GET {base}/models`.
    pub models: String,
}

impl Urls {
    /// `base` → the endpoints (see [`ClientBuilder::base_url`]).
    fn from_base(base: &str) -> Result<Self, Error> {
        let shown = crate::redact::redact_userinfo(base);
        let trimmed = base.trim().trim_end_matches('/');
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
                if !cfg!(feature = "tls") {
                    return Err(Error::Config(format!(
                        "{shown:?} needs TLS, but oai-sse was built without the `tls` feature"
                    )));
                }
                rest
            }
            _ => {
                return Err(Error::Config(format!(
                    "base URL {shown:?} must start with http:// or https://"
                )));
            }
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::Config(format!("base URL {shown:?} has no host")));
        }
        let api = if let Some(api) = trimmed.strip_suffix("/chat/completions") {
            api.to_owned()
        } else if rest.contains('/') {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1")
        };
        let urls = Self {
            chat: format!("{api}/chat/completions"),
            stream: format!("{api}/stream"),
            models: format!("{api}/models"),
        };
        urls.chat
            .parse::<ureq::http::Uri>()
            .map_err(|e| Error::Config(format!("invalid base URL {shown:?}: {e}")))?;
        Ok(urls)
    }
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
    /// [`StreamEvent::Restart`] or [`StreamEvent::Resumed`] when the next attempt starts.)
    pub on_retry: Option<RetryHook>,
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

/// What a streaming callback returns: `()` to go on, or a [`ControlFlow`] to stop early
/// (`ControlFlow::Break(())` ends the call and returns what arrived so far).
pub trait Flow {
    /// Whether to go on.
    fn flow(self) -> ControlFlow<()>;
}

impl Flow for () {
    fn flow(self) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl Flow for ControlFlow<()> {
    fn flow(self) -> ControlFlow<()> {
        self
    }
}

/// A streaming chat client for one OpenAI-compatible server. Build once, share freely:
/// it is `Send + Sync`, cloning it is cheap, and clones share one connection pool.
///
/// # Examples
///
/// ```no_run
/// use oai_sse::{ChatRequest, Client, Message, StreamEvent};
///
/// let client = Client::builder().base_url("http://127.0.0.1:8080/v1").build()?;
/// let request = ChatRequest::new("any", vec![Message::user("Say hello")]);
/// let response = client.chat_stream(&request, |event| {
///     if let StreamEvent::Content { text, .. } = event {
///         print!("{text}");
///     }
/// })?;
/// println!("\n{:?}", response.usage);
/// # Ok::<(), oai_sse::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

/// What every call of a client shares.
pub(crate) struct Inner {
    pub transport: Transport,
    pub urls: Urls,
    /// Authorization and the builder's extra headers, on every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub limits: Limits,
    pub deadline: Option<Duration>,
    pub retry: RetryPolicy,
    pub sse_limits: SseLimits,
    pub chat_limits: ChatLimits,
    /// Whether a `<think>` block opening the content is split into reasoning.
    pub split_think: bool,
    /// What is known about the server's stream-replay route.
    replay: Mutex<ReplayRoute>,
    /// The server did not refuse `stream_options` (cleared when it does).
    stream_options: AtomicBool,
}

/// What a client knows about its server's stream-replay route (`{base}/stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRoute {
    /// Not asked yet.
    Unknown,
    /// It answered as the route does (a replay, a `DELETE` 204, a 400 about the offset).
    Present,
    /// It is not there; not asked again before this time.
    Absent(Instant),
}

impl Inner {
    /// What is known about the replay route now.
    pub(crate) fn replay_route(&self) -> ReplayRoute {
        let route = *self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        match route {
            ReplayRoute::Absent(until) if Instant::now() >= until => ReplayRoute::Unknown,
            route => route,
        }
    }

    /// Whether to try resuming on this server (it was not found without the route lately).
    pub(crate) fn replay_available(&self) -> bool {
        !matches!(self.replay_route(), ReplayRoute::Absent(_))
    }

    /// Whether to ask for usage with `stream_options` (the server did not refuse it).
    pub(crate) fn stream_options_accepted(&self) -> bool {
        self.stream_options.load(Ordering::Relaxed)
    }

    /// Remembers whether the server accepts `stream_options`.
    pub(crate) fn set_stream_options_accepted(&self, accepted: bool) {
        self.stream_options.store(accepted, Ordering::Relaxed);
    }

    /// Remembers what the server showed about the route.
    pub(crate) fn set_replay_available(&self, available: bool) {
        let route = if available {
            ReplayRoute::Present
        } else {
            ReplayRoute::Absent(Instant::now() + REPLAY_MEMORY)
        };
        *self.replay.lock().unwrap_or_else(PoisonError::into_inner) = route;
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Client")
            .field("url", &crate::redact::redact_userinfo(&self.urls.chat))
            .field("headers", &names)
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A call running on its own thread: owned events arrive on `events`; [`join`](Self::join)
/// returns the result.
#[derive(Debug)]
pub struct ChatThread {
    /// The events as they arrive. The channel holds a few dozen events; when the reader
    /// falls behind, the call waits for it (so memory stays bounded whatever the server
    /// sends), and a reader that hangs up only loses the live view.
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

    /// The endpoint chat requests go to.
    pub fn url(&self) -> &str {
        &self.inner.urls.chat
    }

    /// Starts a streamed chat call and returns it as a pull-style [`ChatStream`]: nothing is
    /// sent until the first [`ChatStream::next_event`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the request does not serialize.
    pub fn stream(&self, request: &ChatRequest) -> Result<ChatStream, Error> {
        self.stream_with(request, CallOptions::default())
    }

    /// [`stream`](Self::stream) with per-call options (cancel handle, retry policy, hook).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the request does not serialize.
    pub fn stream_with(
        &self,
        request: &ChatRequest,
        options: CallOptions,
    ) -> Result<ChatStream, Error> {
        ChatStream::new(Arc::clone(&self.inner), request, options)
    }

    /// Sends `request` (with `stream: true`) and returns the aggregated response.
    ///
    /// # Errors
    ///
    /// See [`Error`]; transient failures are retried first.
    pub fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, Error> {
        self.chat_with(request, &CallOptions::default(), |_| {})
    }

    /// Like [`chat`](Self::chat), handing each event to `on_event` as it arrives. The
    /// callback may return `()`, or a [`ControlFlow`]: `Break(())` stops the call at once
    /// and returns what arrived so far, marked
    /// [`stopped_by_caller`](ChatResponse::stopped_by_caller).
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn chat_stream<R: Flow>(
        &self,
        request: &ChatRequest,
        on_event: impl FnMut(&StreamEvent<'_>) -> R,
    ) -> Result<ChatResponse, Error> {
        self.chat_with(request, &CallOptions::default(), on_event)
    }

    /// The general form: streaming with per-call options (cancel handle, retry policy).
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn chat_with<R: Flow>(
        &self,
        request: &ChatRequest,
        options: &CallOptions,
        mut on_event: impl FnMut(&StreamEvent<'_>) -> R,
    ) -> Result<ChatResponse, Error> {
        let mut stream = self.stream_with(request, options.clone())?;
        while let Some(event) = stream.next_event()? {
            if on_event(&event).flow().is_break() {
                return Ok(stream.stop());
            }
        }
        stream.finish()
    }

    /// The ids of the models the server lists (`GET {base}/models`), in its order. One
    /// attempt, no retries.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a body that is not a model list is [`Error::Stream`] (malformed).
    pub fn models(&self) -> Result<Vec<String>, Error> {
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            data: Vec<Model>,
        }
        #[derive(serde::Deserialize)]
        struct Model {
            id: String,
        }
        let inner = &self.inner;
        let deadline = inner
            .deadline
            .and_then(|d| Some((Instant::now().checked_add(d)?, d)));
        let io = AttemptIo::new(&CancelHandle::new(), inner.limits, deadline);
        let request = Request {
            method: Method::GET,
            url: &inner.urls.models,
            headers: &inner.headers,
            body: None,
        };
        let response = inner.transport.send(&request, &io)?;
        if !(200..300).contains(&response.status) {
            return Err(crate::stream::http_error(response));
        }
        let body = crate::stream::read_bounded(response.body, MAX_MODEL_LIST, ERROR_BODY_TIME);
        let list: List = serde_json::from_slice(&body).map_err(|e| {
            Error::Stream(crate::ChatError::MalformedChunk {
                reason: format!("not a model list: {e}"),
                snippet: String::from_utf8_lossy(body.get(..120).unwrap_or(&body)).into_owned(),
            })
        })?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }

    /// Runs the call on a new thread and delivers owned events over a bounded channel.
    pub fn chat_in_thread(&self, request: ChatRequest, mut options: CallOptions) -> ChatThread {
        let cancel = options.cancel.get_or_insert_with(CancelHandle::new).clone();
        let (tx, events) = mpsc::sync_channel(THREAD_CHANNEL);
        let client = self.clone();
        let handle = std::thread::spawn(move || {
            let mut connected = true;
            client.chat_with(&request, &options, |event| {
                // A receiver that hung up only loses the live view; the call completes.
                if connected && tx.send(event.to_owned_event()).is_err() {
                    connected = false;
                }
            })
        });
        ChatThread {
            events,
            cancel,
            handle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalization() {
        let table = [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
            ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
            ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
            ("http://h/api/v1", "http://h/api/v1"),
            ("http://h/v1/chat/completions", "http://h/v1"),
            (" HTTP://[::1]:9000 ", "HTTP://[::1]:9000/v1"),
        ];
        for (base, api) in table {
            let want = Urls {
                chat: format!("{api}/chat/completions"),
                stream: format!("{api}/stream"),
                models: format!("{api}/models"),
            };
            assert_eq!(Urls::from_base(base).ok(), Some(want), "{base}");
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
                matches!(Urls::from_base(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_never_print() {
        let builder = Client::builder()
            .base_url("http://alice:hunter2-password@127.0.0.1:8080/v1")
            .api_key("sk-secret-123")
            .header("api-key", "azure-secret-456")
            .proxy(ProxyConfig::Url(
                "http://bob:proxy-pass-789@127.0.0.1:3128".into(),
            ));
        let client = builder.clone().build().expect("valid");
        let shown = format!(
            "{builder:?} {client:?} {:?} {}",
            ApiKey::new("sk-secret-123"),
            ApiKey::new("sk-secret-123")
        );
        for secret in ["sk-secret", "azure-secret", "proxy-pass", "hunter2"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let bad_proxy = Client::builder()
            .proxy(ProxyConfig::Url("ftp://carol:proxy-secret@[bad".into()))
            .build();
        assert!(
            matches!(&bad_proxy, Err(Error::Config(m)) if !m.contains("proxy-secret")),
            "{bad_proxy:?}"
        );
    }

    #[test]
    fn bad_settings_are_config_errors() {
        for builder in [
            Client::builder().header("bad name", "x"),
            Client::builder().header("x-ok", "bad\nvalue"),
            Client::builder().api_key("line\nbreak"),
            Client::builder().root_certificate_pem("not a certificate"),
            Client::builder().root_certificate_file("/nonexistent/ca.pem"),
        ] {
            assert!(matches!(builder.build(), Err(Error::Config(_))));
        }
    }
}
