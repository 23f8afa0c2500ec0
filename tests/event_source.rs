//! `EventSource` against the mock's event feed (`/v1/events`) and hand-written servers:
//! reconnection as the WHATWG standard says, Last-Event-ID at the server, every event
//! exactly once across cuts and resets, the reconnection time, terminal answers, POST
//! bodies, the idle timeout, cancel and the retry budget.

mod common;

use oai_sse::mock::{FaultRule, MockServer, RecordedRequest, Replies, Script};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    CancelHandle, Client, DelaySource, Error, EventSource, FailureKind, OwnedEvent,
    OwnedSourceEvent, Reconnect, SourceEvent,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Most items a test reads from one source: a bound on every loop.
const MAX_ITEMS: usize = 10_000;

fn server(faults: &[&str]) -> MockServer {
    let mut replies = Replies::from(Script::new());
    for fault in faults {
        let rule: FaultRule = fault.parse().expect("valid fault spec");
        replies = replies.fault(rule);
    }
    MockServer::start(replies).expect("mock server")
}

/// A client whose limits keep a broken test from hanging.
fn client() -> Client {
    Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Reconnects at once, as often as needed in a row.
fn eager() -> RetryPolicy {
    RetryPolicy::default()
        .max_retries(5)
        .initial_delay(Duration::ZERO)
        .jitter(0.0)
}

fn feed_url(server: &MockServer, query: &str) -> String {
    format!("{}/events?{query}", server.base_url())
}

/// Everything a source handed out, in order, and how it ended.
#[derive(Debug, Default)]
struct Seen {
    items: Vec<OwnedSourceEvent>,
    end: Option<Error>,
}

impl Seen {
    fn events(&self) -> Vec<&OwnedEvent> {
        let events = self.items.iter().filter_map(|item| match item {
            OwnedSourceEvent::Event(event) => Some(event),
            _ => None,
        });
        events.collect()
    }

    fn ids(&self) -> Vec<&str> {
        self.events().iter().map(|e| e.id.as_str()).collect()
    }

    fn reconnects(&self) -> Vec<&Reconnect> {
        let reconnects = self.items.iter().filter_map(|item| match item {
            OwnedSourceEvent::Reconnect(r) => Some(r),
            _ => None,
        });
        reconnects.collect()
    }
}

fn read_all(mut source: EventSource) -> Seen {
    let mut seen = Seen::default();
    while seen.items.len() < MAX_ITEMS {
        match source.next_event() {
            Ok(Some(item)) => seen.items.push(item.to_owned_event()),
            Ok(None) => return seen,
            Err(err) => {
                seen.end = Some(err);
                return seen;
            }
        }
    }
    panic!("more than {MAX_ITEMS} items");
}

fn feed_requests(server: &MockServer) -> Vec<RecordedRequest> {
    let requests = server.requests().into_iter();
    requests.filter(|r| r.route() == "/events").collect()
}

/// The ids `1..=n` as strings.
fn ids(n: u64) -> Vec<String> {
    (1..=n).map(|k| k.to_string()).collect()
}

/// The whole response to a feed request on a kept-alive connection, as the client's first
/// request gets it: status line, headers and chunk framing.
fn raw_feed_response(server: &MockServer, query: &str) -> Vec<u8> {
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(tcp, "GET /v1/events?{query} HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let n = tcp.read(&mut buf).expect("read");
        assert!(n > 0 && raw.len() < 1 << 20, "response ended early");
        raw.extend_from_slice(&buf[..n]);
    }
    raw
}

/// The checks every cut run makes: all events once, in order; each reconnect asked for
/// the events after the last one delivered, and the server saw exactly that.
fn assert_exactly_once(seen: &Seen, server: &MockServer, count: u64, what: &str) {
    assert!(seen.end.is_none(), "{what}: {:?}", seen.end);
    assert_eq!(seen.ids(), ids(count), "{what}");
    // The last event ID before each reconnect is what that reconnect sends.
    let mut last = String::new();
    let mut sent = vec![None];
    for item in &seen.items {
        match item {
            OwnedSourceEvent::Event(event) => last.clone_from(&event.id),
            OwnedSourceEvent::Reconnect(r) => {
                assert_eq!(r.last_event_id, last, "{what}");
                sent.push(Some(last.clone()).filter(|id| !id.is_empty()));
            }
            _ => {}
        }
    }
    let at_server: Vec<Option<String>> = feed_requests(server)
        .iter()
        .map(|r| r.header("last-event-id").map(str::to_owned))
        .collect();
    assert_eq!(at_server, sent, "{what}: Last-Event-ID at the server");
}

/// Runs `run(offset)` for every offset, on a few threads: each run mostly waits (a fresh
/// server, its accept poll, its reconnects), so spreading them shortens the test.
fn for_each_offset(offsets: Vec<usize>, run: impl Fn(usize) + Sync) {
    const THREADS: usize = 4;
    std::thread::scope(|scope| {
        for first in 0..THREADS {
            let (offsets, run) = (&offsets, &run);
            scope.spawn(move || {
                offsets
                    .iter()
                    .skip(first)
                    .step_by(THREADS)
                    .for_each(|&o| run(o))
            });
        }
    });
}

#[test]
fn every_event_exactly_once_when_cut_at_every_byte_offset() {
    const QUERY: &str = "count=50&end=204";
    let full = raw_feed_response(&server(&[]), QUERY);
    let client = client();
    let reconnected = std::sync::atomic::AtomicUsize::new(0);
    // One past the end: the cut falls after the response, which then ends whole.
    for_each_offset((0..=full.len()).collect(), |cut| {
        let server = server(&[&format!("close-after={cut},times=1")]);
        let source = client
            .events(feed_url(&server, QUERY))
            .retry_policy(eager())
            .build()
            .expect("source");
        let seen = read_all(source);
        assert_exactly_once(&seen, &server, 50, &format!("FIN after {cut} bytes"));
        // Every run ends with a reconnect that gets the 204; a cut adds one before it.
        let reconnects = seen.reconnects();
        assert!((1..=2).contains(&reconnects.len()), "cut at {cut}");
        let cut_reconnects = reconnects.len() - 1;
        reconnected.fetch_add(cut_reconnects, std::sync::atomic::Ordering::Relaxed);
    });
    let reconnected = reconnected.into_inner();
    assert!(
        reconnected >= full.len() - 10,
        "{reconnected} of {} cuts reconnected",
        full.len()
    );
}

#[test]
fn every_event_exactly_once_when_reset_at_a_spread_of_offsets() {
    const QUERY: &str = "count=50&multiline=1&end=204";
    let full = raw_feed_response(&server(&[]), QUERY);
    // The reconnect after the reset is cut too, inside its first event: a connection that
    // delivers nothing must not lose the last event ID.
    let head = full
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4;
    let early = format!("close-after={},after=1,times=1", head + 10);
    let client = client();
    for_each_offset((0..full.len()).step_by(13).collect(), |cut| {
        let server = server(&[&format!("reset-after={cut},times=1"), &early]);
        let source = client
            .events(feed_url(&server, QUERY))
            .retry_policy(eager())
            .build()
            .expect("source");
        let seen = read_all(source);
        assert_exactly_once(&seen, &server, 50, &format!("RST after {cut} bytes"));
        for event in seen.events() {
            let n = &event.id;
            assert_eq!(
                event.data,
                format!("{{\n  \"n\": {n}\n}}"),
                "RST after {cut}"
            );
        }
    });
}

#[test]
fn a_cut_on_every_response_still_delivers_everything_as_the_budget_renews() {
    // Each response is cut after ~4 events: 13 reconnects for 50 events, with a budget of
    // one reconnect in a row. A connection that delivered something renews the budget.
    let server = server(&["close-after=300"]);
    let policy = eager().max_retries(1);
    let source = client()
        .events(feed_url(&server, "count=50&end=204"))
        .retry_policy(policy)
        .build()
        .expect("source");
    let seen = read_all(source);
    assert_exactly_once(&seen, &server, 50, "cut on every response");
    let reconnects = seen.reconnects();
    assert!(reconnects.len() > 10, "{}", reconnects.len());
    assert!(reconnects.iter().all(|r| r.retry == 1), "{reconnects:?}");
}

#[test]
fn retry_field_sets_the_next_wait_and_the_backoff_follows() {
    // Response 1: three events after `retry: 300`, then a clean end; response 2: a 503;
    // response 3: the 204 for a client that has everything.
    let server = server(&["status=503,after=1,times=1"]);
    let policy = RetryPolicy::default()
        .initial_delay(Duration::from_millis(400))
        .jitter(0.0);
    let mut source = client()
        .events(feed_url(&server, "count=3&retry=300&end=204"))
        .retry_policy(policy)
        .build()
        .expect("source");
    let mut items = Vec::new();
    let mut waited = Vec::new();
    let mut since = Instant::now();
    while let Some(item) = source.next_event().expect("no failure") {
        if let SourceEvent::Reconnect(_) = item {
            waited.push(since.elapsed());
        }
        items.push(item.to_owned_event());
        assert!(items.len() < 20);
        since = Instant::now();
    }
    // The final call waited for the last reconnect, then got the 204.
    waited.push(since.elapsed());
    assert!(
        matches!(items[0], OwnedSourceEvent::Retry(d) if d == Duration::from_millis(300)),
        "{items:?}"
    );
    let reconnects: Vec<(Duration, DelaySource, FailureKind, u32)> = items
        .iter()
        .filter_map(|item| match item {
            OwnedSourceEvent::Reconnect(r) => Some((r.delay, r.delay_source, r.reason, r.retry)),
            _ => None,
        })
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(
        reconnects,
        [
            (
                ms(300),
                DelaySource::RetryField,
                FailureKind::UnexpectedEof,
                1
            ),
            // Second in a row: the backoff's 400 × 2 is longer than the 300 ms floor.
            (ms(800), DelaySource::Backoff, FailureKind::HttpStatus, 2),
        ]
    );
    // The waits really happened: before the 503 and before the 204.
    assert!(waited[1] >= ms(300), "{waited:?}");
    assert!(waited[2] >= ms(800), "{waited:?}");
    assert_eq!(source.reconnection_time(), Some(ms(300)));
    let at_server: Vec<_> = feed_requests(&server)
        .iter()
        .map(|r| r.header("last-event-id").map(str::to_owned))
        .collect();
    assert_eq!(at_server, [None, Some("3".into()), Some("3".into())]);
}

#[test]
fn retry_after_on_a_429_sets_the_wait() {
    let server = server(&["status=429,retry-after=1,times=1"]);
    let start = Instant::now();
    let seen = read_all(
        client()
            .events(feed_url(&server, "count=2&end=204"))
            .retry_policy(eager())
            .build()
            .expect("source"),
    );
    assert!(seen.end.is_none(), "{:?}", seen.end);
    assert_eq!(seen.ids(), ids(2));
    let first = seen.reconnects()[0];
    assert_eq!(
        (first.delay, first.delay_source, first.error.status()),
        (Duration::from_secs(1), DelaySource::RetryAfter, Some(429))
    );
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[test]
fn terminal_answers_end_or_fail_without_reconnecting() {
    let server = server(&[]);
    let base = server.base_url();
    // (url, Ok(()) for a clean end, or the failure kind and status)
    // (route, Ok or the error's kind and status)
    type Outcome = Result<(), (FailureKind, Option<u16>)>;
    let table: &[(String, Outcome)] = &[
        (format!("{base}/events?status=204"), Ok(())),
        (
            format!("{base}/events?status=404"),
            Err((FailureKind::HttpStatus, Some(404))),
        ),
        (
            format!("{base}/events?status=500"),
            Err((FailureKind::HttpStatus, Some(500))),
        ),
        (
            format!("{base}/events?status=401"),
            Err((FailureKind::HttpStatus, Some(401))),
        ),
        // A JSON answer is not an event stream.
        (
            format!("{base}/models"),
            Err((FailureKind::UnexpectedContentType, None)),
        ),
        (
            format!("{base}/nowhere"),
            Err((FailureKind::HttpStatus, Some(404))),
        ),
    ];
    let client = client();
    for (url, want) in table {
        let before = server.request_count();
        let mut source = client
            .events(url)
            .retry_policy(eager())
            .build()
            .expect("source");
        let got = source
            .next_event()
            .map(|item| item.map(|i| i.to_owned_event()));
        match (&got, want) {
            (Ok(None), Ok(())) => {}
            (Err(err), Err((kind, status))) => {
                assert_eq!((err.kind(), err.status()), (*kind, *status), "{url}");
                assert!(err.retries().is_empty(), "{url}");
            }
            _ => panic!("{url}: {got:?}"),
        }
        assert_eq!(server.request_count() - before, 1, "{url}: one request");
        // It stays ended (or failed), sending nothing more.
        match (source.next_event(), want) {
            (Ok(None), Ok(())) => {}
            (Err(err), Err((kind, _))) => assert_eq!(err.kind(), *kind),
            (other, _) => panic!("{url}: then {other:?}"),
        }
        assert_eq!(server.request_count() - before, 1, "{url}: one request");
    }
}

#[test]
fn a_clean_end_ends_the_source_without_reconnect_on_eof() {
    let server = server(&[]);
    let seen = read_all(
        client()
            .events(feed_url(&server, "count=3"))
            .reconnect_on_eof(false)
            .build()
            .expect("source"),
    );
    assert!(
        seen.end.is_none() && seen.reconnects().is_empty(),
        "{seen:?}"
    );
    assert_eq!(seen.ids(), ids(3));
    assert_eq!(server.feed_count(), 1);
}

#[test]
fn a_priming_event_sets_the_id_the_reconnect_sends() {
    const QUERY: &str = "count=3&priming=1&end=204";
    // Cut right after the priming block (`id: 0` and a blank line), before event 1.
    let full = raw_feed_response(&server(&[]), QUERY);
    let priming = b"\r\nid: 0\n\n\r\n";
    let cut = full
        .windows(priming.len())
        .position(|w| w == priming)
        .expect("priming block")
        + priming.len();
    let server = server(&[&format!("close-after={cut},times=1")]);
    let seen = read_all(
        client()
            .events(feed_url(&server, QUERY))
            .retry_policy(eager())
            .build()
            .expect("source"),
    );
    assert!(seen.end.is_none(), "{:?}", seen.end);
    // The priming block dispatched no event, but its id went out with the reconnect.
    assert_eq!(seen.ids(), ids(3));
    assert_eq!(seen.reconnects()[0].last_event_id, "0");
    assert_eq!(
        feed_requests(&server)[1].header("last-event-id"),
        Some("0"),
        "{seen:?}"
    );
}

#[test]
fn the_last_event_id_outlives_the_connection_that_set_it() {
    // Connection 1 sets id 5 and ends; connection 2 (asked with Last-Event-ID: 5) sends an
    // event without an id field, which still carries 5; connection 3 gets 204.
    let server = common::serve(3, |n, stream, request| {
        let request = request.to_ascii_lowercase();
        let body = match n {
            0 => "id: 5\ndata: a\n\n",
            1 if request.contains("last-event-id: 5\r\n") => "data: b\n\n",
            _ if request.contains("last-event-id: 5\r\n") => {
                return common::send(stream, b"HTTP/1.1 204 No Content\r\n\r\n");
            }
            _ => return common::send(stream, &common::http_response("400 Bad", &[], "")),
        };
        common::send(stream, &common::sse_response(body));
    });
    let source = client()
        .events(format!("http://{}/feed", server.addr))
        .retry_policy(eager())
        .build()
        .expect("source");
    let seen = read_all(source);
    assert!(seen.end.is_none(), "{:?}", seen.end);
    let events: Vec<(&str, &str)> = seen
        .events()
        .iter()
        .map(|e| (e.data.as_str(), e.id.as_str()))
        .collect();
    assert_eq!(events, [("a", "5"), ("b", "5")]);
    assert_eq!(server.join().len(), 3);
}

#[test]
fn an_initial_last_event_id_goes_out_with_the_first_request() {
    let server = server(&[]);
    let seen = read_all(
        client()
            .events(feed_url(&server, "count=5&end=204"))
            .last_event_id("3")
            .retry_policy(eager())
            .build()
            .expect("source"),
    );
    assert!(seen.end.is_none(), "{:?}", seen.end);
    assert_eq!(seen.ids(), ["4", "5"]);
    assert_eq!(feed_requests(&server)[0].header("last-event-id"), Some("3"));
}

#[test]
fn post_streams_are_resent_with_their_body_and_headers() {
    let server = server(&["close-after=200,times=1"]);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let client = Client::builder()
        .api_key("sk-test")
        .header("x-client", "on every request")
        .build()
        .expect("client");
    let seen = read_all(
        client
            .events(feed_url(&server, "count=5&end=204"))
            .post("application/json", body)
            .header("Accept", "application/json, text/event-stream")
            .header("Mcp-Session-Id", "s-1")
            .retry_policy(eager())
            .build()
            .expect("source"),
    );
    assert!(seen.end.is_none(), "{:?}", seen.end);
    assert_eq!(seen.ids(), ids(5));
    let requests = feed_requests(&server);
    assert_eq!(requests.len(), 3, "cut, rest, 204");
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.method, "POST", "request {i}");
        assert_eq!(request.body, body.as_bytes(), "request {i}");
        assert!(request.authorization, "request {i}");
        let headers: Vec<(&str, Option<&str>)> = [
            "content-type",
            "accept",
            "cache-control",
            "mcp-session-id",
            "x-client",
        ]
        .iter()
        .map(|name| (*name, request.header(name)))
        .collect();
        assert_eq!(
            headers,
            [
                ("content-type", Some("application/json")),
                ("accept", Some("application/json, text/event-stream")),
                ("cache-control", Some("no-cache")),
                ("mcp-session-id", Some("s-1")),
                ("x-client", Some("on every request")),
            ],
            "request {i}"
        );
        let accepts = request
            .headers
            .iter()
            .filter(|(n, _)| n == "accept")
            .count();
        assert_eq!(accepts, 1, "the caller's Accept replaces the default");
    }
    assert!(requests[1].header("last-event-id").is_some());
}

