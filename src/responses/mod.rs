//! The Responses API (`POST /v1/responses`) without I/O: the request, the events a streaming
//! caller sees, the [`ResponsesAccumulator`] that turns dispatched SSE events into those
//! events and a [`ResponseObject`], and the response object itself. The call around it is
//! the driver's (`call/responses.rs`), with the same recovery as chat.

mod accumulate;
mod event;
mod object;
mod request;

pub use accumulate::{ResponseLimits, ResponsesAccumulator};
pub use event::{ItemKind, OwnedResponseEvent, ResponseEvent};
pub use object::{OutputItem, ResponseObject, ResponseStatus, ResponseUsage};
pub use request::{Input, InputItem, ResponseTool, ResponseToolChoice, ResponsesRequest};
