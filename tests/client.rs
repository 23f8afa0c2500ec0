//! One attempt of the chat client against hand-written loopback servers: every way a stream
//! can arrive or fail, each asserting the exact result or error kind. Retries are off here
//! (`max_retries(0)`); tests/retry.rs covers them.

mod common;

use common::*;
use oai_sse::{
    CallOptions, CancelHandle, ChatRequest, Client, Error, FailureKind, Message, ProxyConfig,
    StreamError, StreamEvent,
};
use std::time::{Duration, Instant};

fn client(base_url: &str) -> Client {
    Client::builder()
        .base_url(base_url)
        .proxy(ProxyConfig::None)
        .max_retries(0)
        .connect_timeout(Duration::from_secs(5))
        .first_byte_timeout(Duration::from_secs(10))
        .idle_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn request() -> ChatRequest {
    ChatRequest::new("test-model", vec![Message::user("hi")])
}

/// Serves one fixed response to one connection.
fn one_response(bytes: Vec<u8>) -> RawServer {
    serve(1, move |_, stream, _| send(stream, &bytes))
}

#[test]
fn happy_path_streams_deltas_and_aggregates() {
    let body = [
        content("Hello"),
        content(", world"),
        finish("stop"),
        DONE.into(),
    ]
    .concat();
    let server = one_response(sse_response(&body));
    let mut seen = Vec::new();
    let response = client(&server.base_url())
        .chat_stream(&request(), |event| {
            if let StreamEvent::Content { text, .. } = event {
                seen.push(text.to_string());
            }
        })
        .expect("success");
    assert_eq!(seen, ["Hello", ", world"]);
    assert_eq!(response.content(), "Hello, world");
    assert_eq!(response.finish_reason(), Some("stop"));
    assert_eq!(response.model, "test-model");
    assert_eq!(response.id, "chatcmpl-t");
    assert!(response.retries.is_empty());
    let requests = server.join();
    let sent = request_json(&requests[0]);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["model"], "test-model");
    assert!(requests[0].starts_with("POST /v1/chat/completions HTTP/1.1"));
}

#[test]
fn api_key_is_sent_as_bearer() {
    let body = [content("ok"), finish("stop"), DONE.into()].concat();
    let server = one_response(sse_response(&body));
    let client = Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .api_key("sk-test-key")
        .header("x-extra", "1")
        .build()
        .unwrap();
    client.chat(&request()).expect("success");
    let req = server.join().remove(0).to_ascii_lowercase();
    assert!(req.contains("authorization: bearer sk-test-key"), "{req}");
    assert!(req.contains("x-extra: 1"));
}

#[test]
fn crlf_framing_and_ping_comments() {
    let body = [
        ": ping\n\n",
        &content("a"),
        ": ping\n\n",
        &content("b"),
        &finish("stop"),
        DONE,
    ]
    .concat()
    .replace('\n', "\r\n");
    let server = one_response(sse_response(&body));
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    assert_eq!(response.content(), "ab");
}

#[test]
fn utf8_split_across_tcp_writes() {
    let body = [content("héllo wörld 😀"), finish("stop"), DONE.into()].concat();
    let bytes = body.as_bytes().to_vec();
    let server = serve(1, move |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        // Split inside the multi-byte characters, one TCP write each.
        for piece in bytes.chunks(3) {
            send(stream, &chunk(piece));
            std::thread::sleep(Duration::from_millis(1));
        }
        send(stream, b"0\r\n\r\n");
    });
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    assert_eq!(response.content(), "héllo wörld 😀");
}

#[test]
fn several_choices_interleaved() {
    let c = |i: u32, text: &str| {
        chunk_event(&format!(
            "{{\"index\":{i},\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}"
        ))
    };
    let f = |i: u32| {
        chunk_event(&format!(
            "{{\"index\":{i},\"delta\":{{}},\"finish_reason\":\"stop\"}}"
        ))
    };
    let body = [
        c(1, "B1"),
        c(0, "A1"),
        c(1, "B2"),
        c(0, "A2"),
        f(0),
        f(1),
        DONE.into(),
    ]
    .concat();
    let server = one_response(sse_response(&body));
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    assert_eq!(response.choices.len(), 2);
    assert_eq!(response.choices[0].message.text(), "A1A2");
    assert_eq!(response.choices[1].message.text(), "B1B2");
    assert_eq!(response.choices[1].index, 1);
}

