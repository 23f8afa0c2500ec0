//! # oai-sse
//!
//! A blocking, runtime-free client for streaming chat completions from OpenAI-compatible
//! servers (llama.cpp, vLLM, Ollama, LiteLLM and other gateways, hosted APIs), built to keep
//! going when the network misbehaves.
//!
//! - [`Client`] sends a chat request with `stream: true` over one keep-alive connection pool;
//!   [`Client::stream`] hands out the events as a pull-style [`ChatStream`], and
//!   [`Client::chat_stream`] calls a callback per event. It knows when a stream is really
//!   complete and reports a cut-off stream as an error, never as a short answer.
//! - Transient failures (connection cut or reset, stalls, 408/429/502/503/504, truncated
//!   tool-call JSON) are retried with exponential backoff ([`retry`]); API errors are not.
//!   On llama.cpp, a broken stream is *resumed* from where it broke (nothing generated
//!   twice, a [`StreamEvent::Resumed`]); elsewhere it restarts (a [`StreamEvent::Restart`]).
//! - [`EventSource`] ([`Client::events`]) reads any Server-Sent Events endpoint (feeds, MCP
//!   streams, GET or POST) on the same pool and failure handling, reconnecting as the WHATWG
//!   standard says: after the `retry:` time, with `Last-Event-ID`, nothing lost or doubled.
//! - [`sse`] is the zero-allocation, spec-exact (WHATWG) event-stream parser underneath,
//!   usable on its own.
//! - `mock` (feature `mock`, not a default) is a fault-injecting OpenAI-compatible server
//!   for tests.
//! - [`redact`] keeps credentials and terminal control sequences out of what a human reads.
//!
//! Out of scope: async runtimes, HTTP/2, the OpenAI endpoints other than chat completions.
//!
//! The long material behind the README (how a broken stream is recovered, the full error
//! table, timeouts and the pool, the limits, the mock's faults, the CLI, benchmarks, the
//! real-server and fuzzing notes) is in [`docs`].
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "mock")] {
//! use oai_sse::mock::{FaultRule, MockServer, Script};
//! use oai_sse::{ChatRequest, Client, Message, StreamEvent};
//!
//! // A local server that cuts the first response after 300 bytes.
//! let cut: FaultRule = "close-after=300,times=1".parse()?;
//! let server = MockServer::start(Script::new().text("Hello, world").fault(cut))?;
//!
//! let client = Client::builder().base_url(server.base_url()).build()?;
//! let request = ChatRequest::new("mock-model", vec![Message::user("Say hello")]);
//! let mut shown = String::new();
//! let response = client.chat_stream(&request, |event| match event {
//!     StreamEvent::Content { text, .. } => shown.push_str(text),
//!     StreamEvent::Restart { .. } => shown.clear(), // discard the cut attempt's output
//!     _ => {}
//! })?;
//! assert_eq!(response.content(), "Hello, world");
//! assert_eq!(shown, "Hello, world");
//! assert_eq!(response.retries.len(), 1);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod call;
mod cancel;
pub mod chat;
mod client;
pub mod docs;
mod error;
mod http;
#[cfg(feature = "mock")]
pub mod mock;
pub mod redact;
pub mod responses;
pub mod retry;
pub mod sse;
mod wire;

pub use call::{
    ChatStream, DelaySource, EventSource, EventSourceBuilder, OwnedEvent, OwnedSourceEvent,
    Reconnect, ResponsesStream, RetryHook, RetryNotice, SourceEvent,
};
pub use cancel::CancelHandle;
// The root holds what a caller of the main jobs names: the client, requests and messages,
// events, the response, errors. The building blocks for other uses stay in their modules:
// `chat` (the sans-IO accumulator and borrowed chunk views), `responses`, `sse`, `retry`,
// `redact`.
pub use chat::{
    AttemptTimings, ChatLimits, ChatRequest, ChatResponse, Choice, Content, ContentPart,
    FunctionCall, FunctionDef, ImageUrl, Message, OwnedStreamEvent, ResponseFormat, Role,
    ServerTimings, Stop, StreamEvent, StreamOptions, Timings, Tool, ToolCall, ToolChoice, Usage,
};
pub use client::{ApiKey, CallOptions, ChatThread, Client, ClientBuilder, Flow, ProxyConfig};
pub use error::{AfterRetries, Error, HttpError, TransportError};
// The Responses API's request, answer and events; its items, tools and accumulator are in
// `responses`.
pub use responses::{OwnedResponseEvent, ResponseEvent, ResponseObject, ResponsesRequest};
pub use retry::{FailureKind, RetryAction, RetryPolicy, RetryRecord};
pub use sse::Limits as SseLimits;
pub use wire::{ApiError, StreamError};

/// The README's examples, compiled and run as doc tests so they stay true (they use the
/// mock server).
#[cfg(all(doctest, feature = "mock"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
