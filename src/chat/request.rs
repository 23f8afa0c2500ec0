//! The `POST /v1/chat/completions` request body and its builder methods.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::message::{Message, Tool};

/// A `POST /v1/chat/completions` request body.
///
/// The common parameters are typed fields with builder methods of the same name
/// (`ChatRequest::new(model, messages).max_tokens(256).temperature(0.2).n(2)`); every optional
/// field is omitted from the JSON when `None`. `extra` is flattened into the top level
/// verbatim, for server-specific parameters (`top_k`, `min_p`, `ignore_eos`, ...); set them
/// with [`ChatRequest::extra`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name as the server knows it. llama.cpp ignores it; an empty name is left out of
    /// the JSON.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Whether and which tool the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may emit several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// How many choices to generate (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Legacy output token limit (most local servers read this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Output token limit including reasoning tokens (newer OpenAI models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Where to stop generating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Constrain the output to JSON, or to a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// How hard a reasoning model thinks: `"minimal"`, `"low"`, `"medium"`, `"high"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Ask for an SSE stream. The streaming client sets this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options. When `None`, the client asks for usage in the last chunk.
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

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

impl From<&str> for Stop {
    fn from(stop: &str) -> Self {
        Self::One(stop.to_owned())
    }
}

impl From<String> for Stop {
    fn from(stop: String) -> Self {
        Self::One(stop)
    }
}

impl<S: Into<String>, const N: usize> From<[S; N]> for Stop {
    fn from(stops: [S; N]) -> Self {
        Self::Many(stops.into_iter().map(Into::into).collect())
    }
}

impl From<Vec<String>> for Stop {
    fn from(stops: Vec<String>) -> Self {
        Self::Many(stops)
    }
}

/// `tool_choice`: `"auto"`, `"none"`, `"required"`, or one named function. Any other shape a
/// request file holds is kept as it is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// At least one tool call.
    Required,
    /// Exactly this function.
    Function(String),
    /// A shape this crate does not model, sent verbatim.
    Other(Value),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::None => s.serialize_str("none"),
            Self::Required => s.serialize_str("required"),
            Self::Function(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
            Self::Other(value) => value.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(match value.as_str() {
            Some("auto") => Self::Auto,
            Some("none") => Self::None,
            Some("required") => Self::Required,
            _ => {
                let name = value
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|_| value.get("type").and_then(Value::as_str) == Some("function"));
                match name {
                    Some(name) => Self::Function(name.to_owned()),
                    None => Self::Other(value),
                }
            }
        })
    }
}

/// `response_format`: plain text, any JSON object, or JSON matching a schema. Any other shape
/// a request file holds is kept as it is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResponseFormat {
    /// `{"type":"text"}`.
    Text,
    /// `{"type":"json_object"}`.
    JsonObject,
    /// `{"type":"json_schema","json_schema":{"name":..,"schema":..,"strict":..}}`.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// The JSON schema.
        schema: Value,
        /// Whether the server must follow it exactly.
        strict: Option<bool>,
    },
    /// A shape this crate does not model, sent verbatim.
    Other(Value),
}

impl ResponseFormat {
    /// JSON matching `schema`, strictly.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        Self::JsonSchema {
            name: name.into(),
            schema,
            strict: Some(true),
        }
    }
}

impl Serialize for ResponseFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text => serde_json::json!({"type": "text"}).serialize(s),
            Self::JsonObject => serde_json::json!({"type": "json_object"}).serialize(s),
            Self::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut inner = Map::new();
                inner.insert("name".into(), name.as_str().into());
                inner.insert("schema".into(), schema.clone());
                if let Some(strict) = strict {
                    inner.insert("strict".into(), (*strict).into());
                }
                serde_json::json!({"type": "json_schema", "json_schema": inner}).serialize(s)
            }
            Self::Other(value) => value.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ResponseFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let schema = value.get("json_schema");
        Ok(match value.get("type").and_then(Value::as_str) {
            Some("text") if value.as_object().is_some_and(|o| o.len() == 1) => Self::Text,
            Some("json_object") if value.as_object().is_some_and(|o| o.len() == 1) => {
                Self::JsonObject
            }
            Some("json_schema")
                if schema.and_then(Value::as_object).is_some_and(|o| {
                    o.keys()
                        .all(|k| ["name", "schema", "strict"].contains(&k.as_str()))
                }) =>
            {
                let field = |k: &str| schema.and_then(|s| s.get(k));
                match (field("name").and_then(Value::as_str), field("schema")) {
                    (Some(name), Some(schema_value)) => Self::JsonSchema {
                        name: name.to_owned(),
                        schema: schema_value.clone(),
                        strict: field("strict").and_then(Value::as_bool),
                    },
                    _ => Self::Other(value),
                }
            }
            _ => Self::Other(value),
        })
    }
}

