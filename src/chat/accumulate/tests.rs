//! The accumulator's tables: real servers' streams in, events and responses out.

#[test]
fn sequential_choices_complete_only_when_all_n_finished() {
    let chunk = |i: u32, delta: &str, finish: &str| {
        format!(r#"{{"choices":[{{"index":{i},"delta":{delta},"finish_reason":{finish}}}]}}"#)
    };
    let mut acc = super::Accumulator::new(false).expect_choices(2);
    let mut sink = |_: &super::StreamEvent<'_>| {};
    for (data, want) in [
        (
            chunk(0, r#"{"content":"a"}"#, "null"),
            super::Completion::Pending,
        ),
        (chunk(0, "{}", r#""stop""#), super::Completion::Pending),
        (
            chunk(1, r#"{"content":"b"}"#, "null"),
            super::Completion::Pending,
        ),
        (chunk(1, "{}", r#""stop""#), super::Completion::Complete),
    ] {
        assert_eq!(
            acc.push_event_with("message", &data, &mut sink),
            Ok(want),
            "{data}"
        );
    }
    let response = acc.finish().expect("complete");
    assert_eq!(response.choices.len(), 2);
    assert_eq!(response.choices[1].message.text(), "b");
}

use super::*;
use crate::chat::OwnedStreamEvent as E;
use crate::chat::response_from_completion_json;
use crate::retry::FailureKind;
use serde_json::Value;
use serde_json::json;

/// What feeding a list of `(event type, data)` produced.
struct Run {
    events: Vec<E>,
    progress: Vec<Completion>,
    error: Option<StreamError>,
    acc: Accumulator,
}

fn run_with(usage: bool, limits: ChatLimits, input: &[(&str, &str)]) -> Run {
    let mut acc = Accumulator::with_limits(usage, limits);
    let mut events = Vec::new();
    let mut progress = Vec::new();
    let mut error = None;
    for (ty, data) in input {
        match acc.push_event_with(ty, data, &mut |e| events.push(e.to_owned_event())) {
            Ok(p) => progress.push(p),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Run {
        events,
        progress,
        error,
        acc,
    }
}

fn run(usage: bool, input: &[(&str, &str)]) -> Run {
    run_with(usage, ChatLimits::default(), input)
}

/// `message` events from data lines.
fn msgs<'a>(lines: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    lines.iter().map(|d| ("message", *d)).collect()
}

/// The finished response as JSON, without the `retries` array (always empty here: the
/// accumulator makes no retries).
fn finish_json(acc: Accumulator) -> Result<Value, StreamError> {
    acc.finish().map(|r| {
        let mut json = serde_json::to_value(r).unwrap_or_default();
        if let Some(object) = json.as_object_mut() {
            assert_eq!(object.remove("retries"), Some(Value::Array(Vec::new())));
        }
        json
    })
}

fn role(choice: u32) -> E {
    E::Role {
        choice,
        role: "assistant".into(),
    }
}
fn text(choice: u32, t: &str) -> E {
    E::Content {
        choice,
        text: t.into(),
    }
}
fn think(choice: u32, t: &str) -> E {
    E::Reasoning {
        choice,
        text: t.into(),
    }
}
fn tool(choice: u32, index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> E {
    E::ToolCall {
        choice,
        index,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: args.into(),
    }
}
fn fin(choice: u32, reason: &str) -> E {
    E::Finish {
        choice,
        reason: reason.into(),
    }
}
fn usage(p: u64, c: u64) -> Usage {
    Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
        ..Usage::default()
    }
}

use Completion::{Complete as Done, Pending as More};

const OPENAI_TEXT: [&str; 5] = [
    r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"content":" \"world\""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
];

fn openai_text_response(usage: Option<Value>) -> Value {
    let mut v = json!({
        "id": "chatcmpl-AyPbt",
        "object": "chat.completion",
        "created": 1739000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_72ed7ab54c",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello \"world\""},
            "finish_reason": "stop"
        }]
    });
    if let (Some(u), Some(obj)) = (usage, v.as_object_mut()) {
        obj.insert("usage".into(), u);
    }
    v
}

#[test]
fn openai_content_stream() {
    let text_events = vec![
        role(0),
        text(0, "Hello"),
        text(0, " \"world\""),
        fin(0, "stop"),
    ];
    let full_usage = json!({"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,
        "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}});
    // (usage requested, lines, progress after each, response usage)
    type Case<'a> = (bool, Vec<&'a str>, Vec<Completion>, Option<Value>);
    let cases: Vec<Case<'_>> = vec![
        // Without usage the finish chunk already completes: no need to wait for [DONE].
        (
            false,
            OPENAI_TEXT[..4].to_vec(),
            vec![More, More, More, Done],
            None,
        ),
        (
            false,
            [&OPENAI_TEXT[..4], &["[DONE]"]].concat(),
            vec![More, More, More, Done, Done],
            None,
        ),
        // With usage requested, completion waits for the usage chunk.
        (
            true,
            OPENAI_TEXT.to_vec(),
            vec![More, More, More, More, Done],
            Some(full_usage.clone()),
        ),
        (
            true,
            [&OPENAI_TEXT[..], &["[DONE]"]].concat(),
            vec![More, More, More, More, Done, Done],
            Some(full_usage),
        ),
    ];
    for (usage_requested, lines, progress, want_usage) in cases {
        let r = run(usage_requested, &msgs(&lines));
        assert_eq!(r.error, None);
        assert_eq!(r.progress, progress, "usage {usage_requested}");
        let mut want_events = text_events.clone();
        if usage_requested {
            want_events.push(E::Usage(Usage {
                extra: want_usage
                    .as_ref()
                    .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
                    .map(|u| u.extra)
                    .unwrap_or_default(),
                ..usage(9, 3)
            }));
        }
        assert_eq!(r.events, want_events);
        assert!(r.acc.is_complete() && r.acc.has_output());
        assert_eq!(
            finish_json(r.acc),
            Ok(openai_text_response(want_usage)),
            "usage {usage_requested}"
        );
    }
}

#[test]
fn llama_cpp_reasoning_with_timings_and_no_done() {
    let lines = [
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"reasoning_content":"The user"}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"reasoning_content":" wants 6*7."}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"42"}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
        r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk","usage":{"completion_tokens":9,"prompt_tokens":14,"total_tokens":23},"timings":{"prompt_n":14,"prompt_ms":21.5,"prompt_per_token_ms":1.5,"predicted_n":9,"predicted_ms":88.1,"predicted_per_second":102.1}}"#,
    ];
    for usage_requested in [false, true] {
        let r = run(usage_requested, &msgs(&lines));
        assert_eq!(r.error, None);
        assert_eq!(r.progress, vec![More, More, More, More, Done]);
        assert_eq!(
            r.events,
            vec![
                role(0),
                think(0, "The user"),
                think(0, " wants 6*7."),
                text(0, "42"),
                fin(0, "stop"),
                E::Usage(usage(14, 9)),
            ]
        );
        assert_eq!(
            finish_json(r.acc),
            Ok(json!({
                "id": "chatcmpl-Xb3",
                "object": "chat.completion",
                "created": 1745000000,
                "model": "Qwen3-8B-Q4_K_M.gguf",
                "system_fingerprint": "b5415-6a2bc8bf",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "42",
                                "reasoning_content": "The user wants 6*7."},
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23},
                // llama.cpp's own figures, in its own shape; the rest of its object is dropped.
                "timings": {"prompt_n": 14, "prompt_ms": 21.5, "predicted_n": 9,
                            "predicted_ms": 88.1}
            }))
        );
    }
}

