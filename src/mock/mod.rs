//! A fault-injecting, OpenAI-compatible chat server for tests (feature `mock`).
//!
//! [`MockServer`] serves [`Replies`] (usually one [`Script`]) on a loopback port, blocking, one
//! thread per connection:
//!
//! - `POST /v1/chat/completions` (also without `/v1`, like every route): with `"stream": true`,
//!   a chunked `text/event-stream` of `chat.completion.chunk` events — role, reasoning
//!   (`reasoning_content`) and content word by word, tool-call arguments in ~8-byte pieces, the
//!   `finish_reason` chunk, a usage chunk if `stream_options.include_usage`, then
//!   `data: [DONE]`; otherwise one `chat.completion` JSON body. The `model` field echoes the
//!   request's. `usage.completion_tokens` counts the content, reasoning and tool-argument
//!   pieces generated ([`MockServer::generated_tokens`] adds them up); `prompt_tokens` the
//!   words of the messages. A request ending with an assistant message may be continued,
//!   below.
//! - `POST /v1/responses`: the same script as a Responses API reply — with `"stream": true`
//!   the numbered `response.*` events OpenAI streams (reasoning, the message word by word,
//!   function calls in ~8-byte argument pieces, then `response.completed` with the whole
//!   response; `response.incomplete` for a finish reason `length`, `response.failed` for
//!   `failed`), otherwise the response object ([`Script::responses_events`],
//!   [`Script::response`]). Every fault applies as to chat (`no-done` drops the final
//!   event), and a request with `X-Conversation-Id` is kept for replay the same way.
//! - `GET /v1/stream?conv_id=ID&from=N`, `DELETE /v1/stream?conv_id=ID` and
//!   `POST /v1/streams/lookup`: llama.cpp's stream replay, below (or the other shape of its
//!   routes, [`ReplayRoutes`]).
//! - `GET` or `POST /v1/events?QUERY`: a generic numbered event feed for EventSource clients,
//!   configured by its query ([`FeedSpec`]).
//! - `GET /v1/models` lists the model; anything else is a 404 with an OpenAI error body.
//!
//! Every response carries the server's extra headers ([`Replies::server_header`], e.g.
//! `Server: llama.cpp`, by which clients recognise llama.cpp; [`Replies::header`], e.g.
//! LiteLLM's `llm_provider-server: llama.cpp`). Connections are kept alive unless the client
//! says `Connection: close`. Every request is
//! recorded ([`MockServer::requests`]) without its `Authorization` value, with the connection
//! it came on. [`Script::sse_events`] and [`FeedSpec::body`] render the exact fault-free
//! bodies without a server.
//!
//! # Stream replay (llama.cpp's resume protocol)
//!
//! As llama.cpp's server (`tools/server/server-stream.cpp`) does, a streaming chat request with
//! an `X-Conversation-Id: ID` header registers a stream session for ID: the server keeps the
//! de-chunked SSE bytes of the reply, whatever happens to the connection (the mock generates
//! the whole reply at once). The stored bytes are exactly the body the request's response
//! carries when no fault cuts it (body faults like `crlf` or `ping` included), so an offset the
//! client counted on that body indexes into them. A new request with the same ID replaces the
//! session; a request answered by a `status`/`html` fault registers nothing and ends the old
//! session; non-streaming requests register nothing.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/stream?conv_id=ID&from=N` | `200`, chunked `text/event-stream`: the stored bytes from offset N (default 0) to the end; empty past the end |
//! | ... without `conv_id` | `400` "Missing conversation id in path" |
//! | ... unknown or expired ID | `404` "Stream not found or expired" |
//! | ... `from` not a number | `400` "Invalid 'from' offset" |
//! | ... N below what the ring still holds | `400` "Stream offset lost, please restart" |
//! | `DELETE /v1/stream?conv_id=ID` | `204`, idempotent; the session is gone ([`MockServer::deleted_streams`]) |
//! | `POST /v1/streams/lookup` `{"conversation_ids":[ID,...]}` | `200`, a JSON array with an entry (`conversation_id`, `is_done`, `total_bytes`, ...) per id asked about that the server holds |
//!
//! With [`ReplayRoutes::Path`] the routes are `GET /v1/stream/ID?from=N`, `DELETE
//! /v1/stream/ID` and `GET /v1/streams` (every session held), the shape of the pull request
//! that added replay to llama.cpp; [`ReplayRoutes::QueryWithoutLookup`] has no lookup route.
//! The `no-replay` fault makes the lookup and list routes answer like the others.
//!
//! Error bodies are `{"error":{"message","type","param","code"}}` with the status as `code`,
//! as llama.cpp sends them. Sessions expire [`DEFAULT_REPLAY_TTL`] (300 s) after they are
//! stored ([`Replies::replay_ttl`] changes it); a server keeps at most [`MAX_STREAM_SESSIONS`]
//! (the oldest goes) of at most [`MAX_RING_BYTES`] each.
//!
//! # Continuing a final assistant message
//!
//! A chat request whose last message is `{"role":"assistant","content":PREFIX}` asks to go on
//! from PREFIX. The server's [`Continuation`] ([`Replies::continuation`]) says what it does:
//!
//! | [`Continuation`] | requests it prefills | reply |
//! |---|---|---|
//! | `Ignores` (default) | none | the script's whole reply |
//! | `Continues` (vLLM, llama.cpp with the flags) | those with `"continue_final_message": true, "add_generation_prompt": false` | the script's content pieces after PREFIX, then its tool calls |
//! | `Echoes` (llama.cpp without the flags) | any | PREFIX as one content chunk, then as `Continues` |
//!
//! The pieces after PREFIX are the uncut reply's from where PREFIX ends (the rest of the word
//! it ends in, then whole words); when the script's text does not start with PREFIX the reply
//! is the whole text. A prefilled reply has no reasoning. Its `completion_tokens` count what
//! was generated (not an echo), its `prompt_tokens` include PREFIX; a stream kept for replay
//! keeps the continued bytes. A prefilled request with `n` > 1 is answered `400` "Only one
//! completion choice is allowed" (continuation is for one choice); any other request gets one
//! choice whatever its `n`.
//!
//! # Faults
//!
//! Each [`Fault`] hits chosen requests (a [`FaultRule`]: all of them, or `times` of them after
//! skipping `after`), and several combine, e.g. CRLF + pings + a reset. What `after`/`times`
//! count is the fault's [`Schedule`]: for most faults the **streamed responses**, numbered
//! together in arrival order — chat completion requests, replay `GET /v1/stream` requests and
//! `/v1/events` requests. So `close-after=700,times=1` cuts the first chat response only, and
//! `close-after=100,after=1,times=1` then cuts the response after it, e.g. the client's replay
//! `GET`. ([`RecordedRequest::streamed`] shows each request's number.)
//!
//! Byte offsets count the whole response: status line, headers and chunk framing. If a
//! response is shorter than a `close-after`/`reset-after` offset, the cut comes after its last
//! byte. The server's faults come from the script given to [`MockServer::start`] or from
//! [`Replies::fault`]; see [`Replies`] for the faults of per-turn scripts.
//!
//! # Fault specs
//!
//! `FAULT[=VALUE][,OPTION=VALUE]...` parses into a [`FaultRule`] (`"reset-after=300,times=1".parse()`).
//! Durations `S` are seconds (fractions allowed), `MS` milliseconds.
//!
//! | spec | fault | hits | options |
//! |---|---|---|---|
//! | `close-after=N` | [`Fault::CloseAfter`] | any streamed response | |
//! | `reset-after=N` | [`Fault::ResetAfter`] | any streamed response | |
//! | `stall-after=N` | [`Fault::StallAfter`] | any streamed response | `secs=S` (required) |
//! | `stall-before=S` | [`Fault::StallBeforeStatus`] | any streamed response | |
//! | `slices=N` | [`Fault::Slices`] | any streamed response | `delay-ms=MS` |
//! | `status=CODE` | [`Fault::Status`] | any streamed response | `retry-after=TEXT`, `retry-after-ms=MS`, `should-retry=true\|false`, `type=T`, `code=C`, `message=M` |
//! | `html=CODE` | [`Fault::HtmlError`] | any streamed response | |
//! | `truncate-tool-args` | [`Fault::TruncateToolArgs`] | chat streams | |
//! | `no-done` | [`Fault::NoDone`] | chat streams | |
//! | `hold-open=S` | [`Fault::HoldOpen`] | chat streams | |
//! | `crlf` | [`Fault::Crlf`] | chat streams | |
//! | `ping=MS` | [`Fault::Ping`] | chat streams | |
//! | `no-replay[=STATUS]` | [`Fault::NoReplay`] (default 404) | a chat request registers no session; a replay `GET` answers STATUS; a `DELETE` too, when the rule hits the latest streamed response | |
//! | `replay-expired` | [`Fault::ReplayExpired`] | replay `GET`s: 404 | |
//! | `replay-lost` | [`Fault::ReplayLost`] | replay `GET`s: 400 | |
//! | `replay-shift=N` | [`Fault::ReplayShift`] | replay `GET`s start N bytes after the offset asked for (before it if N < 0) | |
//! | `replay-from-start` | [`Fault::ReplayFromStart`] | replay `GET`s ignore the offset | |
//! | `replay-foreign` | [`Fault::ReplayForeign`] | replay `GET`s send the stream under another completion id | |
//! | `empty-stream` | [`Fault::EmptyStream`] | chat streams: `200`, then no event at all | |
//! | `ring=BYTES` | [`Fault::Ring`] | the session a chat request registers keeps its last BYTES | |
//! | `stale[=P]` | [`Fault::Stale`] (P in 0..=1, default 1) | requests on a reused connection, counted by [`Schedule::Reuses`]: read, then the connection closes without a byte | `seed=S` |
//! | `idle-close-ms=MS` | [`Fault::IdleClose`] | connections, counted by [`Schedule::Connections`]: closed after MS idle between requests | |
//! | `close-after-response` | [`Fault::CloseAfterResponse`] | responses of any route, counted by [`Schedule::Requests`]: closed after the response, no `Connection: close` | |
//!
//! Every fault also takes `times=N` (hit N requests) and `after=K` (skip the first K). A
//! replay `GET` or feed is not shaped by the chat body faults: its body is the stored bytes or
//! the feed. A request dropped by `stale` is recorded (with [`RecordedRequest::dropped`]) but
//! counted by no route and gets no streamed-response number.
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

