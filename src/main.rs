//! The `oai-sse` binary. All logic lives in `cli/`; this file only hands over.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
