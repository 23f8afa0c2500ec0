//! The transport under load and under faults, over loopback: one keep-alive pool per client
//! (clones share it), stale pooled connections resent invisibly, no thread per call, cancel
//! within 100 ms in every phase (a blocked read, a backoff sleep, a connect), connections of
//! interrupted calls never reused, a completed stream drained so its connection is pooled,
//! exact failure kinds for DNS and TLS, and TLS trust (given roots, `SSL_CERT_FILE`) against
//! a TLS proxy whose CA each test makes (tests/common/tls.rs).
#![cfg(feature = "mock")]

mod common;
#[cfg(feature = "tls")]
#[path = "common/tls.rs"]
mod tls;

use common::*;
use oai_sse::mock::{FaultRule, MockServer, Replies, Script};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    CallOptions, CancelHandle, ChatRequest, Client, ClientBuilder, Error, FailureKind, Message,
    ProxyConfig, StreamEvent,
};
use std::ops::ControlFlow;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TEXT: &str = "Hello there, pooled world";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short, jitter-free backoff; restart, not resume (so no `DELETE` muddies the connection
/// counts).
fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(ms(10))
        .max_delay(ms(50))
        .jitter(0.0)
        .resume(false)
}

fn builder(base_url: &str) -> ClientBuilder {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .roots_from_env(false)
        .retry_policy(fast_policy())
        .connect_timeout(Duration::from_secs(5))
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10))
}

fn client(base_url: &str) -> Client {
    builder(base_url).build().expect("client")
}

fn request() -> ChatRequest {
    ChatRequest::new("mock-model", vec![Message::user("hi")])
}

fn spec(s: &str) -> FaultRule {
    s.parse().expect("fault spec")
}

fn mock(script: Script) -> MockServer {
    MockServer::start(script).expect("mock server")
}

/// The connection each chat request arrived on, in order.
fn chat_connections(server: &MockServer) -> Vec<u64> {
    server
        .chat_requests()
        .iter()
        .map(|r| r.connection)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// One pool per client
// ---------------------------------------------------------------------------------------------

#[test]
fn two_hundred_sequential_calls_use_at_most_two_connections() {
    let server = mock(Script::new().text(TEXT));
    let client = client(&server.base_url());
    for i in 0..200 {
        let response = client
            .chat(&request())
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(response.content(), TEXT, "call {i}");
        assert!(
            response.retries.is_empty(),
            "call {i}: {:?}",
            response.retries
        );
    }
    assert_eq!(server.chat_request_count(), 200);
    let connections = server.connection_count();
    assert!(connections <= 2, "{connections} connections for 200 calls");
}

#[test]
fn clones_share_the_pool_and_separately_built_clients_do_not() {
    let server = mock(Script::new().text(TEXT));
    let url = server.base_url();
    let original = client(&url);
    let clones: Vec<Client> = (0..4).map(|_| original.clone()).collect();
    for _ in 0..10 {
        for c in &clones {
            assert_eq!(c.chat(&request()).expect("call").content(), TEXT);
        }
    }
    let shared = server.connection_count();
    assert!(shared <= 2, "4 clones, 40 calls: {shared} connections");

    // The contrast: four clients built separately have four pools.
    let separate: Vec<Client> = (0..4).map(|_| client(&url)).collect();
    for _ in 0..2 {
        for c in &separate {
            assert_eq!(c.chat(&request()).expect("call").content(), TEXT);
        }
    }
    let more = server.connection_count() - shared;
    assert!(
        (4..=6).contains(&more),
        "4 separate clients, 8 calls: {more} connections"
    );
}

#[test]
fn a_retry_reuses_the_connection_the_error_came_on() {
    let server = mock(Script::new().text(TEXT).fault(spec("status=503,times=1")));
    let response = client(&server.base_url())
        .chat(&request())
        .expect("retried");
    assert_eq!(response.content(), TEXT);
    let reasons: Vec<FailureKind> = response.retries.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [FailureKind::HttpStatus], "{:?}", response.retries);
    assert_eq!(server.chat_request_count(), 2);
    assert_eq!(
        server.connection_count(),
        1,
        "the 503's body was read, so its connection serves the retry"
    );
}

// ---------------------------------------------------------------------------------------------
// Stale pooled connections
// ---------------------------------------------------------------------------------------------

