//! Behind a gateway: an error event that says the gateway's connection to the model server
//! broke is a break (retried once, nothing shown twice), while one that refuses the request
//! stays a single request and a clear error. The LiteLLM rows are the bytes LiteLLM 1.106.12
//! really sent (tests/data/gateway/); the others are the shapes the gateways document.

mod common;

use common::{content, finish, send, serve_sequential};
use oai_sse::retry::RetryPolicy;
use oai_sse::{
    ChatRequest, Client, Error, FailureKind, Message, OwnedStreamEvent, ProxyConfig, RetryAction,
    StreamEvent,
};
use std::net::TcpStream;
use std::time::Duration;

/// What the uncut answer goes on with after the captured part ("The sea is a vast and
/// mysterious realm").
const REST: &str = " of water.";

/// A recorded gateway response (status line, headers, de-chunked body) as a close-delimited
/// response: the capture's own framing header dropped, `connection: close` added.
fn capture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/gateway/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8(raw[..split].to_vec()).expect("ascii head");
    let mut out = String::new();
    for line in head.split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("transfer-encoding:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&raw[split + 4..]);
    bytes
}

/// The contents of the capture's deltas, in order.
fn captured_text(response: &[u8]) -> String {
    let body = String::from_utf8_lossy(response);
    let mut text = String::new();
    for line in body.lines() {
        let Some(json) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(chunk) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    text
}

/// A gateway reply with `text` as deltas, then the error event `error` (no `[DONE]`).
fn broken_reply(text: &str, error: &str, server: &str) -> Vec<u8> {
    let mut body = String::new();
    for word in text.split_inclusive(' ') {
        body.push_str(&content(word));
    }
    body.push_str(&format!("data: {error}\n\n"));
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nllm_provider-server: {server}\r\n\
         connection: close\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// A complete reply: `text` as deltas, a finish and `[DONE]`.
fn whole_reply(text: &str) -> Vec<u8> {
    let mut body = String::new();
    for word in text.split_inclusive(' ') {
        body.push_str(&content(word));
    }
    body.push_str(&finish("stop"));
    body.push_str(common::DONE);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A gateway that sends `first` to the first chat request, then answers as a deterministic
/// model would: the rest after the delivered text for a continuation, the whole answer for
/// a fresh request. Everything else (the replay and lookup routes) is a 404, as on a gateway.
fn gateway(first: Vec<u8>, answer: String) -> common::SeqServer {
    let mut chats = 0;
    serve_sequential(move |_, stream: &mut TcpStream, request: &str| {
        if !request.starts_with("POST /v1/chat/completions ") {
            let body = r#"{"error":{"message":"Not Found","type":"not_found","code":"404"}}"#;
            send(
                stream,
                &common::http_response("404 Not Found", &[("connection", "close")], body),
            );
            return;
        }
        chats += 1;
        if chats == 1 {
            send(stream, &first);
            return;
        }
        let json = common::request_json(request);
        let reply = match json["messages"].as_array().and_then(|m| m.last()) {
            Some(last) if json["continue_final_message"] == true && last["role"] == "assistant" => {
                let delivered = last["content"].as_str().unwrap_or_default();
                answer
                    .strip_prefix(delivered)
                    .unwrap_or_else(|| panic!("continued from {delivered:?}, not a prefix"))
                    .to_owned()
            }
            _ => answer.clone(),
        };
        send(stream, &whole_reply(&reply));
    })
}

fn client(server: &common::SeqServer) -> Client {
    Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .retry_policy(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(50))
                .jitter(0.0),
        )
        .first_byte_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The text the caller was shown, and every event.
fn run(
    client: &Client,
) -> (
    Result<oai_sse::ChatResponse, Error>,
    String,
    Vec<OwnedStreamEvent>,
) {
    let request = ChatRequest::new("smol-cut", vec![Message::user("the sea")]);
    let mut shown = String::new();
    let mut events = Vec::new();
    let result = client.chat_stream(&request, |event| {
        if let StreamEvent::Content { text, .. } = &event {
            shown.push_str(text);
        }
        events.push(event.to_owned_event());
    });
    (result, shown, events)
}

fn chat_posts(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| r.starts_with("POST /v1/chat/completions "))
        .count()
}

/// The gateway's connection to the model server broke (FIN or RST, as LiteLLM reports it):
/// one retry, the uncut answer, and nothing the caller was shown taken back or repeated.
#[test]
fn an_upstream_break_reported_in_the_stream_is_retried_once() {
    let openrouter = r#"{"id":"gen-1","object":"chat.completion.chunk","created":1700000000,"model":"m","provider":"openai","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#;
    let vllm = r#"{"error":{"object":"error","message":"The engine died unexpectedly","type":"InternalServerError","param":null,"code":500}}"#;
    let overloaded = r#"{"error":{"message":"upstream overloaded","type":"overloaded_error"}}"#;
    let delivered = "The sea is a vast and mysterious realm";
    let (continued, restarted) = (RetryAction::Continued, RetryAction::Restarted);
    let rows: Vec<(&str, Vec<u8>, RetryAction)> = vec![
        (
            "LiteLLM 1.106.12, upstream FIN",
            capture("litellm-1.106.12-upstream-fin.sse"),
            continued.clone(),
        ),
        (
            "LiteLLM 1.106.12, upstream RST",
            capture("litellm-1.106.12-upstream-rst.sse"),
            continued.clone(),
        ),
        (
            "OpenRouter: provider disconnected",
            broken_reply(delivered, openrouter, "openrouter"),
            restarted.clone(),
        ),
        (
            "vLLM: engine error in the stream",
            broken_reply(delivered, vllm, "uvicorn"),
            restarted,
        ),
        (
            "a gateway: upstream overloaded",
            broken_reply(delivered, overloaded, "llama.cpp"),
            continued,
        ),
    ];
    for (name, first, action) in rows {
        let before = captured_text(&first);
        assert_eq!(before, delivered, "{name}: the capture's text");
        let answer = format!("{before}{REST}");
        let server = gateway(first, answer.clone());
        let (result, shown, events) = run(&client(&server));
        let response = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(response.content(), answer, "{name}");
        assert_eq!(shown, answer, "{name}: shown once, nothing taken back");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, OwnedStreamEvent::Restart { .. })),
            "{name}: {events:?}"
        );
        let [retry] = response.retries.as_slice() else {
            panic!("{name}: one retry per break: {:?}", response.retries);
        };
        assert_eq!(retry.reason, FailureKind::UpstreamBroke, "{name}");
        // Behind LiteLLM the upstream is named (`llm_provider-server: llama.cpp`): it can
        // continue the delivered text; elsewhere the restart's repeat is swallowed.
        assert_eq!(retry.action, action, "{name}: {retry:?}");
        assert_eq!(
            retry.passed_over.as_deref(),
            Some("the server cannot resume (404)"),
            "{name}"
        );
        let requests = server.stop();
        assert_eq!(chat_posts(&requests), 2, "{name}");
    }
}

