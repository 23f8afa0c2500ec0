//! A two-turn tool-calling agent loop: the model asks for a tool, the program runs it and
//! sends the result back, the model answers. The conversation opens with a worked example
//! (few-shot) built from the message constructors: a call, its result, the answer.
//!
//! `cargo run --example agent_loop --features mock` runs against the crate's mock server, scripted per turn.

use oai_sse::mock::{MockServer, Replies, Script};
use oai_sse::{ChatRequest, Client, Message, Tool, ToolCall, ToolChoice};

/// The program's one tool.
fn get_weather(arguments: &str) -> String {
    let city = serde_json::from_str::<serde_json::Value>(arguments)
        .ok()
        .and_then(|v| v["city"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "nowhere".into());
    format!("sunny and 12 °C in {city}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The mock plays the model: a tool call after a user turn, an answer after a tool result.
    let server = MockServer::start(Replies::from_fn(|request| {
        if request.last_message_role() == Some("tool") {
            let result = request.last_message_content().unwrap_or_default();
            Script::new().text(format!("The weather report says: {result}."))
        } else {
            Script::new().tool_call("get_weather", r#"{"city":"Oslo"}"#)
        }
    }))?;
    let client = Client::new(&server.base_url())?;
    let weather = Tool::function(
        "get_weather",
        "Current weather for a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    );
    let example_call = ToolCall::function("example_1", "get_weather", r#"{"city":"Bergen"}"#);
    let mut messages = vec![
        Message::system("Answer weather questions with get_weather."),
        Message::user("What is the weather in Bergen?"),
        Message::assistant_tool_calls([example_call]),
        Message::tool("example_1", get_weather(r#"{"city":"Bergen"}"#)),
        Message::assistant("The weather report says: sunny and 12 °C in Bergen."),
        Message::user("What is the weather in Oslo?"),
    ];
    for turn in 1..=4 {
        let request = ChatRequest::new("mock-model", messages.clone())
            .tools(vec![weather.clone()])
            .tool_choice(ToolChoice::Auto);
        let response = client.chat(&request)?;
        messages.push(response.to_message());
        if response.tool_calls().is_empty() {
            println!("{}", response.content());
            eprintln!("answered after {turn} turns");
            assert_eq!(server.chat_requests().len(), turn);
            // The example's call went out with tool calls and no content.
            let first = &server.chat_requests()[0];
            let sent = &first.messages()[2];
            assert!(sent.get("content").is_none(), "{sent}");
            assert_eq!(sent["tool_calls"][0]["function"]["name"], "get_weather");
            return Ok(());
        }
        for call in response.tool_calls() {
            let result = get_weather(&call.function.arguments);
            eprintln!(
                "turn {turn}: {}({}) -> {result}",
                call.function.name, call.function.arguments
            );
            messages.push(Message::tool(call.id.clone(), result));
        }
    }
    Err("no answer after 4 turns".into())
}