/// Servers that close keep-alive connections behind the client's back: every call succeeds
/// and the resend leaves no trace in the retry history.
#[test]
fn stale_pooled_connections_are_resent_invisibly() {
    struct Case {
        fault: &'static str,
        calls: usize,
        /// Pause before call i (idle connections age meanwhile).
        gap: fn(usize) -> Duration,
        /// Checks the server's view: (connections, requests dropped unanswered).
        check: fn(u64, usize),
    }
    let no_gap: fn(usize) -> Duration = |_| Duration::ZERO;
    let cases = [
        Case {
            fault: "close-after-response",
            calls: 20,
            gap: no_gap,
            check: |connections, _| assert_eq!(connections, 20),
        },
        // Gaps of 0 to 45 ms around a 20 ms idle close: some reuses race the close.
        Case {
            fault: "idle-close-ms=20",
            calls: 40,
            gap: |i| ms((i % 4) as u64 * 15),
            check: |connections, _| assert!(connections >= 10, "{connections}"),
        },
        Case {
            fault: "stale=0.5,seed=11",
            calls: 40,
            gap: no_gap,
            check: |_, dropped| assert!(dropped >= 5, "only {dropped} requests dropped"),
        },
        // Every reuse fails: each call after the first meets a dead pooled connection.
        Case {
            fault: "stale",
            calls: 15,
            gap: no_gap,
            check: |connections, dropped| {
                assert_eq!((connections, dropped), (15, 14));
            },
        },
    ];
    for case in cases {
        let server = mock(Script::new().text(TEXT).fault(spec(case.fault)));
        let client = client(&server.base_url());
        for i in 0..case.calls {
            std::thread::sleep((case.gap)(i));
            let response = client
                .chat(&request())
                .unwrap_or_else(|e| panic!("{}: call {i}: {e:?}", case.fault));
            assert_eq!(response.content(), TEXT, "{}", case.fault);
            assert!(
                response.retries.is_empty(),
                "{}: call {i}: {:?}",
                case.fault,
                response.retries
            );
        }
        let dropped = server.chat_requests().iter().filter(|r| r.dropped).count();
        assert_eq!(
            server.chat_request_count(),
            case.calls as u64,
            "{}: one answered request per call",
            case.fault
        );
        (case.check)(server.connection_count(), dropped);
    }
}

// ---------------------------------------------------------------------------------------------
// No thread per call
// ---------------------------------------------------------------------------------------------

/// Set in a child process of this test binary to the one test it runs.
const CHILD: &str = "OAI_SSE_TRANSPORT_CHILD";

/// Runs `test` alone in a child process of this test binary, with `env` added, and checks that
/// it passed; returns true in that child, where the test's body runs. The child has no other
/// test's threads and its own environment (this process's is never changed).
fn in_child(test: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some_and(|v| v == test) {
        return true;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, test)
        .envs(env.iter().copied())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a child process: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

#[cfg(target_os = "linux")]
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// 100 sequential calls, plain and over TLS, start no thread: the process has the same
/// threads during every call (sampled at every event) and after the calls as before them.
/// The warm-up call may start the client's one connect worker.
#[cfg(target_os = "linux")]
#[test]
fn sequential_calls_start_no_thread() {
    if !in_child("sequential_calls_start_no_thread", &[]) {
        return;
    }
    let server = mock(Script::new().text(TEXT));
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut clients = vec![("http", client(&server.base_url()))];
    #[cfg(feature = "tls")]
    let (_ca, proxy) = {
        let ca = tls::TestCa::new(&[]);
        let proxy = tls::TlsProxy::start(&ca, server.addr());
        let c = builder(&proxy.base_url())
            .root_certificate_pem(ca.ca_pem.clone())
            .build()
            .expect("TLS client");
        clients.push(("https", c));
        (ca, proxy)
    };
    for (scheme, client) in &clients {
        client.chat(&request()).expect("warm-up call");
        let before = threads();
        let mut during = Vec::new();
        for i in 0..100 {
            let response = client
                .chat_stream(&request(), |_| during.push(threads()))
                .unwrap_or_else(|e| panic!("{scheme} call {i}: {e:?}"));
            assert_eq!(response.content(), TEXT);
        }
        let after = threads();
        assert!(during.len() >= 100, "{scheme}: events sampled");
        let busiest = during.iter().copied().max().unwrap_or(0);
        assert_eq!(
            (busiest, after),
            (before, before),
            "{scheme}: threads before {before}, at most {busiest} during the calls, {after} after"
        );
    }
    assert!(
        server.connection_count() <= 3,
        "{}",
        server.connection_count()
    );
    #[cfg(feature = "tls")]
    assert_eq!(proxy.handshakes(), 1);
}

// ---------------------------------------------------------------------------------------------
// Cancel latency
// ---------------------------------------------------------------------------------------------

/// The promise: a cancelled call returns within this long, whatever it was doing.
const CANCEL_PROMISE: Duration = Duration::from_millis(100);

/// Runs `once` (which cancels a call and returns how long the call took to return after the
/// cancel) up to three times: a shared, loaded machine may deschedule a thread for longer
/// than the promise once, but not three times running.
fn within_promise(phase: &str, once: impl Fn() -> Duration) {
    let mut lags = Vec::new();
    for _ in 0..3 {
        let lag = once();
        eprintln!("cancel from a {phase}: returned {lag:?} after cancel()");
        if lag < CANCEL_PROMISE {
            return;
        }
        lags.push(lag);
    }
    panic!("{phase}: returned {lags:?} after cancel, promise {CANCEL_PROMISE:?}");
}

/// Calls `client` with a cancel handle that `trigger` fires (on another thread) once the
/// call is in the phase under test; returns the lag from cancel to return.
fn cancelled_call(
    client: &Client,
    options: CallOptions,
    trigger: impl FnOnce(CancelHandle) -> Instant + Send + 'static,
    on_event: impl FnMut(&StreamEvent<'_>),
) -> Duration {
    let cancel = CancelHandle::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || trigger(cancel))
    };
    let options = CallOptions {
        cancel: Some(cancel),
        ..options
    };
    let result = client.chat_with(&request(), &options, on_event);
    let returned = Instant::now();
    let cancelled_at = canceller.join().expect("canceller thread");
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    returned.saturating_duration_since(cancelled_at)
}

