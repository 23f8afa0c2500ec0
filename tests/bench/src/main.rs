//! The oai-sse benchmark: SSE parsing throughput and allocations against peer crates and a
//! memchr ceiling, end to end over loopback against the official Python SDK, the cost of many
//! short calls on one client against plain ureq and the Python SDK, and binary size.
//!
//! `cargo run --release --manifest-path tests/bench/Cargo.toml [parse] [e2e] [calls] [size] [hostile]`
//! (all sections when none is named). Progress goes to stderr, the Markdown report to stdout.
//!
//! `recovery` (run only when named: it needs the real llama-server of
//! tests/llama/build-server.sh, and LiteLLM of tests/llama/build-gateway.sh for two rows)
//! breaks one 256-token answer per row and compares the tokens generated and the wall time
//! of each way of recovering with the uncut run (`--runs=N`, default 3).
//!
//! `profile` (never run by default) runs each selected contender once per workload and feed,
//! untimed, for an instruction profiler: `valgrind --tool=callgrind
//! --toggle-collect='oai_sse_bench::contenders::*' tests/bench/target/release/oai-sse-bench
//! profile --workload=multiline --feed=1024 --only=sse-stream,Parser` (`--feed=` takes `whole`
//! or read sizes).

mod alloc;
mod calls;
mod contenders;
mod e2e;
mod harness;
mod hostile;
mod recovery;
mod size;
mod workloads;

use contenders::{ALL as CONTENDERS, Tally};
use harness::{Allocs, Timing};
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};
use workloads::Feed;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(case) = args.iter().find_map(|a| a.strip_prefix("--hostile-child=")) {
        let url = args
            .iter()
            .find(|a| !a.starts_with("--"))
            .map_or("", String::as_str);
        hostile::child(case, url);
        return;
    }
    let sections: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let wants = |s: &str| sections.is_empty() || sections.iter().any(|a| *a == s);
    let filter = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(flag))
            .map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
    };
    let only = Filter {
        workloads: filter("--workload="),
        contenders: filter("--only="),
    };
    if sections.iter().any(|a| *a == "profile") {
        profile(&only, filter("--feed="));
        return;
    }
    let started = Instant::now();
    println!("{}", header());
    if wants("parse") {
        println!("{}", parse_section(&only));
    }
    // The size builds also produce the binary the end-to-end section runs.
    let builds = if wants("size") || wants("e2e") {
        Some([size::build(size::DEFAULT), size::build(size::MINIMAL)])
    } else {
        None
    };
    if wants("e2e") {
        match &builds {
            Some([Ok(default), _]) => println!("{}", e2e_section(default, &args)),
            Some([Err(e), _]) => println!("End to end: skipped, the binary did not build: {e}\n"),
            None => unreachable!(),
        }
    }
    if wants("calls") {
        println!("{}", calls_section(&only));
    }
    if let (true, Some(builds)) = (wants("size"), &builds) {
        println!("{}", size_section(builds));
    }
    if wants("hostile") {
        println!("{}", hostile::section(filter("--case=").as_deref()));
    }
    // Minutes on the real llama-server: only when asked for.
    if sections.iter().any(|a| *a == "recovery") {
        println!("{}", recovery::section(&args));
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
}

/// One untimed pass of each selected contender over each selected workload and feed.
fn profile(only: &Filter, feeds: Option<Vec<String>>) {
    for workload in workloads::all() {
        if !keep(&only.workloads, workload.name) {
            continue;
        }
        for feed in Feed::ALL {
            let name = match feed {
                Feed::Whole => "whole".to_owned(),
                Feed::Reads(n) => n.to_string(),
            };
            if !feeds.as_ref().is_none_or(|f| f.contains(&name)) {
                continue;
            }
            let chunks = feed.chunks(&workload.bytes);
            for c in CONTENDERS.iter().filter(|c| keep(&only.contenders, c.name)) {
                let tally = (c.run)(&chunks);
                eprintln!(
                    "{} / {} / {}: {} events, {} data bytes",
                    workload.name,
                    feed.label(),
                    c.name,
                    tally.events,
                    tally.data_bytes
                );
            }
        }
    }
}

