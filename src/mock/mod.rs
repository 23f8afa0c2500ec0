//! A fault-injecting, OpenAI-compatible chat server for tests (feature `mock`).
//!
//! [`MockServer`] serves a [`Script`] on a loopback port, blocking, one thread per connection:
//!
//! - `POST /v1/chat/completions` (also without `/v1`): with `"stream": true`, a chunked
//!   `text/event-stream` of `chat.completion.chunk` events — role, reasoning (`reasoning_content`)
//!   and content word by word, tool-call arguments in ~8-byte pieces, the `finish_reason` chunk,
//!   a usage chunk if `stream_options.include_usage`, then `data: [DONE]`; otherwise one
//!   `chat.completion` JSON body. The `model` field echoes the request's.
//! - `GET /v1/models` lists the script's model; anything else is a 404 with an OpenAI error body.
//!
//! Connections are kept alive unless the client says `Connection: close`. Every request is
//! recorded ([`MockServer::requests`]) without its `Authorization` value. [`Script::sse_events`]
//! renders the exact fault-free stream without a server.
//!
//! # Faults
//!
//! Each [`Fault`] hits chosen chat requests (a [`FaultRule`]: all of them, or `times` of them
//! after skipping `after`), and several combine, e.g. CRLF + pings + a reset. Byte offsets count
//! the whole response: status line, headers and chunk framing. If a response is shorter than a
//! `close-after`/`reset-after` offset, the cut comes after its last byte.
//!
//! # Fault specs
//!
//! `FAULT[=VALUE][,OPTION=VALUE]...` parses into a [`FaultRule`] (`"reset-after=300,times=1".parse()`).
//! Durations `S` are seconds (fractions allowed), `MS` milliseconds.
//!
//! | spec | fault | options |
//! |---|---|---|
//! | `close-after=N` | [`Fault::CloseAfter`] | |
//! | `reset-after=N` | [`Fault::ResetAfter`] | |
//! | `stall-after=N` | [`Fault::StallAfter`] | `secs=S` (required) |
//! | `stall-before=S` | [`Fault::StallBeforeStatus`] | |
//! | `status=CODE` | [`Fault::Status`] | `retry-after=TEXT`, `retry-after-ms=MS`, `should-retry=true\|false`, `type=T`, `code=C`, `message=M` |
//! | `html=CODE` | [`Fault::HtmlError`] | |
//! | `truncate-tool-args` | [`Fault::TruncateToolArgs`] | |
//! | `no-done` | [`Fault::NoDone`] | |
//! | `hold-open=S` | [`Fault::HoldOpen`] | |
//! | `crlf` | [`Fault::Crlf`] | |
//! | `ping=MS` | [`Fault::Ping`] | |
//! | `slices=N` | [`Fault::Slices`] | `delay-ms=MS` |
//!
//! Every fault also takes `times=N` (hit N requests) and `after=K` (skip the first K).
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use std::{net::TcpStream, time::Duration};
//! use oai_sse::mock::{Fault, MockServer, Script};
//!
//! let server = MockServer::start(Script::new().text("Hi there").fault(Fault::Crlf))?;
//! let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
//! let mut tcp = TcpStream::connect(server.addr())?;
//! tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
//! write!(
//!     tcp,
//!     "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
//!      Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!     body.len()
//! )?;
//! let mut response = String::new();
//! tcp.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(response.contains(r#""delta":{"content":" there"}"#));
//! assert!(response.contains("data: [DONE]\r\n\r\n"));
//! assert_eq!(server.chat_request_count(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

mod fault;
mod http;
mod script;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use fault::{Fault, FaultRule, FaultSpecError, StatusFault};
pub use script::{DEFAULT_MODEL, DEFAULT_REPLY, Script};

use http::{Head, HttpError};

const JSON: &str = "application/json";
/// How often the accept loop and stalls look at the stop flag.
const POLL: Duration = Duration::from_millis(5);
/// A client that reads nothing for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running mock server; stopped by [`MockServer::stop`] or on drop.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent, query included.
    pub path: String,
    /// Lowercased names, in order, without `authorization`.
    pub headers: Vec<(String, String)>,
    /// Whether an `Authorization` header was sent (its value is not kept).
    pub authorization: bool,
    /// The raw body.
    pub body: Vec<u8>,
    /// The body, if it is JSON.
    pub json: Option<Value>,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut h = self.headers.iter();
        h.find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Most requests a server keeps for [`MockServer::requests`]; older ones are dropped so a
