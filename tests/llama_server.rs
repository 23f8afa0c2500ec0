//! The client against a real llama.cpp `llama-server` (tests/llama/build-server.sh), through
//! a fault proxy that cuts its responses, plus the harness's own tests: the HTTP framer and
//! the proxy against a scripted upstream (these need no llama-server and always run).
//!
//! The llama tests share one server per binary and take turns (see `llama::shared`). Without
//! a built server they print a skip line and pass, unless `OAI_SSE_REQUIRE_LLAMA=1`.

mod llama;

use llama::gateway::{self, Gateway};
use llama::http::{self, Exchange, Framer, Piece};
use llama::{Cut, CutAt, Fault, FaultProxy, Outcome, Shared};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    CallOptions, CancelHandle, ChatRequest, Client, ClientBuilder, Error, FailureKind, Message,
    ProxyConfig, ResponseEvent, ResponsesRequest, RetryAction, StreamEvent,
};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// -------------------------------------------------------------------------------------------
// The framer
// -------------------------------------------------------------------------------------------

/// Feeds `input` in pieces of `step` bytes; returns the head, the body, whether the message
/// ended, and how many bytes it took.
fn frame(
    mut framer: Framer,
    input: &[u8],
    step: usize,
) -> (Option<http::Head>, Vec<u8>, bool, usize) {
    let (mut head, mut body, mut ended, mut taken) = (None, Vec::new(), false, 0);
    let mut offered = 0;
    while !ended {
        offered = (offered + step).min(input.len());
        loop {
            let (used, piece) = framer.feed(&input[taken..offered]).expect("valid message");
            taken += used;
            match piece {
                Some(Piece::Head(h)) => head = Some(h),
                Some(Piece::Body(b)) => body.extend_from_slice(b),
                Some(Piece::End) => ended = true,
                None if used == 0 => break,
                None => {}
            }
        }
        if offered == input.len() {
            break;
        }
    }
    (head, body, ended, taken)
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";

#[test]
fn framer_finds_each_message_end_whole_and_split_everywhere() {
    // (framer, message, body); every message is followed by bytes of the next one.
    type Case = (fn() -> Framer, &'static [u8], &'static [u8]);
    let cases: Vec<Case> = vec![
        (
            || Framer::response(false),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"hello",
        ),
        (|| Framer::response(false), CHUNKED, b"hello, world"),
        (
            || Framer::response(false),
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"",
        ),
        (
            || Framer::response(false),
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"",
        ),
        (
            || Framer::response(false),
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            b"",
        ),
        (
            || Framer::response(true),
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            b"",
        ),
        (
            || Framer::response(false),
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"",
        ),
        (
            || Framer::request(),
            b"GET /v1/stream?conv_id=a&from=3 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
        ),
        (
            || Framer::request(),
            b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"{}",
        ),
        (
            || Framer::request(),
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            b"{}",
        ),
    ];
    for (make, message, body) in cases {
        let mut input = message.to_vec();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for step in 1..=input.len() {
            let (head, got, ended, taken) = frame(make(), &input, step);
            let what = format!("{:?} in steps of {step}", String::from_utf8_lossy(message));
            assert!(ended, "{what}: no end");
            assert_eq!(taken, message.len(), "{what}: took {taken}");
            assert_eq!(got, body, "{what}: body");
            let head = head.expect("a head");
            assert_eq!(
                head.len,
                find(message, b"\r\n\r\n") + 4,
                "{what}: head length"
            );
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    http::find(hay, needle).expect("needle")
}

#[test]
fn framer_reads_a_close_delimited_body_until_finish() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n";
    let (head, body, ended, taken) = frame(Framer::response(false), input, 7);
    assert_eq!(
        head.expect("head").header("content-type"),
        Some("text/event-stream")
    );
    assert_eq!(
        (body.as_slice(), ended, taken),
        (&b"data: x\n\n"[..], false, input.len())
    );
    let mut framer = Framer::response(false);
    let _ = frame_into(&mut framer, input);
    assert_eq!(framer.finish(), Ok(true));
}

fn frame_into(framer: &mut Framer, input: &[u8]) -> usize {
    let mut taken = 0;
    loop {
        let (used, piece) = framer.feed(&input[taken..]).expect("valid");
        taken += used;
        if used == 0 && piece.is_none() {
            return taken;
        }
    }
}

#[test]
fn framer_rejects_what_is_not_http() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab",
            "not followed by CRLF",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "bad content-length",
        ),
        (b"HTTP/1.1 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header line"),
    ];
    for (input, error) in cases {
        let mut framer = Framer::response(false);
        let mut taken = 0;
        let result = loop {
            match framer.feed(&input[taken..]) {
                Ok((0, None)) => break Ok(()),
                Ok((used, _)) => taken += used,
                Err(e) => break Err(e),
            }
        };
        let e = result.expect_err(&String::from_utf8_lossy(input));
        assert!(e.0.contains(error), "{e} should say {error}");
    }
    let mut framer = Framer::response(false);
    let long = vec![b'a'; http::MAX_HEAD + 1];
    assert!(framer.feed(&long).is_err(), "a head longer than MAX_HEAD");
    let mut framer = Framer::response(false);
    let _ = frame_into(
        &mut framer,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
    );
    assert!(
        framer.finish().is_err(),
        "a close inside a Content-Length body"
    );
}

// -------------------------------------------------------------------------------------------
// The proxy, against a scripted upstream
// -------------------------------------------------------------------------------------------

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