mod continuation;
mod fault;
mod feed;
mod http;
mod record;
mod replies;
mod responses;
mod routes;
mod script;
mod session;
#[cfg(test)]
mod tests;
mod wire;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{Value, json};

pub use continuation::Continuation;
pub use fault::{Fault, FaultRule, FaultSpecError, PER_MILLION, Schedule, StatusFault};
pub use feed::{FeedEnd, FeedSpec, FeedSpecError};
pub use record::{MAX_RECORDED_REQUESTS, RecordedRequest};
pub use replies::{ReplayRoutes, Replies};
pub use responses::FAILED_MESSAGE;
pub use script::{DEFAULT_MODEL, DEFAULT_REPLY, Script};
pub use session::{DEFAULT_REPLAY_TTL, MAX_RING_BYTES, MAX_STREAM_SESSIONS};

use http::{Head, HttpError};
use record::Recorded;
use routes::Ctx;
use session::Sessions;
use wire::{JSON, POLL, Wire};

/// The shortest wait between polls of the listener, right after accepting a connection.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_micros(50);
/// A client that reads nothing for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running mock server; stopped by [`MockServer::stop`] or on drop.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    replies: Replies,
    stop: AtomicBool,
    chat_requests: AtomicU64,
    /// Chat replies generated; a mutex so that picking a sequence's script and counting its
    /// reply are one step.
    generations: Mutex<u64>,
    /// Tokens (content, reasoning and tool-argument pieces) the generated replies carried.
    generated_tokens: AtomicU64,
    replays: AtomicU64,
    feeds: AtomicU64,
    connections: AtomicU64,
    /// Streamed responses numbered so far: the count most faults are scheduled by.
    streamed: AtomicU64,
    /// Requests that arrived on a reused connection: the count `stale` is scheduled by.
    reuses: AtomicU64,
    /// The `stale` draw's generator state.
    stale_rng: Mutex<u64>,
    requests: Mutex<Recorded<RecordedRequest>>,
    deleted: Mutex<Recorded<String>>,
    sessions: Mutex<Sessions>,
    /// Clones of open connections, so stop can shut them down.
    open: Mutex<Vec<(u64, TcpStream)>>,
}

