//! `oai-sse parse`: an SSE byte stream on stdin, one JSON object per item on stdout.

use super::Failure;
use super::args::{Args, UsageError};
use oai_sse::sse::{Event, EventReader, Item};
use serde::Serialize;
use std::io::{self, BufReader, Read, Write};

pub const HELP: &str = "\
usage: oai-sse parse [--chunk-size N] [--comments]

Reads a Server-Sent Events stream from stdin as it arrives (curl -N URL | oai-sse parse)
and prints one JSON object per line, flushed as each is produced:
  {\"event\":\"<type>\",\"data\":\"<data>\",\"id\":\"<last event id>\"}   each dispatched event
  {\"retry\":<ms>}                                                each valid retry field
  {\"comment\":\"<text>\"}                                          each comment (with --comments)

options:
  --chunk-size N   feed the parser at most N bytes at a time (default 8192)
  --comments       also print comment lines (servers send them as keep-alives)";

/// One output line of `parse` and `events`: `{"event","data","id"}`, `{"retry"}` or
/// `{"comment"}`.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Line<'a> {
    Event {
        event: &'a str,
        data: &'a str,
        id: &'a str,
    },
    Retry {
        retry: u64,
    },
    Comment {
        comment: &'a str,
    },
}

impl<'a> Line<'a> {
    pub(super) fn event(e: &Event<'a>) -> Self {
        Line::Event {
            event: e.event,
            data: e.data,
            id: e.id,
        }
    }
}

/// Hands out at most `limit` bytes per read, so `--chunk-size` really sets the feed size.
struct AtMost<R> {
    inner: R,
    limit: usize,
}

impl<R: Read> Read for AtMost<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.limit);
        self.inner.read(&mut buf[..n])
    }
}

pub fn run(mut args: Args) -> Result<(), Failure> {
    let chunk_size: usize = args.value(&["--chunk-size"])?.unwrap_or(8192);
    if chunk_size == 0 {
        return Err(UsageError("--chunk-size must be at least 1".into()).into());
    }
    let comments = args.flag(&["--comments"])?;
    args.finish(0)?;

    let source = AtMost {
        inner: io::stdin().lock(),
        limit: chunk_size,
    };
    let mut reader = EventReader::new(BufReader::with_capacity(chunk_size, source));
    let mut out = io::stdout().lock();
    while let Some(item) = reader
        .next_item()
        .map_err(|e| Failure::Runtime(format!("reading stdin: {e}")))?
    {
        let line = match item {
            Item::Event(e) => Line::event(&e),
            Item::Retry(retry) => Line::Retry { retry },
            Item::Comment(comment) if comments => Line::Comment { comment },
            // Comments without --comments, and items a later version adds.
            _ => continue,
        };
        serde_json::to_writer(&mut out, &line).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(())
}
