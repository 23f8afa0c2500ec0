//! Many short calls on one client: what a call costs once the client is warm. Each client
//! makes [`CALLS`] streamed chat calls, one after the other, against its own loopback
//! keep-alive server (`MockServer`, in this process), over plain HTTP and over TLS (the
//! TLS proxy of tests/common/tls.rs in front of the mock, with a CA made for the run):
//!
//! - oai-sse: one `Client`, `client.chat(&request)`;
//! - plain ureq: one shared `Agent`, the same POST (the body oai-sse sent, and the
//!   `X-Conversation-Id` header it sends, so the server does the same work), the SSE body
//!   parsed simply (lines,
//!   `data:` JSON, the content deltas joined) — the floor of a blocking Rust client;
//! - the official Python SDK: one `OpenAI` client (its httpx pool), in a child process.
//!
//! Per-call time is the median of the calls' wall times. The Rust clients run in rounds of
//! [`ROUND`] calls, alternating, so load from elsewhere on the machine hits both alike.
//! Threads created per call are counted exactly for the in-process clients: this binary
//! interposes `pthread_create` ([`spawns`]) and counts the threads the calling thread
//! creates while it makes calls. For Python, the child counts its OS threads
//! (`/proc/self/task`) after every call and reports the most beyond its count before the
//! calls. Connections are counted by the mock server, handshakes by the TLS proxy, both
//! over the warm-up and the measured calls.

#[path = "../../common/tls.rs"]
mod tls;

use oai_sse::mock::{MockServer, Script};
use oai_sse::{ChatRequest, Client, Message, ProxyConfig};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CALLS: usize = 1000;
const WARM_UP: usize = 20;
const ROUND: usize = 100;
const REPLY: &str = "Hello there, how are you today?";

/// Counts the threads created by threads that asked to be watched.
pub mod spawns {
    use std::cell::Cell;
    use std::ffi::{c_int, c_void};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    thread_local! {
        static WATCHED: Cell<bool> = const { Cell::new(false) };
    }
    static CREATED: AtomicU64 = AtomicU64::new(0);

    type Start = extern "C" fn(*mut c_void) -> *mut c_void;
    type Create = unsafe extern "C" fn(
        *mut libc::pthread_t,
        *const libc::pthread_attr_t,
        Start,
        *mut c_void,
    ) -> c_int;

    /// Every thread this process starts goes through here (std calls `pthread_create`; a
    /// definition in the executable comes before libc's), then on to libc's.
    ///
    /// # Safety
    ///
    /// As libc's `pthread_create`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn pthread_create(
        thread: *mut libc::pthread_t,
        attr: *const libc::pthread_attr_t,
        start: Start,
        arg: *mut c_void,
    ) -> c_int {
        if WATCHED.with(Cell::get) {
            CREATED.fetch_add(1, Ordering::SeqCst);
        }
        static REAL: OnceLock<usize> = OnceLock::new();
        let real = *REAL.get_or_init(|| {
            // SAFETY: a symbol lookup with a NUL-terminated name.
            unsafe { libc::dlsym(libc::RTLD_NEXT, c"pthread_create".as_ptr()) as usize }
        });
        if real == 0 {
            return libc::EAGAIN;
        }
        // SAFETY: `real` is libc's pthread_create, whose signature this is.
        let real: Create = unsafe { std::mem::transmute::<usize, Create>(real) };
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { real(thread, attr, start, arg) }
    }

    /// Threads created by watched threads so far.
    pub fn created() -> u64 {
        CREATED.load(Ordering::SeqCst)
    }

    /// Runs `f` with this thread watched.
    pub fn watching<T>(f: impl FnOnce() -> T) -> T {
        WATCHED.with(|w| w.set(true));
        let out = f();
        WATCHED.with(|w| w.set(false));
        out
    }

    /// Whether the count works: a watched spawn is counted.
    pub fn works() -> bool {
        let before = created();
        watching(|| std::thread::spawn(|| ()).join().is_ok()) && created() == before + 1
    }
}

/// One client's numbers for one scheme.
pub struct Measured {
    pub client: String,
    pub scheme: &'static str,
    pub per_call: Duration,
    /// Threads created per measured call (`None`: not counted).
    pub threads_per_call: Option<f64>,
    /// For Python: the most OS threads beyond the count before the calls.
    pub extra_threads: Option<i64>,
    pub connections: u64,
    pub handshakes: Option<u64>,
    pub calls: usize,
}

