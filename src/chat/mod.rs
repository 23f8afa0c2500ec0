//! Chat completions without I/O: the wire types, the events a streaming caller sees, and the
//! [`Accumulator`] that turns dispatched SSE events into those events and a [`ChatResponse`].

mod accumulate;
mod api_error;
mod capped;
mod chunk;
mod completion;
mod event;
mod lenient;
mod message;
mod request;
mod response;
mod tail;
mod think;

pub use accumulate::{Accumulator, ChatError, ChatLimits, Completion};
pub use api_error::ApiError;
pub use chunk::{ChoiceDelta, ChunkRef, DeltaRef, FunctionDeltaRef, ToolCallDeltaRef};
pub use completion::response_from_completion_json;
pub(crate) use completion::{ReadCompletionError, read_completion};
pub use event::{OwnedStreamEvent, StreamEvent};
pub use message::{
    Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, Message, Role, Tool, ToolCall,
};
pub use request::{ChatRequest, ResponseFormat, Stop, StreamOptions, ToolChoice};
pub use response::{AttemptTimings, ChatResponse, Choice, ServerTimings, Timings, Usage};
pub(crate) use tail::StreamTail;