#[test]
fn idle_timeout_fires_on_silence_but_not_while_pings_arrive() {
    // (query, whether the silence between events must trip the 300 ms idle limit)
    let table = [
        ("count=2&interval-ms=1200&end=204", true),
        ("count=2&interval-ms=1200&ping-ms=100&end=204", false),
    ];
    for (query, idles) in table {
        let server = server(&[]);
        let seen = read_all(
            client()
                .events(feed_url(&server, query))
                .idle_timeout(Duration::from_millis(300))
                .comments(true)
                .retry_policy(eager())
                .build()
                .expect("source"),
        );
        assert!(seen.end.is_none(), "{query}: {:?}", seen.end);
        assert_eq!(seen.ids(), ids(2), "{query}");
        let reasons: Vec<FailureKind> = seen.reconnects().iter().map(|r| r.reason).collect();
        let pings = seen
            .items
            .iter()
            .filter(|i| matches!(i, OwnedSourceEvent::Comment(c) if c == "ping"))
            .count();
        if idles {
            // Event 1, silence, reconnect (event 2 comes at once), clean end, 204.
            assert_eq!(
                reasons,
                [FailureKind::IdleTimeout, FailureKind::UnexpectedEof],
                "{query}"
            );
            assert_eq!(pings, 0, "{query}");
        } else {
            assert_eq!(reasons, [FailureKind::UnexpectedEof], "{query}");
            assert!(pings >= 10, "{query}: {pings} pings");
        }
    }
}

