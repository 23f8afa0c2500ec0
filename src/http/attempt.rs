//! One attempt's I/O context: its timeouts, its progress, its kill switch, and the
//! thread-local binding through which the socket layer finds it.
//!
//! ureq's transport API hands a socket only ureq's own timeout (`NextTimeout`) on each read
//! or write, nothing about the call it serves — and a pooled connection serves many calls.
//! So the attempt running on a thread is made *current* ([`enter`]) around every ureq call
//! and body read, and the socket asks for the current attempt when it does I/O: it takes its
//! read timeout from the attempt's phase (first byte, then idle, then drain), records
//! progress, and registers itself as the attempt's kill switch with the call's
//! [`CancelHandle`]. Everything runs on the caller's thread; nothing here spawns one.

use crate::cancel::{CancelHandle, KillSwitch, Registration};
use crate::retry::FailureKind;
use std::cell::RefCell;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The timeouts an attempt enforces (see `ClientBuilder` for what each means).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    /// How long to wait for the rest of a complete response (the chunked terminator) before
    /// dropping the connection instead of pooling it.
    pub drain: Duration,
}

/// Where an attempt is: which limit applies to the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connecting, sending, waiting for the status line and headers: the first-byte limit,
    /// from the start of the attempt.
    Head,
    /// The headers are in; waiting for the first body byte, still under the first-byte
    /// limit from the start of the attempt (llama.cpp may send headers long before the
    /// first token). The next bytes to arrive end this phase.
    FirstBody,
    /// The body flows: each read may wait the idle limit. The limit is on the server's
    /// silence while we wait, so time the caller spends between reads (a slow consumer, a
    /// blocked pipe) does not count against it.
    Body,
    /// Reading the rest of a response within a total time: the end of a complete stream
    /// (so the connection can be pooled), or an error body that might drip forever.
    Tail(Duration),
}

/// One attempt's I/O state, shared between the attempt's driver and the socket it uses.
#[derive(Debug)]
pub(crate) struct AttemptIo {
    cancel: CancelHandle,
    limits: Limits,
    /// When the whole call must end, and its configured length.
    deadline: Option<(Instant, Duration)>,
    /// When the attempt started.
    started: Instant,
    /// Body bytes have arrived (the first-body phase is over): lets the per-read
    /// bookkeeping skip the lock once the body flows.
    flowing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Start of the tail phase.
    since: Instant,
    /// The socket this attempt is bound to, and whether it had served an attempt before.
    socket: Option<u64>,
    reused: bool,
    /// The TCP connection is up and any TLS handshake done (for labelling failures).
    connected: bool,
    /// When this attempt's new connection came up (not set for a reused one).
    connected_at: Option<Instant>,
    /// Bytes of the response that reached ureq during this attempt (status line and headers
    /// included; after TLS, so TLS records that carry no response do not count).
    received: u64,
    /// The limit that ended a read, if one did.
    fired: Option<(FailureKind, Duration)>,
    /// What a failure of this attempt is, when the layer that saw it knows better than the
    /// error ureq carries up (a name that did not resolve).
    label: Option<FailureKind>,
    /// The kind of the last socket read error (ureq reports a reset during a body as an end
    /// of input; this keeps the real kind).
    read_error: Option<std::io::ErrorKind>,
    _kill: Option<Registration>,
}

