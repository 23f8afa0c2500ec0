//! The accumulator over real event shapes (tests/data/responses/), whole and cut short, and
//! over the rules table: sequence numbers, errors, truncated arguments, limits.

use super::*;
use crate::responses::{OwnedResponseEvent, ResponseEvent};
use crate::sse::{EventReader, Item};

const LLAMA_TEXT: &str = include_str!("../../tests/data/responses/llama-cpp-reasoning-text.sse");
const LLAMA_CALL: &str = include_str!("../../tests/data/responses/llama-cpp-function-call.sse");
const OPENAI_TEXT: &str = include_str!("../../tests/data/responses/openai-text.sse");
const OPENAI_CALL: &str = include_str!("../../tests/data/responses/openai-function-call.sse");
const OPENAI_FAILED: &str = include_str!("../../tests/data/responses/openai-failed.sse");
const OPENAI_INCOMPLETE: &str = include_str!("../../tests/data/responses/openai-incomplete.sse");

/// The dispatched events of a stream: `(event name, data)`.
fn events(stream: &str) -> Vec<(String, String)> {
    let mut reader = EventReader::new(stream.as_bytes());
    let mut out = Vec::new();
    while let Some(item) = reader.next_item().unwrap() {
        if let Item::Event(e) = item {
            out.push((e.event.to_owned(), e.data.to_owned()));
        }
    }
    out
}

/// Feeds every event; returns the events handed out, and the first error or the completion.
fn run(
    acc: &mut ResponsesAccumulator,
    events: &[(String, String)],
) -> (Vec<OwnedResponseEvent>, Result<Completion, StreamError>) {
    let mut seen = Vec::new();
    let mut last = Ok(Completion::Pending);
    for (name, data) in events {
        last = acc.push_event(name, data);
        while let Some(event) = acc.next_event() {
            seen.push(event.to_owned_event());
        }
        if last.is_err() {
            break;
        }
    }
    (seen, last)
}

