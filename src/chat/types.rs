//! Serde types for the OpenAI chat-completions wire format: the request, the whole
//! (non-streamed) response, the zero-copy stream chunk, usage and server error bodies.
//!
//! Deserialization is lenient where real servers differ (nulls where OpenAI omits a field,
//! numeric error codes, unknown fields); serialization emits only the fields that are set.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Messages and tools
// ---------------------------------------------------------------------------------------------

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (older models).
    System,
    /// The human.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
    /// Instructions (newer OpenAI models).
    Developer,
}

impl Role {
    /// The wire name (`"assistant"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::Developer => "developer",
        }
    }
}

/// One chat message, in a request or in a response.
///
/// Deserializing accepts `reasoning` (vLLM) as well as `reasoning_content`, and drops an empty
/// `tool_calls` array (OpenAI rejects `[]` when the message is sent back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "MessageWire")]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text or multi-part content; `None` for an assistant turn that only calls tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Tool calls made by the assistant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `role: tool`: the id of the call this message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Optional participant name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The model's reasoning text (DeepSeek, llama.cpp, vLLM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// A refusal message (OpenAI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

#[derive(Deserialize)]
struct MessageWire {
    role: Role,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

impl From<MessageWire> for Message {
    fn from(w: MessageWire) -> Self {
        Self {
            role: w.role,
            content: w.content,
            tool_calls: w.tool_calls.filter(|c| !c.is_empty()),
            tool_call_id: w.tool_call_id,
            name: w.name,
            reasoning_content: w.reasoning_content.or(w.reasoning),
            refusal: w.refusal,
        }
    }
}

impl Message {
    fn with_role(role: Role, content: impl Into<Content>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: None,
            tool_call_id: None,
            name: None,
            reasoning_content: None,
            refusal: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<Content>) -> Self {
        Self::with_role(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<Content>) -> Self {
        Self::with_role(Role::User, content)
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<Content>) -> Self {
        Self::with_role(Role::Assistant, content)
    }

    /// A tool result answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        let mut m = Self::with_role(Role::Tool, content);
        m.tool_call_id = Some(tool_call_id.into());
        m
    }

    /// The text of the content (the first text part for multi-part content), or `""`.
    pub fn text(&self) -> &str {
        self.content.as_ref().map_or("", Content::text)
    }
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

impl Content {
    /// The plain text, or the first text part, or `""`.
    pub fn text(&self) -> &str {
        match self {
            Self::Text(s) => s,
            Self::Parts(parts) => parts
                .iter()
                .find_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::ImageUrl { .. } => None,
                })
                .unwrap_or(""),
        }
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<Vec<ContentPart>> for Content {
    fn from(parts: Vec<ContentPart>) -> Self {
        Self::Parts(parts)
    }
}

/// One part of multi-part content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type":"text","text":..}`
    Text {
        /// The text.
        text: String,
    },
    /// `{"type":"image_url","image_url":{"url":..,"detail":..}}`
    ImageUrl {
        /// The image reference.
        image_url: ImageUrl,
    },
}

/// An image given by URL or `data:` URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `"auto"`, `"low"` or `"high"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn function_type() -> String {
    "function".to_owned()
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id; a `role: tool` message answers it through `tool_call_id`.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Always `"function"` today.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// The function half of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Arguments as a JSON text. A server that sends a JSON object instead is accepted and
    /// the object is stored as its JSON text.
    #[serde(default, deserialize_with = "arguments_text")]
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `"function"` today.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function's declaration.
    pub function: FunctionDef,
}

