//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the same check
//! functions the cargo-fuzz targets run, so every saved input, including each crash found so
//! far, is re-checked by `cargo test` on a stable toolchain.

#[path = "support/fuzz_checks.rs"]
mod fuzz_checks;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `check` on every file of the target's corpus, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target}: {} failed", path.display());
    }
}

#[test]
fn sse_differential() {
    replay("sse_differential", fuzz_checks::sse_differential);
}

#[test]
fn sse_reader() {
    replay("sse_reader", fuzz_checks::sse_reader);
}

#[test]
fn chat_stream() {
    replay("chat_stream", fuzz_checks::chat_stream);
}

#[test]
fn retry_headers() {
    replay("retry_headers", fuzz_checks::retry_headers);
}

/// Crash inputs of library bugs that are not fixed yet (see `KnownBug` in
/// `tests/support/fuzz_checks.rs`). The replay above steps around these bugs; here each input
/// must still fail with the allowances off. When one no longer fails, its bug is fixed:
/// delete the entry and the `KnownBug` variant.
/// (target, corpus file, check)
type KnownBugInput = (&'static str, &'static str, fn(&[u8]));

const KNOWN_BUG_INPUTS: [KnownBugInput; 5] = [
    // PartialBomAtEof: the stream `EF`: finish() says nothing was discarded.
    (
        "sse_differential",
        "crash-5f76d4e6bb6ed09d581f514c9cf48e44af9be42f",
        fuzz_checks::sse_differential,
    ),
    // PartialBomAtEof: the stream `EF BB` (under a zero line limit, which it also slips past).
    (
        "sse_differential",
        "crash-3e8c0e4abce4f76c55d3552f0f3f23b15f514691",
        fuzz_checks::sse_differential,
    ),
    // EventLimitCountsRawBytes: invalid UTF-8 data lines grow an event past the 64-byte limit.
    (
        "sse_reader",
        "crash-08087248db118890c76f90676b65e236773d0fa1",
        fuzz_checks::sse_reader,
    ),
    // HttpDateYearOverflow: an IMF-fixdate with a huge year overflows in days_from_civil.
    (
        "retry_headers",
        "crash-d2a9fd16121b06283dd95aa76e756727ce2d1738",
        fuzz_checks::retry_headers,
    ),
    // BackoffRoundsPastMaxDelay: a 2^64-ish second max_delay with nanoseconds.
    (
        "retry_headers",
        "crash-053c90596e920da7b1c29b3367c6a67ab7118702",
        fuzz_checks::retry_headers,
    ),
];

#[test]
fn known_bugs_still_reproduce() {
    for (target, file, check) in KNOWN_BUG_INPUTS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
            .join(file);
        let data = std::fs::read(&path).expect("known-bug input");
        let result = std::panic::catch_unwind(|| fuzz_checks::strict(|| check(&data)));
        assert!(
            result.is_err(),
            "{target}/{file} passes strictly now: remove its entry and its KnownBug variant"
        );
    }
}

/// The reference parser itself agrees with a few of the spec's examples.
#[test]
fn reference_parser_spec_examples() {
    use fuzz_checks::reference::{RefItem, parse};
    let ev = |t: &str, d: &str, id: &str| RefItem::Event(t.into(), d.into(), id.into());
    let out = parse(b"data\n\ndata\ndata\n\ndata:");
    assert_eq!(out.items, [ev("message", "", ""), ev("message", "\n", "")]);
    assert!(out.discarded);
    let out =
        parse(b"\xEF\xBB\xBF: c\r\nretry: 99999999999999999999999\rid: 7\n\nevent: x\ndata: y\n\n");
    assert_eq!(
        out.items,
        [
            RefItem::Comment("c".into()),
            RefItem::Retry(u64::MAX),
            ev("x", "y", "7")
        ]
    );
    assert_eq!(
        (out.last_event_id.as_str(), out.retry),
        ("7", Some(u64::MAX))
    );
    assert!(!out.discarded);
}
