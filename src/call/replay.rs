//! llama.cpp's stream replay, sans-IO: the routes (two shapes), and how a resume is verified.
//!
//! A streaming request with `X-Conversation-Id: ID` makes llama.cpp keep the SSE bytes of its
//! reply whatever happens to the connection; a reader may ask for them again from any byte
//! offset. Two shapes of the routes exist:
//!
//! | shape | replay | stop | which sessions exist |
//! |---|---|---|---|
//! | [`RouteShape::Query`] (llama.cpp 0c1e570, in llama-cpp-python 0.3.36) | `GET {api}/stream?conv_id=ID&from=N` | `DELETE {api}/stream?conv_id=ID` | `POST {api}/streams/lookup` `{"conversation_ids":[ID]}` |
//! | [`RouteShape::Path`] (the pull request that added replay, ggml-org/llama.cpp#23226) | `GET {api}/stream/ID?from=N` | `DELETE {api}/stream/ID` | `GET {api}/streams` |
//!
//! # Verified resume
//!
//! `from` counts the bytes of the stream *as the replaying server wrote them*. Behind a
//! gateway that re-frames the stream (its own chunk boundaries, fields added or dropped, its
//! own ids) the client's count names another place, and a replay from it would splice
//! foreign bytes into the answer. So a resume asks for the stream from the start of one of
//! the last complete events already read (the *overlap*, at most [`OVERLAP_MAX`] bytes and
//! [`OVERLAP_EVENTS`] events) and uses the replay only if its first bytes equal the bytes
//! received there; the chat protocol then also requires the replayed chunks to carry the
//! same completion id. On any mismatch the replay is dropped before a byte of it reaches the
//! parser, and the break falls back to the next way of recovering.

use crate::http::{BodyRead, HasAttempt};
use crate::wire::StreamTail;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;

/// Most bytes a resume asks for again to check that the replay is the stream that broke.
pub(crate) const OVERLAP_MAX: usize = 4 << 10;
/// Most events the overlap spans.
pub(crate) const OVERLAP_EVENTS: usize = 4;
/// Bytes of the body kept for the overlap: what the read buffer may hold past the last
/// complete event, plus the overlap itself.
pub(crate) const RING: usize = super::READ_BUFFER + OVERLAP_MAX;

/// Which routes a server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteShape {
    /// `{api}/stream?conv_id=ID…`, with `POST {api}/streams/lookup`.
    Query,
    /// `{api}/stream/ID…`, with `GET {api}/streams`.
    Path,
}

impl RouteShape {
    /// Where to replay `id` from byte `from`.
    pub(crate) fn replay_url(self, api: &str, id: &str, from: u64) -> String {
        match self {
            Self::Query => format!("{api}/stream?conv_id={}&from={from}", encode(id)),
            Self::Path => format!("{api}/stream/{}?from={from}", encode(id)),
        }
    }

    /// Where to tell the server to stop generating for `id`.
    pub(crate) fn stop_url(self, api: &str, id: &str) -> String {
        match self {
            Self::Query => format!("{api}/stream?conv_id={}", encode(id)),
            Self::Path => format!("{api}/stream/{}", encode(id)),
        }
    }
}

/// Where `POST {"conversation_ids":[...]}` says which sessions a [`RouteShape::Query`] server
/// holds.
pub(crate) fn lookup_url(api: &str) -> String {
    format!("{api}/streams/lookup")
}

/// Where a [`RouteShape::Path`] server lists its sessions.
pub(crate) fn list_url(api: &str) -> String {
    format!("{api}/streams")
}

/// The lookup request's body.
pub(crate) fn lookup_body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "conversation_ids": [id] })).unwrap_or_default()
}

/// What a lookup (or list) answer says of a conversation: `None` if the body is not such an
/// answer at all (not the route), `Some(false)` if the server does not hold it.
pub(crate) fn lookup_holds(body: &[u8], id: &str) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        conversation_id: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Answer {
        List(Vec<Entry>),
        Wrapped { data: Vec<Entry> },
    }
    let entries = match serde_json::from_slice::<Answer>(body).ok()? {
        Answer::List(entries) | Answer::Wrapped { data: entries } => entries,
    };
    Some(entries.iter().any(|e| e.conversation_id == id))
}

/// Percent-encodes a query or path value (ids are hex, but the server may be given any).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where a resume starts: the earliest of the last [`OVERLAP_EVENTS`] event starts that
/// leaves at most [`OVERLAP_MAX`] bytes to `end` and is still held (`held_from` on), or the
/// last event's start alone if it is longer but held. `starts` are the offsets where events
/// began, oldest first, each below `end`. `None` when no start is held: the resume cannot be
/// verified.
pub(crate) fn overlap_start(starts: &[u64], end: u64, held_from: u64) -> Option<u64> {
    let recent = &starts[starts.len().saturating_sub(OVERLAP_EVENTS)..];
    let within = recent
        .iter()
        .copied()
        .find(|&s| s >= held_from && end.saturating_sub(s) <= OVERLAP_MAX as u64);
    within.or_else(|| recent.last().copied().filter(|&s| s >= held_from))
}

/// A body whose bytes are kept as they are read: the last [`RING`] for the overlap of a
/// resume, and the last few KiB for an error written in a shape the parser skips (see
/// [`StreamTail`]).
pub(crate) struct BodyTap {
    body: BodyRead,
    tail: StreamTail,
    ring: VecDeque<u8>,
    /// Verified bytes read before the body's own (the part of an event a resume checked).
    pending: io::Cursor<Vec<u8>>,
    /// The offset, in the generation's stream, just past the last byte read.
    end: u64,
}