/// An error event that refuses the request (context length, auth, content policy, a bad
/// request) is not retried: one request, and the gateway's message in the error.
#[test]
fn a_refusal_in_the_stream_is_one_request_and_a_clear_error() {
    let rows = [
        (
            "LiteLLM: context window exceeded",
            r#"{"error": {"message": "litellm.ContextWindowExceededError: ContextWindowExceededError: OpenAIException - the request exceeds the available context size", "type": null, "param": null, "code": "400"}}"#,
            "ContextWindowExceededError",
        ),
        (
            "LiteLLM: authentication",
            r#"{"error": {"message": "litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid api key", "type": "auth_error", "param": "None", "code": "401"}}"#,
            "AuthenticationError",
        ),
        (
            "LiteLLM: content policy",
            r#"{"error": {"message": "litellm.ContentPolicyViolationError: the response was filtered", "type": null, "param": null, "code": "400"}}"#,
            "ContentPolicyViolationError",
        ),
        (
            "OpenRouter: moderation",
            r#"{"id":"gen-2","object":"chat.completion.chunk","error":{"code":403,"message":"Your input was flagged by moderation"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#,
            "flagged",
        ),
    ];
    for (name, error, words) in rows {
        let server = gateway(
            broken_reply("The sea is", error, "llama.cpp"),
            "unused".into(),
        );
        let (result, shown, _) = run(&client(&server));
        let err = result.expect_err(name);
        assert_eq!(shown, "The sea is", "{name}: what came is shown");
        assert_eq!(err.kind(), FailureKind::ApiError, "{name}: {err:?}");
        assert!(err.to_string().contains(words), "{name}: {err}");
        let requests = server.stop();
        assert_eq!(chat_posts(&requests), 1, "{name}: {requests:?}");
    }
}
