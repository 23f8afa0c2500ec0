//! One call's retry budget: which attempt this is, what was tried, how much of the budget is
//! left, and how long to wait before the next attempt.
//!
//! The decisions are [`retry::decide`](crate::retry::decide)'s (pure); this adds the clock,
//! the history and the caller's hook. The driver sleeps.

use crate::cancel::CancelHandle;
use crate::error::{AfterRetries, Error};
use crate::retry::{
    Decision, RetryAction, RetryPolicy, RetryRecord, Rng, Situation, Verdict, classify, decide,
    server_down,
};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A callback told about each retry before its wait; see
/// [`CallOptions::on_retry`](crate::CallOptions::on_retry).
pub type RetryHook = Arc<dyn Fn(&RetryNotice<'_>) + Send + Sync>;

/// What a [`RetryHook`] is told.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryNotice<'a> {
    /// The retry about to happen (1-based), counted against `max_retries`; for a wait for a
    /// server that is down ([`waiting`](Self::waiting)), the retries made so far.
    pub retry: u32,
    /// The policy's `max_retries`.
    pub max_retries: u32,
    /// Set when this is a wait for a server that refuses connections or is loading its
    /// model (503), which does not count against `max_retries`: how long the server has been
    /// down, and the policy's `max_wait_for_server`.
    pub waiting: Option<(Duration, Duration)>,
    /// The wait before it.
    pub delay: Duration,
    /// Why the attempt failed.
    pub error: &'a Error,
    /// What the next attempt does: resume, restart, reconnect.
    pub action: &'a RetryAction,
}

/// How long to wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The policy's backoff (or the server's `Retry-After`).
    Backoff,
    /// The backoff, but no longer than this (the first resume: the generation keeps
    /// running on the server while we wait).
    AtMost(Duration),
    /// An event stream's reconnection time (its last `retry:` field), jittered upwards only
    /// (the server asked for at least this) and capped at the policy's `max_retry_after`.
    /// The first retry of a budget waits it, or the server's `Retry-After` if longer; later
    /// retries in a row wait the larger of it and the backoff.
    ReconnectionTime(Duration),
}

/// Why a reconnect waits as long as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelaySource {
    /// The retry policy's exponential backoff.
    Backoff,
    /// The server's `Retry-After` (or `retry-after-ms`) header on a 429/503-like answer.
    RetryAfter,
    /// The event stream's `retry:` field (its reconnection time).
    RetryField,
}

impl DelaySource {
    /// A short lowercase name: `backoff`, `Retry-After`, `retry field`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backoff => "backoff",
            Self::RetryAfter => "Retry-After",
            Self::RetryField => "retry field",
        }
    }
}

impl fmt::Display for DelaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call's attempts.
pub(crate) struct Attempts {
    policy: RetryPolicy,
    rng: Rng,
    cancel: CancelHandle,
    hook: Option<RetryHook>,
    started: Instant,
    deadline: Option<Duration>,
    attempt: u32,
    /// Retries that count against `max_retries`.
    counted: u32,
    /// Retries made while the server was down or loading.
    down_retries: u32,
    /// When the current outage (refused, 503) began.
    down_since: Option<Instant>,
    /// Some server answered at this address (this call, or earlier ones of the client): a
    /// refused connection then means it went away, and is waited for.
    answered: bool,
    history: Vec<RetryRecord>,
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempts")
            .field("attempt", &self.attempt)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Attempts {
    pub(crate) fn new(
        policy: RetryPolicy,
        cancel: CancelHandle,
        hook: Option<RetryHook>,
        jitter_seed: Option<u64>,
        deadline: Option<Duration>,
        answered: bool,
    ) -> Self {
        Self {
            policy,
            rng: jitter_seed.map_or_else(Rng::from_entropy, Rng::seeded),
            cancel,
            hook,
            started: Instant::now(),
            deadline,
            attempt: 1,
            counted: 0,
            down_retries: 0,
            down_since: None,
            answered,
            history: Vec::new(),
        }
    }

    /// The current attempt (1-based).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn cancel(&self) -> &CancelHandle {
        &self.cancel
    }

    pub(crate) fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub(crate) fn history(&self) -> &[RetryRecord] {
        &self.history
    }

