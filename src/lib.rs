//! # oai-sse
//!
//! A blocking, runtime-free client for streaming chat completions from OpenAI-compatible
//! servers, built to keep going when the network misbehaves.
//!
//! In scope: reading Server-Sent Events line by line from a blocking byte source with a
//! zero-allocation, spec-exact (WHATWG) parser ([`sse`]). Out of scope: async runtimes,
//! browsers' `EventSource` reconnection loop (the chat client decides when to retry).
//!
//! # Example
//!
//! ```
//! use oai_sse::sse::{EventReader, Item};
//!
//! let body: &[u8] = b"data: {\"choices\":[]}\n\n: ping\n\ndata: [DONE]\n\n";
//! let mut reader = EventReader::new(body);
//! let mut events = 0;
//! while let Some(item) = reader.next_item()? {
//!     if let Item::Event(event) = item {
//!         assert_eq!(event.event, "message");
//!         events += 1;
//!     }
//! }
//! assert_eq!(events, 2);
//! # Ok::<(), oai_sse::sse::ReadError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cancel;
mod chat;
mod client;
mod error;
#[cfg(feature = "mock")]
pub mod mock;
pub mod retry;
pub mod sse;

pub use cancel::CancelHandle;
pub use chat::{
    Accumulator, ApiError, ChatError, ChatLimits, ChatRequest, ChatResponse, Choice, ChoiceDelta,
    ChunkRef, Content, ContentPart, DeltaRef, FunctionCall, FunctionDef, FunctionDeltaRef,
    ImageUrl, Message, OwnedStreamEvent, Progress, Role, StreamEvent, StreamOptions, Tool,
    ToolCall, ToolCallDeltaRef, Usage, response_from_completion_json,
};
pub use client::{
    ApiKey, CallOptions, ChatThread, Client, ClientBuilder, ProxyConfig, RetryHook, RetryNotice,
};
pub use error::{Error, FailureKind, HttpError, RetriesExhausted};

/// The README's examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
