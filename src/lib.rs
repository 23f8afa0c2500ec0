#![forbid(unsafe_code)]
mod chat;
mod error;
pub mod sse;
pub use chat::*;
pub use error::FailureKind;
