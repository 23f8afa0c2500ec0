//! The sans-IO event-stream parser: bytes in, [`Item`]s out, as the WHATWG HTML standard's
//! "Parsing an event stream" and "Interpreting an event stream" sections define them.
//!
//! # Design
//!
//! [`Parser::feed`] takes any slice of the stream (a whole buffer, one byte, an arbitrary
//! chunk), consumes bytes up to and including the first line that produces an item, and
//! returns how many bytes it took plus that item. The caller slices its input and feeds the
//! rest; when the returned item is `None` the whole input was consumed and more bytes are
//! needed. Nothing here does I/O or looks at a clock.
//!
//! Lines that arrive whole inside one input slice are interpreted in place; the loop over
//! them tests the commonest lines first (a blank line without a scan, a `data` line without
//! a colon search or field-name match). Line ends are found with memchr's AVX2 searcher,
//! chosen once per parser, or 8 bytes at a time in integer registers for inputs of up to
//! 16 bytes (small reads).
//!
//! What is kept goes into buffers the parser reuses, so once they have grown to the size
//! of the largest event, parsing allocates nothing:
//!
//! - `data` holds the event's `data` values, each followed by an LF, as raw bytes. A data
//!   line that straddles feeds goes straight there too, piece by piece.
//! - `line` holds any other line that straddles feeds, until it ends.
//! - `event_type`, `id_buffer` and `last_event_id` hold text.
//!
//! Nothing else is copied. The commonest event of all, one `data` line followed at once by
//! the blank line (every OpenAI chunk), borrows its data from the input when both lines are
//! in it; a comment borrows its text from the input or from `line`. Buffers that back a
//! returned item are cleared lazily at the start of the next feed.
//!
//! Text is decoded as UTF-8 once per item, where its bytes lie, when the item is handed out:
//! an event's data in one `str::from_utf8` call over the whole buffer, not one per line.
//! Because the delimiters (CR, LF, `:`, space) are ASCII and never part of a multi-byte
//! sequence, decoding the joined lines, or any field on its own, gives exactly what decoding
//! the whole stream first would, including U+FFFD replacement of invalid sequences (Rust's
//! lossy decoder and the WHATWG decoder both replace maximal subparts). Valid text is
//! borrowed, never copied to be decoded; invalid text is repaired into a reused buffer.
//!
//! The two bounds, [`Limits::max_line_len`] and [`Limits::max_event_len`], are checked
//! before any buffer grows past them; crossing one is fatal for the parser. The event
//! bound counts data as it will be handed out, after replacement (one invalid byte becomes
//! three), yet raw bytes are not decoded early to count them: while even tripled they fit,
//! they cannot cross it. Only an event that comes within a third of the bound is decoded
//! line by line as it grows, and counted exactly.

use std::fmt;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Default bound on one line (8 MiB): far above any real chat chunk, low enough that a
/// runaway server cannot exhaust a small machine.
pub const DEFAULT_MAX_LINE_LEN: usize = 8 << 20;
/// Default bound on the data of one event (16 MiB).
pub const DEFAULT_MAX_EVENT_LEN: usize = 16 << 20;

/// Size bounds for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line accepted, in bytes, not counting its terminator.
    pub max_line_len: usize,
    /// Largest data buffer of one event, in bytes (each `data` line adds its value plus one LF).
    pub max_event_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_event_len: DEFAULT_MAX_EVENT_LEN,
        }
    }
}

/// A violation of a configured bound. The stream cannot be resumed after one: drop it (and
/// the connection), or raise the limit if the server legitimately sends such large events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line longer than [`Limits::max_line_len`] arrived.
    #[error("sse line longer than {limit} bytes")]
    LineTooLong {
        /// The configured bound.
        limit: usize,
    },
    /// An event's data grew past [`Limits::max_event_len`].
    #[error("sse event larger than {limit} bytes")]
    EventTooLarge {
        /// The configured bound.
        limit: usize,
    },
}

