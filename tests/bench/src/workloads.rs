//! Deterministic SSE streams. Each generator also returns what a correct parser must
//! report: the number of dispatched events and the total length of their data.

use bytes::Bytes;

pub struct Workload {
    pub name: &'static str,
    pub what: String,
    pub bytes: Bytes,
    pub events: usize,
    pub data_bytes: usize,
}

/// How the stream reaches the parser.
#[derive(Clone, Copy)]
pub enum Feed {
    /// The whole stream in one buffer.
    Whole,
    /// Reads of at most this many bytes, as a socket hands them out.
    Reads(usize),
}

impl Feed {
    pub const ALL: [Feed; 3] = [Feed::Whole, Feed::Reads(1024), Feed::Reads(16)];

    pub fn label(self) -> String {
        match self {
            Feed::Whole => "1 buffer".into(),
            Feed::Reads(1024) => "1 KiB reads".into(),
            Feed::Reads(n) => format!("{n} B reads"),
        }
    }

    /// The stream cut into chunks: `Bytes` slices sharing one allocation, so handing a
    /// chunk to a peer costs a reference count, not a copy.
    pub fn chunks(self, bytes: &Bytes) -> Vec<Bytes> {
        match self {
            Feed::Whole => vec![bytes.clone()],
            Feed::Reads(n) => (0..bytes.len())
                .step_by(n)
                .map(|at| bytes.slice(at..(at + n).min(bytes.len())))
                .collect(),
        }
    }
}

/// The first `len` bytes of a chunked stream, cut the same way.
pub fn prefix(chunks: &[Bytes], len: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut left = len;
    for chunk in chunks {
        if left == 0 {
            break;
        }
        let n = chunk.len().min(left);
        out.push(chunk.slice(..n));
        left -= n;
    }
    out
}

/// A small deterministic generator (PCG-style LCG), so every run sees the same bytes.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Token-sized pieces as they appear in `delta.content`, JSON-escaped, some non-ASCII.
const TOKENS: &[&str] = &[
    " the",
    " model",
    " streams",
    " tokens",
    ",",
    " and",
    " a",
    " parser",
    " reads",
    " them",
    ".",
    " Hello",
    " world",
    "\\n\\n",
    " \\\"quoted\\\"",
    " naïve",
    " 世界",
    " 42",
    " of",
    " chunk",
    " Server",
    "-Sent",
    " Events",
    " over",
    " HTTP",
    "/1.1",
    " 🙂",
    "```rust",
];

struct Builder {
    out: Vec<u8>,
    nl: &'static str,
    events: usize,
    data_bytes: usize,
}

impl Builder {
    fn new(nl: &'static str) -> Self {
        Self {
            out: Vec::new(),
            nl,
            events: 0,
            data_bytes: 0,
        }
    }

    fn line(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(self.nl.as_bytes());
    }

    /// An event made of these data lines (and nothing else).
    fn event(&mut self, data: &[&str]) {
        for d in data {
            self.line(&format!("data: {d}"));
        }
        self.line("");
        self.events += 1;
        self.data_bytes += data.iter().map(|d| d.len()).sum::<usize>() + data.len() - 1;
    }

    fn finish(self, name: &'static str, what: String) -> Workload {
        Workload {
            name,
            what,
            bytes: Bytes::from(self.out),
            events: self.events,
            data_bytes: self.data_bytes,
        }
    }
}

/// 100,000 OpenAI `chat.completion.chunk` events (role chunk, content chunks of one to three
/// tokens, the finish chunk), then `data: [DONE]`, 100,000 events in all.
pub fn chat(crlf: bool) -> Workload {
    const EVENTS: usize = 100_000;
    let mut b = Builder::new(if crlf { "\r\n" } else { "\n" });
    let mut rng = Lcg(42);
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":"#;
    for i in 0..EVENTS - 1 {
        let (delta, finish) = match i {
            0 => (
                r#"{"role":"assistant","content":"","refusal":null}"#.to_owned(),
                "null",
            ),
            _ if i == EVENTS - 2 => ("{}".to_owned(), r#""stop""#),
            _ => {
                let n = 1 + rng.below(3);
                let text: String = (0..n).map(|_| TOKENS[rng.below(TOKENS.len())]).collect();
                (format!(r#"{{"content":"{text}"}}"#), "null")
            }
        };
        b.event(&[&format!(
            r#"{head}{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
        )]);
    }
    b.event(&["[DONE]"]);
    let avg = b.out.len() / b.events;
    let name = if crlf { "chat-crlf" } else { "chat" };
    let what = format!(
        "{EVENTS} chat.completion.chunk events, {avg} B on average, {} framing",
        if crlf { "CRLF" } else { "LF" }
    );
    b.finish(name, what)
}

/// 128 events, each one 64 KiB `data:` line.
pub fn long() -> Workload {
    const EVENTS: usize = 128;
    const LEN: usize = 64 << 10;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Lcg(7);
    let mut b = Builder::new("\n");
    let mut data = String::with_capacity(LEN);
    for _ in 0..EVENTS {
        data.clear();
        data.extend((0..LEN).map(|_| alphabet[rng.below(alphabet.len())] as char));
        b.event(&[&data]);
    }
    b.finish("long", format!("{EVENTS} events of one 64 KiB data line"))
}

/// 20,000 events of ten short `data:` lines each, with a comment before each event and one
/// in the middle of it, plus an `event:` and `id:` field.
pub fn multiline() -> Workload {
    const EVENTS: usize = 20_000;
    let mut rng = Lcg(3);
    let mut b = Builder::new("\n");
    for i in 0..EVENTS {
        b.line(": keep-alive");
        b.line("event: rows");
        b.line(&format!("id: {i}"));
        let rows: Vec<String> = (0..10)
            .map(|r| format!(r#"{{"row":{r},"v":{}}}"#, rng.below(1_000_000)))
            .collect();
        for (r, row) in rows.iter().enumerate() {
            if r == 5 {
                b.line(": progress");
            }
            b.line(&format!("data: {row}"));
        }
        b.line("");
        b.events += 1;
        b.data_bytes += rows.iter().map(String::len).sum::<usize>() + 9;
    }
    let avg = b.out.len() / b.events;
    b.finish(
        "multiline",
        format!("{EVENTS} events of 10 data lines + 2 comments, {avg} B on average"),
    )
}

pub fn all() -> Vec<Workload> {
    vec![chat(false), chat(true), long(), multiline()]
}