#[test]
fn comments_are_handed_out_only_when_asked_for() {
    let server = server(&[]);
    for comments in [false, true] {
        let seen = read_all(
            client()
                .events(feed_url(&server, "count=2&interval-ms=50&ping-ms=10"))
                .comments(comments)
                .reconnect_on_eof(false)
                .build()
                .expect("source"),
        );
        let got = seen
            .items
            .iter()
            .any(|i| matches!(i, OwnedSourceEvent::Comment(_)));
        assert_eq!(got, comments);
        assert_eq!(seen.ids(), ids(2));
    }
}

#[test]
fn cancel_ends_a_blocked_read_and_a_wait_between_reconnects() {
    let server = server(&[]);
    // (query, items read before cancelling: the read blocks in `hold`, the wait in the
    // 60 s reconnection time)
    for (query, before) in [("count=1&end=hold", 1), ("count=1&retry=60000", 3)] {
        let cancel = CancelHandle::new();
        let mut source = client()
            .events(feed_url(&server, query))
            .cancel(cancel.clone())
            .build()
            .expect("source");
        for _ in 0..before {
            source.next_event().expect("item").expect("not the end");
        }
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel();
        });
        let start = Instant::now();
        let err = source.next_event().expect_err("cancelled");
        assert!(matches!(err, Error::Cancelled), "{query}: {err:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "{query}");
        canceller.join().expect("canceller");
        assert!(matches!(source.next_event(), Err(Error::Cancelled)));
    }
}

