//! `oai-sse chat`: one streamed chat turn against any OpenAI-compatible server.

use super::Failure;
use super::args::{Args, UsageError};
use oai_sse::{
    CallOptions, CancelHandle, ChatRequest, ChatResponse, Client, ClientBuilder, Error, Message,
    RetryAction, RetryNotice, RetryPolicy, RetryRecord, StreamEvent, ToolCall,
};
use serde::Serialize;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HELP: &str = "\
usage: oai-sse chat [options] [PROMPT...]

Streams one chat completion. The reply goes to stdout as it arrives, reasoning to stderr.
Transient failures (dropped or reset connections, stalls, 408/429/502/503/504, truncated
tool-call JSON) are retried with exponential backoff; a stream that breaks on llama.cpp is
resumed where it broke, without generating anything twice. API errors are not retried.

  PROMPT...                 the user message (words are joined); with input piped on stdin,
                            the prompt, a blank line, then stdin (`chat \"Review this\" < a.diff`);
                            without PROMPT, or with `-`, stdin alone
  -m, --model NAME          model (default: $OPENAI_MODEL, else the request file's, else the
                            first model the server lists, else none: llama.cpp needs none)
  -s, --system TEXT         a system message first
  -H, --header 'Name: value'  an extra request header (repeatable)
  --base-url URL            server (default: $OPENAI_BASE_URL, else http://127.0.0.1:8080/v1)
  --max-tokens N            max_tokens
  --temperature F           temperature
  --request FILE            send this JSON request body (messages, tools, n, ...); `stream`
                            is forced on; the options above override its fields, PROMPT is
                            appended as a user message
  -j, --json                print nothing while streaming; print the response as one
                            chat.completion JSON object (OpenAI's key order, plus \"retries\"
                            and \"timings\"); on failure, {\"error\":{kind, message, status,
                            retries}} on stdout (exit 1)
  --stats                   after the reply, one line on stderr: time to first token,
                            tokens and tokens/s, attempts (resumed, restarted), bytes
  --cacert FILE             trust the CA certificates in this PEM file (instead of the
                            built-in roots; $SSL_CERT_FILE is honoured too)
  --connect-timeout S       connect limit in seconds (default 10)
  --first-byte-timeout S    limit until the first response byte (default 300)
  --idle-timeout S          how long one read of the stream may wait (default 60)
  --deadline S              limit on the whole call, retries included (default none)
  --max-retries N           retries after the first attempt (default 3; 0: none at all)
  --max-wait-for-server S   wait this long for a server that is loading (503) or went away
                            (refused after it answered), told in seconds, not counted
                            against --max-retries (default 120)
  --no-resume               restart a broken stream instead of resuming it
  --no-mid-stream-retry     do not restart once output has been printed (resuming is fine)
  -q, --quiet               no retry lines on stderr
  -v, --verbose             this crate's decisions on stderr (connections, retries,
                            resumes, timings); -vv: every crate's debug logs, ureq's
                            included (or set RUST_LOG)

The API key is read from $OPENAI_API_KEY. With several choices (`n` in a --request file) the
reply is printed at the end, one block per choice. Ctrl-C cancels the call, ends the line,
prints `interrupted` and exits 130; a closed stdout (`| head`) stops the call quietly.
Errors print one line on stderr and exit 1; usage mistakes exit 2.";

/// Options taking a value, for the argument scanner.
pub const TAKES_VALUE: &[&str] = &[
    "--base-url",
    "-m",
    "--model",
    "-s",
    "--system",
    "-H",
    "--header",
    "--max-tokens",
    "--temperature",
    "--request",
    "--cacert",
    "--connect-timeout",
    "--first-byte-timeout",
    "--idle-timeout",
    "--deadline",
    "--max-retries",
    "--max-wait-for-server",
];

/// Exit status after Ctrl-C (128 + SIGINT), as shells expect.
const INTERRUPTED: u8 = 130;

