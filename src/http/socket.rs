//! The bottom of ureq's connector chain: our TCP connector and socket transport.
//!
//! The connector opens sockets through the client's [`Dialer`] (cancellable, no resolver
//! thread). The socket transport does every read and write under the current attempt's
//! limits (see [`super::attempt`]): before each read it sets the socket's read timeout to
//! the nearer of ureq's own timeout and the attempt's phase limit (first byte, idle, drain,
//! or the call's deadline), so timeouts need no watchdog thread; and it binds itself to the
//! attempt as its kill switch, so a cancel shuts this socket — only this one — down.
//!
//! ureq's connector API is semver-exempt: see [`super::unversioned`] for why, the pin and
//! what to check on a new minor.

use super::attempt::{self, AttemptIo};
use super::dial::{DialError, Dialer, Target};
use super::unversioned::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
};
use crate::retry::FailureKind;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Opens plain TCP sockets for ureq through the client's dialer.
#[derive(Debug)]
pub(crate) struct SocketConnector {
    pub dialer: Arc<Dialer>,
}

impl<In: Transport> Connector<In> for SocketConnector {
    type Out = Either<In, Socket>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(chained) = chained {
            // A proxy tunnel already carries this connection.
            return Ok(Some(Either::A(chained)));
        }
        let uri = details.uri;
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let target = Target {
            host: host.to_owned(),
            port,
        };
        let io = attempt::current();
        let timeout = ureq_duration(details.timeout).unwrap_or(Duration::MAX);
        let cancel = io
            .as_ref()
            .map(|io| io.cancel().clone())
            .unwrap_or_default();
        let deadline = io.as_ref().and_then(|io| io.deadline_left());
        let until = deadline.and_then(|(left, _)| std::time::Instant::now().checked_add(left));
        log::debug!("connecting to {host}:{port}");
        let stream = match self.dialer.dial(&target, timeout, &cancel, until) {
            Ok(stream) => stream,
            Err(err) => return Err(dial_failure(err, io.as_deref(), deadline)),
        };
        let config = details.config;
        let mut socket = Socket::new(
            stream,
            LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        );
        if let Some(io) = &io {
            // Register the kill switch before any TLS handshake runs on the socket.
            socket.bind(io);
        }
        Ok(Some(Either::B(socket)))
    }
}

/// Labels a failed dial on the attempt, and gives ureq an error to carry it up.
fn dial_failure(
    err: DialError,
    io: Option<&AttemptIo>,
    deadline: Option<(Duration, Duration)>,
) -> ureq::Error {
    match err {
        DialError::Cancelled => {
            ureq::Error::Io(io::Error::new(io::ErrorKind::Interrupted, "cancelled"))
        }
        DialError::TimedOut => {
            if let (Some(io), Some((left, total))) = (io, deadline) {
                if left <= io.limits().connect {
                    io.fire(FailureKind::DeadlineExceeded, total);
                }
            }
            ureq::Error::Timeout(ureq::Timeout::Connect)
        }
        DialError::Dns(err) => {
            if let Some(io) = io {
                io.label(FailureKind::Dns);
            }
            ureq::Error::Io(err)
        }
        DialError::Connect(err) => ureq::Error::Io(err),
    }
}

/// Marks the attempt connected once the whole chain (TCP, proxy tunnel, TLS) is up, so a
/// failure before that is labelled by where it happened; and wraps the connection in
/// [`HttpBytes`].
#[derive(Debug)]
pub(crate) struct MarkConnected;

impl<In: Transport> Connector<In> for MarkConnected {
    type Out = HttpBytes<In>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(io) = attempt::current() {
            io.mark_connected();
        }
        Ok(chained.map(|inner| HttpBytes { inner }))
    }
}

/// The top of the chain: counts the bytes of the HTTP response that reach ureq (plain text,
/// after TLS), so "no byte of the response arrived" means just that. The socket below also
/// sees TLS records that carry no response: a `close_notify` from a server closing an idle
/// connection, or session tickets.
#[derive(Debug)]
pub(crate) struct HttpBytes<T> {
    inner: T,
}

impl<T: Transport> Transport for HttpBytes<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let before = self.inner.buffers().input().len();
        let progress = self.inner.await_input(timeout)?;
        let after = self.inner.buffers().input().len();
        if after > before {
            if let Some(io) = attempt::current() {
                io.saw_response_bytes(after - before);
            }
        }
        Ok(progress)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// Unique ids for sockets, so an attempt knows whether it is bound to this one.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// A TCP connection as ureq's transport, doing I/O under the current attempt's limits.
pub(crate) struct Socket {
    /// Shared (weakly) with the attempt's kill switch.
    stream: Arc<TcpStream>,
    id: u64,
    buffers: LazyBuffers,
    /// Attempts this socket has served (the first one opened it).
    served: u64,
    /// The timeouts currently set on the socket, to skip redundant system calls.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("peer", &self.stream.peer_addr().ok())
            .field("served", &self.served)
            .finish()
    }
}