#[test]
fn the_budget_runs_out_on_failures_in_a_row() {
    let server = server(&["status=502"]);
    let policy = eager().max_retries(2);
    let seen = read_all(
        client()
            .events(feed_url(&server, "count=1"))
            .retry_policy(policy)
            .build()
            .expect("source"),
    );
    let retries: Vec<u32> = seen.reconnects().iter().map(|r| r.retry).collect();
    assert_eq!(retries, [1, 2]);
    let err = seen.end.expect("gave up");
    assert_eq!((err.status(), err.retries().len()), (Some(502), 2));
    assert!(
        err.to_string().starts_with("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(server.feed_count(), 3);
}

#[test]
fn a_refused_connection_is_waited_out() {
    // Nothing listens on the port at first; the feed appears there a moment later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        MockServer::start_on(addr, Script::new()).expect("same port")
    });
    let policy = RetryPolicy::default()
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(100))
        // Nothing answered there yet: a feed being started is waited for when asked.
        .wait_for_unseen_server(true);
    let seen = read_all(
        client()
            .events(format!("http://{addr}/v1/events?count=2&end=204"))
            .retry_policy(policy)
            .build()
            .expect("source"),
    );
    let server = later.join().expect("server thread");
    assert!(seen.end.is_none(), "{:?}", seen.end);
    assert_eq!(seen.ids(), ids(2));
    let refused = seen
        .reconnects()
        .iter()
        .filter(|r| r.reason == FailureKind::ConnectionRefused)
        .count();
    assert!(refused >= 1, "{seen:?}");
    drop(server);
}