struct Settings {
    /// `-v` given this often (`-vv` counts 2).
    verbose: u32,
    base_url: String,
    json: bool,
    quiet: bool,
    stats: bool,
    builder: ClientBuilder,
    request: ChatRequest,
    /// The model was not given anywhere: ask the server.
    model_unknown: bool,
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse(mut args: Args) -> Result<Settings, Failure> {
    let base_url = args
        .value::<String>(&["--base-url"])?
        .or_else(|| non_empty_env("OPENAI_BASE_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:8080/v1".into());
    let model = args
        .value::<String>(&["--model", "-m"])?
        .or_else(|| non_empty_env("OPENAI_MODEL"));
    let system = args.value::<String>(&["--system", "-s"])?;
    let headers = args.values(&["--header", "-H"])?;
    let max_tokens = args.value::<u32>(&["--max-tokens"])?;
    let temperature = args.value::<f32>(&["--temperature"])?;
    let request_file = args.value::<String>(&["--request"])?;
    let cacert = args.value::<String>(&["--cacert"])?;
    let json = args.flag(&["--json", "-j"])?;
    let quiet = args.flag(&["--quiet", "-q"])?;
    let verbose = args.count(&["-v", "--verbose"])? + 2 * args.count(&["-vv"])?;
    let stats = args.flag(&["--stats"])?;
    let connect = args.seconds(&["--connect-timeout"])?;
    let first_byte = args.seconds(&["--first-byte-timeout"])?;
    let idle = args.seconds(&["--idle-timeout"])?;
    let deadline = args.seconds(&["--deadline"])?;
    let max_wait = args.value::<f64>(&["--max-wait-for-server"])?;
    let mut retry = RetryPolicy::default();
    if let Some(n) = args.value::<u32>(&["--max-retries"])? {
        retry.max_retries = n;
    }
    if let Some(s) = max_wait {
        retry.max_wait_for_server =
            Some(Duration::try_from_secs_f64(s).map_err(|_| {
                UsageError("--max-wait-for-server must be a number of seconds".into())
            })?);
    }
    if args.flag(&["--no-mid-stream-retry"])? {
        retry.retry_after_output = false;
    }
    if args.flag(&["--no-resume"])? {
        retry.resume = false;
    }
    let words = args.finish(usize::MAX)?;

    let mut request = match &request_file {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|e| Failure::Runtime(format!("reading {path}: {e}")))?;
            serde_json::from_slice::<ChatRequest>(&text)
                .map_err(|e| Failure::Runtime(format!("{path} is not a chat request: {e}")))?
        }
        None => ChatRequest::new(String::new(), Vec::new()),
    };
    if let Some(model) = model {
        request.model = model;
    }
    if let Some(system) = system {
        request.messages.insert(0, Message::system(system));
    }
    if let Some(prompt) = prompt(&words, request_file.is_some())? {
        request.messages.push(Message::user(prompt));
    }
    if request.messages.is_empty() {
        let why = match &request_file {
            Some(path) => format!("{path} has no messages and no PROMPT was given"),
            None => "nothing to send: give a PROMPT, pipe one on stdin, or a --request file".into(),
        };
        return Err(UsageError(why).into());
    }
    if let Some(n) = max_tokens {
        request.max_tokens = Some(n);
    }
    if let Some(t) = temperature {
        request.temperature = Some(t);
    }

    let mut builder = Client::builder().base_url(&base_url).retry_policy(retry);
    if let Some(key) = non_empty_env("OPENAI_API_KEY") {
        builder = builder.api_key(key);
    }
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| UsageError(format!("-H {header:?}: expected 'Name: value'")))?;
        builder = builder.header(name.trim(), value.trim());
    }
    if let Some(path) = cacert {
        builder = builder.root_certificate_file(path);
    }
    if let Some(d) = connect {
        builder = builder.connect_timeout(d);
    }
    if let Some(d) = first_byte {
        builder = builder.first_byte_timeout(d);
    }
    if let Some(d) = idle {
        builder = builder.idle_timeout(d);
    }
    builder = builder.deadline(deadline);
    Ok(Settings {
        verbose,
        base_url,
        json,
        quiet,
        stats,
        builder,
        model_unknown: request.model.is_empty(),
        request,
    })
}

