//! A loopback stand-in for a gateway (LiteLLM and the like) that *re-frames* what it relays:
//! each event of a streamed chat answer is parsed and written again — its own key order, a
//! field added, its own completion id — several events per HTTP chunk, and the upstream's
//! `Server` header passed on as `llm_provider-server`, as LiteLLM does. Other routes (the
//! replay route a gateway may pass through) are relayed byte for byte. So the bytes the client
//! counts are the gateway's, while a replay through it serves the upstream's: the case where
//! a resume that trusted the offset would splice foreign bytes into the answer.
//!
//! It can cut its answer to the client once, after a number of body bytes (FIN or RST), and
//! forwards the headers a gateway set up to forward does (`X-Conversation-Id`).

use super::http::{self, Head};
use super::proxy::Cut;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bound on every socket read and write of the gateway.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Events written per HTTP chunk.
const EVENTS_PER_CHUNK: usize = 2;
/// Request headers passed on to the upstream.
const FORWARDED: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "x-conversation-id",
];

/// The gateway: a thread accepting on a loopback port, one request per connection.
pub struct Reframing {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    cut: Arc<Mutex<Option<(usize, Cut)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Reframing {
    /// A gateway in front of `upstream` (host:port of the server's API root `/v1`).
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, cut) = (Arc::clone(&stop), Arc::clone(&cut));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let cut = Arc::clone(&cut);
                            std::thread::spawn(move || relay(stream, upstream, &cut));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            cut,
            thread: Some(thread),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Cuts the next streamed chat answer after `body_bytes` of its (re-framed) body.
    pub fn cut_next(&self, body_bytes: usize, cut: Cut) {
        *self.cut.lock().unwrap() = Some((body_bytes, cut));
    }
}

impl Drop for Reframing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the client's request: head, then a `Content-Length` body.
fn read_request(stream: &mut TcpStream) -> Option<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = http::find(&buf, b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > http::MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = Head::parse(&buf[..end]).ok()?;
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some((head, body))
}

fn relay(mut client: TcpStream, upstream: SocketAddr, cut: &Mutex<Option<(usize, Cut)>>) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    let headers: Vec<(&str, &str)> = head
        .headers
        .iter()
        .filter(|(n, _)| FORWARDED.iter().any(|f| n.eq_ignore_ascii_case(f)))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let request = http::request_bytes(upstream, head.method(), head.target(), &headers, &body);
    let answer = http::exchange(upstream, &request, IO_TIMEOUT);
    let Some(answer_head) = &answer.head else {
        return;
    };
    let status = answer_head.start_line.clone();
    let server = answer_head.header("server").map(str::to_owned);
    let content_type = answer_head
        .header("content-type")
        .unwrap_or("application/json")
        .to_owned();
    let chat = head.path().ends_with("/chat/completions");
    let streamed = content_type.starts_with("text/event-stream");
    let body = if chat && streamed {
        reframe(&answer.body)
    } else {
        vec![answer.body.clone()]
    };
    let mut out = format!(
        "{status}\r\ncontent-type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    if let Some(server) = server {
        out.push_str(&format!("llm_provider-server: {server}\r\n"));
    }
    out.push_str("\r\n");
    if client.write_all(out.as_bytes()).is_err() {
        return;
    }
    let cut = (chat && streamed)
        .then(|| cut.lock().unwrap().take())
        .flatten();
    let mut sent = 0;
    for piece in body.iter().filter(|p| !p.is_empty()) {
        if let Some((at, how)) = cut {
            if sent + piece.len() > at {
                let keep = at - sent;
                let _ = client.write_all(format!("{keep:x}\r\n").as_bytes());
                let _ = client.write_all(&piece[..keep]);
                let _ = client.flush();
                if how == Cut::Rst {
                    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                } else {
                    let _ = client.shutdown(Shutdown::Write);
                }
                return;
            }
        }
        let framed = [
            format!("{:x}\r\n", piece.len()).into_bytes(),
            piece.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if client.write_all(&framed).is_err() {
            return;
        }
        sent += piece.len();
    }
    let _ = client.write_all(b"0\r\n\r\n");
    let _ = client.flush();
}

/// The upstream's event stream as this gateway writes it: each data line parsed and written
/// again (keys sorted, a field added, the gateway's own id), [`EVENTS_PER_CHUNK`] events per
/// piece.
fn reframe(body: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    let events: Vec<String> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .collect();
            let data = data.join("\n");
            let data = match serde_json::from_str::<Value>(&data) {
                Ok(Value::Object(mut object)) => {
                    if object.contains_key("id") {
                        object.insert("id".into(), Value::from("gw-reframed-1"));
                    }
                    object.insert("x_gateway".into(), Value::from("reframed"));
                    Value::Object(object).to_string()
                }
                _ => data,
            };
            format!("data: {data}\n\n")
        })
        .collect();
    events
        .chunks(EVENTS_PER_CHUNK)
        .map(|c| c.concat().into_bytes())
        .collect()
}
