//! A real LiteLLM proxy (`litellm[proxy]==1.106.12`, installed by tests/llama/build-gateway.sh
//! into target/litellm/) as a child process in front of an upstream: loopback only, a master
//! key, no database, the model cost map read from the package (no network). It runs under
//! the same watchdog as llama-server (see [`super::server`]), so a gateway kept in a
//! `static` stops when the test binary exits.

use super::http::{self, Exchange};
use super::server::{REQUEST_TIMEOUT, WATCHDOG};
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Set to `1` (CI) to make a missing LiteLLM fail the tests instead of skipping them.
pub const REQUIRE_ENV: &str = "OAI_SSE_REQUIRE_GATEWAY";
/// The `litellm` command to use instead of target/litellm/bin/litellm.
pub const LITELLM_ENV: &str = "OAI_SSE_LITELLM";
pub const DEFAULT_LITELLM: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/litellm/bin/litellm");
/// The key clients must send (`Authorization: Bearer …`).
pub const MASTER_KEY: &str = "sk-oai-sse-gateway-test";
/// The model name the gateway serves, routed to the upstream.
pub const MODEL: &str = "smollm2";
/// Importing LiteLLM takes seconds; a starved machine can take ten times as long.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(240);
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A running LiteLLM proxy. Dropping it stops the proxy.
pub struct Gateway {
    addr: SocketAddr,
    log_path: PathBuf,
    startup: Duration,
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
}

/// The `litellm` command, `None` when it is not installed (and not required).
pub fn locate() -> Option<PathBuf> {
    let path = match std::env::var_os(LITELLM_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_LITELLM),
    };
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1"),
        "{REQUIRE_ENV}=1 but LiteLLM is not installed at {}; run tests/llama/build-gateway.sh",
        path.display()
    );
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: LiteLLM not installed; run tests/llama/build-gateway.sh"
    );
    None
}

impl Gateway {
    /// Starts LiteLLM routing [`MODEL`] to the OpenAI-compatible server at `upstream`, and
    /// waits until `/health/liveliness` answers 200.
    ///
    /// # Errors
    ///
    /// The reason, with the tail of the proxy's log.
    pub fn start(litellm: &PathBuf, upstream: SocketAddr) -> Result<Self, String> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let tag = format!("{}-{}", std::process::id(), upstream.port());
        let config = dir.join(format!("litellm-{tag}.yaml"));
        let log_path = dir.join(format!("litellm-{tag}.log"));
        std::fs::write(
            &config,
            format!(
                "model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      \
                 model: openai/{MODEL}\n      api_base: http://{upstream}/v1\n      \
                 api_key: none\ngeneral_settings:\n  master_key: {MASTER_KEY}\n"
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        // A free port: LiteLLM cannot be told to pick one and report it.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let began = Instant::now();
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("litellm-watchdog")
            .arg(litellm)
            .arg("--config")
            .arg(&config)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env_remove("DATABASE_URL")
            .env("NO_PROXY", "*")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", litellm.display()))?;
        let mut gateway = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_path,
            startup: Duration::ZERO,
            stdin: Mutex::new(None),
            child: Mutex::new(child),
        };
        *lock(&gateway.stdin) = lock(&gateway.child).stdin.take();
        loop {
            if let Ok(Some(status)) = lock(&gateway.child).try_wait() {
                return Err(gateway.failure(&format!("LiteLLM exited during start-up: {status}")));
            }
            let health = gateway.call("GET", "/health/liveliness", &[], b"");
            if health.status() == Some(200) {
                break;
            }
            if began.elapsed() > STARTUP_TIMEOUT {
                return Err(gateway.failure(&format!("not ready within {STARTUP_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        gateway.startup = began.elapsed();
        Ok(gateway)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From spawning to a 200 from `/health/liveliness`.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A request straight to the gateway, bounded by [`REQUEST_TIMEOUT`].
    pub fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Exchange {
        http::call(self.addr, method, target, headers, body, REQUEST_TIMEOUT)
    }

    /// `what` with the tail of the proxy's log.
    pub fn failure(&self, what: &str) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "{what}\n--- last lines of {} ---\n{}",
            self.log_path.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        drop(lock(&self.stdin).take());
        let deadline = Instant::now() + STOP_GRACE;
        let mut child = lock(&self.child);
        while Instant::now() < deadline {
            if child.try_wait().is_ok_and(|s| s.is_some()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
