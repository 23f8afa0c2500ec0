//! WHATWG event-stream conformance: every vector is replayed whole, one byte at a time, at
//! many random split points, and through the blocking reader with random read sizes. The
//! result must never depend on how the bytes were split.

use oai_sse::sse::{EventReader, Item, Limits, Parser, SseError};
use std::io::{BufReader, Read};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// (type, data, id)
    E(String, String, String),
    C(String),
    R(u64),
}

fn ev(event: &str, data: &str, id: &str) -> Seen {
    Seen::E(event.into(), data.into(), id.into())
}
fn msg(data: &str) -> Seen {
    ev("message", data, "")
}
fn com(text: &str) -> Seen {
    Seen::C(text.into())
}

fn own(item: Item<'_>) -> Seen {
    match item {
        Item::Event(e) => ev(e.event, e.data, e.id),
        Item::Comment(c) => com(c),
        Item::Retry(ms) => Seen::R(ms),
    }
}

/// What a whole replay produced: items, then the final last event ID and retry time.
type Outcome = (Vec<Seen>, String, Option<u64>);

struct Vector {
    name: &'static str,
    input: &'static [u8],
    items: Vec<Seen>,
    last_id: &'static str,
    retry: Option<u64>,
}

macro_rules! vectors {
    ($( $name:ident: $input:expr => [$($item:expr),* $(,)?] $(, id $id:expr)? $(, retry $retry:expr)? ;)*) => {
        vec![$(Vector {
            name: stringify!($name),
            input: $input,
            items: vec![$($item),*],
            last_id: { let _id = ""; $(let _id = $id;)? _id },
            retry: { let _r: Option<u64> = None; $(let _r = Some($retry);)? _r },
        }),*]
    };
}

