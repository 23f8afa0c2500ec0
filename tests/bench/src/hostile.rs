//! Peak memory against hostile servers: each case is a loopback server in this process that
//! sends one amplifying answer (a huge JSON body, a huge error line, huge `usage` extras, a
//! tool-call name repeated in every fragment), and a client in a child process (this binary
//! again, `--hostile-child=<case>`) that makes one call with the case's limits, then reports
//! its own peak RSS (`VmHWM`, read by the child itself at the end, so nothing is missed), the
//! outcome, and how many bytes of log lines and error text the call produced.
//!
//! The promise checked: peak RSS ≤ 2 × the configured limit that bounds the case + 16 MiB.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// One hostile case: what the server sends and which limit bounds the client.
pub struct Case {
    pub name: &'static str,
    /// What the case is, for the report.
    pub what: &'static str,
    /// The configured limit that bounds this case, in bytes, and its name.
    pub limit: (usize, &'static str),
    /// Writes the whole response (head and body) to the client.
    serve: fn(&mut TcpStream),
}

pub const CASES: &[Case] = &[
    Case {
        name: "json-60mb",
        what: "`200 application/json` completion, 60 MB of content",
        limit: (64 * MIB, "max_response_bytes (default 64 MiB)"),
        serve: |s| json_body(s, 60_000_000, false),
    },
    Case {
        name: "json-60mb-escaped",
        what: "the same with a `\\n` escape every 8 bytes",
        limit: (64 * MIB, "max_response_bytes (default 64 MiB)"),
        serve: |s| json_body(s, 60_000_000, true),
    },
    Case {
        name: "json-unknown-60mb",
        what: "`200 application/json`, an unknown field `[0,0,…]` of 60 MB",
        limit: (64 * MIB, "max_response_bytes (default 64 MiB)"),
        serve: json_unknown_field,
    },
    Case {
        name: "error-line-6mb",
        what: "one event line `data: {\"error\":[0,0,…]}` of 6 MB",
        limit: (8 * MIB, "sse max_line (default 8 MiB)"),
        serve: |s| sse_error_line(s, false),
    },
    Case {
        name: "event-error-6mb",
        what: "`event: error` with `{\"error\":[0,0,…]}` of 6 MB",
        limit: (8 * MIB, "sse max_line (default 8 MiB)"),
        serve: |s| sse_error_line(s, true),
    },
    Case {
        name: "usage-extras-6mb",
        what: "a usage chunk whose unknown field is 6 MB",
        limit: (8 * MIB, "sse max_line (default 8 MiB)"),
        serve: usage_extras,
    },
    Case {
        name: "thread-usage-every-chunk",
        what: "`chat_in_thread`, slow reader: 20k chunks each with usage carrying 8 KB of extras",
        limit: (MIB, "max_response_bytes = 1 MiB"),
        serve: thread_usage,
    },
    Case {
        name: "thread-repeated-names",
        what: "`chat_in_thread`, slow reader: 20k tool-call fragments each repeating a 10 KB id and name",
        limit: (MIB, "max_response_bytes = 1 MiB"),
        serve: thread_names,
    },
];

/// What one child run reported.
pub struct Outcome {
    pub peak_kib: u64,
    pub result: String,
    pub log_bytes: u64,
    pub error_bytes: u64,
}

/// Runs every case (or those named) and returns the report section.
pub fn section(only: Option<&[String]>) -> String {
    let mut out = String::from("### Peak memory against hostile servers\n\n");
    out.push_str(
        "Each case: one call from a child process (max_retries 0) to a loopback server that \
         sends the case's answer; the child reads its own `VmHWM` at the end. Bound = 2 × the \
         limit + 16 MiB. \"log / error bytes\": what the call wrote to its logger (debug level) \
         and the length of the error's `Display` and `Debug` together.\n\n\
         | case | what the server sends | bounding limit | bound | peak RSS | within | outcome | log / error bytes |\n\
         |---|---|---|---:|---:|---|---|---:|\n",
    );
    for case in CASES {
        if only.is_some_and(|o| !o.iter().any(|n| n == case.name)) {
            continue;
        }
        eprintln!("hostile: {}", case.name);
        let bound_kib = (2 * case.limit.0 + 16 * MIB) as u64 / 1024;
        let row = match run_case(case) {
            Ok(o) => format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} / {} |\n",
                case.name,
                case.what,
                case.limit.1,
                mib(bound_kib),
                mib(o.peak_kib),
                if o.peak_kib <= bound_kib { "yes" } else { "NO" },
                o.result,
                o.log_bytes,
                o.error_bytes
            ),
            Err(e) => format!(
                "| {} | {} | | | | | failed: {e} | |\n",
                case.name, case.what
            ),
        };
        out.push_str(&row);
    }
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn run_case(case: &Case) -> Result<Outcome, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let serve = case.serve;
    let server = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        if read_request(&mut stream) {
            serve(&mut stream);
        }
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Wait for the client to close, so it reads everything before the socket goes.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg(format!("--hostile-child={}", case.name))
        .arg(format!("http://{addr}/v1"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string());
    // A child that never connected leaves the server in `accept`: wake it.
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    let _ = server.join();
    let output = output?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .last()
        .ok_or_else(|| format!("child printed nothing ({})", output.status))?;
    let mut parts = line.splitn(4, '\t');
    let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok());
    let (Some(peak_kib), Some(log_bytes), Some(error_bytes)) = (num(), num(), num()) else {
        return Err(format!("unreadable child report {line:?}"));
    };
    Ok(Outcome {
        peak_kib,
        log_bytes,
        error_bytes,
        result: parts.next().unwrap_or("").to_owned(),
    })
}

