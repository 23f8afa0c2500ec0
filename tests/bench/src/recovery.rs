//! The `recovery` section: what one broken stream costs on the real llama-server
//! (tests/llama/build-server.sh), side by side: oai-sse resuming from the replay route,
//! continuing with the delivered text as a final assistant message, restarting with the
//! repeat swallowed, continuing behind the real LiteLLM (cut on either side of it), and the
//! official Python SDK sending the request again after its exception. A 256-token greedy
//! answer is cut once at 40 % of its event stream; each row reports the tokens the server
//! generated (`tokens_predicted_total` from `/metrics`) and the wall time, against the uncut
//! run of the same client and path, measured in the same run.
//!
//! The harness is the tests' own (tests/llama/, included below): the server as a child
//! process, the loopback proxy that cuts a response at a body offset, and the gateway.
//! Found through `OAI_SSE_LLAMA_SERVER` / `OAI_SSE_LLAMA_MODEL` (default target/llama/ of the
//! repository) and `OAI_SSE_LITELLM` (default target/litellm/bin/litellm, from
//! tests/llama/build-gateway.sh).

#[path = "../../llama/mod.rs"]
// The harness keeps to the root package's rust-version 1.85, which has no `if let` chains
// (what this lint suggests here, where no rust-version is set).
#[allow(clippy::collapsible_if)]
mod llama;

use llama::gateway::{self, Gateway};
use llama::proxy::{CutRecord, Outcome};
use llama::server::IDLE_TIMEOUT;
use llama::{Config, Cut, CutAt, Fault, FaultProxy, LlamaServer};
use oai_sse::{ChatRequest, Client, Message, ProxyConfig, StreamEvent};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The repository root (this package is tests/bench/).
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const PROMPT: &str = "Write a story about a robot who learns to paint.";
const MAX_TOKENS: u32 = 256;
const SEED: i64 = 42;
/// Where the cut falls, as a share of the uncut answer's event-stream bytes.
const CUT_SHARE: f64 = 0.4;
const CHAT: &str = "/v1/chat/completions";
/// The target for a server that can replay or continue.
const MAX_EXTRA_TOKENS: f64 = 0.02;
const MAX_WALL_RATIO: f64 = 1.15;
const DEFAULT_RUNS: usize = 5;

/// The request every row sends: greedy, seeded, the server's prompt cache left on (its
/// default, which a continuation uses: the delivered part is read as cached prompt).
fn request() -> ChatRequest {
    ChatRequest::new(gateway::MODEL, vec![Message::user(PROMPT)])
        .temperature(0.0)
        .seed(SEED)
        .max_tokens(MAX_TOKENS)
        .include_usage()
}

/// The same request as the JSON body the Python SDK sends.
fn request_json() -> String {
    let mut body = serde_json::to_value(request()).expect("request JSON");
    body["stream"] = serde_json::json!(true);
    body.to_string()
}

/// Which uncut run a row is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// oai-sse → cutting proxy → llama-server.
    Direct,
    /// oai-sse → proxy → LiteLLM → proxy → llama-server.
    Gateway,
    /// The Python SDK → cutting proxy → llama-server.
    Python,
}

/// How the oai-sse client may recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The defaults: resume, else continue, else restart.
    Default,
    /// `.resume(false)`: continue, else restart.
    NoResume,
    /// `.resume(false).server_continues(false)`: restart, the repeat swallowed.
    RestartOnly,
}

/// Where the one cut falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutSide {
    None,
    /// Between the client and the server (or the gateway).
    Front,
    /// Between LiteLLM and llama-server.
    Upstream,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    label: &'static str,
    route: Route,
    mode: Mode,
    cut: CutSide,
    /// The server can replay or continue here: the target applies.
    target: bool,
}