/// The user message from the words and stdin: the words joined; with stdin piped, the words,
/// a blank line and stdin; `-` or no words, stdin alone (none with a request file).
fn prompt(words: &[String], have_request_file: bool) -> Result<Option<String>, Failure> {
    let stdin_piped = !io::stdin().is_terminal();
    match words {
        [only] if only == "-" => read_stdin().map(Some),
        [] if have_request_file => Ok(None),
        [] => {
            if !stdin_piped {
                eprintln!("oai-sse: reading the prompt from the terminal; end it with Ctrl-D");
            }
            read_stdin().map(Some)
        }
        words => {
            let mut prompt = words.join(" ");
            if stdin_piped {
                let piped = read_stdin()?;
                if !piped.trim().is_empty() {
                    prompt.push_str("\n\n");
                    prompt.push_str(&piped);
                }
            }
            Ok(Some(prompt))
        }
    }
}

fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::Runtime(format!("reading the prompt from stdin: {e}")))?;
    Ok(text)
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut settings = parse(args)?;
    // Retry lines are printed here, so the library's retry warnings stay quiet unless asked
    // for with -v or RUST_LOG.
    match settings.verbose {
        0 => super::logging::init(log::LevelFilter::Error),
        1 => super::logging::init(log::LevelFilter::Debug),
        _ => super::logging::init_all(log::LevelFilter::Debug),
    }
    let client = settings
        .builder
        .clone()
        .build()
        .map_err(|e| Failure::Usage(UsageError(e.to_string())))?;
    if settings.model_unknown {
        // llama.cpp serves one model and ignores the name; other servers list theirs.
        match client.models() {
            Ok(models) => {
                if let Some(first) = models.into_iter().next() {
                    log::debug!("no model given; using the server's first: {first}");
                    settings.request.model = first;
                }
            }
            Err(err) => log::debug!("no model given and none listed ({err}); sending none"),
        }
    }

    let cancel = CancelHandle::new();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (cancel, interrupted) = (cancel.clone(), Arc::clone(&interrupted));
        // Fails only if a handler is already set; then Ctrl-C keeps its default effect.
        let _ = ctrlc::set_handler(move || {
            interrupted.store(true, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        });
    }
    let last_reason = Arc::new(Mutex::new(None));
    let mut options = CallOptions {
        cancel: Some(cancel),
        ..CallOptions::default()
    };
    {
        let (quiet, last_reason) = (settings.quiet, Arc::clone(&last_reason));
        let server = authority(&settings.base_url).to_owned();
        options.on_retry = Some(Arc::new(move |notice: &RetryNotice<'_>| {
            let reason = short_reason(notice.error);
            if !quiet && !matches!(notice.action, RetryAction::Resumed { .. }) {
                eprintln!("{}", retry_line(notice, &server, &reason));
            }
            *last_reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        }));
    }

    let choices = settings.request.choices_requested();
    let mut printer = Printer::new(settings.json, settings.quiet, choices > 1, last_reason);
    let started = Instant::now();
    let result = client.chat_with(&settings.request, &options, |event| printer.print(event));
    printer.end_line();
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("interrupted");
        return Err(Failure::Exit(INTERRUPTED));
    }
    if printer.stdout_closed {
        return Err(Failure::StdoutClosed);
    }
    if let Some(reason) = printer.diverged {
        return Err(Failure::Runtime(format!(
            "the server restarted the answer after {reason} and its new answer differs from \
             the one already printed: stopped rather than write a second answer after it \
             (--json waits for the whole answer)"
        )));
    }
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            if settings.json {
                print_json(&JsonError::from(&err))?;
            }
            return Err(Failure::Runtime(super::sanitize(&err.to_string())));
        }
    };
    if let Some(err) = printer.error.take() {
        return Err(err.into());
    }
    if !settings.quiet {
        // What each break cost, now that the retry for it is settled (a resume was told
        // when it happened; a retry before the stream's first byte, by its retry line).
        for record in &response.retries {
            let before_the_stream = record.at_byte == 0 && record.passed_over.is_none();
            if !matches!(record.action, RetryAction::Resumed { .. }) && !before_the_stream {
                eprintln!("{}", retry_words(record));
            }
        }
    }
    if choices > 1 && !settings.json {
        printer.print_blocks(&response)?;
    } else if !settings.json {
        printer.print_tool_calls(response.tool_calls())?;
    }
    printer.note_endings(&response);
    if settings.stats {
        eprintln!(
            "{}",
            stats(&response, printer.first_output.map(|at| at - started))
        );
    }
    if settings.json {
        print_json(&response)?;
    }
    Ok(())
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `--json` on failure.
#[derive(Serialize)]
struct JsonError<'a> {
    error: JsonErrorBody<'a>,
}