fn sse_response() -> Vec<u8> {
    let mut out = SSE_HEAD.as_bytes().to_vec();
    for event in [
        "data: {\"a\":1}\n\n",
        "data: {\"b\":2}\n\n",
        "data: [DONE]\n\n",
    ] {
        out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The upstream's answer to a request path.
fn scripted(path: &str) -> Vec<u8> {
    match path {
        "/cl" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        "/chunked" => CHUNKED.to_vec(),
        "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        "/sse" => sse_response(),
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

/// How an upstream connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Eof,
    Reset,
    Other,
}

/// A keep-alive upstream: answers every request on each connection with [`scripted`] and
/// reports how each connection ended. Stops when dropped.
struct Upstream {
    addr: SocketAddr,
    endings: mpsc::Receiver<Ending>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("accept timeout");
        let addr = listener.local_addr().expect("addr");
        let (tx, endings) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                for _ in 0..64 {
                    let Ok((stream, _)) = listener.accept() else {
                        break;
                    };
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let tx = tx.clone();
                    workers.push(std::thread::spawn(move || {
                        let _ = tx.send(serve_keep_alive(stream));
                    }));
                }
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        Self {
            addr,
            endings,
            stop,
            thread: Some(thread),
        }
    }

    /// How the next upstream connection to end ended (bounded wait).
    fn ending(&self) -> Ending {
        self.endings
            .recv_timeout(Duration::from_secs(10))
            .expect("an upstream connection ends")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; it sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_keep_alive(mut stream: TcpStream) -> Ending {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut framer = Framer::request();
    let mut buf = [0u8; 4096];
    let mut path = String::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ending::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ending::Reset,
            Err(_) => return Ending::Other,
        };
        let mut pos = 0;
        loop {
            if framer.is_done() {
                framer = Framer::request();
            }
            let (used, piece) = framer.feed(&buf[pos..n]).expect("upstream framing");
            pos += used;
            match piece {
                Some(Piece::Head(h)) => path = h.path().to_owned(),
                Some(Piece::End) if stream.write_all(&scripted(&path)).is_err() => {
                    return Ending::Other;
                }
                None if used == 0 => break,
                _ => {}
            }
        }
    }
}

/// A client connection through the proxy that sends requests one after another.
struct KeepAlive(TcpStream);

impl KeepAlive {
    fn connect(proxy: &FaultProxy) -> Self {
        let s = TcpStream::connect(proxy.addr()).expect("connect to proxy");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self(s)
    }

    fn send(&mut self, method: &str, path: &str, body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.0.write_all(&bytes).expect("send request");
    }

    /// Reads exactly one whole response and returns its raw bytes.
    fn response(&mut self) -> Vec<u8> {
        let mut framer = Framer::response(false);
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte, so nothing of a following response is read.
        while !framer.is_done() {
            assert_eq!(
                self.0.read(&mut byte).expect("read response"),
                1,
                "early EOF"
            );
            raw.push(byte[0]);
            let _ = frame_into(&mut framer, &byte);
        }
        raw
    }

    /// Reads until the connection ends: the bytes, and the error that ended it (None = EOF).
    fn rest(&mut self) -> (Vec<u8>, Option<ErrorKind>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.kind())),
            }
        }
    }
}

#[test]
fn proxy_forwards_keep_alive_requests_and_counts_them() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let mut conn = KeepAlive::connect(&proxy);
    for (method, path, body) in [
        ("GET", "/cl", &b""[..]),
        ("POST", "/chunked", b"{\"x\":1}"),
        ("GET", "/empty", b""),
        ("POST", "/sse", b"{}"),
        ("GET", "/cl?x=1", b""),
    ] {
        conn.send(method, path, body);
        let path = path.split('?').next().expect("path");
        assert_eq!(conn.response(), scripted(path), "{method} {path}");
    }
    drop(conn);
    assert_eq!(upstream.ending(), Ending::Eof);
    let requests = proxy.requests();
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|r| r.conn == 0), "one connection");
    assert_eq!(requests[1].body, b"{\"x\":1}");
    assert_eq!(requests[4].head.target(), "/cl?x=1");
    assert_eq!(proxy.count("GET", "/cl"), 2);
    assert_eq!(proxy.count("POST", "/chunked"), 1);
    assert_eq!(proxy.count("GET", "/chunked"), 0);
    assert!(proxy.cuts().is_empty());
    assert!(proxy.errors().is_empty(), "{:?}", proxy.errors());
}

#[test]
fn proxy_cuts_the_response_at_every_kind_of_offset_with_fin_and_rst() {
    let full = sse_response();
    let head = SSE_HEAD.len();
    // Start, inside the status line, the last head byte, the head's end, inside a chunk-size
    // line, inside chunk data, the last byte, and the end of the response.
    let offsets = [
        0,
        1,
        head - 1,
        head,
        head + 1,
        head + 8,
        full.len() - 1,
        full.len(),
    ];
    for cut in [Cut::Fin, Cut::Rst] {
        for k in offsets {
            let what = format!("{cut:?} at {k}");
            let upstream = Upstream::start();
            let proxy = FaultProxy::start(upstream.addr);
            proxy.add_fault(Fault::new("POST", "/sse").at(CutAt::Byte(k)).cut(cut));
            let mut conn = KeepAlive::connect(&proxy);
            // A response before the broken one: its offsets must not count.
            conn.send("POST", "/cl", b"{}");
            assert_eq!(conn.response(), scripted("/cl"), "{what}");
            conn.send("POST", "/sse", b"{}");
            let (got, error) = conn.rest();
            match cut {
                Cut::Fin => {
                    assert_eq!(got, full[..k], "{what}");
                    assert_eq!(error, None, "{what}");
                }
                Cut::Rst => {
                    assert!(got.len() <= k && full.starts_with(&got), "{what}: {got:?}");
                    assert_eq!(error, Some(ErrorKind::ConnectionReset), "{what}");
                }
            }
            let ending = if cut == Cut::Fin {
                Ending::Eof
            } else {
                Ending::Reset
            };
            assert_eq!(
                upstream.ending(),
                ending,
                "{what}: the upstream sees the cut"
            );
            let cuts = proxy.cuts();
            assert_eq!(cuts.len(), 1, "{what}");
            assert_eq!(
                (cuts[0].request, &cuts[0].outcome, cuts[0].raw_bytes),
                (1, &Outcome::Cut, k)
            );
            assert_eq!(cuts[0].head_len, (k >= head).then_some(head), "{what}");
            assert!(proxy.errors().is_empty(), "{what}: {:?}", proxy.errors());
        }
    }
}

