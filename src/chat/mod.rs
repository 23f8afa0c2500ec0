//! Chat completions without I/O: the wire types, the events a streaming caller sees, and the
//! [`Accumulator`] that turns dispatched SSE events into those events and a [`ChatResponse`].

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