fn table() -> Vec<Vector> {
    vectors! {
        single_data: b"data: hello\n\n" => [msg("hello")];
        no_space_after_colon: b"data:hello\n\n" => [msg("hello")];
        only_one_space_removed: b"data:  hello\n\n" => [msg(" hello")];
        tab_is_kept: b"data:\thello\n\n" => [msg("\thello")];
        trailing_space_kept: b"data: hi \n\n" => [msg("hi ")];
        two_data_lines_join_with_lf: b"data: a\ndata: b\n\n" => [msg("a\nb")];
        empty_data_lines_make_empty_lines: b"data\ndata\n\n" => [msg("\n")];
        spec_example_empty_data: b"data\n\ndata\ndata\n\ndata:" => [msg(""), msg("\n")];
        spec_example_space: b"data:test\n\ndata: test\n\n" => [msg("test"), msg("test")];
        data_colon_only: b"data:\n\n" => [msg("")];
        data_space_only: b"data: \n\n" => [msg("")];
        data_two_spaces: b"data:  \n\n" => [msg(" ")];
        colon_in_value: b"data: a:b: c\n\n" => [msg("a:b: c")];
        nul_in_data: b"data: a\0b\n\n" => [msg("a\0b")];
        event_type_set: b"event: add\ndata: 1\n\n" => [ev("add", "1", "")];
        event_type_after_data: b"data: 1\nevent: late\n\n" => [ev("late", "1", "")];
        event_type_reset_after_dispatch: b"event: add\ndata: 1\n\ndata: 2\n\n" => [ev("add", "1", ""), msg("2")];
        event_type_reset_without_data: b"event: add\n\ndata: 2\n\n" => [msg("2")];
        empty_event_type_is_message: b"event:\ndata: x\n\n" => [msg("x")];
        last_event_type_wins: b"event: a\nevent: b\ndata: x\n\n" => [ev("b", "x", "")];
        same_event_type_again: b"event: a\ndata: 1\n\nevent: a\ndata: 2\n\ndata: 3\n\n" => [ev("a", "1", ""), ev("a", "2", ""), msg("3")];
        event_type_then_empty_type: b"event: a\ndata: 1\n\nevent:\ndata: 2\n\n" => [ev("a", "1", ""), msg("2")];
        id_set: b"id: 1\ndata: a\n\n" => [ev("message", "a", "1")], id "1";
        id_persists: b"id: 1\ndata: a\n\ndata: b\n\n" => [ev("message", "a", "1"), ev("message", "b", "1")], id "1";
        id_committed_without_event: b"id: 7\n\n" => [], id "7";
        id_with_nul_ignored: b"id: 1\n\nid: a\0b\ndata: x\n\n" => [ev("message", "x", "1")], id "1";
        id_empty_clears: b"id: 1\ndata: a\n\nid\ndata: b\n\n" => [ev("message", "a", "1"), msg("b")];
        id_keeps_inner_space: b"id:  x\ndata: a\n\n" => [ev("message", "a", " x")], id " x";
        id_of_unfinished_event_not_committed: b"id: 1\ndata: a\n\nid: 2\ndata: b" => [ev("message", "a", "1")], id "1";
        id_set_after_data_same_event: b"data: a\nid: 9\n\n" => [ev("message", "a", "9")], id "9";
        retry_valid: b"retry: 3000\n\n" => [Seen::R(3000)], retry 3000;
        retry_zero: b"retry: 0\n" => [Seen::R(0)], retry 0;
        retry_with_letters_ignored: b"retry: 30x\n\n" => [];
        retry_negative_ignored: b"retry: -1\n\n" => [];
        retry_leading_extra_space_ignored: b"retry:  100\n\n" => [];
        retry_decimal_ignored: b"retry: 1.5\n\n" => [];
        retry_empty_ignored: b"retry\n\nretry:\n\n" => [];
        retry_huge_saturates: b"retry: 99999999999999999999999\n" => [Seen::R(u64::MAX)], retry u64::MAX;
        retry_last_valid_wins: b"retry: 10\nretry: x\nretry: 20\ndata: a\n\n" => [Seen::R(10), Seen::R(20), msg("a")], retry 20;
        comment_with_space: b": ping\n\n" => [com("ping")];
        comment_without_space: b":ping\n" => [com("ping")];
        comment_empty: b":\n" => [com("")];
        comment_keeps_second_space: b":  two\n" => [com(" two")];
        comment_does_not_break_event: b"data: a\n: c\ndata: b\n\n" => [com("c"), msg("a\nb")];
        unknown_field_ignored: b"foo: bar\ndata: x\n\n" => [msg("x")];
        field_names_case_sensitive: b"Data: x\nEVENT: y\n\n" => [];
        space_before_colon_is_other_field: b"data : x\n\n" => [];
        leading_space_is_other_field: b" data: x\n\n" => [];
        blank_lines_only: b"\n\n\r\n\r" => [];
        crlf_lines: b"data: a\r\n\r\ndata: b\r\n\r\n" => [msg("a"), msg("b")];
        lone_cr_lines: b"data: a\r\rdata: b\r\r" => [msg("a"), msg("b")];
        mixed_line_endings: b"data: a\r\n\ndata: b\n\r\ndata: c\r\r\n" => [msg("a"), msg("b"), msg("c")];
        cr_then_lf_then_cr: b"data: a\r\n\r" => [msg("a")];
        lf_cr_is_two_lines: b"data: a\n\rdata: b\n\n" => [msg("a"), msg("b")];
        bom_skipped: b"\xEF\xBB\xBFdata: a\n\n" => [msg("a")];
        second_bom_is_part_of_field_name: b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n" => [];
        bom_later_in_stream_is_text: b"data: a\n\n\xEF\xBB\xBFdata: b\n\n" => [msg("a")];
        partial_bom_is_text: b"\xEF\xBBdata: x\n\ndata: y\n\n" => [msg("y")];
        bom_then_comment: b"\xEF\xBB\xBF: hi\n" => [com("hi")];
        unterminated_event_discarded: b"data: a\n\ndata: b\n" => [msg("a")];
        unterminated_line_discarded: b"data: a" => [];
        invalid_utf8_replaced: b"data: a\xFFb\n\n" => [msg("a\u{FFFD}b")];
        truncated_sequence_one_replacement: b"data: \xE2\x82\n\n" => [msg("\u{FFFD}")];
        sequence_cut_by_a_line_end_is_not_joined: b"data: a\xE2\x82\ndata: \xACb\n\n" => [msg("a\u{FFFD}\n\u{FFFD}b")];
        invalid_utf8_in_comment_and_type: b":\xC3\nevent: \xFE\ndata: x\n\n" => [com("\u{FFFD}"), ev("\u{FFFD}", "x", "")];
        multibyte_text: "data: ünïcödé €😀\n\n".as_bytes() => [msg("ünïcödé €😀")];
        openai_chunk: b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}]}\n\ndata: [DONE]\n\n" => [msg("{\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"index\":0}]}"), msg("[DONE]")];
        ping_between_chunks_crlf: b": ping\r\n\r\ndata: 1\r\n\r\n: ping\r\n\r\ndata: 2\r\n\r\n" => [com("ping"), msg("1"), com("ping"), msg("2")];
        everything_together: b"retry: 5\nid: 3\nevent: update\n: note\ndata: x\ndata: y\n\n" => [Seen::R(5), com("note"), ev("update", "x\ny", "3")], id "3", retry 5;
    }
}

