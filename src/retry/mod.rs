//! Retry decisions as pure functions: which failures are transient ([`classify`], the one
//! table), how long to wait ([`RetryPolicy::backoff`], the server's `Retry-After` headers in
//! [`retry_after`]), and a tiny seedable PRNG for jitter; and the shared vocabulary of
//! failures ([`FailureKind`]) and retries ([`RetryRecord`]). Nothing here sleeps or reads a
//! clock (the caller injects both), and nothing here imports the rest of the crate: a
//! failure reaches the table as a [`Failure`], a view of facts.
//!
//! [`RetryPolicy`] is what most callers set (on the client builder or per call); the rest is
//! here to test a policy, or to drive the same decisions from a loop of your own:
//!
//! ```
//! use oai_sse::retry::{Rng, RetryPolicy};
//! use std::time::Duration;
//!
//! let policy = RetryPolicy::default();
//! let mut rng = Rng::seeded(7); // jitter, reproducible
//! let waits: Vec<Duration> = (1..=6).map(|retry| policy.backoff(retry, &mut rng)).collect();
//! // 250 ms doubling per retry, ±20 % jitter, capped at 8 s.
//! assert!(waits[0] >= Duration::from_millis(200) && waits[0] <= Duration::from_millis(300));
//! assert!(waits[5] <= Duration::from_secs(8));
//! assert!(waits.windows(2).all(|w| w[1] >= w[0] / 2));
//! ```

mod classify;
mod kind;
pub mod retry_after;

pub use classify::{ApiFacts, Failure, HttpFacts, Verdict, api_error_is_transient, classify};
pub use kind::{FailureKind, RetryAction, RetryRecord};
pub use retry_after::{parse_http_date, server_delay, should_retry_header};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Return the error as it is: retrying cannot help.
    GiveUp,
    /// The failure was transient but the retry budget is spent.
    Exhausted,
}

/// What a retry decision needs to know about the call so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Situation {
    /// Retries made so far that count against [`RetryPolicy::max_retries`] (waits for a
    /// server that is down or loading do not).
    pub retries_done: u32,
    /// Retries made while the server was down or loading (they grow the backoff too).
    pub down_retries: u32,
    /// The next attempt would start the answer over although output was already delivered.
    pub restart_after_output: bool,
    /// Time since the call started.
    pub elapsed: Duration,
    /// The call's total limit, if any.
    pub deadline: Option<Duration>,
    /// How long the server has been down or loading without a break, if it is now.
    pub server_down_for: Option<Duration>,
}

/// Whether a failure means the server is down or still loading its model: nothing listens
/// (a restart), or `503` (llama.cpp answers `503 Loading model` without `Retry-After`).
/// These are waited out within [`RetryPolicy::max_wait_for_server`] instead of counted.
pub fn server_down(failure: &Failure<'_>) -> bool {
    match failure.kind {
        FailureKind::ConnectionRefused => true,
        FailureKind::HttpStatus => failure.http.is_some_and(|http| http.status == 503),
        _ => false,
    }
}

/// Decides after a failed attempt.
pub fn decide(
    failure: &Failure<'_>,
    policy: &RetryPolicy,
    situation: &Situation,
    now: SystemTime,
    rng: &mut Rng,
) -> Decision {
    let server_delay = match classify(failure, policy, now) {
        Verdict::Transient { server_delay } => server_delay,
        Verdict::Permanent | Verdict::WaitTooLong(_) => return Decision::GiveUp,
    };
    if situation.restart_after_output && !policy.retry_after_output {
        return Decision::GiveUp;
    }
    if policy.max_retries == 0 {
        // No retries at all, not even waits for a server that is down.
        return Decision::Exhausted;
    }
    let step = situation
        .retries_done
        .saturating_add(situation.down_retries)
        .saturating_add(1);
    let delay = server_delay.unwrap_or_else(|| policy.backoff(step, rng));
    let waiting_for_server = server_down(failure)
        .then_some(policy.max_wait_for_server)
        .flatten();
    match waiting_for_server {
        Some(budget) => {
            let down = situation.server_down_for.unwrap_or(Duration::ZERO);
            if down.saturating_add(delay) >= budget {
                return Decision::Exhausted;
            }
        }
        None if situation.retries_done >= policy.max_retries => return Decision::Exhausted,
        None => {}
    }
    let after_wait = situation.elapsed.saturating_add(delay);
    let over = |limit: Option<Duration>| limit.is_some_and(|limit| after_wait >= limit);
    if over(policy.max_elapsed) || over(situation.deadline) {
        return Decision::Exhausted;
    }
    Decision::Retry(delay)
}