/// long-running `oai-sse mock` does not grow without bound.
pub const MAX_RECORDED_REQUESTS: usize = 1000;

/// The recorded requests: the last [`MAX_RECORDED_REQUESTS`] and how many there were.
#[derive(Debug, Default)]
struct Recorded {
    kept: std::collections::VecDeque<RecordedRequest>,
    total: u64,
}

impl Recorded {
    fn push(&mut self, request: RecordedRequest) {
        if self.kept.len() == MAX_RECORDED_REQUESTS {
            self.kept.pop_front();
        }
        self.kept.push_back(request);
        self.total += 1;
    }
}

#[derive(Debug)]
struct Shared {
    script: Script,
    stop: AtomicBool,
    chat_requests: AtomicU64,
    requests: Mutex<Recorded>,
    /// Clones of open connections, so stop can shut them down.
    open: Mutex<Vec<(u64, TcpStream)>>,
}

impl MockServer {
    /// Starts serving `script` on `127.0.0.1` at a free port.
    ///
    /// # Errors
    /// If the socket cannot be bound or the accept thread cannot be spawned.
    pub fn start(script: Script) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0", script)
    }

    /// Starts serving `script` on the first loopback address `addr` resolves to.
    ///
    /// # Errors
    /// `InvalidInput` if `addr` has no loopback address (the mock never listens beyond the
    /// machine); otherwise as [`MockServer::start`].
    pub fn start_on(addr: impl ToSocketAddrs, script: Script) -> io::Result<Self> {
        let addrs: Vec<_> = addr
            .to_socket_addrs()?
            .filter(|a| a.ip().is_loopback())
            .collect();
        if addrs.is_empty() {
            let msg = "the mock server listens on loopback addresses only";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let listener = TcpListener::bind(&addrs[..])?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script,
            stop: AtomicBool::new(false),
            chat_requests: AtomicU64::new(0),
            requests: Mutex::new(Recorded::default()),
            open: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("oai-sse-mock".into())
            .spawn(move || accept_loop(&listener, &s))?;
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The requests so far, in arrival order: all of them, or the last
    /// [`MAX_RECORDED_REQUESTS`] in a long-running server.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).kept.iter().cloned().collect()
    }

    /// Requests of any kind so far (also those no longer kept).
    pub fn request_count(&self) -> u64 {
        lock(&self.shared.requests).total
    }

    /// The requests after the first `seen` that are still kept, each with its 1-based number,
    /// and the total so far: poll this to follow a long-running server without copying its
    /// whole history.
    pub fn requests_since(&self, seen: u64) -> (Vec<(u64, RecordedRequest)>, u64) {
        let recorded = lock(&self.shared.requests);
        let first = recorded.total - recorded.kept.len() as u64 + 1;
        let new = (first..)
            .zip(&recorded.kept)
            .filter(|(n, _)| *n > seen)
            .map(|(n, r)| (n, r.clone()))
            .collect();
        (new, recorded.total)
    }

    /// Chat completion requests so far (the count faults are scheduled by).
    pub fn chat_request_count(&self) -> u64 {
        self.shared.chat_requests.load(SeqCst)
    }

    /// Closes the listener and every open connection and joins all threads. Stalled responses
    /// notice within a few milliseconds. Recorded requests stay readable.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps for `d` in small steps; fails once the server is stopping.
fn pause(stop: &AtomicBool, d: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        if stop.load(SeqCst) {
            return Err(io::Error::other("mock server stopping"));
        }
        let left = d.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(POLL));
    }
}

