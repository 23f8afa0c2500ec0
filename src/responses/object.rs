//! The response a Responses stream adds up to: its output items in order, its status and
//! its token usage, with the call's retries and timings beside them.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::chat::AttemptTimings;
use crate::retry::RetryRecord;

/// Where a response ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// The model finished.
    #[default]
    Completed,
    /// The model stopped early: [`ResponseObject::incomplete_reason`] says why
    /// (`max_output_tokens`, `content_filter`).
    Incomplete,
    /// Not finished yet (a stopped call's partial response).
    InProgress,
    /// Another status the server reported.
    Other(String),
}

impl ResponseStatus {
    /// The status as the server spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Completed => "completed",
            Self::Incomplete => "incomplete",
            Self::InProgress => "in_progress",
            Self::Other(s) => s,
        }
    }

    pub(crate) fn from_wire(s: &str) -> Self {
        match s {
            "completed" => Self::Completed,
            "incomplete" => Self::Incomplete,
            "in_progress" | "queued" => Self::InProgress,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Token counts of a response (`input_tokens`, `output_tokens`, `total_tokens`); the details
/// objects are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// Tokens of the input.
    #[serde(default)]
    pub input_tokens: u64,
    /// Tokens generated (reasoning included).
    #[serde(default)]
    pub output_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// `input_tokens_details`, `output_tokens_details`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One output item of a response, in the order the server produced them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OutputItem {
    /// An assistant message: its `output_text` parts, joined.
    Message {
        /// The item id.
        id: String,
        /// The text.
        text: String,
    },
    /// The model's reasoning: its `reasoning_text` (or summary) text.
    Reasoning {
        /// The item id.
        id: String,
        /// The text.
        text: String,
    },
    /// A function call, with its complete arguments (valid JSON, `{}` when the model sent
    /// none).
    FunctionCall {
        /// The item id (may be empty: llama.cpp sends none).
        id: String,
        /// The id the function's output refers to
        /// ([`InputItem::function_call_output`](crate::responses::InputItem::function_call_output)).
        call_id: String,
        /// The function.
        name: String,
        /// The arguments, a JSON text.
        arguments: String,
    },
    /// Another item type (a web search call, an MCP call), as the server sent it.
    Other {
        /// Its `type`.
        kind: String,
        /// The whole item.
        item: Value,
    },
}

impl OutputItem {
    /// The item as the JSON the server sends (and takes back as input).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Message { id, text } => json!({"type": "message", "id": id,
                "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}),
            Self::Reasoning { id, text } => json!({"type": "reasoning", "id": id,
                "summary": [], "content": [{"type": "reasoning_text", "text": text}]}),
            Self::FunctionCall {
                id,
                call_id,
                name,
                arguments,
            } => {
                let mut item = json!({"type": "function_call", "call_id": call_id,
                    "name": name, "arguments": arguments, "status": "completed"});
                if !id.is_empty() {
                    item["id"] = Value::String(id.clone());
                }
                item
            }
            Self::Other { item, .. } => item.clone(),
        }
    }
}

impl Serialize for OutputItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// A complete response. Serializes to the OpenAI `response` object shape (`"object":
/// "response"`, `output` items as the server sends them), plus `"retries"`, `"timings"` and
/// `"stopped_by_caller": true` when so.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ResponseObject {
    /// The response id (`resp_...`).
    pub id: String,
    /// The model.
    pub model: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Where it ended.
    pub status: ResponseStatus,
    /// Why it is [`ResponseStatus::Incomplete`].
    pub incomplete_reason: Option<String>,
    /// The output items, in order.
    pub output: Vec<OutputItem>,
    /// Token counts, if the server sent them.
    pub usage: Option<ResponseUsage>,
    /// The retries this call took (empty when the first attempt succeeded).
    pub retries: Vec<RetryRecord>,
    /// One entry per attempt.
    pub timings: Vec<AttemptTimings>,
    /// The caller stopped the call before it completed.
    pub stopped_by_caller: bool,
}

impl ResponseObject {
    /// The text of every message item, joined.
    pub fn output_text(&self) -> String {
        self.output
            .iter()
            .filter_map(|item| match item {
                OutputItem::Message { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The reasoning text of every reasoning item, joined.
    pub fn reasoning_text(&self) -> String {
        self.output
            .iter()
            .filter_map(|item| match item {
                OutputItem::Reasoning { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The function calls: `(call_id, name, arguments)`.
    pub fn function_calls(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.output.iter().filter_map(|item| match item {
            OutputItem::FunctionCall {
                call_id,
                name,
                arguments,
                ..
            } => Some((call_id.as_str(), name.as_str(), arguments.as_str())),
            _ => None,
        })
    }
}

impl Serialize for ResponseObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("object", "response")?;
        map.serialize_entry("created_at", &self.created_at)?;
        map.serialize_entry("status", self.status.as_str())?;
        map.serialize_entry("model", &self.model)?;
        map.serialize_entry("output", &self.output)?;
        let incomplete = self
            .incomplete_reason
            .as_ref()
            .map(|reason| json!({"reason": reason}));
        map.serialize_entry("incomplete_details", &incomplete)?;
        map.serialize_entry("usage", &self.usage)?;
        map.serialize_entry("retries", &self.retries)?;
        map.serialize_entry("timings", &self.timings)?;
        if self.stopped_by_caller {
            map.serialize_entry("stopped_by_caller", &true)?;
        }
        map.end()
    }
}
