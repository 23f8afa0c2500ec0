//! The retry engine against hand-written loopback servers: a stream cut (FIN or RST) at every
//! byte offset, stalls, refused connections, server-requested waits, which statuses and
//! stream errors are retried, the retry budget, cancel, and the events a streaming caller
//! sees across a restart. These servers have no stream-replay route, so resume is off here
//! (tests/resume.rs covers it). Backoffs are milliseconds so the whole file runs in a few
//! seconds.

mod common;

use common::*;
use oai_sse::retry::{RetryAction, RetryPolicy, RetryRecord, Rng};
use oai_sse::{
    CallOptions, CancelHandle, ChatRequest, ChatResponse, Client, Error, FailureKind, Message,
    OwnedStreamEvent, ProxyConfig, RetryHook, RetryNotice, StreamError,
};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short, jitter-free backoff: 10 ms, 20 ms, 40 ms, 50 ms, ...; restart, not resume.
fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(ms(10))
        .max_delay(ms(50))
        .jitter(0.0)
        .resume(false)
}

fn client_with(base_url: &str, policy: RetryPolicy) -> Client {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .retry_policy(policy)
        .connect_timeout(Duration::from_secs(5))
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn client(base_url: &str) -> Client {
    client_with(base_url, fast_policy())
}

fn request() -> ChatRequest {
    ChatRequest::new("test-model", vec![Message::user("hi")])
}

/// Runs the call and returns its result with every event the caller saw.
fn call(
    client: &Client,
    request: &ChatRequest,
    options: &CallOptions,
) -> (Result<ChatResponse, Error>, Vec<OwnedStreamEvent>) {
    let mut events = Vec::new();
    let result = client.chat_with(request, options, |e| events.push(e.to_owned_event()));
    (result, events)
}

fn record(attempt: u32, reason: FailureKind, delay_ms: u64) -> RetryRecord {
    RetryRecord::new(attempt, reason, delay_ms, RetryAction::Restarted)
}

/// The records without where each attempt broke (the tables name the attempts, reasons,
/// waits and actions).
fn records(history: &[RetryRecord]) -> Vec<RetryRecord> {
    history
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.at_byte = 0;
            r
        })
        .collect()
}

fn continued(attempt: u32) -> OwnedStreamEvent {
    OwnedStreamEvent::Continued {
        attempt,
        regenerated: true,
    }
}

fn restart(attempt: u32, reason: FailureKind) -> OwnedStreamEvent {
    OwnedStreamEvent::Restart { attempt, reason }
}

fn content_event(text: &str) -> OwnedStreamEvent {
    OwnedStreamEvent::Content {
        choice: 0,
        text: text.into(),
    }
}