impl ChatRequest {
    /// A request with only `model` and `messages` set.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            messages,
            tools: None,
            tool_choice: None,
            parallel_tool_calls: None,
            temperature: None,
            top_p: None,
            n: None,
            max_tokens: None,
            max_completion_tokens: None,
            stop: None,
            seed: None,
            response_format: None,
            reasoning_effort: None,
            stream: None,
            stream_options: None,
            chat_template_kwargs: None,
            extra: Map::new(),
        }
    }

    /// Offer these tools to the model.
    #[must_use]
    pub fn tools(mut self, tools: Vec<Tool>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Set `tool_choice`.
    #[must_use]
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Set `parallel_tool_calls`.
    #[must_use]
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.parallel_tool_calls = Some(parallel);
        self
    }

    /// Set `temperature`.
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Set `top_p`.
    #[must_use]
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Set `n`, the number of choices.
    #[must_use]
    pub fn n(mut self, n: u32) -> Self {
        self.n = Some(n);
        self
    }

    /// Set `max_tokens`.
    #[must_use]
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Set `max_completion_tokens`.
    #[must_use]
    pub fn max_completion_tokens(mut self, n: u32) -> Self {
        self.max_completion_tokens = Some(n);
        self
    }

    /// Set `stop`: a string, an array of strings or a `Vec<String>`.
    #[must_use]
    pub fn stop(mut self, stop: impl Into<Stop>) -> Self {
        self.stop = Some(stop.into());
        self
    }

    /// Set `seed`.
    #[must_use]
    pub fn seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Set `response_format`.
    #[must_use]
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// Set `reasoning_effort`.
    #[must_use]
    pub fn reasoning_effort(mut self, effort: impl Into<String>) -> Self {
        self.reasoning_effort = Some(effort.into());
        self
    }

    /// Set `stream_options`.
    #[must_use]
    pub fn stream_options(mut self, options: StreamOptions) -> Self {
        self.stream_options = Some(options);
        self
    }

    /// Set `stream_options.include_usage = true`: the stream is not complete before the
    /// usage chunk arrived.
    #[must_use]
    pub fn include_usage(self) -> Self {
        self.stream_options(StreamOptions {
            include_usage: true,
        })
    }

    /// Add a server-specific top-level field (`top_k`, `min_p`, `ignore_eos`, ...).
    #[must_use]
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Whether the caller asked for a usage chunk (`stream_options.include_usage`): then
    /// the stream is not complete without it.
    pub fn usage_requested(&self) -> bool {
        self.stream_options.is_some_and(|o| o.include_usage)
    }

    /// The number of choices asked for (`n`, also when set through `extra`; 1 when absent).
    pub fn choices_requested(&self) -> u32 {
        self.n
            .or_else(|| {
                self.extra
                    .get("n")
                    .and_then(Value::as_u64)
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            })
            .unwrap_or(1)
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
        .tools(vec![Tool::function(
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
        assert_eq!(req.stop, Some(Stop::from(["\n\n", "END"])));
        assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(req.response_format, Some(ResponseFormat::JsonObject));
        assert_eq!(req.extra.len(), 2);
        // Through text, so f32 fields print as written (`0.9`, not `0.8999999761581421`).
        let text = serde_json::to_string(&req).unwrap_or_default();
        assert!(text.contains(r#""top_p":0.9,"#), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).ok(), Some(file));
    }

    #[test]
    fn typed_parameters_serialize_as_openai_expects() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let req = ChatRequest::new("m", vec![Message::user("hi")])
            .n(2)
            .stop(["\n", "END"])
            .seed(7)
            .top_p(0.5)
            .response_format(ResponseFormat::json_schema("answer", schema.clone()))
            .stream_options(StreamOptions {
                include_usage: false,
            })
            .tool_choice(ToolChoice::Function("get_weather".into()))
            .parallel_tool_calls(false)
            .reasoning_effort("low")
            .max_completion_tokens(99)
            .extra("top_k", 20);
        let want = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "top_p": 0.5,
            "n": 2,
            "max_completion_tokens": 99,
            "stop": ["\n", "END"],
            "seed": 7,
            "response_format": {"type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": true}},
            "reasoning_effort": "low",
            "stream_options": {"include_usage": false},
            "top_k": 20
        });
        assert_eq!(serde_json::to_value(&req).ok(), Some(want.clone()));
        assert_eq!(
            serde_json::from_value::<ChatRequest>(want).ok(),
            Some(req.clone())
        );
        assert_eq!(req.choices_requested(), 2);
        assert!(!req.usage_requested());
    }

    #[test]
    fn unmodelled_shapes_pass_through() {
        let table = [
            (json!("auto"), Some(ToolChoice::Auto)),
            (json!("none"), Some(ToolChoice::None)),
            (json!("required"), Some(ToolChoice::Required)),
            (json!({"type": "allowed_tools", "mode": "auto"}), None),
            (json!("any"), None),
        ];
        for (value, want) in table {
            let choice: ToolChoice = serde_json::from_value(value.clone()).expect("any value");
            match want {
                Some(want) => assert_eq!(choice, want),
                None => assert_eq!(choice, ToolChoice::Other(value.clone())),
            }
            assert_eq!(serde_json::to_value(&choice).ok(), Some(value));
        }
        for value in [
            json!({"type": "text"}),
            json!({"type": "json_object"}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "description": "d"}}),
            json!({"type": "grammar", "grammar": "root ::= \"yes\""}),
        ] {
            let format: ResponseFormat = serde_json::from_value(value.clone()).expect("any value");
            assert_eq!(serde_json::to_value(&format).ok(), Some(value));
        }
        let legacy = ChatRequest::new("m", vec![]).extra("n", 3);
        assert_eq!(legacy.choices_requested(), 3);
        assert_eq!(
            serde_json::from_value::<Stop>(json!("x")).ok(),
            Some(Stop::from("x"))
        );
    }
}