/// Accepts until stopped, then shuts every connection down and joins its thread.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0;
    while !shared.stop.load(SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                workers.retain(|w| !w.is_finished());
                next_id += 1;
                match spawn_connection(stream, next_id, shared) {
                    Ok(worker) => workers.push(worker),
                    Err(e) => log::warn!("mock server: cannot serve a connection: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(e) => {
                log::warn!("mock server: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
    for (_, stream) in lock(&shared.open).iter() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for worker in workers {
        let _ = worker.join();
    }
}

fn spawn_connection(
    stream: TcpStream,
    id: u64,
    shared: &Arc<Shared>,
) -> io::Result<JoinHandle<()>> {
    // Accepted sockets inherit non-blocking mode on some platforms.
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    lock(&shared.open).push((id, stream.try_clone()?));
    let s = Arc::clone(shared);
    let forget = move |s: &Shared| lock(&s.open).retain(|(i, _)| *i != id);
    let spawned = thread::Builder::new()
        .name("oai-sse-mock-conn".into())
        .spawn(move || {
            serve(&stream, &s);
            // Drop the registered clone before `stream`, so an RST (linger 0) goes out on close.
            forget(&s);
        });
    spawned.inspect_err(|_| forget(shared))
}

/// Serves requests on one connection until it closes, fails, or a response ends it.
fn serve(stream: &TcpStream, shared: &Shared) {
    let mut buf = Vec::new();
    loop {
        let (head, body) = match read_request(stream, &mut buf) {
            Ok(Some(request)) => request,
            Ok(None) | Err(Fail::Io) => return,
            Err(Fail::Http(e)) => {
                let mut w = Wire::new(stream, &shared.stop);
                let body = error_body(e.message(), "invalid_request_error", None);
                let _ = w.reply(e.status(), JSON, &[], body.as_bytes(), true);
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
        };
        if !respond(stream, shared, &head, body) {
            return;
        }
    }
}

enum Fail {
    Io,
    Http(HttpError),
}

/// Reads one request (head and Content-Length body); `Ok(None)` at end of input.
fn read_request(
    mut stream: &TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<(Head, Vec<u8>)>, Fail> {
    let mut sent_continue = false;
    let mut chunk = [0; 16 * 1024];
    loop {
        if let Some(head) = http::parse_head(buf).map_err(Fail::Http)? {
            let end = head.len + head.content_length;
            if let Some(body) = buf.get(head.len..end) {
                let body = body.to_vec();
                buf.drain(..end);
                return Ok(Some((head, body)));
            }
            if head.expects_continue() && !sent_continue {
                stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .map_err(|_| Fail::Io)?;
                sent_continue = true;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Fail::Io),
        }
    }
}

/// Records and answers one request; false when the connection must end.
fn respond(stream: &TcpStream, shared: &Shared, head: &Head, body: Vec<u8>) -> bool {
    let json = serde_json::from_slice::<Value>(&body).ok();
    log::debug!("mock server: {} {}", head.method, head.target);
    lock(&shared.requests).push(RecordedRequest {
        method: head.method.clone(),
        path: head.target.clone(),
        headers: head
            .headers
            .iter()
            .filter(|(k, _)| k != "authorization")
            .cloned()
            .collect(),
        authorization: head.header("authorization").is_some(),
        body,
        json: json.clone(),
    });
    let close = !head.keep_alive();
    let path = head.target.split('?').next().unwrap_or_default();
    let mut w = Wire::new(stream, &shared.stop);
    let sent = match (
        head.method.as_str(),
        path.strip_prefix("/v1").unwrap_or(path),
    ) {
        ("POST", "/chat/completions") => return chat(stream, shared, json.as_ref(), close),
        ("GET", "/models") => {
            let list = json!({"object": "list", "data": [{"id": shared.script.model_name(),
                "object": "model", "created": 1_700_000_000, "owned_by": "oai-sse-mock"}]});
            w.reply(200, JSON, &[], list.to_string().as_bytes(), close)
        }
        _ => {
            let msg = format!("Unknown request URL: {} {}", head.method, path);
            let body = error_body(&msg, "invalid_request_error", None);
            w.reply(404, JSON, &[], body.as_bytes(), close)
        }
    };
    sent.is_ok() && !close
}

/// The faults hitting one chat request, merged (the first of each kind wins).
#[derive(Default)]
struct Plan<'a> {
    cut: Option<(usize, bool)>,
    stall: Option<(usize, Duration)>,
    stall_before: Option<Duration>,
    reply: Option<&'a Fault>,
    truncate: bool,
    no_done: bool,
    hold: Option<Duration>,
    crlf: bool,
    ping: Option<Duration>,
    slices: Option<(usize, Duration)>,
}

impl<'a> Plan<'a> {
    fn new(faults: impl Iterator<Item = &'a Fault>) -> Self {
        let mut p = Self::default();
        for f in faults {
            match *f {
                Fault::CloseAfter(n) => p.cut = p.cut.or(Some((n, false))),
                Fault::ResetAfter(n) => p.cut = p.cut.or(Some((n, true))),
                Fault::StallAfter { bytes, pause } => p.stall = p.stall.or(Some((bytes, pause))),
                Fault::StallBeforeStatus(d) => p.stall_before = p.stall_before.or(Some(d)),
                Fault::Status(_) | Fault::HtmlError(_) => p.reply = p.reply.or(Some(f)),
                Fault::TruncateToolArgs => p.truncate = true,
                Fault::NoDone => p.no_done = true,
                Fault::HoldOpen(d) => p.hold = p.hold.or(Some(d)),
                Fault::Crlf => p.crlf = true,
                Fault::Ping(d) => p.ping = p.ping.or(Some(d)),
                Fault::Slices { size, delay } => p.slices = p.slices.or(Some((size.max(1), delay))),
            }
        }
        p
    }
}

/// Answers a chat request under its faults; false when the connection must end.
fn chat(stream: &TcpStream, shared: &Shared, request: Option<&Value>, close: bool) -> bool {
    let n = shared.chat_requests.fetch_add(1, SeqCst) + 1;
    let faults = shared.script.faults.iter().filter(|r| r.applies_to(n));
    let plan = Plan::new(faults.map(|r| &r.fault));
    let mut w = Wire::new(stream, &shared.stop);
    w.cut = plan.cut.map(|(at, _)| at);
    (w.stall, w.slices) = (plan.stall, plan.slices);
    let sent = write_chat(&mut w, &shared.script, &plan, request, close);
    match plan.cut {
        Some((_, false)) => {
            let _ = stream.shutdown(Shutdown::Write);
            false
        }
        Some((_, true)) => {
            // Linger 0 makes the close that follows send an RST instead of a FIN.
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
            false
        }
        None => sent.unwrap_or(false) && !close,
    }
}

/// Writes the chat response; `Ok(false)` when the connection must end afterwards.
fn write_chat(
    w: &mut Wire,
    script: &Script,
    plan: &Plan,
    req: Option<&Value>,
    close: bool,
) -> io::Result<bool> {
    if let Some(d) = plan.stall_before {
        w.pause(d)?;
    }
    let Some(request) = req.filter(|r| r.is_object()) else {
        let body = error_body(
            "request body must be a JSON object",
            "invalid_request_error",
            None,
        );
        w.reply(400, JSON, &[], body.as_bytes(), close)?;
        return Ok(true);
    };
    match plan.reply {
        Some(Fault::Status(s)) => {
            let mut headers = Vec::new();
            headers.extend(
                s.retry_after
                    .as_ref()
                    .map(|v| ("Retry-After", v.replace(['\r', '\n'], ""))),
            );
            headers.extend(s.retry_after_ms.map(|v| ("retry-after-ms", v.to_string())));
            headers.extend(s.should_retry.map(|v| ("x-should-retry", v.to_string())));
            let default_type = match s.code {
                429 => "rate_limit_error",
                500.. => "server_error",
                _ => "invalid_request_error",
            };
            let message = s
                .message
                .clone()
                .unwrap_or_else(|| format!("mock error: HTTP {}", s.code));
            let kind = s.error_type.as_deref().unwrap_or(default_type);
            let body = error_body(&message, kind, s.error_code.as_deref());
            w.reply(s.code, JSON, &headers, body.as_bytes(), close)?;
            return Ok(true);
        }
        Some(&Fault::HtmlError(code)) => {
            let title = format!("{code} {}", reason(code));
            let page = format!(
                "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
                 <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            w.reply(
                code,
                "text/html",
                &[("Server", "nginx".into())],
                page.as_bytes(),
                close,
            )?;
            return Ok(true);
        }
        _ => {}
    }
    let truncated;
    let script = if plan.truncate {
        truncated = script.with_truncated_tool_args();
        &truncated
    } else {
        script
    };
    if request.get("stream") != Some(&Value::Bool(true)) {
        let body = script.completion(request).to_string();
        w.reply(200, JSON, &[], body.as_bytes(), close)?;
        return Ok(true);
    }
    let headers = [
        ("Content-Type", "text/event-stream".into()),
        ("Cache-Control", "no-cache".into()),
        ("Transfer-Encoding", "chunked".into()),
    ];
    w.send(response_head(200, &headers, close).as_bytes())?;
    let (body, tail) = script.stream_parts(request);
    let mut first = true;
    let mut event = |w: &mut Wire, data: &str| {
        if let (Some(every), false) = (plan.ping, first) {
            w.chunk(if plan.crlf {
                ": ping\r\n\r\n"
            } else {
                ": ping\n\n"
            })?;
            w.pause(every)?;
        }
        first = false;
        w.chunk(&script::sse_frame(data, plan.crlf))
    };
    for chunk in body {
        event(w, &chunk.to_string())?;
    }
    if !plan.no_done {
        for chunk in tail {
            event(w, &chunk.to_string())?;
        }
    }
    if let Some(d) = plan.hold {
        w.pause(d)?;
        w.send(b"0\r\n\r\n")?;
        return Ok(false);
    }
    if !plan.no_done {
        event(w, "[DONE]")?;
    }
    w.send(b"0\r\n\r\n")?;
    Ok(true)
}

fn error_body(message: &str, kind: &str, code: Option<&str>) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

fn response_head(status: u16, headers: &[(&str, String)], close: bool) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "\r\n"
    });
    head
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Mock Status",
    }
}

/// The response writer: counts bytes so faults can cut, stall or slice at exact offsets.
struct Wire<'a> {
    stream: &'a TcpStream,
    stop: &'a AtomicBool,
    written: usize,
    /// Write no byte past this offset.
    cut: Option<usize>,
    /// Go silent once this many bytes are out.
    stall: Option<(usize, Duration)>,
    slices: Option<(usize, Duration)>,
}

