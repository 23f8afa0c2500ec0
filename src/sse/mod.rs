//! Server-Sent Events: a sans-IO [`Parser`] and the blocking [`EventReader`] around it.
//!
//! Nothing here knows about HTTP or chat completions.

mod parser;
mod reader;

pub use parser::{
    DEFAULT_MAX_EVENT_LEN, DEFAULT_MAX_LINE_LEN, Event, Item, Limits, Parser, SseError,
};
pub use reader::{EventReader, ReadError};