const ROWS: [Row; 9] = [
    Row {
        label: "direct, uncut",
        route: Route::Direct,
        mode: Mode::Default,
        cut: CutSide::None,
        target: false,
    },
    Row {
        label: "direct, replay (defaults)",
        route: Route::Direct,
        mode: Mode::Default,
        cut: CutSide::Front,
        target: true,
    },
    Row {
        label: "direct, continuation (`resume(false)`)",
        route: Route::Direct,
        mode: Mode::NoResume,
        cut: CutSide::Front,
        target: true,
    },
    Row {
        label: "direct, plain restart (`resume(false)`, `server_continues(false)`)",
        route: Route::Direct,
        mode: Mode::RestartOnly,
        cut: CutSide::Front,
        target: false,
    },
    Row {
        label: "LiteLLM, uncut",
        route: Route::Gateway,
        mode: Mode::Default,
        cut: CutSide::None,
        target: false,
    },
    Row {
        label: "LiteLLM, cut between LiteLLM and llama-server",
        route: Route::Gateway,
        mode: Mode::Default,
        cut: CutSide::Upstream,
        target: true,
    },
    Row {
        label: "LiteLLM, cut between client and LiteLLM",
        route: Route::Gateway,
        mode: Mode::Default,
        cut: CutSide::Front,
        target: true,
    },
    Row {
        label: "openai (Python SDK), uncut",
        route: Route::Python,
        mode: Mode::Default,
        cut: CutSide::None,
        target: false,
    },
    Row {
        label: "openai (Python SDK), re-sent after its exception",
        route: Route::Python,
        mode: Mode::Default,
        cut: CutSide::Front,
        target: false,
    },
];

/// One measured call.
#[derive(Debug, Clone)]
struct Run {
    wall: Duration,
    /// Tokens the server generated for it (all attempts).
    tokens: u64,
    /// Prompt tokens the server evaluated for it (cached ones excluded).
    prompt: u64,
    answer: String,
    /// Everything the caller was handed, in order (a taken-back part included).
    shown: String,
    /// What the recovery did (`resumed`, `continued`, `re-sent`), or `-`.
    action: String,
    /// The client's backoff before its retries (part of `wall`).
    waited: Duration,
}

/// The uncut event-stream sizes, where the cuts are placed.
#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    direct: usize,
    /// Between the client and LiteLLM.
    gateway_front: usize,
    /// Between LiteLLM and llama-server.
    gateway_upstream: usize,
    python: usize,
}

struct Bench {
    server: LlamaServer,
    /// LiteLLM and the proxy in front of llama-server it is configured with.
    gateway: Result<(Gateway, FaultProxy), String>,
    python: Result<PathBuf, String>,
    sizes: Sizes,
}

/// A fault on the first chat POST: cut at `at` body bytes, or (`None`) one that never
/// falls and so records the uncut body's size.
fn fault(at: Option<usize>) -> Fault {
    Fault::new("POST", CHAT)
        .at(CutAt::BodyByte(at.unwrap_or(usize::MAX)))
        .cut(Cut::Fin)
}

fn cut_at(size: usize) -> usize {
    (size as f64 * CUT_SHARE).round() as usize
}

/// The one record of `proxy`'s fault; checks it fell (or did not) as planned.
fn record(proxy: &FaultProxy, cut: bool) -> Result<CutRecord, String> {
    let cuts = proxy.cuts();
    let Some(last) = cuts.last() else {
        return Err("the proxy saw no chat request".into());
    };
    match (&last.outcome, cut) {
        (Outcome::Cut, true) | (Outcome::EndedFirst, false) => Ok(last.clone()),
        (outcome, _) => Err(format!("the fault ended as {outcome:?}")),
    }
}

pub fn section(args: &[String]) -> String {
    let runs = args
        .iter()
        .find_map(|a| a.strip_prefix("--runs="))
        .and_then(|n| n.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DEFAULT_RUNS);
    let mut out = String::from("### Recovery from a broken stream on llama-server\n\n");
    let mut bench = match Bench::start() {
        Ok(bench) => bench,
        Err(e) => {
            let _ = writeln!(out, "Skipped: {e}\n");
            return out;
        }
    };
    if let Err(e) = bench.calibrate() {
        let _ = writeln!(out, "Skipped: the uncut runs failed: {e}\n");
        return out;
    }
    let mut results: Vec<Vec<Result<Run, String>>> = vec![Vec::new(); ROWS.len()];
    // Round-robin, so a machine that slows down mid-run slows every row alike.
    for round in 1..=runs {
        for (row, results) in ROWS.iter().zip(&mut results) {
            eprintln!("recovery: run {round}/{runs}: {}", row.label);
            let run = bench.run(row);
            match &run {
                Ok(r) => eprintln!(
                    "recovery:   {:.2} s, {} tokens ({} prompt), {} (waited {} ms)",
                    r.wall.as_secs_f64(),
                    r.tokens,
                    r.prompt,
                    r.action,
                    r.waited.as_millis()
                ),
                Err(e) => eprintln!("recovery: {}: {e}", row.label),
            }
            results.push(run);
        }
    }
    out.push_str(&bench.report(&results, runs));
    out
}

