//! The zero-allocation SSE parser, fed at fuzzer-chosen split points, against the WHATWG reference parser.
//! The body is `oai_sse_fuzz::checks::sse_differential`, shared with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oai_sse_fuzz::checks::sse_differential(data));