#[derive(Serialize)]
struct JsonErrorBody<'a> {
    kind: &'static str,
    message: String,
    status: Option<u16>,
    retries: &'a [RetryRecord],
}

impl<'a> From<&'a Error> for JsonError<'a> {
    fn from(err: &'a Error) -> Self {
        Self {
            error: JsonErrorBody {
                kind: err.kind().as_str(),
                message: super::sanitize(&err.to_string()),
                status: err.status(),
                retries: err.retries(),
            },
        }
    }
}

/// One retry in words: what the next attempt did, where the break fell, why, and why a
/// better way of carrying on was passed over (`restarted at byte 1483 after unexpected eof:
/// the server cannot resume (404)`).
fn retry_words(record: &RetryRecord) -> String {
    let action = match record.action {
        RetryAction::Resumed { offset } => format!("resumed at byte {offset}"),
        RetryAction::Continued => format!("continued at byte {}", record.at_byte),
        RetryAction::Reconnected { .. } => format!("reconnected at byte {}", record.at_byte),
        _ => format!("restarted at byte {}", record.at_byte),
    };
    match &record.passed_over {
        Some(why) => format!("{action} after {}: {why}", record.reason),
        None => format!("{action} after {}", record.reason),
    }
}

/// The `--stats` line.
fn stats(response: &ChatResponse, first_token: Option<Duration>) -> String {
    let mut parts = Vec::new();
    if let Some(ttft) = first_token {
        parts.push(format!("first token after {} ms", ttft.as_millis()));
    }
    let last = response.timings.attempts.last();
    let tokens = response.usage.as_ref().map(|u| u.completion_tokens);
    let streaming = last.and_then(|a| Some(a.last_token?.saturating_sub(a.first_token?)));
    match (tokens, streaming) {
        (Some(n), Some(span)) if !span.is_zero() => parts.push(format!(
            "{n} tokens in {:.2} s ({:.1} tokens/s)",
            span.as_secs_f64(),
            n as f64 / span.as_secs_f64()
        )),
        (Some(n), _) => parts.push(format!("{n} tokens")),
        _ => {}
    }
    if let Some(rate) = response
        .timings
        .server
        .as_ref()
        .and_then(|s| s.tokens_per_second())
    {
        parts.push(format!("server {rate:.1} tokens/s"));
    }
    // One attempt per retry and the first: a resume passed over within a retry (its GET
    // is in the timings) is part of that retry.
    let attempts = response.retries.len() + 1;
    let how: Vec<String> = response.retries.iter().map(retry_words).collect();
    let s = if attempts == 1 { "" } else { "s" };
    if how.is_empty() {
        parts.push(format!("{attempts} attempt{s}"));
    } else {
        parts.push(format!("{attempts} attempt{s} ({})", how.join(", ")));
    }
    let bytes: u64 = response.timings.attempts.iter().map(|a| a.bytes).sum();
    parts.push(format!("{bytes} bytes"));
    format!("stats: {}", parts.join(", "))
}

/// The stderr line for a retry: a wait for a server that is down or loading in seconds of
/// its budget (it counts no retry), any other retry against `--max-retries`.
fn retry_line(notice: &RetryNotice<'_>, server: &str, reason: &str) -> String {
    match notice.waiting {
        Some((down_for, budget)) => format!(
            "waiting for {server} ({reason}): {} s of {} s",
            down_for.as_secs(),
            budget.as_secs()
        ),
        None => format!(
            "retry {}/{} after {} ms: {reason}",
            notice.retry,
            notice.max_retries,
            notice.delay.as_millis()
        ),
    }
}

