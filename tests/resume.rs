//! Resume, don't restart: a broken stream continues from its byte offset through the mock's
//! llama.cpp-style replay route (`GET /v1/stream?conv_id=..&from=N`), with one generation and
//! no delta lost or repeated; and falls back to a restart when the replay cannot be had.
#![cfg(feature = "mock")]

mod common;

use common::without_retries;
use oai_sse::mock::{FaultRule, MockServer, Script};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    CallOptions, CancelHandle, ChatRequest, ChatResponse, Client, Error, FailureKind, Message,
    OwnedStreamEvent, ProxyConfig, RetryAction, StreamEvent,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::ControlFlow;
use std::time::Duration;

const REPLY: &str = "The sea is wide and the boats are small, but the harbour lights are on.";
const REASONING: &str = "A calm answer about the sea.";
const TOOL_ARGS: &str = r#"{"city":"Brest","unit":"celsius"}"#;

fn script() -> Script {
    Script::new()
        .reasoning(REASONING)
        .text(REPLY)
        .tool_call("get_weather", TOOL_ARGS)
}

fn request() -> ChatRequest {
    ChatRequest::new("mock-model", vec![Message::user("the sea")]).include_usage()
}

/// Jitter-free, short backoff; resume on (the default).
fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
        .jitter(0.0)
}

fn client(server: &MockServer) -> Client {
    client_with(server, policy())
}

fn client_with(server: &MockServer, policy: RetryPolicy) -> Client {
    Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .retry_policy(policy)
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn fault(spec: &str) -> FaultRule {
    spec.parse().expect("fault spec")
}

/// Runs the call, collecting every event the caller saw.
fn run(client: &Client) -> (Result<ChatResponse, Error>, Vec<OwnedStreamEvent>) {
    let mut events = Vec::new();
    let result = client.chat_stream(&request(), |e| events.push(e.to_owned_event()));
    (result, events)
}

/// The whole response (status line, headers, chunked body) the mock sends for `request()`.
fn raw_response_len(server: &MockServer) -> usize {
    let mut streaming = request();
    streaming.stream = Some(true);
    let body = serde_json::to_string(&streaming).expect("json");
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        tcp,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).expect("read");
    response.len()
}

/// Events other than the resume marker, in order.
fn deltas(events: &[OwnedStreamEvent]) -> Vec<&OwnedStreamEvent> {
    events
        .iter()
        .filter(|e| !matches!(e, OwnedStreamEvent::Resumed { .. }))
        .collect()
}

/// A FIN after every byte of the first response: the same response as a clean run, the same
/// events shown exactly once, one generation at the server, and at most one resume.
#[test]
fn fin_at_every_byte_offset_resumes_with_one_generation() {
    let clean_server = MockServer::start(script()).expect("mock");
    let (clean, clean_events) = run(&client(&clean_server));
    let clean = without_retries(&clean.expect("clean run"));
    let total = raw_response_len(&clean_server);
    let offsets: Vec<usize> = (0..total).collect();
    let chunks: Vec<&[usize]> = offsets.chunks(total.div_ceil(4)).collect();
    std::thread::scope(|scope| {
        for chunk in chunks {
            let (clean, clean_events) = (&clean, &clean_events);
            scope.spawn(move || {
                for &n in chunk {
                    let server = MockServer::start(
                        script().fault(fault(&format!("close-after={n},times=1"))),
                    )
                    .expect("mock");
                    // No wait before the resume: the sweep makes thousands of them.
                    let quick = policy().initial_delay(Duration::ZERO);
                    let (result, events) = run(&client_with(&server, quick));
                    let response = result.unwrap_or_else(|e| panic!("cut at {n}: {e:?}"));
                    assert_eq!(without_retries(&response), *clean, "cut at {n}");
                    assert_eq!(deltas(&events), deltas(clean_events), "cut at {n}");
                    assert_eq!(server.generation_count(), 1, "cut at {n}: generations");
                    assert!(
                        !events
                            .iter()
                            .any(|e| matches!(e, OwnedStreamEvent::Restart { .. })),
                        "cut at {n}: restarted"
                    );
                    match response.retries.as_slice() {
                        // The cut came after the stream was complete.
                        [] => assert_eq!(server.replay_count(), 0, "cut at {n}"),
                        [retry] => {
                            let RetryAction::Resumed { offset } = retry.action else {
                                panic!("cut at {n}: {retry:?}")
                            };
                            assert!((offset as usize) < n.max(1), "cut at {n}: offset {offset}");
                            assert_eq!(server.replay_count(), 1, "cut at {n}");
                            let resumed = events
                                .iter()
                                .filter(|e| matches!(e, OwnedStreamEvent::Resumed { .. }))
                                .count();
                            assert_eq!(resumed, 1, "cut at {n}");
                        }
                        more => panic!("cut at {n}: {more:?}"),
                    }
                }
            });
        }
    });
}