#[test]
fn cancel_returns_within_100_ms_from_a_blocked_read() {
    within_promise("blocked read", || {
        // Headers and one delta, then silence until the client goes away.
        let server = serve(1, |_, stream, _| {
            send(stream, SSE_CHUNKED_HEAD.as_bytes());
            send(stream, &chunk(content("a").as_bytes()));
            wait_for_close(stream);
        });
        let (tx, rx) = mpsc::channel();
        let lag = cancelled_call(
            &client(&server.base_url()),
            CallOptions::default(),
            move |cancel| {
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("first delta");
                // Let the reader block on the silent socket.
                std::thread::sleep(ms(50));
                let at = Instant::now();
                cancel.cancel();
                at
            },
            move |_| {
                let _ = tx.send(());
            },
        );
        server.join();
        lag
    });
}

#[test]
fn cancel_returns_within_100_ms_from_a_backoff_sleep() {
    within_promise("backoff sleep", || {
        let server = mock(Script::new().text(TEXT).fault(spec("status=502,times=1")));
        let client = builder(&server.base_url())
            .retry_policy(
                fast_policy()
                    .initial_delay(Duration::from_secs(30))
                    .max_delay(Duration::from_secs(30)),
            )
            .build()
            .expect("client");
        let (tx, rx) = mpsc::sync_channel(1);
        let hook: oai_sse::RetryHook = std::sync::Arc::new(move |_| {
            let _ = tx.try_send(());
        });
        let options = CallOptions {
            on_retry: Some(hook),
            ..CallOptions::default()
        };
        cancelled_call(
            &client,
            options,
            move |cancel| {
                // The hook runs just before the 30 s wait starts.
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("retry hook");
                std::thread::sleep(ms(20));
                let at = Instant::now();
                cancel.cancel();
                at
            },
            |_| {},
        )
    });
}

/// A cancel stops a reply that has already arrived, not only a read that blocks: the next
/// pull after `cancel()` is `Error::Cancelled`, whatever is still buffered. (A short reply
/// arrives whole in the first read; without the check between events it kept coming, and the
/// call even completed.)
#[test]
fn cancel_stops_a_reply_that_is_already_buffered() {
    let server = mock(Script::new().text("one two three four five six seven eight"));
    let client = client(&server.base_url());

    let cancel = CancelHandle::new();
    let options = CallOptions {
        cancel: Some(cancel.clone()),
        ..CallOptions::default()
    };
    let mut stream = client.stream_with(&request(), options).expect("stream");
    loop {
        match stream.next_event() {
            Ok(Some(StreamEvent::Content { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("chat stream: no content: {other:?}"),
        }
    }
    cancel.cancel();
    let next = stream.next_event().map(|e| e.map(|e| e.to_owned_event()));
    assert!(
        matches!(next, Err(Error::Cancelled)),
        "chat stream: {next:?}"
    );

    let cancel = CancelHandle::new();
    let mut source = client
        .events(format!("{}/events?count=20", server.base_url()))
        .cancel(cancel.clone())
        .reconnect_on_eof(false)
        .build()
        .expect("event source");
    source
        .next_event()
        .expect("first event")
        .expect("not the end");
    cancel.cancel();
    let next = source.next_event().map(|e| e.is_some());
    assert!(
        matches!(next, Err(Error::Cancelled)),
        "event source: {next:?}"
    );
}

/// A cancel shuts down the cancelled call's socket only: a concurrent call on another
/// connection of the same pool carries on to its end.
#[test]
fn cancel_kills_only_the_cancelled_calls_connection() {
    let server = serve_keep_alive(|_, _, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(content("first").as_bytes()));
        // Both calls are now past their first delta; one of them is cancelled meanwhile.
        std::thread::sleep(ms(300));
        send(stream, &chunk(content(" second").as_bytes()));
        send(stream, &chunk(finish("stop").as_bytes()));
        send(stream, &chunk(DONE.as_bytes()));
        send(stream, b"0\r\n\r\n");
        true
    });
    let client = client(&server.base_url());
    let (cancelled, kept) = (CancelHandle::new(), CancelHandle::new());
    let (tx, rx) = mpsc::channel();
    let call = |cancel: CancelHandle, tx: mpsc::Sender<()>| {
        let client = client.clone();
        std::thread::spawn(move || {
            let options = CallOptions {
                cancel: Some(cancel),
                ..CallOptions::default()
            };
            let mut signalled = false;
            client.chat_with(&request(), &options, |_| {
                if !std::mem::replace(&mut signalled, true) {
                    let _ = tx.send(());
                }
            })
        })
    };
    let a = call(cancelled.clone(), tx.clone());
    let b = call(kept, tx);
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("both calls started streaming");
    }
    cancelled.cancel();
    let a = a.join().expect("call a");
    let b = b.join().expect("call b");
    assert!(matches!(a, Err(Error::Cancelled)), "{a:?}");
    assert_eq!(b.expect("the other call").content(), "first second");
    assert_eq!(server.connections(), 2);
}

