//! Opening TCP connections: name resolution and connect, off the caller's thread.
//!
//! std offers only a blocking connect (and a blocking `getaddrinfo`), which nothing can
//! interrupt. So a connect runs on a worker thread while the caller waits on its call's
//! cancel handle, and a cancel or the call's deadline returns control at once; the abandoned
//! connect finishes on its own within the connect timeout and its socket is dropped.
//! Workers belong to one client (shared by its clones), are reused for every connect, and
//! exit after a minute with nothing to do: with keep-alive, a busy client opens a connection
//! rarely and starts no thread per call.
//!
//! Names are resolved on the worker too, except those that need no lookup: IP literals,
//! `localhost` (RFC 6761 §6.3: loopback), the client's pinned addresses, and `.invalid`
//! (RFC 6761 §6.4: fails at once, without asking a DNS server).

use crate::cancel::CancelHandle;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// A worker with no connect to do for this long exits.
const WORKER_IDLE: Duration = Duration::from_secs(60);
/// No address gets less than this share of the connect timeout.
const MIN_PER_ADDRESS: Duration = Duration::from_millis(10);

/// Where to connect: a host name or address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
}

/// Why a connect did not produce a socket.
#[derive(Debug)]
pub(crate) enum DialError {
    /// The call was cancelled while connecting.
    Cancelled,
    /// The connect timeout passed (or the call's deadline, whichever the caller gave).
    TimedOut,
    /// The name did not resolve.
    Dns(io::Error),
    /// Every address refused or failed.
    Connect(io::Error),
}

/// Opens connections for one client. Cheap to share: clones of a client share one.
#[derive(Debug, Default)]
pub(crate) struct Dialer {
    /// Idle workers, each waiting on the receiving end of its sender.
    idle: Arc<Mutex<Vec<Sender<Job>>>>,
    /// Host names pinned to addresses (`ClientBuilder::resolve`).
    pinned: Vec<(String, Vec<IpAddr>)>,
}

struct Job {
    target: Target,
    pinned: Option<Vec<SocketAddr>>,
    timeout: Duration,
    done: Arc<Done>,
}

/// Where a worker leaves its result; the waiting caller is woken through its cancel handle.
struct Done {
    result: Mutex<Option<Result<TcpStream, DialError>>>,
    wake: CancelHandle,
}

impl Done {
    fn take(&self) -> Option<Result<TcpStream, DialError>> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Dialer {
    pub(crate) fn new(pinned: Vec<(String, Vec<IpAddr>)>) -> Self {
        Self {
            idle: Arc::default(),
            pinned,
        }
    }

    /// Connects to `target` within `timeout`, giving up early when `cancel` fires or
    /// `until` passes (the call's deadline).
    pub(crate) fn dial(
        &self,
        target: &Target,
        timeout: Duration,
        cancel: &CancelHandle,
        until: Option<Instant>,
    ) -> Result<TcpStream, DialError> {
        let pinned = self
            .pinned
            .iter()
            .find(|(host, _)| host.eq_ignore_ascii_case(&target.host))
            .map(|(_, ips)| {
                ips.iter()
                    .map(|ip| SocketAddr::new(*ip, target.port))
                    .collect()
            });
        let done = Arc::new(Done {
            result: Mutex::new(None),
            wake: cancel.clone(),
        });
        self.hand_over(Job {
            target: target.clone(),
            pinned,
            timeout,
            done: Arc::clone(&done),
        })?;
        let end = Instant::now().checked_add(timeout);
        let until = match (end, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut result = None;
        cancel.wait_until(until, || {
            result = done.take();
            result.is_some()
        });
        match result {
            Some(result) => result,
            None if cancel.is_cancelled() => Err(DialError::Cancelled),
            None => Err(DialError::TimedOut),
        }
    }

    /// Gives the job to an idle worker, or to a new one.
    fn hand_over(&self, mut job: Job) -> Result<(), DialError> {
        loop {
            let Some(worker) = lock(&self.idle).pop() else {
                break;
            };
            match worker.send(job) {
                Ok(()) => return Ok(()),
                // That worker exited after idling; try the next.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        let (tx, rx) = mpsc::channel();
        let idle = Arc::downgrade(&self.idle);
        let worker_tx = tx.clone();
        thread::Builder::new()
            .name("oai-sse-connect".into())
            .spawn(move || work(&rx, &worker_tx, &idle))
            .map_err(DialError::Connect)?;
        tx.send(job)
            .map_err(|_| DialError::Connect(io::Error::other("connect worker exited")))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A worker's life: connect, offer itself again, report; exit when idle or orphaned. It is
/// back in the idle list before the caller learns the result, so a caller that connects
/// again at once finds it there.
fn work(jobs: &Receiver<Job>, me: &Sender<Job>, idle: &Weak<Mutex<Vec<Sender<Job>>>>) {
    while let Ok(job) = jobs.recv_timeout(WORKER_IDLE) {
        let result = connect(&job.target, job.pinned.as_deref(), job.timeout);
        let orphaned = match idle.upgrade() {
            Some(list) => {
                lock(&list).push(me.clone());
                false
            }
            None => true,
        };
        *lock(&job.done.result) = Some(result);
        job.done.wake.notify();
        if orphaned {
            return;
        }
    }
}

/// The addresses of `target` that need no lookup, if any: `Err` for names that must fail.
pub(crate) fn known_addresses(target: &Target) -> Option<Result<Vec<SocketAddr>, io::Error>> {
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Ok(vec![SocketAddr::new(ip, target.port)]));
    }
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Some(Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), target.port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), target.port),
        ]));
    }
    if lower == "invalid" || lower.ends_with(".invalid") {
        let msg = format!("{host}: names under .invalid never resolve (RFC 6761)");
        return Some(Err(io::Error::new(io::ErrorKind::NotFound, msg)));
    }
    None
}

