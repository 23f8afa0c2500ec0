//! Hostile servers over loopback: broken chunked framing, header floods, compressed bodies,
//! error bodies that drip, absurd `Retry-After` values, servers that echo credentials and
//! terminal escapes, a server that goes away and comes back, one that answers `503` while
//! it loads, and bodies larger than the limits. (Server error *shapes* are in
//! tests/server_quirks.rs; peak memory is measured by the bench's `hostile` section.)

mod common;

use common::*;
use oai_sse::retry::{RetryAction, RetryPolicy};
use oai_sse::{
    CallOptions, ChatLimits, ChatRequest, Client, ClientBuilder, Error, FailureKind, Message,
    ProxyConfig, RetryHook, RetryNotice,
};
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Fast, jitter-free retries (so a wrongly retried failure shows as a second request).
fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(ms(10))
        .max_delay(ms(20))
        .jitter(0.0)
        .resume(false)
}

fn builder(base_url: &str) -> ClientBuilder {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .retry_policy(fast_policy())
        .connect_timeout(Duration::from_secs(5))
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10))
}

fn request() -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("hi")])
}

/// The answer `"Hi"`, complete, as one SSE body.
fn answer_body() -> String {
    format!("{}{}{DONE}", content("Hi"), finish("stop"))
}

/// Serves every connection with `reply(index)`, then returns the error of one call and the
/// number of requests the server saw.
fn call_against(
    reply: impl Fn(usize, &mut TcpStream) + Send + 'static,
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (Result<oai_sse::ChatResponse, Error>, usize) {
    let server = serve_sequential(move |i, stream, _| reply(i, stream));
    let client = configure(builder(&server.base_url()))
        .build()
        .expect("client");
    let result = client.chat(&request());
    (result, server.stop().len())
}

// ---------------------------------------------------------------------------------------------
// Broken HTTP framing is a protocol error, not a cut connection
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_chunked_framing_is_a_protocol_error_not_retried() {
    let first = chunk(content("Hi").as_bytes());
    let endless_extension = {
        let mut line = b"5;ext=".to_vec();
        line.extend(std::iter::repeat_n(b'x', 200 << 10));
        line
    };
    // (name, bytes after the head and a first good chunk)
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("endless chunk extension", endless_extension),
        ("chunk size not hex", b"zz\r\nhello\r\n".to_vec()),
        (
            "chunk size line too long",
            format!("5;{}\r\nhello\r\n", "e".repeat(40)).into_bytes(),
        ),
        (
            "no CRLF after the chunk data",
            b"5\r\nhelloXX5\r\nhello\r\n".to_vec(),
        ),
    ];
    for (name, tail) in cases {
        let first = first.clone();
        let (result, requests) = call_against(
            move |_, stream| {
                send(stream, SSE_CHUNKED_HEAD.as_bytes());
                send(stream, &first);
                send(stream, &tail);
                wait_for_close(stream);
            },
            |b| b,
        );
        let err = result.expect_err(name);
        assert_eq!(err.kind(), FailureKind::Protocol, "{name}: {err}");
        assert!(err.retries().is_empty(), "{name}");
        assert_eq!(requests, 1, "{name}");
    }
}

#[test]
fn a_connection_cut_inside_the_framing_is_still_retried() {
    let (result, requests) = call_against(
        |i, stream| {
            if i == 0 {
                send(stream, SSE_CHUNKED_HEAD.as_bytes());
                send(stream, b"1a;ext"); // FIN in the middle of a chunk-size line
            } else {
                send(stream, &sse_response(&answer_body()));
            }
        },
        |b| b,
    );
    let response = result.expect("recovered");
    assert_eq!(response.content(), "Hi");
    assert_eq!(response.retries.len(), 1);
    assert_eq!(response.retries[0].reason, FailureKind::UnexpectedEof);
    assert_eq!(requests, 2);
}

