//! The `POST /v1/chat/completions` request body and its builder methods.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::message::{Message, Tool};

/// A `POST /v1/chat/completions` request body.
///
/// Every optional field is omitted from the JSON when `None`; `extra` is flattened into the
/// top level verbatim, for server-specific parameters (`top_k`, `min_p`, `n`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name as the server knows it.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type":"function","function":{"name":..}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Legacy output token limit (most local servers read this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Output token limit including reasoning tokens (newer OpenAI models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// A stop string or an array of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Whether the model may emit several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"type":"json_object"}` or `{"type":"json_schema",...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Ask for an SSE stream. The streaming client sets this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (usage in the final chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Arguments for the server's chat template (llama.cpp, vLLM: `{"enable_thinking": false}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Any other top-level field, passed through verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stream_options` of a streamed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask the server to send a final chunk carrying `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

impl ChatRequest {
    /// A request with only `model` and `messages` set.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            tools: None,
            tool_choice: None,
            temperature: None,
            top_p: None,
            max_tokens: None,
            max_completion_tokens: None,
            stop: None,
            seed: None,
            parallel_tool_calls: None,
            response_format: None,
            stream: None,
            stream_options: None,
            chat_template_kwargs: None,
            extra: Map::new(),
        }
    }

    /// Offer these tools to the model.
    #[must_use]
    pub fn with_tools(mut self, tools: Vec<Tool>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Set `max_tokens`.
    #[must_use]
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Set `temperature`.
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Set `stream_options.include_usage = true`.
    #[must_use]
    pub fn include_usage(mut self) -> Self {
        self.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        self
    }

    /// Whether a streamed response should end with a usage chunk
    /// (pass this to [`Accumulator::new`](super::Accumulator::new)).
    pub fn usage_requested(&self) -> bool {
        self.stream_options.is_some_and(|o| o.include_usage)
    }

    /// The number of choices asked for (`n`, passed through `extra`; 1 when absent).
    pub fn choices_requested(&self) -> u32 {
        self.extra
            .get("n")
            .and_then(serde_json::Value::as_u64)
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;
    use serde_json::json;

    #[test]
    fn request_serializes_only_set_fields() {
        let mut req = ChatRequest::new(
            "qwen3",
            vec![Message::system("be brief"), Message::user("hi")],
        )
        .with_tools(vec![Tool::function(
            "get_weather",
            "Weather for a city",
            json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        )])
        .max_tokens(64)
        .temperature(0.5)
        .include_usage();
        req.extra.insert("top_k".into(), json!(20));
        assert!(req.usage_requested());
        let want = json!({
            "model": "qwen3",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}
            ],
            "tools": [{
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}
                }
            }],
            "temperature": 0.5,
            "max_tokens": 64,
            "stream_options": {"include_usage": true},
            "top_k": 20
        });
        assert_eq!(serde_json::to_value(&req).ok(), Some(want));
        assert!(!ChatRequest::new("m", vec![]).usage_requested());
    }

    #[test]
    fn request_file_round_trips() {
        let file = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "developer", "content": "You are terse."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
                ]},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_abc", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "42"}
            ],
            "tool_choice": "auto",
            "top_p": 0.9,
            "max_completion_tokens": 100,
            "stop": ["\n\n", "END"],
            "seed": -7,
            "parallel_tool_calls": false,
            "response_format": {"type": "json_object"},
            "stream": true,
            "chat_template_kwargs": {"enable_thinking": false},
            "min_p": 0.05,
            "repetition_penalty": 1.1
        });
        let req: ChatRequest = match serde_json::from_value(file.clone()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.messages[0].role, Role::Developer);
        assert_eq!(req.messages[1].text(), "What is this?");
        assert_eq!(req.messages[2].content, None);
        assert_eq!(req.stop, Some(json!(["\n\n", "END"])));
        assert_eq!(req.extra.len(), 2);
        // Through text, so f32 fields print as written (`0.9`, not `0.8999999761581421`).
        let text = serde_json::to_string(&req).unwrap_or_default();
        assert!(text.contains(r#""top_p":0.9,"#), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(file));
    }
}
