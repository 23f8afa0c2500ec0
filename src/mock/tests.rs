//! The mock server over loopback, as a client sees it: continuing a final assistant message,
//! the headers it sends, and the tokens it counts. Raw `TcpStream` requests with a timeout on
//! every socket, so a broken server fails a test instead of hanging it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Continuation, Fault, FaultRule, MockServer, Replies, Script};

const TIMEOUT: Duration = Duration::from_secs(5);
const TEXT: &str = "Hello big world";

/// One response to a `Connection: close` request.
struct Response {
    status: u16,
    head: String,
    /// De-chunked.
    body: String,
}

impl Response {
    /// Every value of a header, by case-insensitive name.
    fn headers(&self, name: &str) -> Vec<&str> {
        let values = self.head.lines().skip(1).filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        });
        values.collect()
    }

    /// The JSON `data:` payloads of an SSE body (not `[DONE]`).
    fn chunks(&self) -> Vec<Value> {
        let data = self.body.lines().filter_map(|l| l.strip_prefix("data: "));
        let json = data.filter(|d| *d != "[DONE]");
        json.map(|d| serde_json::from_str(d).expect("chunk JSON"))
            .collect()
    }

    /// The delta field `field` of each chunk that has it, in order.
    fn deltas(&self, field: &str) -> Vec<String> {
        let chunks = self.chunks();
        let values = chunks.iter().filter_map(|c| {
            let v = c.pointer(&format!("/choices/0/delta/{field}"))?;
            v.as_str().map(str::to_owned)
        });
        // The role chunk's empty content is not a piece.
        values.filter(|v| !v.is_empty()).collect()
    }

    fn usage(&self) -> Value {
        let chunks = self.chunks();
        let usage = chunks.iter().rev().find_map(|c| c.get("usage"));
        usage.cloned().expect("a usage chunk")
    }
}

fn send(server: &MockServer, method: &str, target: &str, body: &str) -> Response {
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    tcp.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        tcp,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).expect("read the whole response");
    let raw = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Response {
        status,
        head: head.to_owned(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    }
}

/// The chunks' data up to the last chunk or the first cut one.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    // Each round consumes a chunk: the loop is bounded by the body's length.
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).expect("chunk size");
        let (Some(data), Some(next)) = (rest.get(..size), rest.get(size + 2..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(data);
        body = next;
    }
    out
}

fn chat(server: &MockServer, request: &Value) -> Response {
    send(server, "POST", "/v1/chat/completions", &request.to_string())
}

/// A streamed request ending with an assistant message `prefix`, flagged for continuation or
/// not.
fn prefilled(prefix: &str, flagged: bool) -> Value {
    let mut request = json!({"model": "m", "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello"},
                     {"role": "assistant", "content": prefix}]});
    if flagged {
        request["continue_final_message"] = json!(true);
        request["add_generation_prompt"] = json!(false);
    }
    request
}

fn server(script: Script, continuation: Continuation) -> MockServer {
    let replies = Replies::from(script).continuation(continuation);
    MockServer::start(replies).expect("start")
}

fn thinking() -> Script {
    Script::new().text(TEXT).reasoning("Let me think")
}

/// The uncut reply's pieces are "Hello", " big", " world".
#[test]
fn continues_sends_the_uncut_pieces_from_where_the_prefix_ends() {
    let s = server(thinking(), Continuation::Continues);
    let cases: &[(&str, &[&str])] = &[
        ("", &["Hello", " big", " world"]),
        ("Hello", &[" big", " world"]),
        ("Hello ", &["big", " world"]),
        ("Hello b", &["ig", " world"]),
        ("Hello big", &[" world"]),
        ("Hello big worl", &["d"]),
        ("Hello big world", &[]),
    ];
    for &(prefix, want) in cases {
        let before = s.generated_tokens();
        let r = chat(&s, &prefilled(prefix, true));
        assert_eq!(r.status, 200, "{prefix:?}");
        assert_eq!(r.deltas("content"), want, "{prefix:?}");
        assert_eq!(format!("{prefix}{}", want.concat()), TEXT);
        assert!(
            r.deltas("reasoning_content").is_empty(),
            "{prefix:?}: a prefill means the thinking is over"
        );
        assert_eq!(r.usage()["completion_tokens"], want.len(), "{prefix:?}");
        assert_eq!(
            s.generated_tokens() - before,
            want.len() as u64,
            "{prefix:?}"
        );
    }
    // The prompt is "Say hello" and the prefix.
    let usage = chat(&s, &prefilled("Hello big", true)).usage();
    assert_eq!(
        (&usage["prompt_tokens"], &usage["completion_tokens"]),
        (&json!(4), &json!(1))
    );
    assert_eq!(usage["total_tokens"], 5);
}