impl Bench {
    fn start() -> Result<Self, String> {
        let config = locate_server()?;
        // The harness writes its logs under CARGO_TARGET_TMPDIR (set by build.rs).
        std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR"))
            .map_err(|e| format!("{}: {e}", env!("CARGO_TARGET_TMPDIR")))?;
        eprintln!("recovery: starting {}", config.server.display());
        let server = LlamaServer::start(&config)?;
        eprintln!("recovery: llama-server up in {:?}", server.startup_time());
        let gateway = locate_litellm().and_then(|litellm| {
            let upstream = FaultProxy::start(server.addr());
            eprintln!("recovery: starting {}", litellm.display());
            let gateway = Gateway::start(&litellm, upstream.addr())?;
            eprintln!("recovery: LiteLLM up in {:?}", gateway.startup_time());
            Ok((gateway, upstream))
        });
        let python = locate_python();
        Ok(Self {
            server,
            gateway,
            python,
            sizes: Sizes::default(),
        })
    }

    /// One uncut call per route, not reported: it warms each route up (the model's first
    /// decode, LiteLLM's first request) and measures the sizes the cuts are placed at.
    fn calibrate(&mut self) -> Result<(), String> {
        eprintln!("recovery: calibrating (uncut, not counted)");
        let proxy = FaultProxy::start(self.server.addr());
        proxy.add_fault(fault(None));
        let run = self.oai_run(&proxy.base_url(), Mode::Default, None)?;
        self.sizes.direct = record(&proxy, false)?.body_bytes;
        eprintln!(
            "recovery: {} tokens, {} bytes, {:?}",
            run.tokens, self.sizes.direct, run.wall
        );
        if let Ok((gateway, upstream)) = &self.gateway {
            let front = FaultProxy::start(gateway.addr());
            front.add_fault(fault(None));
            upstream.add_fault(fault(None));
            let run = self.oai_run(&front.base_url(), Mode::Default, Some(gateway::MASTER_KEY));
            let sizes = run.and_then(|_| Ok((record(&front, false)?, record(upstream, false)?)));
            match sizes {
                Ok((front, upstream)) => {
                    self.sizes.gateway_front = front.body_bytes;
                    self.sizes.gateway_upstream = upstream.body_bytes;
                }
                Err(e) => self.gateway = Err(format!("the uncut call through LiteLLM: {e}")),
            }
        }
        if let Ok(python) = &self.python {
            let proxy = FaultProxy::start(self.server.addr());
            proxy.add_fault(fault(None));
            match self
                .python_run(python, &proxy.base_url())
                .and_then(|_| record(&proxy, false))
            {
                Ok(record) => self.sizes.python = record.body_bytes,
                Err(e) => self.python = Err(format!("the uncut Python call: {e}")),
            }
        }
        Ok(())
    }

    fn run(&self, row: &Row) -> Result<Run, String> {
        let cut = row.cut != CutSide::None;
        match row.route {
            Route::Direct => {
                let proxy = FaultProxy::start(self.server.addr());
                proxy.add_fault(fault(cut.then(|| cut_at(self.sizes.direct))));
                let run = self.oai_run(&proxy.base_url(), row.mode, None)?;
                record(&proxy, cut)?;
                Ok(run)
            }
            Route::Gateway => {
                let (gateway, upstream) = self.gateway.as_ref().map_err(String::clone)?;
                let front = FaultProxy::start(gateway.addr());
                let (front_at, upstream_at) = match row.cut {
                    CutSide::None => (None, None),
                    CutSide::Front => (Some(cut_at(self.sizes.gateway_front)), None),
                    CutSide::Upstream => (None, Some(cut_at(self.sizes.gateway_upstream))),
                };
                front.add_fault(fault(front_at));
                let upstream_cuts = upstream.cuts().len();
                upstream.add_fault(fault(upstream_at));
                let run = self.oai_run(&front.base_url(), row.mode, Some(gateway::MASTER_KEY))?;
                record(&front, front_at.is_some())?;
                if upstream.cuts().len() == upstream_cuts {
                    return Err("LiteLLM sent llama-server no chat request".into());
                }
                record(upstream, upstream_at.is_some())?;
                Ok(run)
            }
            Route::Python => {
                let python = self.python.as_ref().map_err(String::clone)?;
                let proxy = FaultProxy::start(self.server.addr());
                proxy.add_fault(fault(cut.then(|| cut_at(self.sizes.python))));
                let run = self.python_run(python, &proxy.base_url())?;
                record(&proxy, cut)?;
                Ok(run)
            }
        }
    }