#[test]
fn resets_mid_stream_and_before_the_first_body_byte_resume_from_the_right_offset() {
    let clean_server = MockServer::start(script()).expect("mock");
    let total = raw_response_len(&clean_server);
    // 0: before the status line (nothing generated is lost: from=0 finds it all).
    for n in [0, 1, 120, total / 3, total / 2, total - 200] {
        let server = MockServer::start(script().fault(fault(&format!("reset-after={n},times=1"))))
            .expect("mock");
        let (result, _) = run(&client(&server));
        let response = result.unwrap_or_else(|e| panic!("reset at {n}: {e:?}"));
        assert_eq!(response.content(), REPLY, "reset at {n}");
        assert_eq!(server.generation_count(), 1, "reset at {n}");
        let retry = response.retries.first().expect("one retry");
        assert_eq!(retry.reason, FailureKind::ConnectionReset, "reset at {n}");
        assert!(
            matches!(retry.action, RetryAction::Resumed { .. }),
            "{retry:?}"
        );
    }
}

#[test]
fn the_first_resume_waits_at_most_100_ms_later_ones_back_off() {
    // The POST and the first replay are both cut: two resumes.
    let server = MockServer::start(script().fault(fault("close-after=600,times=2"))).expect("mock");
    let slow = RetryPolicy::default()
        .initial_delay(Duration::from_millis(400))
        .max_delay(Duration::from_secs(2))
        .jitter(0.0);
    let (result, _) = run(&client_with(&server, slow));
    let response = result.expect("recovered");
    assert_eq!(response.content(), REPLY);
    let delays: Vec<u64> = response.retries.iter().map(|r| r.delay_ms).collect();
    assert_eq!(delays, [100, 800], "{:?}", response.retries);
    assert!(
        response
            .retries
            .iter()
            .all(|r| matches!(r.action, RetryAction::Resumed { .. }))
    );
    assert_eq!(server.generation_count(), 1);
    assert_eq!(server.replay_count(), 2);
}

#[test]
fn every_post_carries_a_fresh_conversation_id_unless_resume_is_off() {
    let server = MockServer::start(script()).expect("mock");
    let client = client(&server);
    for _ in 0..2 {
        client.chat(&request()).expect("chat");
    }
    let ids: Vec<String> = server
        .chat_requests()
        .iter()
        .map(|r| r.header("x-conversation-id").expect("header").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        let hex = id.strip_prefix("oai-sse-").expect("prefix");
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }

    let server = MockServer::start(script().fault(fault("close-after=700,times=1"))).expect("mock");
    let off = client_with(&server, policy().resume(false));
    let (result, events) = run(&off);
    let response = result.expect("restarted");
    assert!(
        server.chat_requests()[0]
            .header("x-conversation-id")
            .is_none()
    );
    assert_eq!(server.generation_count(), 2);
    assert_eq!(response.retries[0].action, RetryAction::Restarted);
    // The restarted answer repeats what was shown: swallowed, nothing taken back.
    assert!(events.contains(&OwnedStreamEvent::Continued {
        attempt: 2,
        regenerated: true
    }));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, OwnedStreamEvent::Restart { .. }))
    );
}

