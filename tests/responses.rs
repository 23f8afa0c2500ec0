//! The Responses API over loopback HTTP to the mock: streamed text and function calls add up
//! to the mock's own response object; a cut anywhere resumes (llama.cpp's replay) or
//! restarts to the uncut response with one retry; transient statuses are retried, permanent
//! ones and `response.failed` are not; a stream without its final event is a break.
#![cfg(feature = "mock")]

use oai_sse::mock::{FAILED_MESSAGE, FaultRule, MockServer, Script};
use oai_sse::responses::{ResponseStatus, ResponseTool, ResponsesAccumulator};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    CallOptions, Client, Error, FailureKind, OwnedResponseEvent, ProxyConfig, ResponseEvent,
    ResponseObject, ResponsesRequest, RetryAction,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const REPLY: &str = "The tide is out, so the boats rest on the sand until evening.";
const REASONING: &str = "The user asks about the harbour.";
const TOOL_ARGS: &str = r#"{"city":"Brest","unit":"celsius"}"#;

fn script() -> Script {
    Script::new()
        .reasoning(REASONING)
        .text(REPLY)
        .tool_call("get_weather", TOOL_ARGS)
}

fn request() -> ResponsesRequest {
    ResponsesRequest::new("mock-model", "how is the harbour")
        .instructions("be brief")
        .tool(ResponseTool::function(
            "get_weather",
            "The weather in a city",
            json!({"type": "object"}),
        ))
}

fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::ZERO)
        .max_delay(Duration::from_millis(20))
        .jitter(0.0)
}

fn client(server: &MockServer) -> Client {
    Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .retry_policy(policy())
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn fault(spec: &str) -> FaultRule {
    spec.parse().expect("fault spec")
}

/// The request body as sent (with `stream: true`).
fn request_json() -> Value {
    let mut streaming = request();
    streaming.stream = Some(true);
    serde_json::to_value(&streaming).expect("json")
}

/// Runs the call, collecting every event the caller saw.
fn run(client: &Client) -> (Result<ResponseObject, Error>, Vec<OwnedResponseEvent>) {
    let mut events = Vec::new();
    let result = client.responses_with(&request(), &CallOptions::default(), |e| {
        events.push(e.to_owned_event());
    });
    (result, events)
}

/// What the response says, without the call's own history.
fn essence(response: &ResponseObject) -> Value {
    let mut v = serde_json::to_value(response).expect("json");
    let object = v.as_object_mut().expect("object");
    object.remove("retries");
    object.remove("timings");
    v
}

/// The mock's response object in the same terms.
fn mock_essence(script: &Script) -> Value {
    let mock = script.response(&request_json());
    let ours: ResponseObject = {
        // The mock's object read back through a stream of its final event alone.
        let mut acc = ResponsesAccumulator::new();
        let event = json!({"type": "response.completed", "response": mock}).to_string();
        acc.push_event("", &event).expect("final event");
        acc.finish().expect("complete")
    };
    essence(&ours)
}

/// The text deltas of the last attempt the caller was told to keep.
fn shown_text(events: &[OwnedResponseEvent]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            OwnedResponseEvent::Restart { .. } => text.clear(),
            OwnedResponseEvent::Text { text: t, .. } => text.push_str(t),
            _ => {}
        }
    }
    text
}

fn raw_response_len(server: &MockServer) -> usize {
    let body = request_json().to_string();
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        tcp,
        "POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).expect("read");
    response.len()
}

#[test]
fn text_reasoning_and_a_function_call_add_up_to_the_mocks_response() {
    let server = MockServer::start(script()).expect("mock");
    let (result, events) = run(&client(&server));
    let response = result.expect("response");
    assert_eq!(essence(&response), mock_essence(&script()));
    assert_eq!(response.output_text(), REPLY);
    assert_eq!(response.reasoning_text(), REASONING);
    let calls: Vec<_> = response.function_calls().collect();
    assert_eq!(calls, [("call_mock_0", "get_weather", TOOL_ARGS)]);
    assert_eq!(response.status, ResponseStatus::Completed);
    assert_eq!(response.id, "resp_mock");
    assert!(response.retries.is_empty());
    assert_eq!(response.timings.len(), 1);
    assert_eq!(shown_text(&events), REPLY);
    // The request went to /v1/responses, as JSON with stream: true.
    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/v1/responses");
    let body = sent[0].json.as_ref().expect("json body");
    assert_eq!(body["stream"], true);
    assert_eq!(body["input"], "how is the harbour");
    assert_eq!(body["tools"][0]["name"], "get_weather");
    assert_eq!(
        response.usage.as_ref().map(|u| u.output_tokens),
        Some(server.generated_tokens())
    );
}

