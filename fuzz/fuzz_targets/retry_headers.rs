//! `Retry-After` / `retry-after-ms` / `x-should-retry` parsing, `classify`, `backoff` and `decide` with fuzzer policies.
//! The body is `oai_sse_fuzz::checks::retry_headers`, shared with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oai_sse_fuzz::checks::retry_headers(data));