fn finish_event(reason: &str) -> OwnedStreamEvent {
    OwnedStreamEvent::Finish {
        choice: 0,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// The reference stream
// ---------------------------------------------------------------------------------------------

/// A chunk of choice 0 with this delta JSON. Only the reference stream's first chunk carries
/// id, model and created (the accumulator keeps the first it sees): short chunks keep the
/// every-offset sweep small.
fn delta(json: &str) -> String {
    choice_chunk(&format!(
        "{{\"index\":0,\"delta\":{json},\"finish_reason\":null}}"
    ))
}

fn choice_chunk(choice: &str) -> String {
    format!("data: {{\"choices\":[{choice}]}}\n\n")
}

fn tool_delta(id: Option<&str>, name: Option<&str>, args: &str) -> String {
    let mut call = serde_json::json!({"index": 0, "function": {"arguments": args}});
    if let Some(id) = id {
        call["id"] = id.into();
        call["type"] = "function".into();
    }
    if let Some(name) = name {
        call["function"]["name"] = name.into();
    }
    delta(&format!("{{\"tool_calls\":[{call}]}}"))
}

const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n";

const TOOL_ARGS: &str = r#"{"city":"Paris","unit":"c"}"#;

/// Reasoning, content, one tool call whose arguments span three chunks, finish, usage, `[DONE]`:
/// the SSE events, one string each.
fn reference_sse() -> Vec<String> {
    vec![
        chunk_event(
            r#"{"index":0,"delta":{"role":"assistant","reasoning_content":"Think"},"finish_reason":null}"#,
        ),
        delta(r#"{"reasoning_content":"ing."}"#),
        delta(r#"{"content":"Hello"}"#),
        delta(r#"{"content":", world"}"#),
        tool_delta(Some("call_1"), Some("get_weather"), ""),
        tool_delta(None, None, r#"{"city":"#),
        tool_delta(None, None, r#""Paris","unit""#),
        tool_delta(None, None, r#":"c"}"#),
        choice_chunk(r#"{"index":0,"delta":{},"finish_reason":"tool_calls"}"#),
        USAGE.into(),
        DONE.into(),
    ]
}

fn reference_request() -> ChatRequest {
    request().include_usage()
}

/// How the reference stream's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    ContentLength,
    /// One HTTP chunk per SSE event.
    Chunked,
}

/// The reference stream as one HTTP response, and its clean result and events.
struct Reference {
    bytes: Vec<u8>,
    /// The SSE body (without HTTP framing).
    body: String,
    /// Length of the status line and headers.
    head_len: usize,
    /// Offset in `bytes` just past the usage event: from here on the stream is complete
    /// without `[DONE]`.
    complete_at: usize,
    /// The same offset in `body`.
    body_complete_at: usize,
    response: ChatResponse,
    events: Vec<OwnedStreamEvent>,
}

fn reference(framing: Framing) -> Reference {
    let sse = reference_sse();
    let body = sse.concat();
    let body_complete_at = body.find(USAGE).unwrap() + USAGE.len();
    let (bytes, head_len, complete_at) = match framing {
        Framing::ContentLength => {
            let bytes = sse_response(&body);
            let head_len = bytes.len() - body.len();
            (bytes, head_len, head_len + body_complete_at)
        }
        Framing::Chunked => {
            let mut bytes = SSE_CHUNKED_HEAD.as_bytes().to_vec();
            let mut complete_at = 0;
            for event in &sse {
                bytes.extend(chunk(event.as_bytes()));
                if event == USAGE {
                    // ureq hands chunk data over before the chunk's closing CRLF arrives.
                    complete_at = bytes.len() - 2;
                }
            }
            bytes.extend(b"0\r\n\r\n");
            (bytes, SSE_CHUNKED_HEAD.len(), complete_at)
        }
    };
    let server = serve(1, {
        let bytes = bytes.clone();
        move |_, stream, _| send(stream, &bytes)
    });
    let (result, events) = call(
        &client(&server.base_url()),
        &reference_request(),
        &CallOptions::default(),
    );
    let response = result.expect("clean run");
    assert_eq!(server.join().len(), 1);
    Reference {
        bytes,
        body,
        head_len,
        complete_at,
        body_complete_at,
        response: without_retries(&response),
        events,
    }
}

#[test]
fn reference_stream_clean_run() {
    let r = reference(Framing::ContentLength);
    let resp = &r.response;
    assert_eq!(resp.id, "chatcmpl-t");
    assert_eq!(resp.model, "test-model");
    assert_eq!(resp.content(), "Hello, world");
    assert_eq!(resp.reasoning(), Some("Thinking."));
    assert_eq!(resp.finish_reason(), Some("tool_calls"));
    let calls = resp.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "call_1");
    assert_eq!(calls[0].function.name, "get_weather");
    assert_eq!(calls[0].function.arguments, TOOL_ARGS);
    let usage = resp.usage.as_ref().expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (11, 7, 18)
    );
    assert!(resp.retries.is_empty());
    assert!(
        !r.events
            .iter()
            .any(|e| matches!(e, OwnedStreamEvent::Restart { .. }))
    );
    let chunked = reference(Framing::Chunked);
    assert_eq!(chunked.response, r.response);
    assert_eq!(chunked.events, r.events);
}

/// How the sweep's first connection ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// Write the first `n` bytes, then close normally.
    Fin(usize),
    /// Write the first `n` bytes, then reset.
    Rst(usize),
    /// A complete Content-Length response whose body is the first `n` bytes of the SSE body
    /// (a proxy that cut the stream but framed it properly): a clean end of input.
    Framed(usize),
}

/// Serves `cut` on the first connection of each run and the full response on the next, on
/// one sequential server.
struct Sweep {
    server: SeqServer,
    /// The current run's cut and the connections it got so far.
    plan: Arc<Mutex<(Cut, usize)>>,
    client: Client,
}

impl Sweep {
    fn new(r: &Reference) -> Self {
        let (bytes, body) = (r.bytes.clone(), r.body.clone());
        let plan = Arc::new(Mutex::new((Cut::Fin(0), 0)));
        let server = serve_sequential({
            let plan = Arc::clone(&plan);
            move |_, stream, _| {
                let cut = {
                    let mut plan = plan.lock().unwrap();
                    plan.1 += 1;
                    (plan.1 == 1).then_some(plan.0)
                };
                match cut {
                    Some(Cut::Fin(n)) => send(stream, &bytes[..n]),
                    Some(Cut::Rst(n)) => {
                        send(stream, &bytes[..n]);
                        reset_on_close(stream);
                    }
                    Some(Cut::Framed(n)) => send(stream, &sse_response(&body[..n])),
                    None => send(stream, &bytes),
                }
            }
        });
        // No wait between attempts: thousands of runs must stay fast.
        let policy = fast_policy()
            .max_retries(1)
            .initial_delay(Duration::ZERO)
            .jitter(0.0);
        let client = client_with(&server.base_url(), policy);
        Self {
            server,
            plan,
            client,
        }
    }

    /// One call with `cut` on its first connection: result, events, connections served.
    fn run(&self, cut: Cut) -> (Result<ChatResponse, Error>, Vec<OwnedStreamEvent>, usize) {
        *self.plan.lock().unwrap() = (cut, 0);
        let (result, events) = call(&self.client, &reference_request(), &CallOptions::default());
        let connections = self.plan.lock().unwrap().1;
        (result, events, connections)
    }
}

/// Runs every cut (split over a few threads, each with its own server and client) and checks
/// each run against the clean one. Returns per cut the retry reason, or `None` when the first
/// attempt already succeeded.
fn sweep(r: &Reference, cuts: &[Cut]) -> Vec<Option<FailureKind>> {
    const THREADS: usize = 4;
    let per_thread = cuts.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = cuts
            .chunks(per_thread)
            .map(|cuts| {
                scope.spawn(move || {
                    let sweep = Sweep::new(r);
                    let mut served = 0;
                    let outcomes: Vec<_> = cuts
                        .iter()
                        .map(|&cut| {
                            let (result, events, connections) = sweep.run(cut);
                            served += connections;
                            check_run(r, cut, result, &events, connections)
                        })
                        .collect();
                    assert_eq!(sweep.server.stop().len(), served);
                    outcomes
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Checks one run against the clean one: the same response and, when it took two attempts,
/// exactly the clean events — one continuous stream, nothing taken back: the restarted
/// answer's repeat of what was shown is swallowed (a `Continued` notice says where the
/// answer went on), and no `Restart` is ever handed out for an answer that repeats.
fn check_run(
    r: &Reference,
    cut: Cut,
    result: Result<ChatResponse, Error>,
    events: &[OwnedStreamEvent],
    connections: usize,
) -> Option<FailureKind> {
    let response = result.unwrap_or_else(|e| panic!("{cut:?}: {e:?}"));
    assert_eq!(without_retries(&response), r.response, "{cut:?}");
    if connections == 1 {
        assert!(response.retries.is_empty(), "{cut:?}");
        assert_eq!(events, r.events, "{cut:?}");
        return None;
    }
    assert_eq!(connections, 2, "{cut:?}");
    assert_eq!(response.retries.len(), 1, "{cut:?}");
    let retry = response.retries[0].clone();
    assert_eq!((retry.attempt, retry.delay_ms), (1, 0), "{cut:?}");
    let continued: Vec<usize> = (0..events.len())
        .filter(|&i| matches!(events[i], OwnedStreamEvent::Continued { .. }))
        .collect();
    assert!(continued.len() <= 1, "{cut:?}: {events:?}");
    if let [at] = continued.as_slice() {
        assert!(*at > 0, "{cut:?}: continued without output");
        assert_eq!(
            events[*at],
            OwnedStreamEvent::Continued {
                attempt: 2,
                regenerated: true
            },
            "{cut:?}"
        );
    }
    let deltas: Vec<OwnedStreamEvent> = events
        .iter()
        .filter(|e| !matches!(e, OwnedStreamEvent::Continued { .. }))
        .cloned()
        .collect();
    assert_eq!(deltas, r.events, "{cut:?}");
    Some(retry.reason)
}

/// Cuts the connection (FIN) after each byte of the response in turn, on the first attempt.
fn fin_at_every_byte_offset(framing: Framing) {
    let r = reference(framing);
    let cuts: Vec<Cut> = (0..r.bytes.len()).map(Cut::Fin).collect();
    let outcomes = sweep(&r, &cuts);
    for (cut, outcome) in cuts.iter().zip(outcomes) {
        let Cut::Fin(n) = *cut else { unreachable!() };
        // Before the status line, inside the headers or the body, a FIN before the end of
        // the framing is an unexpected EOF. Once every choice finished and usage arrived the
        // stream is complete without `[DONE]`: a cut in the trailer costs nothing.
        let want = (n < r.complete_at).then_some(FailureKind::UnexpectedEof);
        let at = r.head_len;
        assert_eq!(outcome, want, "{framing:?} {cut:?} (headers end at {at})");
    }
}

#[test]
fn fin_at_every_byte_offset_content_length() {
    fin_at_every_byte_offset(Framing::ContentLength);
}

/// A FIN inside a chunk-size line, or between a chunk's data and its CRLF, makes ureq fail
/// with its internal `BodyStalled` error: it must count as a cut connection too.
#[test]
fn fin_at_every_byte_offset_chunked() {
    fin_at_every_byte_offset(Framing::Chunked);
}

#[test]
fn cleanly_framed_truncation_at_every_body_offset_recovers() {
    let r = reference(Framing::ContentLength);
    let cuts: Vec<Cut> = (0..r.body.len()).map(Cut::Framed).collect();
    let outcomes = sweep(&r, &cuts);
    // The first event is dispatched by the blank line after it.
    let first_event = r.body.find("\n\n").map_or(0, |i| i + 2);
    for (cut, outcome) in cuts.iter().zip(outcomes) {
        let Cut::Framed(n) = *cut else { unreachable!() };
        // The HTTP response is whole, the SSE stream is not: no finish reason yet, or no
        // usage although it was requested; before the first event, no event at all.
        let want = (n < r.body_complete_at).then_some(if n < first_event {
            FailureKind::EmptyStream
        } else {
            FailureKind::IncompleteStream
        });
        assert_eq!(outcome, want, "{cut:?}");
    }
}

#[test]
fn rst_at_a_spread_of_offsets_recovers_on_attempt_two() {
    let r = reference(Framing::ContentLength);
    let mut offsets = vec![0, 1, 9, r.head_len - 1, r.head_len, r.head_len + 1];
    offsets.extend((r.head_len + 2..r.complete_at).step_by(41));
    offsets.extend([r.complete_at - 2, r.complete_at - 1]);
    let cuts: Vec<Cut> = offsets.iter().copied().map(Cut::Rst).collect();
    let outcomes = sweep(&r, &cuts);
    for (cut, outcome) in cuts.iter().zip(outcomes) {
        assert!(matches!(cut, Cut::Rst(_)));
        // A reset is a reset wherever it hits: ureq folds one during the body into end of
        // input, but the socket layer keeps the real kind.
        assert_eq!(
            outcome,
            Some(FailureKind::ConnectionReset),
            "{cut:?} (headers end at {})",
            r.head_len
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Small streams for the other cases
// ---------------------------------------------------------------------------------------------

/// The answer every recovering server finally sends: "Hel" "lo" " world", stop, `[DONE]`.
fn answer_body() -> String {
    [
        content("Hel"),
        content("lo"),
        content(" world"),
        finish("stop"),
        DONE.into(),
    ]
    .concat()
}

fn answer() -> Vec<u8> {
    sse_response(&answer_body())
}

fn answer_events() -> Vec<OwnedStreamEvent> {
    vec![
        content_event("Hel"),
        content_event("lo"),
        content_event(" world"),
        finish_event("stop"),
    ]
}

/// A chunked response head followed by these chunks, without the terminating chunk.
fn chunked_prefix(events: &[&str]) -> Vec<u8> {
    let mut out = SSE_CHUNKED_HEAD.as_bytes().to_vec();
    for e in events {
        out.extend(chunk(e.as_bytes()));
    }
    out
}

/// Serves `first` on connection 0 and [`answer`] on every later one (up to `connections`).
fn first_then_answer(connections: usize, first: Vec<u8>) -> RawServer {
    let answer = answer();
    serve(connections, move |i, stream, _| {
        send(stream, if i == 0 { &first } else { &answer });
    })
}

fn assert_recovered(
    result: Result<ChatResponse, Error>,
    retries: &[RetryRecord],
    context: &str,
) -> ChatResponse {
    let response = result.unwrap_or_else(|e| panic!("{context}: {e:?}"));
    assert_eq!(records(&response.retries), retries, "{context}");
    response
}

// ---------------------------------------------------------------------------------------------
// Transport failures
// ---------------------------------------------------------------------------------------------

#[test]
fn stalls_are_retried_with_the_timeout_as_reason() {
    let limit = ms(200);
    let hel = content("Hel");
    // (name, what the first connection sends before stalling, retry reason, a delta was
    // delivered before the stall)
    let table: [(&str, Vec<u8>, FailureKind, bool); 3] = [
        (
            "silent before headers",
            Vec::new(),
            FailureKind::FirstByteTimeout,
            false,
        ),
        (
            "headers, then silence",
            chunked_prefix(&[]),
            FailureKind::FirstByteTimeout,
            false,
        ),
        (
            "one delta, then silence",
            chunked_prefix(&[&hel]),
            FailureKind::IdleTimeout,
            true,
        ),
    ];
    for (name, first, kind, delivered) in table {
        let server = serve(2, move |i, stream, _| {
            if i == 0 {
                send(stream, &first);
                // Stall until the client's watchdog gives up and shuts the socket.
                wait_for_close(stream);
            } else {
                send(stream, &answer());
            }
        });
        let client = Client::builder()
            .base_url(server.base_url())
            .proxy(ProxyConfig::None)
            .retry_policy(fast_policy())
            .first_byte_timeout(limit)
            .idle_timeout(limit)
            .build()
            .unwrap();
        let start = Instant::now();
        let (result, events) = call(&client, &request(), &CallOptions::default());
        let took = start.elapsed();
        let response = assert_recovered(result, &[record(1, kind, 10)], name);
        assert_eq!(response.content(), "Hello world", "{name}");
        assert!(took >= limit, "{name}: {took:?}");
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        // The restarted answer repeats the delivered delta: swallowed, one continuous stream.
        let mut want = answer_events();
        if delivered {
            want.insert(1, continued(2));
        }
        assert_eq!(events, want, "{name}");
        assert_eq!(server.join().len(), 2, "{name}");
    }
}

#[test]
fn closed_right_after_reading_the_request_is_retried() {
    // The "stale keep-alive connection" case: the server takes the request and closes
    // without a byte. (Each attempt uses a fresh connection, so no pooled connection can
    // be stale; this is what such a close looks like from the client.)
    let server = first_then_answer(2, Vec::new());
    let (result, events) = call(
        &client(&server.base_url()),
        &request(),
        &CallOptions::default(),
    );
    assert_recovered(
        result,
        &[record(1, FailureKind::UnexpectedEof, 10)],
        "close",
    );
    assert_eq!(events, answer_events());
    assert_eq!(server.join().len(), 2);
}

/// Options whose `on_retry` hook reports each retry (or wait for the server) on a channel.
/// The hook runs on the calling thread right before the backoff sleep, so a test can act
/// during the backoff without guessing with a sleep.
fn signalling_retries() -> (CallOptions, mpsc::Receiver<u32>) {
    let (tx, rx) = mpsc::channel();
    let hook: RetryHook = Arc::new(move |notice: &RetryNotice<'_>| {
        // A wait for a server that is down counts no retry: the first one is retry 0.
        let _ = tx.send(notice.retry + u32::from(notice.waiting.is_some()));
    });
    let options = CallOptions {
        on_retry: Some(hook),
        ..CallOptions::default()
    };
    (options, rx)
}

/// Waits (at most 10 s) for the first retry to be announced.
fn wait_for_first_retry(rx: &mpsc::Receiver<u32>) {
    let retry = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first attempt failed and a retry was announced");
    assert_eq!(retry, 1);
}

#[test]
fn refused_first_attempt_then_server_comes_up() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (options, retries) = signalling_retries();
    // Start listening once the first attempt was refused, during the 300 ms backoff.
    let starter = std::thread::spawn(move || {
        wait_for_first_retry(&retries);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind");
        serve_on(listener, 1, |_, stream, _| send(stream, &answer()))
    });
    let policy = fast_policy().initial_delay(ms(300)).max_delay(ms(300));
    let client = client_with(&format!("http://127.0.0.1:{port}/v1"), policy);
    let (result, events) = call(&client, &request(), &options);
    let server = starter.join().unwrap();
    assert_recovered(
        result,
        &[record(1, FailureKind::ConnectionRefused, 300)],
        "refused",
    );
    assert_eq!(events, answer_events());
    assert_eq!(server.join().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// HTTP statuses and server-requested waits
// ---------------------------------------------------------------------------------------------

#[test]
fn retry_after_headers_set_the_wait() {
    let table = [
        ("retry-after", "1", ms(1000)),
        ("retry-after-ms", "300", ms(300)),
    ];
    std::thread::scope(|scope| {
        for (header, value, wait) in table {
            scope.spawn(move || {
                let times = Arc::new(Mutex::new(Vec::new()));
                let server = serve(2, {
                    let times = Arc::clone(&times);
                    move |i, stream, _| {
                        // Before sending: the client cannot start waiting any earlier.
                        times.lock().unwrap().push(Instant::now());
                        if i == 0 {
                            send(
                                stream,
                                &http_response("429 Too Many Requests", &[(header, value)], ""),
                            );
                        } else {
                            send(stream, &answer());
                        }
                    }
                });
                let (result, _) = call(
                    &client(&server.base_url()),
                    &request(),
                    &CallOptions::default(),
                );
                let delay_ms = wait.as_millis() as u64;
                assert_recovered(
                    result,
                    &[record(1, FailureKind::HttpStatus, delay_ms)],
                    header,
                );
                assert_eq!(server.join().len(), 2);
                let times = times.lock().unwrap();
                let gap = times[1] - times[0];
                assert!(gap >= wait, "{header}: second attempt after {gap:?}");
                assert!(gap < wait + Duration::from_secs(3), "{header}: {gap:?}");
            });
        }
    });
}

#[test]
fn retry_after_http_date_waits_until_that_time() {
    let now_secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A whole second, 1 to 2 s from now.
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs + 2);
    let date = imf_fixdate(at);
    let arrived = Arc::new(Mutex::new(None));
    let server = serve(2, {
        let arrived = Arc::clone(&arrived);
        move |i, stream, _| {
            if i == 0 {
                let head = [("retry-after", date.as_str())];
                send(stream, &http_response("503 Service Unavailable", &head, ""));
            } else {
                *arrived.lock().unwrap() = Some(SystemTime::now());
                send(stream, &answer());
            }
        }
    });
    let (result, _) = call(
        &client(&server.base_url()),
        &request(),
        &CallOptions::default(),
    );
    let response = result.expect("recovered");
    assert_eq!(server.join().len(), 2);
    let retry = response.retries[0].clone();
    assert_eq!(response.retries.len(), 1);
    assert_eq!(retry.reason, FailureKind::HttpStatus);
    assert!((500..=2000).contains(&retry.delay_ms), "{retry:?}");
    let arrived = arrived.lock().unwrap().expect("second request");
    // The wait is computed on the wall clock and slept on the monotonic one: allow a few
    // milliseconds of drift between the two.
    assert!(
        arrived + ms(5) >= at,
        "second request {:?} before the date",
        at.duration_since(arrived).unwrap_or_default()
    );
}

#[test]
fn imf_fixdate_helper_matches_the_parser() {
    let epoch = SystemTime::UNIX_EPOCH;
    assert_eq!(
        imf_fixdate(epoch + Duration::from_secs(784_111_777)),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    for secs in [0, 951_825_600, 1_795_953_600, 4_102_444_799] {
        let t = epoch + Duration::from_secs(secs);
        assert_eq!(
            oai_sse::retry::parse_http_date(&imf_fixdate(t), epoch),
            Some(t),
            "{}",
            imf_fixdate(t)
        );
    }
}

#[test]
fn server_wait_above_max_retry_after_is_returned_not_retried() {
    let in_an_hour = imf_fixdate(SystemTime::now() + Duration::from_secs(3600));
    let table: [(&str, &str, Duration); 3] = [
        ("retry-after", "120", Duration::from_secs(120)),
        ("retry-after-ms", "90000", Duration::from_secs(90)),
        ("retry-after", &in_an_hour, Duration::from_secs(3600)),
    ];
    for (header, value, want) in table {
        let response = http_response("429 Too Many Requests", &[(header, value)], "");
        let server = first_then_answer(2, response);
        let policy = fast_policy().max_retry_after(Duration::from_secs(30));
        let (result, _) = call(
            &client_with(&server.base_url(), policy),
            &request(),
            &CallOptions::default(),
        );
        let err = result.expect_err("not retried");
        assert_eq!(close_server(server, 1).len(), 1, "{header}: {value}");
        let Error::Http(http) = &err else {
            panic!("{header}: {err:?}")
        };
        assert_eq!(http.status, 429);
        let raw = if header == "retry-after" {
            &http.retry_after
        } else {
            &http.retry_after_ms
        };
        assert_eq!(raw.as_deref(), Some(value));
        let delay = http.server_delay(SystemTime::now()).expect("server delay");
        // An HTTP date has whole seconds and time passes: allow 2 s below.
        assert!(
            delay <= want && delay + Duration::from_secs(2) >= want,
            "{header}: {value}: {delay:?}"
        );
    }
}

#[test]
fn which_statuses_are_retried() {
    let api = |kind: &str, code: &str| {
        format!(r#"{{"error":{{"message":"nope","type":"{kind}","code":"{code}"}}}}"#)
    };
    let json = [("content-type", "application/json")];
    /// (status line, headers, body, retried)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, bool);
    let table: Vec<Case> = vec![
        ("503 Service Unavailable", vec![], String::new(), true),
        (
            "502 Bad Gateway",
            vec![],
            "<html>bad gateway</html>".into(),
            true,
        ),
        ("504 Gateway Timeout", vec![], String::new(), true),
        ("408 Request Timeout", vec![], String::new(), true),
        (
            "429 Too Many Requests",
            json.to_vec(),
            api("rate_limit", "rate_limit_exceeded"),
            true,
        ),
        (
            "503 Service Unavailable",
            vec![("x-should-retry", "false")],
            String::new(),
            false,
        ),
        (
            "500 Internal Server Error",
            json.to_vec(),
            api("server_error", "oops"),
            false,
        ),
        (
            "500 Internal Server Error",
            vec![("x-should-retry", "true")],
            String::new(),
            true,
        ),
        (
            "400 Bad Request",
            json.to_vec(),
            api("invalid_request_error", "bad"),
            false,
        ),
        (
            "401 Unauthorized",
            json.to_vec(),
            api("auth", "invalid_api_key"),
            false,
        ),
        (
            "429 Too Many Requests",
            json.to_vec(),
            api("insufficient_quota", "insufficient_quota"),
            false,
        ),
    ];
    for (status, headers, body, retried) in table {
        let name = format!("{status} {headers:?}");
        let server = first_then_answer(2, http_response(status, &headers, &body));
        let (result, _) = call(
            &client(&server.base_url()),
            &request(),
            &CallOptions::default(),
        );
        if retried {
            assert_recovered(result, &[record(1, FailureKind::HttpStatus, 10)], &name);
            assert_eq!(server.join().len(), 2, "{name}");
        } else {
            let err = result.expect_err(&name);
            let Error::Http(http) = &err else {
                panic!("{name}: {err:?}")
            };
            assert_eq!(http.status.to_string(), status[..3], "{name}");
            assert_eq!(close_server(server, 1).len(), 1, "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stream errors
// ---------------------------------------------------------------------------------------------

fn tool_call_event(id: Option<&str>, name: Option<&str>, args: &str) -> OwnedStreamEvent {
    OwnedStreamEvent::ToolCall {
        choice: 0,
        index: 0,
        id: id.map(str::to_owned),
        name: name.map(str::to_owned),
        arguments: args.into(),
    }
}

#[test]
fn truncated_tool_arguments_are_retried() {
    let cut = r#"{"city": "Par"#;
    let first = [
        tool_delta(Some("call_1"), Some("get_weather"), cut),
        finish("tool_calls"),
        DONE.into(),
    ]
    .concat();
    let second = [
        tool_delta(Some("call_1"), Some("get_weather"), TOOL_ARGS),
        finish("tool_calls"),
        DONE.into(),
    ]
    .concat();
    let server = serve(2, move |i, stream, _| {
        send(stream, &sse_response(if i == 0 { &first } else { &second }));
    });
    let (result, events) = call(
        &client(&server.base_url()),
        &request(),
        &CallOptions::default(),
    );
    let kind = FailureKind::TruncatedToolCallArguments;
    let response = assert_recovered(result, &[record(1, kind, 10)], "truncated");
    assert_eq!(response.tool_calls()[0].function.arguments, TOOL_ARGS);
    assert_eq!(server.join().len(), 2);
    let call_event = |args| tool_call_event(Some("call_1"), Some("get_weather"), args);
    assert_eq!(
        events,
        [
            call_event(cut),
            finish_event("tool_calls"),
            restart(2, kind),
            call_event(TOOL_ARGS),
            finish_event("tool_calls"),
        ]
    );
}

#[test]
fn stream_errors_that_are_not_retried() {
    let cut_by_length = [
        tool_delta(Some("call_1"), Some("get_weather"), r#"{"city": "Par"#),
        finish("length"),
        DONE.into(),
    ]
    .concat();
    let api_error = [
        content("par"),
        "data: {\"error\":{\"message\":\"model crashed\",\"type\":\"model_error\",\"code\":\"oom\"}}\n\n".into(),
    ]
    .concat();
    let error_event = "event: error\ndata: {\"message\":\"model crashed\"}\n\n".to_string();
    let malformed = [content("par"), "data: {\"choices\": oops}\n\n".into()].concat();
    let table = [
        (cut_by_length, FailureKind::ToolCallArgumentsCutByLength),
        (api_error, FailureKind::ApiError),
        (error_event, FailureKind::ApiError),
        (malformed, FailureKind::MalformedChunk),
    ];
    for (body, kind) in table {
        let server = first_then_answer(2, sse_response(&body));
        let (result, events) = call(
            &client(&server.base_url()),
            &request(),
            &CallOptions::default(),
        );
        let err = result.expect_err(kind.as_str());
        assert_eq!(close_server(server, 1).len(), 1, "{kind}");
        assert_eq!(err.kind(), kind, "{err:?}");
        assert!(matches!(err, Error::Stream(_)), "{err:?}");
        match kind {
            FailureKind::ToolCallArgumentsCutByLength => assert!(
                matches!(
                    &err,
                    Error::Stream(StreamError::ToolCallArgumentsCutByLength { choice: 0, index: 0, name })
                        if name == "get_weather"
                ),
                "{err:?}"
            ),
            FailureKind::ApiError => {
                assert_eq!(err.api_error().unwrap().message, "model crashed")
            }
            _ => {}
        }
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, OwnedStreamEvent::Restart { .. })),
            "{kind}: {events:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Budget
// ---------------------------------------------------------------------------------------------

#[test]
fn every_attempt_fails_retries_exhausted() {
    let full = answer();
    // Up to the end of the first delta, then FIN: short of Content-Length.
    let hel = content("Hel");
    let cut = full.len() - answer_body().len() + hel.len();
    let server = serve(4, move |_, stream, _| send(stream, &full[..cut]));
    let policy = fast_policy()
        .max_retries(3)
        .initial_delay(ms(10))
        .factor(2.0)
        .max_delay(ms(50))
        .jitter(0.5);
    let seed = 7;
    let mut rng = Rng::seeded(seed);
    let delays: Vec<u64> = (1..=3)
        .map(|n| policy.backoff(n, &mut rng).as_millis() as u64)
        .collect();
    let options = CallOptions {
        jitter_seed: Some(seed),
        ..CallOptions::default()
    };
    let (result, events) = call(
        &client_with(&server.base_url(), policy),
        &request(),
        &options,
    );
    let err = result.expect_err("exhausted");
    assert_eq!(err.kind(), FailureKind::UnexpectedEof);
    let Error::AfterRetries(exhausted) = err else {
        panic!("{err:?}")
    };
    assert_eq!(exhausted.attempts, 4);
    let eof = FailureKind::UnexpectedEof;
    assert_eq!(
        records(&exhausted.history),
        [
            record(1, eof, delays[0]),
            record(2, eof, delays[1]),
            record(3, eof, delays[2]),
        ]
    );
    assert!(
        matches!(&exhausted.last, Error::Transport(t) if t.kind() == eof),
        "{:?}",
        exhausted.last
    );
    // Every restart repeats the delta shown, and breaks where the first attempt broke.
    assert_eq!(
        events,
        [
            content_event("Hel"),
            continued(2),
            continued(3),
            continued(4),
        ]
    );
    assert_eq!(server.join().len(), 4);
}

#[test]
fn max_elapsed_and_deadline_stop_retrying_early() {
    // Waits of 100, 200, 400 ms...: after attempt 2 the next wait would end past 250 ms.
    let policy = fast_policy()
        .max_retries(10)
        .initial_delay(ms(100))
        .factor(2.0)
        .max_delay(Duration::from_secs(1))
        .jitter(0.0);
    let budget = ms(250);
    let table = [
        (
            "max_elapsed",
            policy.clone().max_elapsed(Some(budget)),
            None,
        ),
        ("deadline", policy, Some(budget)),
    ];
    for (name, policy, deadline) in table {
        let unavailable = http_response("503 Service Unavailable", &[], "");
        let server = serve(3, move |_, stream, _| send(stream, &unavailable));
        let client = Client::builder()
            .base_url(server.base_url())
            .proxy(ProxyConfig::None)
            .retry_policy(policy)
            .deadline(deadline)
            .build()
            .unwrap();
        let (result, _) = call(&client, &request(), &CallOptions::default());
        let err = result.expect_err(name);
        let Error::AfterRetries(exhausted) = err else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(exhausted.attempts, 2, "{name}");
        assert_eq!(
            exhausted.history,
            [record(1, FailureKind::HttpStatus, 100)],
            "{name}"
        );
        assert!(
            matches!(&exhausted.last, Error::Http(h) if h.status == 503),
            "{name}"
        );
        assert_eq!(close_server(server, 1).len(), 2, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_during_backoff_returns_at_once() {
    let server = first_then_answer(
        2,
        http_response("503 Service Unavailable", &[], "try later"),
    );
    let policy = fast_policy().initial_delay(Duration::from_secs(5));
    let client = client_with(&server.base_url(), policy);
    let cancel = CancelHandle::new();
    let (options, retries) = signalling_retries();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            wait_for_first_retry(&retries);
            let at = Instant::now();
            cancel.cancel();
            at
        })
    };
    let options = CallOptions {
        cancel: Some(cancel),
        ..options
    };
    let (result, events) = call(&client, &request(), &options);
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    let lag = returned - cancelled_at;
    assert!(lag < ms(100), "returned {lag:?} after cancel");
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(close_server(server, 1).len(), 1);
}

#[test]
fn cancel_during_a_stalled_read_is_not_retried() {
    let server = serve(2, |i, stream, _| {
        if i == 0 {
            send(stream, &chunked_prefix(&[&content("Hel")]));
            wait_for_close(stream);
        } else {
            send(stream, &answer());
        }
    });
    let cancel = CancelHandle::new();
    let (tx, rx) = mpsc::channel();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            // The first delta arrived: the call is (about to be) blocked reading the stall.
            rx.recv_timeout(Duration::from_secs(5))
                .expect("first delta");
            let at = Instant::now();
            cancel.cancel();
            at
        })
    };
    let options = CallOptions {
        cancel: Some(cancel),
        ..CallOptions::default()
    };
    let mut events = Vec::new();
    let result = client(&server.base_url()).chat_with(&request(), &options, |e| {
        events.push(e.to_owned_event());
        let _ = tx.send(());
    });
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    let lag = returned - cancelled_at;
    assert!(lag < ms(100), "returned {lag:?} after cancel");
    assert_eq!(events, [content_event("Hel")]);
    assert_eq!(close_server(server, 1).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// What a streaming caller sees
// ---------------------------------------------------------------------------------------------

#[test]
fn restart_events_and_retry_after_output() {
    let (hel, lo, ping) = (content("Hel"), content("lo"), ": ping\n\n");
    struct Case {
        name: &'static str,
        first: Vec<u8>,
        retry_after_output: bool,
        /// Ok(retry reason) or Err(error kind).
        want: Result<FailureKind, FailureKind>,
        events: Vec<OwnedStreamEvent>,
    }
    let eof = FailureKind::UnexpectedEof;
    // The restarted answer repeats the two deltas shown: they are swallowed, the caller
    // sees one continuous answer.
    let repeated = vec![
        content_event("Hel"),
        content_event("lo"),
        continued(2),
        content_event(" world"),
        finish_event("stop"),
    ];
    // The restarted answer says something else: a `Restart`, then all of it.
    let differs = [vec![content_event("Hal"), restart(2, eof)], answer_events()].concat();
    let table = [
        Case {
            name: "cut after two deltas",
            first: chunked_prefix(&[&hel, &lo]),
            retry_after_output: true,
            want: Ok(eof),
            events: repeated,
        },
        Case {
            name: "cut after a delta the new answer does not repeat",
            first: chunked_prefix(&[&content("Hal")]),
            retry_after_output: true,
            want: Ok(eof),
            events: differs,
        },
        Case {
            name: "cut after the head",
            first: chunked_prefix(&[]),
            retry_after_output: true,
            want: Ok(eof),
            events: answer_events(),
        },
        Case {
            name: "cut after a keep-alive comment",
            first: chunked_prefix(&[ping]),
            retry_after_output: true,
            want: Ok(eof),
            events: answer_events(),
        },
        Case {
            name: "no retry after output: cut after two deltas",
            first: chunked_prefix(&[&hel, &lo]),
            retry_after_output: false,
            want: Err(eof),
            events: vec![content_event("Hel"), content_event("lo")],
        },
        Case {
            name: "no retry after output: cut before any delta",
            first: chunked_prefix(&[ping]),
            retry_after_output: false,
            want: Ok(eof),
            events: answer_events(),
        },
    ];
    for case in table {
        let name = case.name;
        let server = first_then_answer(2, case.first);
        // The client retries after output; the per-call policy may say otherwise.
        let options = CallOptions {
            retry: Some(fast_policy().retry_after_output(case.retry_after_output)),
            ..CallOptions::default()
        };
        let (result, events) = call(&client(&server.base_url()), &request(), &options);
        match case.want {
            Ok(reason) => {
                let response = assert_recovered(result, &[record(1, reason, 10)], name);
                assert_eq!(response.content(), "Hello world", "{name}");
                assert_eq!(server.join().len(), 2, "{name}");
            }
            Err(kind) => {
                let err = result.expect_err(name);
                assert_eq!(err.kind(), kind, "{name}: {err:?}");
                assert_eq!(close_server(server, 1).len(), 1, "{name}");
            }
        }
        assert_eq!(events, case.events, "{name}");
    }
}