#[test]
fn the_iterator_yields_owned_items() {
    let server = server(&[]);
    let source = EventSource::builder(feed_url(&server, "count=3&event=&end=204"))
        .retry_policy(eager())
        .build()
        .expect("source");
    let mut events = Vec::new();
    let mut reconnects = 0;
    for item in source {
        match item.expect("no failure") {
            OwnedSourceEvent::Event(event) => events.push(event),
            OwnedSourceEvent::Reconnect(_) => reconnects += 1,
            other => panic!("{other:?}"),
        }
    }
    let want: Vec<OwnedEvent> = (1..=3)
        .map(|k| OwnedEvent {
            event: "message".into(),
            data: format!("{{\"n\":{k}}}"),
            id: k.to_string(),
        })
        .collect();
    assert_eq!(events, want);
    assert_eq!(reconnects, 1);
}

// ---------------------------------------------------------------------------------------------
// Hostile feeds: reconnect storms and ids a header cannot carry
// ---------------------------------------------------------------------------------------------

/// A feed server whose every connection gets `body` as a whole `text/event-stream` response
/// and is then closed; it records each request.
fn answering_every_connection(
    body: impl Fn(usize) -> String + Send + 'static,
) -> common::SeqServer {
    common::serve_sequential(move |n, stream, _| {
        let body = body(n);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        common::send(stream, head.as_bytes());
        common::send(stream, body.as_bytes());
    })
}

