//! Opening TCP connections: name resolution and connect, off the caller's thread.
//!
//! std offers only a blocking connect (and a blocking `getaddrinfo`), which nothing can
//! interrupt. So a connect runs on a worker thread while the caller waits on its call's
//! cancel handle, and a cancel or the call's deadline returns control at once.
//!
//! No call leaves a thread behind it:
//!
//! - A worker's connect gives up when its caller would: at the nearer of the connect timeout
//!   and the call's deadline (`TcpStream::connect_timeout` with the time left), so a call
//!   that ran out of time frees its worker as it returns. A job whose caller stopped waiting
//!   before a worker took it is dropped unstarted.
//! - A client (shared by its clones) runs at most [`MAX_WORKERS`] workers. They are reused
//!   for every connect and exit after [`WORKER_IDLE`] with nothing to do, or as soon as the
//!   client is dropped: with keep-alive, a busy client opens a connection rarely and starts
//!   no thread per call. Beyond the cap a connect waits in a queue for a worker, within its
//!   own connect timeout, deadline and cancel (a burst of connects to a live host is served
//!   in turn; failing it fast would fail calls that a moment's wait serves).
//! - What std cannot bound: a cancelled call with time left abandons a connect that keeps
//!   its worker until the connect timeout (or deadline) ends, and a name lookup runs as
//!   long as the system resolver takes. The cap bounds how many threads that holds.
//!
//! Names are resolved on the worker too, except those that need no lookup: IP literals,
//! `localhost` (RFC 6761 §6.3: loopback), the client's pinned addresses, and `.invalid`
//! (RFC 6761 §6.4: fails at once, without asking a DNS server).

use crate::cancel::CancelHandle;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// A worker with no connect to do for this long exits.
const WORKER_IDLE: Duration = Duration::from_secs(60);
/// Most connect workers one client runs at once; further connects wait for one.
const MAX_WORKERS: usize = 8;
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

/// Opens connections for one client. Cheap to share: clones of a client share one. Dropping
/// it sends its idle workers away.
#[derive(Debug)]
pub(crate) struct Dialer {
    pool: Arc<Pool>,
    /// Host names pinned to addresses (`ClientBuilder::resolve`).
    pinned: Vec<(String, Vec<IpAddr>)>,
}

/// The jobs and the workers that run them.
#[derive(Debug, Default)]
struct Pool {
    state: Mutex<PoolState>,
    /// Wakes an idle worker for a job, or all of them when the dialer is dropped.
    work: Condvar,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Jobs no worker has taken yet, oldest first.
    queue: VecDeque<Job>,
    /// Workers alive, at most [`MAX_WORKERS`].
    workers: usize,
    /// Workers not running a job (waiting for one, or about to look for one).
    idle: usize,
    /// The dialer is gone: workers exit.
    closed: bool,
    /// The most workers alive at once.
    #[cfg(test)]
    peak: usize,
}

struct Job {
    target: Target,
    pinned: Option<Vec<SocketAddr>>,
    /// The connect gives up here: the nearer of the connect timeout and the call's deadline
    /// (`None`: neither is set).
    until: Option<Instant>,
    done: Arc<Done>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("target", &self.target)
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

/// Where a worker leaves its result; the waiting caller is woken through its cancel handle.
struct Done {
    result: Mutex<Option<Result<TcpStream, DialError>>>,
    wake: CancelHandle,
    /// A worker took the job.
    started: AtomicBool,
    /// The caller stopped waiting: a worker that has not started the job drops it.
    abandoned: AtomicBool,
}

impl Done {
    fn new(wake: &CancelHandle) -> Self {
        Self {
            result: Mutex::new(None),
            wake: wake.clone(),
            started: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
        }
    }

