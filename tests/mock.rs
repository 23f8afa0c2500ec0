//! The mock server's faults, checked on the wire with raw `TcpStream` clients. Every socket has
//! a timeout and every loop a bound, so a broken server fails a test instead of hanging it.
#![cfg(feature = "mock")]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use oai_sse::mock::{
    Fault, FaultRule, FaultSpecError, FeedSpec, MockServer, PER_MILLION, Replies, Schedule, Script,
    StatusFault,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(5);

fn connect(server: &MockServer) -> TcpStream {
    connect_to(server.addr())
}

fn connect_to(addr: std::net::SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    // `write!` sends a request in several segments: without this, Nagle's algorithm and the
    // server's delayed ACK add 40 ms to many requests.
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    tcp
}

fn stream_body() -> Value {
    json!({"model": "test-model", "stream": true, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Say hello"}]})
}

fn post(tcp: &mut TcpStream, body: &Value, extra_headers: &str) {
    let body = body.to_string();
    write!(
        tcp,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n{extra_headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

/// Reads until EOF or an error; returns the bytes and how reading ended.
fn read_until_end(tcp: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// One complete response over a `Connection: close` request.
fn raw_response(server: &MockServer, body: &Value) -> Vec<u8> {
    let mut tcp = connect(server);
    post(&mut tcp, body, "Connection: close\r\n");
    let (bytes, end) = read_until_end(&mut tcp);
    end.unwrap();
    bytes
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// The `data:` payloads of the SSE body.
    fn events(&self) -> Vec<&str> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect()
    }
}

/// Reads one response (Content-Length or chunked) off a keep-alive connection.
fn read_response(r: &mut BufReader<TcpStream>) -> Response {
    let mut head = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "eof in head");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head[9..12].parse().unwrap();
    let mut resp = Response {
        status,
        head,
        body: String::new(),
    };
    let mut body = Vec::new();
    if status == 204 {
        assert_eq!(
            resp.header("content-length"),
            None,
            "a 204 has no Content-Length"
        );
    } else if let Some(len) = resp.header("content-length") {
        body.resize(len.parse().unwrap(), 0);
        r.read_exact(&mut body).unwrap();
    } else {
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
        for _ in 0..1_000_000 {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim_end(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).unwrap();
            assert!(chunk.ends_with(b"\r\n"));
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    resp.body = String::from_utf8(body).unwrap();
    resp
}

fn request(server: &MockServer, body: &Value) -> Response {
    let mut tcp = connect(server);
    post(&mut tcp, body, "");
    read_response(&mut BufReader::new(tcp))
}

fn spec(s: &str) -> FaultRule {
    s.parse().unwrap()
}

#[test]
fn streams_the_script_exactly() {
    let script = Script::new()
        .text("Hello world")
        .reasoning("Let me think")
        .tool_call("get_weather", r#"{"city":"Paris","unit":"celsius"}"#);
    let server = MockServer::start(script.clone()).unwrap();
    let resp = request(&server, &stream_body());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        resp.body,
        script.sse_events(&stream_body()).collect::<String>()
    );

    let chunks: Vec<Value> = resp
        .events()
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    assert!(chunks.iter().all(|c| c["model"] == "test-model"));
    let delta = |c: &Value, key: &str| c["choices"][0]["delta"][key].as_str().map(str::to_owned);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: Vec<_> = chunks
        .iter()
        .filter_map(|c| delta(c, "content"))
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(content, ["Hello", " world"]);
    let reasoning: Vec<_> = chunks
        .iter()
        .filter_map(|c| delta(c, "reasoning_content"))
        .collect();
    assert_eq!(reasoning, ["Let", " me", " think"]);
    let calls: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["id"], "call_mock_0");
    assert!(calls.len() > 3, "arguments come in several pieces");
    let args: String = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"city":"Paris","unit":"celsius"}"#);
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 2);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(resp.events().last(), Some(&"[DONE]"));
}

#[test]
fn answers_json_models_and_errors() {
    let server = MockServer::start(Script::new().model("m1").finish_reason("length")).unwrap();
    let resp = request(&server, &json!({"messages": []}));
    let completion = resp.json();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "m1");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Hello from the oai-sse mock server."
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "length");

    let mut r = BufReader::new(connect(&server));
    write!(r.get_mut(), "GET /models HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).json()["data"][0]["id"], "m1");
    write!(r.get_mut(), "GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"]["type"], "invalid_request_error");
    assert_eq!(resp.json()["error"]["code"], Value::Null);
    write!(
        r.get_mut(),
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    )
    .unwrap();
    assert_eq!(read_response(&mut r).status, 400);
    write!(
        r.get_mut(),
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 9000000\r\n\r\n"
    )
    .unwrap();
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.header("connection")),
        (413, Some("close"))
    );
    assert_eq!(server.chat_request_count(), 2);
}

#[test]
fn keep_alive_serves_several_requests() {
    let server = MockServer::start(Script::new()).unwrap();
    let mut r = BufReader::new(connect(&server));
    post(r.get_mut(), &stream_body(), "");
    assert_eq!(read_response(&mut r).events().last(), Some(&"[DONE]"));
    post(r.get_mut(), &json!({}), "Connection: close\r\n");
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.header("connection")),
        (200, Some("close"))
    );
    assert_eq!(
        r.read(&mut [0; 16]).unwrap(),
        0,
        "closed after Connection: close"
    );
    assert_eq!(server.chat_request_count(), 2);
}

#[test]
fn close_after_sends_fin_at_exactly_n_bytes() {
    let server = MockServer::start(Script::new().fault(Fault::CloseAfter(150).after(1))).unwrap();
    let full = raw_response(&server, &stream_body());
    assert!(full.len() > 150);
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "Connection: close\r\n");
    let (bytes, end) = read_until_end(&mut tcp);
    end.unwrap();
    assert_eq!(bytes, full[..150]);
}

#[test]
fn reset_after_sends_rst_after_n_bytes() {
    let server = MockServer::start(Script::new().fault(Fault::ResetAfter(200).after(1))).unwrap();
    let full = raw_response(&server, &stream_body());
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "Connection: close\r\n");
    let (bytes, end) = read_until_end(&mut tcp);
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    // Linux delivers the bytes before the RST; other systems may drop some of them.
    assert!(bytes.len() <= 200 && bytes == full[..bytes.len()]);
    #[cfg(target_os = "linux")]
    assert_eq!(bytes.len(), 200);

    let server = MockServer::start(Script::new().fault(spec("reset-after=0"))).unwrap();
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "");
    let (bytes, end) = read_until_end(&mut tcp);
    assert!(bytes.is_empty() && end.is_err());
}

#[test]
fn stall_after_goes_silent_then_continues() {
    let server = MockServer::start(Script::new().fault(spec("stall-after=100,secs=0.5"))).unwrap();
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "Connection: close\r\n");
    let mut got = vec![0; 100];
    tcp.read_exact(&mut got).unwrap();
    let stalled = Instant::now();
    let mut next = [0; 1];
    tcp.read_exact(&mut next).unwrap();
    assert!(
        stalled.elapsed() >= Duration::from_millis(400),
        "{:?}",
        stalled.elapsed()
    );
    let (rest, end) = read_until_end(&mut tcp);
    end.unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
}

