//! Retry decisions as pure functions: which failures are transient ([`classify`]), how long
//! to wait ([`RetryPolicy::backoff`], server `Retry-After` headers), and a tiny seedable PRNG
//! for jitter. Nothing here sleeps or reads a clock; the client injects both.

use crate::FailureKind;
use crate::chat::ChatError;
use crate::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One retry the client made: which attempt failed, why, and how long it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryRecord {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Why it failed (`"unexpected_eof"`, `"http_status"`, ...).
    #[serde(deserialize_with = "deserialize_kind")]
    pub reason: FailureKind,
    /// The wait before the next attempt, in milliseconds.
    pub delay_ms: u64,
}

fn deserialize_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FailureKind, D::Error> {
    let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    Ok(FailureKind::from_name(&name).unwrap_or(FailureKind::Other))
}

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
        Error::Io { kind, .. } | Error::Transport { kind, .. } | Error::Timeout { kind, .. } => {
            match kind {
                FailureKind::UnexpectedEof
                | FailureKind::ConnectionReset
                | FailureKind::ConnectionAborted
                | FailureKind::BrokenPipe
                | FailureKind::ConnectionRefused
                | FailureKind::ConnectTimeout
                | FailureKind::FirstByteTimeout
                | FailureKind::IdleTimeout
                | FailureKind::TimedOut => TRANSIENT,
                FailureKind::Dns if policy.retry_dns => TRANSIENT,
                _ => Verdict::Permanent,
            }
        }
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