/// Each way the replay can be missing falls back to a restart within the same retry: one
/// history entry, saying why the resume was not used, and the caller sees one continuous
/// answer (the restart's repeat of what was shown is swallowed).
#[test]
fn unavailable_replays_fall_back_to_a_restart() {
    let table = [
        ("no-replay", "the server cannot resume (404)"),
        ("no-replay=405", "the server cannot resume (405)"),
        ("no-replay=501", "the server cannot resume (501)"),
        (
            "replay-expired",
            "the server no longer holds the stream (404)",
        ),
        (
            "replay-lost",
            "the server dropped the bytes before the break",
        ),
    ];
    let (clean, clean_events) = run(&client(&MockServer::start(script()).expect("mock")));
    let clean = clean.expect("clean run");
    for (spec, why) in table {
        let server = MockServer::start(
            script()
                .fault(fault("close-after=700,times=1"))
                .fault(fault(spec)),
        )
        .expect("mock");
        let (result, events) = run(&client(&server));
        let response = result.unwrap_or_else(|e| panic!("{spec}: {e:?}"));
        assert_eq!(response.content(), REPLY, "{spec}");
        assert_eq!(server.generation_count(), 2, "{spec}: generated again");
        let [retry] = response.retries.as_slice() else {
            panic!("{spec}: one break, one retry: {:?}", response.retries);
        };
        assert_eq!(retry.action, RetryAction::Restarted, "{spec}");
        assert_eq!(retry.passed_over.as_deref(), Some(why), "{spec}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, OwnedStreamEvent::Restart { .. })),
            "{spec}: the repeat is swallowed"
        );
        let shown: Vec<_> = events
            .iter()
            .filter(|e| !matches!(e, OwnedStreamEvent::Continued { .. }))
            .collect();
        assert_eq!(shown, deltas(&clean_events), "{spec}");
        assert_eq!(
            without_retries(&response),
            without_retries(&clean),
            "{spec}"
        );
    }
}

/// A replay request that is itself cut is a second break: resumed again.
#[test]
fn a_cut_replay_is_resumed_again() {
    let server = MockServer::start(
        script()
            .fault(fault("close-after=700,times=1"))
            .fault(fault("close-after=400,after=1,times=1")),
    )
    .expect("mock");
    let (result, _) = run(&client(&server));
    let response = result.expect("resumed");
    assert_eq!(response.content(), REPLY);
    assert_eq!(server.generation_count(), 1, "nothing generated twice");
    let actions: Vec<&RetryAction> = response.retries.iter().map(|r| &r.action).collect();
    assert!(
        matches!(
            actions.as_slice(),
            [RetryAction::Resumed { .. }, RetryAction::Resumed { .. }]
        ),
        "{:?}",
        response.retries
    );
}

#[test]
fn a_client_remembers_a_server_without_the_replay_route() {
    // The faults cut the first call's POST and, after its fallback, the second call's POST.
    let server = MockServer::start(
        script()
            .fault(fault("close-after=700,times=1"))
            .fault(fault("close-after=700,after=3,times=1"))
            .fault(fault("no-replay")),
    )
    .expect("mock");
    let client = client(&server);
    let (first, _) = run(&client);
    let first = first.expect("first call");
    assert_eq!(
        first.retries.len(),
        1,
        "one break, one retry: {:?}",
        first.retries
    );
    let stream_requests = |server: &MockServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/v1/stream"))
            .count()
    };
    let probes = stream_requests(&server);
    assert!(probes >= 1, "the first call tried the route");
    let (second, _) = run(&client);
    let second = second.expect("second call");
    assert_eq!(second.retries.len(), 1, "{:?}", second.retries);
    assert_eq!(second.retries[0].action, RetryAction::Restarted);
    assert_eq!(
        stream_requests(&server),
        probes,
        "the route was not asked again"
    );
}

#[test]
fn a_session_that_expired_is_not_taken_for_a_missing_route() {
    // replay-expired answers 404 like a missing route; the lookup route tells them apart,
    // so the next broken call resumes again.
    let server = MockServer::start(
        script()
            .fault(fault("close-after=700,times=1"))
            .fault(fault("replay-expired,after=1,times=1"))
            .fault(fault("close-after=700,after=3,times=1")),
    )
    .expect("mock");
    let client = client(&server);
    let first = run(&client).0.expect("first call");
    assert!(
        matches!(first.retries.as_slice(), [r] if r.action == RetryAction::Restarted
            && r.passed_over.as_deref() == Some("the server no longer holds the stream (404)")),
        "{:?}",
        first.retries
    );
    let second = run(&client).0.expect("second call");
    assert!(
        matches!(second.retries.as_slice(), [r] if matches!(r.action, RetryAction::Resumed { .. })),
        "{:?}",
        second.retries
    );
}