#[test]
fn stall_before_status_delays_the_first_byte() {
    let server = MockServer::start(Script::new().fault(spec("stall-before=0.5"))).unwrap();
    let mut tcp = connect(&server);
    let sent = Instant::now();
    post(&mut tcp, &stream_body(), "");
    tcp.read_exact(&mut [0; 1]).unwrap();
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn status_fault_with_retry_headers_hits_only_the_first_requests() {
    let rule = spec(
        "status=429,retry-after=1,retry-after-ms=1500,should-retry=false,code=insufficient_quota,times=1",
    );
    let server = MockServer::start(Script::new().fault(rule)).unwrap();
    let resp = request(&server, &stream_body());
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.header("retry-after-ms"), Some("1500"));
    assert_eq!(resp.header("x-should-retry"), Some("false"));
    let error = &resp.json()["error"];
    assert_eq!(
        (&error["code"], &error["param"]),
        (&json!("insufficient_quota"), &Value::Null)
    );
    assert!(error["message"].is_string() && error["type"].is_string());
    assert_eq!(request(&server, &stream_body()).status, 200);
}

#[test]
fn after_skips_the_first_requests() {
    let fault = Fault::Status(StatusFault {
        code: 503,
        ..StatusFault::default()
    });
    let server = MockServer::start(Script::new().fault(fault.after(1))).unwrap();
    assert_eq!(request(&server, &stream_body()).status, 200);
    assert_eq!(request(&server, &stream_body()).status, 503);
    assert_eq!(request(&server, &stream_body()).status, 503);
}

#[test]
fn html_error_page() {
    let server = MockServer::start(Script::new().fault(Fault::HtmlError(502))).unwrap();
    let resp = request(&server, &stream_body());
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("content-type"), Some("text/html"));
    assert!(resp.body.contains("<h1>502 Bad Gateway</h1>"));
}

#[test]
fn truncated_tool_args_are_invalid_json() {
    let script = Script::new()
        .text("")
        .tool_call("f", r#"{"path":"/tmp/a","mode":"r"}"#);
    let server = MockServer::start(script.fault(Fault::TruncateToolArgs)).unwrap();
    let resp = request(&server, &stream_body());
    let chunks: Vec<Value> = resp
        .events()
        .iter()
        .filter_map(|e| serde_json::from_str(e).ok())
        .collect();
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(!args.is_empty());
    assert!(serde_json::from_str::<Value>(&args).is_err(), "{args}");
    assert!(resp.body.contains(r#""finish_reason":"tool_calls""#));
    assert_eq!(resp.events().last(), Some(&"[DONE]"));
}

#[test]
fn no_done_ends_the_stream_early_but_keeps_the_connection() {
    let server = MockServer::start(Script::new().fault(Fault::NoDone.times(1))).unwrap();
    let mut r = BufReader::new(connect(&server));
    post(r.get_mut(), &stream_body(), "");
    let resp = read_response(&mut r);
    assert!(!resp.body.contains("[DONE]") && !resp.body.contains("usage"));
    assert!(!resp.body.contains(r#""finish_reason":"stop""#));
    post(r.get_mut(), &stream_body(), "");
    assert_eq!(read_response(&mut r).events().last(), Some(&"[DONE]"));
}

#[test]
fn hold_open_goes_silent_after_the_last_chunk_then_closes() {
    let server = MockServer::start(Script::new().fault(spec("hold-open=1"))).unwrap();
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "");
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("total_tokens") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0 && seen.len() < 100_000);
        seen.extend_from_slice(&buf[..n]);
    }
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = tcp.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (rest, end) = read_until_end(&mut tcp);
    end.unwrap();
    assert_eq!(rest, b"0\r\n\r\n", "no [DONE], then the connection closes");
}

#[test]
fn crlf_pings_and_slices_compose() {
    let script = Script::new()
        .fault(Fault::Crlf)
        .fault(spec("ping=5"))
        .fault(spec("slices=16,delay-ms=1"));
    let server = MockServer::start(script).unwrap();
    let resp = request(&server, &stream_body());
    let events = resp.events().len();
    assert_eq!(
        resp.body.matches("\r\n\r\n").count(),
        2 * events - 1,
        "every event and ping ends in CRLF CRLF"
    );
    assert!(!resp.body.contains("}\n\n"));
    assert_eq!(resp.body.matches(": ping\r\n\r\n").count(), events - 1);
    assert_eq!(resp.events().last(), Some(&"[DONE]"));
}

#[test]
fn a_reset_can_follow_other_faults() {
    let script = Script::new()
        .fault(Fault::Crlf)
        .fault(Fault::Ping(Duration::ZERO))
        .fault(Fault::ResetAfter(400));
    let server = MockServer::start(script).unwrap();
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "");
    let (bytes, end) = read_until_end(&mut tcp);
    assert!(end.is_err());
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        bytes.len() <= 400 && text.contains(": ping\r\n\r\n"),
        "{text}"
    );
}

