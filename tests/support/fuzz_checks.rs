//! The bodies of the fuzz targets in `fuzz/fuzz_targets/`, shared with `tests/fuzz_corpus.rs`
//! (both include this file with `#[path]`), so replaying the checked-in corpus on stable runs
//! exactly the assertions the fuzzer runs.
//!
//! Each check takes the raw fuzz input. A few leading bytes configure the run (split points,
//! read sizes, limits); a small [`Input`] cursor reads them, returning zeros once the input is
//! exhausted, so every byte string is a valid input.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oai_sse::chat::{Accumulator, Completion, response_from_completion_json};
use oai_sse::retry::{
    Decision, RetryPolicy, Rng, Situation, Verdict, classify, decide, parse_http_date,
    server_delay, should_retry_header,
};
use oai_sse::sse::{self, EventReader, Item, Parser, ReadError, SseError};
use oai_sse::{ApiError, ChatResponse, Error, HttpError, StreamError, StreamEvent};
use serde_json::{Map, Value, json};

#[path = "reference.rs"]
pub mod reference;

use reference::RefItem;

// ---------------------------------------------------------------------------------------------
// Input cursor
// ---------------------------------------------------------------------------------------------

/// Reads configuration bytes off the front of a fuzz input; zeros once it runs out.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }

    /// One of `options`, picked by the next byte.
    fn pick<T: Clone>(&mut self, options: &[T]) -> T {
        options[usize::from(self.byte()) % options.len()].clone()
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared SSE helpers
// ---------------------------------------------------------------------------------------------

fn own(item: Item<'_>) -> RefItem {
    match item {
        Item::Event(e) => RefItem::Event(e.event.into(), e.data.into(), e.id.into()),
        Item::Comment(c) => RefItem::Comment(c.into()),
        Item::Retry(ms) => RefItem::Retry(ms),
    }
}

/// The longest line in raw bytes (after a leading BOM), counting an unterminated last line:
/// what `Limits::max_line_len` bounds. A stream that is only the start of a BOM has no line
/// yet: the parser holds those bytes back until it knows whether they are a BOM, and at the
/// end drops them with the rest of the unterminated line, so no limit applies to them.
fn longest_raw_line(stream: &[u8]) -> usize {
    if !stream.is_empty() && b"\xEF\xBB".starts_with(stream) {
        return 0;
    }
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    stream
        .split(|&b| b == b'\n' || b == b'\r')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

/// The error is one of the two bounds, carrying the configured limit, and a line limit was
/// really crossed.
fn check_sse_error(err: SseError, limits: sse::Limits, stream: &[u8]) {
    match err {
        SseError::LineTooLong { limit } => {
            assert_eq!(limit, limits.max_line_len);
            assert!(
                longest_raw_line(stream) > limit,
                "no line is longer than {limit}"
            );
        }
        SseError::EventTooLarge { limit } => assert_eq!(limit, limits.max_event_len),
    }
}

// ---------------------------------------------------------------------------------------------
// sse_differential
// ---------------------------------------------------------------------------------------------

/// What the fast parser produced from a stream fed in pieces.
struct Fed {
    items: Vec<RefItem>,
    error: Option<SseError>,
    last_event_id: String,
    retry: Option<u64>,
    discarded: bool,
}

fn feed_in_pieces(stream: &[u8], sizes: &[u8], limits: sse::Limits) -> Fed {
    let mut parser = Parser::with_limits(limits);
    let mut items = Vec::new();
    let mut error = None;
    let mut pos = 0;
    let mut turn = 0;
    'stream: while pos < stream.len() {
        let mut size = sizes
            .get(turn % sizes.len().max(1))
            .map_or(stream.len(), |&s| s.into());
        turn += 1;
        if size == 0 {
            // An empty feed consumes nothing and produces nothing.
            match parser.feed(&[]) {
                Ok((0, None)) => {}
                Ok(other) => panic!("empty feed gave {other:?}"),
                Err(err) => {
                    error = Some(err);
                    break;
                }
            }
            size = 1;
        }
        let end = stream.len().min(pos + size);
        let mut piece = &stream[pos..end];
        pos = end;
        loop {
            match parser.feed(piece) {
                Ok((used, Some(item))) => {
                    assert!(
                        used > 0 && used <= piece.len(),
                        "used {used} of {}",
                        piece.len()
                    );
                    items.push(own(item));
                    piece = &piece[used..];
                }
                Ok((used, None)) => {
                    assert_eq!(used, piece.len(), "no item but input left over");
                    break;
                }
                Err(err) => {
                    error = Some(err);
                    break 'stream;
                }
            }
        }
    }
    if let Some(err) = error {
        // Crossing a bound is final.
        assert_eq!(parser.feed(b"\n\n").map(|(n, _)| n), Err(err));
    }
    let last_event_id = parser.last_event_id().to_owned();
    let retry = parser.retry();
    let discarded = parser.finish();
    assert!(!parser.finish(), "a second finish discarded something");
    assert_eq!(
        parser.last_event_id(),
        last_event_id,
        "finish changed the last event id"
    );
    assert_eq!(parser.retry(), retry, "finish changed the retry time");
    Fed {
        items,
        error,
        last_event_id,
        retry,
        discarded,
    }
}

/// Layout: `flags`, then (if `flags & 0x10`) line limit and event limit / 4, then
/// `flags & 0x0f` piece sizes (0 = an empty feed), then the stream. Without sizes the stream
/// is fed whole.
pub fn sse_differential(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let limits = if flags & 0x10 != 0 {
        sse::Limits {
            max_line_len: input.byte().into(),
            max_event_len: usize::from(input.byte()) * 4,
        }
    } else {
        sse::Limits::default()
    };
    let sizes = input.take(usize::from(flags & 0x0f));
    let stream = input.rest();

    let want = reference::parse(stream);
    let got = feed_in_pieces(stream, sizes, limits);
    match got.error {
        None => {
            assert_eq!(got.items, want.items);
            assert_eq!(got.last_event_id, want.last_event_id, "last event id");
            assert_eq!(got.retry, want.retry, "retry");
            assert_eq!(got.discarded, want.discarded, "finish() result");
            assert!(longest_raw_line(stream) <= limits.max_line_len);
        }
        Some(err) => {
            check_sse_error(err, limits, stream);
            assert!(
                want.items.starts_with(&got.items),
                "items before the error differ: {:?} vs {:?}",
                got.items,
                want.items
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sse_reader
// ---------------------------------------------------------------------------------------------

/// A byte source with scripted read sizes, `Interrupted` errors (never twice in a row, so the
/// reader always progresses) and at most one fatal error. Once it has reported the end, it
/// keeps reporting the end.
struct ScriptedSource<'a> {
    data: &'a [u8],
    plan: &'a [u8],
    turn: usize,
    interrupted_last: bool,
    injected: Option<io::ErrorKind>,
    ended: bool,
}

const FATAL_KINDS: [io::ErrorKind; 6] = [
    io::ErrorKind::ConnectionReset,
    io::ErrorKind::UnexpectedEof,
    io::ErrorKind::TimedOut,
    io::ErrorKind::WouldBlock,
    io::ErrorKind::BrokenPipe,
    io::ErrorKind::Other,
];

impl Read for ScriptedSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        let step = self.plan.get(self.turn % self.plan.len().max(1)).copied();
        self.turn += 1;
        match step {
            Some(0xFF) if !self.interrupted_last => {
                self.interrupted_last = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            Some(0xFE) if self.injected.is_none() => {
                let kind = FATAL_KINDS[self.turn % FATAL_KINDS.len()];
                self.injected = Some(kind);
                return Err(io::Error::new(kind, "injected"));
            }
            _ => {}
        }
        self.interrupted_last = false;
        let size = step.map_or(buf.len(), |s| usize::from(s) + 1);
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ended = n == 0 && !buf.is_empty();
        Ok(n)
    }
}

/// Items stay within the limits: an event's data buffer (data + its LF) within
/// `max_event_len`; type, id and comment came from one line, so within `max_line_len` bytes
/// of input, each of which decodes to at most 3 bytes (U+FFFD).
fn check_item_size(item: &Item<'_>, limits: sse::Limits) {
    let line_bound = limits.max_line_len.saturating_mul(3);
    match item {
        Item::Event(e) => {
            let bound = limits.max_event_len;
            assert!(
                e.data.len() < bound,
                "event data of {} bytes under a limit of {}",
                e.data.len(),
                limits.max_event_len
            );
            assert!(e.event == "message" || e.event.len() <= line_bound);
            assert!(e.id.len() <= line_bound);
        }
        Item::Comment(c) => assert!(c.len() <= line_bound),
        Item::Retry(_) => {}
    }
}

/// Layout: `sel` (limits and buffer capacity), `n`, `n % 16` read-plan bytes (0xFF =
/// `Interrupted`, 0xFE = one fatal error, else a read of that many bytes + 1), then the stream.
pub fn sse_reader(data: &[u8]) {
    let mut input = Input::new(data);
    let sel = usize::from(input.byte());
    let limits = sse::Limits {
        max_line_len: [256, 16, 1, 0][sel & 3],
        max_event_len: [1024, 64, 2, 0][(sel >> 2) & 3],
    };
    let capacity = [8192, 1, 2, 3, 5, 8, 16, 64][(sel >> 4) & 7];
    let plan_len = usize::from(input.byte() % 16);
    let plan = input.take(plan_len);
    let stream = input.rest();
    let source = ScriptedSource {
        data: stream,
        plan,
        turn: 0,
        interrupted_last: false,
        injected: None,
        ended: false,
    };
    let mut reader = EventReader::with_limits(BufReader::with_capacity(capacity, source), limits);

    let want = reference::parse(stream);
    let mut items = Vec::new();
    let end = loop {
        // Each item ends a line, so there are never more items than bytes.
        assert!(items.len() <= stream.len(), "more items than bytes");
        match reader.next_item() {
            Ok(Some(item)) => {
                check_item_size(&item, limits);
                items.push(own(item));
            }
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    let injected = reader.get_ref().get_ref().injected;
    assert!(
        want.items.starts_with(&items),
        "items differ from the reference: {items:?} vs {:?}",
        want.items
    );
    match end {
        None => {
            assert_eq!(injected, None, "an injected error was swallowed");
            assert_eq!(items, want.items);
            assert_eq!(reader.parser().last_event_id(), want.last_event_id);
            assert_eq!(reader.parser().retry(), want.retry);
            assert!(longest_raw_line(stream) <= limits.max_line_len);
            // The end of the stream stays the end.
            assert!(matches!(reader.next_item(), Ok(None)));
        }
        Some(ReadError::Io(err)) => {
            assert_eq!(
                Some(err.kind()),
                injected,
                "io error {err} was not injected"
            );
            for _ in 0..3 {
                match reader.next_item() {
                    Err(ReadError::Io(again)) => assert_eq!(again.kind(), err.kind()),
                    other => panic!("after an io error: {other:?}"),
                }
            }
        }
        Some(ReadError::Sse(err)) => {
            check_sse_error(err, limits, stream);
            for _ in 0..3 {
                match reader.next_item() {
                    Err(ReadError::Sse(again)) => assert_eq!(again, err),
                    other => panic!("after {err:?}: {other:?}"),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// chat_stream
// ---------------------------------------------------------------------------------------------

/// What the deltas delivered to the caller add up to, per choice.
#[derive(Default)]
struct Delivered {
    choices: BTreeMap<u32, DeliveredChoice>,
    /// Bytes of text that count against `max_response_bytes`.
    budget_used: usize,
}

#[derive(Default)]
struct DeliveredChoice {
    roles: usize,
    content: String,
    reasoning: String,
    refusal: String,
    /// Slot → (first id, first name, arguments).
    tools: BTreeMap<u32, (Option<String>, Option<String>, String)>,
    finish: Option<String>,
}

impl Delivered {
    fn record(&mut self, event: &StreamEvent<'_>, limits: &oai_sse::ChatLimits) {
        let choice = match event {
            StreamEvent::Role { choice, .. }
            | StreamEvent::Content { choice, .. }
            | StreamEvent::Reasoning { choice, .. }
            | StreamEvent::Refusal { choice, .. }
            | StreamEvent::ToolCall { choice, .. }
            | StreamEvent::Finish { choice, .. } => *choice,
            StreamEvent::Usage(_) => return,
            other => panic!("the accumulator emitted {other:?}"),
        };
        let known = self.choices.len() + usize::from(!self.choices.contains_key(&choice));
        assert!(
            known <= limits.max_choices as usize,
            "more than {} choices delivered",
            limits.max_choices
        );
        let c = self.choices.entry(choice).or_default();
        match *event {
            StreamEvent::Role { role, .. } => {
                assert!(!role.is_empty());
                c.roles += 1;
                assert_eq!(c.roles, 1, "role delivered twice for choice {choice}");
            }
            StreamEvent::Content { text, .. } => {
                assert!(!text.is_empty(), "empty content delta");
                c.content.push_str(text);
                self.budget_used += text.len();
            }
            StreamEvent::Reasoning { text, .. } => {
                assert!(!text.is_empty(), "empty reasoning delta");
                c.reasoning.push_str(text);
                self.budget_used += text.len();
            }
            StreamEvent::Refusal { text, .. } => {
                assert!(!text.is_empty(), "empty refusal delta");
                c.refusal.push_str(text);
                self.budget_used += text.len();
            }
            StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments,
                ..
            } => {
                assert!(
                    index < limits.max_tool_calls,
                    "tool slot {index} with a limit of {}",
                    limits.max_tool_calls
                );
                assert!(id.is_none_or(|s| !s.is_empty()) && name.is_none_or(|s| !s.is_empty()));
                let slot = c.tools.entry(index).or_default();
                for (first, new) in [(&mut slot.0, id), (&mut slot.1, name)] {
                    if let (None, Some(new)) = (&first, new) {
                        self.budget_used += new.len();
                        *first = Some(new.to_owned());
                    }
                }
                slot.2.push_str(arguments);
                self.budget_used += arguments.len();
            }
            StreamEvent::Finish { reason, .. } => {
                assert!(!reason.is_empty());
                c.finish = Some(reason.to_owned());
            }
            _ => {}
        }
    }

    /// The final response agrees with what was delivered.
    fn check_response(&self, resp: &ChatResponse) {
        let indices: Vec<u32> = resp.choices.iter().map(|c| c.index).collect();
        let delivered: Vec<u32> = self.choices.keys().copied().collect();
        for index in &delivered {
            assert!(
                indices.contains(index),
                "choice {index} delivered but missing"
            );
        }
        for choice in &resp.choices {
            let empty = DeliveredChoice::default();
            let d = self.choices.get(&choice.index).unwrap_or(&empty);
            let m = &choice.message;
            assert_eq!(m.text(), d.content, "content of choice {}", choice.index);
            assert_eq!(m.reasoning_content.as_deref().unwrap_or(""), d.reasoning);
            assert_eq!(m.refusal.as_deref().unwrap_or(""), d.refusal);
            assert_eq!(choice.finish_reason, d.finish);
            // A fragment with nothing to deliver (only an index or a type) still opens a slot.
            let calls = m.tool_calls.as_deref().unwrap_or_default();
            for (slot, (id, name, arguments)) in &d.tools {
                let call = calls
                    .get(*slot as usize)
                    .expect("delivered tool call missing");
                assert_eq!(call.id, id.as_deref().unwrap_or(""));
                assert_eq!(call.function.name, name.as_deref().unwrap_or(""));
                if arguments.trim().is_empty() {
                    assert_eq!(call.function.arguments, "{}");
                } else {
                    assert_eq!(&call.function.arguments, arguments);
                }
            }
            for (slot, call) in calls.iter().enumerate() {
                if !d.tools.contains_key(&(slot as u32)) {
                    assert!(
                        call.id.is_empty() && call.function.name.is_empty(),
                        "{call:?}"
                    );
                    assert_eq!(call.function.arguments, "{}");
                }
            }
        }
    }
}

/// A response anyone can rely on: choices sorted by index, tool arguments valid JSON, and it
/// survives its own JSON form.
fn check_response_shape(resp: &ChatResponse, strictly_sorted: bool) {
    for pair in resp.choices.windows(2) {
        let (a, b) = (pair[0].index, pair[1].index);
        assert!(
            a < b || (!strictly_sorted && a == b),
            "choices not sorted: {a}, {b}"
        );
    }
    for call in resp
        .choices
        .iter()
        .flat_map(|c| c.message.tool_calls.iter().flatten())
    {
        let args = &call.function.arguments;
        assert!(
            serde_json::from_str::<Value>(args).is_ok(),
            "invalid arguments {args:?}"
        );
    }
    // Usage may hold floats, which need not survive a decimal round trip bit for bit.
    let mut expected = resp.clone();
    expected.usage = None;
    let json = serde_json::to_vec(&expected).expect("a response serializes");
    let mut again = response_from_completion_json(&json).expect("a response reads back");
    again.usage = None;
    assert_eq!(again, expected, "{}", String::from_utf8_lossy(&json));
}

fn check_chat_error(err: &StreamError, limits: &oai_sse::ChatLimits) {
    match err {
        StreamError::TooManyChoices { limit } => assert_eq!(*limit, limits.max_choices),
        StreamError::TooManyToolCalls { limit } => assert_eq!(*limit, limits.max_tool_calls),
        StreamError::ResponseTooLarge { limit } => assert_eq!(*limit, limits.max_response_bytes),
        StreamError::MalformedChunk { snippet, .. } => {
            assert!(snippet.chars().count() <= StreamError::SNIPPET_CHARS);
        }
        _ => {}
    }
}

/// An HTTP body through the SSE reader and the accumulator, as the client reads a stream.
fn check_stream(body: &[u8], usage_requested: bool, limits: oai_sse::ChatLimits) {
    let mut reader = EventReader::new(body);
    let mut acc = Accumulator::with_limits(usage_requested, limits);
    let mut delivered = Delivered::default();
    let mut sink = |e: &StreamEvent<'_>| delivered.record(e, &limits);
    let mut complete = false;
    let failed = loop {
        match reader.next_item() {
            Ok(Some(Item::Event(event))) => {
                match acc.push_event_with(event.event, event.data, &mut sink) {
                    Ok(progress) => {
                        assert_eq!(progress == Completion::Complete, acc.is_complete());
                        if progress == Completion::Complete {
                            complete = true;
                            break None;
                        }
                    }
                    Err(err) => break Some(err),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break None,
            Err(err) => panic!("a byte slice within the default limits failed: {err}"),
        }
    };
    assert!(
        delivered.budget_used <= limits.max_response_bytes,
        "budget overrun"
    );
    if let Some(err) = failed {
        check_chat_error(&err, &limits);
        return;
    }
    match acc.finish() {
        Ok(resp) => {
            assert!(complete, "finish() succeeded on an incomplete stream");
            assert!(resp.choices.len() <= limits.max_choices as usize);
            for choice in &resp.choices {
                let calls = choice.message.tool_calls.as_deref().unwrap_or_default();
                assert!(calls.len() <= limits.max_tool_calls as usize);
            }
            check_response_shape(&resp, true);
            delivered.check_response(&resp);
        }
        Err(err) => {
            if !complete {
                assert!(
                    matches!(err, StreamError::IncompleteStream { .. }),
                    "{err:?}"
                );
            }
            assert!(!matches!(err, StreamError::IncompleteStream { .. }) || !complete);
            check_chat_error(&err, &limits);
        }
    }
}

/// A whole `chat.completion` body.
fn check_completion(body: &[u8]) {
    match response_from_completion_json(body) {
        Ok(resp) => check_response_shape(&resp, false),
        Err(err) => check_chat_error(&err, &oai_sse::ChatLimits::default()),
    }
}

const TEXTS: [&str; 24] = [
    "",
    "Hello",
    " \"world\"",
    "{\"lo",
    "cation\": \"Pa",
    "ris\"}",
    "{}",
    "{",
    "[1,",
    "2]",
    "null",
    " ",
    "\n",
    "caf\u{e9} \u{1F600}",
    "\\",
    "call_sF9t",
    "call_Qx2",
    "get_weather",
    "get_time",
    "assistant",
    "stop",
    "length",
    "tool_calls",
    "<think>",
];

fn gen_text(input: &mut Input<'_>) -> Value {
    match input.byte() % 8 {
        0 => Value::Null,
        1 => {
            let n = usize::from(input.byte() % 16);
            String::from_utf8_lossy(input.take(n)).into_owned().into()
        }
        2 => json!(input.u16()),
        _ => input.pick(&TEXTS).into(),
    }
}

fn gen_index(input: &mut Input<'_>) -> Value {
    match input.byte() % 14 {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(i64::MIN),
        3 => json!(i64::MAX),
        4 => json!(u64::MAX),
        5 => json!(u64::from(u32::MAX) + 1),
        6 => json!(1.5),
        7 => json!("0"),
        8 => json!(input.u32()),
        n => json!(n - 9),
    }
}

fn maybe(input: &mut Input<'_>, obj: &mut Map<String, Value>, key: &str, value: Value) {
    if input.byte() & 1 == 1 {
        obj.insert(key.to_owned(), value);
    }
}

fn gen_tool_call(input: &mut Input<'_>, streamed: bool) -> Value {
    let mut call = Map::new();
    if streamed {
        let index = gen_index(input);
        maybe(input, &mut call, "index", index);
    }
    let id = gen_text(input);
    maybe(input, &mut call, "id", id);
    let kind = input.pick(&[json!("function"), Value::Null, json!("custom")]);
    maybe(input, &mut call, "type", kind);
    let mut function = Map::new();
    let name = gen_text(input);
    maybe(input, &mut function, "name", name);
    let arguments = match input.byte() % 6 {
        0 => json!({"location": "Paris"}),
        _ => gen_text(input),
    };
    maybe(input, &mut function, "arguments", arguments);
    call.insert("function".into(), function.into());
    call.into()
}

fn gen_message(input: &mut Input<'_>, streamed: bool) -> Value {
    let mut m = Map::new();
    let role = input.pick(&[json!("assistant"), Value::Null, json!(""), json!("tool")]);
    maybe(input, &mut m, "role", role);
    for key in ["content", "reasoning_content", "reasoning", "refusal"] {
        let text = gen_text(input);
        maybe(input, &mut m, key, text);
    }
    if input.byte() & 1 == 1 {
        let n = input.byte() % 4;
        let calls: Vec<Value> = (0..n).map(|_| gen_tool_call(input, streamed)).collect();
        m.insert("tool_calls".into(), calls.into());
    }
    m.into()
}

fn gen_usage(input: &mut Input<'_>) -> Value {
    match input.byte() % 4 {
        0 => Value::Null,
        1 => json!({"prompt_tokens": input.u16(), "completion_tokens": input.u16(),
                    "total_tokens": input.u32(), "prompt_tokens_details": {"cached_tokens": 0}}),
        2 => json!({"prompt_tokens": -1, "completion_tokens": null}),
        _ => json!({"completion_tokens": 9, "prompt_tokens": 14, "total_tokens": 23}),
    }
}

fn gen_error(input: &mut Input<'_>) -> Value {
    match input.byte() % 4 {
        0 => Value::Null,
        1 => json!("overloaded"),
        2 => json!({"message": gen_text(input), "type": "server_error", "code": gen_index(input)}),
        _ => json!({"error": {"message": "nested", "code": 429}}),
    }
}

/// A chunk (`streamed`) or a whole completion built from the input.
fn gen_body_object(input: &mut Input<'_>, streamed: bool) -> Value {
    let mut obj = Map::new();
    let flags = input.byte();
    if flags & 1 != 0 {
        obj.insert("id".into(), gen_text(input));
        obj.insert("model".into(), gen_text(input));
        let created = input.pick(&[json!(1739000000), json!(-1), Value::Null, json!("x")]);
        obj.insert("created".into(), created);
    }
    if flags & 2 != 0 {
        let n = input.byte() % 4;
        let choices: Vec<Value> = (0..n)
            .map(|_| {
                let mut c = Map::new();
                let index = gen_index(input);
                maybe(input, &mut c, "index", index);
                let key = if streamed { "delta" } else { "message" };
                let message = gen_message(input, streamed);
                c.insert(key.into(), message);
                let finish = input.pick(&[
                    Value::Null,
                    json!("stop"),
                    json!("length"),
                    json!("tool_calls"),
                    json!(""),
                    json!(5),
                ]);
                maybe(input, &mut c, "finish_reason", finish);
                c.into()
            })
            .collect();
        obj.insert("choices".into(), choices.into());
    }
    if flags & 4 != 0 {
        obj.insert("usage".into(), gen_usage(input));
    }
    if flags & 8 != 0 {
        obj.insert("error".into(), gen_error(input));
    }
    if flags & 16 != 0 {
        obj.insert("timings".into(), json!({"predicted_per_second": 102.1}));
    }
    obj.into()
}

/// An SSE body of chunks, `[DONE]`, error events, comments and other event types.
fn gen_stream(input: &mut Input<'_>) -> Vec<u8> {
    let mut body = String::new();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let eol = input.pick(&["\n", "\r\n", "\r"]);
        match input.byte() % 10 {
            0 => body.push_str("data: [DONE]"),
            1 => {
                let err = gen_error(input);
                body.push_str(&format!("event: error{eol}data: {err}"));
            }
            2 => body.push_str(": keep-alive"),
            3 => body.push_str("event: ping\ndata: {}"),
            _ => body.push_str(&format!("data: {}", gen_body_object(input, true))),
        }
        body.push_str(eol);
        body.push_str(eol);
    }
    body.into_bytes()
}

/// Layout: `mode` (0 raw SSE body, 1 generated SSE body, 2 raw completion body, 3 generated
/// completion body), `sel` (limits, usage requested), then the body or generator bytes.
pub fn chat_stream(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte() % 4;
    let sel = usize::from(input.byte());
    let limits = oai_sse::ChatLimits {
        max_choices: [16, 1, 2, 0][sel & 3],
        max_tool_calls: [128, 1, 3, 0][(sel >> 2) & 3],
        max_response_bytes: [64 << 20, 0, 16, 300][(sel >> 4) & 3],
    };
    let usage_requested = sel & 0x40 != 0;
    match mode {
        0 => check_stream(input.rest(), usage_requested, limits),
        1 => {
            let body = gen_stream(&mut input);
            check_stream(&body, usage_requested, limits);
        }
        2 => check_completion(input.rest()),
        _ => {
            let body = gen_body_object(&mut input, false);
            check_completion(body.to_string().as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// retry_headers
// ---------------------------------------------------------------------------------------------

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WORDS: [&str; 16] = [
    "true", "false", " TRUE ", "False", "yes", "", "0", "-0", "-1", "1.5", "NaN", "inf", "1e400",
    "+3", " 7 ", "120",
];

fn leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days from 1970-01-01 to the given date, counted the slow way.
fn days_since_epoch(year: u32, month: u32, day: u32) -> u64 {
    let years: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let months: u64 = (1..month).map(|m| u64::from(days_in_month(year, m))).sum();
    years + months + u64::from(day) - 1
}

fn days_in_month(year: u32, month: u32) -> u32 {
    [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month as usize - 1]
}

/// A date in one of the three HTTP formats with the given fields as text.
fn format_date(style: u8, day: &str, month: &str, year: &str, time: &str) -> String {
    match style % 3 {
        0 => format!("Sun, {day} {month} {year} {time} GMT"),
        1 => format!("Sunday, {day}-{month}-{year} {time} GMT"),
        _ => format!("Sun {month} {day:>2} {time} {year}"),
    }
}

/// A header value: absent, raw bytes, a number, a date with wild fields, or a known word.
fn gen_header(input: &mut Input<'_>) -> Option<String> {
    Some(match input.byte() % 7 {
        0 => return None,
        1 => {
            let n = usize::from(input.byte() % 40);
            String::from_utf8_lossy(input.take(n)).into_owned()
        }
        2 => f64::from_bits(input.u64()).to_string(),
        3 => input.u64().to_string(),
        4 => {
            let style = input.byte();
            let day = match input.byte() % 3 {
                0 => input.u64().to_string(),
                _ => (input.byte() % 40).to_string(),
            };
            let month = MONTHS[usize::from(input.byte()) % 12];
            let year = match input.byte() % 4 {
                0 => input.u64().to_string(),
                1 => (input.u64() >> (input.byte() % 64)).to_string(),
                2 => format!("{:02}", input.byte() % 100),
                _ => (1900 + input.u16() % 8100).to_string(),
            };
            let time = format!(
                "{:02}:{:02}:{:02}",
                input.byte() % 70,
                input.byte() % 70,
                input.byte() % 70
            );
            format_date(style, &day, month, &year, &time)
        }
        _ => input.pick(&WORDS).to_owned(),
    })
}

/// The clock for the date round trip: 2026-06-01, which places two-digit years in 1977..=2076.
fn round_trip_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_272_000)
}

/// A valid date with a known instant parses to exactly that instant.
fn check_date_round_trip(input: &mut Input<'_>) {
    let style = input.byte();
    let two_digits = style % 3 == 1 && input.byte() & 1 == 1;
    let (year, year_text) = if two_digits {
        let yy = u32::from(input.byte() % 100);
        (
            // RFC 9110's rule relative to round_trip_now() (2026): up to 50 years ahead.
            if yy <= 76 { 2000 + yy } else { 1900 + yy },
            format!("{yy:02}"),
        )
    } else {
        let year = 1970 + u32::from(input.u16() % 8030);
        (year, year.to_string())
    };
    let month = 1 + u32::from(input.byte() % 12);
    let day = 1 + u32::from(input.byte()) % days_in_month(year, month);
    let (h, m, s) = (input.byte() % 24, input.byte() % 60, input.byte() % 61);
    let text = format_date(
        style,
        &format!("{day:02}"),
        MONTHS[month as usize - 1],
        &year_text,
        &format!("{h:02}:{m:02}:{s:02}"),
    );
    let secs = days_since_epoch(year, month, day) * 86_400
        + u64::from(h) * 3600
        + u64::from(m) * 60
        + u64::from(s);
    assert_eq!(
        parse_http_date(&text, round_trip_now()),
        Some(UNIX_EPOCH + Duration::from_secs(secs)),
        "{text}"
    );
}

fn gen_f64(input: &mut Input<'_>) -> f64 {
    match input.byte() % 6 {
        0 => f64::from_bits(input.u64()),
        1 => f64::NAN,
        2 => f64::INFINITY,
        3 => f64::NEG_INFINITY,
        4 => f64::from(input.byte()) / 64.0,
        _ => -f64::from(input.byte()) / 64.0,
    }
}

fn gen_duration(input: &mut Input<'_>) -> Duration {
    match input.byte() % 5 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(input.u16().into()),
        2 => Duration::new(input.u64(), input.u32() % 1_000_000_000),
        3 => Duration::MAX,
        _ => Duration::new(input.u32().into(), input.u32() % 1_000_000_000),
    }
}

fn gen_time(input: &mut Input<'_>) -> SystemTime {
    match input.byte() % 4 {
        0 => UNIX_EPOCH + Duration::from_secs(input.u64() % (300 * 365 * 86_400)),
        1 => UNIX_EPOCH
            .checked_add(gen_duration(input))
            .unwrap_or(UNIX_EPOCH),
        2 => UNIX_EPOCH
            .checked_sub(Duration::from_secs(input.u32().into()))
            .unwrap_or(UNIX_EPOCH),
        _ => UNIX_EPOCH + Duration::from_secs(1_735_689_600),
    }
}

// Field by field, in input order: the policy is `#[non_exhaustive]` outside the crate.
#[allow(clippy::field_reassign_with_default)]
fn gen_policy(input: &mut Input<'_>) -> RetryPolicy {
    let statuses = input.byte() % 5;
    let mut policy = RetryPolicy::default();
    policy.max_retries = u32::from(input.byte() % 8);
    policy.initial_delay = gen_duration(input);
    policy.factor = gen_f64(input);
    policy.max_delay = gen_duration(input);
    policy.jitter = gen_f64(input);
    policy.max_elapsed = (input.byte() & 1 == 1).then(|| gen_duration(input));
    policy.max_retry_after = gen_duration(input);
    if statuses != 4 {
        policy.retry_statuses = (0..statuses).map(|_| input.u16()).collect();
    }
    policy.retry_dns = input.byte() & 1 == 1;
    policy.retry_after_output = input.byte() & 1 == 1;
    policy.max_wait_for_server = (input.byte() & 1 == 1).then(|| gen_duration(input));
    policy.resume = input.byte() & 1 == 1;
    policy.wait_for_unseen_server = input.byte() & 1 == 1;
    policy.continuation = input.byte() & 1 == 1;
    policy
}

/// Fully generated from the input: headers, a clock, a policy.
pub fn retry_headers(data: &[u8]) {
    let mut input = Input::new(data);
    let now = gen_time(&mut input);
    let mut header = || gen_header(&mut input);
    let (retry_after_ms, retry_after, should_retry) = (header(), header(), header());
    for header in [&retry_after_ms, &retry_after, &should_retry]
        .into_iter()
        .flatten()
    {
        let _ = parse_http_date(header, now);
        let verdict = should_retry_header(Some(header));
        let word = header.trim().to_ascii_lowercase();
        assert_eq!(
            verdict,
            ["false", "true"]
                .iter()
                .position(|w| *w == word)
                .map(|i| i == 1)
        );
    }
    check_date_round_trip(&mut input);

    let delay = server_delay(retry_after_ms.as_deref(), retry_after.as_deref(), now);
    let digits = |h: &Option<String>| {
        h.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
    };
    if let Some(ms) = digits(&retry_after_ms) {
        let d = delay.expect("integer retry-after-ms ignored");
        assert!(
            d.abs_diff(Duration::from_millis(ms)) <= Duration::from_micros(1),
            "{d:?}"
        );
    } else if retry_after_ms.is_none()
        && let Some(secs) = digits(&retry_after)
    {
        assert_eq!(delay, Some(Duration::from_secs(secs)));
    }

    let policy = gen_policy(&mut input);
    let status = input.u16();
    let code = input.pick(&[
        None,
        Some("insufficient_quota"),
        Some("rate_limit_exceeded"),
    ]);
    let mut error = ApiError::default();
    error.message = "m".into();
    error.code = code.map(str::to_owned);
    let http = HttpError {
        status,
        error,
        retry_after,
        retry_after_ms,
        should_retry,
    };
    let opinion = should_retry_header(http.should_retry.as_deref());
    let err = Error::Http(Box::new(http));
    match classify(&err.failure(), &policy, now) {
        Verdict::Transient { server_delay } => {
            assert_ne!(opinion, Some(false));
            assert_eq!(server_delay, delay);
            assert!(server_delay.is_none_or(|d| d <= policy.max_retry_after));
        }
        Verdict::WaitTooLong(d) => {
            assert_ne!(opinion, Some(false));
            assert_eq!(Some(d), delay);
            assert!(d > policy.max_retry_after);
        }
        Verdict::Permanent => assert_ne!(opinion, Some(true)),
    }

    let seed = input.u64();
    let retry = input.u32();
    for n in [retry, 1, retry.saturating_add(1)] {
        let wait = policy.backoff(n, &mut Rng::seeded(seed));
        assert!(
            wait <= policy.max_delay,
            "backoff {wait:?} over {:?}",
            policy.max_delay
        );
    }
    let elapsed = gen_duration(&mut input);
    let deadline = (input.byte() & 1 == 1).then(|| gen_duration(&mut input));
    let situation = Situation {
        retries_done: retry % 8,
        down_retries: u32::from(input.byte() % 4),
        restart_after_output: input.byte() & 1 == 1,
        elapsed,
        deadline,
        server_down_for: (input.byte() & 1 == 1).then(|| gen_duration(&mut input)),
    };
    let decision = decide(
        &err.failure(),
        &policy,
        &situation,
        now,
        &mut Rng::seeded(seed),
    );
    if let Decision::Retry(wait) = decision {
        let cap = policy.max_delay.max(policy.max_retry_after);
        assert!(wait <= cap, "retry after {wait:?}, over {cap:?}");
    }
}