#[test]
fn continues_answers_an_unflagged_request_afresh() {
    let s = server(thinking(), Continuation::Continues);
    let r = chat(&s, &prefilled("Hello", false));
    assert_eq!(r.deltas("content"), ["Hello", " big", " world"]);
    assert_eq!(r.deltas("reasoning_content"), ["Let", " me", " think"]);
    assert_eq!(r.usage()["completion_tokens"], 6);
    assert_eq!(s.generated_tokens(), 6);
}

#[test]
fn echoes_repeats_the_prefix_then_goes_on() {
    let s = server(thinking(), Continuation::Echoes);
    for flagged in [false, true] {
        let before = s.generated_tokens();
        let r = chat(&s, &prefilled("Hello b", flagged));
        assert_eq!(
            r.deltas("content"),
            ["Hello b", "ig", " world"],
            "{flagged}"
        );
        assert!(r.deltas("reasoning_content").is_empty());
        // The echo was not generated.
        assert_eq!(r.usage()["completion_tokens"], 2);
        assert_eq!(s.generated_tokens() - before, 2);
    }
}

#[test]
fn ignores_is_the_default_and_answers_afresh() {
    let s = MockServer::start(thinking()).expect("start");
    let r = chat(&s, &prefilled("Hello", true));
    assert_eq!(r.deltas("content"), ["Hello", " big", " world"]);
    assert_eq!(r.deltas("reasoning_content"), ["Let", " me", " think"]);
    let events: Vec<String> = thinking().sse_events(&prefilled("Hello", true)).collect();
    assert_eq!(r.body, events.concat(), "exactly today's stream");
}

#[test]
fn a_prefix_the_reply_does_not_start_with_gets_the_whole_text() {
    let full = ["Hello", " big", " world"];
    for prefix in ["Goodbye", "Hello  big", "hello", "Hello big world!"] {
        let s = server(thinking(), Continuation::Continues);
        let r = chat(&s, &prefilled(prefix, true));
        assert_eq!(r.deltas("content"), full, "{prefix:?}");
        assert!(r.deltas("reasoning_content").is_empty(), "{prefix:?}");
        assert_eq!(s.generated_tokens(), 3);

        let s = server(thinking(), Continuation::Echoes);
        let r = chat(&s, &prefilled(prefix, false));
        let mut want = vec![prefix];
        want.extend(full);
        assert_eq!(r.deltas("content"), want, "{prefix:?}");
        assert_eq!(s.generated_tokens(), 3);
    }
}

#[test]
fn a_repeated_reply_continues_across_repetitions() {
    let s = server(
        Script::new().text("la la").repeat(3),
        Continuation::Continues,
    );
    let r = chat(&s, &prefilled("la la l", true));
    assert_eq!(r.deltas("content"), ["a", " la", " la", " la"]);
    assert_eq!(
        format!("la la l{}", r.deltas("content").concat()),
        "la la la la la la"
    );
}

#[test]
fn a_tool_call_script_continues_its_text_then_calls_the_tools() {
    let args = r#"{"city":"Paris","unit":"C"}"#;
    let script = Script::new()
        .text("Let me check.")
        .tool_call("get_weather", args);
    let s = server(script.clone(), Continuation::Continues);
    let r = chat(&s, &prefilled("Let me", true));
    assert_eq!(r.deltas("content"), [" check."]);
    let arguments: String = r.deltas("tool_calls/0/function/arguments").concat();
    assert_eq!(arguments, args, "the tool calls come whole");
    let names = r.deltas("tool_calls/0/function/name");
    assert_eq!(names, ["get_weather"]);
    let finish = r.chunks().iter().find_map(|c| {
        let reason = c.pointer("/choices/0/finish_reason")?.as_str()?;
        Some(reason.to_owned())
    });
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    // " check." and the arguments in four 8-byte pieces.
    assert_eq!(r.usage()["completion_tokens"], 1 + 4);
    assert_eq!(s.generated_tokens(), 5);

    // A script with no text: a prefix it does not start with gets no content, the same calls.
    let tools_only = Script::new().tool_call("get_weather", args);
    let s = server(tools_only, Continuation::Continues);
    let r = chat(&s, &prefilled("I will look it up.", true));
    assert!(r.deltas("content").is_empty());
    let arguments: String = r.deltas("tool_calls/0/function/arguments").concat();
    assert_eq!(arguments, args);
    assert_eq!(s.generated_tokens(), 4);
}

