//! The blocking shell around [`Parser`]: reads an event stream line by line from any
//! [`BufRead`], parsing in the reader's own buffer (`fill_buf` → parse → `consume`), so
//! nothing is copied on the way to the parser. An event of one data line, or a comment, is
//! handed out straight from that buffer; its bytes are consumed at the next call.

use super::parser::{Item, Limits, Parser, SseError};
use std::io::{self, BufRead};

/// Why [`EventReader::next_item`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The byte source failed. The first failure is returned exactly as the source reported
    /// it (its [`io::ErrorKind`] tells a reset from a timeout); every later call returns an
    /// error of the same kind. Reconnect if the failure is transient.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The stream crossed a size bound. Drop it; raise the limit if the events are legitimate.
    #[error(transparent)]
    Sse(#[from] SseError),
}

/// Reads [`Item`]s from a blocking byte source.
///
/// # Examples
///
/// ```
/// use oai_sse::sse::{EventReader, Item};
///
/// let body: &[u8] = b": keep-alive\n\nevent: greeting\ndata: hi\n\n";
/// let mut reader = EventReader::new(body);
/// assert_eq!(reader.next_item()?, Some(Item::Comment("keep-alive")));
/// match reader.next_item()? {
///     Some(Item::Event(event)) => assert_eq!((event.event, event.data), ("greeting", "hi")),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(reader.next_item()?, None);
/// # Ok::<(), oai_sse::sse::ReadError>(())
/// ```
#[derive(Debug)]
pub struct EventReader<R> {
    source: R,
    parser: Parser,
    /// Bytes the parser has used but the source still holds, because the last item borrows
    /// from them.
    unconsumed: usize,
    /// Bytes of the source the parser has used in all.
    position: u64,
    /// The first I/O failure, kept so the stream never looks cleanly ended after it.
    failure: Option<(io::ErrorKind, String)>,
}

impl<R: BufRead> EventReader<R> {
    /// A reader with the default [`Limits`].
    pub fn new(source: R) -> Self {
        Self::with_limits(source, Limits::default())
    }

    /// A reader with the given bounds.
    pub fn with_limits(source: R, limits: Limits) -> Self {
        Self::with_parser(source, Parser::with_limits(limits))
    }

    /// A reader feeding `parser`, e.g. one seeded with
    /// [`Parser::with_last_event_id`] for a stream that continues an earlier one.
    pub fn with_parser(source: R, parser: Parser) -> Self {
        Self {
            source,
            parser,
            unconsumed: 0,
            position: 0,
            failure: None,
        }
    }

    /// Reads until the next item. `Ok(None)` means the source ended cleanly; an event that
    /// was still being built then is discarded, as the standard says.
    ///
    /// # Errors
    ///
    /// [`ReadError::Io`] when the source fails (latched: later calls fail the same way),
    /// [`ReadError::Sse`] when a bound is crossed (also final).
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, ReadError> {
        if !self.advance()? {
            return Ok(None);
        }
        self.item()
    }

    /// [`next_item`](Self::next_item) in two steps: reads until the next item is ready
    /// (`true`) or the source ended cleanly (`false`); [`item`](Self::item) then hands it
    /// out. A caller that loops over items and returns one of them needs the split: the
    /// borrow checker (NLL) rejects returning a borrow from inside a loop that goes on
    /// using `self` on other paths.
    pub(crate) fn advance(&mut self) -> Result<bool, ReadError> {
        if let Some((kind, message)) = &self.failure {
            return Err(io::Error::new(*kind, format!("stream already failed: {message}")).into());
        }
        self.release();
        loop {
            let buf = match self.source.fill_buf() {
                Ok(buf) => buf,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(latch(&mut self.failure, err)),
            };
            if buf.is_empty() {
                self.parser.finish();
                return Ok(false);
            }
            let used = self.parser.advance(buf)?;
            self.position += used as u64;
            if self.parser.item_borrows_input() {
                self.unconsumed = used;
                return Ok(true);
            }
            self.source.consume(used);
            if self.parser.has_item() {
                return Ok(true);
            }
        }
    }

    /// The item the last [`advance`](Self::advance) made ready (again, if called twice);
    /// `None` if there is none.
    pub(crate) fn item(&mut self) -> Result<Option<Item<'_>>, ReadError> {
        if !self.parser.has_item() {
            return Ok(None);
        }
        // An item that borrows from the source's buffer needs that buffer again, which a
        // `BufRead` hands back unchanged, without I/O, because nothing was consumed.
        let buf = if self.parser.item_borrows_input() {
            self.source
                .fill_buf()
                .map_err(|err| latch(&mut self.failure, err))?
        } else {
            &[]
        };
        self.parser.item(buf).map(Some).ok_or_else(|| {
            let err = io::Error::other("the byte source's buffer shrank between fill_buf calls");
            latch(&mut self.failure, err)
        })
    }

    /// Consumes the bytes behind the last item.
    fn release(&mut self) {
        self.source.consume(std::mem::take(&mut self.unconsumed));
    }

    /// Bytes of the source the parser has used so far. Right after an event, this is the
    /// offset just past the line that dispatched it: where a replay of the same stream would
    /// pick up after that event.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The parser, for the last event ID and retry time.
    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    /// The byte source. Its buffer may still hold the bytes of the last item, which the next
    /// call (or [`get_mut`](Self::get_mut), [`into_inner`](Self::into_inner)) consumes.
    pub fn get_ref(&self) -> &R {
        &self.source
    }

    /// The byte source, mutably, positioned after the last item (reading from it directly
    /// desynchronizes the parser).
    pub fn get_mut(&mut self) -> &mut R {
        self.release();
        &mut self.source
    }

    /// Gives back the byte source, positioned after the last item.
    pub fn into_inner(mut self) -> R {
        self.release();
        self.source
    }
}

/// Keeps the first I/O failure, so the stream never looks cleanly ended after it.
fn latch(failure: &mut Option<(io::ErrorKind, String)>, err: io::Error) -> ReadError {
    *failure = Some((err.kind(), err.to_string()));
    err.into()
}
