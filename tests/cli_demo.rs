//! `oai-sse demo` and `oai-sse mock` as processes. Every child is killed on drop and every wait
//! is bounded, so a hang fails a test instead of stalling the suite.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use oai_sse::retry::RetryPolicy;
use oai_sse::{ChatRequest, Client, Error, Message, ProxyConfig};

const BIN: &str = env!("CARGO_BIN_EXE_oai-sse");

/// Kills and reaps the child when dropped, whatever happened in the test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn spawn(args: &[&str]) -> Self {
        let child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oai-sse");
        Self(child)
    }

    /// Waits for the exit, failing the test after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < limit, "still running after {limit:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads a pipe to the end on a thread (so the child never blocks on a full pipe).
fn drain(pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

/// Sends each line of a pipe as it arrives.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs to completion: exit status, stdout, stderr.
fn run(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let mut child = Guard::spawn(args);
    let out = drain(child.0.stdout.take().expect("stdout"));
    let err = drain(child.0.stderr.take().expect("stderr"));
    let status = child.wait(limit);
    (status, out.join().unwrap(), err.join().unwrap())
}

const SCENARIOS: [&str; 14] = [
    "FIN mid-stream",
    "FIN, server without replay",
    "RST mid-stream",
    "stall past the idle timeout",
    "no first byte in time",
    "no [DONE], stream cut short",
    "429 + Retry-After: 1",
    "503 twice",
    "502 HTML gateway page",
    "truncated tool-call JSON",
    "refused, then server up",
    "held open after finish",
    "400 (must not retry)",
    "500 + error body (must not retry)",
];

#[test]
fn demo_passes_every_scenario() {
    let start = Instant::now();
    let (status, out, err) = run(&["demo"], Duration::from_secs(60));
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert!(
        out.contains("all 14 scenarios behaved as expected"),
        "{out}"
    );
    // The live stream: partial answer, resume marker, the rest of the answer.
    assert!(out.contains("⟿ resumed at byte "), "{out}");
    assert!(!out.contains("⟲ restart"), "{out}");
    let table = out
        .split_once(" #  scenario")
        .map(|(_, table)| table)
        .unwrap_or_else(|| panic!("no table in\n{out}"));
    for (i, name) in SCENARIOS.iter().enumerate() {
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", i + 1)))
            .unwrap_or_else(|| panic!("no row {} in\n{out}", i + 1));
        assert!(row.contains(name), "row {} is not {name:?}: {row}", i + 1);
        assert!(row.contains(" yes "), "{row}");
    }
    assert!(table.contains("error (not retried): http 400"), "{table}");
    // The action column: the first scenario resumed with one generation, the second (no
    // replay route) restarted.
    let row = |n: usize| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{n} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row(1).contains("resumed at "), "{}", row(1));
    assert!(row(2).contains("restarted"), "{}", row(2));
    eprintln!("demo took {:?}", start.elapsed());
}

#[test]
fn demo_json_reports_every_scenario() {
    let (status, out, err) = run(&["demo", "--json"], Duration::from_secs(60));
    assert!(status.success(), "{status}\n{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(report["misbehaved"], 0, "{out}");
    let rows = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["scenario"].as_str()).collect();
    assert_eq!(names, SCENARIOS);
    assert_eq!(rows[7]["attempts"], 3, "503 twice: {}", rows[7]);
    assert_eq!(rows[12]["attempts"], 1, "400: {}", rows[12]);
    assert_eq!(rows[0]["generations"], 1, "resumed: {}", rows[0]);
    assert_eq!(rows[0]["retries"][0]["action"], "resumed", "{}", rows[0]);
    assert_eq!(rows[1]["generations"], 2, "restarted: {}", rows[1]);
}

/// A running `oai-sse mock` and its base URL; the rest of its stderr arrives on `log`.
struct Mock {
    _child: Guard,
    base_url: String,
    log: Receiver<String>,
}