impl<'a> Wire<'a> {
    fn new(stream: &'a TcpStream, stop: &'a AtomicBool) -> Self {
        Self {
            stream,
            stop,
            written: 0,
            cut: None,
            stall: None,
            slices: None,
        }
    }

    fn pause(&self, d: Duration) -> io::Result<()> {
        pause(self.stop, d)
    }

    fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        loop {
            if let Some((_, d)) = self.stall.filter(|&(at, _)| self.written >= at) {
                self.stall = None;
                self.pause(d)?;
            }
            if data.is_empty() {
                return Ok(());
            }
            let mut n = data.len();
            if let Some((at, _)) = self.stall {
                n = n.min(at - self.written);
            }
            if let Some(at) = self.cut {
                if self.written >= at {
                    return Err(io::Error::other("mock fault: connection cut"));
                }
                n = n.min(at - self.written);
            }
            if let Some((size, delay)) = self.slices {
                if self.written > 0 {
                    self.pause(delay)?;
                }
                n = n.min(size);
            }
            let (now, rest) = data.split_at(n);
            let mut stream = self.stream;
            stream.write_all(now)?;
            self.written += n;
            data = rest;
        }
    }

    /// Sends `data` as one HTTP chunk.
    fn chunk(&mut self, data: &str) -> io::Result<()> {
        self.send(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
    }

    fn reply(
        &mut self,
        status: u16,
        content_type: &str,
        extra: &[(&str, String)],
        body: &[u8],
        close: bool,
    ) -> io::Result<()> {
        let mut headers = vec![("Content-Type", content_type.to_owned())];
        headers.extend_from_slice(extra);
        headers.push(("Content-Length", body.len().to_string()));
        self.send(response_head(status, &headers, close).as_bytes())?;
        self.send(body)
    }
}