/// Reads one request head and its Content-Length body; false if the client went away.
fn read_request(stream: &mut TcpStream) -> bool {
    let mut reader = BufReader::new(stream);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).is_ok()
}

fn head(stream: &mut TcpStream, content_type: &str, length: Option<usize>) {
    let length = length.map_or(String::new(), |n| format!("content-length: {n}\r\n"));
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{length}connection: close\r\n\r\n"
    );
}

/// `n` bytes of `[0,0,…]`-style JSON array text, written in pieces.
fn zeros(stream: &mut TcpStream, n: usize) {
    let piece = "0,".repeat(32 << 10);
    let _ = stream.write_all(b"[");
    let mut left = n;
    while left > piece.len() {
        if stream.write_all(piece.as_bytes()).is_err() {
            return;
        }
        left -= piece.len();
    }
    let _ = stream.write_all("0,".repeat(left / 2).as_bytes());
    let _ = stream.write_all(b"0]");
}

fn json_body(stream: &mut TcpStream, n: usize, escaped: bool) {
    let unit: &[u8] = if escaped { b"abcdef\\n" } else { b"abcdefgh" };
    let prefix = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""#;
    let suffix = br#""},"finish_reason":"stop"}]}"#;
    let units = n / unit.len();
    head(
        stream,
        "application/json",
        Some(prefix.len() + units * unit.len() + suffix.len()),
    );
    let _ = stream.write_all(prefix);
    let piece = unit.repeat(8 << 10);
    let mut left = units;
    while left > 0 {
        let take = left.min(8 << 10);
        if stream.write_all(&piece[..take * unit.len()]).is_err() {
            return;
        }
        left -= take;
    }
    let _ = stream.write_all(suffix);
}