/// A loopback listener whose accept queue is full and never drained: a connect to it hangs
/// (Linux drops the SYN of a connection that does not fit), like a dead host's. The sockets
/// that fill the queue live as long as the listener.
#[cfg(target_os = "linux")]
fn black_hole() -> (
    socket2::Socket,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let mut fill = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, ms(200)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, fill, addr),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue of a listen(0) socket never filled");
}

#[cfg(target_os = "linux")]
#[test]
fn cancel_returns_within_100_ms_from_a_connect_in_progress() {
    within_promise("connect", || {
        let (_listener, _fill, addr) = black_hole();
        let client = builder(&format!("http://{addr}/v1"))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let started = Instant::now();
        let lag = cancelled_call(
            &client,
            CallOptions::default(),
            |cancel| {
                // A connect to the black hole hangs for seconds; cancel well inside it.
                std::thread::sleep(ms(150));
                let at = Instant::now();
                cancel.cancel();
                at
            },
            |_| {},
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the connect hung"
        );
        lag
    });
}

/// The most connect workers a client runs (the dialer's cap, src/transport/dial.rs).
const MAX_CONNECT_WORKERS: usize = 8;

/// Against a host whose connects hang, 300 calls in a row with a 50 ms deadline: no call
/// leaves its connect worker behind. During the calls the process never has more threads
/// than the client's connect workers add, and within a second of the last call (the client
/// dropped: its idle workers go with it) it has the threads it had before. (Each call used to
/// abandon a worker blocked for the whole 10 s connect timeout: 300 calls left about 200
/// threads alive.)
#[cfg(target_os = "linux")]
#[test]
fn calls_out_of_time_while_connecting_leave_no_thread_behind() {
    if !in_child(
        "calls_out_of_time_while_connecting_leave_no_thread_behind",
        &[],
    ) {
        return;
    }
    let (_listener, _fill, addr) = black_hole();
    let before = threads();
    let client = builder(&format!("http://{addr}/v1"))
        .connect_timeout(Duration::from_secs(10))
        .deadline(Some(ms(50)))
        .build()
        .expect("client");
    let mut busiest = before;
    for i in 0..300 {
        let result = client.chat(&request());
        let kind = result.as_ref().map_err(Error::kind).err();
        assert_eq!(
            kind,
            Some(FailureKind::DeadlineExceeded),
            "call {i}: {result:?}"
        );
        busiest = busiest.max(threads());
    }
    let last_call = Instant::now();
    let with_client = threads();
    drop(client);
    // The workers are detached threads: nothing to join, so look until they are gone.
    let mut after = threads();
    while after > before && last_call.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(ms(10));
        after = threads();
    }
    eprintln!(
        "threads: {before} before, at most {busiest} during the calls, {with_client} after \
         them with the client, {after} once it was dropped"
    );
    assert!(
        busiest <= before + MAX_CONNECT_WORKERS,
        "{busiest} threads during the calls, {before} before"
    );
    assert_eq!(after, before, "threads a second after the last call");
}

// ---------------------------------------------------------------------------------------------
// Which connections go back to the pool
// ---------------------------------------------------------------------------------------------

