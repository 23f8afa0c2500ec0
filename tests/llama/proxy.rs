//! A loopback TCP proxy that breaks chosen responses: it forwards bytes both ways between
//! a client and an upstream HTTP/1.1 server, frames every request and response on each
//! keep-alive connection (so it can count requests by method and path and knows where each
//! response starts), and cuts the response to the k-th request matching a [`Fault`] with a
//! FIN or an RST at a byte offset of that response or right after its head. When it cuts,
//! it closes both sides the same way, so the server sees its client go away too.
//!
//! Two threads per connection (client→upstream, upstream→client) plus one acceptor; every
//! socket has a timeout, and dropping the proxy shuts the sockets still open and joins every
//! thread.

use super::http::{Framer, Head, Piece};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// Default bound on each socket read and write, generous for a slow server.
pub const IO_TIMEOUT: Duration = Duration::from_secs(180);
/// The acceptor gives up after this long without a new connection.
pub const ACCEPT_IDLE: Duration = Duration::from_secs(600);
/// Most body bytes kept per recorded request.
pub const MAX_RECORDED_BODY: usize = 1 << 20;

/// How a cut closes the two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// An orderly close (FIN).
    Fin,
    /// An abortive close (RST, through SO_LINGER 0).
    Rst,
}

/// Where in the response a cut falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutAt {
    /// After this many raw bytes of the response (status line, headers, chunk framing and
    /// body all count; 0 = before its first byte).
    Byte(usize),
    /// Right after the head, before the first body byte.
    AfterHead,
    /// Right after this many de-chunked body bytes (what the replay route's `from` counts),
    /// before any framing that follows them; `BodyByte(0)` is [`AfterHead`](Self::AfterHead).
    BodyByte(usize),
}

/// Which response to break, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Request method to match (`POST`).
    pub method: String,
    /// Request path to match, without the query (`/v1/chat/completions`).
    pub path: String,
    /// Break the response to the `nth` matching request (1-based, counted over all
    /// connections from when the fault is added).
    pub nth: usize,
    pub at: CutAt,
    pub cut: Cut,
}

impl Fault {
    /// Cuts the response to the first `method path` request with a FIN right after its head.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            nth: 1,
            at: CutAt::AfterHead,
            cut: Cut::Fin,
        }
    }

    pub fn nth(mut self, nth: usize) -> Self {
        self.nth = nth;
        self
    }

    pub fn at(mut self, at: CutAt) -> Self {
        self.at = at;
        self
    }

    pub fn cut(mut self, cut: Cut) -> Self {
        self.cut = cut;
        self
    }

    fn matches(&self, head: &Head) -> bool {
        head.method().eq_ignore_ascii_case(&self.method) && head.path() == self.path
    }
}

/// A request the proxy forwarded.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Position among all requests through this proxy (from 0).
    pub seq: usize,
    /// The client connection it came on (from 0, in accept order).
    pub conn: usize,
    pub head: Head,
    /// The de-chunked body (at most [`MAX_RECORDED_BODY`] bytes).
    pub body: Vec<u8>,
}

/// What happened to a response a fault was aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The proxy cut it.
    Cut,
    /// It ended (or the upstream closed) before the cut point.
    EndedFirst,
}

/// One fault that met its request.
#[derive(Debug, Clone)]
pub struct CutRecord {
    /// [`RequestRecord::seq`] of the request whose response this was.
    pub request: usize,
    pub fault: Fault,
    pub outcome: Outcome,
    /// Raw response bytes forwarded to the client before the cut.
    pub raw_bytes: usize,
    /// Length of the response head, if all of it was forwarded.
    pub head_len: Option<usize>,
    /// De-chunked body bytes forwarded to the client before the cut.
    pub body_bytes: usize,
}

struct Armed {
    fault: Fault,
    seen: usize,
}

/// What the upstream→client side needs to know about the next response.
struct Plan {
    seq: usize,
    head_request: bool,
    fault: Option<Fault>,
}

struct Shared {
    upstream: SocketAddr,
    io_timeout: Duration,
    stop: AtomicBool,
    next_conn: AtomicUsize,
    faults: Mutex<Vec<Armed>>,
    requests: Mutex<Vec<RequestRecord>>,
    cuts: Mutex<Vec<CutRecord>>,
    errors: Mutex<Vec<String>>,
    sockets: Mutex<Vec<Weak<TcpStream>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// Locks, ignoring poison: a panicking test thread must not hide the proxy's records.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn error(&self, message: String) {
        lock(&self.errors).push(message);
    }
}

