//! `oai-sse events` as a process against the in-process mock server's event feed.

use oai_sse::mock::{FaultRule, MockServer, Replies, Script};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_oai-sse");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<Value> {
        let lines = self.stdout.lines();
        lines
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    fn reconnects(&self) -> Vec<&str> {
        let lines = self.stderr.lines();
        lines.filter(|l| l.starts_with("reconnect ")).collect()
    }
}

fn command() -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("events")
        .env_remove("RUST_LOG")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn events(args: &[&str]) -> Run {
    let out = command().args(args).output().expect("run oai-sse");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

fn server(faults: &[&str]) -> MockServer {
    let mut replies = Replies::from(Script::new());
    for fault in faults {
        replies = replies.fault(fault.parse::<FaultRule>().expect("valid fault spec"));
    }
    MockServer::start(replies).expect("mock server")
}

fn feed(server: &MockServer, query: &str) -> String {
    format!("{}/events?{query}", server.base_url())
}

fn event(k: u64) -> Value {
    json!({"event": "tick", "data": format!("{{\"n\":{k}}}"), "id": k.to_string()})
}

#[test]
fn one_line_per_event_and_one_stderr_line_per_reconnect() {
    // The first response is cut inside event 3; the reconnect gets the rest, ends cleanly,
    // and the next reconnect gets 204.
    // `retry: 1000`: the second reconnect comes a second after the first, so it gets its own
    // line (one a second at most).
    let server = server(&["close-after=200,times=1"]);
    let run = events(&[&feed(&server, "count=5&retry=1000&end=204")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.lines(), (1..=5).map(event).collect::<Vec<_>>());
    let reconnects = run.reconnects();
    assert_eq!(reconnects.len(), 2, "{}", run.stderr);
    for (line, last_id) in reconnects.iter().zip(["2", "5"]) {
        let rest = line.strip_prefix("reconnect 1 after ").expect(line);
        let (ms, rest) = rest.split_once(" ms ").expect(line);
        let ms: u64 = ms.parse().expect(line);
        // Jittered upwards only (20 %): the server asked for at least this.
        assert!((1000..1200).contains(&ms), "{line}");
        assert_eq!(
            rest,
            format!("(retry field): unexpected eof, last id {last_id}")
        );
    }
    assert_eq!(run.stderr.lines().count(), 2, "{}", run.stderr);
}

#[test]
fn exit_codes() {
    let server = server(&[]);
    // (arguments, exit code, events printed, what stderr says)
    let table: &[(Vec<String>, i32, usize, &str)] = &[
        (vec![feed(&server, "status=204")], 0, 0, ""),
        (
            vec![feed(&server, "count=3&end=204")],
            0,
            3,
            "reconnect 1 after",
        ),
        (
            vec![feed(&server, "count=2"), "--no-reconnect-on-eof".into()],
            0,
            2,
            "",
        ),
        (
            vec![feed(&server, "status=404")],
            1,
            0,
            "oai-sse: error: http 404",
        ),
        (
            vec![format!("{}/models", server.base_url())],
            1,
            0,
            "oai-sse: error: unexpected content type \"application/json\"",
        ),
        // A clean end wants a reconnect, but none is allowed.
        (
            vec![feed(&server, "count=1"), "--max-retries".into(), "0".into()],
            1,
            1,
            "oai-sse: error: unexpected eof",
        ),
        // Only a `retry:` field after event 1: reconnects that deliver nothing spend the
        // budget (they do not renew it), even at the fastest rate the server can ask for.
        (
            vec![
                feed(&server, "count=1&retry=0"),
                "--max-retries".into(),
                "2".into(),
            ],
            1,
            1,
            "oai-sse: error: gave up after 3 attempts",
        ),
        (vec![], 2, 0, "no URL"),
        (
            vec![
                feed(&server, "count=1"),
                "--last-event-id".into(),
                "4\r\nX-Injected: 1".into(),
            ],
            2,
            0,
            "cannot be sent as a Last-Event-ID header",
        ),
        (
            vec![
                feed(&server, "count=1"),
                "-H".into(),
                format!("Last-Event-ID: {}", "9".repeat(5000)),
            ],
            2,
            0,
            "cannot be sent as a Last-Event-ID header",
        ),
        (
            vec!["ftp://example.com/feed".into()],
            2,
            0,
            "must start with http",
        ),
        (
            vec![feed(&server, "count=1"), "-H".into(), "no colon".into()],
            2,
            0,
            "is not 'Name: value'",
        ),
        (
            vec![feed(&server, "count=1"), "-H".into(), "bad name: x".into()],
            2,
            0,
            "invalid header name",
        ),
        (
            vec![
                feed(&server, "count=1"),
                "--idle-timeout".into(),
                "0".into(),
            ],
            2,
            0,
            "--idle-timeout must be a positive number",
        ),
        (
            vec![feed(&server, "count=1"), "--bogus".into()],
            2,
            0,
            "unknown option --bogus",
        ),
        (vec!["a".into(), "b".into()], 2, 0, "unexpected argument"),
    ];
    for (args, code, printed, says) in table {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = events(&args);
        assert_eq!(run.code, *code, "{args:?}: {}", run.stderr);
        assert_eq!(run.lines().len(), *printed, "{args:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        if says.is_empty() {
            assert_eq!(run.stderr, "", "{args:?}");
        }
    }
}

#[test]
fn data_headers_and_last_event_id_go_out() {
    let server = server(&[]);
    let dir = std::env::temp_dir().join(format!("oai-sse-cli-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("body.json");
    std::fs::write(&file, r#"{"method":"subscribe"}"#).expect("write body");
    let data = format!("@{}", file.display());
    let run = events(&[
        &feed(&server, "count=5&end=204"),
        "--data",
        &data,
        "-H",
        "X-Test: yes: really",
        "--header=Accept: text/event-stream, application/json",
        "--last-event-id",
        "3",
    ]);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.lines(), [event(4), event(5)]);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "the rest, then 204");
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.body, br#"{"method":"subscribe"}"#);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-test"), Some("yes: really"));
        let accept = request.header("accept");
        assert_eq!(accept, Some("text/event-stream, application/json"));
    }
    let ids: Vec<_> = requests.iter().map(|r| r.header("last-event-id")).collect();
    assert_eq!(ids, [Some("3"), Some("5")]);
}

#[test]
fn comments_print_with_the_flag() {
    let server = server(&[]);
    let query = "count=2&interval-ms=60&ping-ms=20";
    for (flag, want_comments) in [(None, false), (Some("--comments"), true)] {
        let mut args = vec![feed(&server, query), "--no-reconnect-on-eof".into()];
        args.extend(flag.map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = events(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let lines = run.lines();
        let comments = lines.iter().filter(|l| l == &&json!({"comment": "ping"}));
        assert_eq!(comments.count() > 0, want_comments, "{flag:?}: {lines:?}");
        let events: Vec<_> = lines.iter().filter(|l| l.get("id").is_some()).collect();
        assert_eq!(events, [&event(1), &event(2)]);
    }
}

#[test]
fn a_closed_stdout_ends_quietly_with_0() {
    // Events without end: the reader goes away after the first line.
    let server = server(&[]);
    let mut child = command()
        .arg(feed(&server, "count=10000000&end=hold"))
        .spawn()
        .expect("spawn oai-sse");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    assert_eq!(
        serde_json::from_str::<Value>(&first).expect("JSON"),
        event(1)
    );
    drop(stdout);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("oai-sse exits once stdout is gone")
        .expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// A feed that asks for `retry: 0` and closes after one new event each time reconnects as
/// fast as the client allows (every 100 ms, the floor): stderr gets at most one line a second,
/// and the lines after the first count the reconnects they stand for.
#[test]
fn a_reconnect_storm_prints_one_line_a_second() {
    let server = common::serve_sequential(|n, stream, _| {
        let body = format!("retry: 0\nid: {n}\ndata: x\n\n");
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        common::send(stream, head.as_bytes());
        common::send(stream, body.as_bytes());
    });
    let mut child = command()
        .arg(format!("http://{}/feed", server.addr))
        .spawn()
        .expect("run oai-sse");
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().expect("kill");
    let out = child.wait_with_output().expect("output");
    let ran = started.elapsed();
    let connections = server.stop().len();
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let events = stdout.lines().count();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        events >= 5 && connections >= 5,
        "{events} events, {connections} connections"
    );
    // One line at start, then one a second at most (whole seconds of the run, rounded up).
    let most = 1 + ran.as_secs() as usize + 1;
    assert!(
        !lines.is_empty() && lines.len() <= most,
        "{} lines in {ran:?} for {connections} connections:\n{stderr}",
        lines.len()
    );
    assert!(lines[0].starts_with("reconnect 1 after "), "{stderr}");
    // The lines shown and the reconnects they count add up to every reconnect but the
    // ones since the last line (the run was killed, so no closing count).
    let counted: usize = lines
        .iter()
        .skip(1)
        .map(|line| match line.strip_suffix(" since the last line)") {
            Some(rest) => {
                let (_, count) = rest.rsplit_once(" (").expect(line);
                let n = count.split(' ').next().expect(line);
                n.parse::<usize>().expect(line)
            }
            // A reconnect more than a second after the last line (a slow machine).
            None => 0,
        })
        .sum();
    assert!(
        lines.len() + counted <= events,
        "{} lines + {counted} counted for {events} events:\n{stderr}",
        lines.len()
    );
    assert!(lines.len() + counted + 12 >= events, "{stderr}");
}