/// A call that was cancelled, timed out, failed or was stopped early leaves its connection
/// out of the pool: the next call arrives on a new one. A call that completed leaves it in.
#[test]
fn a_slow_consumer_is_not_an_idle_server() {
    // The reply comes in slices 20 ms apart; the caller spends 3 idle limits on its first
    // delta (a pipe to a paused pager, a tool run in the callback). The bytes sent meanwhile
    // wait in the socket: the next read finds them at once, so no idle timeout fires.
    let server = mock(
        Script::new()
            .text(TEXT)
            .fault(spec("slices=24,delay-ms=20")),
    );
    let idle = ms(150);
    let client = builder(&server.base_url())
        .idle_timeout(idle)
        .retry_policy(fast_policy().max_retries(0))
        .build()
        .expect("client");
    let mut slept = false;
    let response = client
        .chat_stream(&request(), |event| {
            if matches!(event, StreamEvent::Content { .. }) && !slept {
                slept = true;
                std::thread::sleep(idle * 3);
            }
        })
        .expect("a busy caller is not a silent server");
    assert!(slept, "no content delta");
    assert_eq!(response.content(), TEXT);
    assert!(response.retries.is_empty(), "{:?}", response.retries);
}

#[test]
fn only_completed_calls_return_their_connection() {
    type FirstCall = fn(&Client) -> Result<(), String>;
    struct Case {
        name: &'static str,
        /// The first reply's text, if not the usual.
        first_reply: Option<String>,
        fault: Option<&'static str>,
        configure: fn(ClientBuilder) -> ClientBuilder,
        first: FirstCall,
        reused: bool,
    }
    let plain: fn(ClientBuilder) -> ClientBuilder = |b| b;
    let cases = [
        Case {
            first_reply: None,
            name: "completed",
            fault: None,
            configure: plain,
            first: |c| c.chat(&request()).map(|_| ()).map_err(|e| format!("{e:?}")),
            reused: true,
        },
        Case {
            first_reply: None,
            name: "cancelled",
            fault: None,
            configure: plain,
            first: |c| {
                let cancel = CancelHandle::new();
                let options = CallOptions {
                    cancel: Some(cancel.clone()),
                    ..CallOptions::default()
                };
                match c.chat_with(&request(), &options, |e| {
                    if matches!(e, StreamEvent::Content { .. }) {
                        cancel.cancel();
                    }
                }) {
                    Err(Error::Cancelled) => Ok(()),
                    other => Err(format!("expected Cancelled, got {other:?}")),
                }
            },
            reused: false,
        },
        Case {
            first_reply: None,
            name: "idle timeout",
            fault: Some("stall-after=400,secs=3,times=1"),
            configure: |b| b.idle_timeout(ms(200)).first_byte_timeout(ms(200)),
            first: |c| match c.chat(&request()) {
                Err(e)
                    if matches!(
                        e.kind(),
                        FailureKind::IdleTimeout | FailureKind::FirstByteTimeout
                    ) =>
                {
                    Ok(())
                }
                other => Err(format!("expected a timeout, got {other:?}")),
            },
            reused: false,
        },
        Case {
            first_reply: None,
            name: "first-byte timeout",
            fault: Some("stall-before=3,times=1"),
            configure: |b| b.first_byte_timeout(ms(200)),
            first: |c| match c.chat(&request()) {
                Err(e) if e.kind() == FailureKind::FirstByteTimeout => Ok(()),
                other => Err(format!("expected first_byte_timeout, got {other:?}")),
            },
            reused: false,
        },
        // The first reply has a 400-byte word: its line breaks the 300-byte limit, the
        // second reply's lines do not.
        Case {
            first_reply: Some("x".repeat(400)),
            name: "failed mid-stream (SSE line limit)",
            fault: None,
            configure: |b| {
                b.sse_limits(oai_sse::sse::Limits {
                    max_line_len: 300,
                    ..oai_sse::sse::Limits::default()
                })
            },
            first: |c| match c.chat(&request()) {
                Err(Error::Sse(_)) => Ok(()),
                other => Err(format!("expected an SSE error, got {other:?}")),
            },
            reused: false,
        },
        Case {
            first_reply: None,
            name: "stopped by the callback",
            fault: None,
            configure: plain,
            first: |c| {
                let r = c
                    .chat_stream(&request(), |e| match e {
                        StreamEvent::Content { .. } => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    })
                    .map_err(|e| format!("{e:?}"))?;
                if r.stopped_by_caller {
                    Ok(())
                } else {
                    Err("not stopped".into())
                }
            },
            reused: false,
        },
        Case {
            first_reply: None,
            name: "stream dropped after one event",
            fault: None,
            configure: plain,
            first: |c| {
                let mut stream = c.stream(&request()).map_err(|e| format!("{e:?}"))?;
                loop {
                    match stream.next_event() {
                        Ok(Some(StreamEvent::Content { .. })) => return Ok(()),
                        Ok(Some(_)) => {}
                        other => return Err(format!("no content: {other:?}")),
                    }
                }
            },
            reused: false,
        },
    ];
    for case in cases {
        let mut replies = Replies::sequence(
            case.first_reply
                .iter()
                .map(|text| Script::new().text(text))
                .chain([Script::new().text(TEXT)]),
        );
        if let Some(fault) = case.fault {
            replies = replies.fault(spec(fault));
        }
        let server = MockServer::start(replies).expect("mock server");
        let client = (case.configure)(builder(&server.base_url()).max_retries(0))
            .build()
            .expect("client");
        if let Err(e) = (case.first)(&client) {
            panic!("{}: first call: {e}", case.name);
        }
        // The next call, with the client's usual settings, must get a clean answer.
        let next = client.chat(&request());
        assert!(
            next.as_ref().is_ok_and(|r| r.content() == TEXT),
            "{}: next call: {next:?}",
            case.name
        );
        let conns = chat_connections(&server);
        assert_eq!(conns.len(), 2, "{}: {conns:?}", case.name);
        assert_eq!(
            conns[0] == conns[1],
            case.reused,
            "{}: connections {conns:?}",
            case.name
        );
        assert_eq!(
            server.connection_count(),
            if case.reused { 1 } else { 2 },
            "{}",
            case.name
        );
    }
}