/// The de-chunked body of a response's raw bytes, however they end.
fn body_of(raw: &[u8]) -> Vec<u8> {
    let mut framer = Framer::response(false);
    let (mut body, mut taken) = (Vec::new(), 0);
    loop {
        let (used, piece) = framer.feed(&raw[taken..]).expect("valid prefix");
        taken += used;
        match piece {
            Some(Piece::Body(b)) => body.extend_from_slice(b),
            None if used == 0 => return body,
            _ => {}
        }
    }
}

#[test]
fn proxy_cuts_right_after_each_body_byte() {
    let full = sse_response();
    let body = body_of(&full);
    for k in 0..=body.len() {
        let upstream = Upstream::start();
        let proxy = FaultProxy::start(upstream.addr);
        proxy.add_fault(Fault::new("POST", "/sse").at(CutAt::BodyByte(k)));
        let mut conn = KeepAlive::connect(&proxy);
        conn.send("POST", "/sse", b"{}");
        let (got, error) = conn.rest();
        assert_eq!(error, None, "at {k}");
        assert!(full.starts_with(&got), "at {k}: {got:?}");
        assert_eq!(body_of(&got), body[..k], "at {k}");
        // Nothing after the k-th body byte: one byte less holds one body byte less (or,
        // for k = 0, it is the head).
        if k == 0 {
            assert_eq!(got, SSE_HEAD.as_bytes());
        } else {
            assert_eq!(body_of(&got[..got.len() - 1]), body[..k - 1], "at {k}");
        }
        let cut = &proxy.cuts()[0];
        assert_eq!(
            (cut.body_bytes, cut.raw_bytes, &cut.outcome),
            (k, got.len(), &Outcome::Cut)
        );
    }
}

#[test]
fn proxy_cuts_right_after_the_head() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    proxy.add_fault(Fault::new("POST", "/sse"));
    let mut conn = KeepAlive::connect(&proxy);
    conn.send("POST", "/sse", b"{}");
    assert_eq!(conn.rest(), (SSE_HEAD.as_bytes().to_vec(), None));
    let cut = &proxy.cuts()[0];
    assert_eq!(
        (cut.raw_bytes, cut.head_len, cut.body_bytes),
        (SSE_HEAD.len(), Some(SSE_HEAD.len()), 0)
    );
}

#[test]
fn proxy_counts_matches_across_connections_and_lets_short_responses_pass() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    // The 2nd POST /sse, wherever it comes; and a cut point past the end of /cl.
    proxy.add_fault(
        Fault::new("POST", "/sse")
            .nth(2)
            .at(CutAt::Byte(SSE_HEAD.len() + 5)),
    );
    proxy.add_fault(Fault::new("GET", "/cl").at(CutAt::Byte(1000)));
    let mut first = KeepAlive::connect(&proxy);
    first.send("POST", "/sse", b"{}");
    assert_eq!(first.response(), sse_response(), "the 1st POST passes");
    first.send("GET", "/cl", b"");
    assert_eq!(
        first.response(),
        scripted("/cl"),
        "a response shorter than the cut point"
    );
    first.send("GET", "/cl", b"");
    assert_eq!(
        first.response(),
        scripted("/cl"),
        "the connection stays usable"
    );
    let mut second = KeepAlive::connect(&proxy);
    second.send("POST", "/sse", b"{}");
    let (got, _) = second.rest();
    assert_eq!(got, sse_response()[..SSE_HEAD.len() + 5]);
    let cuts = proxy.cuts();
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    assert_eq!(
        (cuts[0].request, &cuts[0].outcome),
        (1, &Outcome::EndedFirst)
    );
    assert_eq!((cuts[1].request, &cuts[1].outcome), (3, &Outcome::Cut));
    assert_eq!(cuts[1].body_bytes, 2, "\"f\\r\\nda\": two body bytes");
    assert_eq!(proxy.requests()[3].conn, 1);
}

#[test]
fn proxy_drop_closes_idle_connections_and_joins_its_threads() {
    let upstream = Upstream::start();
    let proxy = FaultProxy::start(upstream.addr);
    let mut idle = KeepAlive::connect(&proxy);
    idle.send("GET", "/cl", b"");
    assert_eq!(idle.response(), scripted("/cl"));
    let start = Instant::now();
    drop(proxy);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        start.elapsed()
    );
    assert_eq!(idle.rest(), (Vec::new(), None), "the client sees the close");
}

#[test]
fn proxy_reports_an_upstream_that_refuses() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let proxy = FaultProxy::with_timeout(addr, Duration::from_secs(5));
    let mut conn = KeepAlive::connect(&proxy);
    assert_eq!(conn.rest().0, b"");
    // The proxy records the error before it drops the client connection.
    assert!(
        proxy.errors()[0].contains("connect to"),
        "{:?}",
        proxy.errors()
    );
}

// -------------------------------------------------------------------------------------------
// llama-server
// -------------------------------------------------------------------------------------------

const PROMPT: &str = "Write a short poem about the sea.";
/// Short generations keep the suite fast on a busy 2-core machine.
const MAX_TOKENS: u32 = 40;
const CHAT: &str = "/v1/chat/completions";

