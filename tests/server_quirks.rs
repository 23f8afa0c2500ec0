//! Real servers' quirks, one row each: the raw bytes a server sends in, the response or the
//! error the client makes of them out, through the real client over loopback. The next
//! server's quirk is one more row in [`QUIRKS`].
//!
//! Every row is served to a client that would retry (fast backoff), so a row that expects
//! an error also proves it is not retried: the server must see exactly one request.

mod common;

use common::*;
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    ChatRequest, Client, ClientBuilder, Error, FailureKind, Message, OwnedStreamEvent, ProxyConfig,
};
use std::net::TcpStream;
use std::time::Duration;

/// What the server sends.
enum Reply {
    /// A `200 text/event-stream`, chunked: each part goes in its own chunk, after its pause.
    Sse(Vec<(Duration, String)>),
    /// Bytes as they are (status line, headers and body).
    Raw(String),
}

/// What the client must make of it.
enum Expect {
    Response {
        content: &'static str,
        reasoning: Option<&'static str>,
        /// `(id, name, arguments)` of each tool call.
        tool_calls: &'static [(&'static str, &'static str, &'static str)],
        /// `(prompt, completion, total)` tokens.
        usage: Option<(u64, u64, u64)>,
        finish: Option<&'static str>,
    },
    /// An `api_error` carrying the server's message, not retried.
    ApiError {
        status: Option<u16>,
        message: &'static str,
        kind: Option<&'static str>,
    },
    /// An error event saying the failure was behind the server (overloaded, its upstream
    /// broke): a break, retried until the budget is spent, the server's message kept.
    UpstreamBroke {
        message: &'static str,
        kind: Option<&'static str>,
    },
}

struct Quirk {
    name: &'static str,
    reply: fn() -> Reply,
    client: fn(ClientBuilder) -> ClientBuilder,
    request: fn(ChatRequest) -> ChatRequest,
    expect: Expect,
}

/// `data: <json>` events, sent at once.
fn events(lines: &[&str]) -> Reply {
    Reply::Sse(
        lines
            .iter()
            .map(|l| (Duration::ZERO, format!("data: {l}\n\n")))
            .collect(),
    )
}

/// Raw SSE text parts, sent at once.
fn parts(parts: &[&str]) -> Reply {
    Reply::Sse(
        parts
            .iter()
            .map(|p| (Duration::ZERO, p.to_string()))
            .collect(),
    )
}

fn same(b: ClientBuilder) -> ClientBuilder {
    b
}

fn same_request(r: ChatRequest) -> ChatRequest {
    r
}

const fn ok(content: &'static str) -> Expect {
    Expect::Response {
        content,
        reasoning: None,
        tool_calls: &[],
        usage: None,
        finish: Some("stop"),
    }
}

