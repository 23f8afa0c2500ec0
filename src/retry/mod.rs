//! Retry decisions as pure functions: which failures are transient ([`classify`]), how long
//! to wait ([`RetryPolicy::backoff`], the server's `Retry-After` headers in
//! [`retry_after`]), and a tiny seedable PRNG for jitter. Nothing here sleeps or reads a
//! clock; the client injects both.

pub mod retry_after;

pub use crate::kind::{RetryAction, RetryRecord};
pub use retry_after::{parse_http_date, server_delay, should_retry_header};

use crate::chat::ChatError;
use crate::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether a failure is worth another attempt, judged from the error alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient; the server may have said how long to wait.
    Transient {
        /// The server's `retry-after-ms` / `Retry-After`, when given and within bounds.
        server_delay: Option<Duration>,
    },
    /// Retrying would fail the same way (or must not happen, like after a cancel).
    Permanent,
    /// Transient, but the server asked for a wait longer than the policy allows: the error
    /// goes back to the caller, who can read the delay from it.
    WaitTooLong(Duration),
}

/// Classifies a failure (see the README's error table).
pub fn classify(err: &Error, policy: &RetryPolicy, now: SystemTime) -> Verdict {
    const TRANSIENT: Verdict = Verdict::Transient { server_delay: None };
    match err {
        Error::Transport(t) if t.kind().is_transient_transport() => TRANSIENT,
        Error::Transport(t) if t.kind() == crate::FailureKind::Dns && policy.retry_dns => TRANSIENT,
        Error::Stream(
            ChatError::IncompleteStream { .. } | ChatError::TruncatedToolCallArguments { .. },
        ) => TRANSIENT,
        Error::Http(http) => {
            let retryable = match should_retry_header(http.should_retry.as_deref()) {
                Some(verdict) => verdict,
                None => {
                    let no_quota = http.status == 429
                        && http.error.code.as_deref() == Some("insufficient_quota");
                    !no_quota && policy.retry_statuses.contains(&http.status)
                }
            };
            match (retryable, http.server_delay(now)) {
                (false, _) => Verdict::Permanent,
                (true, Some(delay)) if delay > policy.max_retry_after => {
                    Verdict::WaitTooLong(delay)
                }
                (true, server_delay) => Verdict::Transient { server_delay },
            }
        }
        Error::AfterRetries(after) => classify(&after.last, policy, now),
        _ => Verdict::Permanent,
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub fn server_down(err: &Error) -> bool {
    match err.last() {
        Error::Transport(t) => t.kind() == crate::FailureKind::ConnectionRefused,
        Error::Http(http) => http.status == 503,
        _ => false,
    }
}

/// Decides after a failed attempt.
pub fn decide(
    err: &Error,
    policy: &RetryPolicy,
    situation: &Situation,
    now: SystemTime,
    rng: &mut Rng,
) -> Decision {
    let server_delay = match classify(err, policy, now) {
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
    let waiting_for_server = server_down(err)
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
#[derive(Debug, Clone, PartialEq)]
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
    pub max_wait_for_server: Option<Duration>,
    /// Continue a broken stream where it broke instead of starting it over, when the server
    /// supports it (llama.cpp's stream replay; default true). See the README's "Resume,
    /// don't restart".
    pub resume: bool,
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
            resume: true,
        }
    }
}

impl RetryPolicy {
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
    use crate::FailureKind;
    use crate::chat::ApiError;
    use crate::error::{HttpError, TransportError};
    use std::io;

    fn http(status: u16, code: Option<&str>, headers: [Option<&str>; 3]) -> Error {
        let [retry_after, retry_after_ms, should_retry] = headers.map(|h| h.map(str::to_owned));
        Error::Http(Box::new(HttpError {
            status,
            error: ApiError {
                message: "m".into(),
                code: code.map(str::to_owned),
                ..ApiError::default()
            },
            retry_after,
            retry_after_ms,
            should_retry,
        }))
    }

    fn io_err(kind: io::ErrorKind) -> Error {
        Error::io(FailureKind::from_io_kind(kind), io::Error::new(kind, "x"))
    }

    fn timeout(kind: FailureKind) -> Error {
        Error::Transport(TransportError::timeout(kind, Duration::from_secs(1)))
    }

    fn failed(kind: FailureKind) -> Error {
        Error::io(kind, io::Error::other("x"))
    }

    const T: Verdict = Verdict::Transient { server_delay: None };
    const P: Verdict = Verdict::Permanent;

    #[test]
    fn classifier_table() {
        use io::ErrorKind as K;
        let none = [None, None, None];
        let table: Vec<(&str, Error, Verdict)> = vec![
            ("eof", io_err(K::UnexpectedEof), T),
            ("reset", io_err(K::ConnectionReset), T),
            ("aborted", io_err(K::ConnectionAborted), T),
            ("broken pipe", io_err(K::BrokenPipe), T),
            ("refused", io_err(K::ConnectionRefused), T),
            ("socket timeout", io_err(K::TimedOut), T),
            ("would block", io_err(K::WouldBlock), T),
            ("other io", io_err(K::PermissionDenied), P),
            ("connect timeout", timeout(FailureKind::ConnectTimeout), T),
            ("first byte", timeout(FailureKind::FirstByteTimeout), T),
            ("idle", timeout(FailureKind::IdleTimeout), T),
            ("deadline", timeout(FailureKind::DeadlineExceeded), P),
            ("dns", failed(FailureKind::Dns), P),
            ("tls", failed(FailureKind::Tls), P),
            ("protocol", failed(FailureKind::Protocol), P),
            (
                "incomplete",
                Error::Stream(ChatError::IncompleteStream {
                    received_events: 3,
                    finish_seen: false,
                }),
                T,
            ),
            (
                "truncated tool args",
                Error::Stream(ChatError::TruncatedToolCallArguments {
                    choice: 0,
                    index: 0,
                    id: "c".into(),
                    name: "f".into(),
                }),
                T,
            ),
            (
                "cut by length",
                Error::Stream(ChatError::ToolCallArgumentsCutByLength {
                    choice: 0,
                    index: 0,
                    name: "f".into(),
                }),
                P,
            ),
            (
                "malformed",
                Error::Stream(ChatError::MalformedChunk {
                    reason: "r".into(),
                    snippet: "s".into(),
                }),
                P,
            ),
            (
                "api error in stream",
                Error::Stream(ChatError::Api(Box::default())),
                P,
            ),
            (
                "sse limit",
                Error::Sse(crate::sse::SseError::LineTooLong { limit: 1 }),
                P,
            ),
            ("cancelled", Error::Cancelled, P),
            ("config", Error::Config("x".into()), P),
            ("408", http(408, None, none), T),
            ("429", http(429, None, none), T),
            (
                "429 no quota",
                http(429, Some("insufficient_quota"), none),
                P,
            ),
            (
                "429 no quota, told to retry",
                http(429, Some("insufficient_quota"), [None, None, Some("true")]),
                T,
            ),
            ("502", http(502, None, none), T),
            ("503", http(503, None, none), T),
            (
                "503 told not to",
                http(503, None, [None, None, Some("false")]),
                P,
            ),
            ("504", http(504, None, none), T),
            ("500", http(500, None, none), P),
            (
                "500 told to retry",
                http(500, None, [None, None, Some("true")]),
                T,
            ),
            ("400", http(400, None, none), P),
            ("401", http(401, None, none), P),
            ("404", http(404, None, none), P),
            (
                "429 retry-after 2",
                http(429, None, [Some("2"), None, None]),
                Verdict::Transient {
                    server_delay: Some(Duration::from_secs(2)),
                },
            ),
            (
                "429 retry-after-ms",
                http(429, None, [Some("9"), Some("1500"), None]),
                Verdict::Transient {
                    server_delay: Some(Duration::from_millis(1500)),
                },
            ),
            (
                "429 retry-after too long",
                http(429, None, [Some("61"), None, None]),
                Verdict::WaitTooLong(Duration::from_secs(61)),
            ),
            (
                "429 retry-after too large to represent",
                http(429, None, [Some("1e21"), None, None]),
                Verdict::WaitTooLong(Duration::MAX),
            ),
            (
                "503 retry-after-ms 1e300",
                http(503, None, [None, Some("1e300"), None]),
                Verdict::WaitTooLong(Duration::MAX),
            ),
            (
                "400 with retry-after",
                http(400, None, [Some("1"), None, None]),
                P,
            ),
        ];
        let policy = RetryPolicy::default();
        for (name, err, want) in table {
            assert_eq!(classify(&err, &policy, UNIX_EPOCH), want, "{name}: {err}");
        }
    }

    #[test]
    fn configurable_classes() {
        let policy = RetryPolicy {
            retry_statuses: vec![500],
            retry_dns: true,
            ..RetryPolicy::default()
        };
        assert_eq!(
            classify(&http(500, None, [None; 3]), &policy, UNIX_EPOCH),
            T
        );
        assert_eq!(
            classify(&http(503, None, [None; 3]), &policy, UNIX_EPOCH),
            P
        );
        assert_eq!(classify(&failed(FailureKind::Dns), &policy, UNIX_EPOCH), T);
    }

    #[test]
    fn decision_table() {
        let policy = RetryPolicy {
            jitter: 0.0,
            max_elapsed: Some(Duration::from_secs(10)),
            max_wait_for_server: Some(Duration::from_secs(5)),
            ..RetryPolicy::default()
        };
        let eof = io_err(io::ErrorKind::UnexpectedEof);
        let refused = io_err(io::ErrorKind::ConnectionRefused);
        let loading = http(503, None, [None; 3]);
        let slow = http(429, None, [Some("3"), None, None]);
        let huge = http(429, None, [Some("1e300"), None, None]);
        let s = Duration::from_secs;
        let at = |retries_done: u32, elapsed: u64| Situation {
            retries_done,
            elapsed: s(elapsed),
            ..Situation::default()
        };
        let table: Vec<(&str, &Error, Situation, Decision)> = vec![
            ("first retry", &eof, at(0, 0), Decision::Retry(ms(250))),
            ("third retry", &eof, at(2, 0), Decision::Retry(ms(1000))),
            ("out of retries", &eof, at(3, 0), Decision::Exhausted),
            (
                "after output, allowed",
                &eof,
                Situation {
                    restart_after_output: true,
                    ..at(0, 0)
                },
                Decision::Retry(ms(250)),
            ),
            ("server delay wins", &slow, at(0, 0), Decision::Retry(s(3))),
            (
                "unrepresentable server delay",
                &huge,
                at(0, 0),
                Decision::GiveUp,
            ),
            ("budget spent", &eof, at(0, 10), Decision::Exhausted),
            (
                "wait would pass the budget",
                &slow,
                at(0, 8),
                Decision::Exhausted,
            ),
            (
                "wait would pass the deadline",
                &slow,
                Situation {
                    deadline: Some(s(4)),
                    ..at(0, 1)
                },
                Decision::Exhausted,
            ),
            ("permanent", &Error::Cancelled, at(0, 0), Decision::GiveUp),
            (
                "server down: not counted",
                &refused,
                Situation {
                    server_down_for: Some(s(0)),
                    ..at(3, 0)
                },
                Decision::Retry(ms(2000)),
            ),
            (
                "loading: waits within the server budget",
                &loading,
                Situation {
                    server_down_for: Some(s(1)),
                    ..at(3, 1)
                },
                Decision::Retry(ms(2000)),
            ),
            (
                "server down too long",
                &refused,
                Situation {
                    server_down_for: Some(ms(4900)),
                    ..at(0, 4)
                },
                Decision::Exhausted,
            ),
        ];
        for (name, err, situation, want) in table {
            let got = decide(err, &policy, &situation, UNIX_EPOCH, &mut Rng::seeded(1));
            assert_eq!(got, want, "{name}");
        }
        let no_mid_stream = RetryPolicy {
            retry_after_output: false,
            ..policy.clone()
        };
        let restart = Situation {
            restart_after_output: true,
            ..Situation::default()
        };
        let got = decide(
            &eof,
            &no_mid_stream,
            &restart,
            UNIX_EPOCH,
            &mut Rng::seeded(1),
        );
        assert_eq!(got, Decision::GiveUp);
        let counted = RetryPolicy {
            max_wait_for_server: None,
            ..policy
        };
        let got = decide(
            &refused,
            &counted,
            &at(3, 0),
            UNIX_EPOCH,
            &mut Rng::seeded(1),
        );
        assert_eq!(
            got,
            Decision::Exhausted,
            "without a server budget, refusals count"
        );
    }

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
