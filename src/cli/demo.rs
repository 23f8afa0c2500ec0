//! `oai-sse demo`: the real client against the fault-injecting mock server, one scenario per
//! failure class, each checked in code against what it must do.

use super::Failure;
use super::args::Args;
use oai_sse::mock::{FaultRule, MockServer, Script};
use oai_sse::retry::{RetryAction, RetryPolicy, RetryRecord};
use oai_sse::{
    CallOptions, ChatRequest, ChatResponse, Client, Error, FailureKind, Message, ProxyConfig,
    StreamEvent,
};
use serde::Serialize;
use serde_json::Value;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub const HELP: &str = "\
usage: oai-sse demo [--json]

Starts the fault-injecting mock server on loopback and runs the real client (oai_sse::Client)
against it, one scenario per failure class: a connection cut (FIN) mid-stream, resumed from
where it broke through the mock's llama.cpp-style stream replay (one generation, nothing
repeated), and the same cut on a server without replay (restarted); a reset (RST) mid-stream,
a stall past the idle timeout, no first byte in time, 429 with Retry-After, 503 twice, a 502
gateway page, truncated tool-call JSON, a stream without [DONE], a refused connection while
the server restarts, a server that holds the connection open after the answer, and two errors
that must not be retried (400, and 500 with an API error body).

Prints scenario 1's answer as it streams (with the resume marker), then a table: scenario,
injected fault, attempts, how the client carried on (resumed at byte N, restarted), the
generations the server ran, outcome and time. All of it is checked, not just printed: the
exit status is 0 only if every scenario behaved as expected. Takes a few seconds.
RUST_LOG=debug shows the client's own log on stderr.

options:
  --json   print the results as one JSON object instead of the live stream and the table";

pub const TAKES_VALUE: &[&str] = &[];

const MODEL: &str = "demo-model";
const REPLY: &str =
    "Networks fail mid-answer; oai-sse notices, retries and hands back the whole reply.";
const TOOL_NAME: &str = "get_weather";
const TOOL_ARGS: &str = r#"{"city":"Zürich","unit":"celsius","days":3}"#;
/// The idle or first-byte limit in the two timeout scenarios.
const SHORT: Duration = Duration::from_millis(300);
/// Those limits everywhere else: a localhost stream never pauses this long.
const LONG: Duration = Duration::from_secs(5);
/// How long the stalls last: far past `SHORT`, so only the client's timeout can end them.
const STALL_SECS: u64 = 2;
/// How long nothing listens before the server comes up, in the refused scenario.
const DOWN_FOR: Duration = Duration::from_millis(300);
/// The mock's status line and headers before a 200 stream's first chunk (`HTTP/1.1 200 OK`,
/// `Content-Type`, `Cache-Control`, `Transfer-Encoding`). Only used to aim cuts mid-stream;
/// an error of a few bytes still lands inside the targeted event.
const STREAM_HEAD: usize = 105;

/// What the mock does in a scenario.
enum Setup {
    /// Serve with this fault spec (the `--fault` syntax of `oai-sse mock`).
    Fault(String),
    /// Nothing listens on the port at first; the server comes up after [`DOWN_FOR`].
    Refused,
}

/// The result a scenario must end with.
enum Want {
    /// The full answer (and the tool call, if scripted).
    Answer,
    /// This HTTP error status, returned without a retry.
    NotRetried(u16),
}

/// How the client must carry on after the first failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carry {
    /// Nothing failed (or nothing was retried).
    Nothing,
    /// Continued the stream where it broke: one generation.
    Resume,
    /// Sent the request again: the server generated again (or never started).
    Restart,
}

struct Scenario {
    name: &'static str,
    setup: Setup,
    tool: bool,
    idle: Duration,
    first_byte: Duration,
    want: Want,
    attempts: RangeInclusive<u32>,
    /// Acceptable reasons for the first retry (empty: no retry expected).
    reasons: &'static [FailureKind],
    /// What the first retry must do.
    carry: Carry,
    /// Generations the server must have run.
    generations: u64,
    /// Whether the caller must (`Some(true)`) or must not (`Some(false)`) see a restart event.
    restart: Option<bool>,
    min_ms: u64,
    max_ms: Option<u64>,
    /// The API error message the error must carry.
    message: Option<&'static str>,
}