fn header() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "Machine: {cpu}, {cores} cores (nproc). Date: {}. {}.\n\
         Command: `cargo run --release --manifest-path tests/bench/Cargo.toml`\n",
        run("date", &["-u", "+%Y-%m-%d"]),
        run("rustc", &["-V"]),
    )
}

enum Outcome {
    Measured {
        timing: Timing,
        allocs: Allocs,
    },
    Skipped(String),
    Wrong(String),
    /// Passed the guard, not timed yet.
    Pending,
}

struct Row {
    workload: &'static str,
    feed: String,
    bytes: usize,
    events: usize,
    cells: Vec<Outcome>,
}

impl Row {
    fn mbps(&self, i: usize) -> Option<f64> {
        match &self.cells[i] {
            Outcome::Measured { timing, .. } => {
                Some(self.bytes as f64 / timing.median.as_secs_f64() / 1e6)
            }
            _ => None,
        }
    }

    fn index(name: &str) -> usize {
        CONTENDERS
            .iter()
            .position(|c| c.name == name)
            .expect("known")
    }

    /// The fastest peer's index and MB/s.
    fn fastest_peer(&self) -> Option<(usize, f64)> {
        (0..CONTENDERS.len())
            .filter(|&i| CONTENDERS[i].peer())
            .filter_map(|i| self.mbps(i).map(|m| (i, m)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn ceiling(&self) -> Option<f64> {
        self.mbps(CONTENDERS.iter().position(|c| c.ceiling).expect("ceiling"))
    }

    fn floor(&self) -> Option<f64> {
        self.mbps(CONTENDERS.iter().position(|c| c.floor).expect("floor"))
    }
}

/// `--workload=a,b` and `--only=x,y`: run the workloads and contenders whose names contain
/// one of these (for profiling; the report is then partial).
struct Filter {
    workloads: Option<Vec<String>>,
    contenders: Option<Vec<String>>,
}

fn keep(filter: &Option<Vec<String>>, name: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|f| f.iter().any(|s| name.contains(s.as_str())))
}

fn parse_section(only: &Filter) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for workload in workloads::all() {
        if !keep(&only.workloads, workload.name) {
            continue;
        }
        notes.push(format!(
            "- `{}`: {}, {:.1} MB.",
            workload.name,
            workload.what,
            workload.bytes.len() as f64 / 1e6
        ));
        for feed in Feed::ALL {
            let chunks = feed.chunks(&workload.bytes);
            let want = Tally {
                events: workload.events,
                data_bytes: workload.data_bytes,
            };
            let mut cells: Vec<Outcome> = CONTENDERS
                .iter()
                .map(|c| {
                    if !keep(&only.contenders, c.name) {
                        return Outcome::Skipped("not selected".into());
                    }
                    match harness::guard(c.run, &chunks) {
                        Err(why) => Outcome::Skipped(why),
                        Ok(()) => Outcome::Pending,
                    }
                })
                .collect();
            let timed: Vec<usize> = (0..CONTENDERS.len())
                .filter(|&i| matches!(cells[i], Outcome::Pending))
                .collect();
            let runs: Vec<_> = timed.iter().map(|&i| CONTENDERS[i].run).collect();
            eprintln!(
                "{} / {}: timing {} contenders",
                workload.name,
                feed.label(),
                runs.len()
            );
            for (&i, (tally, timing)) in timed.iter().zip(harness::measure(&runs, &chunks)) {
                let c = &CONTENDERS[i];
                if c.ours {
                    assert_eq!(tally, want, "{} on {}", c.name, workload.name);
                }
                cells[i] = if !c.baseline() && tally != want {
                    Outcome::Wrong(format!(
                        "wrong: {} events / {} data bytes, expected {} / {}",
                        tally.events, tally.data_bytes, want.events, want.data_bytes
                    ))
                } else {
                    let allocs = harness::allocations(c.run, &chunks);
                    Outcome::Measured { timing, allocs }
                };
            }
            for (c, outcome) in CONTENDERS.iter().zip(&cells) {
                eprint!("{:>10} {:>11} {:<20}", workload.name, feed.label(), c.name);
                match outcome {
                    Outcome::Measured { timing, .. } => eprintln!(
                        " {:>9.3} ms ±{:.0}% ({} runs)",
                        timing.median.as_secs_f64() * 1e3,
                        timing.spread * 100.0,
                        timing.runs
                    ),
                    Outcome::Skipped(why) | Outcome::Wrong(why) => eprintln!(" {why}"),
                    Outcome::Pending => unreachable!(),
                }
            }
            rows.push(Row {
                workload: workload.name,
                feed: feed.label(),
                bytes: workload.bytes.len(),
                events: workload.events,
                cells,
            });
        }
    }
    let mut out = String::new();
    let names: Vec<&str> = CONTENDERS.iter().map(|c| c.name).collect();
    let line = |out: &mut String, row: &Row, cells: &[String]| {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.workload,
            row.feed,
            cells.join(" | ")
        );
    };
    let head = |out: &mut String, first: &str| {
        let _ = writeln!(out, "| {first} | {} |", names.join(" | "));
        let _ = writeln!(out, "|---|---|{}", "---:|".repeat(names.len()));
    };
    let _ = writeln!(
        out,
        "### SSE parsing\n\nWorkloads (generated deterministically):\n{}\n",
        notes.join("\n")
    );
    let _ = writeln!(
        out,
        "Throughput in MB/s (10^6 bytes of stream per second; median, ± half the interquartile range):\n"
    );
    head(&mut out, "workload | feed");
    let mut footnotes: Vec<String> = Vec::new();
    for row in &rows {
        let cells: Vec<String> = (0..CONTENDERS.len())
            .map(|i| match &row.cells[i] {
                Outcome::Measured { timing, .. } => format!(
                    "{} ±{:.0}%",
                    fmt_mbps(row.mbps(i).unwrap_or_default()),
                    timing.spread * 100.0
                ),
                Outcome::Pending => unreachable!(),
                Outcome::Skipped(why) | Outcome::Wrong(why) => {
                    footnotes.push(format!(
                        "{} on {} / {}: {why}",
                        CONTENDERS[i].name, row.workload, row.feed
                    ));
                    format!("n/a [{}]", footnotes.len())
                }
            })
            .collect();
        line(&mut out, row, &cells);
    }
    for (i, note) in footnotes.iter().enumerate() {
        let _ = writeln!(out, "\n[{}] {note}", i + 1);
    }
    let _ = writeln!(
        out,
        "\nTime per event in ns (median; for the ceiling and the floor, per event of the stream):\n"
    );
    head(&mut out, "workload | feed");
    for row in &rows {
        let cells: Vec<String> = (0..CONTENDERS.len())
            .map(|i| match &row.cells[i] {
                Outcome::Measured { timing, .. } => {
                    format!(
                        "{:.0}",
                        timing.median.as_secs_f64() * 1e9 / row.events as f64
                    )
                }
                _ => "n/a".into(),
            })
            .collect();
        line(&mut out, row, &cells);
    }
    let _ = writeln!(
        out,
        "\noai-sse against the fastest peer, the memchr ceiling and the scan + UTF-8 floor \
         (throughput ratios; \"floor ÷ peer\" bounds what any safe parser handing out text could \
         reach against that peer):\n"
    );
    let _ = writeln!(
        out,
        "| workload | feed | fastest peer | EventReader ÷ peer | Parser ÷ peer | floor ÷ peer | EventReader ÷ ceiling | Parser ÷ ceiling | EventReader ÷ floor |\n|---|---|---|---:|---:|---:|---:|---:|---:|"
    );
    let reader = Row::index("oai-sse EventReader");
    let parser = Row::index("oai-sse Parser");
    let ratio = |a: Option<f64>, b: Option<f64>, pct: bool| match (a, b) {
        (Some(a), Some(b)) if pct => format!("{:.0}%", a / b * 100.0),
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    };
    for row in &rows {
        let peer = row.fastest_peer();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.workload,
            row.feed,
            peer.map_or("none", |(i, _)| CONTENDERS[i].name),
            ratio(row.mbps(reader), peer.map(|p| p.1), false),
            ratio(row.mbps(parser), peer.map(|p| p.1), false),
            ratio(row.floor(), peer.map(|p| p.1), false),
            ratio(row.mbps(reader), row.ceiling(), true),
            ratio(row.mbps(parser), row.ceiling(), true),
            ratio(row.mbps(reader), row.floor(), true),
        );
    }
    let _ = writeln!(
        out,
        "\nHeap allocations per event, whole pass / steady state (the second half of the stream \
         only, so start-up buffers do not count):\n"
    );
    head(&mut out, "workload | feed");
    for row in &rows {
        let cells: Vec<String> = (0..CONTENDERS.len())
            .map(|i| match &row.cells[i] {
                Outcome::Measured { allocs, .. } if !CONTENDERS[i].baseline() => {
                    format!(
                        "{} / {}",
                        fmt_count(allocs.per_event),
                        fmt_count(allocs.steady)
                    )
                }
                Outcome::Measured { .. } => "0 / 0".into(),
                _ => "n/a".into(),
            })
            .collect();
        line(&mut out, row, &cells);
    }
    let _ = writeln!(out, "\n{}", parse_targets(&rows, reader, parser));
    out
}