fn tool_delta(index: Option<i64>, id: Option<&str>, name: Option<&str>, args: &str) -> String {
    let mut call = serde_json::json!({"function": {"arguments": args}});
    if let Some(i) = index {
        call["index"] = i.into();
    }
    if let Some(id) = id {
        call["id"] = id.into();
        call["type"] = "function".into();
    }
    if let Some(name) = name {
        call["function"]["name"] = name.into();
    }
    chunk_event(&format!(
        "{{\"index\":0,\"delta\":{{\"tool_calls\":[{call}]}},\"finish_reason\":null}}"
    ))
}

#[test]
fn two_parallel_tool_calls_split_over_many_chunks() {
    let mut body = tool_delta(Some(0), Some("call_a"), Some("get_weather"), "");
    body += &tool_delta(Some(1), Some("call_b"), Some("get_time"), "");
    let (a, b) = (
        r#"{"city": "Paris", "unit": "celsius"}"#,
        r#"{"tz": "Europe/Paris"}"#,
    );
    for (i, piece) in a.as_bytes().chunks(4).enumerate() {
        body += &tool_delta(Some(0), None, None, std::str::from_utf8(piece).unwrap());
        if let Some(p) = b.as_bytes().chunks(3).nth(i) {
            body += &tool_delta(Some(1), None, None, std::str::from_utf8(p).unwrap());
        }
    }
    body += &finish("tool_calls");
    body += DONE;
    let server = one_response(sse_response(&body));
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    let calls = response.tool_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].id.as_str(), calls[0].function.name.as_str()),
        ("call_a", "get_weather")
    );
    assert_eq!(calls[0].function.arguments, a);
    assert_eq!(
        (calls[1].id.as_str(), calls[1].function.name.as_str()),
        ("call_b", "get_time")
    );
    assert_eq!(calls[1].function.arguments, b);
    assert_eq!(response.finish_reason(), Some("tool_calls"));
    // The next turn can send the assistant message back as it is.
    let message = serde_json::to_value(response.to_message()).unwrap();
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["tool_calls"][1]["function"]["arguments"], b);
}

#[test]
fn tool_call_without_index() {
    let body = [
        tool_delta(None, Some("call_x"), Some("search"), "{\"q\":"),
        tool_delta(None, None, None, "\"rust\"}"),
        tool_delta(Some(-1), Some("call_y"), Some("open"), "{}"),
        finish("tool_calls"),
        DONE.into(),
    ]
    .concat();
    let server = one_response(sse_response(&body));
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    let calls = response.tool_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].function.arguments, "{\"q\":\"rust\"}");
    assert_eq!(calls[1].id, "call_y");
}

#[test]
fn reasoning_under_both_field_names() {
    let r = |field: &str, text: &str| {
        chunk_event(&format!(
            "{{\"index\":0,\"delta\":{{\"{field}\":\"{text}\"}},\"finish_reason\":null}}"
        ))
    };
    let body = [
        r("reasoning_content", "think "),
        r("reasoning", "more"),
        content("answer"),
        finish("stop"),
        DONE.into(),
    ]
    .concat();
    let server = one_response(sse_response(&body));
    let mut reasoning = String::new();
    let response = client(&server.base_url())
        .chat_stream(&request(), |e| {
            if let StreamEvent::Reasoning { text, .. } = e {
                reasoning.push_str(text);
            }
        })
        .expect("success");
    assert_eq!(reasoning, "think more");
    assert_eq!(response.reasoning(), Some("think more"));
    assert_eq!(response.content(), "answer");
}

#[test]
fn usage_chunk_is_kept() {
    let usage = "data: {\"id\":\"chatcmpl-t\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
    let body = [content("hi"), finish("stop"), usage.into(), DONE.into()].concat();
    let server = one_response(sse_response(&body));
    let response = client(&server.base_url())
        .chat(&request().include_usage())
        .expect("success");
    let usage = response.usage.expect("usage");
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (5, 2, 7)
    );
    let sent = request_json(&server.join()[0]);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[test]