#[test]
fn a_continuation_for_several_choices_is_refused_and_uses_up_no_script() {
    let first = Script::new().text("first");
    let replies = Replies::sequence([first, Script::new().text("second")])
        .continuation(Continuation::Continues);
    let s = MockServer::start(replies).expect("start");
    let mut request = prefilled("fi", true);
    request["n"] = json!(2);
    let r = chat(&s, &request);
    assert_eq!(r.status, 400);
    let error: Value = serde_json::from_str(&r.body).expect("an error body");
    assert_eq!(
        error["error"]["message"],
        "Only one completion choice is allowed"
    );
    assert_eq!((s.generation_count(), s.generated_tokens()), (0, 0));

    // n = 1 is a continuation, and gets the first script.
    request["n"] = json!(1);
    assert_eq!(chat(&s, &request).deltas("content"), ["rst"]);
    // A request the mode does not prefill is answered with one choice whatever its n.
    let mut plain = prefilled("fi", false);
    plain["n"] = json!(3);
    let r = chat(&s, &plain);
    assert_eq!(r.deltas("content"), ["second"]);
    assert!(r.chunks().iter().all(|c| {
        let choices = c["choices"].as_array().map_or(0, Vec::len);
        choices <= 1
    }));
}

#[test]
fn a_non_streamed_request_continues_too() {
    let s = server(thinking(), Continuation::Continues);
    let mut request = prefilled("Hello b", true);
    request["stream"] = json!(false);
    let r = chat(&s, &request);
    let body: Value = serde_json::from_str(&r.body).expect("a completion");
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "ig world");
    assert_eq!(message.get("reasoning_content"), None);
    assert_eq!(body["usage"]["completion_tokens"], 2);
    assert_eq!(s.generated_tokens(), 2);
}

#[test]
fn the_replay_of_a_continued_stream_is_the_continued_body_and_generates_nothing() {
    let s = server(thinking(), Continuation::Continues);
    let request = prefilled("Hello", true).to_string();
    let mut tcp = TcpStream::connect(s.addr()).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        tcp,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nX-Conversation-Id: c1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{request}",
        request.len()
    )
    .expect("write");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).expect("read");
    let body = dechunk(raw.split_once("\r\n\r\n").expect("head").1);
    assert_eq!(s.generated_tokens(), 2);
    let replay = send(&s, "GET", "/v1/stream?conv_id=c1&from=0", "");
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, body);
    assert_eq!(replay.deltas("content"), [" big", " world"]);
    assert_eq!(s.generated_tokens(), 2, "a replay generates nothing");
}

#[test]
fn generated_tokens_sum_the_completion_tokens_and_skip_error_answers() {
    let cut = FaultRule::from(Fault::CloseAfter(400)).times(1);
    let unavailable = FaultRule::from(Fault::status(503)).after(1).times(1);
    let replies = Replies::from(thinking().fault(cut)).fault(unavailable);
    let s = MockServer::start(replies).expect("start");
    let request = json!({"model": "m", "stream": true,
                         "messages": [{"role": "user", "content": "hi"}]});
    // Cut after 400 bytes, but generated whole.
    let _ = chat(&s, &request);
    assert_eq!(s.generated_tokens(), 6);
    // The 503 generates nothing.
    assert_eq!(chat(&s, &request).status, 503);
    assert_eq!((s.generation_count(), s.generated_tokens()), (1, 6));
}

#[test]
fn every_response_carries_the_server_headers() {
    let script = Script::new().fault(FaultRule::from(Fault::HtmlError(502)).after(3));
    let replies = Replies::from(script)
        .server_header("nginx-ish")
        .server_header("llama.cpp")
        .header("llm_provider-server", "llama.cpp");
    let s = MockServer::start(replies).expect("start");
    let streamed = json!({"model": "m", "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
    let mut plain = streamed.clone();
    plain["stream"] = json!(false);
    let responses = [
        chat(&s, &streamed),
        chat(&s, &plain),
        send(&s, "GET", "/v1/models", ""),
        send(&s, "GET", "/v1/nowhere", ""),
        send(&s, "GET", "/v1/stream?conv_id=unknown", ""),
    ];
    for r in &responses {
        assert_eq!(r.headers("server"), ["llama.cpp"], "{}", r.head);
        assert_eq!(
            r.headers("llm_provider-server"),
            ["llama.cpp"],
            "{}",
            r.head
        );
    }
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 404, 404]
    );
    // A gateway's error page keeps its own Server header, once.
    let gateway = chat(&s, &streamed);
    assert_eq!(gateway.status, 502);
    assert_eq!(gateway.headers("server"), ["nginx"]);
    assert_eq!(gateway.headers("llm_provider-server"), ["llama.cpp"]);
}

#[test]
#[should_panic(expected = "the mock frames its responses itself")]
fn a_framing_header_is_refused() {
    let _ = Replies::from(Script::new()).header("Content-Length", "0");
}

#[test]
#[should_panic(expected = "control character")]
fn a_header_value_cannot_add_lines() {
    let _ = Replies::from(Script::new()).server_header("llama.cpp\r\nX-Forged: 1");
}
