//! Chat completions without I/O: the wire types, the events a streaming caller sees, and the
//! [`Accumulator`] that turns dispatched SSE events into those events and a [`ChatResponse`].
//!
//! The types a caller of [`Client`](crate::Client) names (requests, messages, events, the
//! response) are also at the crate root. Reach into this module for the building blocks
//! underneath: the [`Accumulator`] when the bytes come from somewhere else (your own
//! transport, a recorded stream, a test), the borrowed chunk views ([`ChunkRef`],
//! [`DeltaRef`]) to read a chunk without copying it, and [`response_from_completion_json`]
//! for a non-streamed answer. The same code runs inside the client.
//!
//! ```
//! use oai_sse::chat::{Accumulator, Completion};
//! use oai_sse::sse::{EventReader, Item};
//!
//! // A recorded stream (from a file, a log, another HTTP client), fed through the
//! // parser and the accumulator.
//! let recorded = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
//!                 data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
//!                 data: [DONE]\n\n";
//! let mut reader = EventReader::new(recorded.as_bytes());
//! let mut acc = Accumulator::new(false);
//! let mut progress = Completion::Pending;
//! while let Some(item) = reader.next_item()? {
//!     if let Item::Event(event) = item {
//!         progress = acc.push_event(event.event, event.data)?;
//!     }
//! }
//! assert_eq!(progress, Completion::Complete);
//! let response = acc.finish()?;
//! assert_eq!(response.content(), "Hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod accumulate;
mod chunk;
mod completion;
mod event;
mod message;
mod request;
mod response;
mod think;

pub use accumulate::{Accumulator, ChatLimits, Completion};
pub(crate) use accumulate::{Against, Shown};
pub use chunk::{ChoiceDelta, ChunkRef, DeltaRef, FunctionDeltaRef, ToolCallDeltaRef};
pub use completion::response_from_completion_json;
pub(crate) use completion::{ReadCompletionError, read_completion};
pub use event::{OwnedStreamEvent, StreamEvent};
pub use message::{
    Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message, Role, Tool, ToolCall,
};
pub use request::{ChatRequest, ResponseFormat, Stop, StreamOptions, ToolChoice};
pub use response::{AttemptTimings, ChatResponse, Choice, ServerTimings, Timings, Usage};