/// How the client retries transient failures.
///
/// The wait before retry `n` (1-based) is
/// `min(max_delay, initial_delay × factorⁿ⁻¹ × (1 − jitter + 2 × jitter × u))` with `u`
/// uniform in `[0, 1)`: exponential growth, spread ±`jitter` so that many clients cut off by
/// the same outage do not come back in lockstep. A server's `retry-after-ms` or `Retry-After`
/// replaces the computed wait when it is at most `max_retry_after`.
///
/// Build one from [`RetryPolicy::default()`] with a setter per field (a new field in a later
/// version is then not a breaking change); the fields stay public to read:
///
/// ```
/// use oai_sse::retry::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default()
///     .max_retries(5)
///     .max_elapsed(Some(Duration::from_secs(300)))
///     .retry_after_output(false); // paid API: never bill a restarted answer twice
/// assert_eq!((policy.max_retries, policy.initial_delay), (5, Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3, so at most 4 attempts); 0 turns retrying
    /// off entirely, waits for a server that is down included.
    pub max_retries: u32,
    /// Wait before the first retry (default 250 ms).
    pub initial_delay: Duration,
    /// Growth per retry (default 2).
    pub factor: f64,
    /// Longest computed wait (default 8 s).
    pub max_delay: Duration,
    /// Relative spread of each wait, 0 to 1 (default 0.2).
    pub jitter: f64,
    /// Give up once this much time has passed since the first attempt started, counting the
    /// next wait (default: no budget).
    pub max_elapsed: Option<Duration>,
    /// Longest server-requested wait honoured; a longer one is not retried and the error
    /// carries the server's delay so the caller can decide (default 60 s).
    pub max_retry_after: Duration,
    /// HTTP statuses retried (default 408, 429, 502, 503, 504).
    pub retry_statuses: Vec<u16>,
    /// Retry when the host name cannot be resolved (default false: usually a typo).
    pub retry_dns: bool,
    /// Restart a call after deltas were already delivered to the caller (default true).
    /// The caller first receives a restart event. On paid APIs this re-bills the tokens.
    /// (Resuming a stream, which regenerates nothing, is not affected.)
    pub retry_after_output: bool,
    /// How long to keep waiting for a server that is down or loading its model (connection
    /// refused, `503`), with the capped backoff, before giving up (default 2 minutes). These
    /// waits do not count against `max_retries`. `None` counts them like other failures.
    /// A refused connection is waited for only once something answered at that address
    /// (a server that went away), unless [`wait_for_unseen_server`](Self::wait_for_unseen_server).
    pub max_wait_for_server: Option<Duration>,
    /// Also wait (within `max_wait_for_server`) for a server that has never answered this
    /// client: one being started at the same time (default false: a refused connection to
    /// an address where nothing ever answered counts as an ordinary retry, so a mistyped
    /// port fails after `max_retries`, in seconds).
    pub wait_for_unseen_server: bool,
    /// Pick a broken stream up where it broke instead of starting it over, when the server
    /// replays it (llama.cpp's stream replay, verified byte for byte; default true).
    pub resume: bool,
    /// Continue a broken answer by sending the delivered text as a final assistant message,
    /// on servers known to continue one (llama.cpp, detected from its `Server` header; others
    /// with `ClientBuilder::server_continues`): only the rest is generated (default true).
    pub continuation: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay: Duration::from_millis(250),
            factor: 2.0,
            max_delay: Duration::from_secs(8),
            jitter: 0.2,
            max_elapsed: None,
            max_retry_after: Duration::from_secs(60),
            retry_statuses: vec![408, 429, 502, 503, 504],
            retry_dns: false,
            retry_after_output: true,
            max_wait_for_server: Some(Duration::from_secs(120)),
            wait_for_unseen_server: false,
            resume: true,
            continuation: true,
        }
    }
}

impl RetryPolicy {
    /// Sets [`max_retries`](Self::max_retries).
    #[must_use]
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets [`initial_delay`](Self::initial_delay).
    #[must_use]
    pub fn initial_delay(mut self, initial_delay: Duration) -> Self {
        self.initial_delay = initial_delay;
        self
    }