impl Scenario {
    fn new(name: &'static str, setup: Setup) -> Self {
        Self {
            name,
            setup,
            tool: false,
            idle: LONG,
            first_byte: LONG,
            want: Want::Answer,
            attempts: 1..=1,
            reasons: &[],
            carry: Carry::Nothing,
            generations: 1,
            restart: Some(false),
            min_ms: 0,
            max_ms: None,
            message: None,
        }
    }

    /// Recovers by resuming the stream after a failure for one of `reasons`: two attempts,
    /// one generation, no restart event.
    fn resumes(mut self, reasons: &'static [FailureKind]) -> Self {
        self.attempts = 2..=2;
        self.reasons = reasons;
        self.carry = Carry::Resume;
        self
    }

    /// Recovers by sending the request again after a failure for one of `reasons`.
    fn restarts(
        mut self,
        attempts: RangeInclusive<u32>,
        reasons: &'static [FailureKind],
        generations: u64,
    ) -> Self {
        self.attempts = attempts;
        self.reasons = reasons;
        self.carry = Carry::Restart;
        self.generations = generations;
        self
    }

    fn fault_label(&self) -> String {
        match &self.setup {
            Setup::Fault(spec) => spec.clone(),
            Setup::Refused => format!("nothing listening for {} ms", DOWN_FOR.as_millis()),
        }
    }
}

fn fault(spec: impl Into<String>) -> Setup {
    Setup::Fault(spec.into())
}

fn scenarios() -> Vec<Scenario> {
    use FailureKind as K;
    let plain = Script::new().text(REPLY);
    let stream = request_json(&request(false));
    // Inside the 5th event (role, then "Networks", " fail", " mid-answer;" arrive whole).
    let cut = mid_stream(&plain, &stream, 4);
    let stall = STALL_SECS;
    vec![
        Scenario::new(
            "FIN mid-stream",
            fault(format!("close-after={cut},times=1")),
        )
        .resumes(&[K::UnexpectedEof]),
        Scenario::new(
            "FIN, server without replay",
            fault(format!("close-after={cut},times=1;no-replay")),
        )
        // The replay route answers 404: restart at once, within the same retry; the
        // restarted answer repeats what was shown, which is swallowed.
        .restarts(2..=2, &[K::UnexpectedEof], 2),
        Scenario::new(
            "RST mid-stream",
            fault(format!("reset-after={cut},times=1")),
        )
        .resumes(&[K::ConnectionReset, K::UnexpectedEof, K::ConnectionAborted]),
        Scenario {
            idle: SHORT,
            max_ms: Some(stall * 1000),
            ..Scenario::new(
                "stall past the idle timeout",
                fault(format!("stall-after={cut},secs={stall},times=1")),
            )
            .resumes(&[K::IdleTimeout])
        },
        Scenario {
            first_byte: SHORT,
            max_ms: Some(stall * 1000),
            ..Scenario::new(
                "no first byte in time",
                fault(format!("stall-before={stall},times=1")),
            )
            // The generation runs on the server: replayed from byte 0.
            .resumes(&[K::FirstByteTimeout])
        },
        Scenario::new("no [DONE], stream cut short", fault("no-done,times=1"))
            // The replay ends the same way (the server ended the generation so): the
            // client generates again, and swallows the repeat.
            .restarts(3..=3, &[K::IncompleteStream], 2),
        Scenario {
            min_ms: 1000,
            ..Scenario::new(
                "429 + Retry-After: 1",
                fault("status=429,retry-after=1,times=1"),
            )
            .restarts(2..=2, &[K::HttpStatus], 1)
        },
        Scenario::new("503 twice", fault("status=503,times=2")).restarts(
            3..=3,
            &[K::HttpStatus],
            1,
        ),
        Scenario::new("502 HTML gateway page", fault("html=502,times=1")).restarts(
            2..=2,
            &[K::HttpStatus],
            1,
        ),
        Scenario {
            tool: true,
            ..Scenario::new(
                "truncated tool-call JSON",
                fault("truncate-tool-args,times=1"),
            )
            // A replay would repeat the same truncated bytes: generate again.
            .restarts(2..=2, &[K::TruncatedToolCallArguments], 2)
        },
        Scenario::new("refused, then server up", Setup::Refused).restarts(
            2..=6,
            &[K::ConnectionRefused],
            1,
        ),
        Scenario {
            max_ms: Some(2000),
            ..Scenario::new("held open after finish", fault("hold-open=10"))
        },
        Scenario {
            want: Want::NotRetried(400),
            generations: 0,
            ..Scenario::new("400 (must not retry)", fault("status=400"))
        },
        Scenario {
            want: Want::NotRetried(500),
            generations: 0,
            message: Some("the model crashed"),
            ..Scenario::new(
                "500 + error body (must not retry)",
                fault("status=500,message=the model crashed"),
            )
        },
    ]
}