/// A dispatched event. The fields borrow from the parser or, for `data`, from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type: the last `event` field's value, or `"message"`.
    pub event: &'a str,
    /// The `data` lines joined by LF.
    pub data: &'a str,
    /// The last event ID at dispatch time (persists across events; empty if never set).
    pub id: &'a str,
}

/// One thing the stream produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete event (a blank line ended a non-empty data buffer).
    Event(Event<'a>),
    /// A comment line (`:` first); the text after the colon, less one leading space.
    /// Servers send these as keep-alives, so they are a sign of life.
    Comment(&'a str),
    /// A valid `retry` field: the new reconnection time in milliseconds.
    Retry(u64),
}

/// What the parser holds ready for [`Parser::item`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    None,
    /// An event whose data is at this place.
    Event(Text),
    /// A comment whose text is at this place.
    Comment(Text),
    Retry(u64),
}

/// Where the bytes of an item's text are. They are decoded only when [`Parser::item`]
/// hands the item out, once, where they lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    /// The `data` buffer, less its final LF.
    Data,
    /// `start..end` of the last input.
    Input { start: usize, end: usize },
    /// `start..` of `line` (the item's line straddled feeds).
    Line { start: usize },
}

/// A data line that straddles feeds, its value going straight into the data buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataLine {
    /// Where the value starts in `data`.
    value_start: usize,
    /// The length of the line before its value: `data:`, and the space if there was one.
    prefix: usize,
    /// How many more bytes the value may take before either limit needs a closer look.
    room: usize,
}

/// Progress through a possible leading byte-order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// This many bytes of the BOM have been seen at the very start of the stream.
    Matched(usize),
    /// Past the start: any further BOM is ordinary text.
    Done,
}

/// How many bytes of a line tell whether it is a data line and where its value starts
/// (`data:` and the byte after it, which may be the space to drop).
const DATA_PREFIX_KNOWN: usize = 6;

/// The push parser. Its design (what is copied, when text is decoded, how the limits are
/// kept) is described at the top of `src/sse/parser.rs`.
pub struct Parser {
    limits: Limits,
    line_ends: LineEnds,
    bom: Bom,
    /// The previous line ended in CR, so an LF starting the next input is its second half.
    after_cr: bool,
    /// The start of a line that has not ended yet (unless it is a data line, see
    /// `data_line`), or the whole line a comment borrows from.
    line: Vec<u8>,
    /// A data line that has not ended yet, whose value so far is at the end of `data`.
    data_line: Option<DataLine>,
    /// The data buffer: each `data` line's value and an LF, as raw bytes. Only the first
    /// `data_decoded` bytes are known to be text; the rest is decoded once, at hand-out.
    data: Vec<u8>,
    data_decoded: usize,
    /// The event type buffer, when `event_type_set`; otherwise it keeps the last type seen,
    /// so that a stream naming the same type event after event decodes it only once.
    event_type: String,
    event_type_set: bool,
    /// The "last event ID buffer": set by `id` fields, never cleared.
    id_buffer: String,
    /// The last event ID committed at a dispatch.
    last_event_id: String,
    /// An `id` field arrived since the last dispatch (most streams never send one, so the
    /// dispatch skips comparing the two ID buffers).
    id_dirty: bool,
    /// The text of an item whose bytes were not valid UTF-8, with the errors replaced; also
    /// scratch space while an event near the limit is decoded early.
    repaired: String,
    retry: Option<u64>,
    ready: Ready,
    /// `data` and `event_type` back a returned event; clear them before the next line.
    clear_pending: bool,
    failed: Option<SseError>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Parser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parser")
            .field("limits", &self.limits)
            .field("last_event_id", &self.last_event_id)
            .field("retry", &self.retry)
            .field("buffered_line", &self.line.len())
            .field("buffered_data", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl Parser {
    /// A parser with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A parser with the given bounds.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            line_ends: LineEnds::new(),
            bom: Bom::Matched(0),
            after_cr: false,
            // Room for lines that straddle feeds before they are known to be data lines, so
            // that a read boundary in a line's first bytes, which may first fall anywhere in
            // the stream, does not allocate there.
            line: Vec::with_capacity(64),
            data_line: None,
            data: Vec::new(),
            data_decoded: 0,
            event_type: String::new(),
            event_type_set: false,
            id_buffer: String::new(),
            last_event_id: String::new(),
            id_dirty: false,
            repaired: String::new(),
            retry: None,
            ready: Ready::None,
            clear_pending: false,
            failed: None,
        }
    }

