//! `oai-sse chat` as a process against the in-process mock server.

use oai_sse::mock::{FaultRule, MockServer, Script};
use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_oai-sse");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn chat(server: &MockServer, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(BIN)
        .arg("chat")
        .args(["--base-url", &server.base_url(), "--model", "mock-model"])
        .args(args)
        .env_remove("OPENAI_API_KEY")
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
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
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
    assert!(run.stderr.contains("resume at byte "), "{}", run.stderr);
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
        &["a", "b"],
    ] {
        let run = chat(&server, bad, "");
        assert_eq!(run.code, 2, "{bad:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{bad:?}: {}", run.stderr);
    }
    assert_eq!(server.chat_request_count(), 0);
}