#[test]
fn header_floods_are_not_retried() {
    // (name, header count, value length, kind)
    let cases = [
        ("many small headers", 20_000, 20, FailureKind::Protocol),
        (
            "a head over the 64 KiB buffer",
            10,
            8 << 10,
            FailureKind::LimitExceeded,
        ),
    ];
    for (name, count, len, kind) in cases {
        let (result, requests) = call_against(
            move |_, stream| {
                send(
                    stream,
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n",
                );
                let value = "v".repeat(len);
                for i in 0..count {
                    if stream
                        .write_all(format!("x-flood-{i}: {value}\r\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
                wait_for_close(stream);
            },
            |b| b,
        );
        let err = result.expect_err(name);
        assert_eq!(err.kind(), kind, "{name}: {err}");
        if kind == FailureKind::LimitExceeded {
            assert_eq!(
                err.to_string(),
                "limit exceeded: response head larger than 64 KiB"
            );
        }
        assert_eq!(requests, 1, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions the lead's rewrite made, proven over loopback
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_after_too_large_for_a_duration_is_too_long_not_ignored() {
    for (name, value) in [
        ("retry-after", "1e21"),
        ("retry-after", "1e300"),
        ("retry-after-ms", "1e300"),
        ("retry-after", "1e9"),
    ] {
        let (result, requests) = call_against(
            move |_, stream| {
                send(
                    stream,
                    &http_response("429 Too Many Requests", &[(name, value)], "slow down"),
                );
            },
            |b| b,
        );
        let err = result.expect_err(value);
        assert_eq!(err.status(), Some(429), "{name}: {value}");
        assert!(err.retries().is_empty(), "{name}: {value}");
        assert_eq!(requests, 1, "{name}: {value} was retried");
    }
}

#[test]
fn compressed_bodies_are_a_clear_permanent_error() {
    for encoding in ["gzip", "deflate", "br"] {
        let started = Instant::now();
        let (result, requests) = call_against(
            move |_, stream| {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: {encoding}\r\ncontent-length: 4\r\n\r\nabcd"
                );
                send(stream, head.as_bytes());
                wait_for_close(stream);
            },
            |b| b,
        );
        let err = result.expect_err(encoding);
        assert_eq!(err.kind(), FailureKind::UnexpectedContentType, "{err}");
        assert!(err.to_string().contains(encoding), "{err}");
        assert_eq!(requests, 1);
        // Not four idle timeouts: the answer is known from the head.
        assert!(started.elapsed() < Duration::from_secs(5), "{encoding}");
    }
}

#[test]
fn an_error_body_that_drips_is_cut_by_a_total_time_bound() {
    let started = Instant::now();
    let (result, requests) = call_against(
        |_, stream| {
            send(
                stream,
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 65536\r\n\r\n",
            );
            // One byte every 100 ms: 65536 bytes would take 1.8 hours.
            for _ in 0..65536 {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(ms(100));
            }
        },
        |b| b,
    );
    let err = result.expect_err("400");
    assert_eq!(err.status(), Some(400));
    assert!(
        err.api_error()
            .is_some_and(|e| e.message.starts_with("xxx")),
        "{err}"
    );
    assert_eq!(requests, 1);
    // The bound is 10 s (`ERROR_BODY_TIME`); allow for a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// A server that is down or loading is waited for within a time budget
// ---------------------------------------------------------------------------------------------

#[test]
fn a_server_that_goes_away_and_comes_back_after_5_s() {
    // The server answers a first call, then goes away (it is being restarted).
    let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = first.local_addr().expect("addr").port();
    let first = serve_on(first, 1, |_, stream, _| {
        send(stream, &sse_response(&answer_body()))
    });
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .proxy(ProxyConfig::None)
        .resume(false)
        .build()
        .expect("client");
    client
        .chat(&request())
        .expect("the first call, before the restart");
    first.join();
    // The restart: nothing listens for 5 s, then the server is back.
    let restarted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind");
        serve_on(listener, 1, |_, stream, _| {
            send(stream, &sse_response(&answer_body()))
        })
    });
    // The default policy: 3 counted retries, 250 ms doubling to 8 s, 2 minutes for a server
    // that answered before and went away.
    let (mut options, notices) = noting_retries();
    options.jitter_seed = Some(7);
    let started = Instant::now();
    let result = client.chat_with(&request(), &options, |_| {});
    let elapsed = started.elapsed();
    let server = restarted.join().expect("server thread");
    let response = result.expect("the call outlasts the restart");
    assert_eq!(response.content(), "Hi");
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
    // More refusals than the 3 counted retries: the wait is a time budget, not a count.
    assert!(response.retries.len() > 3, "{:?}", response.retries);
    // Each told as a wait in seconds of the 2-minute budget, none as a retry past the 3.
    let notices = notices.lock().expect("notices");
    assert_eq!(notices.len(), response.retries.len());
    for (i, notice) in notices.iter().enumerate() {
        let (down_for, budget) = notice.waiting.expect("a wait, not a retry");
        assert_eq!((notice.retry, notice.max_retries), (0, 3), "{notice:?}");
        assert_eq!(budget, Duration::from_secs(120));
        assert!(down_for < elapsed, "{notice:?}");
        if i > 0 {
            assert!(down_for > notices[i - 1].waiting.expect("wait").0);
        }
    }
    for record in &response.retries {
        assert_eq!(record.reason, FailureKind::ConnectionRefused, "{record:?}");
        assert_eq!(record.action, RetryAction::Restarted);
    }
    assert_eq!(server.join().len(), 1);
}

/// What a retry hook was told, in order.
#[derive(Debug, Clone, Copy)]
struct Noticed {
    retry: u32,
    max_retries: u32,
    waiting: Option<(Duration, Duration)>,
}

/// Options whose retry hook records each notice.
fn noting_retries() -> (CallOptions, Arc<Mutex<Vec<Noticed>>>) {
    let notices: Arc<Mutex<Vec<Noticed>>> = Arc::default();
    let log = Arc::clone(&notices);
    let hook: RetryHook = Arc::new(move |n: &RetryNotice<'_>| {
        log.lock().expect("notices").push(Noticed {
            retry: n.retry,
            max_retries: n.max_retries,
            waiting: n.waiting,
        });
    });
    let options = CallOptions {
        on_retry: Some(hook),
        ..CallOptions::default()
    };
    (options, notices)
}

/// A loopback port where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn a_mistyped_port_fails_after_max_retries_not_after_the_wait_budget() {
    // The default policy (2 minutes for a server that is down) with one retry: nothing ever
    // answered at this address, so the refusal is counted, not waited for.
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{}/v1", closed_port()))
        .proxy(ProxyConfig::None)
        .retry_policy(RetryPolicy::default().max_retries(1))
        .build()
        .expect("client");
    let (options, notices) = noting_retries();
    let started = Instant::now();
    let err = client
        .chat_with(&request(), &options, |_| {})
        .expect_err("nothing listens");
    assert_eq!(err.kind(), FailureKind::ConnectionRefused);
    let Error::AfterRetries(after) = &err else {
        panic!("{err:?}");
    };
    assert!(after.exhausted);
    assert_eq!(after.attempts, 2, "{:?}", after.history);
    // One backoff of about 250 ms, not two minutes.
    assert!(started.elapsed() < Duration::from_secs(10));
    let notices = notices.lock().expect("notices");
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!((notices[0].retry, notices[0].max_retries), (1, 1));
    assert!(notices[0].waiting.is_none(), "{notices:?}");
}

#[test]
fn a_server_that_listed_its_models_and_went_away_is_waited_for() {
    // The model list is the client's first answer from this address; then nothing listens
    // until the retry hook has been told twice of the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let models = serve_on(listener, 1, |_, stream, _| {
        send(
            stream,
            &http_response(
                "200 OK",
                &[("content-type", "application/json")],
                r#"{"data":[{"id":"m"}]}"#,
            ),
        );
    });
    let client = builder(&format!("http://127.0.0.1:{port}/v1"))
        .retry_policy(fast_policy().max_retries(1))
        .build()
        .expect("client");
    assert_eq!(client.models().expect("listed"), ["m"]);
    models.join();
    let (told_tx, told_rx) = std::sync::mpsc::channel();
    let hook: RetryHook = Arc::new(move |n: &RetryNotice<'_>| {
        let _ = told_tx.send((n.retry, n.waiting.is_some()));
    });
    let back = std::thread::spawn(move || {
        let told: Vec<_> = (0..3)
            .map(|_| told_rx.recv_timeout(Duration::from_secs(10)).expect("told"))
            .collect();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind");
        let server = serve_on(listener, 1, |_, stream, _| {
            send(stream, &sse_response(&answer_body()))
        });
        (told, server)
    });
    let options = CallOptions {
        on_retry: Some(hook),
        ..CallOptions::default()
    };
    let response = client
        .chat_with(&request(), &options, |_| {})
        .expect("waited for past max_retries = 1");
    let (told, server) = back.join().expect("server thread");
    assert_eq!(server.join().len(), 1);
    assert_eq!(response.content(), "Hi");
    assert_eq!(told, [(0, true); 3]);
    assert!(response.retries.len() >= 3, "{:?}", response.retries);
}