/// A tiny deterministic PRNG (xorshift64*), so split points are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Feeds `input` in the given pieces and collects everything.
fn replay(pieces: &[&[u8]]) -> Outcome {
    let mut parser = Parser::new();
    let mut items = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        // `None` means the parser took everything and needs more bytes.
        while let (used, Some(item)) = parser.feed(rest).expect("no limit in these vectors") {
            items.push(own(item));
            rest = &rest[used..];
        }
    }
    parser.finish();
    (items, parser.last_event_id().to_owned(), parser.retry())
}

fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &p in points {
        pieces.push(&input[start..p]);
        start = p;
    }
    pieces.push(&input[start..]);
    pieces
}

fn check(vector: &Vector, how: &str, got: Outcome) {
    let want = (
        vector.items.clone(),
        vector.last_id.to_owned(),
        vector.retry,
    );
    assert_eq!(got, want, "vector `{}` replayed {how}", vector.name);
}

#[test]
fn table_has_at_least_forty_vectors() {
    assert!(table().len() >= 40, "only {} vectors", table().len());
}

#[test]
fn whole_buffer() {
    for v in table() {
        check(&v, "whole", replay(&[v.input]));
    }
}

#[test]
fn one_byte_at_a_time() {
    for v in table() {
        let pieces: Vec<&[u8]> = v.input.chunks(1).collect();
        check(&v, "byte by byte", replay(&pieces));
    }
}

#[test]
fn random_split_points() {
    let mut rng = Rng(0x5EED_0A15);
    for v in table() {
        for round in 0..200 {
            let cuts = rng.below(v.input.len().min(8) + 1);
            let mut points: Vec<usize> = (0..cuts).map(|_| rng.below(v.input.len() + 1)).collect();
            points.sort_unstable();
            let pieces = split_at_points(v.input, &points);
            check(
                &v,
                &format!("split at {points:?} (round {round})"),
                replay(&pieces),
            );
        }
    }
}

#[test]
fn every_single_split_point() {
    for v in table() {
        for p in 0..=v.input.len() {
            let pieces = split_at_points(v.input, &[p]);
            check(&v, &format!("split at {p}"), replay(&pieces));
        }
    }
}

/// A source that returns a random number of bytes per read, like a network socket.
struct RandomReads<'a> {
    rest: &'a [u8],
    rng: Rng,
}

impl Read for RandomReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.rng.below(9) + 1).min(buf.len()).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

#[test]
fn blocking_reader_with_random_read_sizes() {
    let mut seed = 1;
    for v in table() {
        for capacity in [1, 2, 3, 7, 64, 8192] {
            seed += 1;
            let source = RandomReads {
                rest: v.input,
                rng: Rng(seed),
            };
            let mut reader = EventReader::new(BufReader::with_capacity(capacity, source));
            let mut items = Vec::new();
            while let Some(item) = reader.next_item().expect("in-memory source") {
                items.push(own(item));
            }
            let parser = reader.parser();
            let got = (items, parser.last_event_id().to_owned(), parser.retry());
            check(
                &v,
                &format!("through EventReader, capacity {capacity}"),
                got,
            );
        }
    }
}

