//! Interrupting a blocking call: the [`CancelHandle`] a caller holds, and the kill switches
//! calls register with it.
//!
//! A thread blocked in a socket read cannot be woken by a flag. Instead, each call registers
//! a kill switch for the socket it is using right now (and only that socket: a pooled
//! connection another call uses is never touched); [`CancelHandle::cancel`] sets the flag,
//! wakes every sleeper (backoff waits, a connect in progress) through the condition variable,
//! and shuts the registered sockets down, which makes blocked reads and writes return at once.
//! No thread watches a call: cancelling is done by the thread that calls `cancel`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// Ends an in-flight call from another thread, including one blocked in a socket read, in a
/// connect, or sleeping between retries; the call returns
/// [`Error::Cancelled`](crate::Error::Cancelled) within a few milliseconds.
///
/// Clones share the same state. Once cancelled, a handle stays cancelled: calls started
/// with it fail at once.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// `state.cancelled`, readable without the lock: streams check it between events.
    cancelled: AtomicBool,
}

#[derive(Default)]
struct State {
    cancelled: bool,
    /// The sockets (or other resources) to shut down on cancel, by registration id.
    switches: Vec<(u64, Weak<dyn KillSwitch>)>,
    next_id: u64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("cancelled", &self.cancelled)
            .field("switches", &self.switches.len())
            .finish()
    }
}

/// Something a cancel shuts down: the socket of a call's current attempt.
pub(crate) trait KillSwitch: Send + Sync {
    /// Makes blocked I/O on the resource return at once.
    fn kill(&self);
}

impl KillSwitch for std::net::TcpStream {
    fn kill(&self) {
        // An error means the socket is already shut down or closed.
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// A registered kill switch; dropping it unregisters the switch.
#[derive(Debug)]
pub(crate) struct Registration {
    handle: CancelHandle,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handle.lock().switches.retain(|(id, _)| *id != self.id);
    }
}

impl CancelHandle {
    /// A fresh, uncancelled handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every call using this handle (and any clone of it).
    pub fn cancel(&self) {
        let switches = {
            let mut state = self.lock();
            state.cancelled = true;
            self.shared.cancelled.store(true, Ordering::SeqCst);
            std::mem::take(&mut state.switches)
        };
        self.shared.wake.notify_all();
        for (_, switch) in switches {
            if let Some(switch) = switch.upgrade() {
                switch.kill();
            }
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Registers `switch` to be killed on cancel, for as long as the returned registration
    /// lives. If the handle is already cancelled the switch is killed at once.
    pub(crate) fn register(&self, switch: Weak<dyn KillSwitch>) -> Registration {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        if state.cancelled {
            drop(state);
            if let Some(switch) = switch.upgrade() {
                switch.kill();
            }
        } else {
            state.switches.push((id, switch));
        }
        Registration {
            handle: self.clone(),
            id,
        }
    }

    /// Sleeps for `duration` unless cancelled first. Returns `false` if cancelled.
    pub(crate) fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now().checked_add(duration);
        self.wait_until(until, || false);
        !self.is_cancelled()
    }

    /// Waits until `ready()` holds, the handle is cancelled, or `until` passes (never when
    /// `None`). `ready` is checked under the handle's lock; whoever makes it true must call
    /// [`notify`](Self::notify) afterwards. Returns whether `ready()` held.
    pub(crate) fn wait_until(
        &self,
        until: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let mut state = self.lock();
        loop {
            if ready() {
                return true;
            }
            if state.cancelled {
                return false;
            }
            let wait = match until {
                Some(until) => match until.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
                // Woken by notify or cancel; the hour only bounds a lost wake-up.
                None => Duration::from_secs(3600),
            };
            state = self
                .shared
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wakes [`wait_until`](Self::wait_until) so it checks its condition again.
    pub(crate) fn notify(&self) {
        // Taking the lock orders the notification after the state change the waiter checks.
        drop(self.lock());
        self.shared.wake.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a flag and a list: a panic elsewhere cannot leave it inconsistent.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl KillSwitch for Counter {
        fn kill(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn weak(counter: &Arc<Counter>) -> Weak<dyn KillSwitch> {
        let switch: Arc<dyn KillSwitch> = counter.clone();
        Arc::downgrade(&switch)
    }

    #[test]
    fn cancel_kills_registered_switches_only() {
        let handle = CancelHandle::new();
        let (kept, dropped) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
        let _kept = handle.register(weak(&kept));
        drop(handle.register(weak(&dropped)));
        handle.cancel();
        assert_eq!(kept.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            dropped.0.load(Ordering::SeqCst),
            0,
            "unregistered switch killed"
        );
        // Registering after the cancel kills at once.
        let late = Arc::new(Counter::default());
        let _late = handle.register(weak(&late));
        assert_eq!(late.0.load(Ordering::SeqCst), 1);
        assert!(!handle.sleep(Duration::from_secs(5)));
    }

    #[test]
    fn wait_until_returns_on_notify_cancel_or_time() {
        let handle = CancelHandle::new();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, f) = (handle.clone(), flag.clone());
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.store(true, Ordering::SeqCst);
            h.notify();
        });
        assert!(handle.wait_until(None, || flag.load(Ordering::SeqCst)));
        setter.join().expect("setter thread");
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(!handle.wait_until(Some(soon), || false));
        let h = handle.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            h.cancel();
        });
        assert!(!handle.wait_until(None, || false));
        canceller.join().expect("canceller thread");
    }
}