#[test]
fn a_server_loading_its_model_is_waited_for_past_the_retry_count() {
    let (result, requests) = call_against(
        |i, stream| {
            if i < 6 {
                send(
                    stream,
                    &http_response(
                        "503 Service Unavailable",
                        &[("content-type", "application/json")],
                        r#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#,
                    ),
                );
            } else {
                send(stream, &sse_response(&answer_body()));
            }
        },
        |b| b.retry_policy(fast_policy().max_retries(2)),
    );
    let response = result.expect("served once loaded");
    assert_eq!(response.content(), "Hi");
    assert_eq!(response.retries.len(), 6, "{:?}", response.retries);
    assert!(
        response
            .retries
            .iter()
            .all(|r| r.reason == FailureKind::HttpStatus)
    );
    assert_eq!(requests, 7);
}

#[test]
fn a_server_down_past_the_budget_gives_up_with_the_history() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = builder(&format!("http://127.0.0.1:{port}/v1"))
        .retry_policy(
            fast_policy()
                .initial_delay(ms(50))
                .max_delay(ms(200))
                .max_wait_for_server(Some(Duration::from_secs(1)))
                // Nothing ever answered here: waited for only when asked to (a server being
                // started beside the client).
                .wait_for_unseen_server(true),
        )
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client.chat(&request()).expect_err("nothing listens");
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), FailureKind::ConnectionRefused);
    let Error::AfterRetries(after) = &err else {
        panic!("{err:?}");
    };
    assert!(after.exhausted);
    assert!(after.history.len() > 3, "{:?}", after.history);
    assert!(
        after
            .history
            .iter()
            .all(|r| r.reason == FailureKind::ConnectionRefused)
    );
    assert!(
        elapsed >= ms(700) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(err.to_string().starts_with("gave up after"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// No credential in any output
// ---------------------------------------------------------------------------------------------

/// Every log record of this test binary, formatted.
fn logged() -> &'static Mutex<Vec<String>> {
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Debug
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                let line = format!("{} {}: {}", r.level(), r.target(), r.args());
                logged()
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        }
        fn flush(&self) {}
    }
    static LOGGED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static CAPTURE: Capture = Capture;
    LOGGED.get_or_init(|| {
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
        Mutex::new(Vec::new())
    })
}

