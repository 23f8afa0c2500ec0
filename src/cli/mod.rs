//! The `oai-sse` command line: subcommand dispatch and the one-line error convention
//! (runtime errors exit 1, usage errors exit 2).

mod args;
mod chat;
#[cfg(feature = "mock")]
mod demo;
mod events;
mod logging;
#[cfg(feature = "mock")]
mod mock;
mod parse;

use args::{Args, UsageError};
use std::io::{self, Write};
use std::process::ExitCode;

const HELP: &str = "\
oai-sse: streaming chat client for OpenAI-compatible servers that survives broken streams

usage: oai-sse <command> [options]

commands:
  chat     stream one chat completion, retrying transient failures
  demo     run the real client against the fault-injecting mock server, scenario by scenario
  events   read any SSE endpoint, one JSON object per event, reconnecting with Last-Event-ID
  mock     serve the fault-injecting OpenAI-compatible mock server for any client
  parse    read an SSE stream from stdin, print one JSON object per event

Run `oai-sse help <command>` (or `oai-sse <command> --help`) for a command's options.";

/// How a command failed.
pub enum Failure {
    Usage(UsageError),
    Runtime(String),
    /// stdout went away (`oai-sse parse | head`): stop quietly.
    StdoutClosed,
    /// Already reported; exit with this status (130 after Ctrl-C).
    Exit(u8),
}

/// Server or error text made safe to print: the API key (from `OPENAI_API_KEY`) and URL
/// passwords redacted, terminal control sequences escaped.
pub fn sanitize(text: &str) -> String {
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_default();
    oai_sse::redact::sanitize(text, &[key.as_str()]).into_owned()
}

impl From<UsageError> for Failure {
    fn from(err: UsageError) -> Self {
        Self::Usage(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Self::StdoutClosed
        } else {
            Self::Runtime(format!("writing output: {err}"))
        }
    }
}

/// A subcommand: its help text, the options that take a value, and its body.
type Command = (
    &'static str,
    &'static [&'static str],
    fn(Args) -> Result<(), Failure>,
);

/// Prints a help text; a reader that went away (`| head`) is fine.
fn print_help(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// The command table: name, help text, options taking a value, body.
fn command(name: &str) -> Option<Command> {
    Some(match name {
        "parse" => (parse::HELP, &["--chunk-size"], parse::run),
        "chat" => (chat::HELP, chat::TAKES_VALUE, chat::run),
        "events" => (events::HELP, events::TAKES_VALUE, events::run),
        #[cfg(feature = "mock")]
        "demo" => (demo::HELP, demo::TAKES_VALUE, demo::run),
        #[cfg(feature = "mock")]
        "mock" => (mock::HELP, mock::TAKES_VALUE, mock::run),
        _ => return None,
    })
}

pub fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1);
    let name = raw.next();
    let rest: Vec<String> = raw.collect();
    let (help, takes_value, run) = match name.as_deref() {
        Some("--help" | "-h") | None => {
            print_help(HELP);
            return if name.is_none() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Some("help") => {
            return match rest.first().map(String::as_str) {
                None => {
                    print_help(HELP);
                    ExitCode::SUCCESS
                }
                Some(topic) => match command(topic) {
                    Some((help, ..)) => {
                        print_help(help);
                        ExitCode::SUCCESS
                    }
                    None => {
                        eprintln!("oai-sse: no command {topic:?} (try `oai-sse help`)");
                        ExitCode::from(2)
                    }
                },
            };
        }
        Some("--version" | "-V") => {
            println!("oai-sse {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        #[cfg(not(feature = "mock"))]
        Some(command @ ("demo" | "mock")) => {
            eprintln!("oai-sse: {command}: oai-sse was built without the mock feature");
            return ExitCode::from(2);
        }
        Some(other) => match command(other) {
            Some(command) => command,
            None => {
                eprintln!("oai-sse: unknown command {other:?} (try `oai-sse --help`)");
                return ExitCode::from(2);
            }
        },
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print_help(help);
        return ExitCode::SUCCESS;
    }
    let result = Args::parse(rest, takes_value)
        .map_err(Failure::from)
        .and_then(run);
    match result {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Exit(code)) => ExitCode::from(code),
        Err(Failure::Usage(err)) => {
            eprintln!(
                "oai-sse: {} (try `oai-sse help {}`)",
                sanitize(&err.to_string()),
                name.unwrap_or_default()
            );
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("oai-sse: error: {message}");
            ExitCode::from(1)
        }
    }
}
