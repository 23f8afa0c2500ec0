//! Heap behaviour of the SSE reader, measured with a counting global allocator: no
//! allocation per event once warm, and bounded memory when a server sends a huge line.

use oai_sse::sse::{EventReader, Item, Limits, ReadError, SseError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufReader, Read};

/// Counts this thread's allocations and live bytes (thread-local, so tests running in
/// parallel do not see each other's allocations).
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    ALLOCS.with(|a| a.set(a.get() + 1));
    LIVE.with(|live| {
        let now = live.get() + size;
        live.set(now);
        PEAK.with(|peak| peak.set(peak.get().max(now)));
    });
}

fn on_dealloc(size: usize) {
    LIVE.with(|live| live.set(live.get().saturating_sub(size)));
}

// SAFETY-free: delegating to `System` needs `unsafe impl`, which the test crate may use
// (the library itself forbids unsafe code).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_dealloc(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_dealloc(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// A source that hands out at most `step` bytes per read, so lines straddle refills.
struct Trickle<'a> {
    rest: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

fn chat_event(i: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i:05}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

fn multiline_event(i: usize) -> String {
    let mut event = String::from(": keep-alive\nevent: part\nid: 42\n");
    for line in 0..10 {
        event.push_str(&format!("data: line {line} of event {i:05}\n"));
    }
    event.push('\n');
    event
}

/// Reads `warm + measured` events; returns allocations during the measured ones.
///
/// The warm-up ends with the first event again, plus an empty data line: an event of one
/// data line is usually handed out from the read buffer uncopied, and copied only when a
/// refill falls between its two lines, which may first happen anywhere in the stream. The
/// two-line event grows the data buffer to that size during the warm-up, deterministically.
fn allocations_while_reading(make: fn(usize) -> String, step: usize) -> (u64, usize) {
    const WARM: usize = 101;
    const MEASURED: usize = 10_000;
    let two_lines = make(0).replacen("\n\n", "\ndata:\n\n", 1);
    let stream: String = (0..WARM - 1)
        .map(make)
        .chain([two_lines])
        .chain((WARM..WARM + MEASURED).map(make))
        .collect();
    let source = Trickle {
        rest: stream.as_bytes(),
        step,
    };
    let mut reader = EventReader::new(BufReader::with_capacity(8192, source));
    let mut events = 0;
    let mut before = 0;
    while let Some(item) = reader.next_item().expect("in-memory source") {
        if let Item::Event(event) = item {
            assert!(!event.data.is_empty());
            events += 1;
            if events == WARM {
                before = allocs();
            }
        }
    }
    assert_eq!(events, WARM + MEASURED);
    (allocs() - before, MEASURED)
}

#[test]
fn zero_allocations_per_event_once_warm() {
    for (name, make) in [
        ("single-line chat chunks", chat_event as fn(usize) -> String),
        ("ten-line events with comments", multiline_event),
    ] {
        // Large reads (lines mostly whole in the buffer) and small ones (lines straddle).
        for step in [8192, 1000, 16] {
            let (count, events) = allocations_while_reading(make, step);
            assert_eq!(
                count, 0,
                "{name}, reads of {step} B: {count} allocations over {events} events"
            );
        }
    }
}

/// An endless line of `a`s, generated on the fly so the test itself holds no 100 MiB.
struct EndlessLine {
    left: usize,
}

impl Read for EndlessLine {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left);
        buf[..n].fill(b'a');
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn hundred_mib_line_fails_with_memory_bounded_by_the_limit() {
    const LIMIT: usize = 1 << 20;
    let limits = Limits {
        max_line_len: LIMIT,
        max_event_len: LIMIT,
    };
    let source = EndlessLine { left: 100 << 20 };
    let live_before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(live_before));
    let mut reader = EventReader::with_limits(BufReader::with_capacity(64 << 10, source), limits);
    let err = reader.next_item().expect_err("the line is over the limit");
    assert!(
        matches!(err, ReadError::Sse(SseError::LineTooLong { limit: LIMIT })),
        "{err:?}"
    );
    let grown = PEAK.with(Cell::get) - live_before;
    // The line buffer may double past the limit once, plus the 64 KiB read buffer.
    assert!(
        grown <= 2 * LIMIT + (128 << 10),
        "peak grew by {grown} bytes"
    );
    // The source was not drained: the error came as soon as the limit was crossed.
    assert!(reader.get_ref().get_ref().left > 90 << 20);
    // The failure is final.
    assert!(matches!(reader.next_item(), Err(ReadError::Sse(_))));
}

#[test]
fn huge_event_from_many_lines_is_bounded_too() {
    const LIMIT: usize = 64 << 10;
    let limits = Limits {
        max_line_len: LIMIT,
        max_event_len: LIMIT,
    };
    let line = "data: 0123456789abcdef\n";
    let stream = line.repeat(100_000);
    let mut reader = EventReader::with_limits(stream.as_bytes(), limits);
    let err = reader.next_item().expect_err("the event is over the limit");
    assert!(
        matches!(
            err,
            ReadError::Sse(SseError::EventTooLarge { limit: LIMIT })
        ),
        "{err:?}"
    );
}

/// An `EventSource` over the mock's feed on loopback: the real path (transport, chunked
/// body, reader, event source) allocates nothing per event once warm. The server runs on
/// its own threads, whose allocations the thread-local counter does not see.
///
/// The parser's buffers grow until they hold the longest line split by a refill and the
/// largest event copied whole; over loopback a refill splits a line only about once per
/// 64 KiB (ureq's input buffer), so the warm-up is long (some 30 splits, each at a random
/// place) and every event has the same size: the feed resumes after id 10000, so all ids
/// have five digits.
#[cfg(feature = "mock")]
#[test]
fn zero_allocations_per_event_through_an_event_source() {
    use oai_sse::mock::{MockServer, Script};
    use oai_sse::{EventSource, SourceEvent};

    const SKIPPED: u64 = 10_000;
    const WARM: u64 = 50_000;
    const MEASURED: u64 = 10_000;
    let server = MockServer::start(Script::new()).expect("mock server");
    // One data line per event (the uncopied path) and three (copied into the parser's
    // buffers); ids and event types on every event.
    for shape in ["", "&multiline=1"] {
        let count = SKIPPED + WARM + MEASURED;
        let url = format!("{}/events?count={count}{shape}", server.base_url());
        let mut source = EventSource::builder(url)
            .last_event_id(SKIPPED.to_string())
            .reconnect_on_eof(false)
            .build()
            .expect("source");
        let (mut events, mut before, mut during) = (SKIPPED, 0, None);
        while let Some(item) = source.next_event().expect("no failure") {
            if let SourceEvent::Event(event) = item {
                events += 1;
                assert!(event.id.parse::<u64>() == Ok(events) && event.event == "tick");
                if events == SKIPPED + WARM {
                    before = allocs();
                }
                // Up to the last event: the end of the stream allocates (the connection
                // goes back to the pool).
                if events == count {
                    during = Some(allocs() - before);
                }
            }
        }
        let during = during.expect("every event arrived");
        assert_eq!(
            during, 0,
            "feed{shape}: {during} allocations over {MEASURED} events"
        );
    }
}
