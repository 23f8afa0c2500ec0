//! The llama.cpp stream-replay store, sans-IO: the SSE bytes each conversation's last streamed
//! reply carried, kept for a TTL, bounded in count and in bytes. The clock is passed in.
//!
//! llama.cpp (tools/server/server-stream.cpp) keeps a 4 MiB ring per conversation id, replaced
//! by the next streaming request with the same id and dropped 300 s after the generation ends;
//! replay offsets below the dropped prefix are "lost". The mock generates a reply at once, so a
//! session is complete the moment it is stored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a stream session stays replayable after its generation ends (llama.cpp's 300 s);
/// change it with [`Replies::replay_ttl`](super::Replies::replay_ttl).
pub const DEFAULT_REPLAY_TTL: Duration = Duration::from_secs(300);
/// Most stream sessions a server keeps; storing one more drops the oldest.
pub const MAX_STREAM_SESSIONS: usize = 64;
/// Most bytes a stream session keeps (llama.cpp's ring size); a smaller ring comes from the
/// `ring=BYTES` fault.
pub const MAX_RING_BYTES: usize = 4 * 1024 * 1024;

/// The last `cap` bytes of a byte stream and how many bytes came before them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tail {
    bytes: Vec<u8>,
    dropped: usize,
    cap: usize,
}

impl Tail {
    pub fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::new(),
            dropped: 0,
            cap,
        }
    }

    /// Appends `data`, dropping the front once the buffer holds twice the cap (so dropping is
    /// amortised); [`Tail::finish`] trims to the cap.
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.cap.saturating_mul(2) {
            self.trim();
        }
    }

    pub fn finish(mut self) -> Self {
        self.trim();
        self
    }

    fn trim(&mut self) {
        let excess = self.bytes.len().saturating_sub(self.cap);
        self.bytes.drain(..excess);
        self.dropped += excess;
    }

    /// Every byte ever pushed.
    pub fn total(&self) -> usize {
        self.dropped + self.bytes.len()
    }

    /// The bytes from offset `from` to the end (empty past the end); `None` if bytes before
    /// the end that `from` names were dropped.
    pub fn from(&self, from: u64) -> Option<&[u8]> {
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        let start = from.checked_sub(self.dropped)?;
        Some(self.bytes.get(start..).unwrap_or_default())
    }
}

#[derive(Debug)]
struct Session {
    id: String,
    tail: Tail,
    expires: Option<Instant>,
}

/// The stream sessions by conversation id, oldest first.
#[derive(Debug)]
pub(super) struct Sessions {
    list: VecDeque<Session>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Self {
            list: VecDeque::new(),
            ttl,
        }
    }

    /// Stores `tail` for `id`, replacing an older session for it; drops expired sessions, and
    /// the oldest one when [`MAX_STREAM_SESSIONS`] are kept.
    pub fn insert(&mut self, id: &str, tail: Tail, now: Instant) {
        self.remove(id);
        self.prune(now);
        if self.list.len() >= MAX_STREAM_SESSIONS {
            self.list.pop_front();
        }
        self.list.push_back(Session {
            id: id.to_owned(),
            tail,
            // An unrepresentable deadline is never reached.
            expires: now.checked_add(self.ttl),
        });
    }

    /// Drops the session for `id`; whether there was one.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.id != id);
        self.list.len() != before
    }

    /// The ids of the live sessions, oldest first.
    pub fn ids(&mut self, now: Instant) -> Vec<String> {
        self.prune(now);
        self.list.iter().map(|s| s.id.clone()).collect()
    }

    /// The live session for `id`.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&Tail> {
        self.prune(now);
        self.list.iter().find(|s| s.id == id).map(|s| &s.tail)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    fn prune(&mut self, now: Instant) {
        self.list.retain(|s| s.expires.is_none_or(|e| now < e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(cap: usize, data: &[u8]) -> Tail {
        let mut t = Tail::new(cap);
        for piece in data.chunks(3) {
            t.push(piece);
        }
        t.finish()
    }

    #[test]
    fn a_tail_keeps_the_last_cap_bytes() {
        let data = b"0123456789abcdef";
        let cases: &[(usize, u64, Option<&[u8]>)] = &[
            (100, 0, Some(data)),
            (100, 10, Some(b"abcdef")),
            (100, 16, Some(b"")),
            (100, 99, Some(b"")),
            (100, u64::MAX, Some(b"")),
            (4, 11, None),
            (4, 12, Some(b"cdef")),
            (4, 15, Some(b"f")),
            (0, 15, None),
            (0, 16, Some(b"")),
        ];
        for &(cap, from, want) in cases {
            let t = tail(cap, data);
            assert_eq!(t.total(), data.len());
            assert_eq!(t.from(from), want, "cap {cap} from {from}");
        }
    }

    #[test]
    fn sessions_replace_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut s = Sessions::new(ttl);
        s.insert("a", tail(100, b"first"), t0);
        s.insert("a", tail(100, b"second"), t0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("a", t0).and_then(|t| t.from(0)), Some(&b"second"[..]));
        assert!(s.get("a", t0 + ttl - Duration::from_millis(1)).is_some());
        assert!(s.get("a", t0 + ttl).is_none(), "expired");
        assert!(!s.remove("a"), "expired sessions are gone");

        for i in 0..MAX_STREAM_SESSIONS + 3 {
            s.insert(&i.to_string(), tail(10, b"x"), t0);
        }
        assert_eq!(s.len(), MAX_STREAM_SESSIONS);
        assert!(s.get("2", t0).is_none(), "the oldest are dropped");
        assert!(s.get("3", t0).is_some());
        assert!(s.remove("3") && !s.remove("3"));
    }
}
