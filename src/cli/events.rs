//! `oai-sse events`: any Server-Sent Events endpoint, one JSON object per event on stdout,
//! reconnecting as a browser's EventSource does.

use super::Failure;
use super::args::{Args, UsageError};
use super::parse::Line;
use oai_sse::retry::RetryPolicy;
use oai_sse::{Error, EventSource, Reconnect, SourceEvent};
use std::io::{self, Write};
use std::time::{Duration, Instant};

pub const HELP: &str = "\
usage: oai-sse events URL [-H 'Name: value']... [--data TEXT|@FILE] [--last-event-id ID]
                          [--max-retries N] [--idle-timeout S] [--comments]
                          [--no-reconnect-on-eof] [-v]

Reads any Server-Sent Events endpoint (a notification or log feed, an MCP stream, a model
server's event route) and prints one JSON object per line, flushed as each arrives:
  {\"event\":\"<type>\",\"data\":\"<data>\",\"id\":\"<last event id>\"}   each event
  {\"comment\":\"<text>\"}                                          each comment (with --comments)

When the connection fails or the body ends, it reconnects as the WHATWG standard says: after
the stream's last `retry:` time, else an exponential backoff (a 429/503's Retry-After when
longer), sending Last-Event-ID with the last event ID, so a server that honours it sends
each event once. A `retry:` below 100 ms is raised to 100 ms. Each reconnect prints one line
on stderr, at most one a second (the next line counts those not shown):
  reconnect 1 after 3000 ms (retry field): unexpected eof, last id 41

  URL                     the event stream, http:// or https://
  -H, --header 'Name: value'
                          an extra request header (repeatable; replaces the default Accept:
                          text/event-stream or Cache-Control: no-cache of the same name)
  --data TEXT|@FILE       POST this body (from FILE with @), resent on every reconnect;
                          Content-Type: application/json unless -H sets one
  --last-event-id ID      resume after ID: sent as Last-Event-ID with the first request
  --max-retries N         reconnects in a row (since anything last arrived) before giving
                          up (default 3; a server that refuses or answers 503 is waited for
                          up to 2 minutes on top)
  --idle-timeout S        reconnect when nothing (not even a keep-alive comment) arrives for
                          S seconds (default 60)
  --comments              also print comments (servers send them as keep-alives)
  --no-reconnect-on-eof   exit 0 when the body ends cleanly instead of reconnecting
  -v                      debug logs on stderr (or set RUST_LOG)

Exit status: 0 when the server ends the stream with 204 No Content, or at a clean end with
--no-reconnect-on-eof, or when stdout is closed (| head); 1 on a failure (a status such as
404 or 500, a content type other than text/event-stream, reconnects exhausted), with one
line on stderr; 2 on usage mistakes (a bad URL or header).";

/// Options taking a value, for the argument scanner.
pub const TAKES_VALUE: &[&str] = &[
    "-H",
    "--header",
    "--data",
    "--last-event-id",
    "--max-retries",
    "--idle-timeout",
];

pub fn run(mut args: Args) -> Result<(), Failure> {
    let headers = args.values(&["-H", "--header"])?;
    let data = args.value::<String>(&["--data"])?;
    let last_event_id = args.value::<String>(&["--last-event-id"])?;
    let max_retries = args.value::<u32>(&["--max-retries"])?;
    let idle = args.seconds(&["--idle-timeout"])?;
    let comments = args.flag(&["--comments"])?;
    let no_reconnect_on_eof = args.flag(&["--no-reconnect-on-eof"])?;
    let verbose = args.flag(&["-v", "--verbose"])?;
    let url = match args.finish(1)?.pop() {
        Some(url) => url,
        None => return Err(UsageError("no URL: give the event stream's URL".into()).into()),
    };
    super::logging::init(if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Error
    });

    let mut builder = EventSource::builder(url)
        .comments(comments)
        .reconnect_on_eof(!no_reconnect_on_eof);
    let mut content_type = None;
    for header in &headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(UsageError(format!("header {header:?} is not 'Name: value'")).into());
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("last-event-id") {
            builder = builder.last_event_id(value);
        } else {
            builder = builder.header(name, value);
        }
    }
    if let Some(data) = data {
        let body = match data.strip_prefix('@') {
            Some(path) => {
                std::fs::read(path).map_err(|e| Failure::Runtime(format!("reading {path}: {e}")))?
            }
            None => data.into_bytes(),
        };
        let content_type = content_type.unwrap_or_else(|| "application/json".into());
        builder = builder.post(content_type, body);
    } else if let Some(content_type) = content_type {
        builder = builder.header("Content-Type", content_type);
    }
    if let Some(id) = last_event_id {
        builder = builder.last_event_id(id);
    }
    if let Some(n) = max_retries {
        builder = builder.retry_policy(RetryPolicy::default().max_retries(n));
    }
    if let Some(idle) = idle {
        builder = builder.idle_timeout(idle);
    }
    let mut source = builder.build().map_err(|e| match e {
        Error::Config(message) => Failure::Usage(UsageError(message)),
        other => Failure::Runtime(other.to_string()),
    })?;

    let mut out = io::stdout().lock();
    let mut reconnects = ReconnectLines::default();
    let result = loop {
        let item = match source.next_event() {
            Ok(Some(item)) => item,
            Ok(None) => break Ok(()),
            Err(err) => break Err(Failure::Runtime(err.to_string())),
        };
        let line = match item {
            SourceEvent::Event(e) => Line::event(&e),
            SourceEvent::Comment(comment) => Line::Comment { comment },
            SourceEvent::Reconnect(reconnect) => {
                if let Some(line) = reconnects.line(&reconnect, Instant::now()) {
                    eprintln!("{line}");
                }
                continue;
            }
            _ => continue,
        };
        let written = serde_json::to_writer(&mut out, &line)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(err) = written {
            break Err(err.into());
        }
    };
    if let Some(line) = reconnects.unshown() {
        eprintln!("{line}");
    }
    result
}

