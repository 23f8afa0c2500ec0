//! The Responses API request (`POST /v1/responses`): the fields agent runners set, and every
//! other field kept as given.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::object::OutputItem;

/// A Responses API request. Build it with [`ResponsesRequest::new`] (text input) or
/// [`ResponsesRequest::with_items`], then the builder methods; fields this type does not name
/// go in [`extra`](Self::extra) and are sent as they are (`top_p`, `truncation`, `include`,
/// a server's own fields). `stream` is set by the client.
///
/// # Examples
///
/// ```
/// use oai_sse::ResponsesRequest;
/// use oai_sse::responses::ResponseTool;
/// use serde_json::json;
///
/// let request = ResponsesRequest::new("mock-model", "What is the weather in Paris?")
///     .instructions("Answer briefly.")
///     .tool(ResponseTool::function(
///         "get_weather",
///         "The current weather in a city",
///         json!({"type": "object", "properties": {"city": {"type": "string"}}}),
///     ))
///     .max_output_tokens(256);
/// let body = serde_json::to_value(&request)?;
/// assert_eq!(body["input"], "What is the weather in Paris?");
/// assert_eq!(body["tools"][0]["name"], "get_weather");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponsesRequest {
    /// The model.
    pub model: String,
    /// The input: a text, or items (messages, function calls and their outputs).
    pub input: Input,
    /// The system (developer) instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ResponseTool>,
    /// Which tool the model must (or must not) call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ResponseToolChoice>,
    /// Most tokens generated, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Reasoning settings (`{"effort": "low"}`, `{"summary": "auto"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Map<String, Value>>,
    /// The response this one continues (a server that stores responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Whether the server keeps the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Run in the background (the server keeps generating without a reader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    /// The caller's key-value labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Set by the client (`true` when streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Every other field, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResponsesRequest {
    /// A request with a text input.
    pub fn new(model: impl Into<String>, input: impl Into<String>) -> Self {
        Self::with_input(model, Input::Text(input.into()))
    }

    /// A request with input items (a conversation, function-call outputs).
    pub fn with_items(model: impl Into<String>, items: Vec<InputItem>) -> Self {
        Self::with_input(model, Input::Items(items))
    }

    fn with_input(model: impl Into<String>, input: Input) -> Self {
        Self {
            model: model.into(),
            input,
            instructions: None,
            tools: Vec::new(),
            tool_choice: None,
            max_output_tokens: None,
            temperature: None,
            reasoning: None,
            previous_response_id: None,
            store: None,
            background: None,
            metadata: None,
            stream: None,
            extra: Map::new(),
        }
    }

    /// Sets the instructions.
    #[must_use]
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Adds a tool.
    #[must_use]
    pub fn tool(mut self, tool: ResponseTool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Sets the tool choice.
    #[must_use]
    pub fn tool_choice(mut self, choice: ResponseToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets the output token limit.
    #[must_use]
    pub fn max_output_tokens(mut self, n: u32) -> Self {
        self.max_output_tokens = Some(n);
        self
    }

    /// Sets the temperature.
    #[must_use]
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets the reasoning effort (`"low"`, `"medium"`, `"high"`).
    #[must_use]
    pub fn reasoning_effort(mut self, effort: impl Into<String>) -> Self {
        self.reasoning
            .get_or_insert_with(Map::new)
            .insert("effort".into(), Value::String(effort.into()));
        self
    }

    /// Continues a stored response.
    #[must_use]
    pub fn previous_response_id(mut self, id: impl Into<String>) -> Self {
        self.previous_response_id = Some(id.into());
        self
    }

    /// Sets `store`.
    #[must_use]
    pub fn store(mut self, store: bool) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets `background`.
    #[must_use]
    pub fn background(mut self, background: bool) -> Self {
        self.background = Some(background);
        self
    }

    /// Adds a metadata label.
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata
            .get_or_insert_with(Map::new)
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// Sets any other field.
    #[must_use]
    pub fn extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

/// A request's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One user text.
    Text(String),
    /// Items, in order.
    Items(Vec<InputItem>),
}

/// One input item, as the JSON object the server reads: a message, a function call the
/// model made, a function call's output, or any other item type. The constructors build the
/// common ones; [`From<&OutputItem>`](#impl-From%3C%26OutputItem%3E-for-InputItem) turns a
/// response's output into the next request's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InputItem(pub Value);

impl InputItem {
    /// A message of `role` (`user`, `assistant`, `system`, `developer`) with a text.
    pub fn message(role: &str, text: impl Into<String>) -> Self {
        Self(json!({"type": "message", "role": role, "content": text.into()}))
    }

    /// A user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self::message("user", text)
    }

    /// The output of the function call `call_id`.
    pub fn function_call_output(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        Self(
            json!({"type": "function_call_output", "call_id": call_id.into(),
                    "output": output.into()}),
        )
    }
}

