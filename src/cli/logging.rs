//! Logging for the CLI: env_logger, this crate's records at the level asked for (`-v`: its
//! decisions at debug) and other crates' (ureq's) only from warnings up unless asked for
//! too (`-vv`, or `RUST_LOG`), with ureq's raw-bytes trace capped. At TRACE level
//! `ureq_proto` logs request bytes verbatim, Authorization header included, so those records
//! are dropped whatever `RUST_LOG` says.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct CappedLogger(env_logger::Logger);

/// Whether a record may carry raw request bytes (and so the API key).
fn is_raw_http_trace(metadata: &Metadata<'_>) -> bool {
    metadata.level() == Level::Trace && metadata.target().starts_with("ureq")
}

impl Log for CappedLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !is_raw_http_trace(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !is_raw_http_trace(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// This crate's log target (the library's and the binary's modules alike).
const OURS: &str = "oai_sse";

/// Installs the logger: this crate's records at `ours`, other crates' at `ours` but at most
/// warnings; `RUST_LOG` overrides both.
pub fn init(ours: LevelFilter) {
    init_with(ours, ours.min(LevelFilter::Warn));
}

/// Installs the logger with every crate's records at `level` (`-vv`); `RUST_LOG` overrides it.
pub fn init_all(level: LevelFilter) {
    init_with(level, level);
}

fn init_with(ours: LevelFilter, others: LevelFilter) {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(others)
        .filter_module(OURS, ours)
        .format_target(others > LevelFilter::Warn);
    builder.parse_default_env();
    let logger = builder.build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(CappedLogger(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ureq_trace_is_capped_but_debug_passes() {
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(is_raw_http_trace(&meta(Level::Trace, "ureq_proto::util")));
        assert!(is_raw_http_trace(&meta(
            Level::Trace,
            "ureq::unversioned::transport"
        )));
        assert!(!is_raw_http_trace(&meta(
            Level::Debug,
            "ureq_proto::client"
        )));
        assert!(!is_raw_http_trace(&meta(Level::Trace, "oai_sse::client")));
    }
}
