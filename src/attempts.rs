//! The retry loop's state, shared by chat streams and event sources: which attempt this is,
//! what was tried, how much of the budget is left, and the waits between attempts.
//!
//! The decisions are [`retry::decide`]'s (pure); this adds the clock, the cancellable sleep,
//! the history and the caller's hook.

use crate::cancel::CancelHandle;
use crate::error::{AfterRetries, Error};
use crate::kind::{RetryAction, RetryRecord};
use crate::retry::{Decision, RetryPolicy, Rng, Situation, decide, server_down};
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
    /// The retry about to happen (1-based).
    pub retry: u32,
    /// The policy's `max_retries`.
    pub max_retries: u32,
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
    /// Exactly this long (an event stream's `retry:` reconnection time).
    #[allow(dead_code)] // for the generic event source
    Exactly(Duration),
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
    }

    /// After the current attempt failed with `err`: decides whether to try again and, if
    /// so, tells the hook, records the retry, waits and moves to the next attempt.
    ///
    /// # Errors
    ///
    /// The error to return to the caller: `err` itself when no retry was ever made, wrapped
    /// in [`Error::AfterRetries`] otherwise, or [`Error::Cancelled`] if cancelled while
    /// waiting.
    pub(crate) fn retry(
        &mut self,
        err: Error,
        action: RetryAction,
        restart_after_output: bool,
        wait: Wait,
    ) -> Result<(), Error> {
        let down = server_down(&err);
        if down && self.down_since.is_none() {
            self.down_since = Some(Instant::now());
        }
        if !down {
            self.down_since = None;
        }
        let situation = Situation {
            retries_done: self.counted,
            down_retries: self.down_retries,
            restart_after_output,
            elapsed: self.started.elapsed(),
            deadline: self.deadline,
            server_down_for: self.down_since.map(|since| since.elapsed()),
        };
        let delay = match decide(
            &err,
            &self.policy,
            &situation,
            SystemTime::now(),
            &mut self.rng,
        ) {
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
        let delay = match wait {
            Wait::Backoff => delay,
            Wait::AtMost(most) => delay.min(most),
            Wait::Exactly(exactly) => exactly,
        };
        if let Some((left, _)) = self
            .deadline()
            .map(|(end, total)| (end.saturating_duration_since(Instant::now()), total))
        {
            if delay >= left {
                return Err(self.give_up(err, true));
            }
        }
        self.record(&err, action, delay, down);
        if !self.cancel.sleep(delay) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Moves to the next attempt at once, without a retry decision: a resume the server
    /// cannot serve falls back to a restart. It still counts against the budget, and a
    /// restart after output needs the policy's consent.
    ///
    /// # Errors
    ///
    /// `original` (the failure that broke the stream) when the budget is spent or the policy
    /// forbids restarting after output.
    pub(crate) fn fall_back(
        &mut self,
        why: &Error,
        original: Error,
        restart_after_output: bool,
    ) -> Result<(), Error> {
        if restart_after_output && !self.policy.retry_after_output {
            return Err(self.give_up(original, false));
        }
        if self.counted >= self.policy.max_retries {
            return Err(self.give_up(original, true));
        }
        self.record(why, RetryAction::Restarted, Duration::ZERO, false);
        Ok(())
    }

    fn record(&mut self, err: &Error, action: RetryAction, delay: Duration, down: bool) {
        let retry = self.counted + self.down_retries + 1;
        log::warn!(
            "retry {retry}/{} ({}) after {} ms: {err}",
            self.policy.max_retries,
            action_name(&action),
            delay.as_millis()
        );
        if let Some(hook) = &self.hook {
            hook(&RetryNotice {
                retry,
                max_retries: self.policy.max_retries,
                delay,
                error: err,
                action: &action,
            });
        }
        self.history.push(RetryRecord {
            attempt: self.attempt,
            reason: err.kind(),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            action,
        });
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

fn action_name(action: &RetryAction) -> &'static str {
    match action {
        RetryAction::Restarted => "restart",
        RetryAction::Resumed { .. } => "resume",
        RetryAction::Reconnected { .. } => "reconnect",
    }
}