/// Decides after a failed attempt. `retries_done` counts retries already made, `elapsed`
/// is the time since the call started and `deadline` the call's total limit, if any.
#[allow(clippy::too_many_arguments)] // Each input is a separate fact; a struct would only rename them.
pub fn decide(
    err: &Error,
    policy: &RetryPolicy,
    retries_done: u32,
    delivered_output: bool,
    elapsed: Duration,
    deadline: Option<Duration>,
    now: SystemTime,
    rng: &mut Rng,
) -> Decision {
    let server_delay = match classify(err, policy, now) {
        Verdict::Transient { server_delay } => server_delay,
        Verdict::Permanent | Verdict::WaitTooLong(_) => return Decision::GiveUp,
    };
    if delivered_output && !policy.retry_after_output {
        return Decision::GiveUp;
    }
    if retries_done >= policy.max_retries {
        return Decision::Exhausted;
    }
    let delay = server_delay.unwrap_or_else(|| policy.backoff(retries_done + 1, rng));
    let after_wait = elapsed.saturating_add(delay);
    let over = |limit: Option<Duration>| limit.is_some_and(|limit| after_wait >= limit);
    if over(policy.max_elapsed) || over(deadline) {
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
    /// Retries after the first attempt (default 3, so at most 4 attempts).
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
    /// Retry a failure after deltas were already delivered to the caller (default true).
    /// The caller first receives a restart event. On paid APIs this re-bills the tokens.
    pub retry_after_output: bool,
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

/// The server's requested wait, from `retry-after-ms` (milliseconds, OpenAI's header) or
/// else `Retry-After` (seconds or an HTTP date, RFC 9110 §10.2.3). A date in the past
/// means "now". Unparseable values are ignored.
pub fn server_delay(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Duration::try_from_secs_f64(ms / 1000.0).ok();
        }
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten();
    }
    let at = parse_http_date(value, now)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `x-should-retry: true|false` (case-insensitive); anything else is no opinion.
pub fn should_retry_header(value: Option<&str>) -> Option<bool> {
    match value?.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Parses the three HTTP date formats: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// `now` places RFC 850's two-digit years (RFC 9110 §5.6.7: a year more than 50 years in the
/// future is the most recent past year with those digits).
pub fn parse_http_date(text: &str, now: SystemTime) -> Option<SystemTime> {
    let words: Vec<&str> = text
        .split([' ', ',', '-'])
        .filter(|w| !w.is_empty())
        .collect();
    let (day, month, year, time) = match words.as_slice() {
        // IMF-fixdate and RFC 850: weekday, day, month, year, time, "GMT".
        [_, day, month, year, time, zone] if zone.eq_ignore_ascii_case("GMT") => {
            (*day, *month, *year, *time)
        }
        // asctime: weekday, month, day, time, year.
        [_, month, day, time, year] => (*day, *month, *year, *time),
        _ => return None,
    };
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    // HTTP dates have four-digit years (two in RFC 850); a longer one is garbage, and would
    // overflow the day arithmetic below.
    let mut year: i64 = year.parse().ok().filter(|y| (0..=9999).contains(y))?;
    if year < 100 {
        let this_year = 1970
            + now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| (d.as_secs() / 31_556_952) as i64);
        year += this_year - this_year % 100;
        if year > this_year + 50 {
            year -= 100;
        }
    }
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days.checked_mul(86_400)? + (h * 3600 + m * 60 + s) as i64;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    use crate::chat::ApiError;
    use crate::error::HttpError;
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
        Error::io(io::Error::new(kind, "x"))
    }

    fn timeout(kind: FailureKind) -> Error {
        Error::Timeout {
            kind,
            after: Duration::from_secs(1),
        }
    }

    /// A ureq per-read timeout as ureq's body reader reports it: `Other` wrapping ureq's error.
    fn wrapped_ureq_timeout() -> Error {
        Error::io(io::Error::other(ureq::Error::Timeout(
            ureq::Timeout::PerRead,
        )))
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
            ("ureq per-read timeout", wrapped_ureq_timeout(), T),
            (
                "ureq: closed inside chunk framing",
                Error::ureq(ureq::Error::BodyStalled),
                T,
            ),
            ("other io", io_err(K::PermissionDenied), P),
            ("connect timeout", timeout(FailureKind::ConnectTimeout), T),
            ("first byte", timeout(FailureKind::FirstByteTimeout), T),
            ("idle", timeout(FailureKind::IdleTimeout), T),
            ("deadline", timeout(FailureKind::DeadlineExceeded), P),
            ("dns", Error::ureq(ureq::Error::HostNotFound), P),
            ("tls", Error::ureq(ureq::Error::Tls("bad certificate")), P),
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
        assert_eq!(
            classify(&Error::ureq(ureq::Error::HostNotFound), &policy, UNIX_EPOCH),
            T
        );
    }

    #[test]
    fn decision_table() {
        let policy = RetryPolicy {
            jitter: 0.0,
            max_elapsed: Some(Duration::from_secs(10)),
            ..RetryPolicy::default()
        };
        let eof = io_err(io::ErrorKind::UnexpectedEof);
        let slow = http(429, None, [Some("3"), None, None]);
        let s = Duration::from_secs;
        // (error, retries done, delivered output, elapsed, call deadline) -> decision
        type Case<'a> = (
            &'a str,
            &'a Error,
            u32,
            bool,
            Duration,
            Option<Duration>,
            Decision,
        );
        let table: Vec<Case> = vec![
            (
                "first retry",
                &eof,
                0,
                false,
                s(0),
                None,
                Decision::Retry(ms(250)),
            ),
            (
                "third retry",
                &eof,
                2,
                false,
                s(0),
                None,
                Decision::Retry(ms(1000)),
            ),
            (
                "out of retries",
                &eof,
                3,
                false,
                s(0),
                None,
                Decision::Exhausted,
            ),
            (
                "after output, allowed",
                &eof,
                0,
                true,
                s(0),
                None,
                Decision::Retry(ms(250)),
            ),
            (
                "server delay wins",
                &slow,
                0,
                false,
                s(0),
                None,
                Decision::Retry(s(3)),
            ),
            (
                "budget spent",
                &eof,
                0,
                false,
                s(10),
                None,
                Decision::Exhausted,
            ),
            (
                "wait would pass the budget",
                &slow,
                0,
                false,
                s(8),
                None,
                Decision::Exhausted,
            ),
            (
                "wait would pass the deadline",
                &slow,
                0,
                false,
                s(1),
                Some(s(4)),
                Decision::Exhausted,
            ),
            (
                "permanent",
                &Error::Cancelled,
                0,
                false,
                s(0),
                None,
                Decision::GiveUp,
            ),
        ];
        for (name, err, done, delivered, elapsed, deadline, want) in table {
            let got = decide(
                err,
                &policy,
                done,
                delivered,
                elapsed,
                deadline,
                UNIX_EPOCH,
                &mut Rng::seeded(1),
            );
            assert_eq!(got, want, "{name}");
        }
        let no_mid_stream = RetryPolicy {
            retry_after_output: false,
            ..policy
        };
        let got = decide(
            &eof,
            &no_mid_stream,
            0,
            true,
            s(0),
            None,
            UNIX_EPOCH,
            &mut Rng::seeded(1),
        );
        assert_eq!(got, Decision::GiveUp);
    }

    #[test]
    fn retry_record_json_shape() {
        let record = RetryRecord {
            attempt: 1,
            reason: FailureKind::UnexpectedEof,
            delay_ms: 262,
        };
        let json = serde_json::to_string(&record).expect("serializable record");
        assert_eq!(
            json,
            r#"{"attempt":1,"reason":"unexpected_eof","delay_ms":262}"#
        );
        assert_eq!(
            serde_json::from_str::<RetryRecord>(&json).expect("serializable record"),
            record
        );
    }

    #[test]
    fn every_kind_has_a_unique_name() {
        for kind in FailureKind::ALL {
            assert_eq!(FailureKind::from_name(kind.as_str()), Some(kind));
        }
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

    #[test]
    fn server_delay_table() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("1500"), None, Some(ms(1500))),
            (Some("1.5"), None, Some(Duration::from_micros(1500))),
            (Some("1500"), Some("9"), Some(ms(1500))),
            (Some("junk"), Some("2"), Some(ms(2000))),
            (Some("-5"), Some("2"), Some(ms(2000))),
            (None, Some("1"), Some(ms(1000))),
            (None, Some(" 0 "), Some(ms(0))),
            (None, Some("0.25"), Some(ms(250))),
            (None, Some("-1"), None),
            (None, Some("NaN"), None),
            (None, Some("inf"), None),
            (None, Some("1e400"), None),
            (None, Some("soon"), None),
            (
                None,
                Some("Sun, 06 Nov 1994 08:49:47 GMT"),
                Some(ms(10_000)),
            ),
            (
                None,
                Some("Sunday, 06-Nov-94 08:50:37 GMT"),
                Some(ms(60_000)),
            ),
            (None, Some("Sun Nov  6 08:49:38 1994"), Some(ms(1000))),
            (None, Some("Sun, 06 Nov 1994 08:00:00 GMT"), Some(ms(0))),
            (None, Some("Sun, 06 Nov 1994 08:49:47 PST"), None),
            (None, Some("Sun, 32 Nov 1994 08:49:47 GMT"), None),
            (None, Some("Sun, 06 Foo 1994 08:49:47 GMT"), None),
            (None, Some("Sun, 06 Nov 1994 24:00:00 GMT"), None),
            (None, Some("Sun, 06 Nov 1994 08:49 GMT"), None),
        ];
        for (ms_header, header, want) in table {
            assert_eq!(
                server_delay(*ms_header, *header, now),
                *want,
                "{ms_header:?} {header:?}"
            );
        }
    }

    #[test]
    fn http_dates_match_known_timestamps() {
        let table = [
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Tue, 29 Feb 2000 12:00:00 GMT", 951_825_600),
            ("Sun, 29 Nov 2026 12:00:00 GMT", 1_795_953_600),
            ("Wednesday, 01-Jan-70 00:00:01 GMT", 1),
            ("Fri Dec 31 23:59:59 1999", 946_684_799),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_http_date(text, UNIX_EPOCH),
                Some(UNIX_EPOCH + Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(
            parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT", UNIX_EPOCH),
            None
        );
        assert_eq!(
            parse_http_date("Wed, 01 Jan 99999999999999 00:00:00 GMT", UNIX_EPOCH),
            None
        );
    }

    #[test]
    fn two_digit_years_follow_the_fifty_year_rule() {
        let year_2026 = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        let table = [
            ("76", 2076),
            ("77", 1977),
            ("00", 2000),
            ("26", 2026),
            ("99", 1999),
        ];
        for (yy, year) in table {
            let text = format!("Thursday, 01-Jan-{yy} 00:00:00 GMT");
            let parsed = parse_http_date(&text, year_2026).expect("valid date");
            let want = parse_http_date(&format!("Thu, 01 Jan {year} 00:00:00 GMT"), year_2026);
            assert_eq!(Some(parsed), want, "{yy}");
        }
    }

    #[test]
    fn should_retry_header_table() {
        let table = [
            (None, None),
            (Some("true"), Some(true)),
            (Some(" TRUE "), Some(true)),
            (Some("false"), Some(false)),
            (Some("1"), None),
            (Some(""), None),
        ];
        for (value, want) in table {
            assert_eq!(should_retry_header(value), want, "{value:?}");
        }
    }
}