#[test]
fn the_pull_stream_hands_out_borrowed_events_and_its_iterator_owned_ones() {
    let server = MockServer::start(script()).expect("mock");
    let client = client(&server);
    let mut stream = client.responses_stream(&request()).expect("stream");
    let mut text = String::new();
    let mut args = String::new();
    while let Some(event) = stream.next_event().expect("event") {
        match event {
            ResponseEvent::Text { text: t, .. } => text.push_str(t),
            ResponseEvent::Arguments { delta, .. } => args.push_str(delta),
            _ => {}
        }
    }
    let response = stream.finish().expect("finish");
    assert_eq!(text, response.output_text());
    assert_eq!(args, TOOL_ARGS);

    let owned: Vec<_> = client
        .responses_stream(&request())
        .expect("stream")
        .collect::<Result<_, _>>()
        .expect("events");
    assert_eq!(shown_text(&owned), REPLY);

    // Stopped after the first text: what arrived, marked stopped.
    let mut stream = client.responses_stream(&request()).expect("stream");
    while let Some(event) = stream.next_event().expect("event") {
        if matches!(event, ResponseEvent::Text { .. }) {
            break;
        }
    }
    let partial = stream.stop();
    assert!(partial.stopped_by_caller);
    assert!(REPLY.starts_with(&partial.output_text()));
    assert!(!partial.output_text().is_empty());
}

/// A FIN after a spread of byte offsets of the first response: the uncut response, one
/// retry (a resume from the replay), one generation at the server, the text shown once.
#[test]
fn fin_at_a_spread_of_offsets_resumes_to_the_uncut_response() {
    let clean = mock_essence(&script());
    let total = raw_response_len(&MockServer::start(script()).expect("mock"));
    let offsets: Vec<usize> = (0..total).step_by(37).collect();
    let mut resumed = 0;
    for n in offsets {
        let server = MockServer::start(script().fault(fault(&format!("close-after={n},times=1"))))
            .expect("mock");
        let (result, events) = run(&client(&server));
        let response = result.unwrap_or_else(|e| panic!("cut at {n}: {e:?}"));
        assert_eq!(essence(&response), clean, "cut at {n}");
        assert_eq!(shown_text(&events), REPLY, "cut at {n}");
        assert_eq!(server.generation_count(), 1, "cut at {n}: generations");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, OwnedResponseEvent::Restart { .. })),
            "cut at {n}: restarted"
        );
        match response.retries.as_slice() {
            [] => {}
            [retry] => {
                assert!(
                    matches!(retry.action, RetryAction::Resumed { .. }),
                    "cut at {n}: {retry:?}"
                );
                resumed += 1;
            }
            more => panic!("cut at {n}: {} retries", more.len()),
        }
    }
    assert!(resumed > 10, "only {resumed} cuts resumed");
}

/// Without the replay route the cut response restarts: the uncut response, one retry, and
/// a `Restart` event exactly when text had been shown.
#[test]
fn fin_without_replay_restarts_to_the_uncut_response() {
    let clean = mock_essence(&script());
    let total = raw_response_len(&MockServer::start(script()).expect("mock"));
    let (mut restarted, mut announced) = (0, 0);
    for n in (0..total).step_by(53) {
        let server = MockServer::start(
            script()
                .fault(fault(&format!("close-after={n},times=1")))
                .fault(fault("no-replay")),
        )
        .expect("mock");
        let (result, events) = run(&client(&server));
        let response = result.unwrap_or_else(|e| panic!("cut at {n}: {e:?}"));
        assert_eq!(essence(&response), clean, "cut at {n}");
        assert_eq!(shown_text(&events), REPLY, "cut at {n}");
        match response.retries.as_slice() {
            [] => {}
            [retry] => {
                assert_eq!(retry.action, RetryAction::Restarted, "cut at {n}");
                restarted += 1;
            }
            more => panic!("cut at {n}: {} retries", more.len()),
        }
        // A restart is announced when, and only when, output had been handed out.
        let first_restart = events
            .iter()
            .position(|e| matches!(e, OwnedResponseEvent::Restart { .. }));
        if let Some(at) = first_restart {
            announced += 1;
            assert!(
                events[..at].iter().any(|e| matches!(
                    e,
                    OwnedResponseEvent::Text { .. }
                        | OwnedResponseEvent::Reasoning { .. }
                        | OwnedResponseEvent::Arguments { .. }
                )),
                "cut at {n}: a restart announced before any output"
            );
        }
    }
    assert!(
        restarted > 5 && announced > 0,
        "{restarted} restarts, {announced} announced"
    );
}