#[test]
fn reasoning_field_variants() {
    // (delta, reasoning events, aggregated reasoning)
    let cases: [(&str, Vec<E>, &str); 5] = [
        (r#"{"reasoning":"vllm"}"#, vec![think(0, "vllm")], "vllm"),
        (r#"{"reasoning_content":"ds"}"#, vec![think(0, "ds")], "ds"),
        // Both fields with the same text in one delta: counted once.
        (
            r#"{"reasoning_content":"same","reasoning":"same"}"#,
            vec![think(0, "same")],
            "same",
        ),
        (
            r#"{"reasoning_content":"a","reasoning":"b"}"#,
            vec![think(0, "a"), think(0, "b")],
            "ab",
        ),
        (r#"{"reasoning_content":"","reasoning":null}"#, vec![], ""),
    ];
    for (delta, want_events, want) in cases {
        let chunk = format!(r#"{{"choices":[{{"index":0,"delta":{delta}}}]}}"#);
        let done = r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#;
        let r = run(false, &msgs(&[&chunk, done]));
        let mut all = want_events;
        all.extend([text(0, "ok"), fin(0, "stop")]);
        assert_eq!(r.events, all, "{delta}");
        let resp = r.acc.finish();
        let got = resp.as_ref().ok().and_then(|r| r.reasoning());
        assert_eq!(got, (!want.is_empty()).then_some(want), "{delta}");
    }
}

const PARALLEL_TOOLS: [&str; 9] = [
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_sF9t","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Pa"}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_Qx2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\": "}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#,
    "[DONE]",
];

#[test]
fn parallel_tool_calls_split_across_chunks() {
    let r = run(false, &msgs(&PARALLEL_TOOLS));
    assert_eq!(r.error, None);
    assert_eq!(
        r.progress,
        vec![More, More, More, More, More, More, More, Done, Done]
    );
    assert_eq!(
        r.events,
        vec![
            role(0),
            tool(0, 0, Some("call_sF9t"), Some("get_weather"), ""),
            tool(0, 0, None, None, "{\"lo"),
            tool(0, 0, None, None, "cation\": \"Pa"),
            tool(0, 0, None, None, "ris\"}"),
            tool(0, 1, Some("call_Qx2"), Some("get_time"), ""),
            tool(0, 1, None, None, "{\"tz\": "),
            tool(0, 1, None, None, "\"CET\"}"),
            fin(0, "tool_calls"),
        ]
    );
    let resp = r.acc.finish();
    let message = resp.as_ref().map(ChatResponse::to_message);
    assert_eq!(
        message.map(|m| serde_json::to_value(m).unwrap_or_default()),
        Ok(json!({
            "role": "assistant",
            "tool_calls": [
                {"id": "call_sF9t", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"id": "call_Qx2", "type": "function",
                 "function": {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}}
            ]
        }))
    );
    assert_eq!(resp.map(|r| r.content().to_owned()), Ok(String::new()));
}

/// Tool-call fragments of choice 0 in separate chunks, then finish `tool_calls` and `[DONE]`.
fn tool_stream(fragments: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = fragments
        .iter()
        .map(|f| format!(r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{f}]}}}}]}}"#))
        .collect();
    lines.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#.into());
    lines.push("[DONE]".into());
    lines
}