    fn take(&self) -> Option<Result<TcpStream, DialError>> {
        self.result
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Default for Dialer {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Drop for Dialer {
    fn drop(&mut self) {
        // No caller is waiting (a dial borrows the dialer): queued jobs have nobody to tell.
        let mut state = lock(&self.pool.state);
        state.closed = true;
        state.queue.clear();
        drop(state);
        self.pool.work.notify_all();
    }
}

impl Dialer {
    pub(crate) fn new(pinned: Vec<(String, Vec<IpAddr>)>) -> Self {
        Self {
            pool: Arc::default(),
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
        let end = Instant::now().checked_add(timeout);
        let until = match (end, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let done = Arc::new(Done::new(cancel));
        self.submit(Job {
            target: target.clone(),
            pinned,
            until,
            done: Arc::clone(&done),
        })?;
        let mut result = None;
        cancel.wait_until(until, || {
            result = done.take();
            result.is_some()
        });
        if let Some(result) = result {
            return result;
        }
        done.abandoned.store(true, Ordering::SeqCst);
        if !done.started.load(Ordering::SeqCst) {
            log::debug!(
                "connect to {}:{} gave up waiting for a connect worker ({MAX_WORKERS} busy)",
                target.host,
                target.port
            );
        }
        if cancel.is_cancelled() {
            Err(DialError::Cancelled)
        } else {
            Err(DialError::TimedOut)
        }
    }

    /// Queues the job and makes sure a worker will take it: an idle one, or a new one while
    /// there are fewer than [`MAX_WORKERS`]; otherwise it waits for a busy one.
    fn submit(&self, job: Job) -> Result<(), DialError> {
        let mut state = lock(&self.pool.state);
        state.queue.push_back(job);
        if state.idle >= state.queue.len() || state.workers >= MAX_WORKERS {
            drop(state);
            self.pool.work.notify_one();
            return Ok(());
        }
        let pool = Arc::clone(&self.pool);
        let spawned = thread::Builder::new()
            .name("oai-sse-connect".into())
            .spawn(move || work(&pool));
        match spawned {
            Ok(_) => {
                state.workers += 1;
                #[cfg(test)]
                {
                    state.peak = state.peak.max(state.workers);
                }
                Ok(())
            }
            // With a worker alive the job waits for it; with none, nobody would take it.
            Err(err) if state.workers > 0 => {
                log::debug!("cannot start a connect worker ({err}); the connect waits for one");
                Ok(())
            }
            Err(err) => {
                state.queue.pop_back();
                Err(DialError::Connect(err))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A worker's life: take the oldest job, connect, report; exit when idle for
/// [`WORKER_IDLE`] or when the dialer is gone. It counts itself idle again before the caller
/// learns the result, so a caller that connects again at once is not given a new worker.
fn work(pool: &Pool) {
    let mut state = lock(&pool.state);
    state.idle += 1;
    let mut idle_since = Instant::now();
    loop {
        if state.closed {
            break;
        }
        let Some(job) = state.queue.pop_front() else {
            let waited = idle_since.elapsed();
            if waited >= WORKER_IDLE {
                break;
            }
            state = pool
                .work
                .wait_timeout(state, WORKER_IDLE - waited)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        };
        state.idle -= 1;
        drop(state);
        let done = &job.done;
        let result = (!done.abandoned.load(Ordering::SeqCst)).then(|| {
            done.started.store(true, Ordering::SeqCst);
            connect(&job.target, job.pinned.as_deref(), job.until)
        });
        state = lock(&pool.state);
        state.idle += 1;
        idle_since = Instant::now();
        if let Some(result) = result {
            drop(state);
            *lock(&done.result) = Some(result);
            done.wake.notify();
            state = lock(&pool.state);
        }
    }
    state.idle -= 1;
    state.workers -= 1;
    drop(state);
    // For whoever waits for the workers to go (the tests); idle workers just wait again.
    pool.work.notify_all();
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

/// Resolves and connects, trying each address with a share of the time left until `until`
/// (no limit when `None`).
fn connect(
    target: &Target,
    pinned: Option<&[SocketAddr]>,
    until: Option<Instant>,
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
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = until.map_or(Duration::MAX, |u| {
            u.saturating_duration_since(Instant::now())
        });
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
        let state = lock(&dialer.pool.state);
        assert_eq!(
            (state.peak, state.workers),
            (1, 1),
            "one worker serves sequential connects"
        );
        drop(state);
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

    /// A loopback listener whose accept queue is full and never drained: a connect to it
    /// hangs (Linux drops the SYN of a connection that does not fit), like a dead host's.
    /// The sockets that fill the queue live as long as the listener.
    #[cfg(target_os = "linux")]
    fn black_hole() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        listener.bind(&any.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet");
        let mut fill = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fill.push(s),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return (listener, fill, addr),
                Err(e) => panic!("filling the accept queue: {e}"),
            }
        }
        panic!("the accept queue of a listen(0) socket never filled");
    }

    /// The worker's connect ends when the caller's time does, not at the connect timeout.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_connect_gives_up_when_its_time_is_up() {
        let (_listener, _fill, addr) = black_hole();
        let target = target("127.0.0.1", addr.port());
        let start = Instant::now();
        let until = start + Duration::from_millis(50);
        let result = connect(&target, None, Some(until));
        let took = start.elapsed();
        assert!(matches!(result, Err(DialError::TimedOut)), "{result:?}");
        assert!(
            took >= Duration::from_millis(45) && took < Duration::from_secs(1),
            "gave up after {took:?}"
        );
        let expired = connect(&target, None, Some(start));
        assert!(matches!(expired, Err(DialError::TimedOut)), "{expired:?}");
    }

    /// More connects at once than the cap: no more than [`MAX_WORKERS`] threads, the rest wait
    /// in the queue; a connect whose caller gave up while it waited is never made; dropping
    /// the dialer sends the workers away.
    #[cfg(target_os = "linux")]
    #[test]
    fn workers_are_capped_and_abandoned_jobs_are_not_started() {
        let (_hole, _fill, hole) = black_hole();
        let live = TcpListener::bind("127.0.0.1:0").expect("bind");
        live.set_nonblocking(true).expect("nonblocking");
        let live_port = live.local_addr().expect("addr").port();
        let dialer = Dialer::default();
        // Hung connects queued before the next: every worker is taken by one for 300 ms.
        let hung = CancelHandle::new();
        let jobs: Vec<Arc<Done>> = (0..MAX_WORKERS + 3)
            .map(|_| {
                let done = Arc::new(Done::new(&hung));
                let job = Job {
                    target: target("127.0.0.1", hole.port()),
                    pinned: None,
                    until: Some(Instant::now() + Duration::from_millis(300)),
                    done: Arc::clone(&done),
                };
                dialer.submit(job).expect("submit");
                done
            })
            .collect();
        // So these wait in the queue: one past its deadline, one cancelled with time left.
        // Each is dropped unstarted when a worker comes to it.
        let queued = dialer.dial(
            &target("127.0.0.1", live_port),
            Duration::from_secs(10),
            &CancelHandle::new(),
            Some(Instant::now() + Duration::from_millis(20)),
        );
        assert!(matches!(queued, Err(DialError::TimedOut)), "{queued:?}");
        // A handle cancelled already: the dial queues its job and gives up at once.
        let cancel = CancelHandle::new();
        cancel.cancel();
        let t = target("127.0.0.1", live_port);
        let cancelled = dialer.dial(&t, Duration::from_secs(10), &cancel, None);
        assert!(
            matches!(cancelled, Err(DialError::Cancelled)),
            "{cancelled:?}"
        );
        let mut results = Vec::new();
        let all = hung.wait_until(Some(Instant::now() + Duration::from_secs(10)), || {
            results.extend(jobs.iter().filter_map(|d| d.take()));
            results.len() == jobs.len()
        });
        assert!(
            all,
            "{} of {} hung connects ended",
            results.len(),
            jobs.len()
        );
        for result in &results {
            assert!(matches!(result, Err(DialError::TimedOut)), "{result:?}");
        }
        // The queue is served in order: once this connect is made, the abandoned ones were
        // taken (and dropped) before it.
        let stream = dialer.dial(
            &target("127.0.0.1", live_port),
            Duration::from_secs(10),
            &CancelHandle::new(),
            None,
        );
        assert!(stream.is_ok(), "{stream:?}");
        assert!(live.accept().is_ok(), "the last connect");
        let extra = live.accept().map(|_| ());
        assert!(
            matches!(&extra, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the abandoned connect was made: {extra:?}"
        );
        let state = lock(&dialer.pool.state);
        assert_eq!((state.peak, state.workers), (MAX_WORKERS, MAX_WORKERS));
        drop(state);

        let pool = Arc::clone(&dialer.pool);
        drop(dialer);
        // The workers are idle: told to go, they leave at once.
        let gone = Instant::now() + Duration::from_secs(5);
        let mut state = lock(&pool.state);
        while state.workers > 0 {
            let left = gone.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} workers left after the dialer went",
                state.workers
            );
            state = pool
                .work
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
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