/// A connection that delivers a `retry:` field or a comment but no event does not renew the
/// budget, and a `retry: 0` does not make the client spin: the source gives up after
/// `max_retries` reconnects in a row, each at least the floor apart.
#[test]
fn feeds_that_deliver_no_event_spend_the_budget_at_a_bounded_rate() {
    for body in [
        "retry: 0\n\n",
        "retry: 1\n: hello\n\n",
        ": only a comment\n\n",
    ] {
        let server = answering_every_connection(move |_| body.to_owned());
        let policy = RetryPolicy::default().max_retries(3);
        let started = Instant::now();
        let seen = read_all(
            client()
                .events(format!("http://{}/feed", server.addr))
                .retry_policy(policy)
                .build()
                .expect("source"),
        );
        let elapsed = started.elapsed();
        let err = seen.end.as_ref().expect("the source gave up");
        assert!(
            matches!(err, Error::AfterRetries(_)),
            "{body:?}: {err} ({seen:?})"
        );
        let retries: Vec<u32> = seen.reconnects().iter().map(|r| r.retry).collect();
        assert_eq!(retries, [1, 2, 3], "{body:?}: the budget was renewed");
        assert_eq!(server.stop().len(), 4, "{body:?}: connections");
        if body.starts_with("retry") {
            for r in seen.reconnects() {
                assert!(
                    r.delay >= EventSource::MIN_RECONNECTION_TIME,
                    "{body:?}: {:?} after a `retry: 0`",
                    r.delay
                );
            }
            // Three waits happened, each at least the floor.
            assert!(
                elapsed >= 3 * EventSource::MIN_RECONNECTION_TIME,
                "{body:?}: {elapsed:?}"
            );
        }
    }
}

