//! HTTP bodies (raw or built from structured chunks) through the SSE reader and the accumulator, and whole completion bodies.
//! The body is `oai_sse_fuzz::checks::chat_stream`, shared with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oai_sse_fuzz::checks::chat_stream(data));