#[test]
fn cr_at_end_of_chunk_dispatches_without_waiting_for_next_byte() {
    let mut parser = Parser::new();
    let (used, item) = parser.feed(b"data: a\r").unwrap();
    assert_eq!((used, item), (8, None));
    let (used, item) = parser.feed(b"\r").unwrap();
    assert_eq!(used, 1);
    assert!(matches!(item, Some(Item::Event(e)) if e.data == "a"));
    // The LF that completes the CRLF arrives later and is swallowed, not a blank line.
    let (used, item) = parser.feed(b"\ndata: b\n").unwrap();
    assert_eq!((used, item), (9, None));
    assert!(parser.finish(), "`data: b` is an event still being built");
}

#[test]
fn finish_reports_discarded_event() {
    let mut parser = Parser::new();
    parser.feed(b"data: partial\n").unwrap();
    assert!(parser.finish());
    let mut parser = Parser::new();
    parser.feed(b"data: whole\n\n").unwrap();
    assert!(!parser.finish());
    // Bytes held back as a possible BOM are an unterminated line too (found by fuzzing).
    for partial_bom in [&b"\xEF"[..], b"\xEF\xBB"] {
        let mut parser = Parser::new();
        parser.feed(partial_bom).unwrap();
        assert!(parser.finish(), "{partial_bom:?}");
    }
}

#[test]
fn event_limit_counts_replaced_invalid_utf8() {
    // Each invalid byte becomes a 3-byte U+FFFD: 30 of them are 90 bytes of data, over a
    // 64-byte limit although the raw line is only 36 bytes (found by fuzzing).
    let limits = oai_sse::sse::Limits {
        max_line_len: 1024,
        max_event_len: 64,
    };
    let mut parser = Parser::with_limits(limits);
    let mut stream = b"data: ".to_vec();
    stream.extend([0xFF; 30]);
    stream.extend(b"\n\n");
    let err = parser.feed(&stream).expect_err("over the event limit");
    assert_eq!(err, oai_sse::sse::SseError::EventTooLarge { limit: 64 });
}

/// Feeds `pieces` under `limits`: the events' data, or the error.
fn replay_limited(pieces: &[&[u8]], limits: Limits) -> Result<Vec<String>, SseError> {
    let mut parser = Parser::with_limits(limits);
    let mut events = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while let (used, Some(item)) = parser.feed(rest)? {
            if let Item::Event(event) = item {
                events.push(event.data.to_owned());
            }
            rest = &rest[used..];
        }
    }
    Ok(events)
}