/// The proxy; see the module docs. Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free 127.0.0.1 port in front of `upstream`, with no faults.
    pub fn start(upstream: SocketAddr) -> Self {
        Self::with_timeout(upstream, IO_TIMEOUT)
    }

    /// Like [`start`](Self::start), bounding every socket read and write by `io_timeout`.
    pub fn with_timeout(upstream: SocketAddr, io_timeout: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        // SO_RCVTIMEO bounds a blocking accept on Linux; Drop wakes it sooner.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(ACCEPT_IDLE))
            .expect("accept timeout");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            io_timeout,
            stop: AtomicBool::new(false),
            next_conn: AtomicUsize::new(0),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            cuts: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
            workers: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Arms `fault`; it counts matching requests from now on and fires once.
    pub fn add_fault(&self, fault: Fault) {
        assert!(fault.nth >= 1, "Fault::nth counts from 1");
        lock(&self.shared.faults).push(Armed { fault, seen: 0 });
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port/v1`, for a client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request forwarded so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// How many `method path` requests were forwarded (path without the query).
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.head.method().eq_ignore_ascii_case(method) && r.head.path() == path)
            .count()
    }

    /// The faults that met their request, in order.
    pub fn cuts(&self) -> Vec<CutRecord> {
        lock(&self.shared.cuts).clone()
    }

    /// Connection and framing problems seen (an upstream that refused, bytes that are not
    /// HTTP/1.1). Tests assert this is empty.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; it sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for socket in lock(&self.shared.sockets).drain(..) {
            if let Some(socket) = socket.upgrade() {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while let Ok((client, _)) = listener.accept() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let conn = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        let upstream = match TcpStream::connect_timeout(&shared.upstream, shared.io_timeout) {
            Ok(s) => s,
            Err(e) => {
                shared.error(format!("conn {conn}: connect to {}: {e}", shared.upstream));
                continue;
            }
        };
        let mut setup = Ok(());
        for s in [&client, &upstream] {
            setup = setup
                .and_then(|()| s.set_read_timeout(Some(shared.io_timeout)))
                .and_then(|()| s.set_write_timeout(Some(shared.io_timeout)))
                .and_then(|()| s.set_nodelay(true));
        }
        if let Err(e) = setup {
            shared.error(format!("conn {conn}: socket setup: {e}"));
            continue;
        }
        let link = Arc::new(Link {
            conn,
            client: Arc::new(client),
            upstream: Arc::new(upstream),
            plans: Mutex::new(VecDeque::new()),
            cut: AtomicBool::new(false),
        });
        {
            let mut sockets = lock(&shared.sockets);
            sockets.retain(|w| w.strong_count() > 0);
            sockets.push(Arc::downgrade(&link.client));
            sockets.push(Arc::downgrade(&link.upstream));
        }
        let up = {
            let (link, shared) = (Arc::clone(&link), Arc::clone(shared));
            std::thread::spawn(move || client_to_upstream(&link, &shared))
        };
        let down = {
            let shared = Arc::clone(shared);
            std::thread::spawn(move || upstream_to_client(link, &shared))
        };
        let mut workers = lock(&shared.workers);
        workers.retain(|w| !w.is_finished());
        workers.push(up);
        workers.push(down);
    }
}

/// One proxied connection, shared by its two threads.
struct Link {
    conn: usize,
    client: Arc<TcpStream>,
    upstream: Arc<TcpStream>,
    /// One entry per request forwarded and not yet answered, oldest first.
    plans: Mutex<VecDeque<Plan>>,
    /// Set when a fault cut this connection: the other thread must not close it politely.
    cut: AtomicBool,
}

/// Reads requests from the client, records them, queues their plans and forwards them.
fn client_to_upstream(link: &Link, shared: &Shared) {
    let mut buf = vec![0u8; 64 << 10];
    let mut framer = Some(Framer::request());
    let mut current: Option<usize> = None; // index into shared.requests
    loop {
        let n = match (&*link.client).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut pos = 0;
        while let Some(f) = framer.as_mut() {
            if f.is_done() {
                if pos == n {
                    break;
                }
                *f = Framer::request();
            }
            match f.feed(&buf[pos..n]) {
                Ok((used, piece)) => {
                    pos += used;
                    match piece {
                        Some(Piece::Head(head)) => {
                            current = Some(start_request(link, shared, head))
                        }
                        Some(Piece::Body(b)) => {
                            if let Some(i) = current {
                                let mut requests = lock(&shared.requests);
                                let body = &mut requests[i].body;
                                let room = MAX_RECORDED_BODY.saturating_sub(body.len());
                                body.extend_from_slice(&b[..b.len().min(room)]);
                            }
                        }
                        Some(Piece::End) => current = None,
                        None if used == 0 => break,
                        None => {}
                    }
                }
                Err(e) => {
                    shared.error(format!("conn {}: request framing: {e}", link.conn));
                    framer = None; // forward the rest untracked
                }
            }
        }
        if (&*link.upstream).write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !link.cut.load(Ordering::SeqCst) {
        // The client finished sending: pass the half-close on; responses still flow back.
        let _ = link.upstream.shutdown(Shutdown::Write);
    }
}

/// Records a request and queues what its response needs, before the request is forwarded.
fn start_request(link: &Link, shared: &Shared, head: Head) -> usize {
    let mut requests = lock(&shared.requests);
    let seq = requests.len();
    let mut fault = None;
    for armed in lock(&shared.faults).iter_mut() {
        if armed.seen < armed.fault.nth && armed.fault.matches(&head) {
            armed.seen += 1;
            if armed.seen == armed.fault.nth && fault.is_none() {
                fault = Some(armed.fault.clone());
            }
        }
    }
    lock(&link.plans).push_back(Plan {
        seq,
        head_request: head.method().eq_ignore_ascii_case("HEAD"),
        fault,
    });
    requests.push(RequestRecord {
        seq,
        conn: link.conn,
        head,
        body: Vec::new(),
    });
    seq
}

/// The response being forwarded on a connection.
struct Response {
    plan: Plan,
    framer: Framer,
    raw: usize,
    head_len: Option<usize>,
    body: usize,
}

impl Response {
    fn record(&self, shared: &Shared, outcome: Outcome) {
        if let Some(fault) = &self.plan.fault {
            lock(&shared.cuts).push(CutRecord {
                request: self.plan.seq,
                fault: fault.clone(),
                outcome,
                raw_bytes: self.raw,
                head_len: self.head_len,
                body_bytes: self.body,
            });
        }
    }

    /// Bytes that may be fed to the framer before the cut point. For a body offset this
    /// also bounds the framing bytes fed, which only makes the steps smaller: the framer
    /// cannot hand out more body bytes than it was fed.
    fn room(&self) -> usize {
        match self.plan.fault.as_ref().map(|f| f.at) {
            Some(CutAt::Byte(k)) => k.saturating_sub(self.raw),
            Some(CutAt::BodyByte(n)) if self.head_len.is_some() => n.saturating_sub(self.body),
            _ => usize::MAX,
        }
    }

    fn cut_due(&self) -> bool {
        match self.plan.fault.as_ref().map(|f| f.at) {
            Some(CutAt::Byte(k)) => self.raw >= k,
            Some(CutAt::AfterHead) => self.head_len.is_some(),
            Some(CutAt::BodyByte(n)) => self.head_len.is_some() && self.body >= n,
            None => false,
        }
    }
}

/// Forwards responses to the client, framing each one so a fault can cut it at its offset.
fn upstream_to_client(link: Arc<Link>, shared: &Shared) {
    let mut buf = vec![0u8; 64 << 10];
    let mut response: Option<Response> = None;
    let mut tracking = true;
    loop {
        let n = match (&*link.upstream).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut pos = 0;
        let mut cut = None;
        while tracking {
            if response.is_none() {
                if pos == n {
                    break;
                }
                let plan = lock(&link.plans).pop_front().unwrap_or(Plan {
                    seq: usize::MAX,
                    head_request: false,
                    fault: None,
                });
                response = Some(Response {
                    framer: Framer::response(plan.head_request),
                    plan,
                    raw: 0,
                    head_len: None,
                    body: 0,
                });
            }
            let Some(r) = response.as_mut() else { break };
            if r.cut_due() {
                cut = r.plan.fault.as_ref().map(|f| f.cut);
                r.record(shared, Outcome::Cut);
                break;
            }
            let end = pos + (n - pos).min(r.room());
            match r.framer.feed(&buf[pos..end]) {
                Ok((used, piece)) => {
                    pos += used;
                    r.raw += used;
                    match piece {
                        Some(Piece::Head(h)) if h.status().is_some_and(|s| s < 200) => {
                            // An interim response: the real one for this request follows.
                            r.framer = Framer::response(r.plan.head_request);
                            r.raw = 0;
                        }
                        Some(Piece::Head(h)) => r.head_len = Some(h.len),
                        Some(Piece::Body(b)) => r.body += b.len(),
                        // A cut point at the very end still cuts (the connection, not
                        // the response).
                        Some(Piece::End) if r.cut_due() => {}
                        Some(Piece::End) => {
                            r.record(shared, Outcome::EndedFirst);
                            response = None;
                        }
                        None if used == 0 && !r.cut_due() => break,
                        None => {}
                    }
                }
                Err(e) => {
                    shared.error(format!("conn {}: response framing: {e}", link.conn));
                    tracking = false;
                    pos = n;
                }
            }
        }
        if !tracking {
            pos = n;
        }
        if (&*link.client).write_all(&buf[..pos]).is_err() {
            break;
        }
        if let Some(how) = cut {
            cut_link(&link, how);
            return;
        }
    }
    // A fault whose response was still open when the upstream closed never got to cut.
    if let Some(r) = &response {
        r.record(shared, Outcome::EndedFirst);
    }
    // The upstream is done: pass its close on.
    let _ = link.client.shutdown(Shutdown::Both);
    let _ = link.upstream.shutdown(Shutdown::Both);
}

/// Closes both connections of `link`: FIN now, or RST once both threads let go of the
/// sockets (SO_LINGER 0 makes the last close abortive).
fn cut_link(link: &Link, how: Cut) {
    link.cut.store(true, Ordering::SeqCst);
    match how {
        Cut::Fin => {
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.upstream.shutdown(Shutdown::Both);
        }
        Cut::Rst => {
            for s in [&*link.client, &*link.upstream] {
                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
            }
            // Wakes the other thread's blocking read without sending anything; it returns
            // and drops its handles, and the last close sends the RSTs.
            let _ = link.client.shutdown(Shutdown::Read);
        }
    }
}