/// After a complete stream the client reads on to the chunked terminator so the connection
/// can be pooled — but waits at most 50 ms for it; a tail that takes longer costs the
/// connection, not the caller's time.
#[test]
fn a_complete_stream_is_drained_for_the_pool_within_50_ms() {
    for (tail_delay, reused) in [(ms(5), true), (ms(1500), false)] {
        let server = serve_keep_alive(move |_, _, stream, _| {
            send(stream, SSE_CHUNKED_HEAD.as_bytes());
            send(stream, &chunk(content("drained").as_bytes()));
            // Complete here: the only choice finished.
            send(stream, &chunk(finish("stop").as_bytes()));
            std::thread::sleep(tail_delay);
            send(stream, &chunk(DONE.as_bytes()));
            send(stream, b"0\r\n\r\n");
            true
        });
        let client = client(&server.base_url());
        let started = Instant::now();
        let first = client.chat(&request()).expect("first call");
        let took = started.elapsed();
        assert_eq!(first.content(), "drained");
        assert!(
            took < ms(1000),
            "tail {tail_delay:?}: the call took {took:?}"
        );
        let second = client.chat(&request()).expect("second call");
        assert_eq!(second.content(), "drained");
        assert_eq!(
            server.connections(),
            if reused { 1 } else { 2 },
            "tail {tail_delay:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Names: exact kinds, no lookup where none is needed, pinned names
// ---------------------------------------------------------------------------------------------

#[test]
fn a_name_that_does_not_resolve_is_dns_and_retried_only_when_asked() {
    // RFC 6761: `.invalid` never resolves; the client fails it at once, without a DNS query.
    let url = "http://nothing.invalid/v1";
    let started = Instant::now();
    let err = client(url).chat(&request()).expect_err("no such host");
    assert_eq!(err.kind(), FailureKind::Dns, "{err:?}");
    assert!(err.retries().is_empty(), "retried: {:?}", err.retries());

    let retrying = builder(url)
        .retry_policy(
            fast_policy()
                .retry_dns(true)
                .max_retries(2)
                .initial_delay(ms(1)),
        )
        .build()
        .expect("client");
    let err = retrying.chat(&request()).expect_err("still no such host");
    assert_eq!(err.kind(), FailureKind::Dns, "{err:?}");
    let reasons: Vec<FailureKind> = err.retries().iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [FailureKind::Dns, FailureKind::Dns]);
    assert!(started.elapsed() < Duration::from_secs(2), "a DNS query?");
}

#[test]
fn localhost_and_pinned_names_need_no_lookup() {
    let server = mock(Script::new().text(TEXT));
    let port = server.addr().port();
    let local = client(&format!("http://localhost:{port}/v1"));
    assert_eq!(local.chat(&request()).expect("localhost").content(), TEXT);

    // A name no resolver knows, pinned like `curl --resolve`: the URL keeps the name.
    let pinned = builder(&format!("http://api.oai-sse.test:{port}/v1"))
        .resolve("api.oai-sse.test", [127, 0, 0, 1].into())
        .build()
        .expect("client");
    assert_eq!(pinned.chat(&request()).expect("pinned").content(), TEXT);
    let last = server.chat_requests().pop().expect("a request");
    assert_eq!(
        last.header("host"),
        Some(format!("api.oai-sse.test:{port}").as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "tls")]
fn tls_server(script: Script) -> (MockServer, tls::TestCa, tls::TlsProxy) {
    let server = mock(script);
    let ca = tls::TestCa::new(&["api.oai-sse.test"]);
    let proxy = tls::TlsProxy::start(&ca, server.addr());
    (server, ca, proxy)
}

/// A unique temporary file holding `text`; removed when the guard drops.
#[cfg(feature = "tls")]
struct TempFile(std::path::PathBuf);

#[cfg(feature = "tls")]
impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "oai-sse-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp file");
        Self(path)
    }
}