    /// One oai-sse chat through `base`, shown as a streaming caller shows it.
    fn oai_run(&self, base: &str, mode: Mode, key: Option<&str>) -> Result<Run, String> {
        let mut builder = Client::builder()
            .base_url(base)
            .proxy(ProxyConfig::None)
            .connect_timeout(Duration::from_secs(10))
            // The server sends its head with the first token; a starved machine is slow.
            .first_byte_timeout(Duration::from_secs(180))
            .idle_timeout(Duration::from_secs(120));
        builder = match mode {
            Mode::Default => builder,
            Mode::NoResume => builder.resume(false),
            Mode::RestartOnly => builder.resume(false).server_continues(false),
        };
        if let Some(key) = key {
            builder = builder.api_key(key);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        let request = request();
        let before = self.server.wait_idle(IDLE_TIMEOUT);
        let mut shown = String::new();
        let start = Instant::now();
        let response = client.chat_stream(&request, |event| {
            if let StreamEvent::Content { text, .. } = event {
                shown.push_str(text);
            }
        });
        let wall = start.elapsed();
        let after = self.server.wait_idle(IDLE_TIMEOUT);
        let response = response.map_err(|e| e.to_string())?;
        for retry in &response.retries {
            eprintln!("recovery:   {retry:?}");
        }
        let actions: Vec<&str> = response.retries.iter().map(|r| r.action.as_str()).collect();
        Ok(Run {
            wall,
            tokens: after.tokens_predicted() - before.tokens_predicted(),
            prompt: after.prompt_tokens() - before.prompt_tokens(),
            answer: response.content().to_owned(),
            shown,
            action: if actions.is_empty() {
                "-".into()
            } else {
                actions.join(", ")
            },
            waited: Duration::from_millis(response.retries.iter().map(|r| r.delay_ms).sum()),
        })
    }

    /// One call of py/resend_openai.py through `base`; the wall time is the script's own
    /// (from its first request to the end of its last answer: no interpreter start-up).
    fn python_run(&self, python: &Path, base: &str) -> Result<Run, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/resend_openai.py");
        let before = self.server.wait_idle(IDLE_TIMEOUT);
        let output = Command::new(python)
            .arg(&script)
            .arg(base)
            .arg(request_json())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "*")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("all_proxy")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let after = self.server.wait_idle(IDLE_TIMEOUT);
        if !output.status.success() {
            return Err(format!(
                "python failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line: serde_json::Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("python printed {text:?}: {e}"))?;
        let string = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
        let errors: Vec<&str> = line["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        Ok(Run {
            wall: Duration::from_secs_f64(line["wall_s"].as_f64().unwrap_or(0.0)),
            tokens: after.tokens_predicted() - before.tokens_predicted(),
            prompt: after.prompt_tokens() - before.prompt_tokens(),
            answer: string("answer"),
            shown: string("shown"),
            action: if errors.is_empty() {
                "-".into()
            } else {
                format!("re-sent after `{}`", errors.join("`, `"))
            },
            // The script sends again at once.
            waited: Duration::ZERO,
        })
    }

    fn report(&self, results: &[Vec<Result<Run, String>>], runs: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "The real llama-server ({}, SmolLM2-135M-Instruct Q4_1, 1 slot, 1 thread, \
             prompt cache on as by default) answers {PROMPT:?} with {MAX_TOKENS} tokens at \
             temperature 0, seed {SEED}. Each row but the uncut ones cuts that answer once \
             with a FIN after {:.0} % of its event-stream bytes (body byte {} of {} directly, \
             {} of {} between client and LiteLLM, {} of {} between LiteLLM and llama-server, \
             {} of {} for the Python SDK). Generated tokens: the growth of llama-server's \
             `tokens_predicted_total` over the call (every attempt, the cut one included); \
             prompt tokens: of `prompt_tokens_total` (evaluated, not read from the prompt \
             cache). \
             Wall time: from the request to the whole answer, median of {runs} runs taken \
             round-robin; × uncut and extra tokens are against the uncut row of the same \
             route. \"Shown = uncut\": what the caller was handed, in order, is the uncut \
             answer once (nothing taken back, nothing twice). Target where the server can \
             replay or continue: at most {:.0} % extra tokens and {MAX_WALL_RATIO}× the \
             uncut wall time. LiteLLM {}; openai (Python SDK) {}.\n",
            llama_version(&self.server),
            CUT_SHARE * 100.0,
            cut_at(self.sizes.direct),
            self.sizes.direct,
            cut_at(self.sizes.gateway_front),
            self.sizes.gateway_front,
            cut_at(self.sizes.gateway_upstream),
            self.sizes.gateway_upstream,
            cut_at(self.sizes.python),
            self.sizes.python,
            MAX_EXTRA_TOKENS * 100.0,
            match &self.gateway {
                Ok(_) => "1.106.12".to_owned(),
                Err(e) => format!("not run: {e}"),
            },
            match &self.python {
                Ok(python) => python_openai_version(python),
                Err(e) => format!("not run: {e}"),
            },
        );
        let _ = writeln!(
            out,
            "| row | recovery | generated tokens | extra tokens | prompt tokens | wall time | \
             × uncut | answer = uncut | shown = uncut | target |\n\
             |---|---|---:|---:|---:|---:|---:|---|---|---|"
        );
        // The one true answer: the direct uncut run's.
        let truth = results[0]
            .iter()
            .find_map(|r| r.as_ref().ok())
            .map(|r| r.answer.clone());
        for (row, runs) in ROWS.iter().zip(results) {
            let ok: Vec<&Run> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
            let failed: Vec<&String> = runs.iter().filter_map(|r| r.as_ref().err()).collect();
            if ok.is_empty() {
                let why = failed.first().map_or("not run", |e| e.as_str());
                let _ = writeln!(
                    out,
                    "| {} | failed: {} | | | | | | | | |",
                    row.label,
                    why.lines().next().unwrap_or_default().replace('|', "\\|")
                );
                continue;
            }
            let reference = ROWS
                .iter()
                .position(|r| r.route == row.route && r.cut == CutSide::None)
                .and_then(|i| median_of(&results[i]));
            let (wall, tokens) = median(&ok);
            let mut prompts: Vec<u64> = ok.iter().map(|r| r.prompt).collect();
            prompts.sort_unstable();
            let prompt = prompts[(prompts.len() - 1) / 2];
            let (ratio, extra) = match reference {
                Some((ref_wall, ref_tokens)) => (
                    wall.as_secs_f64() / ref_wall.as_secs_f64(),
                    (tokens as f64 - ref_tokens as f64) / ref_tokens.max(1) as f64,
                ),
                None => (f64::NAN, f64::NAN),
            };
            let all = |f: &dyn Fn(&Run) -> bool| {
                if failed.is_empty() && ok.iter().all(|r| f(r)) {
                    "yes"
                } else {
                    "no"
                }
            };
            let truth = truth.as_deref().unwrap_or_default();
            let answer_ok = all(&|r| r.answer == truth);
            let shown_ok = all(&|r| r.shown == truth);
            let mut actions: Vec<&str> = ok.iter().map(|r| r.action.as_str()).collect();
            actions.sort_unstable();
            actions.dedup();
            let mut waits: Vec<Duration> = ok.iter().map(|r| r.waited).collect();
            waits.sort();
            let waited = waits[(waits.len() - 1) / 2];
            let recovery = if waited.is_zero() {
                actions.join(" / ")
            } else {
                format!(
                    "{}, after {} ms backoff",
                    actions.join(" / "),
                    waited.as_millis()
                )
            };
            let target = if row.cut == CutSide::None {
                "reference".to_owned()
            } else if !row.target {
                "no replay or continuation".to_owned()
            } else {
                let mut missed = Vec::new();
                if extra > MAX_EXTRA_TOKENS {
                    missed.push(format!("{:+.1} % tokens", extra * 100.0));
                }
                if ratio > MAX_WALL_RATIO {
                    missed.push(format!("{ratio:.2}× wall"));
                }
                if answer_ok == "no" || shown_ok == "no" {
                    missed.push("not the uncut answer".into());
                }
                if missed.is_empty() {
                    "met".to_owned()
                } else {
                    format!("**missed**: {}", missed.join(", "))
                }
            };
            let failures = if failed.is_empty() {
                String::new()
            } else {
                format!(" ({} of {} runs failed)", failed.len(), runs.len())
            };
            let _ = writeln!(
                out,
                "| {} | {recovery}{failures} | {tokens} | {:+.1} % | {prompt} | {:.2} s | {ratio:.2}× | {answer_ok} | {shown_ok} | {target} |",
                row.label,
                extra * 100.0,
                wall.as_secs_f64(),
            );
        }
        let _ = writeln!(
            out,
            "\nCommand: `cargo run --release --manifest-path tests/bench/Cargo.toml -- recovery` \
             (llama-server from tests/llama/build-server.sh, LiteLLM from \
             tests/llama/build-gateway.sh; `--runs=N`, default {DEFAULT_RUNS}).\n"
        );
        out
    }
}