const KEY: &str = "sk-test-KEY-0123456789";
const HEADER_SECRET: &str = "azure-HEADER-SECRET-42";
const URL_PASSWORD: &str = "url-PASSWORD-789";
const PROXY_PASSWORD: &str = "proxy-PASSWORD-000";

fn assert_clean(text: &str, what: &str) {
    for secret in [KEY, HEADER_SECRET, URL_PASSWORD, PROXY_PASSWORD] {
        assert!(!text.contains(secret), "{secret} in {what}: {text}");
    }
    assert!(
        !text.chars().any(|c| c == '\u{1b}' || c == '\u{7}'),
        "raw terminal controls in {what}: {text:?}"
    );
}

#[test]
fn servers_echoing_credentials_and_escapes_are_redacted() {
    logged();
    let echo =
        format!("key {KEY} header {HEADER_SECRET} pw {URL_PASSWORD} \u{1b}]0;pwned\u{7}\u{1b}[2J");
    let json_echo = serde_json::to_string(&echo).expect("JSON string");
    let hooked: Arc<Mutex<Vec<String>>> = Arc::default();
    // (name, response bytes)
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "401 body",
            http_response(
                "401 Unauthorized",
                &[("content-type", "application/json")],
                &format!(
                    r#"{{"error":{{"message":{json_echo},"type":"invalid_request_error","code":{json_echo}}}}}"#
                ),
            ),
        ),
        (
            "HTML error page",
            http_response(
                "403 Forbidden",
                &[("content-type", "text/html")],
                &format!("<html><body><p>{echo}</p></body></html>"),
            ),
        ),
        (
            "event: error",
            sse_response(&format!(
                "{}event: error\ndata: {{\"error\":{{\"message\":{json_echo}}}}}\n\n",
                content("x")
            )),
        ),
        (
            "bare error line",
            sse_response(&format!(
                "{}{{\"error\":{{\"message\":{json_echo}}}}}\n",
                content("x")
            )),
        ),
        (
            "captive portal",
            http_response(
                "200 OK",
                &[("content-type", "text/html")],
                &format!("<p>{echo}</p>"),
            ),
        ),
        (
            "malformed chunk",
            sse_response(&format!("data: {{\"choices\":{json_echo}}}\n\n")),
        ),
        (
            // Retried once (the hook sees it), then given up.
            "502 retried",
            http_response("502 Bad Gateway", &[("content-type", "text/plain")], &echo),
        ),
    ];
    for (name, bytes) in cases {
        let server = serve_sequential(move |_, stream, _| send(stream, &bytes));
        let base = format!("http://alice:{URL_PASSWORD}@{}/v1", server.addr);
        let hook_log = Arc::clone(&hooked);
        let hook: RetryHook = Arc::new(move |n: &RetryNotice<'_>| {
            hook_log
                .lock()
                .expect("hook lock")
                .push(n.error.to_string());
        });
        let client = builder(&base)
            .api_key(KEY)
            .header("api-key", HEADER_SECRET)
            .retry_policy(fast_policy().max_retries(1))
            .build()
            .expect("client");
        let options = CallOptions {
            on_retry: Some(hook),
            ..CallOptions::default()
        };
        let err = client
            .chat_with(&request(), &options, |_| {})
            .expect_err(name);
        server.stop();
        assert_clean(&err.to_string(), name);
        assert_clean(&format!("{err:?}"), name);
        if let Some(api) = err.api_error() {
            assert_clean(
                &format!("{} {:?} {:?}", api.message, api.kind, api.code),
                name,
            );
        }
        assert!(
            err.to_string().contains("<redacted>"),
            "{name}: nothing redacted in {err}"
        );
    }
    let hooked = hooked.lock().expect("hook lock");
    assert!(!hooked.is_empty(), "the 502 was retried through the hook");
    for line in hooked.iter() {
        assert_clean(line, "retry hook");
    }
    for line in logged()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        assert_clean(line, "log line");
    }
    // The client's own output: Debug and the URL it reports.
    let client = builder(&format!("http://alice:{URL_PASSWORD}@127.0.0.1:9/v1"))
        .api_key(KEY)
        .header("api-key", HEADER_SECRET)
        .proxy(ProxyConfig::Url(format!(
            "http://bob:{PROXY_PASSWORD}@127.0.0.1:9"
        )));
    assert_clean(&format!("{client:?}"), "ClientBuilder Debug");
    assert_clean(
        &format!("{:?}", client.build().expect("client")),
        "Client Debug",
    );
    // Configuration errors quote URLs without their passwords.
    for builder in [
        Client::builder().base_url(format!("http://alice:{URL_PASSWORD}@[bad/v1")),
        Client::builder().base_url(format!("ftp://alice:{URL_PASSWORD}@host/v1")),
        Client::builder().proxy(ProxyConfig::Url(format!("ftp://bob:{PROXY_PASSWORD}@[bad"))),
    ] {
        let err = builder.build().expect_err("invalid");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert_clean(&err.to_string(), "configuration error");
    }
}