fn text_of(seen: &[OwnedResponseEvent]) -> String {
    seen.iter()
        .filter_map(|e| match e {
            OwnedResponseEvent::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn args_of(seen: &[OwnedResponseEvent]) -> String {
    seen.iter()
        .filter_map(|e| match e {
            OwnedResponseEvent::Arguments { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn real_streams_build_the_response_their_final_event_reports() {
    struct Case {
        name: &'static str,
        stream: &'static str,
        output: Vec<OutputItem>,
        usage: (u64, u64),
        status: ResponseStatus,
    }
    let cases = [
        Case {
            name: "llama.cpp reasoning and text",
            stream: LLAMA_TEXT,
            output: vec![
                OutputItem::Reasoning {
                    id: "rs_Zq3kX1".into(),
                    text: "The user greets me.".into(),
                },
                OutputItem::Message {
                    id: "msg_Zq3kX1".into(),
                    text: "Hello! How can I help?".into(),
                },
            ],
            usage: (12, 11),
            status: ResponseStatus::Completed,
        },
        Case {
            name: "llama.cpp function call",
            stream: LLAMA_CALL,
            output: vec![OutputItem::FunctionCall {
                id: String::new(),
                call_id: "fc_Kp2mQ9".into(),
                name: "get_weather".into(),
                arguments: r#"{"city": "Paris"}"#.into(),
            }],
            usage: (140, 18),
            status: ResponseStatus::Completed,
        },
        Case {
            name: "openai text (the done text goes past the deltas)",
            stream: OPENAI_TEXT,
            output: vec![OutputItem::Message {
                id: "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654".into(),
                text: "Hi there! How can I assist you today?".into(),
            }],
            usage: (37, 11),
            status: ResponseStatus::Completed,
        },
        Case {
            name: "openai function call",
            stream: OPENAI_CALL,
            output: vec![OutputItem::FunctionCall {
                id: "fc_68a1f0c3a2c08191".into(),
                call_id: "call_N6O1Ydr3Jj1jNkdF7ZrXVG2q".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"Paris, France"}"#.into(),
            }],
            usage: (58, 17),
            status: ResponseStatus::Completed,
        },
        Case {
            name: "openai incomplete",
            stream: OPENAI_INCOMPLETE,
            output: vec![OutputItem::Message {
                id: "msg_inc1".into(),
                text: "Once upon".into(),
            }],
            usage: (9, 2),
            status: ResponseStatus::Incomplete,
        },
    ];
    for case in cases {
        let events = events(case.stream);
        let mut acc = ResponsesAccumulator::new();
        let (seen, last) = run(&mut acc, &events);
        assert_eq!(last, Ok(Completion::Complete), "{}", case.name);
        let response = acc.finish().unwrap();
        assert_eq!(response.output, case.output, "{}", case.name);
        assert_eq!(response.status, case.status, "{}", case.name);
        let usage = response.usage.as_ref().unwrap();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            case.usage,
            "{}",
            case.name
        );
        // What was handed out adds up to the response.
        assert_eq!(text_of(&seen), response.output_text(), "{}", case.name);
        let args: String = response.function_calls().map(|(_, _, a)| a).collect();
        assert_eq!(args_of(&seen), args, "{}", case.name);
        // The final event's own output is the same.
        let (_, last_data) = events.last().unwrap();
        let reported: serde_json::Value = serde_json::from_str(last_data).unwrap();
        let ours: Vec<_> = response.output.iter().map(OutputItem::to_json).collect();
        let theirs = reported["response"]["output"].as_array().unwrap();
        for (ours, theirs) in ours.iter().zip(theirs) {
            for key in ["type", "id", "call_id", "name", "arguments"] {
                if let Some(v) = theirs.get(key) {
                    assert_eq!(ours.get(key), Some(v), "{}: {key}", case.name);
                }
            }
        }
        assert_eq!(ours.len(), theirs.len(), "{}", case.name);
    }
}

#[test]
fn every_cut_of_a_real_stream_is_incomplete_never_an_answer() {
    for stream in [LLAMA_TEXT, LLAMA_CALL, OPENAI_TEXT, OPENAI_CALL] {
        let events = events(stream);
        for keep in 0..events.len() {
            let mut acc = ResponsesAccumulator::new();
            let (_, last) = run(&mut acc, &events[..keep]);
            // A cut may break a function call's arguments: that is an error too.
            if last.is_ok() {
                assert_eq!(last, Ok(Completion::Pending), "cut after {keep}");
            }
            let err = acc.finish().unwrap_err();
            assert!(
                matches!(
                    err,
                    StreamError::IncompleteStream {
                        finish_seen: false,
                        ..
                    }
                ),
                "cut after {keep}: {err:?}"
            );
        }
    }
}

#[test]
fn the_events_handed_out_follow_the_stream() {
    let mut acc = ResponsesAccumulator::new();
    let (seen, _) = run(&mut acc, &events(LLAMA_CALL));
    use OwnedResponseEvent as E;
    let call = |delta: &str| E::Arguments {
        index: 0,
        call_id: "fc_Kp2mQ9".into(),
        name: "get_weather".into(),
        delta: delta.into(),
    };
    assert_eq!(
        seen,
        [
            E::Created {
                id: "resp_Fc81aB".into(),
                model: String::new()
            },
            E::ItemAdded {
                index: 0,
                kind: ItemKind::FunctionCall,
                id: "fc_Kp2mQ9".into()
            },
            call("{\"city\":"),
            call(" \"Paris\""),
            call("}"),
            E::ItemDone {
                index: 0,
                kind: ItemKind::FunctionCall
            },
        ]
    );
    let mut acc = ResponsesAccumulator::new();
    let (seen, _) = run(&mut acc, &events(OPENAI_TEXT));
    let other = seen.iter().find_map(|e| match e {
        E::Other { event_type, data } => Some((event_type.as_str(), data.as_str())),
        _ => None,
    });
    let (kind, data) = other.expect("the annotation event is passed through");
    assert_eq!(kind, "response.output_text.annotation.added");
    assert!(data.contains("url_citation"));
}

#[test]
fn rules_table() {
    let created = r#"{"type":"response.created","sequence_number":0,"response":{"id":"r"}}"#;
    let added = r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"type":"function_call","id":"fc","call_id":"c","name":"f","arguments":""}}"#;
    let delta = |seq: u64, d: &str| {
        serde_json::json!({"type": "response.function_call_arguments.delta",
            "sequence_number": seq, "output_index": 0, "delta": d})
        .to_string()
    };
    let done_item = |seq: u64, args: &str| {
        serde_json::json!({"type": "response.output_item.done", "sequence_number": seq,
            "output_index": 0, "item": {"type": "function_call", "id": "fc", "call_id": "c",
            "name": "f", "arguments": args}})
        .to_string()
    };
    let completed = |seq: u64, status: &str, reason: Option<&str>| {
        serde_json::json!({"type": format!("response.{status}"), "sequence_number": seq,
            "response": {"id": "r", "status": status,
                         "incomplete_details": reason.map(|r| serde_json::json!({"reason": r}))}})
        .to_string()
    };
    type Check = fn(&Result<Completion, StreamError>) -> bool;
    let cases: Vec<(&str, Vec<String>, Check)> = vec![
        (
            "a function call done with cut arguments is a break",
            vec![created.into(), added.into(), delta(2, "{\"a\":"), done_item(3, "{\"a\":")],
            |r| matches!(r, Err(StreamError::TruncatedToolCallArguments { name, id, .. }) if name == "f" && id == "c"),
        ),
        (
            "arguments cut by the token limit are said so",
            vec![created.into(), added.into(), delta(2, "{\"a\":"), completed(3, "incomplete", Some("max_output_tokens"))],
            |r| matches!(r, Err(StreamError::ToolCallArgumentsCutByLength { .. })),
        ),
        (
            "arguments cut without a token limit at the end are a break",
            vec![created.into(), added.into(), delta(2, "{\"a\":"), completed(3, "completed", None)],
            |r| matches!(r, Err(StreamError::TruncatedToolCallArguments { .. })),
        ),
        (
            "a gap in the sequence numbers is malformed",
            vec![created.into(), added.into(), delta(3, "{}")],
            |r| matches!(r, Err(StreamError::MalformedChunk { reason, .. }) if reason.contains("gap")),
        ),
        (
            "a repeated sequence number is malformed",
            vec![created.into(), added.into(), delta(1, "{}")],
            |r| matches!(r, Err(StreamError::MalformedChunk { reason, .. }) if reason.contains("repeat")),
        ),
        (
            "an error event is an api error",
            vec![created.into(), r#"{"type":"error","sequence_number":1,"code":"rate_limit_exceeded","message":"slow down","param":null}"#.into()],
            |r| matches!(r, Err(StreamError::Api(api)) if api.message == "slow down" && api.code.as_deref() == Some("rate_limit_exceeded") && api.kind.is_none()),
        ),
        (
            "data that is not an object is malformed",
            vec![created.into(), "not json".into()],
            |r| matches!(r, Err(StreamError::MalformedChunk { .. })),
        ),
        (
            "unknown event types are not fatal",
            vec![created.into(), r#"{"type":"response.mystery","sequence_number":1}"#.into(), completed(2, "completed", None)],
            |r| matches!(r, Ok(Completion::Complete)),
        ),
        (
            "empty arguments are no arguments",
            vec![created.into(), added.into(), done_item(2, ""), completed(3, "completed", None)],
            |r| matches!(r, Ok(Completion::Complete)),
        ),
        (
            "a gateway's [DONE] after the end is nothing",
            vec![created.into(), completed(1, "completed", None), "[DONE]".into()],
            |r| matches!(r, Ok(Completion::Complete)),
        ),
    ];
    for (name, events, check) in cases {
        let mut acc = ResponsesAccumulator::new();
        let events: Vec<_> = events.into_iter().map(|d| (String::new(), d)).collect();
        let (_, last) = run(&mut acc, &events);
        assert!(check(&last), "{name}: {last:?}");
    }
}

#[test]
fn failed_is_the_servers_error() {
    let mut acc = ResponsesAccumulator::new();
    let (_, last) = run(&mut acc, &events(OPENAI_FAILED));
    let Err(StreamError::Api(api)) = last else {
        panic!("{last:?}")
    };
    assert_eq!(api.code.as_deref(), Some("server_error"));
    assert_eq!(api.message, "The model failed to generate a response.");
}

#[test]
fn a_final_event_alone_still_streams_its_output() {
    let (_, data) = events(OPENAI_CALL).pop().unwrap();
    let mut acc = ResponsesAccumulator::new();
    assert_eq!(acc.push_event("", &data), Ok(Completion::Complete));
    let mut args = String::new();
    while let Some(event) = acc.next_event() {
        if let ResponseEvent::Arguments { delta, call_id, .. } = event {
            assert_eq!(call_id, "call_N6O1Ydr3Jj1jNkdF7ZrXVG2q");
            args.push_str(delta);
        }
    }
    assert_eq!(args, r#"{"location":"Paris, France"}"#);
    let response = acc.finish().unwrap();
    assert_eq!(response.function_calls().count(), 1);
}

#[test]
fn limits_bound_what_is_held() {
    let small = ResponseLimits {
        max_output_items: 1,
        max_response_bytes: 64,
    };
    let mut acc = ResponsesAccumulator::with_limits(small);
    let item = |i: u64| {
        serde_json::json!({"type": "response.output_item.added", "output_index": i,
            "item": {"type": "message", "id": "m"}})
        .to_string()
    };
    assert!(acc.push_event("", &item(0)).is_ok());
    assert_eq!(
        acc.push_event("", &item(1)),
        Err(StreamError::TooManyOutputItems { limit: 1 })
    );
    let mut acc = ResponsesAccumulator::with_limits(small);
    let big = serde_json::json!({"type": "response.output_text.delta", "delta": "x".repeat(65)});
    assert_eq!(
        acc.push_event("", &big.to_string()),
        Err(StreamError::ResponseTooLarge { limit: 64 })
    );
}

#[test]
fn never_panics_on_odd_events() {
    let odd = [
        r#"{}"#,
        r#"{"type":5}"#,
        r#"{"type":"response.output_item.added"}"#,
        r#"{"type":"response.output_item.done","item":7}"#,
        r#"{"type":"response.output_item.done","item":{"type":"message","content":"x"}}"#,
        r#"{"type":"response.output_text.delta","delta":null,"output_index":99}"#,
        r#"{"type":"response.content_part.done","part":[]}"#,
        r#"{"type":"response.completed","response":{"output":{"x":1},"usage":"no"}}"#,
        r#"{"type":"response.completed"}"#,
        r#"{"type":"response.failed","response":null}"#,
        r#"{"type":"response.output_text.delta","sequence_number":18446744073709551615}"#,
        r#"{"type":"response.output_text.delta","sequence_number":0}"#,
    ];
    for data in odd {
        let mut acc = ResponsesAccumulator::new();
        let _ = acc.push_event("", data);
        while acc.next_event().is_some() {}
        let _ = acc.finish();
    }
}
