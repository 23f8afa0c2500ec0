//! The Responses API (`POST /v1/responses`) without I/O: the request, the events a streaming
//! caller sees, the [`ResponsesAccumulator`] that turns dispatched SSE events into those
//! events and a [`ResponseObject`], and the response object itself. The call around it is
//! the driver's (`call/responses.rs`), with the same recovery as chat.
//!
//! A caller of [`Client::responses`](crate::Client::responses) names the request, the
//! response object and the events, which are also at the crate root; this module adds the
//! items ([`InputItem`], [`OutputItem`]), the tools, and the [`ResponsesAccumulator`] for
//! events that come from somewhere else (a recorded stream, your own transport):
//!
//! ```
//! use oai_sse::chat::Completion;
//! use oai_sse::responses::{OutputItem, ResponsesAccumulator};
//!
//! let mut acc = ResponsesAccumulator::new();
//! for (event_type, data) in [
//!     ("response.created", r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress","output":[]}}"#),
//!     ("response.output_text.delta", r#"{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"Hi"}"#),
//!     ("response.completed", r#"{"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[{"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"Hi"}]}]}}"#),
//! ] {
//!     if acc.push_event(event_type, data)? == Completion::Complete {
//!         break;
//!     }
//! }
//! let response = acc.finish()?;
//! assert_eq!(response.output_text(), "Hi");
//! assert!(matches!(&response.output[0], OutputItem::Message { .. }));
//! # Ok::<(), oai_sse::StreamError>(())
//! ```

mod accumulate;
mod event;
mod object;
mod request;

pub use accumulate::{ResponseLimits, ResponsesAccumulator};
pub use event::{ItemKind, OwnedResponseEvent, ResponseEvent};
pub use object::{OutputItem, ResponseObject, ResponseStatus, ResponseUsage};
pub use request::{Input, InputItem, ResponseTool, ResponseToolChoice, ResponsesRequest};