#[test]
fn a_proxy_echoing_its_password_is_redacted() {
    logged();
    // The "proxy" accepts the CONNECT, then answers the tunnelled request itself with an
    // error that echoes the proxy's password.
    let proxy = serve_sequential(|_, stream, connect| {
        assert!(connect.starts_with("CONNECT "), "{connect}");
        send(stream, b"HTTP/1.1 200 Connection established\r\n\r\n");
        if read_request(stream).is_some() {
            let body = format!("proxy auth {PROXY_PASSWORD} refused");
            send(stream, &http_response("400 Bad Request", &[], &body));
        }
    });
    let client = Client::builder()
        .base_url("http://127.0.0.1:9/v1")
        .proxy(ProxyConfig::Url(format!(
            "http://bob:{PROXY_PASSWORD}@{}",
            proxy.addr
        )))
        .retry_policy(fast_policy().max_retries(1))
        .build()
        .expect("client");
    let err = client.chat(&request()).expect_err("400");
    let requests = proxy.stop();
    assert_eq!(requests.len(), 1, "one tunnel through the proxy");
    assert_eq!(err.status(), Some(400));
    assert_clean(&err.to_string(), "proxy error");
    assert!(err.to_string().contains("<redacted>"), "{err}");
    for line in logged()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        assert_clean(line, "log line");
    }
}