#[cfg(feature = "tls")]
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(feature = "tls")]
#[test]
fn tls_trusts_the_given_roots_and_fails_as_tls_without_them() {
    let (server, ca, proxy) = tls_server(Script::new().text(TEXT));
    let ca_file = TempFile::new("ca.pem", &ca.ca_pem);
    let other_ca = tls::TestCa::new(&[]);
    type Configure<'a> = Box<dyn Fn(ClientBuilder) -> ClientBuilder + 'a>;
    let cases: Vec<(&str, Configure<'_>, bool)> = vec![
        (
            "root_certificate_pem",
            Box::new(|b| b.root_certificate_pem(ca.ca_pem.clone())),
            true,
        ),
        (
            "root_certificate_file",
            Box::new(|b| b.root_certificate_file(&ca_file.0)),
            true,
        ),
        (
            "another CA and this one",
            Box::new(|b| {
                b.root_certificate_pem(other_ca.ca_pem.clone())
                    .root_certificate_pem(ca.ca_pem.clone())
            }),
            true,
        ),
        ("built-in roots only", Box::new(|b| b), false),
        (
            "another CA only",
            Box::new(|b| b.root_certificate_pem(other_ca.ca_pem.clone())),
            false,
        ),
    ];
    for (name, configure, trusted) in cases {
        let (accepted, handshakes) = (proxy.accepted(), proxy.handshakes());
        // Retries on: a TLS failure must not be retried anyway.
        let client = configure(builder(&proxy.base_url())).build().expect(name);
        let result = client.chat(&request());
        if trusted {
            assert_eq!(result.expect(name).content(), TEXT, "{name}");
            assert_eq!(proxy.handshakes() - handshakes, 1, "{name}");
        } else {
            let err = result.expect_err(name);
            assert_eq!(err.kind(), FailureKind::Tls, "{name}: {err:?}");
            assert!(err.retries().is_empty(), "{name}: {:?}", err.retries());
            assert_eq!(proxy.accepted() - accepted, 1, "{name}: not retried");
            assert_eq!(proxy.handshakes(), handshakes, "{name}");
        }
    }
    assert_eq!(server.chat_request_count(), 3);
}

#[cfg(feature = "tls")]
#[test]
fn twenty_calls_over_tls_cost_one_handshake() {
    let (server, ca, proxy) = tls_server(Script::new().text(TEXT));
    let client = builder(&proxy.base_url())
        .root_certificate_pem(ca.ca_pem.clone())
        .build()
        .expect("client");
    for i in 0..20 {
        let response = client
            .chat(&request())
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(response.content(), TEXT);
    }
    assert_eq!(proxy.handshakes(), 1);
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(server.connection_count(), 1);
}

/// A certificate for a host name, reached through a pinned address: the name is what TLS
/// verifies (and sends as SNI), the pin only where to connect.
#[cfg(feature = "tls")]
#[test]
fn tls_verifies_the_url_host_name_of_a_pinned_address() {
    let (_server, ca, proxy) = tls_server(Script::new().text(TEXT));
    let port = proxy.addr.port();
    let client = builder(&format!("https://api.oai-sse.test:{port}/v1"))
        .resolve("api.oai-sse.test", [127, 0, 0, 1].into())
        .root_certificate_pem(ca.ca_pem.clone())
        .build()
        .expect("client");
    assert_eq!(client.chat(&request()).expect("pinned").content(), TEXT);
    // A name the certificate does not carry fails verification.
    let wrong = builder(&format!("https://other.oai-sse.test:{port}/v1"))
        .resolve("other.oai-sse.test", [127, 0, 0, 1].into())
        .root_certificate_pem(ca.ca_pem.clone())
        .build()
        .expect("client");
    let err = wrong.chat(&request()).expect_err("name mismatch");
    assert_eq!(err.kind(), FailureKind::Tls, "{err:?}");
}

