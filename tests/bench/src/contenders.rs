//! One small function per contender. Each parses a chunked stream and returns how many
//! events it dispatched and the total length of their data (which the runner checks against
//! the generator's count, so a contender that skips or merges events fails loudly).
//!
//! The async peers run under `futures::executor::block_on` over `futures::stream::iter` of
//! the chunks: the stream is always ready, so the executor adds one poll per item and never
//! parks.

use bytes::Bytes;
use futures::StreamExt;
use futures::executor::block_on;
use futures::stream;
use std::convert::Infallible;
use std::hint::black_box;
use std::io::{self, BufRead, Read};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub events: usize,
    pub data_bytes: usize,
}

impl Tally {
    fn event(&mut self, data_len: usize) {
        self.events += 1;
        self.data_bytes += black_box(data_len);
    }
}

pub type Run = fn(&[Bytes]) -> Tally;

pub struct Contender {
    pub name: &'static str,
    pub run: Run,
    /// `oai-sse` itself (ratios are computed against the others).
    pub ours: bool,
    /// Not a parser: the memchr line-end scan every parser must at least do.
    pub ceiling: bool,
    /// Not a parser: the line-end scan plus UTF-8 validation of every byte, the least work
    /// of a parser that hands out text (`&str`) without `unsafe`.
    pub floor: bool,
}

impl Contender {
    /// The ceiling or the floor: a baseline, not a parser.
    pub fn baseline(&self) -> bool {
        self.ceiling || self.floor
    }

    pub fn peer(&self) -> bool {
        !self.ours && !self.baseline()
    }
}

pub const ALL: &[Contender] = &[
    Contender {
        name: "oai-sse Parser",
        run: oai_parser,
        ours: true,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "oai-sse EventReader",
        run: oai_reader,
        ours: true,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "sseer",
        run: sseer,
        ours: false,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "eventsource-stream",
        run: eventsource_stream,
        ours: false,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "sse-stream",
        run: sse_stream,
        ours: false,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "sse-parse",
        run: sse_parse,
        ours: false,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "sse-core",
        run: sse_core,
        ours: false,
        ceiling: false,
        floor: false,
    },
    Contender {
        name: "memchr ceiling",
        run: ceiling,
        ours: false,
        ceiling: true,
        floor: false,
    },
    Contender {
        name: "scan + UTF-8 floor",
        run: floor,
        ours: false,
        ceiling: false,
        floor: true,
    },
];

/// The sans-IO core: feed each chunk, re-feeding the rest after every item.
fn oai_parser(chunks: &[Bytes]) -> Tally {
    use oai_sse::sse::{Item, Parser};
    let mut parser = Parser::new();
    let mut tally = Tally::default();
    for chunk in chunks {
        let mut input: &[u8] = chunk;
        while !input.is_empty() {
            let (used, item) = parser.feed(input).expect("within the default limits");
            if let Some(Item::Event(event)) = item {
                tally.event(event.data.len());
            }
            input = &input[used..];
        }
    }
    parser.finish();
    tally
}

/// The blocking reader over a `BufRead` whose buffer is each chunk in turn (as a
/// `BufReader` over a socket would hold one read), without an extra copy.
fn oai_reader(chunks: &[Bytes]) -> Tally {
    use oai_sse::sse::{EventReader, Item};
    let mut reader = EventReader::new(ChunkReader { chunks, pos: 0 });
    let mut tally = Tally::default();
    while let Some(item) = reader.next_item().expect("in-memory source") {
        if let Item::Event(event) = item {
            tally.event(event.data.len());
        }
    }
    tally
}

/// A `BufRead` that hands out the chunks one by one.
pub struct ChunkReader<'a> {
    pub chunks: &'a [Bytes],
    pub pos: usize,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let src = self.fill_buf()?;
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while let Some((first, rest)) = self.chunks.split_first() {
            if self.pos < first.len() {
                return Ok(&first[self.pos..]);
            }
            self.chunks = rest;
            self.pos = 0;
        }
        Ok(&[])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

fn byte_stream(chunks: &[Bytes]) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + '_ {
    stream::iter(chunks.iter().cloned().map(Ok))
}

fn sseer(chunks: &[Bytes]) -> Tally {
    block_on(async {
        let mut events = sseer::EventStream::new(byte_stream(chunks));
        let mut tally = Tally::default();
        while let Some(event) = events.next().await {
            tally.event(event.expect("valid stream").data.len());
        }
        tally
    })
}

fn eventsource_stream(chunks: &[Bytes]) -> Tally {
    block_on(async {
        let mut events = eventsource_stream::EventStream::new(byte_stream(chunks));
        let mut tally = Tally::default();
        while let Some(event) = events.next().await {
            tally.event(event.expect("valid stream").data.len());
        }
        tally
    })
}

/// sse-stream yields every block, data or not; only blocks with data are events.
fn sse_stream(chunks: &[Bytes]) -> Tally {
    block_on(async {
        let mut events = sse_stream::SseByteStream::new(byte_stream(chunks));
        let mut tally = Tally::default();
        while let Some(block) = events.next().await {
            if let Some(data) = block.expect("valid stream").data {
                tally.event(data.len());
            }
        }
        tally
    })
}

/// sse-parse's sans-IO core: feed a chunk, drain the queued events.
fn sse_parse(chunks: &[Bytes]) -> Tally {
    let mut parser = sse_parse::SseParser::new();
    let mut tally = Tally::default();
    for chunk in chunks {
        parser.feed(chunk);
        while let Some(event) = parser.next_event() {
            tally.event(event.data.len());
        }
    }
    parser.finish();
    while let Some(event) = parser.next_event() {
        tally.event(event.data.len());
    }
    tally
}

/// sse-core's sans-IO decoder, pulling events out of each chunk (a `Buf`).
fn sse_core(chunks: &[Bytes]) -> Tally {
    use sse_core::{SseDecoder, SseEvent};
    let mut decoder = SseDecoder::new();
    let mut tally = Tally::default();
    for chunk in chunks {
        let mut buf = chunk.clone();
        while let Some(event) = decoder.next(&mut buf) {
            if let SseEvent::Message(message) = event.expect("within the default limit") {
                tally.event(message.data.len());
            }
        }
    }
    tally
}

/// Not a parser: count line ends with `memchr2`, the least any correct parser must do.
/// `events` holds the line-end count.
fn ceiling(chunks: &[Bytes]) -> Tally {
    let mut line_ends = 0;
    for chunk in chunks {
        line_ends += memchr::memchr2_iter(b'\n', b'\r', black_box(chunk)).count();
    }
    Tally {
        events: black_box(line_ends),
        data_bytes: 0,
    }
}

/// Not a parser: the ceiling's scan plus one `str::from_utf8` over each whole chunk — every
/// byte validated once, with the fewest calls (a chunk that ends inside a character fails
/// validation, which costs nothing extra). `events` holds the line-end count.
fn floor(chunks: &[Bytes]) -> Tally {
    let mut line_ends = 0;
    let mut valid = 0;
    for chunk in chunks {
        let chunk: &[u8] = black_box(chunk);
        line_ends += memchr::memchr2_iter(b'\n', b'\r', chunk).count();
        valid += usize::from(std::str::from_utf8(chunk).is_ok());
    }
    black_box(valid);
    Tally {
        events: black_box(line_ends),
        data_bytes: 0,
    }
}