fn request(tool: bool) -> ChatRequest {
    let ask = if tool {
        "What is the weather in Zürich?"
    } else {
        "Why do streams break?"
    };
    ChatRequest::new(MODEL, vec![Message::user(ask)])
}

/// The body the client sends for `request` (it sets `stream`).
fn request_json(request: &ChatRequest) -> Value {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("stream".into(), true.into());
    }
    value
}

/// A byte offset halfway into SSE event number `events` (0-based) of the fault-free stream, so
/// the events before it reach the client whole.
fn mid_stream(script: &Script, request: &Value, events: usize) -> usize {
    let mut framed = script
        .sse_events(request)
        .map(|event| format!("{:x}\r\n{event}\r\n", event.len()).len());
    let before: usize = framed.by_ref().take(events).sum();
    STREAM_HEAD + before + framed.next().unwrap_or(0) / 2
}

fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_retries(5)
        .initial_delay(Duration::from_millis(50))
        .factor(2.0)
        .max_delay(Duration::from_secs(1))
        .max_elapsed(Some(Duration::from_secs(10)))
}

/// One scenario's row of the table.
#[derive(Serialize)]
struct Row {
    number: usize,
    scenario: &'static str,
    fault: String,
    attempts: u32,
    /// How the client carried on: "resumed at 566", "restarted", "-".
    action: String,
    /// Generations the server ran.
    generations: u64,
    outcome: String,
    ms: u64,
    as_expected: bool,
    problems: Vec<String>,
    retries: Vec<RetryRecord>,
}

/// What happened when a scenario ran.
struct Run {
    result: Result<ChatResponse, Error>,
    elapsed: Duration,
    restarts: u32,
    /// The answer as the caller showed it: content deltas, cleared at each restart.
    shown: String,
    /// Generations the server ran.
    generations: u64,
}