#[test]
fn log_lines_do_not_carry_url_userinfo() {
    logged();
    let server = serve_sequential(|_, stream, _| send(stream, &sse_response(&answer_body())));
    let base = format!("http://alice:{URL_PASSWORD}@{}/v1", server.addr);
    let client = builder(&base).build().expect("client");
    let response = client.chat(&request()).expect("answered");
    server.stop();
    assert_eq!(response.content(), "Hi");
    let lines = logged().lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        lines.iter().any(|l| l.contains("POST http://<redacted>@")),
        "the attempt is logged, redacted: {lines:?}"
    );
    for line in lines.iter() {
        assert_clean(line, "log line");
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies larger than the limits
// ---------------------------------------------------------------------------------------------

#[test]
fn a_completion_body_over_the_response_limit_is_refused_not_retried() {
    let text = "x".repeat(200_000);
    let body = format!(
        r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}]}}"#
    );
    for (limit, want) in [
        (100_000, Err(FailureKind::LimitExceeded)),
        (1 << 20, Ok(200_000)),
    ] {
        let body = body.clone();
        let (result, requests) = call_against(
            move |_, stream| {
                send(
                    stream,
                    &http_response("200 OK", &[("content-type", "application/json")], &body),
                );
            },
            |b| {
                b.chat_limits(ChatLimits {
                    max_response_bytes: limit,
                    ..ChatLimits::default()
                })
            },
        );
        assert_eq!(
            result.map(|r| r.content().len()).map_err(|e| e.kind()),
            want,
            "{limit}"
        );
        assert_eq!(requests, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials, the conversation id and URLs
// ---------------------------------------------------------------------------------------------

/// A change to a client builder, for tables of them.
type Configure = dyn Fn(ClientBuilder) -> ClientBuilder;

/// The values of header `name` in a raw request (names compared without case).
fn header_values(request: &str, name: &str) -> Vec<String> {
    let head = request.split("\r\n\r\n").next().unwrap_or_default();
    let lines = head.lines().filter_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    });
    lines.collect()
}