impl Socket {
    fn new(stream: TcpStream, buffers: LazyBuffers) -> Self {
        Self {
            stream: Arc::new(stream),
            id: NEXT_SOCKET.fetch_add(1, Ordering::Relaxed),
            buffers,
            served: 0,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Binds this socket to `io` if it is not yet (the first I/O of an attempt): the
    /// attempt learns whether the connection served before, and can kill it.
    fn bind(&mut self, io: &AttemptIo) {
        if !io.is_bound_to(self.id) {
            io.bind(self.id, self.served > 0, Arc::downgrade(&self.stream));
            self.served += 1;
        }
    }

    /// The current attempt, bound to this socket.
    fn attempt(&mut self) -> Option<Arc<AttemptIo>> {
        let io = attempt::current()?;
        self.bind(&io);
        Some(io)
    }

    /// How long the next I/O may block: ureq's limit or the attempt's, whichever is nearer,
    /// and, if the attempt's, what to call it when it passes.
    fn limit(
        io: Option<&AttemptIo>,
        theirs: NextTimeout,
    ) -> (Option<Duration>, Option<(FailureKind, Duration)>) {
        let theirs = ureq_duration(theirs);
        let Some(io) = io else {
            return (theirs, None);
        };
        let (left, kind, limit) = io.read_limit();
        match theirs {
            Some(theirs) if theirs <= left => (Some(theirs), None),
            _ => (Some(left), Some((kind, limit))),
        }
    }
}

/// ureq's remaining time as a std duration (`None`: no limit).
fn ureq_duration(timeout: NextTimeout) -> Option<Duration> {
    timeout.not_zero().map(|d| *d).or_else(|| {
        // `not_zero` is `None` both for "no limit" and for "no time left".
        timeout.after.is_zero().then_some(Duration::ZERO)
    })
}

/// Sets a socket timeout if it changed. A zero timeout is not allowed: the caller handles
/// "no time left" before doing I/O. Timeouts are rounded up to whole milliseconds: the time
/// left under the first-byte limit or a deadline is a few microseconds less at each read,
/// and rounded it matches the timeout already set, so a read costs no extra system call.
fn update(
    cache: &mut Option<Duration>,
    want: Option<Duration>,
    set: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let want = want.map(whole_ms);
    if *cache != want {
        set(want)?;
        *cache = want;
    }
    Ok(())
}

/// `d` rounded up to whole milliseconds, at least one.
fn whole_ms(d: Duration) -> Duration {
    let ms = d
        .as_millis()
        .saturating_add(u128::from(d.subsec_nanos() % 1_000_000 != 0));
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)).max(Duration::from_millis(1))
}

fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

impl Transport for Socket {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let io = self.attempt();
        let (wait, ours) = Self::limit(io.as_deref(), timeout.for_write());
        let out_of_time = || match (ours, &io) {
            (Some((kind, limit)), Some(io)) => {
                io.fire(kind, limit);
                ureq::Error::Timeout(ureq::Timeout::PerWrite)
            }
            _ => ureq::Error::Timeout(timeout.reason),
        };
        if wait.is_some_and(|w| w.is_zero()) {
            return Err(out_of_time());
        }
        let stream = &*self.stream;
        update(&mut self.write_timeout, wait, |d| {
            stream.set_write_timeout(d)
        })?;
        let output = self.buffers.output().get(..amount).unwrap_or_default();
        match (&*self.stream).write_all(output) {
            Ok(()) => Ok(()),
            Err(err) if timed_out(&err) => Err(out_of_time()),
            Err(err) => Err(ureq::Error::Io(err)),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let io = self.attempt();
        loop {
            let (wait, ours) = Self::limit(io.as_deref(), timeout.for_read());
            let out_of_time = || match (ours, &io) {
                (Some((kind, limit)), Some(io)) => {
                    io.fire(kind, limit);
                    ureq::Error::Timeout(ureq::Timeout::PerRead)
                }
                _ => ureq::Error::Timeout(timeout.reason),
            };
            if wait.is_some_and(|w| w.is_zero()) {
                return Err(out_of_time());
            }
            let stream = &*self.stream;
            update(&mut self.read_timeout, wait, |d| stream.set_read_timeout(d))?;
            let input = self.buffers.input_append_buf();
            if input.is_empty() {
                // The read buffer is full of bytes ureq cannot use: a line of the response
                // head or of the chunked framing longer than the buffer. ureq reports it as
                // a stalled body (as it does a connection cut in the framing); the label
                // tells the two apart.
                if let Some(io) = &io {
                    io.saw_full_buffer();
                }
                return Ok(false);
            }
            match (&*self.stream).read(input) {
                Ok(n) => {
                    self.buffers.input_appended(n);
                    if let Some(io) = &io {
                        io.saw_bytes(n);
                    }
                    return Ok(n > 0);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if timed_out(&err) => return Err(out_of_time()),
                Err(err) => {
                    if let Some(io) = &io {
                        io.saw_error(err.kind());
                    }
                    return Err(ureq::Error::Io(err));
                }
            }
        }
    }

    fn is_open(&mut self) -> bool {
        // Non-blocking peek: a pooled connection the server closed reads EOF (or an error);
        // one that sent bytes nobody asked for is not safe to reuse either.
        let stream = &*self.stream;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open =
            matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        open && stream.set_nonblocking(false).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        let table = [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_micros(1500), 2),
            (Duration::from_millis(250), 250),
            (Duration::from_secs(60) - Duration::from_micros(7), 60_000),
        ];
        for (d, want) in table {
            assert_eq!(whole_ms(d), Duration::from_millis(want), "{d:?}");
        }
        assert!(whole_ms(Duration::MAX) >= Duration::from_secs(u64::MAX / 1000));
    }
}
