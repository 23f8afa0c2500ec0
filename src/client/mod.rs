//! The client: one connection pool and the settings every call shares, and the entry
//! points — [`Client::stream`] for a pull-style [`ChatStream`], the conveniences over it
//! ([`Client::chat`], [`Client::chat_stream`], [`Client::chat_in_thread`]), and
//! [`Client::events`] for any event stream.

mod builder;

pub use builder::{ApiKey, ClientBuilder, ProxyConfig};

use crate::call::{
    ChatStream, EventSource, EventSourceBuilder, ResponsesStream, RetryHook, Setup, Shared,
};
use crate::cancel::CancelHandle;
use crate::chat::{ChatRequest, ChatResponse, OwnedStreamEvent, StreamEvent};
use crate::error::Error;
use crate::http::{AttemptIo, ERROR_BODY_TIME, Request};
use crate::responses::{ResponseEvent, ResponseObject, ResponsesRequest};
use crate::retry::RetryPolicy;
use crate::wire::StreamError;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;
use ureq::http::Method;

/// Most bytes read from a model list.
const MAX_MODEL_LIST: u64 = 1 << 20;
/// Events a [`ChatThread`] channel holds before the call waits for its reader.
const THREAD_CHANNEL: usize = 64;

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
/// # Which call
///
/// Every call streams on the wire and recovers the same way; they differ in who drives the
/// loop and where the events go:
///
/// | you want | call | with per-call options |
/// |---|---|---|
/// | the whole answer, nothing shown meanwhile | [`chat`](Self::chat) | [`chat_with`](Self::chat_with) (and a callback that ignores the events) |
/// | the whole answer, each delta shown as it arrives | [`chat_stream`](Self::chat_stream) (a callback) | [`chat_with`](Self::chat_with) |
/// | the events one at a time in your own loop (pull; borrowed events, no copy) | [`stream`](Self::stream) | [`stream_with`](Self::stream_with) |
/// | the call on a thread of its own, owned events over a channel | [`chat_in_thread`](Self::chat_in_thread) | (takes them) |
///
/// Per-call options ([`CallOptions`]) are a cancel handle, a retry policy for this call, a
/// retry hook and a jitter seed; the `_with` forms exist so the common calls stay one
/// argument. The callback may return `()` or a [`ControlFlow`] (the [`Flow`] trait): `Break`
/// stops the call and returns what arrived.
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
    pub(crate) inner: Arc<Shared>,
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

    /// What the driver needs of a call's options.
    fn setup(&self, options: CallOptions) -> Setup {
        Setup {
            policy: options.retry.unwrap_or_else(|| self.inner.retry.clone()),
            cancel: options.cancel.unwrap_or_default(),
            hook: options.on_retry,
            jitter_seed: options.jitter_seed,
            deadline: self.inner.deadline,
            limits: self.inner.limits,
        }
    }

    /// An event source for any Server-Sent Events endpoint at `url` (a full URL, not
    /// relative to the base URL), sharing this client's connection pool, TLS settings,
    /// proxy, timeouts, API key, extra headers and retry policy.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use oai_sse::{Client, OwnedSourceEvent};
    ///
    /// let client = Client::builder().api_key("sk-...").build()?;
    /// let source = client
    ///     .events("https://example.com/mcp")
    ///     .header("Mcp-Session-Id", "1868a90c")
    ///     .post("application/json", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
    ///     .build()?;
    /// for item in source {
    ///     if let OwnedSourceEvent::Event(event) = item? {
    ///         println!("{}", event.data);
    ///     }
    /// }
    /// # Ok::<(), oai_sse::Error>(())
    /// ```
    pub fn events(&self, url: impl Into<String>) -> EventSourceBuilder {
        EventSourceBuilder::new(Ok(Arc::clone(&self.inner)), url.into())
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
        ChatStream::new(Arc::clone(&self.inner), request, self.setup(options))
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

    /// Starts a streamed Responses API call (`POST {base}/responses`) and returns it as a
    /// pull-style [`ResponsesStream`]: nothing is sent until the first
    /// [`ResponsesStream::next_event`]. Retried, resumed and restarted as a chat call is.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the request does not serialize.
    pub fn responses_stream(&self, request: &ResponsesRequest) -> Result<ResponsesStream, Error> {
        self.responses_stream_with(request, CallOptions::default())
    }

    /// [`responses_stream`](Self::responses_stream) with per-call options.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the request does not serialize.
    pub fn responses_stream_with(
        &self,
        request: &ResponsesRequest,
        options: CallOptions,
    ) -> Result<ResponsesStream, Error> {
        ResponsesStream::new(Arc::clone(&self.inner), request, self.setup(options))
    }

    /// Sends a Responses API request (with `stream: true`) and returns the complete
    /// response.
    ///
    /// # Errors
    ///
    /// See [`Error`]; transient failures are retried first.
    pub fn responses(&self, request: &ResponsesRequest) -> Result<ResponseObject, Error> {
        self.responses_with(request, &CallOptions::default(), |_| {})
    }

    /// Like [`responses`](Self::responses), handing each event to `on_event` as it arrives;
    /// `Break(())` stops the call and returns what arrived so far.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub fn responses_with<R: Flow>(
        &self,
        request: &ResponsesRequest,
        options: &CallOptions,
        mut on_event: impl FnMut(&ResponseEvent<'_>) -> R,
    ) -> Result<ResponseObject, Error> {
        let mut stream = self.responses_stream_with(request, options.clone())?;
        while let Some(event) = stream.next_event()? {
            if on_event(&event).flow().is_break() {
                return Ok(stream.stop());
            }
        }
        stream.finish()
    }

    /// The ids of the models the server lists (`GET {base}/models`), in its order. One
    /// attempt, no retries. Any answer shows a server lives at this address: a chat call
    /// refused later waits for it ([`RetryPolicy::max_wait_for_server`]).
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
        // A server is at this address: if it goes away, a chat call waits for it.
        inner.server_answered();
        if !(200..300).contains(&response.status) {
            return Err(crate::http::http_error(response));
        }
        let body = crate::http::read_bounded(response.body, MAX_MODEL_LIST, ERROR_BODY_TIME);
        let list: List = serde_json::from_slice(&body).map_err(|e| {
            Error::Stream(StreamError::MalformedChunk {
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

impl EventSource {
    /// A builder for a one-off source with a default [`Client`] of its own (build a client
    /// and use [`Client::events`] to share its pool and settings).
    pub fn builder(url: impl Into<String>) -> EventSourceBuilder {
        let shared = ClientBuilder::default().build().map(|client| client.inner);
        EventSourceBuilder::new(shared, url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