pub fn run(mut args: Args) -> Result<(), Failure> {
    let json = args.flag(&["--json"])?;
    args.finish(0)?;
    // The client logs its retries; keep them out of the demo's output unless asked for.
    super::logging::init(log::LevelFilter::Off);

    let scenarios = scenarios();
    let total = scenarios.len();
    let mut out = io::stdout().lock();
    if !json {
        writeln!(
            out,
            "oai-sse demo: the real client against the fault-injecting mock server, {total} scenarios\n\
             client: retries up to 5, backoff from 50 ms (x2, jitter 20%), idle and first-byte \
             timeouts {} ms where tested\n",
            SHORT.as_millis()
        )?;
    }
    let started = Instant::now();
    let mut rows = Vec::with_capacity(total);
    for (i, scenario) in scenarios.iter().enumerate() {
        let number = i + 1;
        let row = if number == 1 && !json {
            writeln!(
                out,
                "Scenario 1, {} ({}), streamed live:",
                scenario.name,
                scenario.fault_label()
            )?;
            write!(out, "  ")?;
            out.flush()?;
            let row = run_scenario(number, scenario, Some(&mut out));
            writeln!(out, "\n")?;
            row
        } else {
            run_scenario(number, scenario, None)
        };
        rows.push(row);
    }
    let elapsed = started.elapsed();
    let misbehaved = rows.iter().filter(|r| !r.as_expected).count();

    if json {
        let report = serde_json::json!({
            "scenarios": rows,
            "misbehaved": misbehaved,
            "elapsed_ms": elapsed.as_millis() as u64,
        });
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(table(&rows).as_bytes())?;
        for row in rows.iter().filter(|r| !r.as_expected) {
            writeln!(
                out,
                "scenario {} misbehaved: {}",
                row.number,
                row.problems.join("; ")
            )?;
        }
        let secs = elapsed.as_secs_f64();
        if misbehaved == 0 {
            writeln!(
                out,
                "\nall {total} scenarios behaved as expected ({secs:.1} s)"
            )?;
        } else {
            writeln!(
                out,
                "\n{misbehaved} of {total} scenarios misbehaved ({secs:.1} s)"
            )?;
        }
    }
    out.flush()?;
    if misbehaved == 0 {
        Ok(())
    } else {
        Err(Failure::Runtime(format!(
            "{misbehaved} of {total} demo scenarios misbehaved"
        )))
    }
}

fn run_scenario(number: usize, scenario: &Scenario, live: Option<&mut dyn Write>) -> Row {
    let mut row = Row {
        number,
        scenario: scenario.name,
        fault: scenario.fault_label(),
        attempts: 0,
        action: String::new(),
        generations: 0,
        outcome: String::new(),
        ms: 0,
        as_expected: false,
        problems: Vec::new(),
        retries: Vec::new(),
    };
    let run = match execute(scenario, live) {
        Ok(run) => run,
        Err(setup) => {
            row.outcome = format!("setup failed: {setup}");
            row.problems.push(row.outcome.clone());
            return row;
        }
    };
    row.ms = run.elapsed.as_millis() as u64;
    row.attempts = match &run.result {
        Ok(response) => response.retries.len() as u32 + 1,
        Err(Error::AfterRetries(e)) => e.attempts,
        // A bare error: the attempt that failed was not retried.
        Err(_) => 1,
    };
    row.retries = match &run.result {
        Ok(response) => response.retries.clone(),
        Err(e) => e.retries().to_vec(),
    };
    row.action = action(&row.retries);
    row.generations = run.generations;
    row.outcome = outcome(&run.result, row.attempts);
    row.problems = check(scenario, &run, row.attempts, &row.retries);
    row.as_expected = row.problems.is_empty();
    row
}

/// The server behind a scenario: running, or about to come up on a refused port.
enum Server {
    Running(MockServer),
    Starting(SocketAddr, JoinHandle<io::Result<MockServer>>),
}