fn calls_of(
    r: Result<ChatResponse, StreamError>,
) -> Result<Vec<(String, String, String)>, StreamError> {
    r.map(|r| {
        r.tool_calls()
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.function.name.clone(),
                    c.function.arguments.clone(),
                )
            })
            .collect()
    })
}

#[test]
fn tool_call_index_normalization() {
    type Calls = Vec<(&'static str, &'static str, &'static str)>;
    // (fragments, slot of each fragment's event, final calls)
    let cases: Vec<(Vec<&str>, Vec<u32>, Calls)> = vec![
        // No index: every call complete in one fragment with its own id (Gemini-style).
        (
            vec![
                r#"{"id":"c1","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}}"#,
                r#"{"id":"c2","type":"function","function":{"name":"b","arguments":"{}"}}"#,
            ],
            vec![0, 1],
            vec![("c1", "a", "{\"x\":1}"), ("c2", "b", "{}")],
        ),
        // Index -1: id only in the first fragment, later fragments continue it.
        (
            vec![
                r#"{"index":-1,"id":"c1","function":{"name":"a","arguments":"{\"x\""}}"#,
                r#"{"index":-1,"function":{"arguments":":1}"}}"#,
                r#"{"index":-1,"id":"c2","function":{"name":"b","arguments":"{}"}}"#,
            ],
            vec![0, 0, 1],
            vec![("c1", "a", "{\"x\":1}"), ("c2", "b", "{}")],
        ),
        // No index, the same id repeated on every fragment.
        (
            vec![
                r#"{"id":"c1","function":{"name":"a","arguments":"[1,"}}"#,
                r#"{"id":"c1","function":{"arguments":"2]"}}"#,
            ],
            vec![0, 0],
            vec![("c1", "a", "[1,2]")],
        ),
        // Indexed first fragment, index-less continuation.
        (
            vec![
                r#"{"index":0,"id":"c1","function":{"name":"a","arguments":""}}"#,
                r#"{"function":{"arguments":"{}"}}"#,
            ],
            vec![0, 0],
            vec![("c1", "a", "{}")],
        ),
        // Sparse indices compact in order of first appearance.
        (
            vec![
                r#"{"index":2,"id":"c1","function":{"name":"a","arguments":"{"}}"#,
                r#"{"index":7,"id":"c2","function":{"name":"b","arguments":"["}}"#,
                r#"{"index":2,"function":{"arguments":"}"}}"#,
                r#"{"index":0,"id":"c3","function":{"name":"c","arguments":"1"}}"#,
                r#"{"index":7,"function":{"arguments":"]"}}"#,
            ],
            vec![0, 1, 0, 2, 1],
            vec![("c1", "a", "{}"), ("c2", "b", "[]"), ("c3", "c", "1")],
        ),
        // Index 0 reused for a second call with a new id (some proxies).
        (
            vec![
                r#"{"index":0,"id":"c1","function":{"name":"a","arguments":"{}"}}"#,
                r#"{"index":0,"id":"c2","function":{"name":"b","arguments":"{"}}"#,
                r#"{"index":0,"function":{"arguments":"}"}}"#,
            ],
            vec![0, 1, 1],
            vec![("c1", "a", "{}"), ("c2", "b", "{}")],
        ),
        // id, type and name: the first non-empty value wins.
        (
            vec![
                r#"{"index":0,"id":"","type":"","function":{"name":"","arguments":""}}"#,
                r#"{"index":0,"id":"c1","function":{"name":"a"}}"#,
                r#"{"index":0,"id":"c1","type":"function","function":{"name":"a","arguments":"{}"}}"#,
            ],
            vec![0, 0],
            vec![("c1", "a", "{}")],
        ),
    ];
    for (fragments, slots, want) in cases {
        let lines = tool_stream(&fragments);
        let input: Vec<(&str, &str)> = lines.iter().map(|l| ("message", l.as_str())).collect();
        let r = run(false, &input);
        assert_eq!(r.error, None, "{fragments:?}");
        let got_slots: Vec<u32> = r
            .events
            .iter()
            .filter_map(|e| match e {
                E::ToolCall { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(got_slots, slots, "{fragments:?}");
        let want: Vec<(String, String, String)> = want
            .into_iter()
            .map(|(a, b, c)| (a.into(), b.into(), c.into()))
            .collect();
        assert_eq!(calls_of(r.acc.finish()), Ok(want), "{fragments:?}");
    }
}

#[test]
fn interleaved_choices() {
    let lines = [
        r#"{"id":"x","choices":[{"index":1,"delta":{"role":"assistant","content":"B"}}]}"#,
        r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"A"}}]}"#,
        r#"{"id":"x","choices":[{"index":1,"delta":{"content":"b"},"finish_reason":"stop"},{"index":0,"delta":{"content":"a"}}]}"#,
        r#"{"id":"x","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"length"}]}"#,
    ];
    let r = run(false, &msgs(&lines));
    assert_eq!(r.error, None);
    assert_eq!(r.progress, vec![More, More, More, Done]);
    assert_eq!(
        r.events,
        vec![
            role(1),
            text(1, "B"),
            role(0),
            text(0, "A"),
            text(1, "b"),
            fin(1, "stop"),
            text(0, "a"),
            text(0, "!"),
            fin(0, "length"),
        ]
    );
    let got = r.acc.finish().map(|r| {
        r.choices
            .iter()
            .map(|c| {
                (
                    c.index,
                    c.message.text().to_owned(),
                    c.finish_reason.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        got,
        Ok(vec![
            (0, "Aa!".to_owned(), Some("length".to_owned())),
            (1, "Bb".to_owned(), Some("stop".to_owned())),
        ])
    );
}

#[test]
fn server_errors() {
    let err = |message: &str, kind: Option<&str>, code: Option<&str>| {
        StreamError::Api(Box::new(ApiError {
            message: message.into(),
            kind: kind.map(Into::into),
            param: None,
            code: code.map(Into::into),
        }))
    };
    let ok_chunk = r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
    let cases = [
        (
            (
                "message",
                r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
            ),
            err(
                "The server had an error while processing your request.",
                Some("server_error"),
                None,
            ),
            FailureKind::UpstreamBroke,
        ),
        (
            (
                "message",
                r#"{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}"#,
            ),
            err(
                "Context size has been exceeded.",
                Some("server_error"),
                Some("500"),
            ),
            FailureKind::ApiError,
        ),
        (
            (
                "message",
                r#"{"id":"x","choices":[],"error":{"message":"Overloaded"}}"#,
            ),
            err("Overloaded", None, None),
            FailureKind::UpstreamBroke,
        ),
        (
            (
                "error",
                r#"{"error":{"message":"model crashed","type":"internal"}}"#,
            ),
            err("model crashed", Some("internal"), None),
            FailureKind::ApiError,
        ),
        (
            ("error", "upstream timeout"),
            err("upstream timeout", None, None),
            FailureKind::UpstreamBroke,
        ),
    ];
    // The kind says whether the error event is a break behind the server (retried as
    // one) or a refusal of the request.
    for ((ty, data), want, kind) in cases {
        let r = run(false, &[("message", ok_chunk), (ty, data)]);
        assert_eq!(r.events, vec![text(0, "hi")]);
        assert_eq!(
            r.error.as_ref().map(StreamError::kind),
            Some(kind),
            "{data}"
        );
        assert_eq!(r.error, Some(want), "{data}");
    }
}

#[test]
fn malformed_chunks() {
    let cases = [
        (
            r#"{"choices":[{"delta":{"content":"abc"#,
            "EOF while parsing a string at line 1 column 36",
        ),
        (
            r#"{"choices":[{"index":"zero"}]}"#,
            "invalid type: string \"zero\", expected u32 at line 1 column 27",
        ),
        ("hello", "expected a JSON object"),
        ("[1,2]", "expected a JSON object"),
        (
            r#"{"a":1} trailing"#,
            "trailing characters at line 1 column 9",
        ),
    ];
    for (data, reason) in cases {
        let r = run(false, &[("message", data)]);
        assert_eq!(
            r.error,
            Some(StreamError::MalformedChunk {
                reason: reason.into(),
                snippet: data.into()
            }),
            "{data}"
        );
    }
    let long = format!("{{\"x\":\"{}", "é".repeat(300));
    let r = run(false, &[("message", &long)]);
    match r.error {
        Some(StreamError::MalformedChunk { snippet, .. }) => {
            assert_eq!(snippet.chars().count(), StreamError::SNIPPET_CHARS);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ignored_events_and_done_variants() {
    let content = r#"{"choices":[{"delta":{"content":"x"}}]}"#;
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<Completion>);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("ping", "not json"), ("message", "")],
            vec![More, More],
        ),
        (vec![("message", "  \n")], vec![More]),
        (vec![("message", " [DONE] \n")], vec![Done]),
        (vec![("", "[DONE]")], vec![Done]),
        (
            vec![("message", content), ("message", "[DONE]")],
            vec![More, Done],
        ),
        // A stream without choices only completes on [DONE].
        (
            vec![("message", r#"{"choices":[],"usage":{"prompt_tokens":1}}"#)],
            vec![More],
        ),
    ];
    for (input, progress) in cases {
        let r = run(false, &input);
        assert_eq!(r.error, None, "{input:?}");
        assert_eq!(r.progress, progress, "{input:?}");
    }
    // After [DONE] the response may have no choices at all.
    let r = run(false, &[("message", "[DONE]")]);
    assert_eq!(r.acc.finish().map(|r| r.choices.len()), Ok(0));
}

#[test]
fn incomplete_streams() {
    let role_only = r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
    let content = r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#;
    let finished = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    let second = r#"{"choices":[{"index":1,"delta":{"content":"y"}}]}"#;
    // (usage requested, lines, has_output, received_events, finish_seen)
    let cases: Vec<(bool, Vec<&str>, bool, u64, bool)> = vec![
        (false, vec![], false, 0, false),
        (false, vec![role_only], false, 1, false),
        (false, vec![role_only, content], true, 2, false),
        (false, vec![content, finished, second], true, 3, false),
        // Finished, but the requested usage chunk never came.
        (true, vec![content, finished], true, 2, true),
    ];
    for (usage_requested, lines, has_output, received_events, finish_seen) in cases {
        let r = run(usage_requested, &msgs(&lines));
        assert_eq!(r.error, None);
        assert!(!r.acc.is_complete());
        assert_eq!(r.acc.has_output(), has_output, "{lines:?}");
        let err = r.acc.finish().err();
        assert_eq!(
            err.as_ref().map(StreamError::kind),
            Some(FailureKind::IncompleteStream)
        );
        assert_eq!(
            err,
            Some(StreamError::IncompleteStream {
                received_events,
                finish_seen
            }),
            "{lines:?}"
        );
    }
}

#[test]
fn tool_argument_checks() {
    let frag = |args: &str| {
        format!(
            r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","function":{{"name":"search","arguments":{}}}}}]}}}}]}}"#,
            serde_json::to_string(args).unwrap_or_default()
        )
    };
    let end = |reason: &str| {
        format!(r#"{{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#)
    };
    let ok = |args: &str| {
        Ok(vec![(
            "call_1".to_owned(),
            "search".to_owned(),
            args.to_owned(),
        )])
    };
    let cases = [
        ("{\"q\":\"rust\"}", "tool_calls", ok("{\"q\":\"rust\"}")),
        ("", "tool_calls", ok("{}")),
        ("  \n", "stop", ok("{}")),
        (
            "{\"q\":\"ru",
            "tool_calls",
            Err(StreamError::TruncatedToolCallArguments {
                choice: 0,
                index: 0,
                id: "call_1".into(),
                name: "search".into(),
            }),
        ),
        (
            "{\"q\":\"ru",
            "length",
            Err(StreamError::ToolCallArgumentsCutByLength {
                choice: 0,
                index: 0,
                name: "search".into(),
            }),
        ),
        (
            "{\"q\":1}}",
            "stop",
            Err(StreamError::TruncatedToolCallArguments {
                choice: 0,
                index: 0,
                id: "call_1".into(),
                name: "search".into(),
            }),
        ),
    ];
    for (args, reason, want) in cases {
        let (a, b) = (frag(args), end(reason));
        let r = run(false, &msgs(&[&a, &b, "[DONE]"]));
        assert_eq!(r.error, None);
        assert_eq!(calls_of(r.acc.finish()), want, "{args:?} {reason}");
    }
}

#[test]
fn limits() {
    let limits = ChatLimits {
        max_choices: 2,
        max_tool_calls: 2,
        max_response_bytes: 10,
    };
    let three_choices =
        r#"{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{}},{"index":2,"delta":{}}]}"#;
    let three_calls = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a"},{"index":1,"id":"b"},{"index":2,"id":"c"}]}}]}"#;
    let three_unindexed =
        r#"{"choices":[{"delta":{"tool_calls":[{"id":"a"},{"id":"b"},{"id":"c"}]}}]}"#;
    let ten = r#"{"choices":[{"delta":{"content":"12345","reasoning":"67890"}}]}"#;
    let one_more = r#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#;
    let cases: Vec<(Vec<&str>, Option<StreamError>)> = vec![
        (
            vec![three_choices],
            Some(StreamError::TooManyChoices { limit: 2 }),
        ),
        (
            vec![three_calls],
            Some(StreamError::TooManyToolCalls { limit: 2 }),
        ),
        (
            vec![three_unindexed],
            Some(StreamError::TooManyToolCalls { limit: 2 }),
        ),
        (vec![ten], None),
        (
            vec![ten, one_more],
            Some(StreamError::ResponseTooLarge { limit: 10 }),
        ),
    ];
    for (lines, want) in cases {
        let r = run_with(false, limits, &msgs(&lines));
        assert_eq!(r.error, want, "{lines:?}");
        if let Some(e) = &r.error {
            assert_eq!(e.kind(), FailureKind::LimitExceeded);
        }
    }
    assert_eq!(ChatLimits::default().max_response_bytes, 64 * 1024 * 1024);
}

#[test]
fn nulls_everywhere_and_repeated_fields() {
    let lines = [
        r#"{"id":null,"object":"chat.completion.chunk","created":null,"model":null,"system_fingerprint":null,"choices":null,"usage":null}"#,
        r#"{"id":"","model":"","choices":[{"index":null,"delta":null,"finish_reason":null,"logprobs":null}]}"#,
        r#"{"id":"a","model":"m1","created":5,"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":null,"reasoning":null,"refusal":null,"tool_calls":null},"finish_reason":""}]}"#,
        r#"{"id":"b","model":"m2","created":6,"system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"x","refusal":"no"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":"stop"}],"usage":{"prompt_tokens":null}}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#,
    ];
    let r = run(false, &msgs(&lines));
    assert_eq!(r.error, None);
    assert_eq!(
        r.events,
        vec![
            role(0),
            text(0, "x"),
            E::Refusal {
                choice: 0,
                text: "no".into()
            },
            fin(0, "stop"),
            E::Usage(usage(0, 0)),
            E::Usage(usage(2, 1)),
        ]
    );
    assert_eq!(
        finish_json(r.acc),
        Ok(json!({
            "id": "a", "object": "chat.completion", "created": 5, "model": "m1",
            "system_fingerprint": "fp",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x", "refusal": "no"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
        }))
    );
}

#[test]
fn completion_json_bodies() {
    let body = |msg: Value, finish: &str| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        })
        .to_string()
    };
    let call = |args: &str| {
        json!({"role":"assistant","content":null,"tool_calls":[
            {"id":"c1","type":"function","function":{"name":"f","arguments":args}}]})
    };
    let text_body = body(
        json!({"role":"assistant","content":"hi","reasoning_content":"r"}),
        "stop",
    );
    let cases: Vec<(String, Result<Value, StreamError>)> = vec![
        (
            text_body.clone(),
            Ok(serde_json::from_str::<Value>(&text_body).unwrap_or_default()),
        ),
        (
            body(call(""), "tool_calls"),
            Ok(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [{"index": 0, "message": {"role":"assistant","tool_calls":[
                    {"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                    "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
            })),
        ),
        (
            body(call("{\"a\":"), "length"),
            Err(StreamError::ToolCallArgumentsCutByLength {
                choice: 0,
                index: 0,
                name: "f".into(),
            }),
        ),
        (
            r#"{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}"#.into(),
            Err(StreamError::Api(Box::new(ApiError {
                message: "bad model".into(),
                kind: Some("invalid_request_error".into()),
                param: None,
                code: Some("model_not_found".into()),
            }))),
        ),
        (
            "<html>oops</html>".into(),
            Err(StreamError::MalformedChunk {
                reason: "expected value at line 1 column 1".into(),
                snippet: "<html>oops</html>".into(),
            }),
        ),
        (
            r#"{"choices":[{"index":0}]}"#.into(),
            Err(StreamError::MalformedChunk {
                reason: "missing field `message` at line 1 column 23".into(),
                snippet: r#"{"choices":[{"index":0}]}"#.into(),
            }),
        ),
    ];
    for (input, want) in cases {
        let got = response_from_completion_json(input.as_bytes()).map(|r| {
            let mut json = serde_json::to_value(r).unwrap_or_default();
            if let Some(object) = json.as_object_mut() {
                object.remove("retries");
            }
            json
        });
        assert_eq!(got, want, "{input}");
    }
    assert!(response_from_completion_json(b"\xff\xfe").is_err());
}

#[test]
fn error_kinds() {
    let cases = [
        (StreamError::Api(Box::default()), FailureKind::ApiError),
        (
            StreamError::MalformedChunk {
                reason: String::new(),
                snippet: String::new(),
            },
            FailureKind::MalformedChunk,
        ),
        (
            StreamError::IncompleteStream {
                received_events: 0,
                finish_seen: false,
            },
            FailureKind::IncompleteStream,
        ),
        (
            StreamError::TruncatedToolCallArguments {
                choice: 0,
                index: 0,
                id: String::new(),
                name: String::new(),
            },
            FailureKind::TruncatedToolCallArguments,
        ),
        (
            StreamError::ToolCallArgumentsCutByLength {
                choice: 0,
                index: 1,
                name: "f".into(),
            },
            FailureKind::ToolCallArgumentsCutByLength,
        ),
        (
            StreamError::TooManyChoices { limit: 1 },
            FailureKind::LimitExceeded,
        ),
        (
            StreamError::TooManyToolCalls { limit: 1 },
            FailureKind::LimitExceeded,
        ),
        (
            StreamError::ResponseTooLarge { limit: 1 },
            FailureKind::LimitExceeded,
        ),
    ];
    for (err, kind) in cases {
        assert_eq!(err.kind(), kind, "{err}");
    }
    assert_eq!(
        StreamError::ToolCallArgumentsCutByLength {
            choice: 0,
            index: 1,
            name: "f".into()
        }
        .to_string(),
        "tool call 1 (f) of choice 0 was cut by the token limit"
    );
}

#[test]
fn any_prefix_of_real_data_is_handled_without_panic() {
    let samples = PARALLEL_TOOLS
        .iter()
        .chain(OPENAI_TEXT.iter())
        .copied()
        .chain([r#"{"choices":[{"delta":{"content":"h\u00e9 \ud83d\ude00 é"}}]}"#]);
    for line in samples {
        for (cut, _) in line.char_indices() {
            let prefix = &line[..cut];
            for ty in ["message", "error"] {
                let mut acc = Accumulator::new(true);
                let _ = acc.push_event(ty, prefix);
                let _ = acc.finish();
            }
            let _ = ApiError::from_body(prefix.as_bytes());
            let _ = response_from_completion_json(prefix.as_bytes());
        }
    }
    for bytes in [
        &b"\xff{\"error\":1}"[..],
        b"<\xff>",
        b"\xc3",
        b"{\"detail\":[{}]}",
    ] {
        let _ = ApiError::from_body(bytes);
        let _ = response_from_completion_json(bytes);
    }
}

#[test]
fn events_point_into_the_aggregated_response() {
    // The event's text is the tail of the aggregated content itself: no copy per delta.
    let chunks = [
        r#"{"choices":[{"index":0,"delta":{"content":"zero-"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"copy"},"finish_reason":"stop"}]}"#,
    ];
    let mut acc = Accumulator::new(false);
    let mut seen = Vec::new();
    for chunk in chunks {
        acc.push_event("message", chunk).expect("valid chunk");
        while let Some(event) = acc.next_event() {
            if let StreamEvent::Content { text, .. } = event {
                seen.push((text.to_owned(), text.as_ptr() as usize));
            }
        }
    }
    let response = acc.finish().expect("complete");
    let content = response.content();
    let range = content.as_ptr() as usize..content.as_ptr() as usize + content.len();
    assert_eq!(seen.len(), 2);
    // The last delta was handed out from the final buffer (earlier ones may have moved
    // when the buffer grew).
    let (text, at) = &seen[1];
    assert_eq!(text, "copy");
    assert!(
        range.contains(at),
        "the delta is not a view of the response text"
    );
    assert_eq!(content, "zero-copy");
}

#[test]
fn events_of_a_push_are_dropped_by_the_next_push() {
    let mut acc = Accumulator::new(false);
    acc.push_event(
        "message",
        r#"{"choices":[{"index":0,"delta":{"content":"a"}}]}"#,
    )
    .expect("valid");
    assert!(acc.has_pending());
    acc.push_event(
        "message",
        r#"{"choices":[{"index":0,"delta":{"content":"b"}}]}"#,
    )
    .expect("valid");
    assert_eq!(
        acc.next_event(),
        Some(StreamEvent::Content {
            choice: 0,
            text: "b"
        })
    );
    assert_eq!(acc.next_event(), None);
}

/// Content deltas as chunks, then a finish (or `[DONE]`) if given.
fn content_chunks(deltas: &[&str], end: Option<&str>) -> Vec<String> {
    let mut lines: Vec<String> = deltas
        .iter()
        .map(|d| {
            format!(
                r#"{{"choices":[{{"index":0,"delta":{{"content":{}}}}}]}}"#,
                serde_json::to_string(d).unwrap_or_default()
            )
        })
        .collect();
    match end {
        Some("[DONE]") => lines.push("[DONE]".into()),
        Some(reason) => lines.push(format!(
            r#"{{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#
        )),
        None => {}
    }
    lines
}

#[test]
fn think_blocks_in_content_become_reasoning() {
    let split = [
        "<th",
        "ink>\nLet me",
        " see</thi",
        "nk>\n\nThe answer",
        " is 4 < 5.",
    ];
    // (split on, deltas, end, events, reasoning, content)
    type Case<'a> = (
        bool,
        Vec<&'a str>,
        Option<&'a str>,
        Vec<E>,
        Option<&'a str>,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            true,
            split.to_vec(),
            Some("stop"),
            vec![
                think(0, "Let me"),
                think(0, " see"),
                text(0, "The answer"),
                text(0, " is 4 < 5."),
                fin(0, "stop"),
            ],
            Some("Let me see"),
            "The answer is 4 < 5.",
        ),
        (
            false,
            split.to_vec(),
            Some("stop"),
            split
                .iter()
                .map(|d| text(0, d))
                .chain([fin(0, "stop")])
                .collect(),
            None,
            "<think>\nLet me see</think>\n\nThe answer is 4 < 5.",
        ),
        // Held tag prefixes go out before the finish, or at `[DONE]`, as the text they are.
        (
            true,
            vec!["<thi"],
            Some("stop"),
            vec![text(0, "<thi"), fin(0, "stop")],
            None,
            "<thi",
        ),
        (
            true,
            vec!["<think>abc</th"],
            Some("[DONE]"),
            vec![think(0, "abc"), think(0, "</th")],
            Some("abc</th"),
            "",
        ),
        // A `<` in ordinary reasoning waits only until it cannot start the closing tag.
        (
            true,
            vec!["<think>a <", " b</think>c"],
            Some("stop"),
            vec![
                think(0, "a "),
                think(0, "< b"),
                text(0, "c"),
                fin(0, "stop"),
            ],
            Some("a < b"),
            "c",
        ),
        // Content that does not open with the tag is content, tags and all.
        (
            true,
            vec!["Hi <think>x</think>"],
            Some("stop"),
            vec![text(0, "Hi <think>x</think>"), fin(0, "stop")],
            None,
            "Hi <think>x</think>",
        ),
    ];
    for (on, deltas, end, events, reasoning, content) in cases {
        let lines = content_chunks(&deltas, end);
        let mut acc = Accumulator::new(false).split_think(on);
        let mut got = Vec::new();
        for line in &lines {
            acc.push_event_with("message", line, &mut |e| got.push(e.to_owned_event()))
                .expect("valid chunk");
        }
        assert_eq!(got, events, "{deltas:?}");
        let response = acc.finish().expect("complete");
        assert_eq!(
            (response.reasoning(), response.content()),
            (reasoning, content),
            "{deltas:?}"
        );
    }
}

#[test]
fn a_stopped_stream_keeps_what_the_think_splitter_held() {
    for (deltas, reasoning, content) in [
        (vec!["<thi"], None, "<thi"),
        (vec!["<think>plan</thin"], Some("plan</thin"), ""),
        (vec!["<think>plan</think>ans"], Some("plan"), "ans"),
    ] {
        let mut acc = Accumulator::new(false);
        for line in content_chunks(&deltas, None) {
            acc.push_event("message", &line).expect("valid chunk");
        }
        let partial = acc.partial_response();
        assert_eq!(
            (partial.reasoning(), partial.content()),
            (reasoning, content),
            "{deltas:?}"
        );
    }
}

#[test]
fn usage_extras_are_capped_and_charged() {
    let chunk = |extras: &str| {
        format!(
            r#"{{"choices":[{{"index":0,"delta":{{"content":"w"}}}}],"usage":{{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3{extras}}}}}"#
        )
    };
    // Huge extras: a few KiB kept, the rest dropped, the counts read.
    let huge = chunk(&format!(
        r#","details":{{"x":1}},"junk":[{}0]"#,
        "0,".repeat(100_000)
    ));
    let r = run(false, &msgs(&[huge.as_str()]));
    assert_eq!(r.error, None);
    let usage = r.acc.usage.clone().expect("usage read");
    assert_eq!(usage.total_tokens, 3);
    assert_eq!(usage.extra.get("details"), Some(&json!({"x": 1})));
    assert!(
        usage.extra_len() <= Usage::MAX_EXTRA_BYTES,
        "{}",
        usage.extra_len()
    );
    // Extras count against the response budget; only the latest usage is held, so usage
    // on every chunk (vLLM's continuous_usage_stats) does not add up.
    let small = chunk(r#","details":{"cached_tokens":12345}"#);
    let limits = |max_response_bytes| ChatLimits {
        max_response_bytes,
        ..ChatLimits::default()
    };
    let many: Vec<&str> = std::iter::repeat_n(small.as_str(), 100).collect();
    let r = run_with(false, limits(200), &msgs(&many));
    assert_eq!(r.error, None);
    assert_eq!(r.acc.budget.used, 100 + usage_extra_len(&small));
    let r = run_with(false, limits(30), &msgs(&[small.as_str()]));
    assert_eq!(r.error, Some(StreamError::ResponseTooLarge { limit: 30 }));
}

fn usage_extra_len(chunk: &str) -> usize {
    serde_json::from_str::<ChunkRef<'_>>(chunk)
        .ok()
        .and_then(|c| c.usage)
        .map_or(0, |u| u.extra_len())
}

#[test]
fn errors_quote_at_most_a_snippet_of_a_huge_line() {
    let huge = "x".repeat(1 << 20);
    let lines = [
        format!(r#"{{"choices":"{huge}"}}"#),
        format!(r#"{{"choices":[{{"delta":{{"content":["{huge}"]}}}}]}}"#),
        huge.clone(),
    ];
    for line in &lines {
        let r = run(false, &[("message", line.as_str())]);
        let err = r.error.expect("malformed");
        assert_eq!(err.kind(), FailureKind::MalformedChunk);
        assert!(
            err.to_string().len() < 1000,
            "{} bytes",
            err.to_string().len()
        );
    }
}

#[test]
fn repeated_tool_call_ids_and_names_are_delivered_once() {
    let fragment = |args: &str| {
        format!(
            r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"lookup","arguments":{}}}}}]}}}}]}}"#,
            serde_json::to_string(args).unwrap_or_default()
        )
    };
    let lines = [
        fragment("{\"q\":"),
        fragment("1"),
        fragment("}"),
        fragment(""),
    ];
    let r = run(
        false,
        &msgs(&lines.iter().map(String::as_str).collect::<Vec<_>>()),
    );
    assert_eq!(r.error, None);
    assert_eq!(
        r.events,
        vec![
            tool(0, 0, Some("call_1"), Some("lookup"), "{\"q\":"),
            tool(0, 0, None, None, "1"),
            tool(0, 0, None, None, "}"),
        ]
    );
}

#[test]
fn streamed_roles_are_read_as_values_and_the_turn_to_send_back_is_the_assistants() {
    for (role, want) in [
        (None, Role::Assistant),
        (Some("assistant"), Role::Assistant),
        (Some("model"), Role::Other),
    ] {
        let delta = match role {
            Some(role) => format!(r#"{{"role":"{role}","content":"hi"}}"#),
            None => r#"{"content":"hi"}"#.to_owned(),
        };
        let first = format!(r#"{{"choices":[{{"index":0,"delta":{delta}}}]}}"#);
        let last = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        let run = run(false, &msgs(&[&first, last]));
        assert!(run.error.is_none(), "{role:?}: {:?}", run.error);
        let response = run.acc.finish().expect("complete");
        assert_eq!(response.choices[0].message.role, want, "{role:?}");
        assert_eq!(response.to_message().role, Role::Assistant, "{role:?}");
    }
}
