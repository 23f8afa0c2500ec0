//! HTTP/1.1 message framing without I/O, and a raw loopback client built on it.
//!
//! The fault proxy needs to know where each response starts and ends on a keep-alive
//! connection (its cut offsets count from the first byte of one response), and the replay
//! tests need the de-chunked body of a response that was cut part way. Both come from
//! [`Framer`]: it is fed raw bytes, says how many it took and which piece they completed
//! (head, body bytes, end), and never reads a socket itself.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Longest request or response head accepted.
pub const MAX_HEAD: usize = 64 << 10;
/// Longest chunk-size line (with extensions) or trailer section accepted.
pub const MAX_LINE: usize = 4 << 10;

/// A parsed start line and header fields, with the head's length on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `GET /path HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Bytes of the head including the blank line that ends it.
    pub len: usize,
}

impl Head {
    pub fn parse(bytes: &[u8]) -> Result<Self, FramingError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| FramingError::new("head is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_owned();
        if start_line.split(' ').count() < 2 {
            return Err(FramingError(format!("bad start line {start_line:?}")));
        }
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| FramingError(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Self {
            start_line,
            headers,
            len: bytes.len(),
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A request's method (the start line's first word).
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or_default()
    }

    /// A request's target, query included.
    pub fn target(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or_default()
    }

    /// A request's target without the query.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(p, _)| p)
    }

    /// A response's status code.
    pub fn status(&self) -> Option<u16> {
        self.start_line.split(' ').nth(1)?.parse().ok()
    }

    fn content_length(&self) -> Result<Option<u64>, FramingError> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| FramingError(format!("bad content-length {v:?}"))),
        }
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// What a [`Framer::feed`] call completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// The head is complete.
    Head(Head),
    /// Body bytes, de-chunked (a slice of the input).
    Body(&'a [u8]),
    /// The message is complete; the next byte belongs to the next message.
    End,
}

/// Input that is not HTTP/1.1 as this framer understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub String);

impl FramingError {
    fn new(message: &str) -> Self {
        Self(message.to_owned())
    }
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Length(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    /// The CRLF after a chunk's data; counts the bytes of it seen.
    ChunkEnd(u8),
    Trailers(Vec<u8>),
    UntilClose,
    /// The body is over; the next feed reports [`Piece::End`].
    Ending,
    Done,
}

/// Frames one HTTP/1.1 message (request or response): make a new one for the next message
/// on the connection.
#[derive(Debug)]
pub struct Framer {
    request: bool,
    /// The response answers a HEAD request: no body whatever the headers say.
    head_request: bool,
    state: State,
}

impl Framer {
    /// Frames a request: a body only with Content-Length or chunked encoding.
    pub fn request() -> Self {
        Self {
            request: true,
            head_request: false,
            state: State::Head(Vec::new()),
        }
    }

    /// Frames a response to a request; `head_request` if that request was a HEAD.
    pub fn response(head_request: bool) -> Self {
        Self {
            request: false,
            head_request,
            state: State::Head(Vec::new()),
        }
    }

    /// Whether the message has ended.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Whether the body runs until the connection closes (a response without framing).
    pub fn is_until_close(&self) -> bool {
        matches!(self.state, State::UntilClose)
    }

