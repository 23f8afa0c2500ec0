//! The long material behind the README: design notes, the full error table, the limits, the
//! mock's fault specs, the CLI in full, benchmark method and results, the real-server and
//! fuzzing notes.
//!
//! These modules hold documentation only, no items. Their Rust examples run as doc tests
//! (`cargo test --doc`), so they stay true; `cargo doc --open` shows them locally.
//!
//! | page | what it covers |
//! |---|---|
//! | [`recovery`] | what happens when a stream breaks: resume, continuation, restart; behind a gateway |
//! | [`errors`] | every failure, its `reason`, whether it is retried; backoff; the error type |
//! | [`transport`] | timeouts, cancel, the connection pool, stale connections, connecting, TLS, proxies, logging |
//! | [`limits`] | every bound a server meets, peak memory against hostile servers, secrets, odd servers tested |
//! | [`sse`] | `EventSource` in full (reconnects, budget, the end, nothing lost) and the WHATWG parser |
//! | [`mock`] | what the mock server serves, and every fault spec |
//! | [`cli`] | the `oai-sse` command in full: `chat`, `events`, `parse`, `mock`, `demo` |
//! | [`benchmarks`] | how the benchmarks measure, the full results, the targets and why some are missed |
//! | [`real_server`] | the tests against a real llama.cpp server and LiteLLM's gateway |
//! | [`fuzzing`] | the cargo-fuzz targets, how to run them, the last run, the bugs found |

#[doc = include_str!("recovery.md")]
pub mod recovery {}

#[doc = include_str!("errors.md")]
pub mod errors {}

#[doc = include_str!("transport.md")]
pub mod transport {}

#[doc = include_str!("limits.md")]
pub mod limits {}

#[doc = include_str!("sse.md")]
pub mod sse {}

#[doc = include_str!("mock.md")]
pub mod mock {}

#[doc = include_str!("cli.md")]
pub mod cli {}

#[doc = include_str!("benchmarks.md")]
pub mod benchmarks {}

#[doc = include_str!("real_server.md")]
pub mod real_server {}

#[doc = include_str!("fuzzing.md")]
pub mod fuzzing {}
