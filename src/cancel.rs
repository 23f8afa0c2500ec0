//! Interrupting a blocking call: the [`CancelHandle`] a caller holds, and the per-call
//! watchdog thread that enforces the first-byte, idle and total timeouts.
//!
//! A thread blocked in a socket read cannot be woken by a flag. The watchdog instead shuts
//! down the attempt's ureq agent (`Agent::shutdown`), which shuts the socket and makes the
//! blocked read return at once. Each attempt gets its own agent so that interrupting it
//! never touches another call. The watchdog sleeps on the cancel handle's condition
//! variable, so cancelling wakes it immediately, and otherwise wakes only when a deadline
//! may have passed: progress is recorded in atomics and needs no notification, since
//! within a phase deadlines only move later. The one move earlier, from the first-byte
//! limit to the (usually shorter) idle limit, notifies it.

use crate::FailureKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ends an in-flight call from another thread, including one blocked in a socket read or
/// sleeping between retries; the call returns [`Error::Cancelled`](crate::Error::Cancelled)
/// within about 100 ms (a TCP connect in progress is bounded by the connect timeout).
///
/// Clones share the same state. Once cancelled, a handle stays cancelled: calls started
/// with it fail at once.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle {
    shared: Arc<CancelShared>,
}

#[derive(Debug, Default)]
struct CancelShared {
    cancelled: Mutex<bool>,
    wake: Condvar,
}

impl CancelHandle {
    /// A fresh, uncancelled handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every call using this handle (and any clone of it).
    pub fn cancel(&self) {
        *self.lock() = true;
        self.shared.wake.notify_all();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        *self.lock()
    }

    /// Sleeps for `duration` unless cancelled first. Returns `false` if cancelled.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .shared
            .wake
            .wait_timeout_while(guard, duration, |cancelled| !*cancelled)
            .unwrap_or_else(PoisonError::into_inner);
        !*guard
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        // The flag is a plain bool: a panic elsewhere cannot leave it inconsistent.
        self.shared
            .cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        // Taking the lock orders the notification after any state change the waiter
        // checks under it.
        drop(self.lock());
        self.shared.wake.notify_all();
    }
}

/// The timeouts the watchdog enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchLimits {
    /// From the start of an attempt to its first response body byte.
    pub first_byte: Duration,
    /// Between body reads once bytes flow.
    pub idle: Duration,
    /// For the whole call, all attempts and waits included.
    pub deadline: Option<Duration>,
}

/// Progress of the current attempt, shared with the watchdog thread.
#[derive(Debug)]
struct Progress {
    call_start: Instant,
    /// Milliseconds since `call_start`.
    attempt_start: AtomicU64,
    last_read: AtomicU64,
    got_byte: AtomicBool,
    finished: AtomicBool,
    /// The agent of the armed attempt (shut down when a limit passes), and why it fired.
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    agent: Option<ureq::Agent>,
    fired: Option<(FailureKind, Duration)>,
}

impl Progress {
    fn now_ms(&self) -> u64 {
        self.call_start.elapsed().as_millis() as u64
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One call's watchdog: a thread that shuts down the armed attempt's agent when the call
/// is cancelled or a timeout passes. Dropping it stops the thread.
pub(crate) struct Watchdog {
    progress: Arc<Progress>,
    cancel: CancelHandle,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(cancel: &CancelHandle, limits: WatchLimits) -> Self {
        let progress = Arc::new(Progress {
            call_start: Instant::now(),
            attempt_start: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
            got_byte: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            slot: Mutex::new(Slot::default()),
        });
        let thread = {
            let progress = Arc::clone(&progress);
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name("oai-sse-watchdog".into())
                .spawn(move || watch(&progress, &cancel, limits))
                .ok()
        };
        if thread.is_none() {
            log::warn!("could not start the watchdog thread: timeouts and cancel are inert");
        }
        Self {
            progress,
            cancel: cancel.clone(),
            thread,
        }
    }

    /// Starts watching a new attempt that runs on `agent`.
    pub(crate) fn arm(&self, agent: &ureq::Agent) {
        let p = &self.progress;
        let now = p.now_ms();
        p.attempt_start.store(now, Ordering::Relaxed);
        p.last_read.store(now, Ordering::Relaxed);
        p.got_byte.store(false, Ordering::Relaxed);
        {
            let mut slot = p.slot();
            slot.agent = Some(agent.clone());
            slot.fired = None;
        }
        self.cancel.notify();
    }

    /// Stops watching the current attempt (it ended on its own).
    pub(crate) fn disarm(&self) {
        self.progress.slot().agent = None;
    }

    /// Records that body bytes arrived.
    pub(crate) fn saw_bytes(&self) {
        let p = &self.progress;
        p.last_read.store(p.now_ms(), Ordering::Relaxed);
        if !p.got_byte.swap(true, Ordering::Relaxed) {
            // The idle limit may end sooner than the first-byte limit the watchdog sleeps on.
            self.cancel.notify();
        }
    }

    /// Why the watchdog interrupted the current attempt, if it did.
    pub(crate) fn fired(&self) -> Option<(FailureKind, Duration)> {
        self.progress.slot().fired
    }

    /// Time since the call started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.progress.call_start.elapsed()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.progress.finished.store(true, Ordering::Relaxed);
        self.cancel.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watchdog thread's loop.
fn watch(progress: &Progress, cancel: &CancelHandle, limits: WatchLimits) {
    let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX / 2)) as u64;
    let mut cancelled = cancel.lock();
    loop {
        if progress.finished.load(Ordering::Relaxed) {
            return;
        }
        let now = progress.now_ms();
        let armed = progress.slot().agent.is_some();
        // The earliest limit that applies now, and what it is called.
        let mut next: Option<(u64, FailureKind, Duration)> = limits
            .deadline
            .map(|d| (ms(d), FailureKind::DeadlineExceeded, d));
        if armed {
            let (at, kind, limit) = if progress.got_byte.load(Ordering::Relaxed) {
                let last = progress.last_read.load(Ordering::Relaxed);
                (
                    last + ms(limits.idle),
                    FailureKind::IdleTimeout,
                    limits.idle,
                )
            } else {
                let start = progress.attempt_start.load(Ordering::Relaxed);
                let at = start + ms(limits.first_byte);
                (at, FailureKind::FirstByteTimeout, limits.first_byte)
            };
            if next.is_none_or(|(deadline, ..)| at < deadline) {
                next = Some((at, kind, limit));
            }
        }
        let fire = if *cancelled {
            Some((FailureKind::Cancelled, Duration::ZERO))
        } else {
            next.filter(|(at, ..)| now >= *at).map(|(_, k, d)| (k, d))
        };
        if let Some(reason) = fire {
            let mut slot = progress.slot();
            if let Some(agent) = slot.agent.take() {
                log::debug!(
                    "watchdog: {} after {:?}, shutting the connection",
                    reason.0,
                    reason.1
                );
                slot.fired = Some(reason);
                drop(slot);
                agent.shutdown();
            }
        }
        let wait = match next {
            Some((at, ..)) if !*cancelled && at > now => Duration::from_millis(at - now),
            // Nothing left to time: sleep until notified (the next arm, or the call's end).
            _ => Duration::from_secs(3600),
        };
        cancelled = cancel
            .shared
            .wake
            .wait_timeout(cancelled, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}