    /// This parser, continuing a stream whose last event ID was `id`: events without an
    /// `id` field carry it, as they would have on the earlier connection. (The standard's
    /// last event ID belongs to the event source and outlives each connection; an event
    /// source reconnecting with a fresh parser seeds it with this.)
    pub fn with_last_event_id(mut self, id: &str) -> Self {
        self.last_event_id.clear();
        self.last_event_id.push_str(id);
        self.id_buffer.clone_from(&self.last_event_id);
        self
    }

    /// The bounds this parser enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The last event ID committed by a dispatch (empty if none).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time from the last valid `retry` field, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Feeds bytes from the stream.
    ///
    /// Returns how many bytes of `input` were consumed and the item the last consumed line
    /// produced, if any. With `None`, all of `input` was consumed and the parser needs more.
    /// With `Some`, feed the rest (`&input[consumed..]`) next.
    ///
    /// # Errors
    ///
    /// [`SseError`] when a bound is crossed; every later call returns the same error.
    ///
    /// # Examples
    ///
    /// ```
    /// use oai_sse::sse::{Item, Parser};
    ///
    /// let mut parser = Parser::new();
    /// let mut input: &[u8] = b"data: hello\n\ndata: world\n\n";
    /// let mut seen = Vec::new();
    /// while !input.is_empty() {
    ///     let (used, item) = parser.feed(input)?;
    ///     if let Some(Item::Event(event)) = item {
    ///         seen.push(event.data.to_owned());
    ///     }
    ///     input = &input[used..];
    /// }
    /// assert_eq!(seen, ["hello", "world"]);
    /// # Ok::<(), oai_sse::sse::SseError>(())
    /// ```
    pub fn feed<'a>(&'a mut self, input: &'a [u8]) -> Result<(usize, Option<Item<'a>>), SseError> {
        let used = self.advance(input)?;
        Ok((used, self.item(input)))
    }

    /// Ends the stream. An event still being built is discarded, as is an unterminated last
    /// line. Returns whether anything was discarded. The parser is ready for a new stream
    /// afterwards (the last event ID and retry time are kept, as a reconnecting client would).
    pub fn finish(&mut self) -> bool {
        // Bytes held back as a possible BOM are the start of an unterminated line too.
        // With `clear_pending`, `data` and `event_type` are those of the last event.
        let discarded = matches!(self.bom, Bom::Matched(seen) if seen > 0)
            || (!self.line.is_empty() && !self.item_borrows_line())
            || self.data_line.is_some()
            || (!self.clear_pending && (!self.data.is_empty() || !self.event_type().is_empty()));
        self.line.clear();
        self.data_line = None;
        self.data.clear();
        self.data_decoded = 0;
        self.event_type_set = false;
        self.ready = Ready::None;
        self.clear_pending = false;
        self.after_cr = false;
        self.bom = Bom::Matched(0);
        // The id buffer goes back to the last committed id: an id field of a discarded event
        // never took effect.
        self.id_buffer.clone_from(&self.last_event_id);
        self.id_dirty = false;
        discarded
    }

    /// Whether the last [`advance`](Self::advance) produced an item.
    pub(crate) fn has_item(&self) -> bool {
        !matches!(self.ready, Ready::None)
    }

    /// Whether the item produced by the last [`advance`](Self::advance) borrows from its
    /// input, which [`item`](Self::item) must then be given again.
    pub(crate) fn item_borrows_input(&self) -> bool {
        matches!(
            self.ready,
            Ready::Event(Text::Input { .. }) | Ready::Comment(Text::Input { .. })
        )
    }

    /// Whether `line` holds the line of the item produced last, not the start of a line.
    fn item_borrows_line(&self) -> bool {
        matches!(
            self.ready,
            Ready::Event(Text::Line { .. }) | Ready::Comment(Text::Line { .. })
        )
    }

    /// The item produced by the last [`advance`](Self::advance), if any. `input` must hold
    /// the bytes that call was given (at least the ones it consumed); `None` if it is too
    /// short to (only possible when it does not).
    pub(crate) fn item<'a>(&'a mut self, input: &'a [u8]) -> Option<Item<'a>> {
        let (text, event) = match self.ready {
            Ready::None => return None,
            Ready::Retry(ms) => return Some(Item::Retry(ms)),
            Ready::Event(text) => (text, true),
            Ready::Comment(text) => (text, false),
        };
        let bytes = match text {
            // `data` always ends in the LF its last line appended; the spec removes it.
            Text::Data => self.data.strip_suffix(b"\n").unwrap_or(&self.data),
            Text::Input { start, end } => input.get(start..end)?,
            Text::Line { start } => self.line.get(start..)?,
        };
        let text = decode(bytes, &mut self.repaired);
        if !event {
            return Some(Item::Comment(text));
        }
        let event = if self.event_type_set && !self.event_type.is_empty() {
            &self.event_type
        } else {
            "message"
        };
        Some(Item::Event(Event {
            event,
            data: text,
            id: &self.last_event_id,
        }))
    }

    /// [`feed`](Self::feed) without borrowing the result, so a reader can consume input
    /// before fetching the item with [`item`](Self::item).
    pub(crate) fn advance(&mut self, input: &[u8]) -> Result<usize, SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let mut start = 0;
        if let Some(open) = &mut self.data_line {
            // Inside a data line that straddles feeds (no item is pending then), the common
            // case of small reads and long lines: the value takes the input up to the line
            // end, often the whole input.
            let found = self.line_ends.find(input);
            let piece = &input[..found.unwrap_or(input.len())];
            if piece.len() <= open.room {
                open.room -= piece.len();
                append_start(&mut self.data, input, piece.len());
                let Some(len) = found else {
                    return Ok(input.len());
                };
                self.data_line = None;
                self.data.push(b'\n');
                self.after_cr = input[len] == b'\r';
                start = len + 1;
            }
        } else {
            if self.item_borrows_line() {
                self.line.clear();
            }
            self.ready = Ready::None;
            if self.clear_pending {
                self.clear_pending = false;
                self.data.clear();
                self.data_decoded = 0;
                self.event_type_set = false;
            }
        }
        let result = self.advance_lines(input, start);
        if let Err(err) = result {
            self.failed = Some(err);
        }
        result
    }

    /// Interprets `input` from `start` until a line produces an item; returns where the
    /// input after that line starts (its length if no line did).
    fn advance_lines(&mut self, input: &[u8], start: usize) -> Result<usize, SseError> {
        let mut pos = start + self.skip_bom(&input[start..]);
        if self.data_line.is_some() || !self.line.is_empty() {
            // A line that straddles feeds (so past any BOM and CR) continues.
            let rest = &input[pos..];
            let found = self.line_ends.find(rest);
            self.extend_partial_line(&rest[..found.unwrap_or(rest.len())])?;
            let Some(len) = found else {
                return Ok(input.len());
            };
            self.after_cr = rest[len] == b'\r';
            pos += len + 1;
            if self.data_line.take().is_some() {
                self.data.push(b'\n');
            } else {
                let line = std::mem::take(&mut self.line);
                let result = self.interpret_line(&line);
                // The line stays in `line` while a comment borrows it, until the next feed.
                self.line = line;
                if let Some(text) = result? {
                    self.ready = Ready::Comment(Text::Line { start: text });
                    return Ok(pos);
                }
                self.line.clear();
                if !matches!(self.ready, Ready::None) {
                    return Ok(pos);
                }
            }
        }
        while pos < input.len() {
            if self.after_cr {
                self.after_cr = false;
                if input[pos] == b'\n' {
                    pos += 1;
                    continue;
                }
            }
            let rest = &input[pos..];
            // A blank line ends nearly every event: skip the scan for it.
            let found = match rest[0] {
                b'\n' | b'\r' => Some(0),
                _ => self.line_ends.find(rest),
            };
            let Some(len) = found else {
                self.start_partial_line(rest)?;
                return Ok(input.len());
            };
            self.after_cr = rest[len] == b'\r';
            self.check_line_len(len)?;
            let line_start = pos;
            pos += len + 1;
            if len == 0 {
                self.dispatch();
                if !matches!(self.ready, Ready::None) {
                    return Ok(pos);
                }
                continue;
            }
            let line = &rest[..len];
            // Most lines are `data` lines: straight into the buffer, no colon search.
            if let Some(value) = data_value_start(line) {
                if self.data.is_empty() {
                    if let Some(next) = self.single_line_event(len - value, input, pos - 1) {
                        self.ready = Ready::Event(Text::Input {
                            start: line_start + value,
                            end: line_start + len,
                        });
                        return Ok(next);
                    }
                }
                self.push_data(&line[value..])?;
                continue;
            }
            if let Some(text) = self.interpret_line(line)? {
                self.ready = Ready::Comment(Text::Input {
                    start: line_start + text,
                    end: line_start + len,
                });
                return Ok(pos);
            }
            if !matches!(self.ready, Ready::None) {
                return Ok(pos);
            }
        }
        Ok(pos)
    }

    /// The fast path for an event of one `data` line, which then needs no copy: called for
    /// a data line (whose value is `value_len` bytes) while the data buffer is empty. If the
    /// blank line that ends the event follows the line's terminator at `input[end]`,
    /// dispatches the event (the caller sets `ready` to where the data is) and returns where
    /// the input after the blank line starts. Otherwise `None`, and nothing has changed.
    fn single_line_event(&mut self, value_len: usize, input: &[u8], end: usize) -> Option<usize> {
        // Bound the value as if every byte were invalid UTF-8 (3 bytes of U+FFFD each), so
        // decoding it later cannot cross the limit; longer values take the checked path.
        if value_len.saturating_mul(3).saturating_add(1) > self.limits.max_event_len {
            return None;
        }
        let mut next = end + 1;
        if input[end] == b'\r' {
            match input.get(next) {
                Some(b'\n') => next += 1,
                Some(_) => {}
                // A CR that ends the input may be the first half of a CRLF.
                None => return None,
            }
        }
        let blank = *input.get(next)?;
        if blank != b'\n' && blank != b'\r' {
            return None;
        }
        self.after_cr = blank == b'\r';
        self.commit_id();
        self.clear_pending = true;
        Some(next + 1)
    }

    /// Keeps the start of a line that does not end in this input: the value of a data line
    /// goes straight into the data buffer (unless the limit is near), anything else (or a
    /// line too short to tell) into `line`.
    #[inline]
    fn start_partial_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.check_line_len(bytes.len())?;
        if !self.open_data_line(bytes) {
            self.line.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Adds the next piece of a line that straddles feeds.
    fn extend_partial_line(&mut self, mut bytes: &[u8]) -> Result<(), SseError> {
        let known = self.line.len();
        if self.data_line.is_none() && known < DATA_PREFIX_KNOWN {
            // The line began too short to tell whether it is a data line (small reads):
            // its next few bytes tell, and a data line's value goes to the data buffer.
            let (head, tail) = bytes.split_at(bytes.len().min(DATA_PREFIX_KNOWN - known));
            self.check_line_len(known + head.len())?;
            self.line.extend_from_slice(head);
            bytes = tail;
            let line = std::mem::take(&mut self.line);
            let opened = self.open_data_line(&line);
            self.line = line;
            if opened {
                self.line.clear();
            }
        }
        let Some(open) = &mut self.data_line else {
            self.check_line_len(self.line.len() + bytes.len())?;
            self.line.extend_from_slice(bytes);
            return Ok(());
        };
        if bytes.len() <= open.room {
            open.room -= bytes.len();
            self.data.extend_from_slice(bytes);
            return Ok(());
        }
        let open = *open;
        let value_len = self.data.len() - open.value_start;
        self.check_line_len(open.prefix + value_len + bytes.len())?;
        // Near the event limit: back to `line`, to be decoded and counted exactly once the
        // line is whole.
        self.data_line = None;
        self.line.extend_from_slice(&b"data: "[..open.prefix]);
        self.line.extend_from_slice(&self.data[open.value_start..]);
        self.line.extend_from_slice(bytes);
        self.data.truncate(open.value_start);
        Ok(())
    }

    /// If `start` (the start of a line) is far enough into a data line to tell where the
    /// value begins, and the value may go into the data buffer undecoded, puts it there and
    /// marks the data line open.
    #[inline]
    fn open_data_line(&mut self, start: &[u8]) -> bool {
        if start.len() < DATA_PREFIX_KNOWN {
            return false;
        }
        let Some(value) = data_value_start(start) else {
            return false;
        };
        let value_len = start.len() - value;
        let Some(room) = self
            .raw_data_room()
            .and_then(|room| room.checked_sub(value_len))
        else {
            return false;
        };
        // The caller has checked the line so far against the line limit.
        let line_room = self.limits.max_line_len.saturating_sub(start.len());
        self.data_line = Some(DataLine {
            value_start: self.data.len(),
            prefix: value,
            room: room.min(line_room),
        });
        self.data.extend_from_slice(&start[value..]);
        true
    }

    /// Skips a UTF-8 BOM that opens the stream, however it is split across feeds. Returns
    /// where ordinary input starts.
    fn skip_bom(&mut self, input: &[u8]) -> usize {
        let Bom::Matched(seen) = self.bom else {
            return 0;
        };
        let want = &BOM[seen..];
        let n = want.len().min(input.len());
        if input[..n] == want[..n] {
            self.bom = if seen + n == BOM.len() {
                Bom::Done
            } else {
                Bom::Matched(seen + n)
            };
            return n;
        }
        // Not a BOM after all: the bytes held back are the start of the first line.
        self.line.extend_from_slice(&BOM[..seen]);
        self.bom = Bom::Done;
        0
    }

    fn check_line_len(&self, len: usize) -> Result<(), SseError> {
        if len > self.limits.max_line_len {
            return Err(SseError::LineTooLong {
                limit: self.limits.max_line_len,
            });
        }
        Ok(())
    }

    /// Interprets one line (without its terminator), per "Interpreting an event stream".
    /// A comment is not copied: for one, returns where its text starts in `line`, and the
    /// caller, which knows where the line is, makes it the ready item.
    fn interpret_line(&mut self, line: &[u8]) -> Result<Option<usize>, SseError> {
        match line.first() {
            None => {
                self.dispatch();
                return Ok(None);
            }
            Some(b':') => return Ok(Some(1 + usize::from(line.get(1) == Some(&b' ')))),
            Some(_) => {}
        }
        if let Some(value) = data_value_start(line) {
            self.push_data(&line[value..])?;
            return Ok(None);
        }
        // The names that mean something are at most 5 bytes long (`event`, `retry`): a line
        // with no colon in its first 6 bytes is some other field, ignored, however long.
        const LONGEST_NAME: usize = 5;
        let head = &line[..line.len().min(LONGEST_NAME + 1)];
        let (name, value) = match head.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], strip_one_space(&line[colon + 1..])),
            None if line.len() <= LONGEST_NAME => (line, &[][..]),
            None => return Ok(None),
        };
        match name {
            b"data" => self.push_data(value)?,
            b"event" => {
                if value != self.event_type.as_bytes() {
                    self.event_type.clear();
                    push_lossy(&mut self.event_type, value);
                }
                self.event_type_set = true;
            }
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                push_lossy(&mut self.id_buffer, value);
                self.id_dirty = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0u64, |ms, digit| {
                    ms.saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'))
                });
                self.retry = Some(ms);
                self.ready = Ready::Retry(ms);
            }
            _ => {}
        }
        Ok(None)
    }

    /// Appends a `data` field's value and the LF that follows it to the data buffer, as raw
    /// bytes: the whole buffer is decoded once, when the event is handed out, instead of
    /// line by line.
    #[inline]
    fn push_data(&mut self, value: &[u8]) -> Result<(), SseError> {
        if !self.raw_data_fits(value.len()) {
            return self.push_data_decoded(value);
        }
        self.data.extend_from_slice(value);
        self.data.push(b'\n');
        Ok(())
    }

    /// Whether `more` raw bytes and an LF may go into the data buffer undecoded.
    #[inline]
    fn raw_data_fits(&self, more: usize) -> bool {
        self.raw_data_room().is_some_and(|room| more <= room)
    }

    /// How many raw bytes and an LF may go into the data buffer undecoded (`None`: not even
    /// the LF). Decoding can at most triple the undecoded bytes (one invalid byte becomes a
    /// 3-byte U+FFFD): while even that fits the limit, the limit cannot be crossed yet.
    #[inline]
    fn raw_data_room(&self) -> Option<usize> {
        let undecoded = self.data.len() - self.data_decoded;
        let left = self
            .limits
            .max_event_len
            .checked_sub(self.data_decoded + 1)?;
        (left / 3).checked_sub(undecoded)
    }

    /// [`push_data`](Self::push_data) for an event near the limit: decodes the buffer and
    /// the value now, to count the data exactly as it will be handed out.
    #[cold]
    fn push_data_decoded(&mut self, value: &[u8]) -> Result<(), SseError> {
        let undecoded = &self.data[self.data_decoded..];
        if std::str::from_utf8(undecoded).is_err() {
            self.repaired.clear();
            push_lossy(&mut self.repaired, undecoded);
            self.data.truncate(self.data_decoded);
            self.data.extend_from_slice(self.repaired.as_bytes());
        }
        self.data_decoded = self.data.len();
        let value = decode(value, &mut self.repaired);
        if self.data.len() + value.len() + 1 > self.limits.max_event_len {
            return Err(SseError::EventTooLarge {
                limit: self.limits.max_event_len,
            });
        }
        self.data.extend_from_slice(value.as_bytes());
        self.data.push(b'\n');
        self.data_decoded = self.data.len();
        Ok(())
    }

    fn dispatch(&mut self) {
        self.commit_id();
        if self.data.is_empty() {
            self.event_type_set = false;
            return;
        }
        self.ready = Ready::Event(Text::Data);
        self.clear_pending = true;
    }

    /// The event type buffer.
    fn event_type(&self) -> &str {
        if self.event_type_set {
            &self.event_type
        } else {
            ""
        }
    }

    /// A dispatch sets the last event ID to the ID buffer.
    fn commit_id(&mut self) {
        if std::mem::take(&mut self.id_dirty) && self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
    }
}