const QUIRKS: &[Quirk] = &[
    Quirk {
        name: "vLLM: data: {error} then data: [DONE]",
        reply: || {
            events(&[
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                r#"{"error":{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","param":null,"code":400}}"#,
                "[DONE]",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::ApiError {
            status: None,
            message: "This model's maximum context length is 4096 tokens.",
            kind: Some("BadRequestError"),
        },
    },
    Quirk {
        name: "Ollama: parallel tool calls all at index 0 with distinct ids",
        reply: || {
            events(&[
                r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"llama3.1","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_a1","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_b2","index":0,"type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}]},"finish_reason":null}]}"#,
                r#"{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"llama3.1","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls"}]}"#,
                "[DONE]",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::Response {
            content: "",
            reasoning: None,
            tool_calls: &[
                ("call_a1", "get_weather", r#"{"city":"Paris"}"#),
                ("call_b2", "get_time", r#"{"tz":"CET"}"#),
            ],
            usage: None,
            finish: Some("tool_calls"),
        },
    },
    Quirk {
        name: "Ollama: reasoning in delta.reasoning",
        reply: || {
            events(&[
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Two plus two"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":" is four."}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"4"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#,
                "[DONE]",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::Response {
            content: "4",
            reasoning: Some("Two plus two is four."),
            tool_calls: &[],
            usage: None,
            finish: Some("stop"),
        },
    },
    Quirk {
        name: "llama.cpp: timings on every chunk, usage on the last, no [DONE] needed",
        reply: || {
            events(&[
                r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1,"id":"chatcmpl-x","model":"q.gguf","system_fingerprint":"b5415","object":"chat.completion.chunk","timings":{"prompt_n":9,"prompt_ms":11.2,"predicted_n":1,"predicted_ms":5.1}}"#,
                r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hello"}}],"created":1,"id":"chatcmpl-x","model":"q.gguf","object":"chat.completion.chunk","timings":{"prompt_n":9,"prompt_ms":11.2,"predicted_n":2,"predicted_ms":9.8,"predicted_per_second":204.0}}"#,
                r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"chatcmpl-x","model":"q.gguf","object":"chat.completion.chunk","usage":{"completion_tokens":2,"prompt_tokens":9,"total_tokens":11},"timings":{"prompt_n":9,"prompt_ms":11.2,"predicted_n":2,"predicted_ms":9.8}}"#,
                "[DONE]",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::Response {
            content: "Hello",
            reasoning: None,
            tool_calls: &[],
            usage: Some((9, 2, 11)),
            finish: Some("stop"),
        },
    },
    Quirk {
        name: "llama.cpp: prompt_progress chunks (return_progress) before the answer",
        reply: || {
            events(&[
                r#"{"choices":[{"finish_reason":null,"index":0,"delta":{}}],"object":"chat.completion.chunk","prompt_progress":{"total":1200,"cache":0,"processed":512,"time_ms":80.5}}"#,
                r#"{"choices":[{"finish_reason":null,"index":0,"delta":{}}],"object":"chat.completion.chunk","prompt_progress":{"total":1200,"cache":0,"processed":1200,"time_ms":170.2}}"#,
                r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":"Done"}}],"object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk"}"#,
                "[DONE]",
            ])
        },
        client: same,
        request: same_request,
        expect: ok("Done"),
    },
    Quirk {
        name: "keep-alive comments between chunks keep the idle timeout from firing",
        reply: || {
            let mut parts = vec![(Duration::ZERO, content("Hel"))];
            for _ in 0..4 {
                parts.push((Duration::from_millis(300), ": keep-alive\n\n".to_owned()));
            }
            parts.push((Duration::from_millis(300), content("lo")));
            parts.push((Duration::ZERO, finish("stop")));
            parts.push((Duration::ZERO, DONE.to_owned()));
            Reply::Sse(parts)
        },
        client: |b| b.idle_timeout(Duration::from_millis(700)),
        request: same_request,
        expect: ok("Hello"),
    },
    Quirk {
        name: "llama.cpp: context overflow before the first chunk (400 exceed_context_size_error)",
        reply: || {
            let body = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5120,"n_ctx":4096}}"#;
            Reply::Raw(
                String::from_utf8(http_response(
                    "400 Bad Request",
                    &[("content-type", "application/json; charset=utf-8")],
                    body,
                ))
                .expect("ASCII"),
            )
        },
        client: same,
        request: same_request,
        expect: Expect::ApiError {
            status: Some(400),
            message: "the request exceeds the available context size, try increasing it",
            kind: Some("exceed_context_size_error"),
        },
    },
    Quirk {
        name: "llama.cpp: context overflow after the first chunk (data: {error})",
        reply: || {
            events(&[
                r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Once upon"}}],"object":"chat.completion.chunk"}"#,
                r#"{"error":{"code":400,"message":"context size exceeded","type":"exceed_context_size_error","n_prompt_tokens":4000,"n_ctx":4096}}"#,
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::ApiError {
            status: None,
            message: "context size exceeded",
            kind: Some("exceed_context_size_error"),
        },
    },
    Quirk {
        name: "vLLM: usage on every chunk (continuous_usage_stats)",
        reply: || {
            events(&[
                r#"{"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":{"prompt_tokens":7,"total_tokens":7,"completion_tokens":0}}"#,
                r#"{"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":{"prompt_tokens":7,"total_tokens":8,"completion_tokens":1}}"#,
                r#"{"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}"#,
                r#"{"id":"c","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":7,"total_tokens":9,"completion_tokens":2}}"#,
                "[DONE]",
            ])
        },
        client: same,
        request: |r| r.include_usage(),
        expect: Expect::Response {
            content: "Hi!",
            reasoning: None,
            tool_calls: &[],
            usage: Some((7, 2, 9)),
            finish: Some("stop"),
        },
    },
    Quirk {
        name: "LiteLLM: data: {error} with string codes mid-stream",
        reply: || {
            events(&[
                r#"{"id":"chatcmpl-l","choices":[{"index":0,"delta":{"content":"Par"}}],"object":"chat.completion.chunk"}"#,
                r#"{"error":{"message":"litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached","type":"None","param":"None","code":"429"}}"#,
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::ApiError {
            status: None,
            message: "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached",
            kind: Some("None"),
        },
    },
    Quirk {
        name: "gateways: event: error with an error object",
        reply: || {
            parts(&[
                &*content("Hi"),
                "event: error\ndata: {\"error\":{\"message\":\"upstream overloaded\",\"type\":\"overloaded_error\"}}\n\n",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::UpstreamBroke {
            message: "upstream overloaded",
            kind: Some("overloaded_error"),
        },
    },
    Quirk {
        name: "Ollama: a bare JSON error line inside a 200 event stream",
        reply: || {
            parts(&[
                &*content("The"),
                "{\"error\":{\"message\":\"model runner has unexpectedly stopped, this may be due to resource limitations\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::ApiError {
            status: None,
            message: "model runner has unexpectedly stopped, this may be due to resource limitations",
            kind: Some("api_error"),
        },
    },
    Quirk {
        name: "llama.cpp (older builds): an error: field line",
        reply: || {
            parts(&[
                &*content("The"),
                "error: {\"code\":500,\"message\":\"failed to decode the batch\",\"type\":\"server_error\"}\n\n",
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::UpstreamBroke {
            message: "failed to decode the batch",
            kind: Some("server_error"),
        },
    },
    Quirk {
        name: "reasoning inside content (llama.cpp --reasoning-format none): split",
        reply: || {
            parts(&[
                &*content("<thi"),
                &*content("nk>\nThe user"),
                &*content(" greets me.</th"),
                &*content("ink>\n\nHello"),
                &*content("!"),
                &*finish("stop"),
                DONE,
            ])
        },
        client: same,
        request: same_request,
        expect: Expect::Response {
            content: "Hello!",
            reasoning: Some("The user greets me."),
            tool_calls: &[],
            usage: None,
            finish: Some("stop"),
        },
    },
    Quirk {
        name: "reasoning inside content: split_think(false) keeps it as content",
        reply: || {
            parts(&[
                &*content("<think>\nThe user greets me.</think>\n\nHello!"),
                &*finish("stop"),
                DONE,
            ])
        },
        client: |b| b.split_think(false),
        request: same_request,
        expect: ok("<think>\nThe user greets me.</think>\n\nHello!"),
    },
];

fn serve_reply(stream: &mut TcpStream, reply: &Reply) {
    match reply {
        Reply::Raw(bytes) => send(stream, bytes.as_bytes()),
        Reply::Sse(parts) => {
            send(stream, SSE_CHUNKED_HEAD.as_bytes());
            for (pause, part) in parts {
                std::thread::sleep(*pause);
                send(stream, &chunk(part.as_bytes()));
            }
            send(stream, b"0\r\n\r\n");
        }
    }
}

/// The text of the events a streaming caller saw: (content, reasoning).
fn shown(events: &[OwnedStreamEvent]) -> (String, String) {
    let (mut content, mut reasoning) = (String::new(), String::new());
    for event in events {
        match event {
            OwnedStreamEvent::Content { text, .. } => content.push_str(text),
            OwnedStreamEvent::Reasoning { text, .. } => reasoning.push_str(text),
            _ => {}
        }
    }
    (content, reasoning)
}

fn run(quirk: &Quirk) {
    let reply = (quirk.reply)();
    let server = serve_sequential(move |_, stream, _| serve_reply(stream, &reply));
    let builder = Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .retry_policy(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(20))
                .jitter(0.0)
                .resume(false),
        )
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10));
    let client = (quirk.client)(builder).build().expect("client");
    let request = (quirk.request)(ChatRequest::new("m", vec![Message::user("hi")]));
    let mut events = Vec::new();
    let result = client.chat_stream(&request, |e| events.push(e.to_owned_event()));
    let requests = server.stop().len();
    let name = quirk.name;
    match (&quirk.expect, result) {
        (
            Expect::Response {
                content,
                reasoning,
                tool_calls,
                usage,
                finish,
            },
            Ok(response),
        ) => {
            assert_eq!(response.content(), *content, "{name}");
            assert_eq!(response.reasoning(), *reasoning, "{name}");
            let calls: Vec<(&str, &str, &str)> = response
                .tool_calls()
                .iter()
                .map(|c| {
                    (
                        c.id.as_str(),
                        c.function.name.as_str(),
                        c.function.arguments.as_str(),
                    )
                })
                .collect();
            assert_eq!(calls, *tool_calls, "{name}");
            let got_usage = response
                .usage
                .as_ref()
                .map(|u| (u.prompt_tokens, u.completion_tokens, u.total_tokens));
            assert_eq!(got_usage, *usage, "{name}");
            assert_eq!(response.finish_reason(), *finish, "{name}");
            // The streaming view adds up to the response.
            let (shown_content, shown_reasoning) = shown(&events);
            assert_eq!(shown_content, *content, "{name}: content events");
            assert_eq!(
                shown_reasoning,
                reasoning.unwrap_or(""),
                "{name}: reasoning events"
            );
            assert!(
                response.retries.is_empty(),
                "{name}: {:?}",
                response.retries
            );
        }
        (
            Expect::ApiError {
                status,
                message,
                kind,
            },
            Err(err),
        ) => {
            let api = err
                .api_error()
                .unwrap_or_else(|| panic!("{name}: not an api error: {err:?}"));
            assert_eq!(api.message, *message, "{name}");
            assert_eq!(api.kind.as_deref(), *kind, "{name}");
            assert_eq!(err.status(), *status, "{name}");
            assert!(
                matches!(err, Error::Http(_) | Error::Stream(_)),
                "{name}: {err:?}"
            );
            assert!(!err.is_transient(), "{name}");
        }
        (Expect::UpstreamBroke { message, kind }, Err(err)) => {
            let api = err
                .api_error()
                .unwrap_or_else(|| panic!("{name}: not an api error: {err:?}"));
            assert_eq!(api.message, *message, "{name}");
            assert_eq!(api.kind.as_deref(), *kind, "{name}");
            assert_eq!(err.kind(), FailureKind::UpstreamBroke, "{name}");
            assert!(err.is_transient(), "{name}");
            let Error::AfterRetries(after) = &err else {
                panic!("{name}: not retried: {err:?}");
            };
            assert!(after.exhausted, "{name}");
            // The default budget: three retries.
            assert_eq!(requests, 4, "{name}: retried");
            return;
        }
        (_, Ok(response)) => panic!("{name}: expected an error, got {response:?}"),
        (_, Err(err)) => panic!("{name}: expected a response, got {err:?}"),
    }
    assert_eq!(requests, 1, "{name}: retried");
}

#[test]
fn server_quirks() {
    for quirk in QUIRKS {
        run(quirk);
    }
}