/// Resolves and connects, trying each address with a share of the timeout.
fn connect(
    target: &Target,
    pinned: Option<&[SocketAddr]>,
    timeout: Duration,
) -> Result<TcpStream, DialError> {
    let addrs = match (pinned, known_addresses(target)) {
        (Some(pinned), _) => pinned.to_vec(),
        (None, Some(known)) => known.map_err(DialError::Dns)?,
        (None, None) => (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(DialError::Dns)?,
    };
    if addrs.is_empty() {
        let msg = format!("{}: no addresses", target.host);
        return Err(DialError::Dns(io::Error::new(io::ErrorKind::NotFound, msg)));
    }
    let start = Instant::now();
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        // The first addresses get half of what is left, the last all of it: a dead first
        // address (an IPv6 route that blackholes) still leaves time for the next.
        let share = if i + 1 == addrs.len() {
            left
        } else {
            (left / 2).max(MIN_PER_ADDRESS).min(left)
        };
        match TcpStream::connect_timeout(addr, share) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => {
                log::debug!("connect to {addr} failed: {err}");
                last = Some(err);
            }
        }
    }
    match last {
        Some(err)
            if !matches!(
                err.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Err(DialError::Connect(err))
        }
        _ => Err(DialError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn names_that_need_no_lookup() {
        let v4 = SocketAddr::from(([127, 0, 0, 1], 80));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 80));
        // (host, addresses; `Some(Err(()))`: fails without a lookup; `None`: needs one)
        type Known = Option<Result<Vec<SocketAddr>, ()>>;
        let table: Vec<(&str, Known)> = vec![
            ("127.0.0.1", Some(Ok(vec![v4]))),
            ("[::1]", Some(Ok(vec![v6]))),
            ("localhost", Some(Ok(vec![v4, v6]))),
            ("LocalHost.", Some(Ok(vec![v4, v6]))),
            ("api.localhost", Some(Ok(vec![v4, v6]))),
            ("nothing.invalid", Some(Err(()))),
            ("example.com", None),
        ];
        for (host, want) in table {
            let got = known_addresses(&target(host, 80)).map(|r| r.map_err(|_| ()));
            assert_eq!(got, want, "{host}");
        }
    }

    #[test]
    fn dials_reuse_one_worker_and_report_refusals() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let dialer = Dialer::default();
        let cancel = CancelHandle::new();
        for _ in 0..5 {
            let stream = dialer.dial(
                &target("127.0.0.1", port),
                Duration::from_secs(5),
                &cancel,
                None,
            );
            assert!(stream.is_ok(), "{stream:?}");
        }
        assert_eq!(
            lock(&dialer.idle).len(),
            1,
            "one worker serves sequential connects"
        );
        drop(listener);
        let refused = dialer.dial(
            &target("127.0.0.1", port),
            Duration::from_secs(5),
            &cancel,
            None,
        );
        assert!(
            matches!(&refused, Err(DialError::Connect(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{refused:?}"
        );
        let dns = dialer.dial(
            &target("x.invalid", 80),
            Duration::from_secs(5),
            &cancel,
            None,
        );
        assert!(matches!(dns, Err(DialError::Dns(_))), "{dns:?}");
    }

    #[test]
    fn pinned_names_go_to_their_addresses() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let dialer = Dialer::new(vec![("api.example.com".into(), vec![addr.ip()])]);
        let stream = dialer.dial(
            &target("API.example.com", addr.port()),
            Duration::from_secs(5),
            &CancelHandle::new(),
            None,
        );
        assert!(stream.is_ok(), "{stream:?}");
    }
}