/// A feed that delivers one event per connection with `retry: 0` renews its budget every
/// time (rightly: it makes progress), so it reconnects forever — but no faster than the
/// floor, which the `Reconnect` items report as the wait.
#[test]
fn retry_zero_is_raised_to_the_floor() {
    let server = answering_every_connection(|n| format!("retry: 0\nid: {n}\ndata: x\n\n"));
    let mut source = client()
        .events(format!("http://{}/feed", server.addr))
        .build()
        .expect("source");
    let started = Instant::now();
    let mut reconnects = Vec::new();
    while reconnects.len() < 5 {
        match source.next_event().expect("no failure") {
            Some(SourceEvent::Reconnect(r)) => reconnects.push((r.retry, r.delay, r.delay_source)),
            Some(_) => {}
            None => panic!("the feed ended"),
        }
    }
    let elapsed = started.elapsed();
    for (retry, delay, source) in &reconnects {
        assert_eq!(
            (*retry, *source),
            (1, DelaySource::RetryField),
            "{reconnects:?}"
        );
        assert!(
            *delay >= EventSource::MIN_RECONNECTION_TIME,
            "{reconnects:?}"
        );
    }
    // Four of the five waits are over (the fifth is waited by the next call).
    assert!(
        elapsed >= 4 * EventSource::MIN_RECONNECTION_TIME,
        "{elapsed:?}"
    );
    drop(source);
    assert!(server.stop().len() <= 6);
}

/// An event ID too long for a request head, or with control characters a header cannot
/// carry (both valid in an event stream), is not sent: the reconnect asks for the events
/// after the last ID that can be sent, instead of failing or silently starting over.
#[test]
fn an_id_a_header_cannot_carry_keeps_the_last_sendable_one() {
    let long = "x".repeat(EventSource::MAX_LAST_EVENT_ID + 1);
    let fits = "y".repeat(EventSource::MAX_LAST_EVENT_ID);
    for (bad, what) in [
        (long.as_str(), "one byte over the limit"),
        (&"z".repeat(60 * 1024), "60 KiB"),
        ("a\u{1}b", "\\x01"),
        ("a\u{7f}b", "\\x7f"),
    ] {
        for good in ["7", fits.as_str()] {
            let body = format!("id: {good}\ndata: a\n\nid: {bad}\ndata: b\n\n");
            let server = common::serve(2, move |n, stream, request| {
                if n == 0 {
                    return common::send(stream, &common::sse_response(&body));
                }
                let sent = request
                    .lines()
                    .find_map(|l| l.strip_prefix("last-event-id: "))
                    .unwrap_or("(none)")
                    .to_owned();
                let answer = common::http_response(
                    "200 OK",
                    &[("content-type", "text/event-stream")],
                    &format!("data: {sent}\n\n"),
                );
                common::send(stream, &answer);
            });
            let mut source = client()
                .events(format!("http://{}/feed", server.addr))
                .retry_policy(eager())
                .build()
                .expect("source");
            let mut data = Vec::new();
            let mut last_reconnect = None;
            while data.len() < 3 {
                match source.next_event() {
                    Ok(Some(SourceEvent::Event(e))) => data.push(e.data.to_owned()),
                    Ok(Some(SourceEvent::Reconnect(r))) => {
                        last_reconnect = Some(r.last_event_id.clone())
                    }
                    Ok(Some(_)) => {}
                    other => panic!("{what}: {other:?}"),
                }
            }
            drop(source);
            let requests = server.join();
            assert_eq!(
                data,
                ["a", "b", good],
                "{what}: the reconnect sent the last sendable id"
            );
            assert_eq!(last_reconnect.as_deref(), Some(good), "{what}");
            assert_eq!(requests.len(), 2, "{what}");
        }
    }
}
