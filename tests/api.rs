//! The API a caller reaches for: errors shaped for callers, stopping early, the owned-event
//! iterator, usage asked for by default (and servers that refuse it), per-attempt timings.
#![cfg(feature = "mock")]

mod common;

use common::*;
use oai_sse::mock::{FaultRule, MockServer, Script};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    ChatRequest, Client, Error, FailureKind, Message, OwnedStreamEvent, ProxyConfig, RetryAction,
    StreamEvent,
};
use std::time::{Duration, Instant};

fn request() -> ChatRequest {
    ChatRequest::new("m", vec![Message::user("hi")])
}

fn fast() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(20))
        .jitter(0.0)
}

fn client(base_url: &str) -> Client {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .retry_policy(fast())
        .build()
        .expect("client")
}

fn fault(spec: &str) -> FaultRule {
    spec.parse().expect("fault spec")
}

#[test]
fn errors_answer_the_callers_questions_through_retries() {
    // A 429 that never stops: the status, the server's message and the history, one level
    // deep, without matching on the wrapper.
    let server = MockServer::start(
        Script::new().fault(fault("status=429,message=slow down,retry-after-ms=5")),
    )
    .expect("mock");
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("exhausted");
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.kind(), FailureKind::HttpStatus);
    assert_eq!(
        err.api_error().map(|e| e.message.as_str()),
        Some("slow down")
    );
    assert_eq!(err.retries().len(), 3);
    assert!(err.is_transient());
    assert!(matches!(&err, Error::AfterRetries(a) if a.exhausted && a.attempts == 4));
    assert!(
        err.to_string()
            .starts_with("gave up after 4 attempts: http 429"),
        "{err}"
    );

    // A permanent error after a retry keeps the history.
    let server = MockServer::start(
        Script::new()
            .fault(fault("status=502,times=1"))
            .fault(fault("status=400,message=bad schema,after=1")),
    )
    .expect("mock");
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("permanent");
    assert_eq!(err.status(), Some(400));
    assert!(!err.is_transient());
    assert_eq!(err.retries().len(), 1);
    assert_eq!(err.retries()[0].reason, FailureKind::HttpStatus);
    assert!(matches!(&err, Error::AfterRetries(a) if !a.exhausted));
    assert_eq!(
        err.to_string(),
        "http 400: bad schema (type: invalid_request_error) (after 1 retry)"
    );

    // A transport failure: one variant whatever layer noticed it, with its kind.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let err = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .max_retries(0)
        .build()
        .expect("client")
        .chat(&request())
        .expect_err("refused");
    let transport = err.transport().expect("transport failure");
    assert_eq!(transport.kind(), FailureKind::ConnectionRefused);
    assert_eq!(err.status(), None);
}

#[test]
fn the_owned_iterator_yields_events_then_an_error_once() {
    let server = MockServer::start(Script::new().text("a b c")).expect("mock");
    let client = client(&server.base_url());
    let mut stream = client.stream(&request()).expect("stream");
    let events: Vec<OwnedStreamEvent> = (&mut stream).map(|e| e.expect("event")).collect();
    assert!(events.contains(&OwnedStreamEvent::Content {
        choice: 0,
        text: " c".into()
    }));
    assert_eq!(stream.finish().expect("response").content(), "a b c");

    let server = MockServer::start(Script::new().fault(fault("status=401"))).expect("mock");
    let mut stream = client_for(&server).stream(&request()).expect("stream");
    let results: Vec<_> = (&mut stream).collect();
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(matches!(&results[0], Err(e) if e.status() == Some(401)));
    assert_eq!(stream.finish().expect_err("401").status(), Some(401));
}

fn client_for(server: &MockServer) -> Client {
    client(&server.base_url())
}

#[test]
fn stopping_ends_the_call_and_its_connection() {
    let server = MockServer::start(Script::new().text("one two three four five six").repeat(50))
        .expect("mock");
    // Resume off, so that no DELETE (which would open a connection of its own) muddies the
    // connection count.
    let client = Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .resume(false)
        .build()
        .expect("client");
    let mut stream = client.stream(&request()).expect("stream");
    let mut words = 0;
    while let Some(event) = stream.next_event().expect("event") {
        if let StreamEvent::Content { .. } = event {
            words += 1;
            if words == 5 {
                break;
            }
        }
    }
    let partial = stream.stop();
    assert!(partial.stopped_by_caller);
    assert_eq!(partial.content(), "one two three four five");
    assert_eq!(partial.finish_reason(), None);
    // The stopped call's connection was closed, not pooled: the next call opens a new one.
    let before = server.connection_count();
    client.chat(&request()).expect("next call");
    assert_eq!(server.connection_count(), before + 1);
    // A complete call's connection is pooled.
    client.chat(&request()).expect("pooled call");
    assert_eq!(server.connection_count(), before + 1);
}