/// The reconnect lines on stderr, at most one a second: a server that makes the source
/// reconnect ten times a second (the fastest its `retry:` field can ask) must not flood the
/// terminal. The next line shown, or the last line at exit, counts those not shown.
#[derive(Debug, Default)]
struct ReconnectLines {
    shown_at: Option<Instant>,
    unshown: u64,
}

impl ReconnectLines {
    /// The shortest time between two lines.
    const EVERY: Duration = Duration::from_secs(1);

    /// Whether a reconnect at `now` gets a line: `Some(n)` with the `n` reconnects not shown
    /// since the last line, or `None` (and counted) within a second of that line.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .shown_at
            .is_some_and(|at| now.saturating_duration_since(at) < Self::EVERY)
        {
            self.unshown += 1;
            return None;
        }
        self.shown_at = Some(now);
        Some(std::mem::take(&mut self.unshown))
    }

    /// The line to print for `reconnect` at `now`, if any.
    fn line(&mut self, reconnect: &Reconnect, now: Instant) -> Option<String> {
        let unshown = self.admit(now)?;
        let mut line = reconnect_line(reconnect);
        match unshown {
            0 => {}
            1 => line.push_str(" (1 more reconnect since the last line)"),
            n => line.push_str(&format!(" ({n} more reconnects since the last line)")),
        }
        Some(line)
    }

    /// At exit: how many reconnects since the last line were not shown, if any.
    fn unshown(&mut self) -> Option<String> {
        match std::mem::take(&mut self.unshown) {
            0 => None,
            1 => Some("1 more reconnect not shown".into()),
            n => Some(format!("{n} more reconnects not shown")),
        }
    }
}

/// `reconnect 2 after 3000 ms (retry field): unexpected eof, last id 41`.
fn reconnect_line(reconnect: &Reconnect) -> String {
    // Transport trouble in a few words; an HTTP status with the server's message.
    let reason = match reconnect.error.transport() {
        Some(t) => t.kind().to_string(),
        None => reconnect.error.last().to_string(),
    };
    let mut line = format!(
        "reconnect {} after {} ms ({}): {reason}",
        reconnect.retry,
        reconnect.delay.as_millis(),
        reconnect.delay_source
    );
    if !reconnect.last_event_id.is_empty() {
        line.push_str(", last id ");
        line.push_str(&reconnect.last_event_id);
    }
    // Ids and messages come from the server: no terminal control sequences from them.
    line.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_lines_are_at_most_one_a_second_and_count_the_rest() {
        let start = Instant::now();
        let mut lines = ReconnectLines::default();
        let ms = Duration::from_millis;
        // (time of the reconnect, what `admit` says)
        let table = [
            (0, Some(0)),
            (100, None),
            (200, None),
            (999, None),
            (1000, Some(3)),
            (1500, None),
            (2600, Some(1)),
            (5000, Some(0)),
            (5001, None),
        ];
        for (at, want) in table {
            assert_eq!(lines.admit(start + ms(at)), want, "at {at} ms");
        }
        assert_eq!(
            lines.unshown().as_deref(),
            Some("1 more reconnect not shown")
        );
        assert_eq!(lines.unshown(), None);
    }
}