    pub(crate) fn take_history(&mut self) -> Vec<RetryRecord> {
        std::mem::take(&mut self.history)
    }

    /// When the call must end and its configured length, if it has a deadline.
    pub(crate) fn deadline(&self) -> Option<(Instant, Duration)> {
        let total = self.deadline?;
        Some((self.started.checked_add(total)?, total))
    }

    /// The server answered (any status): an outage, if there was one, is over.
    pub(crate) fn server_answered(&mut self) {
        self.down_since = None;
        self.answered = true;
    }

    /// A connection of a long-lived stream worked (it delivered something): the next
    /// failure starts a new outage, with the whole retry budget, `max_elapsed` counted from
    /// it, and attempts and history counted afresh. Without this, a feed that runs for days
    /// would spend a lifetime budget of a few retries on unrelated outages.
    pub(crate) fn fresh_budget(&mut self) {
        self.started = Instant::now();
        self.attempt = 1;
        self.counted = 0;
        self.down_retries = 0;
        self.down_since = None;
        self.history.clear();
    }

    /// After the current attempt failed with `err` at byte `at_byte` of its stream: decides
    /// whether to try again and, if so, tells the hook, records the retry and moves to the
    /// next attempt; returns how long to wait before it, and why that long. The caller
    /// sleeps (with [`CancelHandle::sleep`]) — an event source first hands the reconnect to
    /// its caller.
    ///
    /// # Errors
    ///
    /// The error to return to the caller: `err` itself when no retry was ever made, wrapped
    /// in [`Error::AfterRetries`] otherwise.
    pub(crate) fn schedule(
        &mut self,
        err: Error,
        action: RetryAction,
        at_byte: u64,
        wait: Wait,
    ) -> Result<(Duration, DelaySource), Error> {
        let failure = err.failure();
        // A refusal from an address where nothing ever answered is a wrong address (or a
        // server not started yet), waited for only if the policy says so.
        let down = server_down(&failure)
            && (self.answered
                || self.policy.wait_for_unseen_server
                || failure.kind != crate::retry::FailureKind::ConnectionRefused);
        if down && self.down_since.is_none() {
            self.down_since = Some(Instant::now());
        }
        if !down {
            self.down_since = None;
        }
        let mut policy_view = None;
        if server_down(&failure) && !down {
            // Counted like any failure: no wait budget for it.
            policy_view = Some(RetryPolicy {
                max_wait_for_server: None,
                ..self.policy.clone()
            });
        }
        let policy = policy_view.as_ref().unwrap_or(&self.policy);
        let situation = Situation {
            retries_done: self.counted,
            down_retries: self.down_retries,
            restart_after_output: false,
            elapsed: self.started.elapsed(),
            deadline: self.deadline,
            server_down_for: self.down_since.map(|since| since.elapsed()),
        };
        let now = SystemTime::now();
        let delay = match decide(&failure, policy, &situation, now, &mut self.rng) {
            Decision::Retry(delay) => delay,
            Decision::GiveUp => {
                log::debug!("attempt {} failed, not retried: {err}", self.attempt);
                return Err(self.give_up(err, false));
            }
            Decision::Exhausted => {
                log::warn!("giving up after {} attempts: {err}", self.attempt);
                return Err(self.give_up(err, true));
            }
        };
        let server_delay = matches!(
            classify(&failure, &self.policy, now),
            Verdict::Transient {
                server_delay: Some(_)
            }
        );
        let decided = if server_delay {
            DelaySource::RetryAfter
        } else {
            DelaySource::Backoff
        };
        let (delay, source) = match wait {
            Wait::Backoff => (delay, decided),
            Wait::AtMost(most) => (delay.min(most), decided),
            Wait::ReconnectionTime(time) => {
                let time = self.jitter_up(time);
                let first = self.counted + self.down_retries == 0;
                if server_delay && delay > time {
                    (delay, DelaySource::RetryAfter)
                } else if first || time >= delay {
                    (time, DelaySource::RetryField)
                } else {
                    (delay, DelaySource::Backoff)
                }
            }
        };
        let elapsed = self.started.elapsed().saturating_add(delay);
        if self.policy.max_elapsed.is_some_and(|most| elapsed >= most) {
            return Err(self.give_up(err, true));
        }
        if let Some((left, _)) = self
            .deadline()
            .map(|(end, total)| (end.saturating_duration_since(Instant::now()), total))
        {
            if delay >= left {
                return Err(self.give_up(err, true));
            }
        }
        self.record(&err, action, at_byte, delay, down);
        Ok((delay, source))
    }

