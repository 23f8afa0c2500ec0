//! Hand-written loopback HTTP servers for byte-exact tests. Every socket has a timeout and
//! every loop a bound, so a broken client or server fails the test instead of hanging it.
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test server waits for its connections before giving up.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(20);

/// A server that hands each accepted connection (numbered from 0) and its request to `handle`.
pub struct RawServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Waits for the server thread (it ends after its connections or its lifetime).
    pub fn join(mut self) -> Vec<String> {
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
        self.requests.lock().unwrap().clone()
    }
}

/// Serves up to `connections` connections, one thread each.
pub fn serve<F>(connections: usize, handle: F) -> RawServer
where
    F: Fn(usize, &mut TcpStream, &str) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    serve_on(listener, connections, handle)
}

pub fn serve_on<F>(listener: TcpListener, connections: usize, handle: F) -> RawServer
where
    F: Fn(usize, &mut TcpStream, &str) + Send + Sync + 'static,
{
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let handle = Arc::new(handle);
    let thread = {
        let requests = Arc::clone(&requests);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut workers = Vec::new();
            let mut n = 0;
            while n < connections && start.elapsed() < SERVER_LIFETIME {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let index = n;
                        n += 1;
                        let handle = Arc::clone(&handle);
                        let requests = Arc::clone(&requests);
                        workers.push(std::thread::spawn(move || {
                            stream.set_nonblocking(false).expect("blocking");
                            bound_io(&stream);
                            let Some(request) = read_request(&mut stream) else {
                                return;
                            };
                            requests.lock().unwrap().push(request.clone());
                            handle(index, &mut stream, &request);
                        }));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        })
    };
    RawServer {
        addr,
        requests,
        thread: Some(thread),
    }
}

/// Reads one request (headers and a Content-Length body) as text.
pub fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&data, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&data[..end + 4 + len]).into_owned());
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        if data.len() > 16 << 20 {
            return None;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The JSON body of a request.
pub fn request_json(request: &str) -> serde_json::Value {
    let body = request.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).expect("request body is JSON")
}

/// A complete `text/event-stream` response with a Content-Length body.
pub fn sse_response(body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Response headers for a chunked event stream; send the body with [`chunk`].
pub const SSE_CHUNKED_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A response with any status, headers and body (Content-Length framing).
pub fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

/// A `chat.completion.chunk` event with the given choice JSON.
pub fn chunk_event(choices: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-t\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"test-model\",\"choices\":[{choices}]}}\n\n"
    )
}

/// A content delta for choice 0.
pub fn content(text: &str) -> String {
    chunk_event(&format!(
        "{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}",
        serde_json::to_string(text).unwrap()
    ))
}

/// The final chunk of choice 0.
pub fn finish(reason: &str) -> String {
    chunk_event(&format!(
        "{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{reason}\"}}"
    ))
}

pub const DONE: &str = "data: [DONE]\n\n";

/// Writes ignoring errors (the client may have gone already).
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// Makes closing `stream` send an RST instead of a FIN (SO_LINGER 0). The stream is closed
/// when the server drops it, which for [`serve`] and [`serve_sequential`] is right after the
/// handler returns.
pub fn reset_on_close(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Blocks until the client closes (or shuts) the connection, bounded by the stream's read
/// timeout: a server "stalling" this way ends as soon as the client gives up, without a sleep.
pub fn wait_for_close(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    for _ in 0..1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Lets a [`serve`] server that expected `unused` more connections finish (each dummy
/// connection sends no request, so it is not recorded), then joins it.
pub fn close_server(server: RawServer, unused: usize) -> Vec<String> {
    for _ in 0..unused {
        let _ = TcpStream::connect_timeout(&server.addr, Duration::from_secs(1));
    }
    server.join()
}

/// A server that accepts and handles connections one at a time on a single thread, in
/// order: cheap enough for sweeps that make thousands of connections. Stops when dropped
/// (or after [`SERVER_LIFETIME`] without a connection).
pub struct SeqServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Most connections a [`SeqServer`] accepts.
pub const SEQ_MAX_CONNECTIONS: usize = 100_000;

impl SeqServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Stops the server and returns every request it recorded.
    pub fn stop(mut self) -> Vec<String> {
        self.shut();
        self.requests.lock().unwrap().clone()
    }

    fn shut(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // Wakes the blocking accept; the server sees the flag and ends.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

impl Drop for SeqServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Serves connections one after the other with `handle(index, stream, request)`. `accept`
/// blocks with a timeout (SO_RCVTIMEO bounds accept on Linux) instead of polling.
pub fn serve_sequential<F>(mut handle: F) -> SeqServer
where
    F: FnMut(usize, &mut TcpStream, &str) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(SERVER_LIFETIME))
        .expect("accept timeout");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thread = {
        let requests = Arc::clone(&requests);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for index in 0..SEQ_MAX_CONNECTIONS {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                bound_io(&stream);
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                requests.lock().unwrap().push(request.clone());
                handle(index, &mut stream, &request);
            }
        })
    };
    SeqServer {
        addr,
        requests,
        stop,
        thread: Some(thread),
    }
}

/// `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), for `Retry-After` dates.
pub fn imf_fixdate(t: std::time::SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days + 4).rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A keep-alive server with byte control: each accepted connection (numbered from 0) gets a
/// thread that reads requests one after the other and answers each with
/// `handle(connection, request_on_connection, stream, request)`, which returns whether to keep
/// the connection open. Stops accepting when dropped; a connection ends when its client
/// closes it or after the stream's read timeout.
pub struct KeepAliveServer {
    pub addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeepAliveServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for KeepAliveServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

pub fn serve_keep_alive<F>(handle: F) -> KeepAliveServer
where
    F: Fn(usize, usize, &mut TcpStream, &str) -> bool + Send + Sync + 'static,
{
    use std::sync::atomic::Ordering::SeqCst;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(SERVER_LIFETIME))
        .expect("accept timeout");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handle = Arc::new(handle);
    let thread = {
        let (connections, stop) = (Arc::clone(&connections), Arc::clone(&stop));
        std::thread::spawn(move || {
            for _ in 0..SEQ_MAX_CONNECTIONS {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                if stop.load(SeqCst) {
                    return;
                }
                let index = connections.fetch_add(1, SeqCst);
                let handle = Arc::clone(&handle);
                std::thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    bound_io(&stream);
                    for n in 0..SEQ_MAX_CONNECTIONS {
                        let Some(request) = read_request(&mut stream) else {
                            return;
                        };
                        if !handle(index, n, &mut stream, &request) {
                            return;
                        }
                    }
                });
            }
        })
    };
    KeepAliveServer {
        addr,
        connections,
        stop,
        thread: Some(thread),
    }
}

/// Without the retry records and the attempts' timings, to compare a recovered response
/// with a clean one.
pub fn without_retries(response: &oai_sse::ChatResponse) -> oai_sse::ChatResponse {
    let mut response = response.clone();
    response.retries.clear();
    response.timings.attempts.clear();
    response
}

/// Ten-second read and write timeouts on a test server's connection, so a test that goes
/// wrong fails instead of hanging.
fn bound_io(stream: &std::net::TcpStream) {
    let limit = Some(Duration::from_secs(10));
    stream.set_read_timeout(limit).expect("read timeout");
    stream.set_write_timeout(limit).expect("write timeout");
}