fn start_mock(args: &[&str]) -> Mock {
    let mut all = vec!["mock", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = Guard::spawn(&all);
    let _stdout = drain(child.0.stdout.take().expect("stdout"));
    let log = lines(child.0.stderr.take().expect("stderr"));
    let first = log
        .recv_timeout(Duration::from_secs(20))
        .expect("the listening line on stderr");
    let base_url = first
        .strip_prefix("oai-sse mock listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url}");
    assert!(!base_url.starts_with("http://127.0.0.1:0/"), "{base_url}");
    Mock {
        _child: child,
        base_url,
        log,
    }
}

fn client(base_url: &str) -> Client {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10))
        .retry_policy(RetryPolicy::never())
        .build()
        .expect("client")
}

fn ask() -> ChatRequest {
    ChatRequest::new("test-model", vec![Message::user("hi")])
}

/// Stderr lines until one contains `needle` (bounded).
fn wait_for_log(log: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?}; saw {seen:#?}");
}

#[test]
fn mock_streams_the_scripted_reply() {
    let mock = start_mock(&[
        "--reply",
        "Hi from the process",
        "--tool",
        r#"get_weather={"city":"Paris"}"#,
    ]);
    let mut streamed = String::new();
    let response = client(&mock.base_url)
        .chat_stream(&ask(), |event| {
            if let oai_sse::StreamEvent::Content { text, .. } = event {
                streamed.push_str(text);
            }
        })
        .expect("a reply");
    assert_eq!(streamed, "Hi from the process");
    assert_eq!(response.content(), "Hi from the process");
    assert_eq!(response.model, "test-model");
    let calls = response.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    wait_for_log(
        &mock.log,
        "POST /v1/chat/completions (chat request 1, streamed, no fault)",
    );
}

#[test]
fn mock_fault_hits_only_the_first_request() {
    let mock = start_mock(&["--fault", "status=503,times=1"]);
    let client = client(&mock.base_url);
    match client.chat(&ask()) {
        Err(Error::Http(http)) => assert_eq!(http.status, 503, "{http:?}"),
        other => panic!("expected http 503, got {other:?}"),
    }
    let line = wait_for_log(&mock.log, "chat request 1");
    assert!(line.contains("fault status=503,times=1"), "{line}");
    let response = client.chat(&ask()).expect("the second request succeeds");
    assert_eq!(response.content(), "Hello from the oai-sse mock server.");
    let line = wait_for_log(&mock.log, "chat request 2");
    assert!(line.contains("no fault"), "{line}");
}

#[test]
fn mock_usage_errors_exit_2_with_one_line() {
    let cases: [(&[&str], &str); 5] = [
        (&["mock", "--fault", "bogus=1"], "unknown fault `bogus`"),
        (
            &["mock", "--fault", "stall-after=10"],
            "needs option `secs=...`",
        ),
        (
            &["mock", "--listen", "0.0.0.0:0"],
            "loopback addresses only",
        ),
        (&["mock", "--tool", "f={not json"], "not JSON"),
        (&["demo", "--bogus"], "unknown option --bogus"),
    ];
    for (args, needle) in cases {
        let (status, out, err) = run(args, Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.contains(needle), "{args:?}: {err:?}");
        assert!(out.is_empty(), "{args:?}: {out:?}");
    }
}

#[test]
fn mock_help_documents_the_fault_grammar() {
    let (status, out, _) = run(&["mock", "--help"], Duration::from_secs(20));
    assert!(status.success());
    for needle in [
        "close-after=N",
        "reset-after=N",
        "stall-after=N,secs=S",
        "stall-before=S",
        "status=CODE",
        "retry-after=",
        "retry-after-ms=",
        "should-retry=",
        "html=CODE",
        "truncate-tool-args",
        "no-done",
        "hold-open=S",
        "crlf",
        "ping=MS",
        "slices=N[,delay-ms=MS]",
        "times=N",
        "after=K",
        "--fault reset-after=300,times=1",
        "--fault status=429,retry-after=1,times=2",
        "--fault stall-after=200,secs=5",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from\n{out}");
    }
}