#[test]
fn records_requests_without_the_authorization_value() {
    let server = MockServer::start(Script::new()).unwrap();
    let mut tcp = connect(&server);
    post(
        &mut tcp,
        &stream_body(),
        "Authorization: Bearer sk-secret\r\nConnection: close\r\n",
    );
    read_until_end(&mut tcp).1.unwrap();
    let mut tcp = connect(&server);
    write!(
        tcp,
        "GET /v1/models?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_until_end(&mut tcp).1.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let chat = &requests[0];
    assert_eq!(
        (chat.method.as_str(), chat.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert!(chat.authorization && chat.header("authorization").is_none());
    assert!(!format!("{requests:?}").contains("sk-secret"));
    assert_eq!(chat.json, Some(stream_body()));
    assert_eq!(chat.header("Content-Type"), Some("application/json"));
    assert_eq!(
        (requests[1].path.as_str(), requests[1].authorization),
        ("/v1/models?x=1", false)
    );
    assert_eq!(server.chat_request_count(), 1);
}

#[test]
fn stop_is_prompt_with_a_stalled_connection() {
    let mut server =
        MockServer::start(Script::new().fault(spec("stall-after=20,secs=60"))).unwrap();
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "");
    tcp.read_exact(&mut [0; 20]).unwrap();
    let idle = connect(&server); // a second, idle keep-alive connection
    let start = Instant::now();
    server.stop();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(read_until_end(&mut tcp).0.is_empty());
    drop(idle);
    assert!(
        TcpStream::connect_timeout(&server.addr(), TIMEOUT).is_err(),
        "listener closed"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn large_streams_render_lazily() {
    let script = Script::new().text("word").repeat(50_000);
    let body = json!({"stream": true});
    // role, 50,000 words, finish, [DONE]
    assert_eq!(script.sse_events(&body).count(), 50_003);
    let server = MockServer::start(script).unwrap();
    assert_eq!(request(&server, &body).events().len(), 50_003);
}

#[test]
fn only_loopback() {
    let err = MockServer::start_on("0.0.0.0:0", Script::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn fault_specs() {
    let ok: &[(&str, FaultRule)] = &[
        ("close-after=300", Fault::CloseAfter(300).into()),
        ("reset-after=300,times=1", Fault::ResetAfter(300).times(1)),
        (
            "stall-after=200,secs=5",
            Fault::StallAfter {
                bytes: 200,
                pause: Duration::from_secs(5),
            }
            .into(),
        ),
        (
            "stall-before=0.25",
            Fault::StallBeforeStatus(Duration::from_millis(250)).into(),
        ),
        (
            "status=429, retry-after=1, times=2",
            Fault::Status(StatusFault {
                code: 429,
                retry_after: Some("1".into()),
                ..StatusFault::default()
            })
            .times(2),
        ),
        (
            "status=503,should-retry=false,retry-after-ms=1500,type=server_error,code=c,message=m",
            Fault::Status(StatusFault {
                code: 503,
                retry_after_ms: Some(1500),
                should_retry: Some(false),
                error_type: Some("server_error".into()),
                error_code: Some("c".into()),
                message: Some("m".into()),
                ..StatusFault::default()
            })
            .into(),
        ),
        ("html=502,after=2", Fault::HtmlError(502).after(2)),
        ("truncate-tool-args", Fault::TruncateToolArgs.into()),
        ("no-done,after=1,times=3", Fault::NoDone.after(1).times(3)),
        (
            "hold-open=30",
            Fault::HoldOpen(Duration::from_secs(30)).into(),
        ),
        ("crlf", Fault::Crlf.into()),
        ("ping=100", Fault::Ping(Duration::from_millis(100)).into()),
        (
            "slices=16,delay-ms=5",
            Fault::Slices {
                size: 16,
                delay: Duration::from_millis(5),
            }
            .into(),
        ),
    ];
    for (text, rule) in ok {
        assert_eq!(text.parse::<FaultRule>().as_ref(), Ok(rule), "{text}");
    }
    let bad = [
        ("", "empty fault spec"),
        ("explode", "unknown fault `explode`"),
        ("times=2", "unknown fault `times`"),
        (
            "crlf,secs=1",
            "option `secs` does not apply to fault `crlf`",
        ),
        (
            "close-after",
            "`close-after` needs a value (`close-after=...`)",
        ),
        ("close-after=-1", "invalid value `-1` for `close-after`"),
        ("crlf=1", "invalid value `1` for `crlf`"),
        ("status=42", "invalid value `42` for `status`"),
        (
            "status=429,should-retry=maybe",
            "invalid value `maybe` for `should-retry`",
        ),
        ("stall-before=-1", "invalid value `-1` for `stall-before`"),
        (
            "stall-after=10",
            "fault `stall-after` needs option `secs=...`",
        ),
        ("slices=0", "invalid value `0` for `slices`"),
        ("ping=100,times=x", "invalid value `x` for `times`"),
    ];
    for (text, message) in bad {
        let err: FaultSpecError = text.parse::<FaultRule>().unwrap_err();
        assert!(err.to_string().starts_with(message), "{text}: {err}");
    }
}

#[test]
fn recorded_requests_are_bounded_and_numbered() {
    use oai_sse::mock::MAX_RECORDED_REQUESTS;
    let server = MockServer::start(Script::new()).expect("start");
    let extra = 5;
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..MAX_RECORDED_REQUESTS + extra {
        stream
            .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        // Read the whole response (Content-Length framed) before the next request.
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
    }
    let total = (MAX_RECORDED_REQUESTS + extra) as u64;
    assert_eq!(server.request_count(), total);
    assert_eq!(server.requests().len(), MAX_RECORDED_REQUESTS);
    let (new, seen) = server.requests_since(total - 2);
    assert_eq!(seen, total);
    assert_eq!(
        new.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [total - 1, total]
    );
    let (all_kept, _) = server.requests_since(0);
    assert_eq!(all_kept.first().map(|(n, _)| *n), Some(extra as u64 + 1));
}

// ---------------------------------------------------------------------------------------------
// Helpers for the replay, feed, multi-turn and connection tests.

/// Sends a request without a body on a kept-alive connection.
fn send(tcp: &mut TcpStream, method: &str, target: &str, headers: &str) {
    write!(
        tcp,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"
    )
    .unwrap();
}

/// One request without a body on a new connection; the whole response.
fn fetch(server: &MockServer, method: &str, target: &str, headers: &str) -> Response {
    let mut r = BufReader::new(connect(server));
    send(r.get_mut(), method, target, headers);
    read_response(&mut r)
}

/// The raw bytes of one request without a body, over `Connection: close`, until EOF.
fn fetch_raw(server: &MockServer, target: &str, headers: &str) -> (Vec<u8>, io::Result<()>) {
    let mut tcp = connect(server);
    send(
        &mut tcp,
        "GET",
        target,
        &format!("{headers}Connection: close\r\n"),
    );
    read_until_end(&mut tcp)
}

/// A streaming chat request with `X-Conversation-Id: id`, raw, over `Connection: close`.
fn post_with_id(server: &MockServer, id: &str) -> (Vec<u8>, io::Result<()>) {
    let mut tcp = connect(server);
    post(
        &mut tcp,
        &stream_body(),
        &format!("x-CONVERSATION-id: {id}\r\nConnection: close\r\n"),
    );
    read_until_end(&mut tcp)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body bytes a chunked response delivered before it ended or was cut: the head skipped,
/// the chunk framing removed, a chunk cut in its middle counted as far as it arrived.
fn dechunk_prefix(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return out;
    };
    let mut rest = &raw[head_end + 4..];
    while let Some(line_end) = find(rest, b"\r\n") {
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        let data = &rest[line_end + 2..];
        let arrived = size.min(data.len());
        out.extend_from_slice(&data[..arrived]);
        if size == 0 || arrived < size || data.len() < size + 2 {
            break;
        }
        rest = &data[size + 2..];
    }
    out
}

fn error_message(resp: &Response) -> String {
    resp.json()["error"]["message"].as_str().unwrap().to_owned()
}

/// Reads from `tcp` until `pattern` has arrived; everything read so far.
fn read_until(tcp: &mut TcpStream, pattern: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains(pattern) {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0 && seen.len() < 1_000_000, "eof before {pattern:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(seen).unwrap()
}

/// Whether the server keeps `tcp` open and silent for `wait`.
fn stays_silent(tcp: &mut TcpStream, wait: Duration) -> bool {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let silent = match tcp.read(&mut [0; 64]) {
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        Ok(_) => false,
    };
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    silent
}

fn content_of(resp: &Response) -> String {
    resp.events()
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Stream replay (llama.cpp's resume protocol).

#[test]
fn replay_serves_the_stored_body_from_every_offset() {
    let script = Script::new().text("Hello replay world");
    let server = MockServer::start(script.clone()).unwrap();
    let (raw, end) = post_with_id(&server, "conv-1");
    end.unwrap();
    let body = dechunk_prefix(&raw);
    let expected: String = script.sse_events(&stream_body()).collect();
    assert_eq!(
        body,
        expected.as_bytes(),
        "the POST's body is the fault-free stream"
    );

    let len = body.len();
    for from in [0, 1, 57, len / 2, len - 1, len, len + 10] {
        for prefix in ["/v1", ""] {
            let resp = fetch(
                &server,
                "GET",
                &format!("{prefix}/stream?conv_id=conv-1&from={from}"),
                "",
            );
            assert_eq!(resp.status, 200, "from {from}");
            assert_eq!(resp.header("content-type"), Some("text/event-stream"));
            assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
            assert_eq!(resp.body.as_bytes(), &body[from.min(len)..], "from {from}");
        }
    }
    let resp = fetch(&server, "GET", "/v1/stream?conv_id=conv-1", "");
    assert_eq!(resp.body.as_bytes(), body, "from defaults to 0");
    assert_eq!(
        fetch(&server, "GET", "/v1/stream?conv_id=conv-1&from=", "")
            .body
            .as_bytes(),
        body
    );
    assert_eq!(server.replay_count(), 16);
    assert_eq!(server.generation_count(), 1);
    assert_eq!(server.chat_request_count(), 1);
}

#[test]
fn the_stored_body_includes_body_faults() {
    let script = Script::new()
        .text("a b c")
        .fault(Fault::Crlf)
        .fault(spec("ping=1"))
        .fault(spec("slices=7"));
    let server = MockServer::start(script).unwrap();
    let (raw, end) = post_with_id(&server, "c");
    end.unwrap();
    let body = dechunk_prefix(&raw);
    assert!(find(&body, b": ping\r\n\r\n").is_some());
    let replay = fetch(&server, "GET", "/v1/stream?conv_id=c&from=0", "");
    assert_eq!(replay.body.as_bytes(), body);
}

#[test]
fn a_client_resumes_a_cut_stream_from_any_offset() {
    let script = Script::new().text("Hi");
    let full = raw_response(&MockServer::start(script.clone()).unwrap(), &stream_body());
    let full_body: String = script.sse_events(&stream_body()).collect();
    // POST number 2i+1 is cut after i bytes; its replay GET (number 2i+2) is whole.
    let mut replies = Replies::from(script);
    for cut in 0..full.len() {
        replies = replies.fault(Fault::CloseAfter(cut).after(2 * cut as u64).times(1));
    }
    let server = MockServer::start(replies).unwrap();
    for cut in 0..full.len() {
        let (raw, end) = post_with_id(&server, "resume");
        end.unwrap();
        assert_eq!(raw, full[..cut], "cut at {cut}");
        let got = dechunk_prefix(&raw);
        let (rest, end) = fetch_raw(
            &server,
            &format!("/v1/stream?conv_id=resume&from={}", got.len()),
            "",
        );
        end.unwrap();
        let mut resumed = got;
        resumed.extend(dechunk_prefix(&rest));
        assert_eq!(
            String::from_utf8(resumed).unwrap(),
            full_body,
            "cut at {cut}"
        );
    }
    assert_eq!(server.replay_count(), full.len() as u64);
}

#[test]
fn replay_errors_answer_like_llama_cpp() {
    let server = MockServer::start(Script::new().fault(spec("ring=100"))).unwrap();
    let (raw, end) = post_with_id(&server, "a b");
    end.unwrap();
    let total = dechunk_prefix(&raw).len();
    assert!(total > 100);
    let lost = format!("/v1/stream?conv_id=a+b&from={}", total - 101);
    let kept = format!("/v1/stream?conv_id=a%20b&from={}", total - 100);
    let cases: &[(&str, u16, &str)] = &[
        ("/v1/stream", 400, "Missing conversation id in path"),
        (
            "/v1/stream?conv_id=&from=1",
            400,
            "Missing conversation id in path",
        ),
        (
            "/v1/stream?conv_id=nope",
            404,
            "Stream not found or expired",
        ),
        (
            "/stream?conv_id=nope&from=zz",
            404,
            "Stream not found or expired",
        ),
        (
            "/v1/stream?conv_id=a+b&from=zz",
            400,
            "Invalid 'from' offset",
        ),
        (
            "/v1/stream?conv_id=a+b&from=-1",
            400,
            "Invalid 'from' offset",
        ),
        (
            "/v1/stream?conv_id=a+b",
            400,
            "Stream offset lost, please restart",
        ),
        (&lost, 400, "Stream offset lost, please restart"),
    ];
    for &(target, status, message) in cases {
        let resp = fetch(&server, "GET", target, "");
        assert_eq!(resp.status, status, "{target}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(error_message(&resp), message, "{target}");
        assert_eq!(resp.json()["error"]["code"], status, "{target}");
        let kind = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(resp.json()["error"]["type"], kind, "{target}");
    }
    let resp = fetch(&server, "GET", &kept, "");
    assert_eq!((resp.status, resp.body.len()), (200, 100));
    assert_eq!(resp.body.as_bytes(), &dechunk_prefix(&raw)[total - 100..]);
    assert_eq!(server.replay_count(), 1, "only the 200 counts");
}

#[test]
fn delete_is_idempotent_and_recorded() {
    let server = MockServer::start(Script::new()).unwrap();
    post_with_id(&server, "d1").1.unwrap();
    assert_eq!(
        fetch(&server, "GET", "/v1/stream?conv_id=d1", "").status,
        200
    );
    let mut r = BufReader::new(connect(&server));
    for _ in 0..2 {
        send(r.get_mut(), "DELETE", "/v1/stream?conv_id=d1", "");
        let resp = read_response(&mut r);
        assert_eq!((resp.status, resp.body.as_str()), (204, ""));
    }
    send(r.get_mut(), "DELETE", "/stream?conv_id=never", "");
    assert_eq!(read_response(&mut r).status, 204);
    send(r.get_mut(), "DELETE", "/v1/stream", "");
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, error_message(&resp).as_str()),
        (400, "Missing conversation id in path")
    );
    send(r.get_mut(), "GET", "/v1/stream?conv_id=d1", "");
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, error_message(&resp).as_str()),
        (404, "Stream not found or expired")
    );
    assert_eq!(server.deleted_streams(), ["d1", "d1", "never"]);
    assert_eq!(
        r.get_ref().peer_addr().unwrap(),
        server.addr(),
        "one kept-alive connection"
    );
    assert_eq!(server.connection_count(), 3);
}

#[test]
fn sessions_are_replaced_and_only_successful_streams_register() {
    let replies = Replies::sequence([Script::new().text("first"), Script::new().text("second")])
        .fault(spec("status=503,after=4,times=1"));
    let server = MockServer::start(replies).unwrap();
    let replay = |id: &str| fetch(&server, "GET", &format!("/v1/stream?conv_id={id}"), "");

    post_with_id(&server, "x").1.unwrap(); // streamed response 1: "first"
    assert_eq!(content_of(&replay("x")), "first"); // 2
    post_with_id(&server, "x").1.unwrap(); // 3: "second" replaces it
    assert_eq!(content_of(&replay("x")), "second"); // 4

    // 5: a 503 ends the old session and registers nothing.
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "X-Conversation-Id: x\r\n");
    assert_eq!(read_response(&mut BufReader::new(tcp)).status, 503);
    assert_eq!(replay("x").status, 404);

    // A non-streaming request with an id registers nothing.
    let mut tcp = connect(&server);
    post(
        &mut tcp,
        &json!({"messages": []}),
        "X-Conversation-Id: plain\r\n",
    );
    assert_eq!(read_response(&mut BufReader::new(tcp)).status, 200);
    assert_eq!(replay("plain").status, 404);
    // Neither does one without an id, nor with an empty one.
    let mut tcp = connect(&server);
    post(&mut tcp, &stream_body(), "X-Conversation-Id: \r\n");
    assert_eq!(read_response(&mut BufReader::new(tcp)).status, 200);
    assert_eq!(replay("").status, 400);
    assert_eq!(server.generation_count(), 4);
    assert_eq!(server.chat_request_count(), 5);
}

#[test]
fn sessions_expire_after_the_ttl() {
    let ttl = Duration::from_millis(200);
    let server = MockServer::start(Replies::from(Script::new()).replay_ttl(ttl)).unwrap();
    let stored = Instant::now();
    post_with_id(&server, "short").1.unwrap();
    assert_eq!(
        fetch(&server, "GET", "/v1/stream?conv_id=short", "").status,
        200
    );
    let deadline = stored + TIMEOUT;
    let expired = loop {
        let resp = fetch(&server, "GET", "/v1/stream?conv_id=short", "");
        if resp.status == 404 {
            break stored.elapsed();
        }
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(expired >= ttl, "{expired:?}");
}

#[test]
fn faults_count_chat_posts_and_replay_gets_in_one_sequence() {
    let script = Script::new().text("one two three");
    let full = raw_response(&MockServer::start(script.clone()).unwrap(), &stream_body());
    let server = MockServer::start(
        Replies::from(script)
            .fault(spec("close-after=300,times=1"))
            .fault(spec("close-after=100,after=1,times=1"))
            .fault(spec("status=503,after=2,times=1")),
    )
    .unwrap();
    let (raw, _) = post_with_id(&server, "s");
    assert_eq!(raw, full[..300], "streamed response 1: the POST is cut");
    let (raw, end) = fetch_raw(&server, "/v1/stream?conv_id=s", "");
    end.unwrap();
    assert_eq!(raw.len(), 100, "streamed response 2: the GET is cut");
    let resp = fetch(&server, "GET", "/v1/stream?conv_id=s", "");
    assert_eq!(
        resp.status, 503,
        "streamed response 3: a status fault on a GET"
    );
    let resp = fetch(&server, "GET", "/v1/stream?conv_id=s&from=3", "");
    assert_eq!(
        resp.body.as_bytes(),
        &dechunk_prefix(&full)[3..],
        "4 is whole"
    );
    let numbers: Vec<_> = server.requests().iter().map(|r| r.streamed).collect();
    assert_eq!(numbers, [Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(server.replay_count(), 2, "the cut one was served 200");
}

#[test]
fn no_replay_answers_the_status_and_keeps_nothing() {
    for (fault, status) in [
        ("no-replay", 404),
        ("no-replay=405", 405),
        ("no-replay=501", 501),
    ] {
        let server = MockServer::start(Script::new().fault(spec(fault))).unwrap();
        post_with_id(&server, "n").1.unwrap();
        for method in ["GET", "DELETE"] {
            let resp = fetch(&server, method, "/v1/stream?conv_id=n&from=0", "");
            assert_eq!(resp.status, status, "{fault} {method}");
            let message = format!("Unknown request URL: {method} /v1/stream");
            assert_eq!(error_message(&resp), message);
        }
        assert!(server.deleted_streams().is_empty());
        assert_eq!((server.replay_count(), server.generation_count()), (0, 1));
    }
    // Only the first POST is hit: it keeps nothing, and later responses have the route.
    let server = MockServer::start(Script::new().fault(spec("no-replay,times=1"))).unwrap();
    post_with_id(&server, "n").1.unwrap();
    let resp = fetch(&server, "GET", "/v1/stream?conv_id=n", "");
    assert_eq!(
        (resp.status, error_message(&resp).as_str()),
        (404, "Stream not found or expired")
    );
    post_with_id(&server, "n").1.unwrap();
    assert_eq!(
        fetch(&server, "GET", "/v1/stream?conv_id=n", "").status,
        200
    );
}

#[test]
fn replay_expired_and_lost_faults_hit_gets() {
    let cases = [
        ("replay-expired", 404, "Stream not found or expired"),
        ("replay-lost", 400, "Stream offset lost, please restart"),
    ];
    for (fault, status, message) in cases {
        let rule = spec(&format!("{fault},after=1,times=1"));
        let server = MockServer::start(Script::new().fault(rule)).unwrap();
        post_with_id(&server, "e").1.unwrap();
        let resp = fetch(&server, "GET", "/v1/stream?conv_id=e&from=10", "");
        assert_eq!(
            (resp.status, error_message(&resp).as_str()),
            (status, message),
            "{fault}"
        );
        assert_eq!(
            fetch(&server, "GET", "/v1/stream?conv_id=e&from=10", "").status,
            200
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The event feed.

#[test]
fn feed_bodies_equal_feed_spec_body() {
    let server = MockServer::start(Script::new()).unwrap();
    let queries = [
        "",
        "count=3",
        "count=3&multiline=1&event=",
        "count=2&event=update&retry=1500",
        "count=2&priming=1",
        "count=0",
        "count=2&interval-ms=20&ping-ms=8",
    ];
    for query in queries {
        let spec: FeedSpec = query.parse().unwrap();
        for (method, path) in [("GET", "/v1/events"), ("POST", "/events")] {
            let resp = fetch(
                &server,
                method,
                &format!("{path}?{query}"),
                "Content-Length: 0\r\n",
            );
            assert_eq!(resp.status, 200, "{query}");
            assert_eq!(resp.header("content-type"), Some("text/event-stream"));
            assert_eq!(resp.body, spec.body(None), "{method} {path}?{query}");
        }
    }
    let spec: FeedSpec = "count=3&multiline=1".parse().unwrap();
    assert!(
        spec.body(None)
            .contains("id: 2\nevent: tick\ndata: {\ndata:   \"n\": 2\ndata: }\n\n")
    );
    let spec: FeedSpec = "retry=1500".parse().unwrap();
    assert!(spec.body(None).starts_with("retry: 1500\n\nid: 1\n"));
    assert_eq!(server.feed_count(), 2 * queries.len() as u64);
    assert_eq!(server.chat_request_count(), 0);
}

#[test]
fn feed_resumes_after_the_last_event_id() {
    let server = MockServer::start(Script::new()).unwrap();
    let spec: FeedSpec = "count=5&priming=1".parse().unwrap();
    let cases = [
        (Some("3"), "id: 3\n\nid: 4\n"),
        (Some("5"), "id: 5\n\n"),
        (Some("0"), "id: 0\n\nid: 1\n"),
        (Some("x"), "id: 0\n\nid: 1\n"),
        (Some("99"), "id: 0\n\nid: 1\n"),
        (None, "id: 0\n\nid: 1\n"),
    ];
    for (last_id, starts) in cases {
        let header = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let resp = fetch(&server, "GET", "/v1/events?count=5&priming=1", &header);
        assert_eq!(resp.body, spec.body(last_id), "{last_id:?}");
        assert!(resp.body.starts_with(starts), "{last_id:?}: {}", resp.body);
    }
    let carried: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("last-event-id").map(str::to_owned))
        .collect();
    let sent: Vec<_> = cases.iter().map(|(id, _)| id.map(str::to_owned)).collect();
    assert_eq!(carried, sent);
}

#[test]
fn feed_no_content_and_error_statuses() {
    let server = MockServer::start(Script::new()).unwrap();
    let mut r = BufReader::new(connect(&server));
    let cases: &[(&str, &str, u16, &str)] = &[
        ("count=3&end=204", "Last-Event-ID: 3\r\n", 204, ""),
        (
            "count=3&end=204",
            "Last-Event-ID: 2\r\n",
            200,
            "id: 3\nevent: tick\ndata: {\"n\":3}\n\n",
        ),
        ("count=3&end=204", "", 200, ""),
        ("count=3", "Last-Event-ID: 3\r\n", 200, ""),
        ("status=204", "", 204, ""),
        ("status=404", "", 404, ""),
    ];
    for &(query, headers, status, body) in cases {
        send(r.get_mut(), "GET", &format!("/v1/events?{query}"), headers);
        let resp = read_response(&mut r);
        assert_eq!(resp.status, status, "{query} {headers}");
        if status == 200 && !headers.is_empty() {
            assert_eq!(resp.body, body, "{query} {headers}");
        }
    }
    send(
        r.get_mut(),
        "GET",
        "/v1/events?status=503&retry-after=2",
        "",
    );
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.header("retry-after")), (503, Some("2")));
    assert_eq!(resp.json()["error"]["type"], "server_error");
    send(r.get_mut(), "GET", "/v1/events?count=x", "");
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 400);
    assert_eq!(
        error_message(&resp),
        "invalid value `x` for feed parameter `count`"
    );
    assert_eq!(server.feed_count(), cases.len() as u64 + 2);
    assert_eq!(
        server.connection_count(),
        1,
        "every answer kept the connection"
    );
}

#[test]
fn a_cut_feed_resumes_with_last_event_id_at_every_offset() {
    let query = "count=3&retry=100&priming=1";
    let target = format!("/v1/events?{query}");
    let spec: FeedSpec = query.parse().unwrap();
    let (full, end) = fetch_raw(&MockServer::start(Script::new()).unwrap(), &target, "");
    end.unwrap();
    let mut replies = Replies::from(Script::new());
    for cut in 0..full.len() {
        replies = replies.fault(Fault::ResetAfter(cut).after(2 * cut as u64).times(1));
    }
    let server = MockServer::start(replies).unwrap();
    for cut in 0..full.len() {
        let (raw, end) = fetch_raw(&server, &target, "");
        assert!(end.is_err(), "reset at {cut}");
        // What an EventSource saw: complete blocks only; the last id among them.
        let seen = String::from_utf8(dechunk_prefix(&raw)).unwrap();
        let complete = &seen[..seen.rfind("\n\n").map_or(0, |i| i + 2)];
        let last_id = complete
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .next_back();
        let header = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let (rest, end) = fetch_raw(&server, &target, &header);
        end.unwrap();
        let rest = String::from_utf8(dechunk_prefix(&rest)).unwrap();
        assert_eq!(rest, spec.body(last_id), "cut at {cut}");
        let data: Vec<_> = complete
            .lines()
            .chain(rest.lines())
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(
            data,
            [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#],
            "cut at {cut}"
        );
    }
}

#[test]
fn feed_waits_pings_and_holds() {
    let server = MockServer::start(Script::new()).unwrap();
    let spec: FeedSpec = "count=3&interval-ms=60&ping-ms=25".parse().unwrap();
    let start = Instant::now();
    let resp = fetch(
        &server,
        "GET",
        "/v1/events?count=3&interval-ms=60&ping-ms=25",
        "",
    );
    assert!(
        start.elapsed() >= Duration::from_millis(120),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(resp.body, spec.body(None));
    assert_eq!(resp.body.matches(": ping\n\n").count(), 4);

    // end=hold: the events, then silence on an open connection until the client leaves.
    let mut tcp = connect(&server);
    send(&mut tcp, "GET", "/v1/events?count=2&end=hold", "");
    read_until(&mut tcp, "data: {\"n\":2}\n\n");
    assert!(stays_silent(&mut tcp, Duration::from_millis(200)));
    drop(tcp);
    // With pings, the hold sends them.
    let mut tcp = connect(&server);
    send(
        &mut tcp,
        "GET",
        "/v1/events?count=1&end=hold&ping-ms=20",
        "",
    );
    let seen = read_until(&mut tcp, ": ping\n\n\r\n");
    assert!(seen.contains("data: {\"n\":1}"));
    let mut server = server;
    let stop = Instant::now();
    server.stop();
    assert!(stop.elapsed() < Duration::from_secs(1), "holds notice stop");
}

// ---------------------------------------------------------------------------------------------
// Multi-turn replies.

#[test]
fn tool_call_scripts_stream_no_default_text() {
    let cases = [
        (Script::new().tool_call("f", "{}"), "", Value::Null),
        (
            Script::new().tool_call("f", "{}").text("Let me check."),
            "Let me check.",
            json!("Let me check."),
        ),
        (
            Script::new(),
            "Hello from the oai-sse mock server.",
            json!("Hello from the oai-sse mock server."),
        ),
    ];
    for (script, streamed, message) in cases {
        let server = MockServer::start(script).unwrap();
        let resp = request(&server, &stream_body());
        assert_eq!(content_of(&resp), streamed);
        let with_content = resp
            .events()
            .iter()
            .filter(|e| e.contains(r#""content":"#))
            .count();
        assert_eq!(
            with_content,
            1 + streamed.split(' ').filter(|w| !w.is_empty()).count()
        );
        let completion = request(&server, &json!({"messages": []})).json();
        assert_eq!(completion["choices"][0]["message"]["content"], message);
    }
}

#[test]
fn a_sequence_answers_turn_by_turn_and_repeats_the_last() {
    let replies = Replies::sequence([
        Script::new().tool_call("get_weather", r#"{"city":"Oslo"}"#),
        Script::new().text("Sunny."),
        Script::new().text("Bye."),
    ])
    .fault(spec("status=503,after=1,times=1"));
    let server = MockServer::start(replies).unwrap();
    let tool = request(&server, &stream_body());
    assert!(tool.body.contains(r#""name":"get_weather""#) && content_of(&tool).is_empty());
    assert_eq!(
        request(&server, &stream_body()).status,
        503,
        "a failed turn..."
    );
    assert_eq!(
        content_of(&request(&server, &stream_body())),
        "Sunny.",
        "...is retried"
    );
    assert_eq!(content_of(&request(&server, &stream_body())), "Bye.");
    assert_eq!(content_of(&request(&server, &stream_body())), "Bye.");
    assert_eq!(
        (server.chat_request_count(), server.generation_count()),
        (5, 4)
    );

    // A reply script's own faults hit only its replies.
    let replies = Replies::sequence([Script::new(), Script::new().fault(Fault::CloseAfter(50))]);
    let server = MockServer::start(replies).unwrap();
    assert!(raw_response(&server, &stream_body()).len() > 50);
    assert_eq!(raw_response(&server, &stream_body()).len(), 50);
    let empty = MockServer::start(Replies::sequence([])).unwrap();
    assert_eq!(
        content_of(&request(&empty, &stream_body())),
        "Hello from the oai-sse mock server."
    );
}

#[test]
fn a_reply_function_drives_an_agent_loop() {
    let replies = Replies::from_fn(|request| match request.last_message_role() {
        Some("tool") => Script::new().text(format!(
            "Weather: {}",
            request.last_message_content().unwrap_or("?")
        )),
        Some("user") if request.last_message_content() == Some("panic") => {
            panic!("test: a reply function that fails")
        }
        _ => Script::new().tool_call("get_weather", r#"{"city":"Oslo"}"#),
    });
    let server = MockServer::start(replies).unwrap();
    let mut messages = vec![json!({"role": "user", "content": "Weather in Oslo?"})];
    let turn =
        |messages: &[Value]| request(&server, &json!({"stream": true, "messages": messages}));
    let first = turn(&messages);
    assert!(first.body.contains(r#""tool_calls""#));
    messages.push(
        json!({"role": "assistant", "tool_calls": [{"id": "call_mock_0", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}),
    );
    messages.push(json!({"role": "tool", "tool_call_id": "call_mock_0", "content": "sunny"}));
    assert_eq!(content_of(&turn(&messages)), "Weather: sunny");
    let resp = turn(&[json!({"role": "user", "content": "panic"})]);
    assert_eq!(resp.status, 500);

    let chats = server.chat_requests();
    assert_eq!(chats.len(), 3);
    assert_eq!(chats[1].messages().len(), 3);
    assert_eq!(chats[1].last_message_role(), Some("tool"));
    assert_eq!(chats[0].last_message_content(), Some("Weather in Oslo?"));
    assert_eq!(server.generation_count(), 2);
    // Other routes are not chat requests; a body without messages has none.
    fetch(&server, "GET", "/v1/models", "");
    assert_eq!(server.chat_requests().len(), 3);
    assert!(server.requests()[3].messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Connections.

#[test]
fn connections_are_counted_and_recorded() {
    let server = MockServer::start(Script::new()).unwrap();
    let mut r = BufReader::new(connect(&server));
    for _ in 0..2 {
        post(r.get_mut(), &stream_body(), "");
        assert_eq!(read_response(&mut r).status, 200);
    }
    request(&server, &stream_body());
    assert_eq!(server.connection_count(), 2);
    let connections: Vec<_> = server.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 1, 2]);
}

#[test]
fn stale_drops_requests_on_reused_connections() {
    let server = MockServer::start(Script::new().fault(spec("stale"))).unwrap();
    let mut r = BufReader::new(connect(&server));
    post(r.get_mut(), &stream_body(), "");
    assert_eq!(
        read_response(&mut r).status,
        200,
        "the first request is answered"
    );
    post(r.get_mut(), &stream_body(), "");
    let (bytes, end) = read_until_end(r.get_mut());
    end.unwrap();
    assert!(
        bytes.is_empty() && r.buffer().is_empty(),
        "closed without a byte"
    );
    let requests = server.requests();
    assert_eq!(
        requests.iter().map(|r| r.dropped).collect::<Vec<_>>(),
        [false, true]
    );
    assert_eq!(requests[1].streamed, None);
    assert_eq!(server.chat_request_count(), 1);
    assert_eq!(server.chat_requests().len(), 2);

    // times=1 drops only the first reuse; P=0 none.
    for (fault, answered) in [
        ("stale,times=1", [false, true, true]),
        ("stale=0", [true, true, true]),
    ] {
        let server = MockServer::start(Script::new().fault(spec(fault))).unwrap();
        let mut got = Vec::new();
        let mut r = BufReader::new(connect(&server));
        post(r.get_mut(), &stream_body(), "");
        read_response(&mut r);
        for _ in 0..3 {
            post(r.get_mut(), &stream_body(), "");
            let mut first = [0; 1];
            let alive = r.get_mut().peek(&mut first).unwrap() > 0;
            got.push(alive);
            if alive {
                read_response(&mut r);
            } else {
                r = BufReader::new(connect(&server));
                post(r.get_mut(), &stream_body(), "");
                read_response(&mut r);
            }
        }
        assert_eq!(got, answered, "{fault}");
    }
}

#[test]
fn stale_draws_are_seeded() {
    let pattern = |spec_text: &str| {
        let server = MockServer::start(Script::new().fault(spec(spec_text))).unwrap();
        let mut r = BufReader::new(connect(&server));
        send(r.get_mut(), "GET", "/v1/models", "");
        read_response(&mut r);
        let mut answered = Vec::new();
        for _ in 0..40 {
            send(r.get_mut(), "GET", "/v1/models", "");
            let alive = r.get_mut().peek(&mut [0; 1]).unwrap() > 0;
            answered.push(alive);
            if alive {
                read_response(&mut r);
            } else {
                r = BufReader::new(connect(&server));
                send(r.get_mut(), "GET", "/v1/models", "");
                read_response(&mut r);
            }
        }
        answered
    };
    let a = pattern("stale=0.5,seed=7");
    assert_eq!(
        a,
        pattern("stale=0.5,seed=7"),
        "the same seed drops the same requests"
    );
    assert_ne!(a, pattern("stale=0.5,seed=8"));
    let dropped = a.iter().filter(|alive| !**alive).count();
    assert!((5..=35).contains(&dropped), "{dropped} of 40");
}

#[test]
fn idle_close_closes_kept_alive_connections() {
    let idle = Duration::from_millis(300);
    let server = MockServer::start(Script::new().fault(spec("idle-close-ms=300,times=1"))).unwrap();
    let mut r = BufReader::new(connect(&server));
    send(r.get_mut(), "GET", "/v1/models", "");
    read_response(&mut r);
    send(r.get_mut(), "GET", "/v1/models", "");
    assert_eq!(
        read_response(&mut r).status,
        200,
        "a prompt request is served"
    );
    let answered = Instant::now();
    let (bytes, end) = read_until_end(r.get_mut());
    end.unwrap();
    assert!(bytes.is_empty());
    assert!(
        answered.elapsed() >= idle - Duration::from_millis(50),
        "{:?}",
        answered.elapsed()
    );
    // times=1: only the first connection has the timer.
    let mut tcp = connect(&server);
    send(&mut tcp, "GET", "/v1/models", "");
    let mut r = BufReader::new(tcp);
    read_response(&mut r);
    assert!(stays_silent(r.get_mut(), idle * 2));
}

#[test]
fn close_after_response_closes_without_announcing_it() {
    let server =
        MockServer::start(Script::new().fault(spec("close-after-response,after=1"))).unwrap();
    let mut r = BufReader::new(connect(&server));
    post(r.get_mut(), &stream_body(), "");
    read_response(&mut r);
    post(r.get_mut(), &stream_body(), "");
    let resp = read_response(&mut r);
    assert_eq!((resp.status, resp.header("connection")), (200, None));
    assert_eq!(resp.events().last(), Some(&"[DONE]"));
    let (bytes, end) = read_until_end(r.get_mut());
    end.unwrap();
    assert!(bytes.is_empty(), "closed after the whole response");
    let resp = fetch(&server, "GET", "/v1/events?count=1", "");
    assert_eq!(
        (resp.status, resp.header("connection")),
        (200, None),
        "any route"
    );
    assert_eq!(server.connection_count(), 2);
}

#[test]
fn new_fault_specs() {
    let ok: &[(&str, FaultRule)] = &[
        ("no-replay", Fault::NoReplay(404).into()),
        ("no-replay=501,times=1", Fault::NoReplay(501).times(1)),
        ("replay-expired,after=1", Fault::ReplayExpired.after(1)),
        ("replay-lost", Fault::ReplayLost.into()),
        ("ring=4096", Fault::Ring(4096).into()),
        ("stale", Fault::stale(1.0).into()),
        (
            "stale=0.25,seed=9",
            Fault::Stale {
                per_million: PER_MILLION / 4,
                seed: 9,
            }
            .into(),
        ),
        (
            "idle-close-ms=50",
            Fault::IdleClose(Duration::from_millis(50)).into(),
        ),
        (
            "close-after-response,times=2",
            Fault::CloseAfterResponse.times(2),
        ),
    ];
    for (text, rule) in ok {
        assert_eq!(text.parse::<FaultRule>().as_ref(), Ok(rule), "{text}");
    }
    let bad = [
        ("no-replay=200", "invalid value `200` for `no-replay`"),
        ("replay-lost=1", "invalid value `1` for `replay-lost`"),
        ("ring", "`ring` needs a value"),
        ("stale=1.5", "invalid value `1.5` for `stale`"),
        ("stale=x", "invalid value `x` for `stale`"),
        (
            "crlf,seed=1",
            "option `seed` does not apply to fault `crlf`",
        ),
        (
            "idle-close-ms=soon",
            "invalid value `soon` for `idle-close-ms`",
        ),
    ];
    for (text, message) in bad {
        let err = text.parse::<FaultRule>().unwrap_err();
        assert!(err.to_string().starts_with(message), "{text}: {err}");
    }
    let schedules = [
        ("close-after=1", Schedule::Streamed),
        ("replay-lost", Schedule::Streamed),
        ("stale", Schedule::Reuses),
        ("idle-close-ms=1", Schedule::Connections),
        ("close-after-response", Schedule::Requests),
    ];
    for (text, schedule) in schedules {
        assert_eq!(spec(text).fault.schedule(), schedule, "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// The same server as a process: `oai-sse mock`.

/// Kills the `oai-sse mock` child this test started when the test ends, however it ends.
#[cfg(feature = "cli")]
struct Child(std::process::Child);

#[cfg(feature = "cli")]
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `oai-sse` with `args` (a `mock` listening on port 0): the child, the address it
/// printed, and its later stderr lines.
#[cfg(feature = "cli")]
fn cli_mock(
    args: &[&str],
) -> (
    Child,
    std::net::SocketAddr,
    std::sync::mpsc::Receiver<String>,
) {
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_oai-sse"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oai-sse mock"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = log
        .recv_timeout(Duration::from_secs(20))
        .expect("the listening line");
    let addr = first
        .strip_prefix("oai-sse mock listening on http://")
        .and_then(|rest| rest.strip_suffix("/v1"))
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    (child, addr, log)
}

#[cfg(feature = "cli")]
#[test]
fn the_cli_serves_replay_feeds_and_the_new_faults() {
    let args = [
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--replay-ttl",
        "0.3",
        "--tool",
        r#"f={"a":1}"#,
        "--fault",
        "ring=50",
        "--fault",
        "close-after-response,after=2",
    ];
    let (_child, addr, log) = cli_mock(&args);
    let get = |target: &str| {
        let mut r = BufReader::new(connect_to(addr));
        send(r.get_mut(), "GET", target, "");
        read_response(&mut r)
    };

    // A tool call without --reply streams no text; the ring keeps the last 50 bytes.
    let mut r = BufReader::new(connect_to(addr));
    post(r.get_mut(), &stream_body(), "X-Conversation-Id: cli\r\n");
    let chat = read_response(&mut r);
    assert!(chat.body.contains(r#""name":"f""#) && content_of(&chat).is_empty());
    let total = chat.body.len();
    let lost = get(&format!("/v1/stream?conv_id=cli&from={}", total - 51));
    assert_eq!(
        (lost.status, error_message(&lost).as_str()),
        (400, "Stream offset lost, please restart")
    );
    let tail = get(&format!("/v1/stream?conv_id=cli&from={}", total - 50));
    assert_eq!(tail.body, chat.body[total - 50..]);
    // close-after-response from the third request on.
    let feed = get("/v1/events?count=2&priming=1");
    assert_eq!(
        feed.body,
        "count=2&priming=1".parse::<FeedSpec>().unwrap().body(None)
    );
    let deadline = Instant::now() + TIMEOUT;
    while get("/v1/stream?conv_id=cli").status != 404 {
        assert!(
            Instant::now() < deadline,
            "--replay-ttl 0.3 never expired the session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    post(r.get_mut(), &stream_body(), "");
    read_response(&mut r);
    assert_eq!(
        read_until_end(r.get_mut()).0,
        b"",
        "closed after the response"
    );

    let expected = [
        "POST /v1/chat/completions (chat request 1, streamed, fault ring=50)",
        "(streamed response 2, fault ring=50)",
        "GET /v1/events?count=2&priming=1 (streamed response 4, fault ring=50)",
    ];
    let mut lines = Vec::new();
    for want in expected {
        let deadline = Instant::now() + TIMEOUT;
        while !lines.iter().any(|l: &String| l.contains(want)) {
            let left = deadline.saturating_duration_since(Instant::now());
            lines.push(
                log.recv_timeout(left)
                    .unwrap_or_else(|_| panic!("{want:?} in {lines:?}")),
            );
        }
    }
}

#[cfg(feature = "cli")]
#[test]
fn the_cli_continues_a_final_assistant_message_as_llama_cpp() {
    let args = [
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--reply",
        "Hello big world",
        "--continuation",
        "continues",
        "--server-header",
        "llama.cpp",
        "--header",
        "llm_provider-server: llama.cpp",
    ];
    let (_child, addr, _log) = cli_mock(&args);
    let body = json!({"model": "m", "stream": true,
        "continue_final_message": true, "add_generation_prompt": false,
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "Hello b"}]});
    let mut r = BufReader::new(connect_to(addr));
    post(r.get_mut(), &body, "");
    let chat = read_response(&mut r);
    assert_eq!(content_of(&chat), "ig world");
    assert_eq!(chat.header("server"), Some("llama.cpp"));
    assert_eq!(chat.header("llm_provider-server"), Some("llama.cpp"));

    for (option, value) in [
        ("--continuation", "sometimes"),
        ("--header", "Connection: close"),
        ("--header", "no colon"),
        ("--server-header", "a\u{7}b"),
    ] {
        // A usage error ends the process before it listens; should it listen instead, the
        // bounded wait for its stderr to close fails the test and the drop kills it.
        let mut child = Child(
            std::process::Command::new(env!("CARGO_BIN_EXE_oai-sse"))
                .args(["mock", "--listen", "127.0.0.1:0", option, value])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn oai-sse mock"),
        );
        let mut stderr = child.0.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let stderr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{option} {value:?}: still running"));
        let status = child.0.wait().expect("exit status");
        assert_eq!(status.code(), Some(2), "{option} {value:?}: {stderr}");
        assert!(stderr.contains(option), "{stderr}");
    }
}