    /// `time × (1 + jitter × u)`, `u` uniform in [0, 1), at most `max_retry_after`.
    fn jitter_up(&mut self, time: Duration) -> Duration {
        let cap = self.policy.max_retry_after;
        let time = time.min(cap);
        let spread = 1.0 + self.policy.jitter.clamp(0.0, 1.0) * self.rng.next_f64();
        Duration::try_from_secs_f64(time.as_secs_f64() * spread).map_or(time, |d| d.min(cap))
    }

    /// The last retry carried on another way than scheduled: `passed_over` says why the
    /// scheduled way could not be had. The break still costs that one retry.
    pub(crate) fn amend_last(&mut self, action: RetryAction, passed_over: String) {
        if let Some(last) = self.history.last_mut() {
            log::info!(
                "attempt {}: {} instead: {passed_over}",
                last.attempt + 1,
                action.as_str()
            );
            last.action = action;
            last.passed_over = Some(match last.passed_over.take() {
                Some(earlier) => format!("{earlier}; {passed_over}"),
                None => passed_over,
            });
        }
    }

    /// The server reported generating `tokens` in the current attempt.
    pub(crate) fn note_tokens(&mut self, tokens: Option<u64>) {
        if let Some(last) = self.history.last_mut() {
            if last.attempt + 1 == self.attempt {
                last.tokens = tokens;
            }
        }
    }

    fn record(
        &mut self,
        err: &Error,
        action: RetryAction,
        at_byte: u64,
        delay: Duration,
        down: bool,
    ) {
        let waiting = self
            .down_since
            .filter(|_| down)
            .zip(self.policy.max_wait_for_server)
            .map(|(since, budget)| (since.elapsed(), budget));
        let retry = if waiting.is_some() {
            self.counted
        } else {
            self.counted + 1
        };
        // An event source reconnecting after a connection that delivered is routine.
        let level = if retry == 1 && matches!(action, RetryAction::Reconnected { .. }) {
            log::Level::Info
        } else {
            log::Level::Warn
        };
        match waiting {
            Some((waited, budget)) => log::log!(
                level,
                "waiting for the server ({}): {} s of {} s, next try in {} ms",
                err.kind(),
                waited.as_secs(),
                budget.as_secs(),
                delay.as_millis()
            ),
            None => log::log!(
                level,
                "retry {retry}/{} ({}) after {} ms: {err}",
                self.policy.max_retries,
                action.as_str(),
                delay.as_millis()
            ),
        }
        if let Some(hook) = &self.hook {
            hook(&RetryNotice {
                retry,
                max_retries: self.policy.max_retries,
                waiting,
                delay,
                error: err,
                action: &action,
            });
        }
        let mut record = RetryRecord::new(
            self.attempt,
            err.kind(),
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            action,
        );
        record.at_byte = at_byte;
        self.history.push(record);
        if down {
            self.down_retries += 1;
        } else {
            self.counted += 1;
        }
        self.attempt += 1;
    }