/// A function declaration offered as a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Function name.
    pub name: String,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Ask for strict schema adherence (OpenAI structured outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

impl Tool {
    /// A function tool with a description and a JSON Schema for its arguments.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Self {
            kind: function_type(),
            function: FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------------------------

/// Token counts. Missing or `null` counts read as 0; other fields (`completion_tokens_details`,
/// `prompt_tokens_details`, ...) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, deserialize_with = "null_default")]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default, deserialize_with = "null_default")]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default, deserialize_with = "null_default")]
    pub total_tokens: u64,
    /// Everything else the server reported.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// Stream chunk (zero-copy)
// ---------------------------------------------------------------------------------------------

/// One `chat.completion.chunk`, borrowing its strings from the SSE data where they contain no
/// escapes. Unknown fields (`timings`, `logprobs`, `obfuscation`, ...) are ignored and every
/// string may be absent or `null`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ChunkRef<'a> {
    /// Completion id.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    /// Model name.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub model: Option<Cow<'a, str>>,
    /// Unix seconds.
    #[serde(default)]
    pub created: Option<u64>,
    /// Backend configuration fingerprint.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub system_fingerprint: Option<Cow<'a, str>>,
    /// Per-choice deltas; empty in a usage-only chunk.
    #[serde(borrow, default, deserialize_with = "null_default")]
    pub choices: Vec<ChoiceDelta<'a>>,
    /// Token counts, usually only in the last chunk.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// An error object a server sent instead of a chunk.
    #[serde(default)]
    pub error: Option<Value>,
}

/// The delta for one choice inside a [`ChunkRef`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ChoiceDelta<'a> {
    /// Choice index (0 unless `n > 1`).
    #[serde(default, deserialize_with = "null_default")]
    pub index: u32,
    /// What this chunk adds.
    #[serde(borrow, default, deserialize_with = "null_default")]
    pub delta: DeltaRef<'a>,
    /// Set on the choice's last chunk.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// The incremental message fields of a [`ChoiceDelta`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct DeltaRef<'a> {
    /// `"assistant"`, usually only in the first chunk.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub role: Option<Cow<'a, str>>,
    /// Answer text.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub content: Option<Cow<'a, str>>,
    /// Reasoning text (DeepSeek, llama.cpp, older vLLM).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// Reasoning text (newer vLLM, OpenRouter, Ollama).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub reasoning: Option<Cow<'a, str>>,
    /// Refusal text (OpenAI).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub refusal: Option<Cow<'a, str>>,
    /// Tool-call fragments.
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallDeltaRef<'a>>>,
}

/// A fragment of one tool call.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ToolCallDeltaRef<'a> {
    /// Slot of the call; some servers omit it or send -1.
    #[serde(default)]
    pub index: Option<i64>,
    /// Call id, usually only in the call's first fragment.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub id: Option<Cow<'a, str>>,
    /// `"function"`.
    #[serde(rename = "type", borrow, default, deserialize_with = "opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    /// Name and argument fragment.
    #[serde(borrow, default)]
    pub function: Option<FunctionDeltaRef<'a>>,
}

/// The function part of a [`ToolCallDeltaRef`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct FunctionDeltaRef<'a> {
    /// Function name, usually only in the first fragment.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    /// The next piece of the arguments JSON text.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub arguments: Option<Cow<'a, str>>,
}

// ---------------------------------------------------------------------------------------------
// Whole response
// ---------------------------------------------------------------------------------------------

/// A complete `chat.completion`: what a stream aggregates to, or what a server that ignored
/// `stream` returns. Serializes to the OpenAI JSON shape (with `"object":"chat.completion"`),
/// plus a `"retries"` array when the call needed retries.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ChatResponse {
    /// Completion id.
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// Unix seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub created: u64,
    /// Model name.
    #[serde(default, deserialize_with = "null_default")]
    pub model: String,
    /// Backend configuration fingerprint.
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    /// The choices, sorted by index.
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<Choice>,
    /// Token counts, if the server reported them.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The retries it took to get this response (empty when the first attempt succeeded).
    #[serde(default)]
    pub retries: Vec<crate::retry::RetryRecord>,
}

/// One choice of a [`ChatResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Choice index.
    #[serde(default, deserialize_with = "null_default")]
    pub index: u32,
    /// The assistant message.
    pub message: Message,
    /// `"stop"`, `"length"`, `"tool_calls"`, `"content_filter"`, ...
    #[serde(default)]
    pub finish_reason: Option<String>,
}