/// The median wall time and the median token count of the runs that succeeded.
fn median(runs: &[&Run]) -> (Duration, u64) {
    let mut walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
    let mut tokens: Vec<u64> = runs.iter().map(|r| r.tokens).collect();
    walls.sort();
    tokens.sort_unstable();
    let mid = (runs.len() - 1) / 2;
    (walls[mid], tokens[mid])
}

fn median_of(runs: &[Result<Run, String>]) -> Option<(Duration, u64)> {
    let ok: Vec<&Run> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    (!ok.is_empty()).then(|| median(&ok))
}

/// The server and model: the environment's, else the repository's target/llama/.
fn locate_server() -> Result<Config, String> {
    let pick = |var: &str, default: &str| {
        let path = std::env::var_os(var)
            .filter(|p| !p.is_empty())
            .map_or_else(|| Path::new(ROOT).join(default), PathBuf::from);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "no {} (set {var} or run tests/llama/build-server.sh)",
                path.display()
            ))
        }
    };
    let server = pick(llama::server::SERVER_ENV, "target/llama/llama-server")?;
    let model = pick(
        llama::server::MODEL_ENV,
        "target/llama/SmolLM2-135M-Instruct.Q4_1.gguf",
    )?;
    Ok(Config {
        server,
        model,
        slots: 1,
        ctx: 2048,
        threads: 1,
        extra_args: Vec::new(),
        startup_timeout: llama::server::STARTUP_TIMEOUT,
    })
}