    /// The final error: as it is when no retry was made, else with the history.
    pub(crate) fn give_up(&mut self, err: Error, exhausted: bool) -> Error {
        if self.history.is_empty() || matches!(err, Error::Cancelled | Error::AfterRetries(_)) {
            return err;
        }
        Error::AfterRetries(Box::new(AfterRetries {
            attempts: self.attempt,
            last: err,
            history: self.take_history(),
            exhausted,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HttpError;
    use crate::retry::FailureKind;
    use crate::wire::ApiError;
    use std::io;

    fn eof() -> Error {
        Error::io(FailureKind::UnexpectedEof, io::Error::other("cut"))
    }

    fn status(code: u16, retry_after: Option<&str>) -> Error {
        Error::Http(Box::new(HttpError {
            status: code,
            error: ApiError::default(),
            retry_after: retry_after.map(str::to_owned),
            retry_after_ms: None,
            should_retry: None,
        }))
    }

    fn attempts(jitter: f64) -> Attempts {
        let policy = RetryPolicy {
            jitter,
            ..RetryPolicy::default()
        };
        Attempts::new(policy, CancelHandle::new(), None, Some(7), None, true)
    }

    fn reconnect() -> RetryAction {
        RetryAction::Reconnected {
            last_event_id: None,
        }
    }

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn reconnection_time_first_then_the_larger_of_it_and_the_backoff() {
        use DelaySource::{Backoff, RetryAfter, RetryField};
        let r = Wait::ReconnectionTime;
        // (error, wait, want): one sequence of failures in a row per block; backoff is
        // 250 ms × 2ⁿ⁻¹ without jitter.
        type Row = (Error, Wait, (Duration, DelaySource));
        let table: &[&[Row]] = &[
            &[
                (eof(), r(ms(300)), (ms(300), RetryField)),
                (eof(), r(ms(300)), (ms(500), Backoff)),
                (eof(), r(ms(300)), (ms(1000), Backoff)),
            ],
            &[
                // The first retry waits the reconnection time even below the backoff.
                (eof(), r(ms(10)), (ms(10), RetryField)),
                (eof(), r(ms(2000)), (ms(2000), RetryField)),
            ],
            &[
                (eof(), Wait::Backoff, (ms(250), Backoff)),
                (status(429, Some("1")), r(ms(300)), (ms(1000), RetryAfter)),
                (status(429, Some("1")), r(ms(3000)), (ms(3000), RetryField)),
            ],
            &[(status(429, Some("1")), r(ms(300)), (ms(1000), RetryAfter))],
            // A reconnection time beyond max_retry_after (60 s) is cut to it.
            &[(eof(), r(ms(3_600_000)), (ms(60_000), RetryField))],
        ];
        for (i, sequence) in table.iter().enumerate() {
            let mut attempts = attempts(0.0);
            for (n, (err, wait, want)) in sequence.iter().enumerate() {
                let got = attempts
                    .schedule(err.clone(), reconnect(), 0, *wait)
                    .expect("retried");
                assert_eq!(got, *want, "sequence {i}, retry {}", n + 1);
                assert_eq!(attempts.attempt(), n as u32 + 2);
            }
        }
    }

    #[test]
    fn reconnection_time_jitters_upwards_only() {
        let mut attempts = attempts(0.2);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (delay, _) = attempts
                .schedule(eof(), reconnect(), 0, Wait::ReconnectionTime(ms(300)))
                .expect("retried");
            assert!(delay >= ms(300) && delay < ms(360), "{delay:?}");
            seen.insert(delay);
            attempts.fresh_budget();
        }
        assert!(seen.len() > 100, "jitter should spread the waits");
    }

    #[test]
    fn a_fresh_budget_renews_retries_and_history() {
        let mut attempts = attempts(0.0);
        for _ in 0..3 {
            for _ in 0..3 {
                attempts
                    .schedule(eof(), reconnect(), 0, Wait::Backoff)
                    .expect("within the budget");
            }
            assert_eq!(attempts.history().len(), 3);
            attempts.fresh_budget();
            assert_eq!((attempts.attempt(), attempts.history().len()), (1, 0));
        }
        for _ in 0..3 {
            attempts
                .schedule(eof(), reconnect(), 0, Wait::Backoff)
                .expect("within the budget");
        }
        let err = attempts
            .schedule(eof(), reconnect(), 0, Wait::Backoff)
            .expect_err("budget spent");
        match err {
            Error::AfterRetries(after) => {
                assert!(after.exhausted);
                assert_eq!((after.attempts, after.history.len()), (4, 3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn max_elapsed_counts_the_final_wait() {
        let policy = RetryPolicy {
            jitter: 0.0,
            max_elapsed: Some(ms(1000)),
            ..RetryPolicy::default()
        };
        let mut attempts = Attempts::new(policy, CancelHandle::new(), None, None, None, true);
        // The backoff (250 ms) fits; a 5 s reconnection time does not.
        let err = attempts
            .schedule(eof(), reconnect(), 0, Wait::ReconnectionTime(ms(5000)))
            .expect_err("over max_elapsed");
        assert_eq!(err.kind(), FailureKind::UnexpectedEof);
    }
}
