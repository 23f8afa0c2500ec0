//! The examples under tests/examples/ build (cargo test builds them) and run: each against
//! the mock server, checked by its output.
#![cfg(feature = "mock")]

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/<name>`, next to this test binary's `deps/` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    dir.join("examples").join(name)
}

fn run(name: &str, args: &[&str]) -> (String, String) {
    let path = example(name);
    let out = Command::new(&path)
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_MODEL")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (built by cargo test)", path.display()));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{name}: {}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn stream_resumes_a_cut_reply() {
    let (stdout, stderr) = run("stream", &[]);
    assert_eq!(
        stdout,
        "Streams break; this one picks up where it broke and repeats nothing.\n"
    );
    assert!(stderr.contains("[resumed at byte "), "{stderr}");
    assert!(stderr.contains("resumed at byte"), "{stderr}");
}

#[test]
fn agent_loop_answers_after_a_tool_call() {
    let (stdout, stderr) = run("agent_loop", &[]);
    assert_eq!(
        stdout,
        "The weather report says: sunny and 12 °C in Oslo.\n"
    );
    assert!(
        stderr.contains("turn 1: get_weather({\"city\":\"Oslo\"})"),
        "{stderr}"
    );
    assert!(stderr.contains("answered after 2 turns"), "{stderr}");
}

#[test]
fn parse_file_reads_a_capture() {
    let (stdout, stderr) = run("parse_file", &[]);
    assert!(
        stdout.contains("event \"message\" id \"2\": \"multi\\nline\""),
        "{stdout}"
    );
    assert_eq!(stderr.trim(), "3 events");
    let file = std::env::temp_dir().join(format!("oai-sse-example-{}.sse", std::process::id()));
    std::fs::write(&file, "data: a\r\n\r\ndata: b\r\n\r\n").expect("write capture");
    let (stdout, _) = run("parse_file", &[file.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(
        stdout,
        "event \"message\" id \"\": \"a\"\nevent \"message\" id \"\": \"b\"\n"
    );
}

#[test]
fn stop_early_stops_and_times() {
    let (stdout, stderr) = run("stop_early", &[]);
    assert_eq!(stdout, "alpha beta gamma\n");
    assert!(stderr.contains("stopped by the caller"), "{stderr}");
    assert!(stderr.contains("first token Some("), "{stderr}");
}