/// Greedy and without the prompt cache, so every run computes the same tokens the same way.
fn chat_request() -> ChatRequest {
    let mut request = ChatRequest::new("smollm2", vec![Message::user(PROMPT)])
        .temperature(0.0)
        .max_tokens(MAX_TOKENS)
        .include_usage();
    request.extra.insert("cache_prompt".into(), json!(false));
    request
}

/// The same request as JSON for raw HTTP, with `extra` fields merged in.
fn raw_body(extra: Value) -> Vec<u8> {
    let mut body = serde_json::to_value(chat_request()).expect("request JSON");
    body["stream"] = json!(true);
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    serde_json::to_vec(&body).expect("body")
}

fn client(base_url: &str) -> Client {
    client_builder(base_url).build().expect("client")
}

/// Short jitter-free backoff and timeouts generous enough for a starved machine.
fn client_builder(base_url: &str) -> ClientBuilder {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .retry_policy(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(50))
                .jitter(0.0),
        )
        .connect_timeout(Duration::from_secs(10))
        // The server sends its head only with the first token; a starved machine is slow.
        .first_byte_timeout(Duration::from_secs(180))
        .idle_timeout(Duration::from_secs(120))
}

/// The uncut generation every other run must reproduce.
struct Reference {
    text: String,
    /// What one whole generation adds to `tokens_predicted_total`.
    tokens: u64,
}

fn reference(llama: &Shared) -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let before = llama.metrics();
        let start = Instant::now();
        let response = client(&llama.base_url())
            .chat(&chat_request())
            .expect("direct chat");
        let elapsed = start.elapsed();
        let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
        let tokens = after.tokens_predicted() - before.tokens_predicted();
        eprintln!(
            "llama: start-up {:?}; {tokens} tokens in {elapsed:?}; text {:?}",
            llama.startup_time(),
            response.content()
        );
        assert!(
            !response.content().is_empty(),
            "an empty generation proves nothing"
        );
        assert!(response.retries.is_empty(), "{:?}", response.retries);
        let usage = response.usage.as_ref().expect("usage (include_usage)");
        assert_eq!(
            usage.completion_tokens, tokens,
            "usage agrees with /metrics"
        );
        Reference {
            text: response.content().to_owned(),
            tokens,
        }
    })
}

/// The text of an SSE body's complete events, and whether they include `data: [DONE]`.
fn sse_text(body: &[u8]) -> (String, bool) {
    let body = std::str::from_utf8(body).expect("UTF-8 event stream");
    let complete = body.rfind("\n\n").map_or("", |end| &body[..end + 2]);
    let (mut text, mut done) = (String::new(), false);
    for line in complete.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("chunk JSON");
        if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(delta);
        }
    }
    (text, done)
}

/// Where the last complete event of `body` ends.
fn events_end(body: &[u8]) -> usize {
    body.windows(2)
        .rposition(|w| w == b"\n\n")
        .map_or(0, |i| i + 2)
}

/// A conversation id no other test (or earlier run of this binary) uses.
fn conversation_id(test: &str) -> String {
    format!("oai-sse-{test}-{}", std::process::id())
}

fn via(
    proxy: &FaultProxy,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Exchange {
    http::call(
        proxy.addr(),
        method,
        target,
        headers,
        body,
        llama::server::REQUEST_TIMEOUT,
    )
}

#[test]
fn llama_direct_and_proxied_generations_are_the_same() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    let proxy = FaultProxy::start(llama.addr());
    let before = llama.metrics();
    let response = client(&proxy.base_url())
        .chat(&chat_request())
        .expect("chat through the proxy");
    let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
    assert_eq!(response.content(), reference.text);
    assert_eq!(
        after.tokens_predicted() - before.tokens_predicted(),
        reference.tokens
    );
    assert_eq!(proxy.count("POST", CHAT), 1);
    assert_eq!(proxy.requests().len(), 1);
    assert!(
        proxy.cuts().is_empty() && proxy.errors().is_empty(),
        "{:?}",
        proxy.errors()
    );
}

/// The cuts the client must survive: FIN and RST mid-stream at a few offsets, and before the
/// first body byte (the server sends its head with the first token, so this one finds the
/// whole generation in the replay buffer).
const CUTS: [(CutAt, Cut); 5] = [
    (CutAt::BodyByte(300), Cut::Fin),
    (CutAt::BodyByte(1000), Cut::Rst),
    (CutAt::Byte(2000), Cut::Fin),
    (CutAt::Byte(2000), Cut::Rst),
    (CutAt::AfterHead, Cut::Fin),
];