fn returns_promptly_when_server_holds_connection_open_after_finish() {
    let server = serve(1, |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(content("done").as_bytes()));
        send(stream, &chunk(finish("stop").as_bytes()));
        // llama.cpp with thinking models: no [DONE], connection kept open.
        std::thread::sleep(Duration::from_secs(5));
    });
    let start = Instant::now();
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    assert_eq!(response.content(), "done");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn error_object_mid_stream_is_an_api_error() {
    let body = [content("par"), "data: {\"error\":{\"message\":\"model crashed\",\"type\":\"model_error\",\"code\":\"oom\"}}\n\n".into()].concat();
    let server = one_response(sse_response(&body));
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("error");
    let Error::Stream(StreamError::Api(api)) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.message, "model crashed");
    assert_eq!(api.kind.as_deref(), Some("model_error"));
    assert_eq!(api.code.as_deref(), Some("oom"));
    assert_eq!(err.kind(), FailureKind::ApiError);

    let body = "event: error\ndata: {\"message\":\"overloaded\"}\n\n";
    let server = one_response(sse_response(body));
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("error");
    assert_eq!(
        err.api_error().map(|e| e.message.as_str()),
        Some("overloaded")
    );
}

#[test]
fn error_statuses_in_every_body_shape() {
    let openai = r#"{"error":{"message":"bad model","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;
    /// (status line, extra headers, body, expected message, expected code)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        &'a str,
        Option<&'a str>,
    );
    let table: &[Case] = &[
        (
            "400 Bad Request",
            &[],
            openai,
            "bad model",
            Some("model_not_found"),
        ),
        (
            "401 Unauthorized",
            &[],
            r#"{"error":"invalid api key"}"#,
            "invalid api key",
            None,
        ),
        (
            "404 Not Found",
            &[],
            r#"{"detail":"Not Found"}"#,
            "Not Found",
            None,
        ),
        (
            "429 Too Many Requests",
            &[("retry-after", "3"), ("x-should-retry", "true")],
            r#"{"error":{"message":"slow down","type":"rate_limit","code":429}}"#,
            "slow down",
            Some("429"),
        ),
        (
            "500 Internal Server Error",
            &[],
            r#"{"error":{"message":"boom","type":"server_error"}}"#,
            "boom",
            None,
        ),
        (
            "503 Service Unavailable",
            &[("retry-after-ms", "1500")],
            "Service Unavailable",
            "Service Unavailable",
            None,
        ),
    ];
    for (status, headers, body, message, code) in table {
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        };
        let mut all = vec![("content-type", content_type)];
        all.extend_from_slice(headers);
        let server = one_response(http_response(status, &all, body));
        let err = client(&server.base_url())
            .chat(&request())
            .expect_err("error status");
        let Error::Http(http) = &err else {
            panic!("{status}: {err:?}")
        };
        assert_eq!(http.status.to_string(), status[..3], "{status}");
        assert_eq!(http.error.message, *message, "{status}");
        assert_eq!(http.error.code.as_deref(), *code, "{status}");
        assert_eq!(err.kind(), FailureKind::HttpStatus);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(http.retry_after, header("retry-after"));
        assert_eq!(http.retry_after_ms, header("retry-after-ms"));
        assert_eq!(http.should_retry, header("x-should-retry"));
    }
}

#[test]
fn html_gateway_page() {
    let page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
    let server = one_response(http_response(
        "502 Bad Gateway",
        &[("content-type", "text/html")],
        page,
    ));
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("502");
    let Error::Http(http) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(http.status, 502);
    assert!(
        http.error.message.contains("502 Bad Gateway"),
        "{}",
        http.error.message
    );
    assert!(!http.error.message.contains('<'), "{}", http.error.message);
}

#[test]
fn json_body_from_a_server_that_ignored_stream() {
    let body = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let server = one_response(http_response(
        "200 OK",
        &[("content-type", "application/json")],
        body,
    ));
    let response = client(&server.base_url())
        .chat(&request())
        .expect("success");
    assert_eq!(response.content(), "whole");
    assert_eq!(response.usage.map(|u| u.total_tokens), Some(2));
}