    /// Sets [`factor`](Self::factor).
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets [`max_delay`](Self::max_delay).
    #[must_use]
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`max_elapsed`](Self::max_elapsed).
    #[must_use]
    pub fn max_elapsed(mut self, max_elapsed: Option<Duration>) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// Sets [`max_retry_after`](Self::max_retry_after).
    #[must_use]
    pub fn max_retry_after(mut self, max_retry_after: Duration) -> Self {
        self.max_retry_after = max_retry_after;
        self
    }

    /// Sets [`retry_statuses`](Self::retry_statuses).
    #[must_use]
    pub fn retry_statuses(mut self, retry_statuses: Vec<u16>) -> Self {
        self.retry_statuses = retry_statuses;
        self
    }

    /// Sets [`retry_dns`](Self::retry_dns).
    #[must_use]
    pub fn retry_dns(mut self, retry_dns: bool) -> Self {
        self.retry_dns = retry_dns;
        self
    }

    /// Sets [`retry_after_output`](Self::retry_after_output).
    #[must_use]
    pub fn retry_after_output(mut self, retry_after_output: bool) -> Self {
        self.retry_after_output = retry_after_output;
        self
    }

    /// Sets [`max_wait_for_server`](Self::max_wait_for_server).
    #[must_use]
    pub fn max_wait_for_server(mut self, max_wait_for_server: Option<Duration>) -> Self {
        self.max_wait_for_server = max_wait_for_server;
        self
    }

    /// Sets [`wait_for_unseen_server`](Self::wait_for_unseen_server).
    #[must_use]
    pub fn wait_for_unseen_server(mut self, wait_for_unseen_server: bool) -> Self {
        self.wait_for_unseen_server = wait_for_unseen_server;
        self
    }

    /// Sets [`resume`](Self::resume).
    #[must_use]
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Sets [`continuation`](Self::continuation).
    #[must_use]
    pub fn continuation(mut self, continuation: bool) -> Self {
        self.continuation = continuation;
        self
    }

    /// A policy that never retries.
    pub fn never() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The computed wait before retry number `retry` (1-based), before any server header.
    pub fn backoff(&self, retry: u32, rng: &mut Rng) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = 1.0 - jitter + 2.0 * jitter * rng.next_f64();
        let secs = (base * spread).min(self.max_delay.as_secs_f64());
        // `secs` is finite and non-negative here, but guard against a NaN factor anyway.
        // Converting back can round up past a `max_delay` with more precision than an f64
        // holds, so cap again.
        Duration::try_from_secs_f64(secs).map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

/// A small PRNG (SplitMix64) for jitter: no `rand` crate, seedable for tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed (deterministic waits in tests).
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from the clock and this value's address, different per call.
    pub fn from_entropy() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let here = &nanos as *const u64 as u64;
        Self(nanos ^ here.rotate_left(32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_without_jitter_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let mut rng = Rng::seeded(1);
        let table = [
            (1, 250),
            (2, 500),
            (3, 1000),
            (4, 2000),
            (5, 4000),
            (6, 8000),
            (7, 8000),
            (60, 8000),
            (u32::MAX, 8000),
        ];
        for (retry, want) in table {
            assert_eq!(policy.backoff(retry, &mut rng), ms(want), "retry {retry}");
        }
    }

    #[test]
    fn jitter_stays_within_its_band_and_varies() {
        let policy = RetryPolicy::default();
        let mut rng = Rng::seeded(42);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let d = policy.backoff(1, &mut rng);
            assert!(d >= ms(200) && d < ms(300), "{d:?}");
            seen.insert(d);
            assert!(policy.backoff(10, &mut rng) <= policy.max_delay);
        }
        assert!(seen.len() > 500, "jitter should spread the waits");
    }

    #[test]
    fn same_seed_same_waits() {
        let policy = RetryPolicy::default();
        let a: Vec<_> = (1..6)
            .map(|n| policy.backoff(n, &mut Rng::seeded(7)))
            .collect();
        let b: Vec<_> = (1..6)
            .map(|n| policy.backoff(n, &mut Rng::seeded(7)))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn odd_policies_do_not_panic() {
        let mut rng = Rng::seeded(3);
        for (factor, jitter) in [
            (f64::NAN, 0.2),
            (f64::INFINITY, 0.2),
            (0.0, 5.0),
            (-1.0, -1.0),
            (1e308, 1.0),
        ] {
            let policy = RetryPolicy {
                factor,
                jitter,
                ..RetryPolicy::default()
            };
            for retry in [0, 1, 2, 100, u32::MAX] {
                assert!(policy.backoff(retry, &mut rng) <= policy.max_delay);
            }
        }
    }
}