/// The `litellm` command: `OAI_SSE_LITELLM`, else the repository's target/litellm/.
fn locate_litellm() -> Result<PathBuf, String> {
    let path = std::env::var_os(gateway::LITELLM_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(
            || Path::new(ROOT).join("target/litellm/bin/litellm"),
            PathBuf::from,
        );
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no {} (set {} or run tests/llama/build-gateway.sh)",
            path.display(),
            gateway::LITELLM_ENV
        ))
    }
}

/// A Python with the `openai` package: LiteLLM's virtualenv has it (a dependency of
/// LiteLLM), else tests/bench/.venv as the `e2e` section makes it.
fn locate_python() -> Result<PathBuf, String> {
    if let Ok(litellm) = locate_litellm() {
        let python = litellm.with_file_name("python");
        let imports = Command::new(&python)
            .args(["-c", "import openai"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imports {
            return Ok(python);
        }
    }
    crate::e2e::python_sdk()
}

fn python_openai_version(python: &Path) -> String {
    Command::new(python)
        .args(["-c", "import openai; print(openai.__version__)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// llama-server's build as its `/props` reports it (`b1234-abcdef0`), or `llama-server`.
fn llama_version(server: &LlamaServer) -> String {
    let props = server.call("GET", "/props", &[], b"");
    serde_json::from_slice::<serde_json::Value>(&props.body)
        .ok()
        .and_then(|v| {
            v["build_info"]
                .as_str()
                .map(|b| format!("llama-server {b}"))
        })
        .unwrap_or_else(|| "llama-server".into())
}
