#![forbid(unsafe_code)]
mod error;
pub mod sse;
pub use error::FailureKind;
#[cfg(feature = "mock")]
pub mod mock;