fn execute(scenario: &Scenario, mut live: Option<&mut dyn Write>) -> Result<Run, String> {
    let mut script = Script::new().text(REPLY);
    if scenario.tool {
        script = script.tool_call(TOOL_NAME, TOOL_ARGS);
    }
    let server = match &scenario.setup {
        Setup::Fault(spec) => {
            // Several faults are separated by `;`.
            for spec in spec.split(';') {
                let rule: FaultRule = spec
                    .parse()
                    .map_err(|e| format!("fault spec {spec:?}: {e}"))?;
                script = script.fault(rule);
            }
            let server = MockServer::start(script)
                .map_err(|e| format!("cannot start the mock server: {e}"))?;
            Server::Running(server)
        }
        Setup::Refused => {
            // Bind a free port and let it go: connecting to it is refused until the server
            // takes it over.
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| format!("cannot reserve a port: {e}"))?;
            let starting = thread::spawn(move || {
                thread::sleep(DOWN_FOR);
                MockServer::start_on(addr, script)
            });
            Server::Starting(addr, starting)
        }
    };
    let base_url = match &server {
        Server::Running(server) => server.base_url(),
        Server::Starting(addr, _) => format!("http://{addr}/v1"),
    };
    let client = Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .connect_timeout(Duration::from_secs(1))
        .first_byte_timeout(scenario.first_byte)
        .idle_timeout(scenario.idle)
        .retry_policy(policy())
        .build()
        .map_err(|e| e.to_string())?;
    let options = CallOptions {
        jitter_seed: Some(1),
        ..CallOptions::default()
    };
    let mut restarts = 0;
    let mut shown = String::new();
    let started = Instant::now();
    let result = client.chat_with(&request(scenario.tool), &options, |event| {
        match event {
            StreamEvent::Restart { .. } => {
                restarts += 1;
                shown.clear();
            }
            StreamEvent::Content { text, .. } => shown.push_str(text),
            _ => {}
        }
        if let Some(out) = live.as_mut() {
            // A closed stdout shows up again when the table is written.
            let _ = show(out, event);
        }
    });
    let elapsed = started.elapsed();
    let server = match server {
        Server::Running(server) => server,
        Server::Starting(addr, starting) => starting
            .join()
            .map_err(|_| "the mock server thread panicked".to_owned())?
            .map_err(|e| format!("the mock server could not take over {addr}: {e}"))?,
    };
    Ok(Run {
        result,
        elapsed,
        restarts,
        shown,
        generations: server.generation_count(),
    })
}

/// Prints a live event of scenario 1.
fn show(out: &mut dyn Write, event: &StreamEvent<'_>) -> io::Result<()> {
    match event {
        StreamEvent::Content { text, .. } => write!(out, "{text}")?,
        StreamEvent::Restart { attempt, reason } => {
            write!(out, "\n  ⟲ restart (attempt {attempt}: {reason})\n  ")?
        }
        StreamEvent::Resumed { offset, .. } => write!(out, " ⟿ resumed at byte {offset} ⟿")?,
        _ => return Ok(()),
    }
    out.flush()
}

/// How the client carried on after each failure, in a few words.
fn action(retries: &[RetryRecord]) -> String {
    if retries.is_empty() {
        return "-".into();
    }
    let words: Vec<String> = retries
        .iter()
        .map(|r| match r.action {
            RetryAction::Resumed { offset } => format!("resumed at {offset}"),
            RetryAction::Reconnected { .. } => "reconnected".into(),
            _ => "restarted".into(),
        })
        .collect();
    words.join(", ")
}

fn outcome(result: &Result<ChatResponse, Error>, attempts: u32) -> String {
    match result {
        Ok(response) if response.retries.is_empty() => "ok".into(),
        Ok(response) => {
            // Runs of one reason collapse: "connection refused (3 times)".
            let mut runs: Vec<(FailureKind, usize)> = Vec::new();
            for retry in &response.retries {
                match runs.last_mut() {
                    Some((reason, n)) if *reason == retry.reason => *n += 1,
                    _ => runs.push((retry.reason, 1)),
                }
            }
            let reasons: Vec<String> = runs
                .iter()
                .map(|&(reason, n)| match n {
                    1 => reason.to_string(),
                    n => format!("{reason} ({n} times)"),
                })
                .collect();
            format!("recovered after {}", reasons.join(", "))
        }
        Err(Error::AfterRetries(e)) => {
            format!("error after {} attempts: {}", e.attempts, e.last)
        }
        Err(e) if attempts <= 1 => format!("error (not retried): {e}"),
        Err(e) => format!("error after {attempts} attempts: {e}"),
    }
}

