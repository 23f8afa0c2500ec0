//! `oai-sse chat` as a process against the in-process mock server.

use oai_sse::mock::{FaultRule, MockServer, Script};
use std::io::Write;
use std::process::{Command, Stdio};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_oai-sse");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `oai-sse chat` against `server` (with a model), with `args` and `stdin`.
fn chat(server: &MockServer, args: &[&str], stdin: &str) -> Run {
    let url = server.base_url();
    let mut all = vec!["chat", "--base-url", url.as_str(), "--model", "mock-model"];
    all.extend_from_slice(args);
    oai_sse(&all, stdin)
}

fn fault(spec: &str) -> FaultRule {
    spec.parse().expect("valid fault spec")
}

#[test]
fn streams_the_reply_to_stdout() {
    let server = MockServer::start(Script::new().text("Hello there, general.")).unwrap();
    let run = chat(&server, &["hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "Hello there, general.\n");
    let sent = server.requests()[0].json.clone().expect("json body");
    assert_eq!(sent["messages"][0]["content"], "hi");
    assert_eq!(sent["stream"], true);
}

#[test]
fn prompt_from_stdin_and_system_message() {
    let server = MockServer::start(Script::new().text("ok")).unwrap();
    let run = chat(
        &server,
        &["--system", "be brief", "--max-tokens", "7", "-"],
        "from stdin",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = server.requests()[0].json.clone().unwrap();
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "from stdin");
    assert_eq!(sent["max_tokens"], 7);
}

#[test]
fn json_output_carries_the_retries() {
    let script = Script::new()
        .text("recovered text")
        .reasoning("thinking")
        .fault(fault("close-after=300,times=1"));
    let server = MockServer::start(script).unwrap();
    let run = chat(&server, &["--json", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(run.stdout.trim().lines().count(), 1);
    assert_eq!(out["object"], "chat.completion");
    assert_eq!(out["choices"][0]["message"]["role"], "assistant");
    assert_eq!(out["choices"][0]["message"]["content"], "recovered text");
    assert_eq!(
        out["choices"][0]["message"]["reasoning_content"],
        "thinking"
    );
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    let retries = out["retries"].as_array().expect("retries array");
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0]["attempt"], 1);
    assert!(retries[0]["delay_ms"].as_u64().is_some());
    let reason = retries[0]["reason"].as_str().unwrap();
    assert!(
        ["unexpected_eof", "incomplete_stream"].contains(&reason),
        "{reason}"
    );
    // The mock replays the stream: resumed, not generated again.
    assert_eq!(retries[0]["action"], "resumed", "{retries:?}");
    assert!(retries[0]["offset"].as_u64().is_some(), "{retries:?}");
    assert!(
        run.stderr.contains("resumed at byte ") && run.stderr.contains(" after unexpected eof"),
        "{}",
        run.stderr
    );
    assert_eq!(server.chat_request_count(), 1);
    assert_eq!(server.replay_count(), 1);
}

#[test]
fn clean_run_has_an_empty_retries_array() {
    let server = MockServer::start(Script::new()).unwrap();
    let run = chat(&server, &["--json", "hi"], "");
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(out["retries"], serde_json::json!([]));
}

#[test]
fn request_file_with_tools() {
    let server =
        MockServer::start(Script::new().tool_call("get_weather", r#"{"city":"Oslo"}"#)).unwrap();
    let dir = std::env::temp_dir().join(format!("oai-sse-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("request.json");
    std::fs::write(
        &file,
        r#"{"model":"from-file","messages":[{"role":"user","content":"weather?"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
            "stream":false,"top_k":40}"#,
    )
    .unwrap();
    let run = chat(
        &server,
        &["--json", "--request", file.to_str().unwrap()],
        "",
    );
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let call = &out["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Oslo"}"#);
    let sent = server.requests()[0].json.clone().unwrap();
    assert_eq!(sent["stream"], true, "stream is forced on");
    assert_eq!(sent["top_k"], 40, "unknown fields pass through");
    assert_eq!(sent["model"], "mock-model", "--model overrides the file");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
}

#[test]
fn api_error_is_one_line_and_exit_1_without_retry() {
    let server =
        MockServer::start(Script::new().fault(fault("status=400,message=bad things"))).unwrap();
    let run = chat(&server, &["hi"], "");
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("400") && run.stderr.contains("bad things"),
        "{}",
        run.stderr
    );
    assert_eq!(server.chat_request_count(), 1);
}

#[test]
fn max_retries_and_quiet() {
    // 502 is counted against --max-retries (a 503 is a server still loading: waited out).
    let server = MockServer::start(Script::new().fault(fault("status=502"))).unwrap();
    let run = chat(&server, &["--max-retries", "1", "--quiet", "hi"], "");
    assert_eq!(run.code, 1);
    assert_eq!(server.chat_request_count(), 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("gave up after 2 attempts"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_mid_stream_retry() {
    // Cut after the first content chunks have been printed, on a server without stream
    // replay: going on would mean generating (and printing) the answer again.
    let script = Script::new()
        .text("one two three four five six")
        .fault(fault("close-after=700,times=1"))
        .fault(fault("no-replay"));
    let server = MockServer::start(script).unwrap();
    let run = chat(&server, &["--no-mid-stream-retry", "hi"], "");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        !run.stdout.is_empty(),
        "some output was printed before the cut"
    );
    assert_eq!(server.chat_request_count(), 1);

    // With replay, picking the stream up where it broke repeats nothing: allowed.
    let script = Script::new()
        .text("one two three four five six")
        .fault(fault("close-after=700,times=1"));
    let server = MockServer::start(script).unwrap();
    let run = chat(&server, &["--no-mid-stream-retry", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim_end(),
        "one two three four five six",
        "{}",
        run.stderr
    );
    assert_eq!(server.generation_count(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let server = MockServer::start(Script::new()).unwrap();
    for bad in [
        &["--max-tokens", "many", "hi"][..],
        &["--idle-timeout", "-1", "hi"],
        &["--bogus", "hi"],
        &["--base-url", "ftp://nowhere", "hi"],
        &["-H", "no colon", "hi"],
    ] {
        let run = chat(&server, bad, "");
        assert_eq!(run.code, 2, "{bad:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{bad:?}: {}", run.stderr);
    }
    assert_eq!(server.chat_request_count(), 0);
}

/// Runs `oai-sse` with `args` (no default base URL or model) and `stdin`.
fn oai_sse(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_MODEL")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oai-sse");
    let mut pipe = child.stdin.take().expect("stdin");
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn prompt_words_are_joined_and_piped_stdin_follows_them() {
    let server = MockServer::start(Script::new().text("ok")).unwrap();
    let run = chat(&server, &["Review", "this", "diff"], "--- a\n+++ b\n");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = server.requests()[0].json.clone().unwrap();
    assert_eq!(
        sent["messages"][0]["content"],
        "Review this diff\n\n--- a\n+++ b\n"
    );
    // Empty stdin adds nothing.
    let run = chat(&server, &["hi", "there"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = server.requests()[1].json.clone().unwrap();
    assert_eq!(sent["messages"][0]["content"], "hi there");
}

#[test]
fn without_a_model_the_servers_first_is_used() {
    let server = MockServer::start(Script::new().text("ok").model("listed-model")).unwrap();
    let url = server.base_url();
    let run = oai_sse(&["chat", "--base-url", &url, "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let chat = server.chat_requests();
    assert_eq!(chat[0].json.as_ref().unwrap()["model"], "listed-model");
    assert!(server.requests().iter().any(|r| r.route() == "/models"));
}

#[test]
fn short_flags_and_headers() {
    let server = MockServer::start(Script::new().text("ok")).unwrap();
    let url = server.base_url();
    let run = oai_sse(
        &[
            "chat",
            "--base-url",
            &url,
            "-m",
            "m1",
            "-s",
            "terse",
            "-H",
            "X-Team: blue",
            "-j",
            "hi",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
    assert_eq!(out["choices"][0]["message"]["content"], "ok");
    let sent = &server.chat_requests()[0];
    assert_eq!(sent.header("x-team"), Some("blue"));
    let json = sent.json.as_ref().unwrap();
    assert_eq!(json["model"], "m1");
    assert_eq!(json["messages"][0]["content"], "terse");
}

/// A break that can be neither resumed nor continued restarts the answer; when the new answer
/// differs from what stdout (a pipe here) already holds, the CLI stops with a clear error
/// instead of writing a second answer after the first.
#[test]
fn a_restart_with_a_different_answer_stops_instead_of_printing_twice() {
    let server = common::serve_sequential(|n, stream, request| {
        if !request.starts_with("POST /v1/chat/completions ") {
            // No replay route, nothing to stop.
            return common::send(stream, &common::http_response("404 Not Found", &[], ""));
        }
        if n == 0 {
            // The first answer is cut after its first words.
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
            return common::send(
                stream,
                format!("{head}{}", common::content("The sea is")).as_bytes(),
            );
        }
        let body = format!(
            "{}{}{}",
            common::content("A different answer."),
            common::finish("stop"),
            common::DONE
        );
        common::send(stream, &common::sse_response(&body));
    });
    let url = server.base_url();
    let run = oai_sse(&["chat", "--base-url", &url, "-m", "m1", "hi"], "");
    let requests = server.stop();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim_end(),
        "The sea is",
        "nothing after what was printed"
    );
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("its new answer differs from the one already printed"),
        "{}",
        run.stderr
    );
    let chat = "POST /v1/chat/completions ";
    let posts = requests.iter().filter(|r| r.starts_with(chat)).count();
    assert_eq!(posts, 2, "the cut answer and its restart: {requests:?}");
}

/// A header given with `-H` replaces the default of the same name (any case): with
/// `OPENAI_API_KEY` exported and `--base-url` pointed at another provider with its own token,
/// only that token goes out — the exported key is not sent alongside it.
#[test]
fn a_given_header_replaces_the_default_and_the_api_key() {
    let server = common::serve_sequential(|_, stream, _| {
        let body = format!("{}{}", common::content("ok"), common::finish("stop"));
        common::send(
            stream,
            &common::sse_response(&format!("{body}{}", common::DONE)),
        );
    });
    let url = server.base_url();
    let mut child = Command::new(BIN)
        .args(["chat", "--base-url", &url, "-m", "m1", "--max-retries", "0"])
        .args(["-H", "authorization: Bearer other-provider-token"])
        .args(["-H", "X-CONVERSATION-ID: mine"])
        .arg("hi")
        .env("OPENAI_API_KEY", "sk-exported-key")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oai-sse");
    let out = child.wait().expect("wait");
    let requests = server.stop();
    assert!(out.success());
    assert_eq!(requests.len(), 1);
    let head = requests[0]
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    let values = |name: &str| -> Vec<String> {
        let prefix = format!("{name}: ");
        let lines = head.lines().filter_map(|l| l.strip_prefix(prefix.as_str()));
        lines.map(str::to_owned).collect()
    };
    assert_eq!(
        values("authorization"),
        ["bearer other-provider-token"],
        "{head}"
    );
    assert_eq!(values("x-conversation-id"), ["mine"], "{head}");
    assert!(!requests[0].contains("sk-exported-key"), "{head}");
}

#[test]
fn help_for_a_command() {
    let run = oai_sse(&["help", "chat"], "");
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.starts_with("usage: oai-sse chat"),
        "{}",
        run.stdout
    );
    let run = oai_sse(&["help", "nope"], "");
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn json_failure_is_a_json_object_on_stdout() {
    let server = MockServer::start(
        Script::new().fault(fault("status=429,message=slow down,retry-after-ms=1")),
    )
    .unwrap();
    let run = chat(&server, &["--json", "--max-retries", "1", "-q", "hi"], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(out["error"]["kind"], "http_status");
    assert_eq!(out["error"]["status"], 429);
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("slow down")
    );
    assert_eq!(out["error"]["retries"].as_array().map(Vec::len), Some(1));
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn json_keeps_openais_key_order() {
    let server = MockServer::start(Script::new().text("ok")).unwrap();
    let run = chat(&server, &["--json", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = run.stdout.trim();
    let keys = [
        "\"id\"",
        "\"object\"",
        "\"created\"",
        "\"model\"",
        "\"choices\"",
        "\"usage\"",
        "\"retries\"",
    ];
    let at: Vec<usize> = keys
        .iter()
        .map(|k| text.find(k).unwrap_or_else(|| panic!("{k} in {text}")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn stats_line() {
    let server = MockServer::start(
        Script::new()
            .text("one two three four")
            .fault(fault("close-after=500,times=1")),
    )
    .unwrap();
    let run = chat(&server, &["--stats", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("stats: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(line.contains("first token after "), "{line}");
    assert!(line.contains(" tokens"), "{line}");
    assert!(line.contains("2 attempts (resumed at byte "), "{line}");
    assert!(line.contains(" bytes"), "{line}");
}

/// A break on a server that cannot resume is one retry, told in words on stderr and in
/// `--stats`: where it broke, why, and why the resume was passed over.
#[test]
fn a_break_without_replay_is_one_retry_told_in_words() {
    let server = MockServer::start(
        Script::new()
            .text("one two three four")
            .fault(fault("close-after=500,times=1"))
            .fault(fault("no-replay")),
    )
    .unwrap();
    let run = chat(&server, &["--stats", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "one two three four\n", "{}", run.stderr);
    let told: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" at byte ") && !l.starts_with("stats: "))
        .collect();
    let [line] = told.as_slice() else {
        panic!("one line for one break: {}", run.stderr);
    };
    assert!(
        line.ends_with("after unexpected eof: the server cannot resume (404)"),
        "{line}"
    );
    assert!(
        line.starts_with("restarted at byte ") || line.starts_with("continued at byte "),
        "{line}"
    );
    let stats = run
        .stderr
        .lines()
        .find(|l| l.starts_with("stats: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(stats.contains(&format!("2 attempts ({line})")), "{stats}");
}

#[test]
fn deadline_ends_the_call() {
    let server = MockServer::start(Script::new().fault(fault("stall-before=5"))).unwrap();
    let start = std::time::Instant::now();
    let run = chat(&server, &["--deadline", "0.5", "hi"], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("deadline exceeded"), "{}", run.stderr);
    assert!(start.elapsed() < std::time::Duration::from_secs(4));
}

#[test]
fn several_choices_print_as_labelled_blocks() {
    let server = MockServer::start(Script::new().text("hello there")).unwrap();
    let dir = std::env::temp_dir().join(format!("oai-sse-n2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("request.json");
    std::fs::write(
        &file,
        r#"{"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    let run = chat(&server, &["--request", file.to_str().unwrap()], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The mock answers one choice; the output is still a labelled block, not a bare line.
    assert_eq!(run.stdout, "[choice 0]\nhello there\n");

    std::fs::write(&file, r#"{"model":"m","messages":[]}"#).unwrap();
    let run = chat(&server, &["--request", file.to_str().unwrap()], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("has no messages"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `oai-sse chat hi` against `server`, running, its stdout and stderr piped.
fn spawn_chat(server: &MockServer) -> std::process::Child {
    Command::new(BIN)
        .args([
            "chat",
            "--base-url",
            &server.base_url(),
            "--model",
            "m",
            "hi",
        ])
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn a_closed_stdout_stops_the_call_quietly() {
    // A long reply, read by a consumer that leaves after a few bytes (like `| head -c 10`).
    let server = MockServer::start(
        Script::new()
            .text("word")
            .repeat(20_000)
            .fault(fault("slices=64,delay-ms=1")),
    )
    .unwrap();
    let mut child = spawn_chat(&server);
    let mut out = child.stdout.take().expect("stdout");
    let mut first = [0u8; 10];
    std::io::Read::read_exact(&mut out, &mut first).expect("some output");
    drop(out);
    let start = std::time::Instant::now();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_the_line_and_exits_130() {
    let server = MockServer::start(
        Script::new()
            .text("partial answer")
            .fault(fault("stall-after=300,secs=30")),
    )
    .unwrap();
    let child = spawn_chat(&server);
    // Wait until the call is in flight, then interrupt it like a terminal would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.chat_request_count() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.is_empty() || stdout.ends_with('\n'), "{stdout:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end().lines().last(),
        Some("interrupted"),
        "{stderr}"
    );
}

/// A reply that tries to retitle the terminal and clear the screen is shown escaped on a
/// terminal (run under `script`, which gives the process a pseudo-terminal), and passed
/// through untouched to a pipe.
#[cfg(target_os = "linux")]
#[test]
fn control_sequences_in_a_reply_are_escaped_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to run under a pseudo-terminal");
        return;
    }
    let hostile = "hello \u{1b}]0;pwned\u{7}\u{1b}[2J world";
    let server = MockServer::start(Script::new().text(hostile)).unwrap();
    let command = format!(
        "{BIN} chat --base-url {} --model m hi </dev/null",
        server.base_url()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        !shown.contains('\u{1b}'),
        "raw escape reached the terminal: {shown:?}"
    );
    assert!(shown.contains("\\u{1b}]0;pwned"), "{shown:?}");
    // Through a pipe the text is the model's, byte for byte.
    let run = chat(&server, &["hi"], "");
    assert_eq!(run.stdout, format!("{hostile}\n"));
}

/// The retry lines of a run's stderr.
fn retry_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("retry ") || l.starts_with("waiting for "))
        .collect()
}

#[test]
fn a_server_loading_its_model_is_a_wait_in_seconds_not_retries_past_the_maximum() {
    let script = Script::new()
        .text("loaded")
        .fault(fault("status=503,message=Loading model,times=3"));
    let server = MockServer::start(script).unwrap();
    let run = chat(&server, &["--max-retries", "1", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "loaded\n");
    let waiting = format!("waiting for {} (", server.addr());
    let lines = retry_lines(&run.stderr);
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    for line in lines {
        assert!(line.starts_with(&waiting), "{line}");
        assert!(line.contains("Loading model"), "{line}");
        assert!(line.ends_with(" s of 120 s"), "{line}");
    }
    // Nothing was cut: no break to tell at the end.
    assert!(!run.stderr.contains(" at byte "), "{}", run.stderr);
    assert_eq!(server.chat_request_count(), 4);
}

#[test]
fn a_port_where_nothing_ever_answered_fails_after_max_retries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let started = std::time::Instant::now();
    let run = oai_sse(
        &[
            "chat",
            "--base-url",
            &url,
            "-m",
            "m",
            "--max-retries",
            "1",
            "hi",
        ],
        "",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    // One backoff of about 250 ms, not the two minutes of waiting for a server that went away.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let lines = retry_lines(&run.stderr);
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].starts_with("retry 1/1 after "), "{}", lines[0]);
    assert!(lines[0].ends_with("ms: connection refused"), "{}", lines[0]);
    assert!(
        run.stderr.contains("gave up after 2 attempts"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_server_that_went_away_is_waited_for_and_the_wait_is_shown() {
    use std::io::{BufRead, BufReader, Read};
    // A server lists its models (no --model given), then nothing listens at its address.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let models = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("the model list request");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        // Gone before the client has its answer: its chat request is refused.
        drop(listener);
        let body = r#"{"data":[{"id":"listed"}]}"#;
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
    });
    let url = format!("http://{addr}/v1");
    let mut child = Command::new(BIN)
        .args(["chat", "--base-url", &url, "--max-retries", "1", "hi"])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_MODEL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    models.join().expect("model list served");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("a line on stderr");
    assert_eq!(
        first.trim_end(),
        format!("waiting for {addr} (connection refused): 0 s of 120 s")
    );
    // Back at the same address: the call goes on and answers.
    let server = MockServer::start_on(addr, Script::new().text("back again")).unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{first}{rest}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "back again\n");
    assert!(
        retry_lines(&rest)
            .iter()
            .all(|l| l.starts_with("waiting for ")),
        "{rest}"
    );
    let sent = server.requests()[0].json.clone().unwrap();
    assert_eq!(sent["model"], "listed");
}

#[test]
fn a_tool_call_reply_prints_each_call_on_stdout() {
    let script = Script::new()
        .tool_call("get_weather", "{\"city\": \"Oslo\",\n \"days\": [1, 2]}")
        .tool_call("get_time", r#"{"tz":"CET"}"#);
    let server = MockServer::start(script).unwrap();
    let run = chat(&server, &["weather?"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "get_weather {\"city\":\"Oslo\",\"days\":[1,2]}\nget_time {\"tz\":\"CET\"}\n"
    );
    assert_eq!(
        run.stderr.trim_end(),
        "[reply: 2 tool calls on stdout, name and arguments]"
    );
    // --json prints the response object only.
    let run = chat(&server, &["--json", "weather?"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let calls = &out["choices"][0]["message"]["tool_calls"];
    assert_eq!(calls[1]["function"]["arguments"], r#"{"tz":"CET"}"#);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn a_reply_cut_at_max_tokens_says_so_on_stderr() {
    let server = MockServer::start(Script::new().text("one two").finish_reason("length")).unwrap();
    let run = chat(&server, &["--max-tokens", "2", "count"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "one two\n");
    assert_eq!(run.stderr, "stopped at max_tokens\n");
    let run = chat(&server, &["--quiet", "count"], "");
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("one two\n", "")
    );
    // A reply that ends on its own gets no note.
    let server = MockServer::start(Script::new().text("one two")).unwrap();
    let run = chat(&server, &["count"], "");
    assert_eq!(run.stderr, "");
}

#[test]
fn verbose_shows_this_crates_decisions_and_twice_verbose_everything() {
    let script = Script::new()
        .text("cut once")
        .fault(fault("close-after=300,times=1"));
    let server = MockServer::start(script).unwrap();
    let addr = server.addr().to_string();
    let run = chat(&server, &["-v", "hi"], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "cut once\n");
    for decision in [
        "attempt 1: POST http://",
        &format!("connecting to {addr}"),
        "retry 1/3 (resumed) after ",
        "attempt 1 ended after ",
        "attempt 2: GET http://",
    ] {
        assert!(run.stderr.contains(decision), "{decision}: {}", run.stderr);
    }
    // ureq's own lines (its state machine, its pool) are not this crate's decisions.
    assert!(!run.stderr.contains("Call<"), "{}", run.stderr);
    assert!(!run.stderr.contains("ureq"), "{}", run.stderr);

    for args in [&["-vv", "hi"][..], &["-v", "-v", "hi"]] {
        let run = chat(&server, args, "");
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("ureq"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("oai_sse"), "{args:?}: {}", run.stderr);
    }
    let run = chat(&server, &["hi"], "");
    assert!(!run.stderr.contains("DEBUG"), "{}", run.stderr);
}
