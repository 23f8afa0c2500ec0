//! A real llama.cpp `llama-server` as a child process: found in target/llama/ (built by
//! tests/llama/build-server.sh) or through `OAI_SSE_LLAMA_SERVER` / `OAI_SSE_LLAMA_MODEL`,
//! started on a free loopback port, read through `/metrics`, and stopped with no process
//! left behind.
//!
//! The server runs under a small `sh` watchdog in its own process group. The watchdog reads
//! its stdin, a pipe only this process holds: when the pipe closes (the [`LlamaServer`] is
//! dropped, or the test binary exits, panics or is killed) it sends the server SIGTERM. That
//! is what lets one server live in a `static` for a whole test binary, where no destructor
//! runs. Drop also escalates to SIGKILL of the group if the server does not stop in time.

use super::http::{self, Exchange};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Set to `1` (CI) to make a missing llama-server fail the tests instead of skipping them.
pub const REQUIRE_ENV: &str = "OAI_SSE_REQUIRE_LLAMA";
/// The llama-server binary to use instead of target/llama/llama-server.
pub const SERVER_ENV: &str = "OAI_SSE_LLAMA_SERVER";
/// The GGUF model to use instead of target/llama/SmolLM2-135M-Instruct.Q4_1.gguf.
pub const MODEL_ENV: &str = "OAI_SSE_LLAMA_MODEL";

pub const DEFAULT_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/llama/llama-server");
pub const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/llama/SmolLM2-135M-Instruct.Q4_1.gguf"
);

/// Loading the model and binding the port; generous for a starved 2-core machine.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on every request the harness itself makes (/health, /metrics, raw calls).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long [`shared`] and tests wait for the server to finish what it is generating.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between two `/metrics` reads while waiting for idle.
const IDLE_POLL: Duration = Duration::from_millis(25);
/// How long a stopping server gets after SIGTERM before the group is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Lines of the server log shown in a failure message.
pub const LOG_TAIL_LINES: usize = 40;

/// Starts `"$@"` (the server) with its output on ours, and stops it with SIGTERM when our
/// stdin reaches EOF. Exits with the server's status once both children are reaped, so no
/// zombie is left for an init that may not reap. fd 3 keeps the pipe for the watcher,
/// because a background list in a non-interactive shell gets /dev/null as stdin.
pub const WATCHDOG: &str = r#"exec 2>&1 3<&0
"$@" </dev/null 3<&- &
server=$!
( while read -r _; do :; done; kill -TERM "$server" 2>/dev/null ) <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
wait "$watcher"
exit "$status"
"#;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: PathBuf,
    pub model: PathBuf,
    /// `--parallel`: generation slots.
    pub slots: u32,
    /// `--ctx-size`: tokens of context shared by the slots.
    pub ctx: u32,
    /// `--threads` and `--threads-batch`. Default 1: llama.cpp's threads spin while they
    /// wait for each other, so with 2 threads on a 2-core machine shared with a compiler a
    /// 40-token generation took anywhere from 0.9 s to 44 s; with 1 thread, 0.9 to 1.4 s.
    pub threads: u32,
    /// Arguments appended after the harness's own.
    pub extra_args: Vec<String>,
    pub startup_timeout: Duration,
}