/// The stale race over TLS: the server closes a reused connection (close_notify, FIN) after
/// reading the request; the client resends on a new connection, invisibly.
#[cfg(feature = "tls")]
#[test]
fn stale_pooled_tls_connections_are_resent_invisibly() {
    let (server, ca, proxy) = tls_server(Script::new().text(TEXT).fault(spec("stale")));
    let client = builder(&proxy.base_url())
        .root_certificate_pem(ca.ca_pem.clone())
        .build()
        .expect("client");
    for i in 0..8 {
        let response = client
            .chat(&request())
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
        assert_eq!(response.content(), TEXT);
        assert!(response.retries.is_empty(), "{:?}", response.retries);
    }
    assert_eq!(server.chat_request_count(), 8);
    assert_eq!(proxy.handshakes(), 8);
}

/// `SSL_CERT_FILE` names the roots when none are given (and `roots_from_env(false)` turns
/// that off); a variable naming a missing file is a configuration error. Checked in child
/// processes that have the variable.
#[cfg(feature = "tls")]
#[test]
fn ssl_cert_file_names_the_roots() {
    const TEST: &str = "ssl_cert_file_names_the_roots";
    const URL: &str = "OAI_SSE_TEST_TLS_URL";
    if std::env::var_os(CHILD).is_some_and(|v| v == TEST) {
        let url = std::env::var(URL).expect("the parent's proxy URL");
        let honoured = builder(&url).roots_from_env(true).build();
        if std::env::var_os("SSL_CERT_FILE").is_some_and(|p| !std::path::Path::new(&p).exists()) {
            assert!(
                matches!(&honoured, Err(Error::Config(m)) if m.contains("SSL_CERT_FILE")),
                "{honoured:?}"
            );
            return;
        }
        let honoured = honoured.expect("client");
        assert_eq!(honoured.chat(&request()).expect("trusted").content(), TEXT);
        let ignored = builder(&url).roots_from_env(false).build().expect("client");
        let err = ignored.chat(&request()).expect_err("untrusted");
        assert_eq!(err.kind(), FailureKind::Tls, "{err:?}");
        return;
    }
    let (server, ca, proxy) = tls_server(Script::new().text(TEXT));
    let ca_file = TempFile::new("ssl-cert-file.pem", &ca.ca_pem);
    let path = ca_file.0.to_str().expect("UTF-8 temp path");
    let url = proxy.base_url();
    in_child(TEST, &[("SSL_CERT_FILE", path), (URL, &url)]);
    assert_eq!(server.chat_request_count(), 1);
    assert_eq!(proxy.handshakes(), 1);
    let missing = format!("{path}.missing");
    in_child(TEST, &[("SSL_CERT_FILE", &missing), (URL, &url)]);
    assert_eq!(server.chat_request_count(), 1);
}

/// The same through the real binary, as a user would: `SSL_CERT_FILE=ca.pem oai-sse chat`, or
/// `--cacert ca.pem`, which replaces whatever `SSL_CERT_FILE` names.
#[cfg(all(feature = "tls", feature = "cli"))]
#[test]
fn the_cli_trusts_cacert_and_ssl_cert_file() {
    let (server, ca, proxy) = tls_server(Script::new().text(TEXT));
    let ours = TempFile::new("cli-ca.pem", &ca.ca_pem);
    let other_ca = tls::TestCa::new(&[]);
    let theirs = TempFile::new("cli-other-ca.pem", &other_ca.ca_pem);
    let (ours, theirs) = (ours.0.as_path(), theirs.0.as_path());
    type Case<'a> = (
        &'a str,
        Option<&'a std::path::Path>,
        Option<&'a std::path::Path>,
        bool,
    );
    let cases: [Case<'_>; 4] = [
        ("SSL_CERT_FILE", Some(ours), None, true),
        ("--cacert", None, Some(ours), true),
        ("neither", None, None, false),
        (
            "--cacert replaces SSL_CERT_FILE",
            Some(ours),
            Some(theirs),
            false,
        ),
    ];
    for (name, env_file, cacert, trusted) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oai-sse"));
        cmd.args(["chat", "--quiet", "--max-retries", "0", "--base-url"])
            .arg(proxy.base_url())
            .args(["--model", "mock-model"])
            .env_remove("SSL_CERT_FILE")
            .env_remove("RUST_LOG");
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        if let Some(path) = env_file {
            cmd.env("SSL_CERT_FILE", path);
        }
        if let Some(path) = cacert {
            cmd.arg("--cacert").arg(path);
        }
        let out = cmd.arg("hi").output().expect("run oai-sse");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if trusted {
            assert!(out.status.success(), "{name}: {stderr}");
            assert!(stdout.contains(TEXT), "{name}: {stdout}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
            assert!(stderr.contains("tls"), "{name}: {stderr}");
        }
    }
    assert_eq!(server.chat_request_count(), 2);
}
