//! A deliberately simple event-stream parser, written straight from the WHATWG HTML standard
//! ("Parsing an event stream" and "Interpreting an event stream"), with owned `String`s and no
//! cleverness. The `sse_differential` fuzz target and `tests/fuzz_corpus.rs` compare the
//! zero-allocation parser against it.
//!
//! Where the standard leaves room, this follows the crate's documented choices: a `retry`
//! value that is empty is ignored and one too large for `u64` saturates at `u64::MAX`;
//! comments are reported (the text after the colon, less one leading space).

/// One thing the stream produced, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefItem {
    /// A dispatched event: type, data, last event ID.
    Event(String, String, String),
    /// A comment line's text.
    Comment(String),
    /// A valid `retry` field.
    Retry(u64),
}

/// Everything a whole stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefOutcome {
    pub items: Vec<RefItem>,
    /// The last event ID string at the end of the stream.
    pub last_event_id: String,
    /// The reconnection time from the last valid `retry` field.
    pub retry: Option<u64>,
    /// End of stream discarded something: an unterminated line, or an event being built.
    pub discarded: bool,
}

/// Parses a whole stream.
pub fn parse(bytes: &[u8]) -> RefOutcome {
    // "UTF-8 decode": invalid sequences become U+FFFD, and one leading BOM is removed.
    let decoded = String::from_utf8_lossy(bytes);
    let text = decoded.strip_prefix('\u{FEFF}').unwrap_or(&decoded);

    // Lines end in CRLF, a lone LF or a lone CR.
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut current));
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    // `current` is now an unterminated last line: never interpreted.

    let mut state = State::default();
    for line in &lines {
        state.interpret(line);
    }
    let discarded = !current.is_empty() || !state.data.is_empty() || !state.event_type.is_empty();
    RefOutcome {
        items: state.items,
        last_event_id: state.last_event_id,
        retry: state.retry,
        discarded,
    }
}

#[derive(Default)]
struct State {
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    last_event_id: String,
    retry: Option<u64>,
    items: Vec<RefItem>,
}

impl State {
    fn interpret(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            let text = comment.strip_prefix(' ').unwrap_or(comment);
            self.items.push(RefItem::Comment(text.to_string()));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) => {
                let ms = value.parse::<u64>().unwrap_or(u64::MAX);
                self.retry = Some(ms);
                self.items.push(RefItem::Retry(ms));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        self.last_event_id = self.last_event_id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event_type = if self.event_type.is_empty() {
            "message".to_string()
        } else {
            self.event_type.clone()
        };
        let data = std::mem::take(&mut self.data);
        self.items
            .push(RefItem::Event(event_type, data, self.last_event_id.clone()));
        self.event_type.clear();
    }
}