/// What went differently than the scenario demands (empty: as expected).
fn check(scenario: &Scenario, run: &Run, attempts: u32, retries: &[RetryRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    match (&scenario.want, &run.result) {
        (Want::Answer, Ok(response)) => {
            if response.content() != REPLY {
                problems.push(format!("wrong answer {:?}", response.content()));
            }
            let calls = response.tool_calls();
            let want_calls = usize::from(scenario.tool);
            if calls.len() != want_calls {
                problems.push(format!("{} tool calls, expected {want_calls}", calls.len()));
            }
            for call in calls {
                if call.function.name != TOOL_NAME || call.function.arguments != TOOL_ARGS {
                    problems.push(format!(
                        "wrong tool call {}({})",
                        call.function.name, call.function.arguments
                    ));
                }
            }
        }
        (Want::Answer, Err(e)) => problems.push(format!("expected the answer, got: {e}")),
        (Want::NotRetried(status), Err(Error::Http(http))) if http.status == *status => {
            if let Some(message) = scenario.message {
                if http.error.message != message {
                    problems.push(format!(
                        "error message {:?}, expected {message:?}",
                        http.error.message
                    ));
                }
            }
        }
        (Want::NotRetried(status), Err(e)) => {
            problems.push(format!("expected http {status}, got: {e}"));
        }
        (Want::NotRetried(status), Ok(_)) => {
            problems.push(format!("expected http {status}, got an answer"));
        }
    }
    let (low, high) = (*scenario.attempts.start(), *scenario.attempts.end());
    if !scenario.attempts.contains(&attempts) {
        let want = if low == high {
            low.to_string()
        } else {
            format!("{low} to {high}")
        };
        problems.push(format!("{attempts} attempts, expected {want}"));
    }
    if let Some(first) = retries.first() {
        if !scenario.reasons.contains(&first.reason) {
            problems.push(format!("retried for {}", first.reason));
        }
    }
    if run.generations != scenario.generations {
        problems.push(format!(
            "the server generated {} times, expected {}",
            run.generations, scenario.generations
        ));
    }
    let first = retries.first().map(|r| &r.action);
    match (scenario.carry, first) {
        (Carry::Nothing, None)
        | (Carry::Resume, Some(RetryAction::Resumed { .. }))
        | (Carry::Restart, Some(RetryAction::Restarted)) => {}
        // A replay that ends as the stream did: the client resumes, then restarts.
        (Carry::Restart, Some(RetryAction::Resumed { .. }))
            if retries
                .get(1)
                .is_some_and(|r| r.action == RetryAction::Restarted) => {}
        (carry, first) => problems.push(format!("expected {carry:?}, the client did {first:?}")),
    }
    if scenario.carry == Carry::Resume && run.result.is_ok() && run.shown != REPLY {
        problems.push(format!("the caller was shown {:?}", run.shown));
    }
    match (scenario.restart, run.restarts) {
        (Some(true), 0) => problems.push("no restart event reached the caller".into()),
        (Some(false), n) if n > 0 => problems.push(format!("{n} unexpected restart events")),
        _ => {}
    }
    let ms = run.elapsed.as_millis() as u64;
    if ms < scenario.min_ms {
        problems.push(format!(
            "took {ms} ms, expected at least {}",
            scenario.min_ms
        ));
    }
    if let Some(max) = scenario.max_ms {
        if ms >= max {
            problems.push(format!("took {ms} ms, expected under {max}"));
        }
    }
    problems
}

fn table(rows: &[Row]) -> String {
    let header = [
        "#",
        "scenario",
        "injected fault",
        "attempts",
        "action",
        "generations",
        "ms",
        "expected",
        "outcome",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.number.to_string(),
                r.scenario.to_owned(),
                r.fault.clone(),
                r.attempts.to_string(),
                r.action.clone(),
                r.generations.to_string(),
                r.ms.to_string(),
                if r.as_expected { "yes" } else { "NO" }.to_owned(),
                r.outcome.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Numbers right-aligned, text left-aligned.
    let right = [true, false, false, true, false, true, true, false, false];
    let line = |cells: &[String]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < cells.len() {
                    line.push_str(&pad);
                }
            }
        }
        line.push('\n');
        line
    };
    let mut text = line(&header.map(str::to_owned));
    for row in &cells {
        text.push_str(&line(row));
    }
    text
}
