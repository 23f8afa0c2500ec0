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
use std::io;
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

Run `oai-sse <command> --help` for a command's options.";

/// How a command failed.
pub enum Failure {
    Usage(UsageError),
    Runtime(String),
    /// stdout went away (`oai-sse parse | head`): stop quietly.
    StdoutClosed,
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

pub fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1);
    let command = raw.next();
    let rest: Vec<String> = raw.collect();
    let (help, takes_value, run): Command = match command.as_deref() {
        Some("parse") => (parse::HELP, &["--chunk-size"], parse::run),
        Some("chat") => (chat::HELP, chat::TAKES_VALUE, chat::run),
        Some("events") => (events::HELP, events::TAKES_VALUE, events::run),
        #[cfg(feature = "mock")]
        Some("demo") => (demo::HELP, demo::TAKES_VALUE, demo::run),
        #[cfg(feature = "mock")]
        Some("mock") => (mock::HELP, mock::TAKES_VALUE, mock::run),
        #[cfg(not(feature = "mock"))]
        Some(command @ ("demo" | "mock")) => {
            eprintln!("oai-sse: {command}: oai-sse was built without the mock feature");
            return ExitCode::from(2);
        }
        Some("--help" | "-h" | "help") | None => {
            println!("{HELP}");
            return if command.is_none() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Some("--version" | "-V") => {
            println!("oai-sse {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("oai-sse: unknown command {other:?} (try `oai-sse --help`)");
            return ExitCode::from(2);
        }
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        println!("{help}");
        return ExitCode::SUCCESS;
    }
    let result = Args::parse(rest, takes_value)
        .map_err(Failure::from)
        .and_then(run);
    match result {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Usage(err)) => {
            eprintln!(
                "oai-sse: {err} (try `oai-sse {} --help`)",
                command.unwrap_or_default()
            );
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("oai-sse: error: {message}");
            ExitCode::from(1)
        }
    }
}
