//! The conversation id: a fresh random token per call (see the module docs of `call`).

/// A fresh conversation id: `oai-sse-` and 128 random bits as hex.
pub(crate) fn new_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut words = [0u64; 2];
    for word in &mut words {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        *word = hasher.finish();
    }
    format!("oai-sse-{:016x}{:016x}", words[0], words[1])
}

/// The id as logs may show it: the prefix and 4 hex digits.
pub(crate) fn redacted(id: &str) -> String {
    let keep = id.strip_prefix("oai-sse-").map_or(0, |_| 8) + 4;
    let shown: String = id.chars().take(keep).collect();
    format!("{shown}…")
}