/// Finds line ends (CR or LF).
#[derive(Debug, Clone, Copy)]
struct LineEnds {
    /// memchr's AVX2 searcher, when the CPU has AVX2, chosen once here: `memchr2` chooses
    /// on every call, through a function pointer, and sets its needles up again, which on
    /// lines of a few dozen bytes costs about as much as the search itself.
    #[cfg(target_arch = "x86_64")]
    avx2: Option<memchr::arch::x86_64::avx2::memchr::Two>,
}

impl LineEnds {
    fn new() -> Self {
        Self {
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::memchr::Two::new(b'\n', b'\r'),
        }
    }

    /// Where the first CR or LF in `bytes` is.
    #[inline]
    fn find(&self, bytes: &[u8]) -> Option<usize> {
        if bytes.len() <= 16 {
            return find_line_end_short(bytes);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = &self.avx2 {
            return avx2.find(bytes);
        }
        memchr::memchr2(b'\n', b'\r', bytes)
    }
}

/// [`LineEnds::find`] for inputs of up to 16 bytes (small reads), where any `memchr2`
/// setup costs more than the search: they are tested 8 bytes at a time in plain integer
/// registers (about a third faster, measured). From 8 bytes on, two words cover the input:
/// the first 8 bytes and the last 8, which may overlap.
fn find_line_end_short(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) else {
        return bytes.iter().position(|&b| b == b'\n' || b == b'\r');
    };
    let last_at = bytes.len() - 8;
    for (at, word) in [(0, first), (last_at, last)] {
        let word = u64::from_le_bytes(*word);
        let lf = word ^ (ONES * u64::from(b'\n'));
        let cr = word ^ (ONES * u64::from(b'\r'));
        // The high bit of each byte that is zero after the XOR, that is, of each CR or LF.
        // A borrow can mark a byte above a real match too, never one below it, so the
        // lowest mark is the first line end (in the last word too: the bytes it shares
        // with the first hold no line end, so none of them is marked).
        let marks = (lf.wrapping_sub(ONES) & !lf | cr.wrapping_sub(ONES) & !cr) & HIGH;
        if marks != 0 {
            return Some(at + marks.trailing_zeros() as usize / 8);
        }
    }
    None
}