impl Serialize for ChatResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shape<'r> {
            id: &'r str,
            object: &'static str,
            created: u64,
            model: &'r str,
            #[serde(skip_serializing_if = "Option::is_none")]
            system_fingerprint: Option<&'r str>,
            choices: &'r [Choice],
            #[serde(skip_serializing_if = "Option::is_none")]
            usage: Option<&'r Usage>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            retries: &'r [crate::retry::RetryRecord],
        }
        Shape {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            system_fingerprint: self.system_fingerprint.as_deref(),
            choices: &self.choices,
            usage: self.usage.as_ref(),
            retries: &self.retries,
        }
        .serialize(s)
    }
}

impl ChatResponse {
    fn first(&self) -> Option<&Choice> {
        self.choices.first()
    }

    /// The first choice's text, or `""`.
    pub fn content(&self) -> &str {
        self.first().map_or("", |c| c.message.text())
    }

    /// The first choice's reasoning text, if any.
    pub fn reasoning(&self) -> Option<&str> {
        self.first()?.message.reasoning_content.as_deref()
    }

    /// The first choice's tool calls (empty if none).
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.first()
            .and_then(|c| c.message.tool_calls.as_deref())
            .unwrap_or(&[])
    }

    /// The first choice's finish reason.
    pub fn finish_reason(&self) -> Option<&str> {
        self.first()?.finish_reason.as_deref()
    }

    /// The assistant message to append to the conversation for the next turn: content,
    /// tool calls and reasoning of the first choice.
    pub fn to_message(&self) -> Message {
        let m = self.first().map(|c| &c.message);
        Message {
            role: Role::Assistant,
            content: m.and_then(|m| m.content.clone()),
            tool_calls: m
                .and_then(|m| m.tool_calls.clone())
                .filter(|c| !c.is_empty()),
            tool_call_id: None,
            name: None,
            reasoning_content: m.and_then(|m| m.reasoning_content.clone()),
            refusal: None,
        }
        .ensure_sendable()
    }

    /// Like [`ChatResponse::to_message`], without cloning.
    pub fn into_message(self) -> Message {
        let m = self.choices.into_iter().next().map(|c| c.message);
        let (content, tool_calls, reasoning_content) = match m {
            Some(m) => (m.content, m.tool_calls, m.reasoning_content),
            None => (None, None, None),
        };
        Message {
            role: Role::Assistant,
            content,
            tool_calls: tool_calls.filter(|c| !c.is_empty()),
            tool_call_id: None,
            name: None,
            reasoning_content,
            refusal: None,
        }
        .ensure_sendable()
    }
}