impl MockServer {
    /// Starts serving on `127.0.0.1` at a free port: a [`Script`] (it answers every chat
    /// request and its faults are the server's) or [`Replies`].
    ///
    /// # Errors
    /// If the socket cannot be bound or the accept thread cannot be spawned.
    pub fn start(replies: impl Into<Replies>) -> io::Result<Self> {
        Self::start_on("127.0.0.1:0", replies)
    }

    /// Starts serving on the first loopback address `addr` resolves to.
    ///
    /// # Errors
    /// `InvalidInput` if `addr` has no loopback address (the mock never listens beyond the
    /// machine); otherwise as [`MockServer::start`].
    pub fn start_on(addr: impl ToSocketAddrs, replies: impl Into<Replies>) -> io::Result<Self> {
        let replies = replies.into();
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
        let seed = replies.faults.iter().find_map(|r| match r.fault {
            Fault::Stale { seed, .. } => Some(seed),
            _ => None,
        });
        let shared = Arc::new(Shared {
            sessions: Mutex::new(Sessions::new(replies.replay_ttl)),
            replies,
            stop: AtomicBool::new(false),
            chat_requests: AtomicU64::new(0),
            generations: Mutex::new(0),
            generated_tokens: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            feeds: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            streamed: AtomicU64::new(0),
            reuses: AtomicU64::new(0),
            stale_rng: Mutex::new(seed.unwrap_or(0)),
            requests: Mutex::new(Recorded::default()),
            deleted: Mutex::new(Recorded::default()),
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

    /// The chat completion requests among [`MockServer::requests`] (stale-dropped ones
    /// included, marked [`RecordedRequest::dropped`]).
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        let requests = lock(&self.shared.requests);
        requests
            .kept
            .iter()
            .filter(|r| r.is_chat())
            .cloned()
            .collect()
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

    /// Chat completion requests answered so far, whatever the answer (not those dropped by
    /// `stale`).
    pub fn chat_request_count(&self) -> u64 {
        self.shared.chat_requests.load(SeqCst)
    }

    /// Chat requests that generated a reply, streamed or not: not those answered by a
    /// `status`/`html` fault, rejected as invalid, or failed in a reply function.
    pub fn generation_count(&self) -> u64 {
        *lock(&self.shared.generations)
    }

    /// Tokens generated so far: one per content, reasoning or tool-argument piece of each
    /// reply counted by [`MockServer::generation_count`], streamed or not, so the sum of
    /// their `usage.completion_tokens`. A reply a fault cuts counts whole (the mock generates
    /// it at once); a continued reply counts only its continuation (not an echoed prefix); a
    /// replay `GET` generates nothing.
    pub fn generated_tokens(&self) -> u64 {
        self.shared.generated_tokens.load(SeqCst)
    }

    /// Replay `GET /v1/stream` requests answered `200`.
    pub fn replay_count(&self) -> u64 {
        self.shared.replays.load(SeqCst)
    }

    /// `/v1/events` feed requests, whatever the answer.
    pub fn feed_count(&self) -> u64 {
        self.shared.feeds.load(SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.shared.connections.load(SeqCst)
    }

    /// The conversation ids of the `DELETE /v1/stream` requests answered `204`, in order (the
    /// last [`MAX_RECORDED_REQUESTS`]).
    pub fn deleted_streams(&self) -> Vec<String> {
        lock(&self.shared.deleted).kept.iter().cloned().collect()
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

/// Accepts until stopped, then shuts every connection down and joins its thread.
/// The listener is polled (so that stop needs no wake-up connection): right after a connection
/// the waits start at [`ACCEPT_BACKOFF_MIN`] and double up to [`POLL`], so bursts of
/// connections (a test reconnecting in a loop) are accepted at once while an idle server
/// wakes only every [`POLL`].
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut backoff = POLL;
    while !shared.stop.load(SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                workers.retain(|w| !w.is_finished());
                let id = shared.connections.fetch_add(1, SeqCst) + 1;
                match spawn_connection(stream, id, shared) {
                    Ok(worker) => workers.push(worker),
                    Err(e) => log::warn!("mock server: cannot serve a connection: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(POLL);
            }
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
            serve(&stream, id, &s);
            // Drop the registered clone before `stream`, so an RST (linger 0) goes out on close.
            forget(&s);
        });
    spawned.inspect_err(|_| forget(shared))
}

/// Serves requests on connection number `conn` until it closes, fails, idles out, or a
/// response ends it.
fn serve(stream: &TcpStream, conn: u64, shared: &Shared) {
    let idle = shared.replies.faults.iter().find_map(|r| match r.fault {
        Fault::IdleClose(d) if r.applies_to(conn) => Some(d),
        _ => None,
    });
    let mut buf = Vec::new();
    let mut served = 0_u64;
    loop {
        // The idle timer runs only between requests of a kept-alive connection.
        let idle = idle.filter(|_| served > 0);
        let (head, body) = match read_request(stream, &mut buf, idle) {
            Ok(Some(request)) => request,
            Ok(None) | Err(Fail::Io) => return,
            Err(Fail::Idle) => {
                log::debug!("mock server: closing idle connection {conn}");
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Err(Fail::Http(e)) => {
                let mut w = Wire::new(stream, &shared.stop, &shared.replies.headers);
                let body = wire::error_body(e.message(), "invalid_request_error", Value::Null);
                let _ = w.reply(e.status(), JSON, &[], body.as_bytes(), true);
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
        };
        served += 1;
        if !respond(stream, conn, served > 1, shared, &head, body) {
            return;
        }
    }
}

enum Fail {
    Io,
    /// No request began within the idle timeout.
    Idle,
    Http(HttpError),
}

/// Reads one request (head and Content-Length body); `Ok(None)` at end of input. With `idle`,
/// gives up with [`Fail::Idle`] if no byte of a new request arrives in time.
fn read_request(
    mut stream: &TcpStream,
    buf: &mut Vec<u8>,
    idle: Option<Duration>,
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
        let timeout = idle
            .filter(|_| buf.is_empty())
            .map(|d| d.max(Duration::from_millis(1)));
        if idle.is_some() {
            stream.set_read_timeout(timeout).map_err(|_| Fail::Io)?;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if timeout.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(Fail::Idle);
            }
            Err(_) => return Err(Fail::Io),
        }
    }
}

/// The routes, by method and path (with or without `/v1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Responses,
    Models,
    Replay,
    StopReplay,
    /// `POST /v1/streams/lookup` or `GET /v1/streams`: which sessions the server holds.
    Lookup,
    Feed,
    Unknown,
}

impl Route {
    fn of(method: &str, path: &str, replay: ReplayRoutes) -> Self {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        let query_shape = matches!(
            replay,
            ReplayRoutes::Query | ReplayRoutes::QueryWithoutLookup
        );
        let path_shape = replay == ReplayRoutes::Path;
        let with_id = path
            .strip_prefix("/stream/")
            .is_some_and(|id| !id.is_empty());
        match (method, path) {
            ("POST", "/chat/completions") => Self::Chat,
            ("POST", "/responses") => Self::Responses,
            ("GET", "/models") => Self::Models,
            ("GET", "/stream") if query_shape => Self::Replay,
            ("DELETE", "/stream") if query_shape => Self::StopReplay,
            ("GET", _) if path_shape && with_id => Self::Replay,
            ("DELETE", _) if path_shape && with_id => Self::StopReplay,
            ("POST", "/streams/lookup") if replay == ReplayRoutes::Query => Self::Lookup,
            ("GET", "/streams") if path_shape => Self::Lookup,
            ("GET" | "POST", "/events") => Self::Feed,
            _ => Self::Unknown,
        }
    }

    /// Whether responses of this route are numbered in the sequence faults are scheduled by.
    fn is_streamed(self) -> bool {
        matches!(
            self,
            Self::Chat | Self::Responses | Self::Replay | Self::Feed
        )
    }
}

impl Shared {
    /// Whether the `stale` fault drops this request, the next on a reused connection.
    fn stale_hit(&self) -> bool {
        let n = self.reuses.fetch_add(1, SeqCst) + 1;
        let chance = self.replies.faults.iter().find_map(|r| match r.fault {
            Fault::Stale { per_million, .. } if r.applies_to(n) => Some(per_million),
            _ => None,
        });
        chance.is_some_and(|per_million| {
            let draw = splitmix64(&mut lock(&self.stale_rng)) % u64::from(PER_MILLION);
            draw < u64::from(per_million)
        })
    }
}

/// A small deterministic generator (SplitMix64): reproducible `stale` draws without a crate.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Records and answers one request; false when the connection must end.
fn respond(
    stream: &TcpStream,
    conn: u64,
    reused: bool,
    shared: &Shared,
    head: &Head,
    body: Vec<u8>,
) -> bool {
    let json = serde_json::from_slice::<Value>(&body).ok();
    let lookup_body = json.clone();
    // The path only: a query or a `/stream/ID` path may carry a conversation id, which lets
    // its holder read or stop the stream (as credentials, it stays out of logs).
    let path = head.path();
    let shown = match path.find("/stream/") {
        Some(at) => &path[..at + "/stream/".len()],
        None => path,
    };
    let hidden = match (shown.len() < path.len(), head.target.contains('?')) {
        (false, false) => "",
        _ => "…",
    };
    log::debug!("mock server: {} {shown}{hidden}", head.method);
    let route = Route::of(&head.method, head.path(), shared.replies.replay_routes);
    let dropped = reused && shared.stale_hit();
    let streamed =
        (!dropped && route.is_streamed()).then(|| shared.streamed.fetch_add(1, SeqCst) + 1);
    let record = RecordedRequest {
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
        json,
        connection: conn,
        streamed,
        dropped,
    };
    // A reply function needs the record; other routes hand it over.
    let generates = matches!(route, Route::Chat | Route::Responses);
    let (number, record) = if generates && !dropped {
        (lock(&shared.requests).push(record.clone()), Some(record))
    } else {
        (lock(&shared.requests).push(record), None)
    };
    if dropped {
        log::debug!("mock server: stale connection {conn}: closing instead of answering");
        let _ = stream.shutdown(Shutdown::Write);
        return false;
    }
    let close = !head.keep_alive();
    let ctx = Ctx {
        stream,
        shared,
        close,
    };
    let n = streamed.unwrap_or(0);
    let keep = match (route, &record) {
        (Route::Chat, Some(record)) => routes::chat(&ctx, n, record, routes::Api::Chat),
        (Route::Responses, Some(record)) => routes::chat(&ctx, n, record, routes::Api::Responses),
        (Route::Replay, _) => routes::replay(&ctx, n, head),
        (Route::StopReplay, _) => routes::stop_replay(&ctx, head),
        (Route::Lookup, _) => routes::lookup_sessions(&ctx, head, &lookup_body),
        (Route::Feed, _) => routes::feed(&ctx, n, head),
        (Route::Models, _) => {
            let list = json!({"object": "list", "data": [{"id": shared.replies.model(),
                "object": "model", "created": 1_700_000_000, "owned_by": "oai-sse-mock"}]});
            let mut w = Wire::new(stream, &shared.stop, &shared.replies.headers);
            let sent = w.reply(200, JSON, &[], list.to_string().as_bytes(), close);
            sent.is_ok() && !close
        }
        _ => {
            let mut w = Wire::new(stream, &shared.stop, &shared.replies.headers);
            let sent = routes::unknown_route(&mut w, 404, head, close);
            sent.is_ok() && !close
        }
    };
    let close_after = shared
        .replies
        .faults
        .iter()
        .any(|r| matches!(r.fault, Fault::CloseAfterResponse) && r.applies_to(number));
    if keep && close_after {
        let _ = stream.shutdown(Shutdown::Write);
        return false;
    }
    keep
}