/// Appends the first `len` bytes of `from` to `buf`. Small reads make for many short
/// pieces, and for those a call to `memcpy` costs more than the copy: when `from` has 16
/// bytes and `buf` room for them, all 16 are copied (two vector moves) and the excess cut
/// off again. `buf` never grows for that.
#[inline]
fn append_start(buf: &mut Vec<u8>, from: &[u8], len: usize) {
    const BLOCK: usize = 16;
    if len <= BLOCK && buf.capacity() - buf.len() >= BLOCK {
        if let Some(block) = from.first_chunk::<BLOCK>() {
            let end = buf.len() + len;
            buf.extend_from_slice(block);
            buf.truncate(end);
            return;
        }
    }
    buf.extend_from_slice(&from[..len]);
}

/// Where the value of a `data` line starts, if `line` is one (the field name and colon,
/// and one space after them, are not part of it).
#[inline]
fn data_value_start(line: &[u8]) -> Option<usize> {
    line.starts_with(b"data:")
        .then(|| 5 + usize::from(line.get(5) == Some(&b' ')))
}

/// A field value loses one leading space, and only one.
fn strip_one_space(value: &[u8]) -> &[u8] {
    value.strip_prefix(b" ").unwrap_or(value)
}

/// `bytes` as text: borrowed when they are valid UTF-8, else decoded into `spare` with each
/// invalid sequence replaced by U+FFFD (as `String::from_utf8_lossy` does, without
/// allocating once `spare` has grown).
#[inline]
fn decode<'a>(bytes: &'a [u8], spare: &'a mut String) -> &'a str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => {
            spare.clear();
            push_lossy(spare, bytes);
            spare
        }
    }
}