#[test]
fn llama_client_resumes_a_cut_stream_with_one_generation() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    for (at, cut) in CUTS {
        let what = format!("{cut:?} at {at:?}");
        let proxy = FaultProxy::start(llama.addr());
        proxy.add_fault(Fault::new("POST", CHAT).at(at).cut(cut));
        let before = llama.metrics();
        let mut shown = String::new();
        let mut resumed = 0;
        let response = client(&proxy.base_url())
            .chat_stream(&chat_request(), |event| match event {
                StreamEvent::Content { text, .. } => shown.push_str(text),
                StreamEvent::Resumed { .. } => resumed += 1,
                StreamEvent::Restart { .. } => panic!("{what}: restarted"),
                _ => {}
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
        // The same answer, shown once: no delta lost or repeated across the break.
        assert_eq!(response.content(), reference.text, "{what}");
        assert_eq!(shown, reference.text, "{what}");
        assert_eq!(resumed, 1, "{what}");
        // One generation: one POST, the rest replayed.
        assert_eq!(proxy.count("POST", CHAT), 1, "{what}");
        assert_eq!(proxy.count("GET", "/v1/stream"), 1, "{what}");
        assert_eq!(
            after.tokens_predicted() - before.tokens_predicted(),
            reference.tokens,
            "{what}: tokens generated"
        );
        assert_eq!(response.retries.len(), 1, "{what}: {:?}", response.retries);
        assert!(
            matches!(response.retries[0].action, RetryAction::Resumed { .. }),
            "{what}: {:?}",
            response.retries
        );
        assert_eq!(proxy.cuts().len(), 1, "{what}");
        assert!(proxy.errors().is_empty(), "{what}: {:?}", proxy.errors());
    }
}

/// Without the replay (no conversation id), a cut stream on llama.cpp is *continued*: the
/// request again with the shown text as a final assistant message, which llama.cpp goes on
/// from (it says it is llama.cpp in its `Server` header). The caller sees one continuous
/// answer, the uncut one, and the server generates it about once.
#[test]
fn llama_client_without_resume_continues_the_shown_text() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    for (at, cut) in [(CutAt::Byte(2000), Cut::Fin), (CutAt::Byte(2000), Cut::Rst)] {
        let what = format!("{cut:?} at {at:?}");
        let proxy = FaultProxy::start(llama.addr());
        proxy.add_fault(Fault::new("POST", CHAT).at(at).cut(cut));
        let client = Client::builder()
            .base_url(proxy.base_url())
            .proxy(ProxyConfig::None)
            .resume(false)
            .first_byte_timeout(Duration::from_secs(180))
            .idle_timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let before = llama.metrics();
        let mut shown = String::new();
        let mut notices = Vec::new();
        let response = client
            .chat_stream(&chat_request(), |event| match event {
                StreamEvent::Content { text, .. } => shown.push_str(text),
                StreamEvent::Restart { .. } => panic!("{what}: restarted"),
                StreamEvent::Continued { regenerated, .. } => notices.push(*regenerated),
                _ => {}
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
        assert_eq!(response.content(), reference.text, "{what}");
        assert_eq!(shown, reference.text, "{what}");
        assert_eq!(notices, [false], "{what}: continued by the server");
        assert_eq!(proxy.count("POST", CHAT), 2, "{what}");
        assert_eq!(proxy.count("GET", "/v1/stream"), 0, "{what}");
        let [retry] = response.retries.as_slice() else {
            panic!("{what}: {:?}", response.retries);
        };
        assert_eq!(retry.action, RetryAction::Continued, "{what}");
        // The cut attempt's tokens plus the continuation's: the uncut count, and a few more
        // (the server may generate a token or two before it notices the cut).
        let generated = after.tokens_predicted() - before.tokens_predicted();
        assert!(
            generated <= reference.tokens + 4,
            "{what}: {generated} tokens generated for an answer of {}",
            reference.tokens
        );
        let request = &proxy.requests()[1];
        let body: serde_json::Value =
            serde_json::from_slice(&request.body).expect("continuation body");
        assert_eq!(body["continue_final_message"], true, "{what}");
        assert_eq!(body["add_generation_prompt"], false, "{what}");
    }
}

/// With continuation off too, a cut stream restarts: llama.cpp at temperature 0 generates
/// the same answer again, whose repeat of the shown text is swallowed.
#[test]
fn llama_client_without_resume_or_continuation_restarts_and_returns_the_same_text() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    for (at, cut) in [(CutAt::Byte(2000), Cut::Fin), (CutAt::AfterHead, Cut::Rst)] {
        let what = format!("{cut:?} at {at:?}");
        let proxy = FaultProxy::start(llama.addr());
        proxy.add_fault(Fault::new("POST", CHAT).at(at).cut(cut));
        let client = Client::builder()
            .base_url(proxy.base_url())
            .proxy(ProxyConfig::None)
            .resume(false)
            .server_continues(false)
            .first_byte_timeout(Duration::from_secs(180))
            .idle_timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        let mut shown = String::new();
        let response = client
            .chat_stream(&chat_request(), |event| match event {
                StreamEvent::Content { text, .. } => shown.push_str(text),
                StreamEvent::Restart { .. } => panic!("{what}: the same answer differs"),
                _ => {}
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        llama.wait_idle(llama::server::IDLE_TIMEOUT);
        assert_eq!(response.content(), reference.text, "{what}");
        assert_eq!(shown, reference.text, "{what}");
        assert_eq!(proxy.count("POST", CHAT), 2, "{what}");
        assert_eq!(proxy.count("GET", "/v1/stream"), 0, "{what}");
        assert_eq!(response.retries.len(), 1, "{what}: {:?}", response.retries);
        assert_eq!(response.retries[0].action, RetryAction::Restarted, "{what}");
    }
}

#[test]
fn llama_cancel_stops_the_generation_on_the_server() {
    let Some(llama) = llama::shared() else { return };
    let proxy = FaultProxy::start(llama.addr());
    let before = llama.metrics();
    let cancel = CancelHandle::new();
    let options = CallOptions {
        cancel: Some(cancel.clone()),
        ..CallOptions::default()
    };
    // A long generation; cancel as soon as the first words arrive.
    let mut request = chat_request();
    request.max_tokens = Some(1500);
    request.extra.insert("ignore_eos".into(), json!(true));
    let mut seen = 0;
    let result = client(&proxy.base_url()).chat_with(&request, &options, |event| {
        if event.is_output() {
            seen += 1;
            if seen == 3 {
                cancel.cancel();
            }
        }
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    // The client told the server to stop: the slot goes idle long before 1500 tokens.
    let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
    let generated = after.tokens_predicted() - before.tokens_predicted();
    assert!(
        generated < 1500,
        "the generation ran on: {generated} tokens"
    );
    assert_eq!(proxy.count("DELETE", "/v1/stream"), 1);
}

#[test]
fn llama_replay_route_continues_a_cut_stream_from_an_event_boundary() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    let id = conversation_id("replay");
    let proxy = FaultProxy::start(llama.addr());
    proxy.add_fault(Fault::new("POST", CHAT).at(CutAt::Byte(1024)));
    let before = llama.metrics();
    let cut = via(
        &proxy,
        "POST",
        CHAT,
        &[("X-Conversation-Id", &id)],
        &raw_body(json!({})),
    );
    assert_eq!(cut.status(), Some(200), "{cut:?}");
    assert!(!cut.complete, "the proxy cut it: {cut:?}");
    let end = events_end(&cut.body);
    assert!(
        end > 0,
        "at least one whole event before the cut: {:?}",
        cut.text()
    );

    // The generation goes on without its client: one generation's tokens, not more.
    let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
    assert_eq!(
        after.tokens_predicted() - before.tokens_predicted(),
        reference.tokens
    );

    let target = format!("/v1/stream?conv_id={id}&from={end}");
    let rest = via(&proxy, "GET", &target, &[], b"");
    assert_eq!(rest.status(), Some(200), "{rest:?}");
    assert!(rest.complete, "{rest:?}");
    let head = rest.head.as_ref().expect("head");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(
        rest.text().ends_with("data: [DONE]\n\n"),
        "{:?}",
        rest.text()
    );
    let mut joined = cut.body[..end].to_vec();
    joined.extend_from_slice(&rest.body);
    assert_eq!(sse_text(&joined), (reference.text.clone(), true));
    assert_eq!(proxy.count("POST", CHAT), 1);
    assert_eq!(proxy.count("GET", "/v1/stream"), 1);

    // Offsets count the de-chunked body of the POST: a replay from 0 starts with what the
    // client got, and the buffer is all of it.
    let whole = llama.call("GET", &format!("/v1/stream?conv_id={id}&from=0"), &[], b"");
    assert!(whole.complete, "{whole:?}");
    assert_eq!(whole.body[..cut.body.len()], cut.body[..]);
    assert_eq!(whole.body[end..], rest.body[..]);
    let session = llama
        .stream_session(&id)
        .expect("the session outlives its stream");
    assert_eq!(session.total_bytes, whole.body.len() as u64);
    assert!(session.is_done);

    // How the route answers other offsets and ids once the stream is done.
    let total = whole.body.len();
    for (query, status, body) in [
        (format!("conv_id={id}&from={total}"), 200, ""),
        (format!("conv_id={id}&from={}", total + 100), 200, ""),
        (
            format!("conv_id={id}&from=abc"),
            400,
            "Invalid 'from' offset",
        ),
        ("from=0".to_owned(), 400, "Missing conversation id"),
        // The route's own "Stream not found or expired" never reaches the client: the
        // server's 404 handler replaces every 404 body, so this is also what a server
        // without the route says.
        (
            "conv_id=unknown-id&from=0".to_owned(),
            404,
            "\"not_found_error\"",
        ),
    ] {
        let answer = llama.call("GET", &format!("/v1/stream?{query}"), &[], b"");
        assert_eq!(answer.status(), Some(status), "{query}: {answer:?}");
        assert!(answer.complete, "{query}: {answer:?}");
        if body.is_empty() {
            assert!(answer.body.is_empty(), "{query}: {:?}", answer.text());
        } else {
            assert!(answer.text().contains(body), "{query}: {:?}", answer.text());
        }
    }

    let deleted = llama.call("DELETE", &format!("/v1/stream?conv_id={id}"), &[], b"");
    assert_eq!(deleted.status(), Some(204), "{deleted:?}");
    let gone = llama.call("GET", &format!("/v1/stream?conv_id={id}&from=0"), &[], b"");
    assert_eq!(gone.status(), Some(404), "{gone:?}");
    assert_eq!(llama.stream_session(&id), None);
}

#[test]
fn llama_delete_stops_a_generation_whose_client_is_gone() {
    let Some(llama) = llama::shared() else { return };
    let id = conversation_id("delete");
    let proxy = FaultProxy::start(llama.addr());
    proxy.add_fault(Fault::new("POST", CHAT).at(CutAt::Byte(1024)));
    // Far longer than the test runs if DELETE does not stop it.
    let long = 1500;
    let body = raw_body(json!({"max_tokens": long, "ignore_eos": true}));
    let before = llama.metrics();
    let cut = via(&proxy, "POST", CHAT, &[("X-Conversation-Id", &id)], &body);
    assert_eq!((cut.status(), cut.complete), (Some(200), false), "{cut:?}");
    let live = llama
        .stream_session(&id)
        .expect("a session for the cut stream");
    assert!(
        !live.is_done,
        "still generating without its client: {live:?}"
    );
    let deleted = llama.call("DELETE", &format!("/v1/stream?conv_id={id}"), &[], b"");
    assert_eq!(deleted.status(), Some(204), "{deleted:?}");
    assert_eq!(
        llama.stream_session(&id),
        None,
        "DELETE forgets the stream at once"
    );
    let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
    let tokens = after.tokens_predicted() - before.tokens_predicted();
    assert!(
        tokens > 0 && tokens < long,
        "{tokens} tokens: the generation stopped early"
    );
    let gone = llama.call("GET", &format!("/v1/stream?conv_id={id}&from=0"), &[], b"");
    assert_eq!(gone.status(), Some(404), "{gone:?}");
    // DELETE of what is already gone is still 204.
    let again = llama.call("DELETE", &format!("/v1/stream?conv_id={id}"), &[], b"");
    assert_eq!(again.status(), Some(204), "{again:?}");
}

#[test]
fn llama_server_stops_when_dropped_and_leaves_no_process() {
    let _turn = llama::server::turn();
    let config = match llama::Config::locate() {
        Ok(Some(config)) => config,
        Ok(None) => return llama::server::skip_not_built(),
        Err(e) => panic!("{e}"),
    };
    let server = llama::LlamaServer::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let group = format!("-{}", server.process_group());
    let alive = || {
        std::process::Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run kill")
            .success()
    };
    assert!(alive(), "the server's process group exists while it runs");
    assert_eq!(server.call("GET", "/health", &[], b"").status(), Some(200));
    drop(server);
    assert!(!alive(), "no process of the group is left after drop");
}

// -------------------------------------------------------------------------------------------
// Behind a real gateway: LiteLLM's proxy in front of llama-server
// -------------------------------------------------------------------------------------------

/// The gateway and the fault proxy between it and llama-server, one per test binary.
struct BehindGateway {
    /// Between the gateway and llama-server: cuts here are what LiteLLM reports in-stream.
    upstream: FaultProxy,
    gateway: Gateway,
}

/// LiteLLM (tests/llama/build-gateway.sh) in front of the shared llama-server; `None` when it
/// is not installed (a skip, or a failure under `OAI_SSE_REQUIRE_GATEWAY=1`).
fn behind_gateway(llama: &Shared) -> Option<&'static BehindGateway> {
    static GATEWAY: OnceLock<Option<BehindGateway>> = OnceLock::new();
    GATEWAY
        .get_or_init(|| {
            let litellm = gateway::locate()?;
            let upstream = FaultProxy::start(llama.addr());
            let gateway =
                Gateway::start(&litellm, upstream.addr()).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("litellm: start-up {:?}", gateway.startup_time());
            Some(BehindGateway { upstream, gateway })
        })
        .as_ref()
}

fn gateway_client(base_url: &str) -> Client {
    client_builder(base_url)
        .api_key(gateway::MASTER_KEY)
        .build()
        .expect("client")
}

/// Runs the chat through `client`: the response and the text shown. A `Restart` (taking
/// back what was shown) fails the test.
fn shown_chat(client: &Client, what: &str) -> (oai_sse::ChatResponse, String) {
    let mut shown = String::new();
    let response = client
        .chat_stream(&chat_request(), |event| match event {
            StreamEvent::Content { text, .. } => shown.push_str(text),
            StreamEvent::Restart { .. } => panic!("{what}: restarted"),
            _ => {}
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    (response, shown)
}

/// The gateway's connection to llama-server breaks mid-stream (FIN, RST): LiteLLM sends an
/// error event saying so, which the client takes as a break and continues from what it
/// showed (the gateway names llama.cpp behind it): the uncut answer, one retry.
#[test]
fn gateway_break_between_gateway_and_server_gives_the_uncut_answer() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    let Some(behind) = behind_gateway(&llama) else {
        return;
    };
    let base = format!("http://{}/v1", behind.gateway.addr());
    for cut in [Cut::Fin, Cut::Rst] {
        let what = format!("upstream {cut:?}");
        let posts = behind.upstream.count("POST", CHAT);
        let cuts = behind.upstream.cuts().len();
        behind
            .upstream
            .add_fault(Fault::new("POST", CHAT).at(CutAt::Byte(2000)).cut(cut));
        let (response, shown) = shown_chat(&gateway_client(&base), &what);
        llama.wait_idle(llama::server::IDLE_TIMEOUT);
        assert_eq!(
            behind.upstream.cuts().len(),
            cuts + 1,
            "{what}: the cut fell"
        );
        assert_eq!(response.content(), reference.text, "{what}");
        assert_eq!(shown, reference.text, "{what}");
        let [retry] = response.retries.as_slice() else {
            panic!("{what}: one retry per break: {:?}", response.retries);
        };
        assert_eq!(retry.reason, FailureKind::UpstreamBroke, "{what}");
        assert_eq!(retry.action, RetryAction::Continued, "{what}: {retry:?}");
        assert_eq!(behind.upstream.count("POST", CHAT) - posts, 2, "{what}");
    }
}

/// The connection between the client and the gateway breaks mid-stream (FIN, RST): the
/// gateway has no replay route, so the client continues: the uncut answer, one retry.
#[test]
fn gateway_break_between_client_and_gateway_gives_the_uncut_answer() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    let Some(behind) = behind_gateway(&llama) else {
        return;
    };
    for cut in [Cut::Fin, Cut::Rst] {
        let what = format!("client side {cut:?}");
        let front = FaultProxy::start(behind.gateway.addr());
        front.add_fault(Fault::new("POST", CHAT).at(CutAt::BodyByte(1000)).cut(cut));
        let (response, shown) = shown_chat(&gateway_client(&front.base_url()), &what);
        llama.wait_idle(llama::server::IDLE_TIMEOUT);
        assert_eq!(front.cuts().len(), 1, "{what}: the cut fell");
        assert_eq!(response.content(), reference.text, "{what}");
        assert_eq!(shown, reference.text, "{what}");
        let [retry] = response.retries.as_slice() else {
            panic!("{what}: one retry per break: {:?}", response.retries);
        };
        assert_eq!(retry.action, RetryAction::Continued, "{what}: {retry:?}");
        assert_eq!(front.count("POST", CHAT), 2, "{what}");
        assert!(front.errors().is_empty(), "{what}: {:?}", front.errors());
    }
}

/// What the gateway refuses is one request and a clear error: an unknown model, a wrong key,
/// a prompt longer than the model's context.
#[test]
fn gateway_refusals_are_one_request_and_a_clear_error() {
    let Some(llama) = llama::shared() else { return };
    let Some(behind) = behind_gateway(&llama) else {
        return;
    };
    let long = "sea ".repeat(5000);
    let cases: [(&str, ChatRequest, Option<&str>, &str); 3] = [
        (
            "unknown model",
            ChatRequest::new("no-such-model", vec![Message::user("hi")]),
            None,
            "Invalid model name",
        ),
        ("wrong key", chat_request(), Some("sk-wrong"), "http 400"),
        (
            "context overflow",
            ChatRequest::new(gateway::MODEL, vec![Message::user(long)]),
            None,
            "ContextWindowExceededError",
        ),
    ];
    for (what, request, key, words) in cases {
        let front = FaultProxy::start(behind.gateway.addr());
        let client = client_builder(&front.base_url())
            .api_key(key.unwrap_or(gateway::MASTER_KEY))
            .build()
            .expect("client");
        let err = client.chat(&request).expect_err(what);
        assert!(
            !matches!(err, Error::AfterRetries(_)),
            "{what}: retried: {err:?}"
        );
        assert!(err.to_string().contains(words), "{what}: {err}");
        assert_eq!(front.count("POST", CHAT), 1, "{what}");
    }
    llama.wait_idle(llama::server::IDLE_TIMEOUT);
}

/// Through a gateway that re-frames the stream (its own ids and field order, other chunk
/// boundaries) but passes the replay route through, the replay serves llama.cpp's bytes while
/// the client counted the gateway's: the resume is not verified, discarded before a byte of
/// it is shown, and the call continues instead: the uncut answer, one retry that says why.
#[test]
fn llama_resume_through_a_reframing_gateway_is_verified_not_spliced() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    let reframing = llama::reframe::Reframing::start(llama.addr());
    for (bytes, cut) in [(300, Cut::Fin), (1500, Cut::Rst), (1500, Cut::Fin)] {
        let what = format!("{cut:?} after {bytes} body bytes");
        reframing.cut_next(bytes, cut);
        let (response, shown) = shown_chat(&client(&reframing.base_url()), &what);
        llama.wait_idle(llama::server::IDLE_TIMEOUT);
        assert_eq!(response.content(), reference.text, "{what}");
        assert_eq!(
            shown, reference.text,
            "{what}: nothing spliced, nothing repeated"
        );
        let [retry] = response.retries.as_slice() else {
            panic!("{what}: one retry per break: {:?}", response.retries);
        };
        assert!(
            retry
                .passed_over
                .as_deref()
                .is_some_and(|why| why.starts_with("the replay did not match")),
            "{what}: {retry:?}"
        );
        // Continued from the shown text, or (nothing shown yet) sent again.
        assert!(
            matches!(
                retry.action,
                RetryAction::Continued | RetryAction::Restarted
            ),
            "{what}: {retry:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The Responses API on the real server
// ---------------------------------------------------------------------------------------------

const RESPONSES: &str = "/v1/responses";

/// The chat reference's request as a Responses request (greedy, no prompt cache).
fn responses_request() -> ResponsesRequest {
    ResponsesRequest::new("smollm2", PROMPT)
        .temperature(0.0)
        .max_output_tokens(MAX_TOKENS)
        .extra("cache_prompt", json!(false))
}

/// llama.cpp's `/v1/responses` streamed through the client gives the text of its own
/// non-streamed answer (read raw), which is the chat reference's text: the same
/// conversation under the same template.
#[test]
fn llama_responses_stream_gives_the_non_streamed_answer() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    let mut body = serde_json::to_value(responses_request()).expect("request JSON");
    body["stream"] = json!(false);
    let raw = http::call(
        llama.addr(),
        "POST",
        RESPONSES,
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&body).expect("body"),
        Duration::from_secs(180),
    );
    assert_eq!(raw.status(), Some(200), "{}", raw.text());
    let whole: Value = serde_json::from_slice(&raw.body).expect("a response object");
    let whole_text: String = whole["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part["text"].as_str().map(str::to_owned))
        .collect();
    let mut shown = String::new();
    let response = client(&llama.base_url())
        .responses_with(&responses_request(), &CallOptions::default(), |event| {
            if let ResponseEvent::Text { text, .. } = event {
                shown.push_str(text);
            }
        })
        .expect("streamed response");
    assert_eq!(response.output_text(), whole_text);
    assert_eq!(shown, whole_text);
    assert_eq!(whole_text, reference.text, "the chat answer");
    assert!(response.retries.is_empty(), "{:?}", response.retries);
}

/// A Responses stream cut mid-way is resumed from llama.cpp's replay (the same buffer chat
/// uses): the uncut text, shown once, one POST, one generation's tokens.
#[test]
fn llama_responses_cut_mid_stream_is_resumed_with_one_generation() {
    let Some(llama) = llama::shared() else { return };
    let reference = reference(&llama);
    for (at, cut) in [
        (CutAt::BodyByte(1500), Cut::Fin),
        (CutAt::BodyByte(3000), Cut::Rst),
    ] {
        let what = format!("{cut:?} at {at:?}");
        let proxy = FaultProxy::start(llama.addr());
        proxy.add_fault(Fault::new("POST", RESPONSES).at(at).cut(cut));
        let before = llama.metrics();
        let mut shown = String::new();
        let response = client(&proxy.base_url())
            .responses_with(
                &responses_request(),
                &CallOptions::default(),
                |event| match event {
                    ResponseEvent::Text { text, .. } => shown.push_str(text),
                    ResponseEvent::Restart { .. } => panic!("{what}: restarted"),
                    _ => {}
                },
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let after = llama.wait_idle(llama::server::IDLE_TIMEOUT);
        assert_eq!(response.output_text(), reference.text, "{what}");
        assert_eq!(shown, reference.text, "{what}");
        assert_eq!(proxy.count("POST", RESPONSES), 1, "{what}");
        assert_eq!(proxy.cuts().len(), 1, "{what}: the cut happened");
        assert_eq!(
            after.tokens_predicted() - before.tokens_predicted(),
            reference.tokens,
            "{what}: tokens generated"
        );
        assert_eq!(response.retries.len(), 1, "{what}: {:?}", response.retries);
        assert!(
            matches!(response.retries[0].action, RetryAction::Resumed { .. }),
            "{what}: {:?}",
            response.retries
        );
    }
}