#[test]
fn transient_failures_are_retried_and_permanent_ones_are_not() {
    struct Case {
        name: &'static str,
        script: Script,
        retried: Option<FailureKind>,
        requests: usize,
    }
    let cases = [
        Case {
            name: "503",
            script: script().fault(fault("status=503,times=1")),
            retried: Some(FailureKind::HttpStatus),
            requests: 2,
        },
        Case {
            name: "429",
            script: script().fault(fault("status=429,times=1")),
            retried: Some(FailureKind::HttpStatus),
            requests: 2,
        },
        Case {
            name: "a reset",
            script: script()
                .fault(fault("reset-after=400,times=1"))
                .fault(fault("no-replay")),
            retried: Some(FailureKind::ConnectionReset),
            requests: 2,
        },
        Case {
            name: "a stream without its final event",
            script: script()
                .fault(fault("no-done,times=1"))
                .fault(fault("no-replay")),
            retried: Some(FailureKind::IncompleteStream),
            requests: 2,
        },
        Case {
            name: "a function call with cut arguments",
            script: script()
                .fault(fault("truncate-tool-args,times=1"))
                .fault(fault("no-replay")),
            retried: Some(FailureKind::TruncatedToolCallArguments),
            requests: 2,
        },
        Case {
            name: "400",
            script: script().fault(fault("status=400")),
            retried: None,
            requests: 1,
        },
        Case {
            name: "response.failed",
            script: Script::new().text(REPLY).finish_reason("failed"),
            retried: None,
            requests: 1,
        },
    ];
    for case in cases {
        let server = MockServer::start(case.script).expect("mock");
        let (result, _) = run(&client(&server));
        let generating = server
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/responses")
            .count();
        assert_eq!(generating, case.requests, "{}: requests", case.name);
        match case.retried {
            Some(kind) => {
                let response = result.unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
                assert_eq!(response.retries.len(), 1, "{}", case.name);
                assert_eq!(response.retries[0].reason, kind, "{}", case.name);
                assert_eq!(response.output_text(), REPLY, "{}", case.name);
            }
            None => {
                let err = result.expect_err(case.name);
                assert!(err.retries().is_empty(), "{}: {err:?}", case.name);
                if case.name == "response.failed" {
                    assert_eq!(err.kind(), FailureKind::ApiError);
                    let api = err.api_error().expect("api error");
                    assert_eq!(api.message, FAILED_MESSAGE);
                } else {
                    assert_eq!(err.status(), Some(400), "{}", case.name);
                }
            }
        }
    }
}

#[test]
fn an_incomplete_stream_is_an_error_not_a_short_answer() {
    let server = MockServer::start(script().fault(fault("no-done"))).expect("mock");
    let no_retries = CallOptions {
        retry: Some(RetryPolicy::never()),
        ..CallOptions::default()
    };
    let err = client(&server)
        .responses_with(&request(), &no_retries, |_| {})
        .expect_err("incomplete");
    assert_eq!(err.kind(), FailureKind::IncompleteStream);
}

#[test]
fn a_length_stop_is_an_incomplete_response_not_an_error() {
    let script = Script::new().text(REPLY).finish_reason("length");
    let server = MockServer::start(script.clone()).expect("mock");
    let response = client(&server).responses(&request()).expect("response");
    assert_eq!(response.status, ResponseStatus::Incomplete);
    assert_eq!(
        response.incomplete_reason.as_deref(),
        Some("max_output_tokens")
    );
    assert_eq!(response.output_text(), REPLY);
}
