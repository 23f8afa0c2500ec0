//! Server-Sent Events: a sans-IO [`Parser`] and the blocking [`EventReader`] around it.
//!
//! Nothing here knows about HTTP or chat completions. Reach for it to read an event stream
//! that does not come through [`Client`](crate::Client) (a file, a socket of your own, a
//! test), or to parse byte slices without any I/O at all with [`Parser::feed`]; for a live
//! endpoint with reconnects, use [`EventSource`](crate::EventSource).
//!
//! ```
//! use oai_sse::sse::{EventReader, Item};
//!
//! let stream = "retry: 3000\nid: 7\nevent: tick\ndata: {\"n\":1}\ndata: more\n\n: keep-alive\n\n";
//! let mut reader = EventReader::new(stream.as_bytes()); // any `BufRead`
//! let mut seen = Vec::new();
//! while let Some(item) = reader.next_item()? {
//!     match item {
//!         Item::Event(e) => seen.push(format!("{} {} {:?}", e.id, e.event, e.data)),
//!         Item::Comment(text) => seen.push(format!("comment {text:?}")),
//!         _ => {}
//!     }
//! }
//! assert_eq!(seen, ["7 tick \"{\\\"n\\\":1}\\nmore\"", "comment \"keep-alive\""]);
//! assert_eq!(reader.parser().retry(), Some(3000));
//! # Ok::<(), oai_sse::sse::ReadError>(())
//! ```

mod parser;
mod reader;

pub use parser::{
    DEFAULT_MAX_EVENT_LEN, DEFAULT_MAX_LINE_LEN, Event, Item, Limits, Parser, SseError,
};
pub use reader::{EventReader, ReadError};