/// The request a client built by `configure` sends for one chat.
fn request_sent_by(configure: impl FnOnce(ClientBuilder) -> ClientBuilder) -> String {
    let server = serve_sequential(|_, stream, _| send(stream, &sse_response(&answer_body())));
    let client = configure(builder(&server.base_url()))
        .build()
        .expect("client");
    client.chat(&request()).expect("answer");
    let mut requests = server.stop();
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

#[test]
fn a_given_header_replaces_the_one_of_the_same_name() {
    // (what the builder is given, the header to look at, the values that go out)
    let table: [(&Configure, &str, &[&str]); 5] = [
        (
            &|b| b.api_key(KEY),
            "authorization",
            &["Bearer sk-test-KEY-0123456789"],
        ),
        // A caller's Authorization (any case) replaces the key's: the key is not sent too.
        (
            &|b| b.api_key(KEY).header("AUTHORIZATION", "Bearer other"),
            "authorization",
            &["Bearer other"],
        ),
        (
            &|b| b.header("authorization", "Bearer other").api_key(KEY),
            "authorization",
            &["Bearer other"],
        ),
        (
            &|b| b.header("X-Team", "red").header("x-team", "blue"),
            "x-team",
            &["blue"],
        ),
        // Leading and trailing whitespace of a key is not part of it.
        (
            &|b| b.api_key(" \tsk-1 "),
            "authorization",
            &["Bearer sk-1"],
        ),
    ];
    for (configure, name, want) in table {
        let request = request_sent_by(configure);
        assert_eq!(header_values(&request, name), want, "{request}");
        if want != ["Bearer sk-test-KEY-0123456789"] {
            assert!(!request.contains(KEY), "{request}");
        }
    }
}

#[test]
fn keys_urls_and_headers_that_cannot_be_sent_fail_when_the_client_is_built() {
    // (what the builder is given, what the error says)
    let table: [(&Configure, &str); 7] = [
        (
            &|b| b.api_key("sk-é"),
            "the API key must be printable ASCII",
        ),
        (
            &|b| b.api_key("sk-1\r\nX-Injected: 1"),
            "the API key must be printable ASCII",
        ),
        (
            &|b| b.api_key("sk 1"),
            "the API key must be printable ASCII",
        ),
        (&|b| b.api_key("   "), "the API key must be printable ASCII"),
        (
            &|b| b.base_url("http://127.0.0.1:1/v1?api-version=1"),
            "has a query or a fragment",
        ),
        (
            &|b| b.base_url("http://127.0.0.1:1/v1#frag"),
            "has a query or a fragment",
        ),
        (
            &|b| b.header("X-Team", "a\r\nX-Injected: 1"),
            "invalid value for header x-team",
        ),
    ];
    for (configure, says) in table {
        let err = configure(builder("http://127.0.0.1:1/v1"))
            .build()
            .expect_err("a config error");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(
            !err.to_string().contains("sk-"),
            "the key in the message: {err}"
        );
    }
}

/// The conversation id lets anyone who holds it read or stop the stream on llama.cpp: it
/// is redacted like a credential in log lines (the resume's GET, the stop's DELETE) and in
/// what a call returns.
#[cfg(feature = "mock")]
#[test]
fn the_conversation_id_never_appears_in_logs_or_results() {
    use oai_sse::mock::{MockServer, Replies, Script};
    logged();
    let text = "The sea is wide and the boats are small, but the harbour lights are on.";
    let rule: oai_sse::mock::FaultRule = "close-after=400,times=1".parse().expect("fault");
    let server =
        MockServer::start(Replies::from(Script::new().text(text)).fault(rule)).expect("mock");
    let client = builder(&server.base_url())
        .retry_policy(fast_policy().resume(true))
        .build()
        .expect("client");
    // A resumed call (GET of the replay route), then one stopped early (DELETE).
    let resumed = client.chat(&request()).expect("answer");
    assert_eq!(resumed.content(), text);
    let mut stream = client.stream(&request()).expect("stream");
    let _ = stream.next_event().expect("first event");
    drop(stream);
    let requests = server.requests();
    let routes: Vec<String> = requests.iter().map(|r| r.route().to_owned()).collect();
    assert!(
        routes.iter().any(|r| r.contains("stream")),
        "no resume: {routes:?}"
    );
    let ids: Vec<String> = requests
        .iter()
        .filter_map(|r| r.header("x-conversation-id").map(str::to_owned))
        .collect();
    assert!(ids.len() >= 2, "{routes:?}");
    assert_ne!(ids[0], ids[ids.len() - 1], "each call has its own id");
    for id in &ids {
        let secret = id.strip_prefix("oai-sse-").expect("our prefix");
        assert!(
            secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
            "128 random bits: {id}"
        );
        let logs = logged()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n");
        assert!(!logs.contains(secret), "the id {id} in the logs:\n{logs}");
        assert!(
            !format!("{resumed:?}").contains(secret),
            "the id in the response"
        );
    }
    let logs = logged()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join("\n");
    assert!(
        logs.contains("oai-sse-"),
        "the redacted form is logged:\n{logs}"
    );
}

/// A request head too large to send is the caller's mistake, said as such before anything
/// goes out; a response head that is not HTTP is a protocol error, said once (ureq's own
/// message starts with `protocol:` too).
#[test]
fn a_request_head_too_large_and_a_garbled_response_head_are_clear_errors() {
    let server = serve_sequential(|_, stream, _| send(stream, &sse_response(&answer_body())));
    for size in [20 * 1024, 200 * 1024] {
        let client = builder(&server.base_url())
            .header("X-Big", "b".repeat(size))
            .build()
            .expect("client");
        let err = client.chat(&request()).expect_err("too large to send");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("a header value or the URL is too long"),
            "{err}"
        );
    }
    assert_eq!(server.stop().len(), 0, "nothing was sent");

    let (result, requests) = call_against(
        |_, stream| send(stream, b"HTTP/1.1 200 OK\r\nnot a header\r\n\r\n"),
        |b| b,
    );
    let err = result.expect_err("a garbled head");
    let shown = err.to_string();
    assert_eq!(err.kind(), FailureKind::Protocol, "{shown}");
    assert_eq!(shown.matches("protocol").count(), 1, "{shown}");
    assert_eq!(requests, 1, "not retried");
}