#[test]
fn html_200_is_a_clear_error() {
    let server = one_response(http_response(
        "200 OK",
        &[("content-type", "text/html; charset=utf-8")],
        "<html><body>Captive portal login</body></html>",
    ));
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("not a stream");
    let Error::UnexpectedContentType {
        content_type,
        snippet,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(content_type, "text/html");
    assert!(snippet.contains("Captive portal login"));
}

#[test]
fn clean_eof_before_completion_is_incomplete() {
    let body = [content("partial")].concat();
    let server = one_response(sse_response(&body));
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("incomplete");
    assert_eq!(err.kind(), FailureKind::IncompleteStream, "{err:?}");
}

#[test]
fn broken_eof_before_completion_keeps_the_io_kind() {
    let server = serve(1, |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(content("partial").as_bytes()));
        // Close mid-body, without the terminating chunk.
    });
    let err = client(&server.base_url())
        .chat(&request())
        .expect_err("broken");
    assert_eq!(err.kind(), FailureKind::UnexpectedEof, "{err:?}");
    let transport = err.transport().expect("a transport failure");
    assert_eq!(
        transport.io_error().kind(),
        std::io::ErrorKind::UnexpectedEof
    );
}

#[test]
fn idle_stall_longer_than_idle_timeout() {
    let server = serve(1, |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(content("a").as_bytes()));
        std::thread::sleep(Duration::from_secs(3));
    });
    let client = Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .max_retries(0)
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = client.chat(&request()).expect_err("stall");
    assert_eq!(err.kind(), FailureKind::IdleTimeout, "{err:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn first_byte_timeout_before_headers() {
    let server = serve(1, |_, _, _| std::thread::sleep(Duration::from_secs(3)));
    let client = Client::builder()
        .base_url(server.base_url())
        .proxy(ProxyConfig::None)
        .max_retries(0)
        .first_byte_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client.chat(&request()).expect_err("stall");
    assert_eq!(err.kind(), FailureKind::FirstByteTimeout, "{err:?}");
}

#[test]
fn cancel_from_another_thread_during_a_stalled_read() {
    let server = serve(1, |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(content("a").as_bytes()));
        std::thread::sleep(Duration::from_secs(5));
    });
    let cancel = CancelHandle::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            // Cancel once the first delta has arrived: the call is then blocked in a read.
            rx.recv_timeout(Duration::from_secs(5))
                .expect("first delta");
            std::thread::sleep(Duration::from_millis(200));
            let at = Instant::now();
            cancel.cancel();
            at
        })
    };
    let options = CallOptions {
        cancel: Some(cancel),
        ..CallOptions::default()
    };
    let result = client(&server.base_url()).chat_with(&request(), &options, |_| {
        let _ = tx.send(());
    });
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    let lag = returned.duration_since(cancelled_at);
    assert!(
        lag < Duration::from_millis(100),
        "returned {lag:?} after cancel"
    );
}

#[test]
fn chat_in_thread_delivers_owned_events() {
    let body = [content("x"), content("y"), finish("stop"), DONE.into()].concat();
    let server = one_response(sse_response(&body));
    let call = client(&server.base_url()).chat_in_thread(request(), CallOptions::default());
    let texts: Vec<String> = call
        .events
        .iter()
        .filter_map(|e| match e {
            oai_sse::OwnedStreamEvent::Content { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["x", "y"]);
    assert_eq!(call.join().expect("success").content(), "xy");
}

#[test]
fn connection_refused_keeps_its_kind() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(&format!("http://127.0.0.1:{port}/v1"))
        .chat(&request())
        .expect_err("refused");
    assert_eq!(err.kind(), FailureKind::ConnectionRefused, "{err:?}");
}

#[test]
fn n_choices_streamed_one_after_another_are_all_kept() {
    let c = |i: u32, text: &str, finish: &str| {
        chunk_event(&format!(
            "{{\"index\":{i},\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":{finish}}}"
        ))
    };
    // Choice 0 finishes before choice 1 starts, and no [DONE] follows: with n = 2 the client
    // must not stop after the first finish.
    let body = [c(0, "first", "\"stop\""), c(1, "second", "\"stop\"")].concat();
    let server = serve(1, move |_, stream, _| {
        send(stream, SSE_CHUNKED_HEAD.as_bytes());
        send(stream, &chunk(body.as_bytes()));
        std::thread::sleep(Duration::from_secs(3));
    });
    let mut request = request();
    request.extra.insert("n".into(), 2.into());
    let start = Instant::now();
    let response = client(&server.base_url()).chat(&request).expect("success");
    assert_eq!(response.choices.len(), 2);
    assert_eq!(response.choices[1].message.text(), "second");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "returned without waiting for the close"
    );
    assert_eq!(request_json(&server.requests.lock().unwrap()[0])["n"], 2);
}