/// Tool-call arguments on one line: JSON with the whitespace between its tokens dropped
/// (key order and text kept as the model wrote them), or, if they are not JSON, as a JSON
/// string.
fn one_line_json(arguments: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_err() {
        return serde_json::Value::from(arguments).to_string();
    }
    let mut out = String::with_capacity(arguments.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in arguments.chars() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// `host:port` of a URL, without scheme, userinfo or path.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    host.rsplit_once('@').map_or(host, |(_, host)| host)
}

/// A retry reason in a few words: the failure kind for transport trouble, the server's
/// message otherwise.
fn short_reason(err: &Error) -> String {
    match err.transport() {
        Some(t) => t.kind().to_string(),
        None => super::sanitize(&err.to_string()),
    }
}

/// Writes deltas as they arrive: content to stdout, reasoning to stderr (dim on a terminal).
/// With several choices nothing is streamed: each choice is printed as a block at the end.
struct Printer {
    /// Notes on stderr: resumes, restarts, tool calls, a reply cut at max_tokens (off with
    /// --quiet).
    notes: bool,
    /// Deltas are not streamed: `--json`, or several choices printed as blocks at the end.
    blocks: bool,
    /// stdout is a terminal: escape control sequences in the model's text (a reply must
    /// not retitle the window or clear the screen); a pipe gets the text as it is.
    tty: bool,
    dim: bool,
    in_reasoning: bool,
    wrote_content: bool,
    first_output: Option<Instant>,
    last_reason: Arc<Mutex<Option<String>>>,
    stdout_closed: bool,
    /// The server restarted the answer and the new one differs from what stdout (not a
    /// terminal) already holds: the call was stopped there, with this reason.
    diverged: Option<oai_sse::FailureKind>,
    error: Option<io::Error>,
}

impl Printer {
    fn new(json: bool, quiet: bool, blocks: bool, last_reason: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            notes: !quiet,
            blocks: json || blocks,
            tty: io::stdout().is_terminal(),
            dim: io::stderr().is_terminal(),
            in_reasoning: false,
            wrote_content: false,
            first_output: None,
            last_reason,
            stdout_closed: false,
            diverged: None,
            error: None,
        }
    }

    fn print(&mut self, event: &StreamEvent<'_>) -> ControlFlow<()> {
        if event.is_output() && self.first_output.is_none() {
            self.first_output = Some(Instant::now());
        }
        if self.error.is_some() || self.stdout_closed {
            return ControlFlow::Break(());
        }
        let result = match event {
            StreamEvent::Content { text, .. } | StreamEvent::Refusal { text, .. }
                if !self.blocks =>
            {
                self.leave_reasoning();
                self.wrote_content = true;
                let text = if self.tty {
                    oai_sse::redact::escape_controls(text)
                } else {
                    (*text).into()
                };
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            StreamEvent::Reasoning { text, .. } if !self.blocks => {
                let mut err = io::stderr().lock();
                if !self.in_reasoning && self.dim {
                    let _ = err.write_all(b"\x1b[2m");
                }
                self.in_reasoning = true;
                let text = if self.dim {
                    oai_sse::redact::escape_controls(text)
                } else {
                    (*text).into()
                };
                err.write_all(text.as_bytes()).and_then(|()| err.flush())
            }
            StreamEvent::Resumed { offset, .. } if self.notes => {
                let reason = self
                    .last_reason
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_else(|| "a broken stream".into());
                self.leave_reasoning();
                let mut err = io::stderr().lock();
                if self.wrote_content {
                    // Keep the reply's line intact: the note goes on its own line of stderr.
                    let _ = err.write_all(b"\n");
                }
                writeln!(err, "resumed at byte {offset} after {reason}")
            }
            // A file or a pipe cannot take back what it was given: stop rather than write a
            // second, different answer after the first (a terminal shows the restart).
            StreamEvent::Restart { reason, .. } if !self.tty && !self.blocks => {
                self.diverged = Some(*reason);
                return ControlFlow::Break(());
            }
            StreamEvent::Restart { attempt, reason } => {
                self.end_line();
                if !self.notes {
                    Ok(())
                } else {
                    writeln!(
                        io::stderr(),
                        "[restarting: attempt {attempt} after {reason}; output above is discarded]"
                    )
                }
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                // `| head` has what it wanted: stop the call, quietly.
                self.stdout_closed = true;
                ControlFlow::Break(())
            }
            Err(err) => {
                self.error = Some(err);
                ControlFlow::Break(())
            }
        }
    }

    /// Prints each choice as a labelled block (several choices cannot share a line).
    fn print_blocks(&mut self, response: &ChatResponse) -> io::Result<()> {
        let mut out = io::stdout().lock();
        for (i, choice) in response.choices.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "[choice {}]", choice.index)?;
            if let Some(reasoning) = choice.message.reasoning_content.as_deref() {
                writeln!(
                    io::stderr(),
                    "[choice {} reasoning] {reasoning}",
                    choice.index
                )?;
            }
            writeln!(out, "{}", choice.message.text())?;
            for call in choice.message.tool_calls.iter().flatten() {
                writeln!(out, "{}", self.tool_call_line(call))?;
            }
        }
        out.flush()
    }

    /// Each tool call of the reply on its own line of stdout: the name, a space, the
    /// arguments as one line of JSON.
    fn print_tool_calls(&mut self, calls: &[ToolCall]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        for call in calls {
            writeln!(out, "{}", self.tool_call_line(call))?;
        }
        out.flush()
    }

    fn tool_call_line(&self, call: &ToolCall) -> String {
        let name = &call.function.name;
        let name = if self.tty {
            oai_sse::redact::escape_controls(name)
        } else {
            name.into()
        };
        format!("{name} {}", one_line_json(&call.function.arguments))
    }

    /// Notes on stderr on how the reply ended: the tool calls printed, a cut at max_tokens.
    fn note_endings(&self, response: &ChatResponse) {
        if !self.notes {
            return;
        }
        let several = response.choices.len() > 1;
        for choice in &response.choices {
            let label = if several {
                format!("[choice {}] ", choice.index)
            } else {
                String::new()
            };
            let calls = choice.message.tool_calls.as_ref().map_or(0, Vec::len);
            if calls > 0 && !self.blocks {
                let s = if calls == 1 { "" } else { "s" };
                eprintln!("{label}[reply: {calls} tool call{s} on stdout, name and arguments]");
            }
            if choice.finish_reason.as_deref() == Some("length") {
                eprintln!("{label}stopped at max_tokens");
            }
        }
    }

    fn leave_reasoning(&mut self) {
        if self.in_reasoning {
            self.in_reasoning = false;
            let mut err = io::stderr().lock();
            if self.dim {
                let _ = err.write_all(b"\x1b[0m");
            }
            let _ = err.write_all(b"\n");
        }
    }

    fn end_line(&mut self) {
        self.leave_reasoning();
        if self.wrote_content && !self.stdout_closed {
            self.wrote_content = false;
            let _ = io::stdout().write_all(b"\n");
            let _ = io::stdout().flush();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn authority_is_host_and_port_without_userinfo_or_path() {
        for (url, want) in [
            ("http://127.0.0.1:18999/v1", "127.0.0.1:18999"),
            (
                "https://alice:secret@api.example.com/v1?x=1",
                "api.example.com",
            ),
            ("http://[::1]:8080", "[::1]:8080"),
            ("127.0.0.1:8080/v1", "127.0.0.1:8080"),
        ] {
            assert_eq!(super::authority(url), want, "{url}");
        }
    }

    #[test]
    fn tool_call_arguments_print_on_one_line_in_the_models_order() {
        for (arguments, want) in [
            (r#"{"city":"Oslo"}"#, r#"{"city":"Oslo"}"#),
            (
                "{\n  \"z\": [1, 2],\n  \"a\": \"two  words \\\" \\\\\"\n}",
                r#"{"z":[1,2],"a":"two  words \" \\"}"#,
            ),
            ("{}", "{}"),
            // Not JSON (a reply cut by max_tokens): quoted, newlines escaped.
            ("{\"city\": \"Os\nlo", r#""{\"city\": \"Os\nlo""#),
            ("", r#""""#),
        ] {
            assert_eq!(super::one_line_json(arguments), want, "{arguments:?}");
        }
    }
}
