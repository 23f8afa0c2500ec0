//! What the stream protocols share on the wire: the error a streamed response fails with
//! ([`StreamError`]), the server's error object ([`ApiError`]) in every shape servers send it,
//! and the bounded, lenient JSON readers both protocols decode with. No I/O.

mod api_error;
pub(crate) mod capped;
mod error;
pub(crate) mod lenient;
mod tail;

pub use api_error::ApiError;
pub(crate) use api_error::truncate_chars;
pub use error::StreamError;
pub(crate) use tail::StreamTail;