impl Message {
    /// An assistant message needs `content` unless it has tool calls.
    fn ensure_sendable(mut self) -> Self {
        if self.content.is_none() && self.tool_calls.is_none() {
            self.content = Some(Content::Text(String::new()));
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Server errors
// ---------------------------------------------------------------------------------------------

/// An error reported by the server, in an HTTP error body or inside the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApiError {
    /// Human-readable message (or a cleaned-up snippet of a non-JSON body).
    pub message: String,
    /// The error's `type` (`"invalid_request_error"`, `"server_error"`, ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The offending parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// The error code; numeric codes are stored as their decimal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ApiError {
    /// Longest snippet kept from a body that is not a JSON error, in characters.
    pub const MAX_SNIPPET_CHARS: usize = 200;
    /// Longest message kept from a JSON error, in characters.
    pub const MAX_MESSAGE_CHARS: usize = 2000;
    /// How deeply `{"error":{"error":..}}` nesting is followed.
    const MAX_DEPTH: u8 = 4;

    /// Read an error body of any shape: `{"error":{"message","type","param","code"}}`,
    /// `{"error":"text"}`, `{"message":..}`, `{"detail":..}` (FastAPI), or anything else,
    /// kept as a short whitespace-collapsed snippet with HTML tags stripped. Never panics.
    pub fn from_body(body: &[u8]) -> Self {
        let trimmed = body.trim_ascii();
        if trimmed.is_empty() {
            return Self::with_message("empty error body".to_owned());
        }
        if matches!(trimmed.first(), Some(b'{' | b'"'))
            && let Ok(v) = serde_json::from_slice::<Value>(trimmed)
        {
            return Self::from_value(&v);
        }
        let text = String::from_utf8_lossy(trimmed);
        let snippet = if text.starts_with('<') {
            html_snippet(&text)
        } else {
            collapse(&text, Self::MAX_SNIPPET_CHARS)
        };
        Self::with_message(if snippet.is_empty() {
            "unreadable error body".to_owned()
        } else {
            snippet
        })
    }

    /// Read an error JSON value: the stream's `error` field, or a whole error body.
    pub fn from_value(v: &Value) -> Self {
        Self::from_value_at(v, 0)
    }

    fn from_value_at(v: &Value, depth: u8) -> Self {
        let Value::Object(map) = v else {
            return Self::with_message(value_text(v, Self::MAX_MESSAGE_CHARS));
        };
        let field = |k: &str| {
            map.get(k)
                .filter(|x| !x.is_null())
                .map(|x| value_text(x, Self::MAX_SNIPPET_CHARS))
        };
        let mut err = match map.get("error").filter(|e| !e.is_null()) {
            Some(inner @ Value::Object(_)) if depth < Self::MAX_DEPTH => {
                Self::from_value_at(inner, depth + 1)
            }
            Some(inner) => Self::with_message(value_text(inner, Self::MAX_MESSAGE_CHARS)),
            None => {
                let message = match (map.get("message"), map.get("detail")) {
                    (Some(m), _) if !m.is_null() => value_text(m, Self::MAX_MESSAGE_CHARS),
                    (_, Some(d)) if !d.is_null() => detail_text(d),
                    _ => value_text(v, Self::MAX_SNIPPET_CHARS),
                };
                Self::with_message(message)
            }
        };
        err.kind = err.kind.or_else(|| field("type"));
        err.param = err.param.or_else(|| field("param"));
        err.code = err.code.or_else(|| field("code"));
        err
    }

    fn with_message(message: String) -> Self {
        Self {
            message,
            ..Self::default()
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (&self.kind, &self.code) {
            (Some(k), Some(c)) => write!(f, " (type: {k}, code: {c})"),
            (Some(k), None) => write!(f, " (type: {k})"),
            (None, Some(c)) => write!(f, " (code: {c})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for ApiError {}

/// A JSON value as text: strings as-is, anything else as compact JSON; at most `max` chars.
fn value_text(v: &Value, max: usize) -> String {
    match v {
        Value::String(s) => truncate_chars(s, max),
        other => truncate_chars(&other.to_string(), max),
    }
}

/// FastAPI's `detail`: a string, or a list of `{"loc","msg","type"}` whose `msg`s are joined.
fn detail_text(d: &Value) -> String {
    if let Value::Array(items) = d {
        let msgs: Vec<&str> = items
            .iter()
            .filter_map(|i| i.get("msg").and_then(Value::as_str))
            .collect();
        if !msgs.is_empty() {
            return truncate_chars(&msgs.join("; "), ApiError::MAX_MESSAGE_CHARS);
        }
    }
    value_text(d, ApiError::MAX_MESSAGE_CHARS)
}

/// The first `max` characters of `s`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// Whitespace collapsed to single spaces, at most `max` characters (the last one `…` if cut).
fn collapse(s: &str, max: usize) -> String {
    let mut chars = s
        .split_whitespace()
        .enumerate()
        .flat_map(|(i, w)| (i > 0).then_some(' ').into_iter().chain(w.chars()));
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out = truncate_chars(&out, max.saturating_sub(1));
        out.push('…');
    }
    out
}

/// Visible text of an HTML page: tags dropped, `<head>`, `<script>` and `<style>` skipped
/// (falling back to the `<title>` when the body has no text), a few entities decoded.
fn html_snippet(html: &str) -> String {
    let body = collapse(&strip_tags(html, true), ApiError::MAX_SNIPPET_CHARS);
    if !body.is_empty() {
        return body;
    }
    collapse(&strip_tags(html, false), ApiError::MAX_SNIPPET_CHARS)
}

fn strip_tags(html: &str, skip_head: bool) -> String {
    // Enough raw text for the snippet even with lots of whitespace; stops scanning huge pages.
    const RAW_BUDGET: usize = ApiError::MAX_SNIPPET_CHARS * 8;
    let mut out = String::new();
    let mut rest = html;
    while out.len() < RAW_BUDGET {
        let Some(lt) = rest.find('<') else {
            push_decoded(&mut out, rest);
            break;
        };
        push_decoded(&mut out, &rest[..lt]);
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        out.push(' ');
        if tag.starts_with('/') {
            continue;
        }
        let name_len = tag.bytes().take_while(u8::is_ascii_alphanumeric).count();
        let name = &tag[..name_len];
        let skipped = ["script", "style"]
            .iter()
            .chain(if skip_head { &["head"][..] } else { &[][..] })
            .any(|s| s.eq_ignore_ascii_case(name));
        if skipped {
            let close = format!("</{name}");
            rest = find_ascii_ci(rest, &close).map_or("", |p| &rest[p..]);
        }
    }
    out
}

/// Byte offset of the first ASCII-case-insensitive occurrence of `needle` (ASCII) in `hay`.
fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn push_decoded(out: &mut String, text: &str) {
    const ENTITIES: [(&str, &str); 6] = [
        ("&nbsp;", " "),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&amp;", "&"),
    ];
    if !text.contains('&') {
        out.push_str(text);
        return;
    }
    let mut s = text.to_owned();
    for (from, to) in ENTITIES {
        s = s.replace(from, to);
    }
    out.push_str(&s);
}

// ---------------------------------------------------------------------------------------------
// Deserialization helpers
// ---------------------------------------------------------------------------------------------

/// `null` reads as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Tool arguments: a JSON string as-is, `null` as empty, any other value as its JSON text.
fn arguments_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// An optional string that borrows from the input when it has no escapes. Numbers and booleans
/// are accepted as their text (some servers send numeric ids).
fn opt_cow<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
    }
    d.deserialize_option(V)
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn messages_deserialize_leniently() {
        let cases = [
            // content null and empty tool_calls (some servers) read as absent.
            (
                json!({"role":"assistant","content":null,"tool_calls":[],"refusal":null}),
                json!({"role":"assistant"}),
            ),
            // vLLM's `reasoning` reads as reasoning_content.
            (
                json!({"role":"assistant","content":"4","reasoning":"2+2"}),
                json!({"role":"assistant","content":"4","reasoning_content":"2+2"}),
            ),
            (
                json!({"role":"assistant","content":"4","reasoning_content":"a","reasoning":"b"}),
                json!({"role":"assistant","content":"4","reasoning_content":"a"}),
            ),
            // Missing type defaults; object arguments are kept as JSON text; null id is "".
            (
                json!({"role":"assistant","tool_calls":[{"id":null,"function":{"name":"f","arguments":{"a":1}}}]}),
                json!({"role":"assistant","tool_calls":[{"id":"","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}),
            ),
            (
                json!({"role":"tool","tool_call_id":"c1","name":"f","content":"ok"}),
                json!({"role":"tool","tool_call_id":"c1","name":"f","content":"ok"}),
            ),
        ];
        for (input, want) in cases {
            let m: Message = match serde_json::from_value(input.clone()) {
                Ok(m) => m,
                Err(e) => panic!("{input}: {e}"),
            };
            assert_eq!(serde_json::to_value(&m).ok(), Some(want), "{input}");
        }
        assert!(serde_json::from_value::<Message>(json!({"role":"robot","content":"x"})).is_err());
    }

    #[test]
    fn constructors() {
        let cases = [
            (Message::system("s"), json!({"role":"system","content":"s"})),
            (Message::user("u"), json!({"role":"user","content":"u"})),
            (
                Message::assistant(String::from("a")),
                json!({"role":"assistant","content":"a"}),
            ),
            (
                Message::tool("call_1", "r"),
                json!({"role":"tool","content":"r","tool_call_id":"call_1"}),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(serde_json::to_value(&m).ok(), Some(want));
        }
    }

    #[test]
    fn chunk_borrows_unescaped_strings() {
        let data = r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"plain","reasoning_content":"a\"b"}}]}"#;
        let chunk: ChunkRef<'_> = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let delta = &chunk.choices[0].delta;
        assert!(matches!(delta.content, Some(Cow::Borrowed("plain"))));
        assert!(matches!(&delta.reasoning_content, Some(Cow::Owned(s)) if s == "a\"b"));
        assert!(matches!(chunk.id, Some(Cow::Borrowed("c1"))));
    }

    #[test]
    fn chunk_tolerates_nulls_and_unknown_fields() {
        let cases = [
            (r#"{}"#, ChunkRef::default()),
            (
                r#"{"id":null,"model":null,"created":null,"system_fingerprint":null,"choices":null,"usage":null,"error":null,"timings":{"predicted_n":3}}"#,
                ChunkRef::default(),
            ),
            (
                r#"{"choices":[{"index":null,"delta":null,"finish_reason":null,"logprobs":null}]}"#,
                ChunkRef {
                    choices: vec![ChoiceDelta::default()],
                    ..ChunkRef::default()
                },
            ),
            (
                r#"{"choices":[{"delta":{"role":null,"content":null,"reasoning_content":null,"reasoning":null,"refusal":null,"tool_calls":null}}]}"#,
                ChunkRef {
                    choices: vec![ChoiceDelta::default()],
                    ..ChunkRef::default()
                },
            ),
            (
                r#"{"choices":[{"index":1,"delta":{"tool_calls":[{"index":-1,"id":null,"type":null,"function":null}]}}]}"#,
                ChunkRef {
                    choices: vec![ChoiceDelta {
                        index: 1,
                        delta: DeltaRef {
                            tool_calls: Some(vec![ToolCallDeltaRef {
                                index: Some(-1),
                                ..ToolCallDeltaRef::default()
                            }]),
                            ..DeltaRef::default()
                        },
                        finish_reason: None,
                    }],
                    ..ChunkRef::default()
                },
            ),
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"id":7,"function":{"name":null,"arguments":null}}]}}]}"#,
                ChunkRef {
                    choices: vec![ChoiceDelta {
                        delta: DeltaRef {
                            tool_calls: Some(vec![ToolCallDeltaRef {
                                id: Some(Cow::Borrowed("7")),
                                function: Some(FunctionDeltaRef::default()),
                                ..ToolCallDeltaRef::default()
                            }]),
                            ..DeltaRef::default()
                        },
                        ..ChoiceDelta::default()
                    }],
                    ..ChunkRef::default()
                },
            ),
        ];
        for (data, want) in cases {
            match serde_json::from_str::<ChunkRef<'_>>(data) {
                Ok(got) => assert_eq!(got, want, "{data}"),
                Err(e) => panic!("{data}: {e}"),
            }
        }
        for bad in [
            r#"{"choices":[{"delta":{"content":[1]}}]}"#,
            r#"{"choices":{}}"#,
        ] {
            assert!(serde_json::from_str::<ChunkRef<'_>>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_keeps_details_and_reads_null_as_zero() {
        let u: Usage = match serde_json::from_value(json!({
            "prompt_tokens": 19, "completion_tokens": null, "total_tokens": 29,
            "completion_tokens_details": {"reasoning_tokens": 4}
        })) {
            Ok(u) => u,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (19, 0, 29)
        );
        assert_eq!(
            u.extra.get("completion_tokens_details"),
            Some(&json!({"reasoning_tokens": 4}))
        );
    }

    fn openai_response() -> Value {
        json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}
                    }],
                    "refusal": null,
                    "annotations": []
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": {
                "prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035"
        })
    }

    #[test]
    fn response_reads_openai_json_and_serializes_back() {
        let r: ChatResponse = match serde_json::from_value(openai_response()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.content(), "");
        assert_eq!(r.reasoning(), None);
        assert_eq!(r.finish_reason(), Some("tool_calls"));
        assert_eq!(r.tool_calls().len(), 1);
        assert_eq!(r.tool_calls()[0].function.name, "get_weather");
        let want = json!({
            "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            "object": "chat.completion",
            "created": 1741570283,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_fc9f1d7035",
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "tool_calls": [{
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}
                    }]
                },
                "finish_reason": "tool_calls"
            }],
            "usage": {
                "prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}
            }
        });
        assert_eq!(serde_json::to_value(&r).ok(), Some(want));
        let again: Option<ChatResponse> = serde_json::to_value(&r)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok());
        assert_eq!(again.as_ref(), Some(&r));
    }

    #[test]
    fn to_message_is_a_sendable_assistant_turn() {
        let with_tools: ChatResponse =
            serde_json::from_value(openai_response()).unwrap_or_default();
        let text_only = ChatResponse {
            choices: vec![Choice {
                index: 0,
                message: Message {
                    reasoning_content: Some("think".into()),
                    ..Message::assistant("hello")
                },
                finish_reason: Some("stop".into()),
            }],
            ..ChatResponse::default()
        };
        let cases = [
            (
                with_tools,
                json!({"role":"assistant","tool_calls":[{
                    "id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function",
                    "function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]}),
            ),
            (
                text_only,
                json!({"role":"assistant","content":"hello","reasoning_content":"think"}),
            ),
            (
                ChatResponse::default(),
                json!({"role":"assistant","content":""}),
            ),
        ];
        for (resp, want) in cases {
            let by_ref = resp.to_message();
            assert_eq!(serde_json::to_value(&by_ref).ok(), Some(want.clone()));
            assert_eq!(resp.into_message(), by_ref);
            // What we send back reads back as the same message.
            let back: Option<Message> = serde_json::from_value(want).ok();
            assert_eq!(back, Some(by_ref));
        }
    }

    #[test]
    fn api_error_from_every_body_shape() {
        let nginx = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
        let long = "x ".repeat(300);
        let e =
            |message: &str, kind: Option<&str>, param: Option<&str>, code: Option<&str>| ApiError {
                message: message.to_owned(),
                kind: kind.map(str::to_owned),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            };
        let cases: Vec<(Vec<u8>, ApiError, &str)> = vec![
            (
                br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.to_vec(),
                e("Incorrect API key provided", Some("invalid_request_error"), None, Some("invalid_api_key")),
                "Incorrect API key provided (type: invalid_request_error, code: invalid_api_key)",
            ),
            (
                // llama.cpp
                br#"{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}"#.to_vec(),
                e("the request exceeds the available context size", Some("exceed_context_size_error"), None, Some("400")),
                "the request exceeds the available context size (type: exceed_context_size_error, code: 400)",
            ),
            (
                // vLLM
                br#"{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","param":"model","code":404}"#.to_vec(),
                e("The model `x` does not exist.", Some("NotFoundError"), Some("model"), Some("404")),
                "The model `x` does not exist. (type: NotFoundError, code: 404)",
            ),
            (
                // Ollama native
                br#"{"error":"model \"llama9\" not found, try pulling it first"}"#.to_vec(),
                e("model \"llama9\" not found, try pulling it first", None, None, None),
                "model \"llama9\" not found, try pulling it first",
            ),
            (
                br#"{"message":"Too many requests"}"#.to_vec(),
                e("Too many requests", None, None, None),
                "Too many requests",
            ),
            (
                br#"{"detail":"Not Found"}"#.to_vec(),
                e("Not Found", None, None, None),
                "Not Found",
            ),
            (
                br#"{"detail":[{"loc":["body","messages"],"msg":"field required","type":"value_error.missing"},{"loc":["body","model"],"msg":"str type expected","type":"type_error.str"}]}"#.to_vec(),
                e("field required; str type expected", None, None, None),
                "field required; str type expected",
            ),
            (
                br#"{"detail":{"reason":"x"}}"#.to_vec(),
                e(r#"{"reason":"x"}"#, None, None, None),
                r#"{"reason":"x"}"#,
            ),
            (
                br#"{"status":503}"#.to_vec(),
                e(r#"{"status":503}"#, None, None, None),
                r#"{"status":503}"#,
            ),
            (
                br#""overloaded""#.to_vec(),
                e("overloaded", None, None, None),
                "overloaded",
            ),
            (
                nginx.as_bytes().to_vec(),
                e("502 Bad Gateway nginx/1.25.3", None, None, None),
                "502 Bad Gateway nginx/1.25.3",
            ),
            (
                b"<html><head><title>Service Unavailable</title><style>body{x:1}</style></head><body><script>var a=1<2;</script></body></html>".to_vec(),
                e("Service Unavailable", None, None, None),
                "Service Unavailable",
            ),
            (
                b"<!DOCTYPE html><html><body><p>Upstream &amp; proxy&nbsp;failed</p><p>unterminated <b".to_vec(),
                e("Upstream & proxy failed unterminated", None, None, None),
                "Upstream & proxy failed unterminated",
            ),
            (
                b"upstream connect error or disconnect/reset before headers.\n  reset reason: overflow".to_vec(),
                e("upstream connect error or disconnect/reset before headers. reset reason: overflow", None, None, None),
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ),
            (
                b"bad \xff\xfe bytes {".to_vec(),
                e("bad \u{fffd}\u{fffd} bytes {", None, None, None),
                "bad \u{fffd}\u{fffd} bytes {",
            ),
            (b"  \n ".to_vec(), e("empty error body", None, None, None), "empty error body"),
            (b"<br>".to_vec(), e("unreadable error body", None, None, None), "unreadable error body"),
            (
                br#"{"error":{"message":"cut"#.to_vec(),
                e(r#"{"error":{"message":"cut"#, None, None, None),
                r#"{"error":{"message":"cut"#,
            ),
        ];
        for (body, want, display) in cases {
            let got = ApiError::from_body(&body);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(&body));
            assert_eq!(got.to_string(), display);
        }
        let got = ApiError::from_body(long.as_bytes());
        assert_eq!(got.message.chars().count(), ApiError::MAX_SNIPPET_CHARS);
        assert!(got.message.ends_with("x x…"), "{}", got.message);
    }

    #[test]
    fn api_error_from_value() {
        let cases = [
            (
                json!({"message": "boom", "type": "server_error"}),
                "boom (type: server_error)",
            ),
            (
                json!({"error": {"message": "inner", "code": 500}}),
                "inner (code: 500)",
            ),
            (json!("plain"), "plain"),
            (json!(42), "42"),
            (json!({}), "{}"),
        ];
        for (v, want) in cases {
            assert_eq!(ApiError::from_value(&v).to_string(), want, "{v}");
        }
    }

    #[test]
    fn collapse_and_truncate_at_char_boundaries() {
        let cases = [
            ("  a \n\t b  ", 10, "a b"),
            ("héllo wörld", 11, "héllo wörld"),
            ("héllo wörld", 7, "héllo …"),
            ("abc", 0, "…"),
            ("", 5, ""),
        ];
        for (input, max, want) in cases {
            assert_eq!(collapse(input, max), want, "{input:?} {max}");
        }
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("é", 5), "é");
    }
}