/// A server for one client: the mock, and the TLS proxy in front of it for `https`.
struct Server {
    mock: MockServer,
    proxy: Option<tls::TlsProxy>,
}

impl Server {
    fn start(ca: Option<&tls::TestCa>) -> Result<Self, String> {
        let mock = MockServer::start(Script::new().text(REPLY)).map_err(|e| e.to_string())?;
        let proxy = ca.map(|ca| tls::TlsProxy::start(ca, mock.addr()));
        Ok(Self { mock, proxy })
    }

    fn base_url(&self) -> String {
        match &self.proxy {
            Some(p) => p.base_url(),
            None => self.mock.base_url(),
        }
    }
}

/// A client under test: makes one call and returns the reply's text.
trait Caller {
    fn call(&mut self) -> Result<String, String>;
}

struct OaiSse {
    client: Client,
    request: ChatRequest,
}

impl Caller for OaiSse {
    fn call(&mut self) -> Result<String, String> {
        self.client
            .chat(&self.request)
            .map(|r| r.content().to_owned())
            .map_err(|e| e.to_string())
    }
}

struct PlainUreq {
    agent: ureq::Agent,
    url: String,
    body: String,
    calls: u64,
}

impl Caller for PlainUreq {
    /// The POST, then the body line by line: each `data:` line but `[DONE]` is a chunk whose
    /// content delta is appended. Reading to the end of the body returns the connection to
    /// ureq's pool.
    fn call(&mut self) -> Result<String, String> {
        self.calls += 1;
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            // As oai-sse sends (resume is on by default): the mock then keeps the reply for
            // replay, as llama.cpp does, so the server does the same work for both.
            .header("x-conversation-id", format!("bench-{}", self.calls))
            .send(self.body.as_str())
            .map_err(|e| e.to_string())?;
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        let mut text = String::new();
        for line in reader.lines() {
            let line = line.map_err(|e| e.to_string())?;
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                continue;
            }
            let chunk: serde_json::Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
            if let Some(s) = chunk
                .pointer("/choices/0/delta/content")
                .and_then(serde_json::Value::as_str)
            {
                text.push_str(s);
            }
        }
        Ok(text)
    }
}

fn oai_sse(url: &str, ca: Option<&tls::TestCa>) -> Result<OaiSse, String> {
    let mut builder = Client::builder()
        .base_url(url)
        .proxy(ProxyConfig::None)
        .roots_from_env(false);
    if let Some(ca) = ca {
        builder = builder.root_certificate_pem(ca.ca_pem.clone());
    }
    Ok(OaiSse {
        client: builder.build().map_err(|e| e.to_string())?,
        request: ChatRequest::new("mock-model", vec![Message::user("hi")]),
    })
}

/// `body`: the exact JSON oai-sse sent (so the server answers both alike, e.g. with the usage
/// chunk oai-sse asks for by default), or a plain streaming request without it.
fn plain_ureq(
    url: &str,
    ca: Option<&tls::TestCa>,
    body: Option<Vec<u8>>,
) -> Result<PlainUreq, String> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, parse_pem};
    let mut config = ureq::Agent::config_builder().proxy(None);
    if let Some(ca) = ca {
        let certs: Vec<_> = parse_pem(ca.ca_pem.as_bytes())
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        config = config.tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    let body = match body {
        Some(body) => String::from_utf8(body).map_err(|e| e.to_string())?,
        None => serde_json::json!({
            "model": "mock-model",
            "stream": true,
            "messages": [{"role": "user", "content": "hi"}],
        })
        .to_string(),
    };
    Ok(PlainUreq {
        agent: config.build().new_agent(),
        url: format!("{url}/chat/completions"),
        body,
        calls: 0,
    })
}