    /// Takes a prefix of `input`. Returns how many bytes it took and the piece they
    /// completed, if any. It stops after each piece, and a piece may take no bytes (the
    /// [`Piece::End`] after the last body byte), so call it until it returns `(0, None)`.
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Piece<'a>>), FramingError> {
        match &mut self.state {
            State::Done => Ok((0, None)),
            State::Ending => {
                self.state = State::Done;
                Ok((0, Some(Piece::End)))
            }
            State::Head(buf) => {
                let old = buf.len();
                let search_from = old.saturating_sub(3);
                buf.extend_from_slice(input);
                let Some(pos) = find(&buf[search_from..], b"\r\n\r\n") else {
                    if buf.len() > MAX_HEAD {
                        return Err(FramingError(format!("head longer than {MAX_HEAD} bytes")));
                    }
                    return Ok((input.len(), None));
                };
                let end = search_from + pos + 4;
                buf.truncate(end);
                let head = Head::parse(buf)?;
                self.state = self.body_state(&head)?;
                Ok((end - old, Some(Piece::Head(head))))
            }
            State::Length(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Ending;
                }
                Ok((n, (n > 0).then(|| Piece::Body(&input[..n]))))
            }
            State::ChunkData(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::ChunkEnd(0);
                }
                Ok((n, (n > 0).then(|| Piece::Body(&input[..n]))))
            }
            State::ChunkEnd(seen) => {
                let mut used = 0;
                while used < input.len() && *seen < 2 {
                    if input[used] != b"\r\n"[usize::from(*seen)] {
                        return Err(FramingError::new("chunk data not followed by CRLF"));
                    }
                    used += 1;
                    *seen += 1;
                }
                if *seen == 2 {
                    self.state = State::ChunkSize(Vec::new());
                }
                Ok((used, None))
            }
            State::ChunkSize(line) => {
                let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                    line.extend_from_slice(input);
                    if line.len() > MAX_LINE {
                        return Err(FramingError::new("chunk-size line too long"));
                    }
                    return Ok((input.len(), None));
                };
                line.extend_from_slice(&input[..nl]);
                let text = std::str::from_utf8(line)
                    .map_err(|_| FramingError::new("chunk-size line is not UTF-8"))?;
                let digits = text.trim_end_matches('\r');
                let digits = digits.split_once(';').map_or(digits, |(d, _)| d).trim();
                let size = u64::from_str_radix(digits, 16)
                    .map_err(|_| FramingError(format!("bad chunk size {digits:?}")))?;
                self.state = if size == 0 {
                    State::Trailers(Vec::new())
                } else {
                    State::ChunkData(size)
                };
                Ok((nl + 1, None))
            }
            State::Trailers(buf) => {
                // Ends at an empty line: the section is "\r\n" alone or ends with "\r\n\r\n".
                for (i, &b) in input.iter().enumerate() {
                    buf.push(b);
                    if buf.as_slice() == b"\r\n" || buf.ends_with(b"\r\n\r\n") {
                        self.state = State::Done;
                        return Ok((i + 1, Some(Piece::End)));
                    }
                    if buf.len() > MAX_LINE {
                        return Err(FramingError::new("trailer section too long"));
                    }
                }
                Ok((input.len(), None))
            }
            State::UntilClose => Ok((
                input.len(),
                (!input.is_empty()).then_some(Piece::Body(input)),
            )),
        }
    }

    /// The connection closed. `Ok(true)` if that ended the message (a close-delimited body,
    /// or a message already complete), `Ok(false)` if nothing of it had arrived, and an
    /// error if the close cut it short.
    pub fn finish(&mut self) -> Result<bool, FramingError> {
        match &self.state {
            State::Done | State::Ending | State::UntilClose => {
                self.state = State::Done;
                Ok(true)
            }
            State::Head(buf) if buf.is_empty() => Ok(false),
            state => Err(FramingError(format!("connection closed in {state:?}"))),
        }
    }

    fn body_state(&self, head: &Head) -> Result<State, FramingError> {
        if !self.request {
            let status = head
                .status()
                .ok_or_else(|| FramingError(format!("bad status line {:?}", head.start_line)))?;
            if self.head_request || (100..200).contains(&status) || status == 204 || status == 304 {
                return Ok(State::Ending);
            }
        }
        if head.is_chunked() {
            return Ok(State::ChunkSize(Vec::new()));
        }
        Ok(match head.content_length()? {
            Some(0) => State::Ending,
            Some(n) => State::Length(n),
            None if self.request => State::Ending,
            None => State::UntilClose,
        })
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request's bytes: `Host`, `Connection: close` and (for a body) `Content-Length` added.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// One request on a new connection to `addr`, bounded by `timeout` (see [`exchange`]).
pub fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Exchange {
    exchange(
        addr,
        &request_bytes(addr, method, target, headers, body),
        timeout,
    )
}

/// What came back for one request on its own connection, however it ended.
#[derive(Debug)]
pub struct Exchange {
    pub head: Option<Head>,
    /// The de-chunked body bytes received (all of them, also when the response was cut).
    pub body: Vec<u8>,
    /// The response ended where its framing says it ends.
    pub complete: bool,
    /// Why reading stopped early: an I/O error, a framing error, or an early close.
    pub error: Option<String>,
}

impl Exchange {
    pub fn status(&self) -> Option<u16> {
        self.head.as_ref().and_then(Head::status)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on a new connection to `addr` and reads the response until it is
/// complete or the connection ends. Never fails: a refused connection, a cut or a timeout
/// (`timeout` bounds every read and write) shows in [`Exchange::error`].
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Exchange {
    let mut out = Exchange {
        head: None,
        body: Vec::new(),
        complete: false,
        error: None,
    };
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("connect: {e}"));
            return out;
        }
    };
    let setup = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.write_all(request));
    if let Err(e) = setup {
        out.error = Some(format!("send: {e}"));
        return out;
    }
    let head_request = request.starts_with(b"HEAD ");
    let mut framer = Framer::response(head_request);
    let mut buf = vec![0u8; 16 << 10];
    // Bounded by the read timeout per read and by the body the server sends.
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                match framer.finish() {
                    Ok(true) => out.complete = true,
                    Ok(false) => out.error = Some("closed before the response".into()),
                    Err(e) => out.error = Some(e.0),
                }
                return out;
            }
            Ok(n) => n,
            Err(e) => {
                out.error = Some(format!("read: {e}"));
                return out;
            }
        };
        let mut pos = 0;
        // Until the framer makes no progress: a piece can take no bytes (the end of a body).
        loop {
            match framer.feed(&buf[pos..n]) {
                Ok((used, piece)) => {
                    pos += used;
                    match piece {
                        Some(Piece::Head(h)) if h.status().is_some_and(|s| s < 200) => {
                            framer = Framer::response(head_request);
                        }
                        Some(Piece::Head(h)) => out.head = Some(h),
                        Some(Piece::Body(b)) => out.body.extend_from_slice(b),
                        Some(Piece::End) => {
                            out.complete = true;
                            let _ = stream.shutdown(Shutdown::Both);
                            return out;
                        }
                        None if used == 0 => break,
                        None => {}
                    }
                }
                Err(e) => {
                    out.error = Some(e.0);
                    return out;
                }
            }
        }
    }
}