/// Appends `bytes` as text, invalid sequences replaced by U+FFFD. (Validating with
/// `str::from_utf8` first: the lossy decoder walks valid text several times slower.)
fn push_lossy(buf: &mut String, bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        buf.push_str(text);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        buf.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            buf.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LineEnds;

    #[test]
    fn line_ends_agree_with_a_byte_loop() {
        let expected = |bytes: &[u8]| bytes.iter().position(|&b| b == b'\n' || b == b'\r');
        // The searcher this CPU gets, and the portable `memchr2` one.
        #[allow(unused_mut)]
        let mut searchers = vec![LineEnds::new()];
        #[cfg(target_arch = "x86_64")]
        searchers.push(LineEnds { avx2: None });
        // Fillers next to CR and LF in value, and ones whose borrows could mislead the
        // word-at-a-time test (0x00, 0x01, 0xFF).
        let fillers = [b'a', 0x00, 0x01, 0x09, 0x0B, 0x0C, 0x0E, 0x80, 0xFF];
        for ends in &searchers {
            for len in 0..=80 {
                for &filler in &fillers {
                    let mut bytes = vec![filler; len];
                    assert_eq!(ends.find(&bytes), None, "{bytes:?}");
                    for first in 0..len {
                        for end in [b'\n', b'\r'] {
                            bytes.fill(filler);
                            bytes[first] = end;
                            // A second line end after the first must not win.
                            if first + 1 < len {
                                bytes[len - 1] = b'\n' ^ b'\r' ^ end;
                            }
                            assert_eq!(ends.find(&bytes), expected(&bytes), "{bytes:?}");
                        }
                    }
                }
            }
        }
    }
}