fn parse_targets(rows: &[Row], reader: usize, parser: usize) -> String {
    let mut out =
        String::from("Targets (EventReader, the API the client uses; Parser in brackets):\n");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for row in rows {
        let peer = row.fastest_peer().map(|p| p.1);
        let ceiling = row.ceiling();
        let r = row.mbps(reader);
        let p = row.mbps(parser);
        let x = |a: Option<f64>, b: Option<f64>| a.zip(b).map_or(0.0, |(a, b)| a / b);
        if row.workload.starts_with("chat") {
            let _ = writeln!(
                out,
                "- {} / {}: ≥ 2x fastest peer: {} ({:.2}x [{:.2}x]; the floor: {:.2}x); ≥ 25% of ceiling: {} ({:.0}% [{:.0}%])",
                row.workload,
                row.feed,
                verdict(x(r, peer) >= 2.0),
                x(r, peer),
                x(p, peer),
                x(row.floor(), peer),
                verdict(x(r, ceiling) >= 0.25),
                x(r, ceiling) * 100.0,
                x(p, ceiling) * 100.0,
            );
        } else if row.workload == "multiline" {
            // Issue 13: generic feeds carry multi-line data; at least as fast as any peer,
            // through both APIs.
            let _ = writeln!(
                out,
                "- multiline / {}: ≥ 1x fastest peer: {} ({:.2}x [{:.2}x])",
                row.feed,
                verdict(x(r, peer) >= 1.0 && x(p, peer) >= 1.0),
                x(r, peer),
                x(p, peer),
            );
        } else if row.workload == "long" {
            let _ = writeln!(
                out,
                "- long / {}: ≥ 50% of ceiling: {} ({:.0}% [{:.0}%])",
                row.feed,
                verdict(x(r, ceiling) >= 0.5),
                x(r, ceiling) * 100.0,
                x(p, ceiling) * 100.0,
            );
        }
    }
    let steady: Vec<String> = rows
        .iter()
        .filter_map(|row| match &row.cells[reader] {
            Outcome::Measured { allocs, .. } if allocs.steady > 0.0 => Some(format!(
                "{} / {}: {}",
                row.workload,
                row.feed,
                fmt_count(allocs.steady)
            )),
            _ => None,
        })
        .collect();
    let _ = writeln!(
        out,
        "- 0 allocations per event in steady state through EventReader on every workload and feed: {}{}",
        verdict(steady.is_empty()),
        if steady.is_empty() {
            String::new()
        } else {
            format!(" ({})", steady.join(", "))
        }
    );
    out
}