impl From<&OutputItem> for InputItem {
    fn from(item: &OutputItem) -> Self {
        Self(item.to_json())
    }
}

/// A tool the model may call: a function (`{"type":"function","name",...}`, flat, unlike chat's
/// nested shape) or a server tool (`web_search`, `mcp`, ...) with its fields in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseTool {
    /// `function`, or a server tool's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the function does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether the arguments must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// The other fields of the tool.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResponseTool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Self {
            kind: "function".into(),
            name: Some(name.into()),
            description: Some(description.into()),
            parameters: Some(parameters),
            strict: None,
            extra: Map::new(),
        }
    }

    /// A server tool of type `kind` (its settings go in [`extra`](Self::extra)).
    pub fn server(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: None,
            description: None,
            parameters: None,
            strict: None,
            extra: Map::new(),
        }
    }
}

/// `tool_choice`: `"auto"`, `"none"`, `"required"`, or one function
/// (`{"type":"function","name":..}`); any other shape is kept as given.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResponseToolChoice {
    /// The model decides.
    Auto,
    /// No tool.
    None,
    /// Some tool.
    Required,
    /// This function.
    Function(String),
    /// Another shape, sent as given.
    Other(Value),
}

impl Serialize for ResponseToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::None => s.serialize_str("none"),
            Self::Required => s.serialize_str("required"),
            Self::Function(name) => json!({"type": "function", "name": name}).serialize(s),
            Self::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ResponseToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v.as_str() {
            Some("auto") => Self::Auto,
            Some("none") => Self::None,
            Some("required") => Self::Required,
            _ => match (
                v.get("type").and_then(Value::as_str),
                v.get("name").and_then(Value::as_str),
            ) {
                (Some("function"), Some(name)) => Self::Function(name.to_owned()),
                _ => Self::Other(v),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_fields_agent_runners_set_and_keeps_unknown_ones() {
        let request = ResponsesRequest::with_items(
            "m",
            vec![
                InputItem::user("hi"),
                InputItem::function_call_output("call_1", "22C"),
            ],
        )
        .instructions("be brief")
        .tool(ResponseTool::function("f", "d", json!({"type": "object"})))
        .tool_choice(ResponseToolChoice::Function("f".into()))
        .max_output_tokens(9)
        .temperature(0.5)
        .reasoning_effort("low")
        .previous_response_id("resp_1")
        .store(false)
        .background(true)
        .metadata("k", "v")
        .extra("top_p", json!(0.9));
        let v = serde_json::to_value(&request).unwrap();
        assert_eq!(
            v,
            json!({"model": "m", "input": [
                {"type": "message", "role": "user", "content": "hi"},
                {"type": "function_call_output", "call_id": "call_1", "output": "22C"}],
                "instructions": "be brief",
                "tools": [{"type": "function", "name": "f", "description": "d",
                           "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "f"},
                "max_output_tokens": 9, "temperature": 0.5, "reasoning": {"effort": "low"},
                "previous_response_id": "resp_1", "store": false, "background": true,
                "metadata": {"k": "v"}, "top_p": 0.9})
        );
        let back: ResponsesRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn tool_choices_round_trip() {
        let cases = [
            (ResponseToolChoice::Auto, json!("auto")),
            (ResponseToolChoice::None, json!("none")),
            (ResponseToolChoice::Required, json!("required")),
            (
                ResponseToolChoice::Function("f".into()),
                json!({"type": "function", "name": "f"}),
            ),
            (
                ResponseToolChoice::Other(json!({"type": "web_search"})),
                json!({"type": "web_search"}),
            ),
        ];
        for (choice, wire) in cases {
            assert_eq!(serde_json::to_value(&choice).unwrap(), wire);
            assert_eq!(
                serde_json::from_value::<ResponseToolChoice>(wire).unwrap(),
                choice
            );
        }
        let text: ResponsesRequest =
            serde_json::from_value(json!({"model": "m", "input": "hello"})).unwrap();
        assert_eq!(text.input, Input::Text("hello".into()));
    }
}