#[test]
fn usage_is_asked_for_by_default() {
    let server = MockServer::start(Script::new().text("hi")).expect("mock");
    let response = client_for(&server).chat(&request()).expect("chat");
    let sent = &server.chat_requests()[0];
    let json = sent.json.as_ref().expect("json body");
    assert_eq!(json["stream_options"]["include_usage"], true);
    assert!(response.usage.is_some(), "{response:?}");

    // A caller's own stream_options are sent as they are.
    let mut own = request();
    own.stream_options = Some(oai_sse::StreamOptions {
        include_usage: false,
    });
    client_for(&server).chat(&own).expect("chat");
    let json = server.chat_requests()[1].json.clone().expect("json body");
    assert_eq!(json["stream_options"]["include_usage"], false);
}

#[test]
fn a_server_that_refuses_stream_options_gets_the_request_without_them() {
    let ok = sse_response(&[content("hi"), finish("stop"), "data: [DONE]\n\n".into()].concat());
    let server = serve(3, move |_, stream, request| {
        if request.contains("stream_options") {
            let body = r#"{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error"}}"#;
            send(
                stream,
                &http_response(
                    "400 Bad Request",
                    &[("content-type", "application/json")],
                    body,
                ),
            );
        } else {
            send(stream, &ok);
        }
    });
    let client = client(&server.base_url());
    let first = client.chat(&request()).expect("sent again without");
    assert_eq!(first.content(), "hi");
    assert!(first.retries.is_empty(), "an adaptation, not a retry");
    // Remembered: the next call sends none at once.
    client.chat(&request()).expect("second call");
    let requests = close_server(server, 0);
    assert_eq!(requests.len(), 3);
    assert!(requests[0].contains("stream_options"));
    assert!(!requests[1].contains("stream_options"));
    assert!(!requests[2].contains("stream_options"));
}

#[test]
fn usage_after_the_finish_is_kept_even_without_done() {
    // Finish, then usage, then the connection stays open: no [DONE] ever comes.
    let body = [
        content("hi"),
        finish("stop"),
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n".into(),
    ]
    .concat();
    let server = serve(1, move |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(body.as_bytes()));
        std::thread::sleep(Duration::from_secs(3));
    });
    let start = Instant::now();
    let response = client(&server.base_url()).chat(&request()).expect("chat");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "waited for the held connection"
    );
    assert_eq!(response.usage.map(|u| u.total_tokens), Some(4));
}

#[test]
fn every_attempt_is_timed() {
    let server = MockServer::start(
        Script::new()
            .text("one two three four five")
            .fault(fault("close-after=500,times=1")),
    )
    .expect("mock");
    let client = client_for(&server);
    let response = client.chat(&request()).expect("chat");
    let attempts = &response.timings.attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(matches!(
        response.retries[0].action,
        RetryAction::Resumed { .. }
    ));
    let (first, second) = (&attempts[0], &attempts[1]);
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert!(first.connect.is_some(), "a new connection was opened");
    for a in attempts {
        assert!(a.first_byte.is_some() && a.bytes > 0, "{a:?}");
        assert!(a.first_byte <= a.first_token.or(a.first_byte));
        assert!(
            a.first_token <= a.last_token && a.last_token <= Some(a.total),
            "{a:?}"
        );
    }
    assert!(
        second.first_token.is_some(),
        "the resumed attempt delivered tokens"
    );
    // The next call reuses the pooled connection: no connect time.
    let again = client.chat(&request()).expect("chat");
    assert_eq!(again.timings.attempts.len(), 1);
    assert_eq!(again.timings.attempts[0].connect, None);
    // The timings travel in the JSON as milliseconds.
    let json = serde_json::to_value(&again).expect("json");
    assert!(
        json["timings"]["attempts"][0]["total"].as_f64().is_some(),
        "{json}"
    );
}
