//! Writing responses: the byte-counting writer that applies the cut/stall/slice faults, and the
//! small pieces every route shares (status line, error bodies, a stop-aware pause).

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fault::{Fault, Plan};

pub(super) const JSON: &str = "application/json";
/// How often the accept loop, stalls and holds look at the stop flag.
pub(super) const POLL: Duration = Duration::from_millis(5);

/// One HTTP chunk of a streamed body and how long to wait before sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Piece {
    pub wait: Duration,
    pub data: String,
}

impl Piece {
    pub fn now(data: String) -> Self {
        Self {
            wait: Duration::ZERO,
            data,
        }
    }
}

/// Sleeps for `d` in small steps; fails once the server is stopping.
pub(super) fn pause(stop: &AtomicBool, d: Duration) -> io::Result<()> {
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

/// An OpenAI-style error body. `code` is `null`, a string, or (for the llama.cpp replay
/// routes, as llama.cpp sends it) the numeric status.
pub(super) fn error_body(message: &str, kind: &str, code: Value) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

/// A response head: the status line, the response's own `headers`, then the server's
/// `extra` headers whose names the response did not set.
pub(super) fn response_head(
    status: u16,
    headers: &[(&str, String)],
    extra: &[(String, String)],
    close: bool,
) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let own = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for (name, value) in extra.iter().filter(|(n, _)| !own(n)) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "\r\n"
    });
    head
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Mock Status",
    }
}

/// `error.type` for a status, as OpenAI names them.
pub(super) fn error_type(status: u16) -> &'static str {
    match status {
        404 => "not_found_error",
        429 => "rate_limit_error",
        500.. => "server_error",
        _ => "invalid_request_error",
    }
}

/// The response writer: counts bytes so faults can cut, stall or slice at exact offsets.
pub(super) struct Wire<'a> {
    stream: &'a TcpStream,
    stop: &'a AtomicBool,
    /// The server's headers, sent on every response ([`Replies::header`](super::Replies::header)).
    extra: &'a [(String, String)],
    written: usize,
    /// Write no byte past this offset.
    cut: Option<usize>,
    /// Go silent once this many bytes are out.
    stall: Option<(usize, Duration)>,
    slices: Option<(usize, Duration)>,
}

impl<'a> Wire<'a> {
    /// A writer without faults, adding the server's `extra` headers to every response head.
    pub fn new(stream: &'a TcpStream, stop: &'a AtomicBool, extra: &'a [(String, String)]) -> Self {
        Self {
            stream,
            stop,
            extra,
            written: 0,
            cut: None,
            stall: None,
            slices: None,
        }
    }

    /// A writer applying the plan's cut, stall and slices.
    pub fn with_plan(
        stream: &'a TcpStream,
        stop: &'a AtomicBool,
        extra: &'a [(String, String)],
        plan: &Plan,
    ) -> Self {
        Self {
            cut: plan.cut.map(|(at, _)| at),
            stall: plan.stall,
            slices: plan.slices,
            ..Self::new(stream, stop, extra)
        }
    }

    pub fn pause(&self, d: Duration) -> io::Result<()> {
        pause(self.stop, d)
    }

    pub fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
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

    /// Sends `data` as one HTTP chunk; empty data sends nothing (an empty chunk ends a body).
    pub fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        self.send(&framed)
    }

    /// Waits and sends each piece as a chunk.
    pub fn pieces(&mut self, pieces: impl IntoIterator<Item = Piece>) -> io::Result<()> {
        for piece in pieces {
            if !piece.wait.is_zero() {
                self.pause(piece.wait)?;
            }
            self.chunk(piece.data.as_bytes())?;
        }
        Ok(())
    }

    /// The head of a chunked `text/event-stream` response.
    pub fn event_stream_head(&mut self, close: bool) -> io::Result<()> {
        let headers = [
            ("Content-Type", "text/event-stream".into()),
            ("Cache-Control", "no-cache".into()),
            ("Transfer-Encoding", "chunked".into()),
        ];
        self.send(response_head(200, &headers, self.extra, close).as_bytes())
    }

    /// Ends a chunked body.
    pub fn last_chunk(&mut self) -> io::Result<()> {
        self.send(b"0\r\n\r\n")
    }

    pub fn reply(
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
        self.send(response_head(status, &headers, self.extra, close).as_bytes())?;
        self.send(body)
    }

    /// A JSON error reply: `{"error":{"message","type","param","code"}}`.
    pub fn error(
        &mut self,
        status: u16,
        message: &str,
        code: Value,
        extra: &[(&str, String)],
        close: bool,
    ) -> io::Result<()> {
        let body = error_body(message, error_type(status), code);
        self.reply(status, JSON, extra, body.as_bytes(), close)
    }

    /// `204 No Content`: no body and, as RFC 9110 requires, no `Content-Length`.
    pub fn no_content(&mut self, close: bool) -> io::Result<()> {
        self.send(response_head(204, &[], self.extra, close).as_bytes())
    }

    /// The reply of a [`Fault::Status`] or [`Fault::HtmlError`]; other faults send nothing.
    pub fn fault_reply(&mut self, fault: &Fault, close: bool) -> io::Result<()> {
        match fault {
            Fault::Status(s) => {
                let mut headers = Vec::new();
                headers.extend(
                    s.retry_after
                        .as_ref()
                        .map(|v| ("Retry-After", v.replace(['\r', '\n'], ""))),
                );
                headers.extend(s.retry_after_ms.map(|v| ("retry-after-ms", v.to_string())));
                headers.extend(s.should_retry.map(|v| ("x-should-retry", v.to_string())));
                let message = s
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("mock error: HTTP {}", s.code));
                let kind = s.error_type.as_deref().unwrap_or(match s.code {
                    429 => "rate_limit_error",
                    500.. => "server_error",
                    _ => "invalid_request_error",
                });
                let body = error_body(&message, kind, s.error_code.as_deref().into());
                self.reply(s.code, JSON, &headers, body.as_bytes(), close)
            }
            &Fault::HtmlError(code) => {
                let title = format!("{code} {}", reason(code));
                let page = format!(
                    "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n\
                     <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                );
                let server = [("Server", "nginx".into())];
                self.reply(code, "text/html", &server, page.as_bytes(), close)
            }
            _ => Ok(()),
        }
    }

    /// Keeps the connection open sending nothing (or a `: ping` comment every `ping`) until
    /// the client closes it or the server stops.
    pub fn hold(&mut self, ping: Option<Duration>) -> io::Result<()> {
        if let Some(every) = ping {
            loop {
                self.pause(every)?;
                self.chunk(b": ping\n\n")?;
            }
        }
        self.stream.set_read_timeout(Some(POLL))?;
        let mut probe = [0; 1];
        loop {
            if self.stop.load(SeqCst) {
                return Err(io::Error::other("mock server stopping"));
            }
            match self.stream.peek(&mut probe) {
                Ok(0) => return Ok(()),
                // The client sent more (a pipelined request): it is not read while holding.
                Ok(_) => thread::sleep(POLL),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
