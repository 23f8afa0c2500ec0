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
