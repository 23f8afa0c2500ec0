//! The mock server's faults, checked on the wire with raw `TcpStream` clients. Every socket has
//! a timeout and every loop a bound, so a broken server fails a test instead of hanging it.
#![cfg(feature = "mock")]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use oai_sse::mock::{Fault, FaultRule, FaultSpecError, MockServer, Script, StatusFault};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(5);

fn connect(server: &MockServer) -> TcpStream {
    let tcp = TcpStream::connect(server.addr()).unwrap();
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
    if let Some(len) = resp.header("content-length") {
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