impl Config {
    /// The binary and model from the environment or target/llama/. `Ok(None)` when the
    /// defaults are missing (not built yet); an error when an env var names a missing file.
    pub fn locate() -> Result<Option<Self>, String> {
        let pick = |var: &str, default: &str| -> Result<Option<PathBuf>, String> {
            match std::env::var_os(var) {
                Some(path) if !path.is_empty() => {
                    let path = PathBuf::from(path);
                    if path.is_file() {
                        Ok(Some(path))
                    } else {
                        Err(format!("{var}={} is not a file", path.display()))
                    }
                }
                _ => Ok(Some(PathBuf::from(default)).filter(|p| p.is_file())),
            }
        };
        let (Some(server), Some(model)) = (
            pick(SERVER_ENV, DEFAULT_SERVER)?,
            pick(MODEL_ENV, DEFAULT_MODEL)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Self {
            server,
            model,
            slots: 1,
            ctx: 2048,
            threads: 1,
            extra_args: Vec::new(),
            startup_timeout: STARTUP_TIMEOUT,
        }))
    }

    /// The command line after the binary.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--model",
            &self.model.to_string_lossy(),
            "--host",
            "127.0.0.1",
            // The server picks a free port and logs it ("listening on http://...").
            "--port",
            "0",
            "--parallel",
            &self.slots.to_string(),
            "--ctx-size",
            &self.ctx.to_string(),
            "--threads",
            &self.threads.to_string(),
            "--threads-batch",
            &self.threads.to_string(),
            "--metrics",
            "--no-webui",
            // The warm-up decode only costs start-up time here.
            "--no-warmup",
            "--log-colors",
            "off",
            "--log-prefix",
            "--log-timestamps",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Whether CI asked for the real server (`OAI_SSE_REQUIRE_LLAMA=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// The skip line for a test that needs the server and finds none; panics instead under
/// [`REQUIRE_ENV`]. Written past libtest's output capture so it shows in a normal run.
pub fn skip_not_built() {
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    assert!(
        !required(),
        "{REQUIRE_ENV}=1 but llama-server is not built (looked for {DEFAULT_SERVER} and \
         {DEFAULT_MODEL}, or {SERVER_ENV} / {MODEL_ENV}); run tests/llama/build-server.sh"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: llama-server not built; run tests/llama/build-server.sh"
    );
}

enum LogEvent {
    Listening(SocketAddr),
    Closed,
}

/// A running llama-server; see the module docs. Dropping it stops the server.
pub struct LlamaServer {
    addr: SocketAddr,
    log_path: PathBuf,
    startup: Duration,
    args: Vec<String>,
    child: Mutex<Child>,
    /// Closing this pipe tells the watchdog to stop the server.
    stdin: Mutex<Option<ChildStdin>>,
    events: Mutex<Receiver<LogEvent>>,
    log_thread: Mutex<Option<JoinHandle<()>>>,
}

impl LlamaServer {
    /// Starts the server and waits until it listens with the model loaded and `/health`
    /// answers 200.
    ///
    /// # Errors
    ///
    /// The reason, with the tail of the server log, when it exits or does not get ready
    /// within `config.startup_timeout`.
    pub fn start(config: &Config) -> Result<Self, String> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("llama-server-{}-{n}.log", std::process::id()));
        let mut log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let args = config.args();
        let _ = writeln!(log, "# {} {}", config.server.display(), args.join(" "));
        let began = Instant::now();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("llama-watchdog")
            .arg(&config.server)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run sh for {}: {e}", config.server.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, events) = mpsc::channel();
        // Copies the server's output to the log file line by line and reports the port.
        let log_thread = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            let mut announced = false;
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let _ = log.write_all(&line);
                if !announced {
                    if let Some(addr) = listening_addr(&String::from_utf8_lossy(&line)) {
                        announced = true;
                        let _ = tx.send(LogEvent::Listening(addr));
                    }
                }
                line.clear();
            }
            let _ = log.flush();
            let _ = tx.send(LogEvent::Closed);
        });
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path,
            startup: Duration::ZERO,
            args,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            events: Mutex::new(events),
            log_thread: Mutex::new(Some(log_thread)),
        };
        let event = lock(&server.events).recv_timeout(config.startup_timeout);
        match event {
            Ok(LogEvent::Listening(addr)) => server.addr = addr,
            Ok(LogEvent::Closed) | Err(RecvTimeoutError::Disconnected) => {
                return Err(server.failure("llama-server exited during start-up"));
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(server.failure(&format!(
                    "llama-server did not listen within {:?}",
                    config.startup_timeout
                )));
            }
        }
        // It logs "listening on" only after loading the model; /health confirms readiness.
        let health = server.call("GET", "/health", &[], b"");
        if health.status() != Some(200) {
            return Err(server.failure(&format!(
                "/health answered {:?} {:?}",
                health.status(),
                health.text()
            )));
        }
        server.startup = began.elapsed();
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port/v1`, for a client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// From spawning to a 200 from `/health`.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The arguments the server was started with (after the binary).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The watchdog's process id, which is also the process group of the server.
    pub fn process_group(&self) -> u32 {
        lock(&self.child).id()
    }

    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A request on a new connection straight to the server (not through a proxy),
    /// bounded by [`REQUEST_TIMEOUT`].
    pub fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Exchange {
        http::call(self.addr, method, target, headers, body, REQUEST_TIMEOUT)
    }

    /// The replay buffer of conversation `id` as `POST /v1/streams/lookup` reports it, or
    /// `None` when there is none (never started, deleted, or expired 300 s after its end).
    /// Panics (with the log tail) on an unexpected answer.
    pub fn stream_session(&self, id: &str) -> Option<StreamSession> {
        let body = serde_json::json!({ "conversation_ids": [id] }).to_string();
        let answer = self.call(
            "POST",
            "/v1/streams/lookup",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let sessions: serde_json::Value = serde_json::from_slice(&answer.body)
            .ok()
            .filter(|_| answer.status() == Some(200))
            .unwrap_or_else(|| panic!("{}", self.failure(&format!("lookup: {answer:?}"))));
        let session = sessions
            .as_array()?
            .iter()
            .find(|s| s["conversation_id"] == id)?;
        Some(StreamSession {
            is_done: session["is_done"].as_bool().unwrap_or(false),
            total_bytes: session["total_bytes"].as_u64().unwrap_or(0),
        })
    }

    /// The server's `/metrics`. Panics (with the log tail) if it cannot be read.
    pub fn metrics(&self) -> Metrics {
        let response = self.call("GET", "/metrics", &[], b"");
        if response.status() != Some(200) || !response.complete {
            panic!(
                "{}",
                self.failure(&format!(
                    "/metrics: status {:?}, error {:?}",
                    response.status(),
                    response.error
                ))
            );
        }
        Metrics::parse(&response.text()).unwrap_or_else(|e| panic!("{}", self.failure(&e)))
    }

    /// Waits until no request is processing or deferred, and returns those metrics. Panics
    /// (with the last metrics and the log tail) after `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> Metrics {
        let start = Instant::now();
        loop {
            let metrics = self.metrics();
            if metrics.is_idle() {
                return metrics;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{}",
                    self.failure(&format!("not idle after {timeout:?}: {metrics:?}"))
                );
            }
            std::thread::sleep(IDLE_POLL);
        }
    }

    /// `what`, the log path and the log's tail, as one message.
    pub fn failure(&self, what: &str) -> String {
        format!(
            "{what}\n--- last lines of {} ---\n{}",
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        // EOF on the watchdog's stdin: it sends the server SIGTERM.
        drop(lock(&self.stdin).take());
        let deadline = Instant::now() + STOP_GRACE;
        let events = lock(&self.events);
        let closed = loop {
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(LogEvent::Listening(_)) => {}
                Ok(LogEvent::Closed) | Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };
        let mut child = lock(&self.child);
        if !closed {
            // The whole group: the watchdog, the server and the watcher.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.wait();
        if let Some(thread) = lock(&self.log_thread).take() {
            let _ = thread.join();
        }
    }
}

/// A conversation's replay buffer on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSession {
    /// The generation has ended (finished, failed, or stopped by DELETE).
    pub is_done: bool,
    /// Bytes of SSE body buffered so far (the end offset for `GET /v1/stream?from=`).
    pub total_bytes: u64,
}

