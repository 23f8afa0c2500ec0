//! The blocking `EventReader` over a source with fuzzer-chosen read sizes, interrupts and one fatal error, under small limits.
//! The body is `oai_sse_fuzz::checks::sse_reader`, shared with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oai_sse_fuzz::checks::sse_reader(data));
