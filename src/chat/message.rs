//! Chat messages and tools: what a request carries and what a response turns into for the
//! next turn. Deserializing is lenient where servers differ.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

use crate::wire::lenient::{arguments_text, null_default};

/// Who wrote a message.
///
/// Read from server output, a role this version does not know is [`Role::Other`], not an
/// error (servers and new API versions add roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
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
    /// A role this version does not know, read from a server (sent back as `"other"`).
    #[serde(other)]
    Other,
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
            Self::Other => "other",
        }
    }
}

/// One chat message, in a request or in a response.
///
/// Deserializing accepts `reasoning` (vLLM) as well as `reasoning_content`, and drops an empty
/// `tool_calls` array (OpenAI rejects `[]` when the message is sent back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "MessageWire")]
#[non_exhaustive]
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

    /// An assistant turn that calls tools and says nothing: a few-shot example, or a saved
    /// conversation replayed. `content` is left out on the wire, as OpenAI's API expects
    /// next to `tool_calls` (with no calls at all it is `""`: a message needs one or the
    /// other).
    ///
    /// # Examples
    ///
    /// ```
    /// use oai_sse::{Message, ToolCall};
    ///
    /// let call = ToolCall::function("call_1", "get_weather", r#"{"city":"Oslo"}"#);
    /// let turn = Message::assistant_tool_calls([call]);
    /// assert_eq!(
    ///     serde_json::to_value(&turn)?,
    ///     serde_json::json!({
    ///         "role": "assistant",
    ///         "tool_calls": [{
    ///             "id": "call_1",
    ///             "type": "function",
    ///             "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}
    ///         }]
    ///     })
    /// );
    /// // The tool's answer, for the same call id.
    /// let result = Message::tool("call_1", "sunny, 12 °C");
    /// assert_eq!(
    ///     serde_json::to_value(&result)?,
    ///     serde_json::json!({"role": "tool", "content": "sunny, 12 °C", "tool_call_id": "call_1"})
    /// );
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn assistant_tool_calls(calls: impl IntoIterator<Item = ToolCall>) -> Self {
        let calls: Vec<ToolCall> = calls.into_iter().collect();
        Self {
            role: Role::Assistant,
            content: None,
            tool_calls: Some(calls),
            tool_call_id: None,
            name: None,
            reasoning_content: None,
            refusal: None,
        }
        .ensure_sendable()
    }

    /// A tool result answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<Content>) -> Self {
        let mut m = Self::with_role(Role::Tool, content);
        m.tool_call_id = Some(tool_call_id.into());
        m
    }

    /// An assistant message as a server accepts it: no empty `tool_calls` array (OpenAI
    /// rejects `[]`), and `content` (`""`) unless it has tool calls.
    pub(crate) fn ensure_sendable(mut self) -> Self {
        self.tool_calls = self.tool_calls.filter(|c| !c.is_empty());
        if self.content.is_none() && self.tool_calls.is_none() {
            self.content = Some(Content::Text(String::new()));
        }
        self
    }

    /// The text of the content (the first text part for multi-part content), or `""`.
    pub fn text(&self) -> &str {
        self.content.as_ref().map_or("", Content::text)
    }
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<ContentPart>),
}

/// By hand rather than `untagged`: an untagged enum first copies the whole value into a
/// buffer to try each variant on it, which for a response's text means holding it twice.
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Content::Parts)
            }
        }
        d.deserialize_any(V)
    }
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
#[non_exhaustive]
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

impl ToolCall {
    /// A call of the function `name` with `arguments`, a JSON text (`value.to_string()` for
    /// a [`serde_json::Value`]), under the id its result will answer
    /// ([`Message::tool`]).
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            kind: function_type(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }
}

/// The function half of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Tool {
    /// Always `"function"` today.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function's declaration.
    pub function: FunctionDef,
}

/// A function declaration offered as a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_role_this_version_does_not_know_is_read_as_other() {
        let read: Message =
            serde_json::from_str(r#"{"role":"model","content":"hi"}"#).expect("not an error");
        assert_eq!((read.role, read.text()), (Role::Other, "hi"));
        let known: Vec<Role> = ["system", "user", "assistant", "tool", "developer"]
            .iter()
            .map(|r| serde_json::from_value(serde_json::json!(r)).expect("a role"))
            .collect();
        assert!(!known.contains(&Role::Other));
    }

    use super::*;
    use serde_json::json;

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
        // A role this version does not know is a value, not an error.
        let robot: Message = serde_json::from_value(json!({"role":"robot","content":"x"}))
            .expect("an unknown role reads");
        assert_eq!(robot.role, Role::Other);
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
            (
                Message::assistant_tool_calls([
                    ToolCall::function("c1", "f", "{}"),
                    ToolCall::function("c2", "g", json!({"a": [1]}).to_string()),
                ]),
                json!({"role":"assistant","tool_calls":[
                    {"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},
                    {"id":"c2","type":"function","function":{"name":"g","arguments":"{\"a\":[1]}"}}
                ]}),
            ),
            // No calls: an empty assistant turn, not `"tool_calls":[]` without content.
            (
                Message::assistant_tool_calls([]),
                json!({"role":"assistant","content":""}),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(serde_json::to_value(&m).ok(), Some(want));
        }
    }
}