#[test]
fn cancel_stop_and_giving_up_tell_the_server_to_stop() {
    // Cancel during a stall.
    let server = MockServer::start(script().fault(fault("stall-after=600,secs=10"))).expect("mock");
    let client = client(&server);
    let cancel = CancelHandle::new();
    let options = CallOptions {
        cancel: Some(cancel.clone()),
        ..CallOptions::default()
    };
    let mut seen = false;
    let result = client.chat_with(&request(), &options, |e| {
        if e.is_output() && !seen {
            seen = true;
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                cancel.cancel();
            });
        }
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    let id = server.chat_requests()[0]
        .header("x-conversation-id")
        .expect("id")
        .to_owned();
    assert_eq!(server.deleted_streams(), [id]);

    // Stop from the callback: the partial response, marked, and the server told.
    let server = MockServer::start(script()).expect("mock");
    let client = self::client(&server);
    let mut words = 0;
    let response = client
        .chat_stream(&request(), |e| {
            if let StreamEvent::Content { .. } = e {
                words += 1;
                if words == 3 {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .expect("stopped, not failed");
    assert!(response.stopped_by_caller);
    assert!(!response.content().is_empty() && response.content().len() < REPLY.len());
    assert_eq!(server.deleted_streams().len(), 1);

    // Giving up: every response is cut and no retry is left.
    let server = MockServer::start(script().fault(fault("close-after=700"))).expect("mock");
    let client = client_with(&server, policy().max_retries(1));
    let err = run(&client).0.expect_err("gave up");
    assert_eq!(err.retries().len(), 1);
    assert_eq!(server.deleted_streams().len(), 1);

    // A clean run leaves nothing to stop.
    let server = MockServer::start(script()).expect("mock");
    client_with(&server, policy())
        .chat(&request())
        .expect("chat");
    assert!(server.deleted_streams().is_empty());
}

#[test]
fn the_pull_stream_resumes_inside_next_event() {
    let server = MockServer::start(script().fault(fault("close-after=800,times=1"))).expect("mock");
    let client = client(&server);
    let mut stream = client.stream(&request()).expect("stream");
    let mut text = String::new();
    let mut resumed_at = None;
    while let Some(event) = stream.next_event().expect("event") {
        match event {
            StreamEvent::Content { text: t, .. } => text.push_str(t),
            StreamEvent::Resumed { offset, .. } => resumed_at = Some(offset),
            _ => {}
        }
    }
    let response = stream.finish().expect("response");
    assert_eq!(text, REPLY);
    assert_eq!(response.content(), REPLY);
    let offset = resumed_at.expect("resumed");
    assert_eq!(response.retries[0].action, RetryAction::Resumed { offset });
    assert_eq!(server.generation_count(), 1);
}

/// A replay that is not the stream received (another offset, from the start, another
/// conversation) is discarded before a byte of it reaches the caller: the call falls back
/// within the same retry, and the caller sees the uncut answer once.
#[test]
fn a_replay_that_does_not_match_is_never_spliced() {
    let (clean, clean_events) = run(&client(&MockServer::start(script()).expect("mock")));
    let clean = clean.expect("clean run");
    for spec in [
        "replay-shift=7",
        "replay-shift=-5",
        "replay-shift=1",
        "replay-from-start",
        "replay-foreign",
    ] {
        for cut in [300, 700, 1100] {
            let server = MockServer::start(
                script()
                    .fault(fault(&format!("close-after={cut},times=1")))
                    .fault(fault(spec)),
            )
            .expect("mock");
            let (result, events) = run(&client(&server));
            let response = result.unwrap_or_else(|e| panic!("{spec} cut {cut}: {e:?}"));
            assert_eq!(
                without_retries(&response),
                without_retries(&clean),
                "{spec} cut {cut}"
            );
            let shown: Vec<_> = events
                .iter()
                .filter(|e| {
                    !matches!(
                        e,
                        OwnedStreamEvent::Continued { .. } | OwnedStreamEvent::Resumed { .. }
                    )
                })
                .collect();
            assert_eq!(shown, deltas(&clean_events), "{spec} cut {cut}");
            let [retry] = response.retries.as_slice() else {
                panic!("{spec} cut {cut}: {:?}", response.retries);
            };
            // Asked from byte 0, a shift back or a replay from the start is the right one.
            let from_start = server
                .requests()
                .iter()
                .any(|r| r.method == "GET" && r.path.ends_with("&from=0"));
            if (spec.contains("=-") || spec == "replay-from-start") && from_start {
                assert!(
                    matches!(retry.action, RetryAction::Resumed { .. }),
                    "{spec} cut {cut}: {retry:?}"
                );
                continue;
            }
            assert_eq!(retry.action, RetryAction::Restarted, "{spec} cut {cut}");
            assert!(
                retry
                    .passed_over
                    .as_deref()
                    .is_some_and(|why| why.starts_with("the replay did not match")),
                "{spec} cut {cut}: {retry:?}"
            );
        }
    }
}

/// Both shapes of llama.cpp's replay routes resume, and so does the query shape without the
/// lookup route; each costs one retry, not a probe of its own.
#[test]
fn both_shapes_of_the_replay_routes_resume() {
    use oai_sse::mock::{ReplayRoutes, Replies};
    for routes in [
        ReplayRoutes::Query,
        ReplayRoutes::QueryWithoutLookup,
        ReplayRoutes::Path,
    ] {
        let replies =
            Replies::from(script().fault(fault("close-after=700,times=1"))).replay_routes(routes);
        let server = MockServer::start(replies).expect("mock");
        let (result, _) = run(&client(&server));
        let response = result.unwrap_or_else(|e| panic!("{routes:?}: {e:?}"));
        assert_eq!(response.content(), REPLY, "{routes:?}");
        assert_eq!(server.generation_count(), 1, "{routes:?}");
        assert!(
            matches!(response.retries.as_slice(), [r] if matches!(r.action, RetryAction::Resumed { .. })),
            "{routes:?}: {:?}",
            response.retries
        );
        let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
        let replay = paths
            .iter()
            .find(|p| p.starts_with("/v1/stream") && !p.starts_with("/v1/streams"))
            .unwrap_or_else(|| panic!("{routes:?}: no replay in {paths:?}"));
        match routes {
            ReplayRoutes::Path => assert!(replay.starts_with("/v1/stream/"), "{replay}"),
            _ => assert!(replay.starts_with("/v1/stream?conv_id="), "{replay}"),
        }
    }
}

/// A 200 event stream with no event at all, twice for the same request, is a server bug:
/// reported as such after the second, not resent until the budget is gone.
#[test]
fn an_empty_stream_twice_is_reported_not_resent() {
    let server = MockServer::start(script().fault(fault("empty-stream"))).expect("mock");
    let (result, _) = run(&client(&server));
    let err = result.expect_err("empty streams");
    let Error::AfterRetries(after) = &err else {
        panic!("reported after the one retry: {err:?}");
    };
    assert_eq!(after.attempts, 2, "{after:?}");
    assert!(
        matches!(after.last, Error::Stream(oai_sse::StreamError::EmptyStream)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("empty event stream"),
        "the message says what happened: {err}"
    );
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count();
    assert_eq!(posts, 2, "sent twice, not four times");
}

/// `DELETE /v1/stream` is sent only for a conversation the server answered with a 200 event
/// stream: never after a permanent failure that started no stream.
#[test]
fn no_delete_for_a_stream_that_never_started() {
    for spec in [
        "status=429,retry-after=soon,times=1",
        "status=400,times=1",
        "html=200",
        "status=401",
    ] {
        let server = MockServer::start(script().fault(fault(spec))).expect("mock");
        let (result, _) = run(&client_with(&server, without_retries_policy()));
        assert!(result.is_err(), "{spec}: {result:?}");
        let deletes: Vec<_> = server
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .map(|r| r.path.clone())
            .collect();
        assert!(deletes.is_empty(), "{spec}: {deletes:?}");
    }
}

fn without_retries_policy() -> RetryPolicy {
    policy().max_retries(0)
}
