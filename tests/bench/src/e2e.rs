//! End to end over loopback: the mock server runs in this process (so the child's numbers are
//! the client's alone) and streams `"word"` 50,000 times as fast as the client reads; the
//! client is the `oai-sse chat --json` release binary or the official Python SDK, each run as
//! a child process whose CPU time and peak RSS come from `wait4`.

use oai_sse::mock::{MockServer, Script};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const LONG: usize = 50_000;
pub const SHORT: usize = 10_000;

/// What one child process cost.
#[derive(Clone, Copy)]
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

pub struct Client {
    pub name: &'static str,
    /// Median of the runs, at [`SHORT`] and [`LONG`] words.
    pub short: Usage,
    pub long: Usage,
    pub runs: usize,
}

impl Client {
    /// CPU per chunk over the whole run, start-up included.
    pub fn cpu_per_chunk(&self) -> Duration {
        self.long.cpu / LONG as u32
    }

    /// CPU per extra chunk, (cpu(50k) − cpu(10k)) / 40k: start-up cancels out.
    pub fn marginal_cpu_per_chunk(&self) -> Duration {
        self.long.cpu.saturating_sub(self.short.cpu) / (LONG - SHORT) as u32
    }
}

fn duration(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
}

/// The child's peak RSS so far: `VmHWM` of its (post-exec, so its own) address space.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `command`, collects its stdout, and reaps it with `wait4` for its own CPU times.
///
/// Peak RSS does not come from `ru_maxrss`: Linux carries the spawning process's RSS into
/// the child's `ru_maxrss` across `exec`, so it would report this benchmark's ~200 MiB for any
/// child. Instead a thread polls the child's `VmHWM` every millisecond until the child's
/// address space is gone; at most the last millisecond of growth (writing the output) is
/// missed.
fn run_child(command: &mut Command) -> Result<(String, Usage), String> {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let pid = child.id();
    let poller = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
            std::thread::sleep(Duration::from_millis(1));
        }
        peak
    });
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = pid as libc::pid_t;
    // SAFETY: `pid` is our unreaped child; both pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let peak_kib = poller.join().expect("poller thread");
    let wall = start.elapsed();
    // Reaped above: `wait` must not be called on it again, and dropping `Child` does not wait.
    drop(child);
    if reaped != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let out = reader
        .join()
        .expect("reader thread")
        .map_err(|e| e.to_string())?;
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{command:?} failed with status {status}"));
    }
    let usage = Usage {
        wall,
        cpu: duration(usage.ru_utime) + duration(usage.ru_stime),
        max_rss_kib: peak_kib,
    };
    Ok((out, usage))
}

fn median(mut runs: Vec<Usage>) -> Usage {
    runs.sort_by_key(|u| u.cpu);
    let mid = runs[runs.len() / 2];
    let mut rss: Vec<u64> = runs.iter().map(|u| u.max_rss_kib).collect();
    let mut wall: Vec<Duration> = runs.iter().map(|u| u.wall).collect();
    rss.sort();
    wall.sort();
    Usage {
        wall: wall[wall.len() / 2],
        cpu: mid.cpu,
        max_rss_kib: rss[rss.len() / 2],
    }
}

/// The reply text for `words` words: "word word ...".
fn expected_len(words: usize) -> usize {
    words * 5 - 1
}

fn oai_sse_once(binary: &Path, words: usize) -> Result<Usage, String> {
    let server = MockServer::start(Script::new().text("word").repeat(words))
        .map_err(|e| format!("mock server: {e}"))?;
    let (out, usage) = run_child(
        Command::new(binary)
            .args(["chat", "--json", "--quiet", "--max-retries", "0"])
            .args([
                "--base-url",
                &server.base_url(),
                "--model",
                "mock-model",
                "hi",
            ])
            .env_remove("RUST_LOG"),
    )?;
    let json: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("oai-sse output: {e}"))?;
    let content = json
        .pointer("/choices/0/message/content")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if content.len() != expected_len(words) {
        return Err(format!(
            "oai-sse returned {} bytes of content, expected {}",
            content.len(),
            expected_len(words)
        ));
    }
    Ok(usage)
}

fn python_once(python: &Path, words: usize) -> Result<Usage, String> {
    let server = MockServer::start(Script::new().text("word").repeat(words))
        .map_err(|e| format!("mock server: {e}"))?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/stream_openai.py");
    let (out, usage) = run_child(
        Command::new(python)
            .arg(script)
            .arg(server.base_url())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
    )?;
    // Role chunk + one chunk per word + the finish chunk; `[DONE]` is not a chunk.
    let want = format!("{} {}", words + 2, expected_len(words));
    if out.trim() != want {
        return Err(format!(
            "python printed {:?}, expected {want:?}",
            out.trim()
        ));
    }
    Ok(usage)
}

fn measure(
    name: &'static str,
    runs: usize,
    once: impl Fn(usize) -> Result<Usage, String>,
) -> Result<Client, String> {
    once(SHORT)?; // warm-up: page cache, Python's imports
    let mut short = Vec::new();
    let mut long = Vec::new();
    for _ in 0..runs {
        short.push(once(SHORT)?);
        long.push(once(LONG)?);
    }
    Ok(Client {
        name,
        short: median(short),
        long: median(long),
        runs,
    })
}

pub fn oai_sse(binary: &Path) -> Result<Client, String> {
    measure("oai-sse chat --json", 5, |words| {
        oai_sse_once(binary, words)
    })
}

/// This build and an older `oai-sse` binary (`--baseline=PATH`), their runs interleaved so
/// that load from elsewhere on the machine hits both alike: a regression check that does not
/// depend on the machine a recorded number came from.
pub fn oai_sse_against(binary: &Path, baseline: &Path) -> Result<(Client, Client), String> {
    let binaries = [binary, baseline];
    for b in binaries {
        oai_sse_once(b, SHORT)?; // warm-up
    }
    let runs = 5;
    let mut usages: [(Vec<Usage>, Vec<Usage>); 2] = Default::default();
    for _ in 0..runs {
        for (b, (short, long)) in binaries.iter().zip(&mut usages) {
            short.push(oai_sse_once(b, SHORT)?);
            long.push(oai_sse_once(b, LONG)?);
        }
    }
    let [(s0, l0), (s1, l1)] = usages;
    let client = |name, short, long| Client {
        name,
        short: median(short),
        long: median(long),
        runs,
    };
    Ok((
        client("oai-sse chat --json", s0, l0),
        client("baseline: an older oai-sse chat --json", s1, l1),
    ))
}

pub fn python(python: &Path) -> Result<Client, String> {
    measure("openai (Python SDK)", 1, |words| python_once(python, words))
}

/// A Python with the `openai` package: `tests/bench/.venv`, created and filled with
/// `pip install openai` when missing.
pub fn python_sdk() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let python = venv.join("bin/python");
    let has_openai = |python: &Path| {
        Command::new(python)
            .args(["-c", "import openai"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_openai(&python) {
        return Ok(python);
    }
    eprintln!(
        "setting up {} (python3 -m venv; pip install openai)",
        venv.display()
    );
    let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
    if !ok(Command::new("python3").arg("-m").arg("venv").arg(&venv)) {
        return Err("`python3 -m venv` failed".into());
    }
    if !ok(Command::new(venv.join("bin/pip")).args(["install", "-q", "openai"])) {
        return Err("`pip install openai` failed".into());
    }
    if has_openai(&python) {
        Ok(python)
    } else {
        Err("the openai package does not import".into())
    }
}