fn json_unknown_field(stream: &mut TcpStream) {
    head(stream, "application/json", None);
    let _ = stream.write_all(br#"{"id":"c","junk":"#);
    zeros(stream, 60_000_000);
    let _ = stream.write_all(
        br#","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#,
    );
}

fn sse_error_line(stream: &mut TcpStream, event_type: bool) {
    head(stream, "text/event-stream", None);
    if event_type {
        let _ = stream.write_all(b"event: error\n");
    }
    let _ = stream.write_all(br#"data: {"error":"#);
    zeros(stream, 6_000_000);
    let _ = stream.write_all(b"}\n\n");
}

fn usage_extras(stream: &mut TcpStream) {
    head(stream, "text/event-stream", None);
    let _ =
        stream.write_all(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n");
    // The finish and the usage in one chunk, so the usage is read before the stream is over.
    let _ = stream.write_all(
        br#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"junk":"#,
    );
    zeros(stream, 6_000_000);
    let _ = stream.write_all(b"}}\n\ndata: [DONE]\n\n");
}

fn thread_usage(stream: &mut TcpStream) {
    head(stream, "text/event-stream", None);
    let extras = format!("\"x\":\"{}\"", "e".repeat(8 << 10));
    for i in 0..20_000u32 {
        let chunk = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w\"}}}}],\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":{i},\"total_tokens\":{i},{extras}}}}}\n\n"
        );
        if stream.write_all(chunk.as_bytes()).is_err() {
            return;
        }
    }
    let _ = stream.write_all(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
    );
}

fn thread_names(stream: &mut TcpStream) {
    head(stream, "text/event-stream", None);
    let id = "i".repeat(10 << 10);
    let name = "n".repeat(10 << 10);
    for i in 0..20_000u32 {
        let args = if i == 0 { "{\\\"a\\\":\\\"" } else { "x" };
        let chunk = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":0,\"id\":\"{id}\",\"type\":\"function\",\"function\":{{\"name\":\"{name}\",\"arguments\":\"{args}\"}}}}]}}}}]}}\n\n"
        );
        if stream.write_all(chunk.as_bytes()).is_err() {
            return;
        }
    }
    let _ = stream.write_all(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
    );
}

// ---- the child ----

/// Bytes of formatted log records (debug and above).
static LOG_BYTES: AtomicU64 = AtomicU64::new(0);

struct CountingLogger;

impl log::Log for CountingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let n = format!("{}", record.args()).len() as u64;
            LOG_BYTES.fetch_add(n, Ordering::Relaxed);
        }
    }
    fn flush(&self) {}
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The child: one call as the case says, then `peak_kib \t log_bytes \t error_bytes \t outcome`.
pub fn child(case: &str, base_url: &str) {
    static LOGGER: CountingLogger = CountingLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    let threaded = case.starts_with("thread-");
    let mut builder = oai_sse::Client::builder()
        .base_url(base_url)
        .max_retries(0)
        .resume(false)
        .roots_from_env(false);
    if threaded {
        builder = builder.chat_limits(oai_sse::ChatLimits {
            max_response_bytes: MIB,
            ..oai_sse::ChatLimits::default()
        });
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            println!("0\t0\t0\tclient: {e}");
            return;
        }
    };
    let request = oai_sse::ChatRequest::new("m", vec![oai_sse::Message::user("hi")]);
    let started = Instant::now();
    let result = if threaded {
        let call = client.chat_in_thread(request, oai_sse::CallOptions::default());
        // A slow reader: nothing taken for a while, then one event at a time.
        std::thread::sleep(Duration::from_secs(2));
        let mut events = 0u64;
        while call.events.recv().is_ok() {
            events += 1;
        }
        let _ = events;
        call.join()
    } else {
        client.chat(&request)
    };
    let elapsed = started.elapsed();
    let (outcome, error_bytes) = match &result {
        Ok(r) => (
            format!(
                "ok: {} B content, {} tool calls, {:.1} s",
                r.content().len(),
                r.tool_calls().len(),
                elapsed.as_secs_f64()
            ),
            0,
        ),
        Err(e) => {
            let shown = e.to_string();
            let debug = format!("{e:?}");
            let mut short: String = shown.chars().take(70).collect();
            if short.len() < shown.len() {
                short.push('…');
            }
            (
                format!("{}: {}", e.kind(), short.replace('|', "\\|")),
                (shown.len() + debug.len()) as u64,
            )
        }
    };
    drop(result);
    println!(
        "{}\t{}\t{}\t{}",
        vm_hwm_kib(),
        LOG_BYTES.load(Ordering::Relaxed),
        error_bytes,
        outcome
    );
}