impl BodyTap {
    /// A tap on `body`, whose first byte sits at offset `start` of the stream, holding
    /// `held` (the bytes just before `start`, already verified) as if read from it, and
    /// reading `pending` (verified bytes from `start` on) before the body.
    pub(crate) fn new(body: BodyRead, start: u64, held: &[u8], pending: &[u8]) -> Self {
        let mut ring = VecDeque::with_capacity(RING);
        ring.extend(&held[held.len().saturating_sub(RING)..]);
        Self {
            body,
            tail: StreamTail::default(),
            ring,
            pending: io::Cursor::new(pending.to_vec()),
            end: start,
        }
    }

    /// The offset just past the last byte read.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The held bytes from offset `from` to `to`, if the ring still has them all.
    pub(crate) fn held(&self, from: u64, to: u64) -> Option<Vec<u8>> {
        let held_from = self.held_from();
        if from < held_from || to > self.end || from > to {
            return None;
        }
        let skip = usize::try_from(from - held_from).ok()?;
        let len = usize::try_from(to - from).ok()?;
        Some(self.ring.iter().skip(skip).take(len).copied().collect())
    }

    /// The offset of the oldest byte held.
    pub(crate) fn held_from(&self) -> u64 {
        self.end.saturating_sub(self.ring.len() as u64)
    }

    /// The stream's last bytes, for an error the parser skipped.
    pub(crate) fn tail(&self) -> &StreamTail {
        &self.tail
    }
}

impl Read for BodyTap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.pending.read(buf)? {
            0 => self.body.read(buf)?,
            n => n,
        };
        let bytes = buf.get(..n).unwrap_or_default();
        self.tail.record(bytes);
        let bytes = &bytes[bytes.len().saturating_sub(RING)..];
        let excess = (self.ring.len() + bytes.len()).saturating_sub(RING);
        self.ring.drain(..excess);
        self.ring.extend(bytes);
        self.end += n as u64;
        Ok(n)
    }
}

impl HasAttempt for BodyTap {
    fn attempt_io(&self) -> &Arc<crate::http::AttemptIo> {
        self.body.attempt()
    }
}

/// Reads exactly `expect.len()` bytes from `body` and says whether they are `expect`.
///
/// # Errors
///
/// The read's failure; a body that ends first is not the stream (`Ok(false)`).
pub(crate) fn replay_matches(body: &mut impl Read, expect: &[u8]) -> io::Result<bool> {
    let mut got = vec![0; expect.len()];
    let mut filled = 0;
    while filled < got.len() {
        match body.read(&mut got[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                if got[filled..filled + n] != expect[filled..filled + n] {
                    return Ok(false);
                }
                filled += n;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_route_shapes() {
        let api = "http://h/v1";
        let table = [
            (
                RouteShape::Query,
                "http://h/v1/stream?conv_id=org%2Fm%20x&from=7",
                "http://h/v1/stream?conv_id=org%2Fm%20x",
            ),
            (
                RouteShape::Path,
                "http://h/v1/stream/org%2Fm%20x?from=7",
                "http://h/v1/stream/org%2Fm%20x",
            ),
        ];
        for (shape, replay, stop) in table {
            assert_eq!(shape.replay_url(api, "org/m x", 7), replay);
            assert_eq!(shape.stop_url(api, "org/m x"), stop);
        }
        assert_eq!(encode("oai-sse-0af"), "oai-sse-0af");
    }

    #[test]
    fn lookup_answers() {
        let table: &[(&[u8], Option<bool>)] = &[
            (br#"[]"#, Some(false)),
            (
                br#"[{"conversation_id":"a","is_done":false,"total_bytes":9}]"#,
                Some(true),
            ),
            (br#"[{"conversation_id":"b"}]"#, Some(false)),
            (br#"{"data":[{"conversation_id":"a"}]}"#, Some(true)),
            (br#"{"error":{"message":"Unknown request URL"}}"#, None),
            (b"<html>not found</html>", None),
        ];
        for (body, want) in table {
            assert_eq!(
                lookup_holds(body, "a"),
                *want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(lookup_body("a"), br#"{"conversation_ids":["a"]}"#.to_vec());
    }

    #[test]
    fn overlap_spans_the_last_events_within_bounds() {
        let max = OVERLAP_MAX as u64;
        // (event starts, end, held from, want)
        let table: &[(&[u64], u64, u64, Option<u64>)] = &[
            (&[0], 100, 0, Some(0)),
            (&[0, 100, 200, 300, 400, 500], 600, 0, Some(200)),
            (&[0, 100, 200], 300, 150, Some(200)),
            // The last event alone is larger than the overlap bound: it still counts.
            (&[0, 10, 20], 20 + 2 * max, 0, Some(20)),
            (&[0, 10, 20], 20 + 2 * max, 30, None),
            (&[], 0, 0, None),
            (&[1000, 1000 + max], 1000 + max + 10, 0, Some(1000 + max)),
        ];
        for (starts, end, held_from, want) in table {
            assert_eq!(
                overlap_start(starts, *end, *held_from),
                *want,
                "{starts:?} {end} {held_from}"
            );
        }
    }

    #[test]
    fn a_replay_is_checked_byte_for_byte() {
        let expect = b"data: {\"id\":\"x\"}\n\n";
        let mut whole = &b"data: {\"id\":\"x\"}\n\ndata: more\n\n"[..];
        assert!(replay_matches(&mut whole, expect).expect("read"));
        assert_eq!(whole, b"data: more\n\n", "the rest is left to the parser");
        for bad in [&b"data: {\"id\":\"y\"}\n\n"[..], b"data: {\"id\"", b""] {
            let mut body = bad;
            assert!(!replay_matches(&mut body, expect).expect("read"), "{bad:?}");
        }
    }
}
