//! Test support for a real llama.cpp `llama-server`: the server as a child process
//! ([`server`]), a fault proxy that cuts its responses ([`proxy`]), and the HTTP framing and
//! raw client both use ([`http`]). A test file includes it with `mod llama;`.
//!
//! The server comes from tests/llama/build-server.sh (target/llama/); tests that need it and
//! do not find it print a skip line and pass, unless `OAI_SSE_REQUIRE_LLAMA=1` (CI).
#![allow(dead_code)] // Each test binary uses a different part.

pub mod gateway;
pub mod http;
pub mod proxy;
pub mod reframe;
pub mod server;

#[allow(unused_imports)]
pub use proxy::{Cut, CutAt, Fault, FaultProxy, Outcome};
#[allow(unused_imports)] // The re-exports a test file may use.
pub use server::{Config, LlamaServer, Metrics, Shared, StreamSession, shared};
