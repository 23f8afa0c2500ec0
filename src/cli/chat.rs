//! `oai-sse chat`: one streamed chat turn against any OpenAI-compatible server.

use super::Failure;
use super::args::{Args, UsageError};
use oai_sse::{
    CallOptions, ChatRequest, Client, Error, Message, RetryAction, RetryNotice, StreamEvent,
    retry::RetryPolicy,
};
use std::io::{self, IsTerminal, Read, Write};
use std::sync::Arc;
use std::time::Duration;

pub const HELP: &str = "\
usage: oai-sse chat [options] [PROMPT]

Streams one chat completion. The reply goes to stdout as it arrives, reasoning to stderr.
Transient failures (dropped or reset connections, stalls, 408/429/502/503/504, truncated
tool-call JSON) are retried with exponential backoff; API errors are not.

  PROMPT                    the user message; read from stdin when absent or `-`
  --base-url URL            server (default: $OPENAI_BASE_URL, else http://127.0.0.1:8080/v1)
  --model NAME              model (default: $OPENAI_MODEL)
  --system TEXT             a system message first
  --max-tokens N            max_tokens
  --temperature F           temperature
  --request FILE            send this JSON request body (messages, tools, ...); `stream` is
                            forced on; the options above override its fields, PROMPT is
                            appended as a user message
  --json                    print nothing while streaming; print the aggregated response as
                            one chat.completion JSON object with a \"retries\" array at the end
  --connect-timeout S       connect limit in seconds (default 10)
  --first-byte-timeout S    limit until the first response byte (default 300)
  --idle-timeout S          limit between reads of the stream (default 60)
  --max-retries N           retries after the first attempt (default 3)
  --no-mid-stream-retry     do not retry once output has been printed
  --quiet                   no retry lines on stderr
  -v                        debug logs on stderr (or set RUST_LOG)

The API key is read from $OPENAI_API_KEY. Errors print one line on stderr and exit 1;
usage mistakes exit 2.";

/// Options taking a value, for the argument scanner.
pub const TAKES_VALUE: &[&str] = &[
    "--base-url",
    "--model",
    "--system",
    "--max-tokens",
    "--temperature",
    "--request",
    "--connect-timeout",
    "--first-byte-timeout",
    "--idle-timeout",
    "--max-retries",
];

struct Settings {
    verbose: bool,
    base_url: String,
    request: ChatRequest,
    json: bool,
    quiet: bool,
    connect: Option<Duration>,
    first_byte: Option<Duration>,
    idle: Option<Duration>,
    retry: RetryPolicy,
}

fn seconds(args: &mut Args, name: &str) -> Result<Option<Duration>, UsageError> {
    match args.value::<f64>(&[name])? {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Some)
            .ok_or_else(|| UsageError(format!("{name} must be a positive number of seconds"))),
    }
}

fn parse(mut args: Args) -> Result<Settings, Failure> {
    let base_url = args
        .value::<String>(&["--base-url"])?
        .or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "http://127.0.0.1:8080/v1".into());
    let model = args
        .value::<String>(&["--model"])?
        .or_else(|| std::env::var("OPENAI_MODEL").ok().filter(|v| !v.is_empty()));
    let system = args.value::<String>(&["--system"])?;
    let max_tokens = args.value::<u32>(&["--max-tokens"])?;
    let temperature = args.value::<f32>(&["--temperature"])?;
    let request_file = args.value::<String>(&["--request"])?;
    let json = args.flag(&["--json"])?;
    let quiet = args.flag(&["--quiet", "-q"])?;
    let verbose = args.flag(&["-v", "--verbose"])?;
    let connect = seconds(&mut args, "--connect-timeout")?;
    let first_byte = seconds(&mut args, "--first-byte-timeout")?;
    let idle = seconds(&mut args, "--idle-timeout")?;
    let mut retry = RetryPolicy::default();
    if let Some(n) = args.value::<u32>(&["--max-retries"])? {
        retry.max_retries = n;
    }
    if args.flag(&["--no-mid-stream-retry"])? {
        retry.retry_after_output = false;
    }
    let prompt = args.finish(1)?.pop();

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
    if request.model.is_empty() {
        return Err(UsageError("no model: pass --model or set OPENAI_MODEL".into()).into());
    }
    if let Some(system) = system {
        request.messages.insert(0, Message::system(system));
    }
    let prompt = match prompt.as_deref() {
        Some("-") => Some(read_stdin()?),
        Some(text) => Some(text.to_owned()),
        None if request_file.is_none() => Some(read_stdin()?),
        None => None,
    };
    if let Some(prompt) = prompt {
        request.messages.push(Message::user(prompt));
    }
    if request.messages.is_empty() {
        return Err(UsageError("nothing to send: give a PROMPT or a --request file".into()).into());
    }
    if let Some(n) = max_tokens {
        request.max_tokens = Some(n);
    }
    if let Some(t) = temperature {
        request.temperature = Some(t);
    }
    Ok(Settings {
        verbose,
        base_url,
        request,
        json,
        quiet,
        connect,
        first_byte,
        idle,
        retry,
    })
}

fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::Runtime(format!("reading the prompt from stdin: {e}")))?;
    Ok(text)
}

pub fn run(args: Args) -> Result<(), Failure> {
    let settings = parse(args)?;
    // Retry lines are printed here, so the library's retry warnings stay quiet unless asked
    // for with -v or RUST_LOG.
    super::logging::init(if settings.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Error
    });
    let mut builder = Client::builder()
        .base_url(&settings.base_url)
        .retry_policy(settings.retry.clone());
    if let Ok(key) = std::env::var("OPENAI_API_KEY") {
        if !key.is_empty() {
            builder = builder.api_key(key);
        }
    }
    if let Some(d) = settings.connect {
        builder = builder.connect_timeout(d);
    }
    if let Some(d) = settings.first_byte {
        builder = builder.first_byte_timeout(d);
    }
    if let Some(d) = settings.idle {
        builder = builder.idle_timeout(d);
    }
    let client = builder
        .build()
        .map_err(|e| Failure::Runtime(e.to_string()))?;

    let mut options = CallOptions::default();
    if !settings.quiet {
        options.on_retry = Some(Arc::new(|notice: &RetryNotice<'_>| {
            let what = match notice.action {
                RetryAction::Resumed { offset } => format!("resume at byte {offset}"),
                _ => "retry".to_owned(),
            };
            eprintln!(
                "{what} {}/{} after {} ms: {}",
                notice.retry,
                notice.max_retries,
                notice.delay.as_millis(),
                short_reason(notice.error)
            );
        }));
    }
    let mut printer = Printer::new(settings.json);
    let result = client.chat_with(&settings.request, &options, |event| printer.print(event));
    printer.end_line();
    let response = result.map_err(|e| Failure::Runtime(e.to_string()))?;
    if let Some(err) = printer.error.take() {
        return Err(err.into());
    }
    if settings.json {
        let mut json = serde_json::to_value(&response).map_err(io::Error::from)?;
        // Always present in the CLI's output, empty when the first attempt succeeded.
        if let Some(object) = json.as_object_mut() {
            object.insert("retries".into(), serde_json::json!(response.retries));
        }
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, &json).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}

/// A retry reason in a few words: the failure kind for transport trouble, the server's
/// message otherwise.
fn short_reason(err: &Error) -> String {
    match err {
        Error::Transport(t) => t.kind().to_string(),
        other => other.to_string(),
    }
}

/// Writes deltas as they arrive: content to stdout, reasoning to stderr (dim on a terminal).
struct Printer {
    quiet: bool,
    dim: bool,
    in_reasoning: bool,
    wrote_content: bool,
    error: Option<io::Error>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Self {
            quiet: json,
            dim: io::stderr().is_terminal(),
            in_reasoning: false,
            wrote_content: false,
            error: None,
        }
    }

    fn print(&mut self, event: &StreamEvent<'_>) {
        if self.quiet || self.error.is_some() {
            return;
        }
        let result = match event {
            StreamEvent::Content { text, .. } | StreamEvent::Refusal { text, .. } => {
                self.leave_reasoning();
                self.wrote_content = true;
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            StreamEvent::Reasoning { text, .. } => {
                let mut err = io::stderr().lock();
                if !self.in_reasoning && self.dim {
                    let _ = err.write_all(b"\x1b[2m");
                }
                self.in_reasoning = true;
                err.write_all(text.as_bytes()).and_then(|()| err.flush())
            }
            StreamEvent::ToolCall {
                name: Some(name), ..
            } => {
                self.leave_reasoning();
                writeln!(io::stderr(), "[tool call: {name}]")
            }
            StreamEvent::Resumed { offset, .. } => {
                writeln!(
                    io::stderr(),
                    "[resumed at byte {offset}: nothing was lost or repeated]"
                )
            }
            StreamEvent::Restart { attempt, reason } => {
                self.end_line();
                writeln!(
                    io::stderr(),
                    "[restarting: attempt {attempt} after {reason}; output above is discarded]"
                )
            }
            _ => Ok(()),
        };
        if let Err(err) = result {
            self.error = Some(err);
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
        if self.wrote_content {
            self.wrote_content = false;
            let _ = io::stdout().write_all(b"\n");
        }
    }
}