impl AttemptIo {
    pub(crate) fn new(
        cancel: &CancelHandle,
        limits: Limits,
        deadline: Option<(Instant, Duration)>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cancel: cancel.clone(),
            limits,
            deadline,
            started: Instant::now(),
            flowing: AtomicBool::new(false),
            state: Mutex::new(State {
                phase: Phase::Head,
                since: Instant::now(),
                socket: None,
                reused: false,
                connected: false,
                connected_at: None,
                received: 0,
                fired: None,
                label: None,
                read_error: None,
                _kill: None,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn cancel(&self) -> &CancelHandle {
        &self.cancel
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Moves to `phase`. The tail phase starts its own clock; the first-body phase keeps
    /// the attempt's.
    pub(crate) fn set_phase(&self, phase: Phase) {
        let mut state = self.state();
        if state.phase != phase {
            state.phase = phase;
            if matches!(phase, Phase::Tail(_)) {
                state.since = Instant::now();
            }
        }
    }

    /// Starts over for a resend of the same request on another connection (a stale pooled
    /// connection failed before any response byte): same first-byte clock, fresh socket.
    pub(crate) fn reset_connection(&self) {
        let mut state = self.state();
        state.socket = None;
        state.reused = false;
        state.connected = false;
        state.received = 0;
        state.fired = None;
        state.label = None;
        state.read_error = None;
        state._kill = None;
    }

    /// Binds the socket `id` to this attempt (once): registers its kill switch with the
    /// call's cancel handle and notes whether it is a reused connection.
    pub(crate) fn bind(&self, id: u64, reused: bool, socket: Weak<TcpStream>) {
        let mut state = self.state();
        if state.socket == Some(id) {
            return;
        }
        state.socket = Some(id);
        state.reused = reused;
        // A reused connection is connected already; a new one is marked by the connector.
        state.connected = reused;
        let switch: Weak<dyn KillSwitch> = socket;
        state._kill = Some(self.cancel.register(switch));
    }

    /// Whether a socket serves this attempt.
    pub(crate) fn is_bound(&self) -> bool {
        self.state().socket.is_some()
    }

    pub(crate) fn is_bound_to(&self, id: u64) -> bool {
        self.state().socket == Some(id)
    }

    /// The connection (TCP and any TLS) is established.
    pub(crate) fn mark_connected(&self) {
        let mut state = self.state();
        state.connected = true;
        state.connected_at = Some(Instant::now());
    }

    /// How long this attempt took to open its connection (`None` for a reused one).
    pub(crate) fn connect_time(&self) -> Option<Duration> {
        let state = self.state();
        state
            .connected_at
            .filter(|_| !state.reused)
            .map(|at| at.saturating_duration_since(self.started))
    }

    /// When the attempt started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    pub(crate) fn connected(&self) -> bool {
        self.state().connected
    }

    /// Whether the attempt runs on a pooled connection that had served before.
    pub(crate) fn reused(&self) -> bool {
        self.state().reused
    }

    /// Bytes received so far in this attempt.
    pub(crate) fn received(&self) -> u64 {
        self.state().received
    }

    /// Records that `n` bytes arrived from the socket. Bytes after the headers end the
    /// first-byte phase.
    pub(crate) fn saw_bytes(&self, n: usize) {
        if n > 0 {
            self.body_flows();
        }
    }

    /// Records that `n` bytes of the response (after TLS) reached ureq.
    pub(crate) fn saw_response_bytes(&self, n: usize) {
        self.state().received += n as u64;
    }

    /// Records that body bytes reached the reader (also those that came with the headers).
    pub(crate) fn saw_body(&self) {
        self.body_flows();
    }

    fn body_flows(&self) {
        if self.flowing.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state();
        if state.phase == Phase::FirstBody {
            state.phase = Phase::Body;
            self.flowing.store(true, Ordering::Relaxed);
        }
    }

    /// Records the kind of a failed socket read.
    pub(crate) fn saw_error(&self, kind: std::io::ErrorKind) {
        self.state().read_error = Some(kind);
    }

    /// The kind of the last failed socket read, if any.
    pub(crate) fn read_error(&self) -> Option<std::io::ErrorKind> {
        self.state().read_error
    }

    /// The socket's read buffer filled up with a line that does not end: in the head, a
    /// head larger than the limit; in the body, broken chunked framing (an endless
    /// chunk-size or extension line). Labels the attempt's failure accordingly.
    pub(crate) fn saw_full_buffer(&self) {
        let mut state = self.state();
        state.label = Some(if state.phase == Phase::Head {
            FailureKind::LimitExceeded
        } else {
            FailureKind::Protocol
        });
    }

    /// Labels this attempt's failure (see `State::label`).
    pub(crate) fn label(&self, kind: FailureKind) {
        self.state().label = Some(kind);
    }

    /// The failure label, if a layer set one.
    pub(crate) fn failure_label(&self) -> Option<FailureKind> {
        self.state().label
    }

    /// The read timeout that applies now and what it is called if it passes: the phase's
    /// limit, or the call's deadline if that comes first.
    pub(crate) fn read_limit(&self) -> (Duration, FailureKind, Duration) {
        let state = self.state();
        let (limit, kind) = match state.phase {
            Phase::Head | Phase::FirstBody => {
                (self.limits.first_byte, FailureKind::FirstByteTimeout)
            }
            Phase::Body => (self.limits.idle, FailureKind::IdleTimeout),
            Phase::Tail(limit) => (limit, FailureKind::TimedOut),
        };
        let now = Instant::now();
        let since = match state.phase {
            // Silence is timed from the start of this read, not from the last one.
            Phase::Body => now,
            Phase::Head | Phase::FirstBody => self.started,
            Phase::Tail(_) => state.since,
        };
        let left = since
            .checked_add(limit)
            .map_or(Duration::MAX, |end| end.saturating_duration_since(now));
        match self.deadline {
            Some((end, total)) if end.saturating_duration_since(now) < left => (
                end.saturating_duration_since(now),
                FailureKind::DeadlineExceeded,
                total,
            ),
            _ => (left, kind, limit),
        }
    }

    /// Time left before the call's deadline, if it has one.
    pub(crate) fn deadline_left(&self) -> Option<(Duration, Duration)> {
        self.deadline
            .map(|(end, total)| (end.saturating_duration_since(Instant::now()), total))
    }

    /// Records that a limit ended the attempt (the first one wins).
    pub(crate) fn fire(&self, kind: FailureKind, limit: Duration) {
        let mut state = self.state();
        if state.fired.is_none() {
            log::debug!("{kind} after {} ms", limit.as_millis());
            state.fired = Some((kind, limit));
        }
    }

    /// Why the attempt was interrupted, if a limit or a cancel did it.
    pub(crate) fn interrupted(&self) -> Option<(FailureKind, Duration)> {
        if self.cancel.is_cancelled() {
            return Some((FailureKind::Cancelled, Duration::ZERO));
        }
        self.state().fired
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<AttemptIo>>> = const { RefCell::new(None) };
}

/// Makes `io` the current attempt of this thread until the guard drops.
pub(crate) fn enter(io: &Arc<AttemptIo>) -> Entered {
    let previous = CURRENT.with(|c| c.replace(Some(Arc::clone(io))));
    Entered { previous }
}

/// Restores the previous current attempt when dropped.
pub(crate) struct Entered {
    previous: Option<Arc<AttemptIo>>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The attempt current on this thread, if any.
pub(crate) fn current() -> Option<Arc<AttemptIo>> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(300),
            idle: Duration::from_secs(60),
            drain: Duration::from_millis(250),
        }
    }

    #[test]
    fn phases_pick_their_limit_and_the_deadline_wins_when_sooner() {
        let io = AttemptIo::new(&CancelHandle::new(), limits(), None);
        let (left, kind, limit) = io.read_limit();
        assert_eq!(
            (kind, limit),
            (FailureKind::FirstByteTimeout, limits().first_byte)
        );
        assert!(left <= limit && left > Duration::from_secs(299));
        // Header bytes do not end the first-byte phase; bytes after the headers do.
        io.saw_bytes(100);
        assert_eq!(io.read_limit().1, FailureKind::FirstByteTimeout);
        io.set_phase(Phase::FirstBody);
        assert_eq!(io.read_limit().1, FailureKind::FirstByteTimeout);
        io.saw_bytes(1);
        assert_eq!(io.read_limit().1, FailureKind::IdleTimeout);
        // Each body read may wait the whole idle limit, however long ago the last one was.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(io.read_limit().0, limits().idle);
        io.set_phase(Phase::Tail(Duration::from_millis(250)));
        assert_eq!(io.read_limit().1, FailureKind::TimedOut);
        // Socket bytes (TLS records included) are not response bytes.
        assert_eq!(io.received(), 0);
        io.saw_response_bytes(17);
        assert_eq!(io.received(), 17);

        let total = Duration::from_secs(5);
        let io = AttemptIo::new(
            &CancelHandle::new(),
            limits(),
            Some((Instant::now() + total, total)),
        );
        let (left, kind, limit) = io.read_limit();
        assert_eq!((kind, limit), (FailureKind::DeadlineExceeded, total));
        assert!(left <= total);
    }

    #[test]
    fn current_attempt_nests_and_restores() {
        assert!(current().is_none());
        let a = AttemptIo::new(&CancelHandle::new(), limits(), None);
        let b = AttemptIo::new(&CancelHandle::new(), limits(), None);
        {
            let _a = enter(&a);
            assert!(current().is_some_and(|c| Arc::ptr_eq(&c, &a)));
            {
                let _b = enter(&b);
                assert!(current().is_some_and(|c| Arc::ptr_eq(&c, &b)));
            }
            assert!(current().is_some_and(|c| Arc::ptr_eq(&c, &a)));
        }
        assert!(current().is_none());
    }

    #[test]
    fn first_fired_limit_wins_and_cancel_reads_as_interrupt() {
        let cancel = CancelHandle::new();
        let io = AttemptIo::new(&cancel, limits(), None);
        assert_eq!(io.interrupted(), None);
        io.fire(FailureKind::IdleTimeout, Duration::from_secs(60));
        io.fire(FailureKind::DeadlineExceeded, Duration::from_secs(1));
        assert_eq!(
            io.interrupted(),
            Some((FailureKind::IdleTimeout, Duration::from_secs(60)))
        );
        cancel.cancel();
        assert_eq!(io.interrupted().map(|f| f.0), Some(FailureKind::Cancelled));
    }
}