fn fmt_mbps(mbps: f64) -> String {
    if mbps >= 100.0 {
        format!("{mbps:.0}")
    } else {
        format!("{mbps:.1}")
    }
}

fn fmt_count(n: f64) -> String {
    if n == 0.0 {
        "0".into()
    } else if n < 0.01 {
        format!("{n:.4}")
    } else {
        format!("{n:.2}")
    }
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn fmt_us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `--baseline=PATH`: also measure that (older) `oai-sse` binary, interleaved with this one.
fn e2e_section(build: &size::Build, args: &[String]) -> String {
    let baseline = args
        .iter()
        .find_map(|a| a.strip_prefix("--baseline="))
        .map(std::path::PathBuf::from);
    let mut out = String::from("### End to end over loopback\n\n");
    let _ = writeln!(
        out,
        "The mock server (`oai_sse::mock::MockServer`, in the benchmark process) streams \"word\" \
         {} and {} times, one `chat.completion.chunk` per word, as fast as the client reads. \
         Client only: the child's CPU time (user + sys) from `wait4`, its peak RSS from its `VmHWM` \
         (polled every millisecond). Marginal CPU per \
         chunk = (CPU at {}k − CPU at {}k) / {}k, so process start-up cancels out.\n",
        e2e::SHORT,
        e2e::LONG,
        e2e::LONG / 1000,
        e2e::SHORT / 1000,
        (e2e::LONG - e2e::SHORT) / 1000
    );
    eprintln!("end to end: oai-sse");
    let (ours, base) = match &baseline {
        Some(path) => match e2e::oai_sse_against(&build.binary, path) {
            Ok((ours, base)) => (Ok(ours), Some(Ok(base))),
            Err(e) => (Err(e.clone()), Some(Err(e))),
        },
        None => (e2e::oai_sse(&build.binary), None),
    };
    eprintln!("end to end: Python SDK");
    let python = e2e::python_sdk().and_then(|p| e2e::python(&p));
    let _ = writeln!(
        out,
        "| client | runs | wall, 50k chunks | CPU, 50k chunks | CPU per chunk (whole run) | CPU per chunk (marginal) | peak RSS, 10k | peak RSS, 50k |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for client in [Some(&ours), base.as_ref(), Some(&python)]
        .into_iter()
        .flatten()
    {
        match client {
            Ok(c) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.name,
                    c.runs,
                    fmt_ms(c.long.wall),
                    fmt_ms(c.long.cpu),
                    fmt_us(c.cpu_per_chunk()),
                    fmt_us(c.marginal_cpu_per_chunk()),
                    fmt_mib(c.short.max_rss_kib),
                    fmt_mib(c.long.max_rss_kib),
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| skipped: {e} | | | | | | | |");
            }
        }
    }
    let _ = writeln!(out);
    if let Ok(ours) = &ours {
        if let Ok(py) = &python {
            let whole = py.cpu_per_chunk().as_secs_f64() / ours.cpu_per_chunk().as_secs_f64();
            let marginal = py.marginal_cpu_per_chunk().as_secs_f64()
                / ours.marginal_cpu_per_chunk().as_secs_f64().max(1e-12);
            let _ = writeln!(
                out,
                "- CPU per chunk ≤ 1/10 of the Python SDK's: {} (Python uses {whole:.0}x the CPU per \
                 chunk over the whole run, {marginal:.0}x per marginal chunk)",
                if whole >= 10.0 && marginal >= 10.0 {
                    "met"
                } else {
                    "MISSED"
                },
            );
        } else {
            let _ = writeln!(
                out,
                "- CPU against the Python SDK: not measured (see the table)"
            );
        }
        if let Some(Ok(base)) = &base {
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
            let whole = ratio(ours.cpu_per_chunk(), base.cpu_per_chunk());
            let marginal = ratio(ours.marginal_cpu_per_chunk(), base.marginal_cpu_per_chunk());
            let _ = writeln!(
                out,
                "- CPU per chunk no worse than the baseline binary's (within 5%): {} ({whole:.2}x \
                 over the whole run, {marginal:.2}x per marginal chunk)",
                if whole <= 1.05 && marginal <= 1.05 {
                    "met"
                } else {
                    "MISSED"
                },
            );
        }
        let rss = ours.long.max_rss_kib;
        let grown = ours.long.max_rss_kib.saturating_sub(ours.short.max_rss_kib);
        let text_kib = ((e2e::LONG - e2e::SHORT) * 5) as u64 / 1024;
        let _ = writeln!(
            out,
            "- peak RSS under 8 MiB at 50k chunks: {} ({}); growth from 10k to 50k: {grown} KiB, \
             against {text_kib} KiB more aggregated text",
            if rss < 8 * 1024 { "met" } else { "MISSED" },
            fmt_mib(rss),
        );
    }
    out
}

/// `--only=` selects clients here too: `oai-sse`, `ureq`, `python`.
fn calls_section(only: &Filter) -> String {
    let results = calls::run(e2e::python_sdk, &|name| keep(&only.contenders, name));
    let mut out = String::from(
        "### Many short calls on one client

",
    );
    let _ = writeln!(
        out,
        "{} streamed chat calls one after the other (after {} warm-up calls) on one client, \
         against a loopback keep-alive mock server (a 7-word reply: 9 chunks, and a usage chunk \
         for the Rust clients, which send the request oai-sse sends), over plain HTTP \
         and over TLS (a TLS proxy in front of the mock, with a CA made for the run). The Rust \
         clients alternate in rounds of 100 calls. Per call: the median wall time. Threads: \
         created by the calling thread, counted exactly by interposing `pthread_create` \
         (Python: the most OS threads alive beyond those before the calls, sampled after each \
         call). Connections and handshakes: counted by the servers over all the calls.\n",
        calls::CALLS,
        20
    );
    let _ = writeln!(
        out,
        "| client | scheme | per call | ÷ ureq | threads per call | connections | TLS handshakes |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let floor = |scheme: &str| {
        results
            .iter()
            .flatten()
            .find(|m| m.scheme == scheme && m.client.starts_with("ureq"))
            .map(|m| m.per_call)
    };
    let mut notes = Vec::new();
    for result in &results {
        match result {
            Ok(m) => {
                let ratio = floor(m.scheme).map_or("n/a".into(), |f| {
                    format!("{:.2}x", m.per_call.as_secs_f64() / f.as_secs_f64())
                });
                let threads = match (m.threads_per_call, m.extra_threads) {
                    (Some(t), _) => format!("{t}"),
                    (None, Some(extra)) => format!("{extra} (alive)"),
                    (None, None) => "n/a".into(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {ratio} | {threads} | {} | {} |",
                    m.client,
                    m.scheme,
                    fmt_us(m.per_call),
                    m.connections,
                    m.handshakes.map_or("–".into(), |h| h.to_string()),
                );
            }
            Err(e) => notes.push(e.clone()),
        }
    }
    for note in &notes {
        let _ = writeln!(out, "\n- not measured: {note}");
    }
    let _ = writeln!(out, "\nTargets (oai-sse):");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for scheme in ["http", "https"] {
        let Some(ours) = results
            .iter()
            .flatten()
            .find(|m| m.scheme == scheme && m.client == "oai-sse")
        else {
            let _ = writeln!(out, "- {scheme}: not measured");
            continue;
        };
        let ratio = floor(scheme).map(|f| ours.per_call.as_secs_f64() / f.as_secs_f64());
        let calls = (ours.calls + 20) as f64;
        let _ = writeln!(
            out,
            "- {scheme}: ≤ 1.2x plain ureq per call: {} ({}); 0 threads per call: {} ({}); \
             1 connection{} per 1,000 calls: {} ({:.1} connections{})",
            ratio.map_or("n/a", |r| verdict(r <= 1.2)),
            ratio.map_or("n/a".into(), |r| format!("{r:.2}x")),
            ours.threads_per_call.map_or("n/a", |t| verdict(t == 0.0)),
            ours.threads_per_call
                .map_or("n/a".into(), |t| t.to_string()),
            if scheme == "https" {
                " and 1 handshake"
            } else {
                ""
            },
            verdict(
                ours.connections as f64 / calls * 1000.0 <= 1.0
                    && ours
                        .handshakes
                        .is_none_or(|h| h as f64 / calls * 1000.0 <= 1.0)
            ),
            ours.connections as f64 / calls * 1000.0,
            ours.handshakes.map_or(String::new(), |h| format!(
                ", {:.1} handshakes",
                h as f64 / calls * 1000.0
            )),
        );
    }
    out
}

fn size_section(builds: &[Result<size::Build, String>; 2]) -> String {
    let mut out = String::from(
        "### Size and footprint\n\n| build | stripped release binary | crates in the build (`cargo tree -e normal`) | target |\n|---|---:|---:|---|\n",
    );
    let limits = [3_000_000, 1_200_000];
    for (build, limit) in builds.iter().zip(limits) {
        match build {
            Ok(b) => {
                let _ = writeln!(
                    out,
                    "| {} | {:.2} MB ({:.2} MiB, {} bytes) | {} | < {:.1} MB: {} |",
                    b.label,
                    b.bytes as f64 / 1e6,
                    b.bytes as f64 / f64::from(1 << 20),
                    b.bytes,
                    b.crates,
                    limit as f64 / 1e6,
                    if b.bytes < limit { "met" } else { "MISSED" }
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| build failed: {e} | | | |");
            }
        }
    }
    out
}
