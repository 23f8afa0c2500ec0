//! Conversation ids: 128 bits from the operating system's random source, and the redacted form
//! that logs and errors show.
//!
//! A call that may resume sends `X-Conversation-Id: oai-sse-<32 hex>`. On llama.cpp that id
//! names the stream session: whoever holds it can replay the reply (`GET /v1/stream?conv_id=`)
//! or stop it (`DELETE`). So the id is a capability. It must be unguessable, and it is shown
//! to a human only redacted, like a credential ([`redacted`]).
//!
//! Where the bits come from: std has no cryptographic generator, and the library adds no
//! crate for one (`getrandom` would be a dependency beyond the few the crate allows). On Unix
//! `/dev/urandom` is the kernel's generator; it is read with `std::fs` (16 bytes per id) and
//! used only if it is a character device (a regular file planted in a chroot would give the
//! same id every time). Where it cannot be read (Windows, WASI, a sandbox or container
//! without `/dev`, no file descriptor to spare), the id comes from std's `RandomState`
//! instead: SipHash keys that std draws from the operating system's generator, applied to a
//! counter and the clock. That is unpredictable as long as those keys stay secret, but not a
//! vetted generator, so the fallback is logged (once, at debug level).

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What every id starts with.
const PREFIX: &str = "oai-sse-";
/// The operating system's random source on Unix.
const URANDOM: &str = "/dev/urandom";
/// At most this many characters of an id's secret part are shown.
const SHOWN: usize = 4;

/// A fresh conversation id: `oai-sse-` and 128 random bits as 32 lowercase hex digits.
pub(crate) fn new_id() -> String {
    let bits = os_random().unwrap_or_else(|| {
        static FALLBACK: Once = Once::new();
        FALLBACK.call_once(|| {
            log::debug!(
                "{URANDOM} cannot be read: conversation ids come from std's hash keys, a \
                 counter and the clock"
            );
        });
        fallback_random()
    });
    format!("{PREFIX}{bits:032x}")
}

/// `id` as logs and errors show it: the `oai-sse-` prefix (if it has it) and at most the first
/// four characters after it, then `…`; fewer for a short id (never more than half of it),
/// and only up to the first character that is not an ASCII letter or digit, so that what is
/// shown can neither rebuild the id nor carry control sequences.
pub(crate) fn redacted(id: &str) -> String {
    let (prefix, secret) = match id.strip_prefix(PREFIX) {
        Some(secret) => (PREFIX, secret),
        None => ("", id),
    };
    let limit = SHOWN.min(secret.chars().count() / 2);
    let shown: String = secret
        .chars()
        .take(limit)
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    format!("{prefix}{shown}…")
}

/// 128 bits from `/dev/urandom`, if it is a character device that gives them.
fn os_random() -> Option<u128> {
    let mut file = File::open(URANDOM).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if !file.metadata().ok()?.file_type().is_char_device() {
            return None;
        }
    }
    let mut bytes = [0; 16];
    file.read_exact(&mut bytes).ok()?;
    Some(u128::from_le_bytes(bytes))
}

/// 128 bits from two of std's randomly keyed SipHash hashers, each over a process-wide
/// counter and the clock: distinct ids without an OS generator to read.
fn fallback_random() -> u128 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let word = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        hasher.finish()
    };
    (u128::from(word()) << 64) | u128::from(word())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Ids in the documented format, all different, and no hex position stuck: a constant
    /// or a counter shows up as positions with few values.
    fn assert_random_ids(ids: &[String]) {
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "repeated ids");
        let mut seen = vec![HashSet::new(); 32];
        for id in ids {
            let hex = id.strip_prefix(PREFIX).unwrap_or_else(|| panic!("{id}"));
            assert_eq!(hex.len(), 32, "{id}");
            let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert!(hex.bytes().all(lower_hex), "{id}");
            for (position, digit) in hex.bytes().enumerate() {
                seen[position].insert(digit);
            }
        }
        for (position, digits) in seen.iter().enumerate() {
            assert_eq!(digits.len(), 16, "hex position {position} took {digits:?}");
        }
    }

    #[test]
    fn ids_are_unique_random_hex() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        assert_random_ids(&ids);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn ids_come_from_the_os_random_source() {
        assert!(os_random().is_some(), "{URANDOM} is readable on Linux");
        assert_ne!(os_random(), os_random());
    }

    #[test]
    fn the_fallback_gives_unique_random_hex_too() {
        let ids: Vec<String> = (0..10_000)
            .map(|_| format!("{PREFIX}{:032x}", fallback_random()))
            .collect();
        assert_random_ids(&ids);
    }

    #[test]
    fn redaction_shows_the_prefix_and_four_hex_digits() {
        for _ in 0..1000 {
            let id = new_id();
            let shown = redacted(&id);
            assert_eq!(shown, format!("{}…", &id[..PREFIX.len() + SHOWN]), "{id}");
            let hex = shown.strip_prefix(PREFIX).and_then(|s| s.strip_suffix('…'));
            assert_eq!(hex.map(str::len), Some(SHOWN), "{shown}");
        }
    }

    #[test]
    fn redaction_never_shows_more_than_four_characters_of_any_id() {
        let cases = [
            ("oai-sse-0123456789abcdef0123456789abcdef", "oai-sse-0123…"),
            ("oai-sse-", "oai-sse-…"),
            ("oai-sse-ab", "oai-sse-a…"),
            ("oai-sse-abc", "oai-sse-a…"),
            ("", "…"),
            ("x", "…"),
            ("my-own-id", "my…"),
            ("abcdef0123", "abcd…"),
            ("oai-sse-\u{1b}[31mred", "oai-sse-…"),
            ("oai-sse-ab\ncd-ef-gh", "oai-sse-ab…"),
            ("ünïcödé-id-of-some-length", "…"),
            ("a\u{202e}bcdefgh", "a…"),
        ];
        for (id, want) in cases {
            let shown = redacted(id);
            assert_eq!(shown, want, "{id:?}");
            let secret = shown.strip_prefix(PREFIX).unwrap_or(&shown);
            let visible = secret.trim_end_matches('…');
            assert!(visible.chars().count() <= SHOWN, "{id:?}: {shown}");
            assert!(
                visible.chars().all(|c| c.is_ascii_alphanumeric()),
                "{shown:?}"
            );
        }
    }
}
