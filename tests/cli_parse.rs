//! `oai-sse parse` as a process: incremental output, split invariance, exit codes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_oai-sse");

fn run(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oai-sse");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    // The child may exit before reading everything (that is the point of a limit): a
    // broken pipe here is expected then.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

const STREAM: &[u8] = b"\xEF\xBB\xBFretry: 2500\r\n: keep-alive\r\nid: 7\r\nevent: delta\r\ndata: {\"a\":\"\\u00e9\"}\r\ndata: second \"line\"\r\n\r\ndata: x\rdata: y\r\r";

#[test]
fn prints_one_json_object_per_item() {
    let (code, out, err) = run(&["parse", "--comments"], STREAM);
    assert_eq!(code, 0, "{err}");
    let want = concat!(
        "{\"retry\":2500}\n",
        "{\"comment\":\"keep-alive\"}\n",
        "{\"event\":\"delta\",\"data\":\"{\\\"a\\\":\\\"\\\\u00e9\\\"}\\nsecond \\\"line\\\"\",\"id\":\"7\"}\n",
        "{\"event\":\"message\",\"data\":\"x\\ny\",\"id\":\"7\"}\n",
    );
    assert_eq!(out, want);
    let (_, without_comments, _) = run(&["parse"], STREAM);
    assert_eq!(
        without_comments,
        want.replace("{\"comment\":\"keep-alive\"}\n", "")
    );
}

#[test]
fn output_does_not_depend_on_chunk_size() {
    let (_, whole, _) = run(&["parse", "--comments"], STREAM);
    for size in ["1", "2", "3", "5", "64"] {
        let (code, out, err) = run(&["parse", "--comments", "--chunk-size", size], STREAM);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, whole, "--chunk-size {size}");
    }
}

#[test]
fn events_are_printed_before_stdin_closes() {
    let mut child = Command::new(BIN)
        .args(["parse"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn oai-sse");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("utf-8")).is_err() {
                break;
            }
        }
    });
    stdin.write_all(b"data: first\n\n").expect("write");
    stdin.flush().expect("flush");
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("first event printed while stdin is open");
    assert_eq!(first, r#"{"event":"message","data":"first","id":""}"#);
    stdin.write_all(b"data: second\n\n").expect("write");
    drop(stdin);
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("second event");
    assert!(second.contains("second"));
    assert!(child.wait().expect("wait").success());
    reader.join().expect("reader thread");
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    // A line over the 8 MiB default limit: exit 1, one line on stderr.
    let mut huge = b"data: ".to_vec();
    huge.resize(9 << 20, b'x');
    let (code, _, err) = run(&["parse"], &huge);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("longer than"), "{err}");

    for bad in [
        &["parse", "--chunk-size", "0"][..],
        &["parse", "--chunk-size", "x"],
        &["parse", "--nope"],
        &["frobnicate"],
    ] {
        let (code, out, err) = run(bad, b"");
        assert_eq!(code, 2, "{bad:?}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
    }
}