#[test]
fn limits_are_exact_however_the_stream_is_split() {
    // The event bound counts the data buffer as it is handed out: each value plus its LF,
    // an invalid byte as its 3-byte U+FFFD. The line bound counts raw bytes. Each stream is
    // replayed under bounds it exactly fits, and one byte tighter, whole and split at every
    // pair of points, so that every path is checked: whole lines, data lines that straddle
    // feeds (undecoded while even three times their bytes fit, decoded near the bound), and
    // other lines that straddle feeds.
    let long = format!("data: {}\ndata:{}\n\n", "x".repeat(40), "\u{e9}".repeat(12));
    let long_data = format!("{}\n{}", "x".repeat(40), "\u{e9}".repeat(12));
    let cases: Vec<(&[u8], usize, usize, &str)> = vec![
        // (stream, data buffer size, longest line, data)
        (b"data: ab\ndata: c\n\n", 5, 8, "ab\nc"),
        (b"data: abc\ndata\n\n", 5, 9, "abc\n"),
        (b"data: a\xFF\ndata: b\n\n", 7, 8, "a\u{FFFD}\nb"),
        (
            b"data:\xFF\xFF\xFF\xFF\n\n",
            13,
            9,
            "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}",
        ),
        (
            b": note\nevent: e\ndata\ndata: \xE2\x82\xAC\n\n",
            5,
            9,
            "\n\u{20AC}",
        ),
        (long.as_bytes(), 66, 46, &long_data),
    ];
    for (stream, data_size, line_len, data) in cases {
        let fits = Limits {
            max_line_len: line_len,
            max_event_len: data_size,
        };
        let tight_event = Limits {
            max_event_len: data_size - 1,
            ..fits
        };
        let tight_line = Limits {
            max_line_len: line_len - 1,
            ..fits
        };
        for first in 0..=stream.len() {
            for second in first..=stream.len() {
                let pieces = split_at_points(stream, &[first, second]);
                let how = format!(
                    "{:?} split at {first} and {second}",
                    String::from_utf8_lossy(stream)
                );
                assert_eq!(
                    replay_limited(&pieces, fits),
                    Ok(vec![data.to_owned()]),
                    "{how}"
                );
                assert_eq!(
                    replay_limited(&pieces, tight_event),
                    Err(SseError::EventTooLarge {
                        limit: data_size - 1
                    }),
                    "{how}"
                );
                assert_eq!(
                    replay_limited(&pieces, tight_line),
                    Err(SseError::LineTooLong {
                        limit: line_len - 1
                    }),
                    "{how}"
                );
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(replay_limited(&bytes, fits), Ok(vec![data.to_owned()]));
        assert!(replay_limited(&bytes, tight_event).is_err());
    }
}

#[test]
fn one_line_events_borrow_their_data_from_the_input() {
    // Whole in the input: the data is a view of the input, not a copy.
    let input = b"data: chunk one\n\nevent: x\r\ndata: two\r\n\r\n";
    let mut parser = Parser::new();
    let mut rest = &input[..];
    let mut seen = 0;
    while !rest.is_empty() {
        let (used, item) = parser.feed(rest).unwrap();
        if let Some(Item::Event(e)) = item {
            assert!(input.as_ptr_range().contains(&e.data.as_ptr()), "{e:?}");
            seen += 1;
        }
        rest = &rest[used..];
    }
    assert_eq!(seen, 2);
    // The blank line in the next input: the data had to be kept, so it is the parser's.
    let mut parser = Parser::new();
    let first = b"data: split\n";
    assert_eq!(parser.feed(first).unwrap(), (first.len(), None));
    let (_, item) = parser.feed(b"\n").unwrap();
    assert!(matches!(item, Some(Item::Event(e)) if e.data == "split"));
}

#[test]
fn reader_leaves_the_source_right_after_the_last_item() {
    // A one-line event (handed out from the reader's buffer), a two-line one, a comment.
    let stream = "data: a\n\ndata: b\ndata: c\n\n: note\nrest of the body";
    let expected_rest = [
        "data: b\ndata: c\n\n: note\nrest of the body",
        ": note\nrest of the body",
        "rest of the body",
    ];
    let after = |items: usize| {
        let mut reader = EventReader::new(BufReader::new(stream.as_bytes()));
        for _ in 0..items {
            assert!(reader.next_item().unwrap().is_some());
        }
        reader
    };
    for (i, rest) in expected_rest.iter().enumerate() {
        let items = i + 1;
        let mut tail = String::new();
        after(items).get_mut().read_to_string(&mut tail).unwrap();
        assert_eq!(tail, *rest, "after {items} items, via get_mut");
        tail.clear();
        after(items).into_inner().read_to_string(&mut tail).unwrap();
        assert_eq!(tail, *rest, "after {items} items, via into_inner");
    }
}

/// A `BufRead` that breaks its contract: its buffer shrinks although nothing was consumed.
struct ShrinkingBuffer {
    calls: usize,
}

impl Read for ShrinkingBuffer {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        unreachable!("read through BufRead only")
    }
}

impl std::io::BufRead for ShrinkingBuffer {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.calls += 1;
        Ok(if self.calls == 1 {
            b"data: abc\n\n"
        } else {
            b"da"
        })
    }
    fn consume(&mut self, _: usize) {}
}

#[test]
fn a_source_that_changes_its_buffer_is_an_error_not_a_panic() {
    let mut reader = EventReader::new(ShrinkingBuffer { calls: 0 });
    let err = reader.next_item().expect_err("the buffer shrank");
    assert!(reader.next_item().is_err(), "the failure is final");
    assert!(
        matches!(&err, oai_sse::sse::ReadError::Io(e) if e.to_string().contains("shrank")),
        "{err}"
    );
}