/// `http://127.0.0.1:PORT` out of the server's "listening on ..." log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The server's Prometheus counters and gauges, by name without the `llamacpp:` prefix.
///
/// llama-server prints values with six significant digits (`1.23457e+06`), so counters are
/// exact below a million.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// # Errors
    ///
    /// A line that is not `name value` or `# comment`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("bad metrics line {line:?}"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("bad value in metrics line {line:?}"))?;
            let name = name.strip_prefix("llamacpp:").unwrap_or(name);
            values.insert(name.to_owned(), value);
        }
        Ok(Self(values))
    }

    /// A value by name (`tokens_predicted_total`); panics listing the names if it is absent.
    pub fn get(&self, name: &str) -> f64 {
        match self.0.get(name) {
            Some(v) => *v,
            None => panic!("no metric {name:?}; have {:?}", self.0.keys()),
        }
    }

    fn count(&self, name: &str) -> u64 {
        let v = self.get(name);
        assert!(v >= 0.0 && v.fract() == 0.0, "{name} = {v} is not a count");
        v as u64
    }

    /// Tokens generated, counted when each generation ends (also a cancelled one).
    pub fn tokens_predicted(&self) -> u64 {
        self.count("tokens_predicted_total")
    }

    /// Prompt tokens evaluated (cached ones excluded).
    pub fn prompt_tokens(&self) -> u64 {
        self.count("prompt_tokens_total")
    }

    /// Slots generating right now.
    pub fn requests_processing(&self) -> u64 {
        self.count("requests_processing")
    }

    /// Requests waiting for a free slot.
    pub fn requests_deferred(&self) -> u64 {
        self.count("requests_deferred")
    }

    pub fn is_idle(&self) -> bool {
        self.requests_processing() == 0 && self.requests_deferred() == 0
    }
}

/// Tests that use the shared server take turns: they compare server-wide counters.
static TURN: Mutex<()> = Mutex::new(());
static SHARED: OnceLock<Result<Option<LlamaServer>, String>> = OnceLock::new();

/// Waits for this test binary's turn at the llama server(s), so counters are not disturbed.
pub fn turn() -> MutexGuard<'static, ()> {
    lock(&TURN)
}

/// The shared server, idle, and this test's turn at it; released when dropped.
pub struct Shared {
    server: &'static LlamaServer,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Shared {
    type Target = LlamaServer;
    fn deref(&self) -> &LlamaServer {
        self.server
    }
}

/// One server per test binary, started on first use. `None` (after printing the skip line)
/// when llama-server is not built; panics when it is required, or fails to start.
pub fn shared() -> Option<Shared> {
    let turn = turn();
    let state = SHARED.get_or_init(|| match Config::locate() {
        Ok(Some(config)) => LlamaServer::start(&config).map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    });
    match state {
        Err(e) => panic!("llama-server: {e}"),
        Ok(None) => {
            skip_not_built();
            None
        }
        Ok(Some(server)) => {
            // A generation a previous test left running must not count in this one.
            server.wait_idle(IDLE_TIMEOUT);
            Some(Shared {
                server,
                _turn: turn,
            })
        }
    }
}