/// Runs the Rust clients side by side for one scheme.
fn rust_clients(
    scheme: &'static str,
    ca: Option<&tls::TestCa>,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<Measured>, String> {
    let servers = [Server::start(ca)?, Server::start(ca)?];
    let mut callers: Vec<(&'static str, Box<dyn Caller>)> = Vec::new();
    if keep("oai-sse") {
        let mut ours = oai_sse(&servers[0].base_url(), ca)?;
        ours.call().map_err(|e| format!("oai-sse: {e}"))?;
        callers.push(("oai-sse", Box::new(ours)));
    }
    if keep("ureq") {
        let sent = servers[0].mock.chat_requests().pop().map(|r| r.body);
        let ureq = plain_ureq(&servers[1].base_url(), ca, sent)?;
        callers.push(("ureq (one Agent)", Box::new(ureq)));
    }
    let servers: Vec<&Server> = servers
        .iter()
        .zip(["oai-sse", "ureq"])
        .filter(|(_, name)| keep(name))
        .map(|(s, _)| s)
        .collect();
    for (name, caller) in &mut callers {
        for _ in 0..WARM_UP {
            let text = caller.call().map_err(|e| format!("{name}: {e}"))?;
            if text != REPLY {
                return Err(format!("{name} returned {text:?}, expected {REPLY:?}"));
            }
        }
    }
    let counting = spawns::works();
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(CALLS); callers.len()];
    let mut threads = vec![0u64; callers.len()];
    for _ in 0..CALLS / ROUND {
        for (i, (name, caller)) in callers.iter_mut().enumerate() {
            let before = spawns::created();
            spawns::watching(|| {
                for _ in 0..ROUND {
                    let start = Instant::now();
                    let text = caller.call().map_err(|e| format!("{name}: {e}"))?;
                    times[i].push(start.elapsed());
                    if text.len() != REPLY.len() {
                        return Err(format!("{name} returned {text:?}"));
                    }
                }
                Ok::<(), String>(())
            })?;
            threads[i] += spawns::created() - before;
        }
    }
    Ok(callers
        .iter()
        .zip(&servers)
        .enumerate()
        .map(|(i, ((name, _), server))| Measured {
            client: (*name).to_owned(),
            scheme,
            per_call: median(&mut times[i]),
            threads_per_call: counting.then(|| threads[i] as f64 / CALLS as f64),
            extra_threads: None,
            connections: server.mock.connection_count(),
            handshakes: server.proxy.as_ref().map(tls::TlsProxy::handshakes),
            calls: CALLS,
        })
        .collect())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The Python SDK making the calls in a child process.
fn python_client(
    python: &Path,
    scheme: &'static str,
    ca: Option<&tls::TestCa>,
    ca_file: Option<&Path>,
) -> Result<Measured, String> {
    let server = Server::start(ca)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/calls_openai.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(server.base_url())
        .arg(CALLS.to_string())
        .arg(WARM_UP.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    if let Some(file) = ca_file {
        command.arg(file);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot start python: {e}"))?;
    if !out.status.success() {
        return Err(format!("python failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [median_us, extra, length, version] = fields[..] else {
        return Err(format!("python printed {text:?}"));
    };
    if length.parse::<usize>().ok() != Some(REPLY.len()) {
        return Err(format!(
            "python's reply had {length} bytes, expected {}",
            REPLY.len()
        ));
    }
    let median_us: f64 = median_us
        .parse()
        .map_err(|_| format!("python printed {text:?}"))?;
    Ok(Measured {
        client: format!("openai {version} (Python SDK)"),
        scheme,
        per_call: Duration::from_secs_f64(median_us / 1e6),
        threads_per_call: None,
        extra_threads: extra.parse().ok(),
        connections: server.mock.connection_count(),
        handshakes: server.proxy.as_ref().map(tls::TlsProxy::handshakes),
        calls: CALLS,
    })
}

/// Every client (those whose names `keep` accepts), plain and TLS. Python is skipped (with
/// the reason) when its SDK cannot be set up.
pub fn run(
    python: impl FnOnce() -> Result<std::path::PathBuf, String>,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<Result<Measured, String>> {
    let python = if keep("python") {
        python()
    } else {
        Err("not selected".into())
    };
    let ca = tls::TestCa::new(&[]);
    let ca_file = std::env::temp_dir().join(format!("oai-sse-bench-ca-{}.pem", std::process::id()));
    let ca_file = std::fs::write(&ca_file, &ca.ca_pem).ok().map(|()| ca_file);
    let mut out = Vec::new();
    for (scheme, ca) in [("http", None), ("https", Some(&ca))] {
        eprintln!("calls: {scheme}: oai-sse and ureq");
        match rust_clients(scheme, ca, keep) {
            Ok(measured) => out.extend(measured.into_iter().map(Ok)),
            Err(e) => out.push(Err(format!("{scheme}: {e}"))),
        }
        eprintln!("calls: {scheme}: Python SDK");
        out.push(match &python {
            Ok(python) => python_client(python, scheme, ca, ca_file.as_deref()),
            Err(e) => Err(format!("{scheme}: Python SDK skipped: {e}")),
        });
    }
    if let Some(file) = ca_file {
        let _ = std::fs::remove_file(file);
    }
    out
}
