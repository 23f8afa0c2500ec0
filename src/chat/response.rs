//! The aggregated response: what a stream adds up to (or what a server that ignored
//! `stream` returns), its token usage, and the assistant message for the next turn.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

use super::message::{Message, Role, ToolCall};
use crate::retry::RetryRecord;
use crate::wire::capped::{Capped, json_len};
use crate::wire::lenient::null_default;

/// Token counts. Missing or `null` counts read as 0; other fields (`completion_tokens_details`,
/// `prompt_tokens_details`, ...) are kept in `extra`, up to [`Usage::MAX_EXTRA_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
    /// Everything else the server reported, as far as it fits in
    /// [`Usage::MAX_EXTRA_BYTES`] (fields and elements that do not are dropped).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Usage {
    /// Most bytes, as compact JSON, of the fields kept in [`Usage::extra`] (4 KiB: real
    /// servers' token details take a few hundred). A server that sends more does not make
    /// the client hold it, on every chunk that carries usage.
    pub const MAX_EXTRA_BYTES: usize = 4 << 10;

    /// The size of [`Usage::extra`] as compact JSON, escapes not counted: what holding it
    /// is charged against the response budget.
    pub(crate) fn extra_len(&self) -> usize {
        self.extra
            .iter()
            .map(|(k, v)| k.len() + 4 + json_len(v))
            .sum()
    }
}

/// The fields of a usage object.
enum UsageField {
    Prompt,
    Completion,
    Total,
    /// Another field, if its name fits in what is left of the extras' room.
    Other(Option<String>),
}

struct UsageKey {
    room: usize,
}

impl<'de> DeserializeSeed<'de> for UsageKey {
    type Value = UsageField;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UsageField, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for UsageKey {
    type Value = UsageField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a usage field")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<UsageField, E> {
        Ok(match v {
            "prompt_tokens" => UsageField::Prompt,
            "completion_tokens" => UsageField::Completion,
            "total_tokens" => UsageField::Total,
            other => UsageField::Other((other.len() + 4 <= self.room).then(|| other.to_owned())),
        })
    }
}

impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UsageVisitor;

        impl<'de> Visitor<'de> for UsageVisitor {
            type Value = Usage;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a usage object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
                let mut usage = Usage::default();
                let mut room = Usage::MAX_EXTRA_BYTES;
                while let Some(field) = map.next_key_seed(UsageKey { room })? {
                    let count = match field {
                        UsageField::Prompt => &mut usage.prompt_tokens,
                        UsageField::Completion => &mut usage.completion_tokens,
                        UsageField::Total => &mut usage.total_tokens,
                        UsageField::Other(None) => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                        UsageField::Other(Some(name)) => {
                            let mut left = room - (name.len() + 4);
                            if let Some(v) = map.next_value_seed(Capped { room: &mut left })? {
                                room = left;
                                usage.extra.insert(name, v);
                            }
                            continue;
                        }
                    };
                    *count = map.next_value::<Option<u64>>()?.unwrap_or(0);
                }
                Ok(usage)
            }
        }

        d.deserialize_map(UsageVisitor)
    }
}

/// A complete `chat.completion`: what a stream aggregates to, or what a server that ignored
/// `stream` returns. Serializes to the OpenAI JSON shape (with `"object":"chat.completion"`,
/// keys in OpenAI's order), plus a `"retries"` array (empty when the first attempt
/// succeeded), `"stopped_by_caller": true` when so, and `"timings"`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[non_exhaustive]
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
    pub retries: Vec<RetryRecord>,
    /// The caller stopped the stream before it was complete: this holds what arrived until
    /// then (finish reasons may be missing, tool-call arguments cut).
    #[serde(default)]
    pub stopped_by_caller: bool,
    /// How long each attempt took to connect, to answer, to the first and the last token;
    /// and the server's own figures when it sends them.
    #[serde(default)]
    pub timings: Timings,
}

/// The timings of a call.
///
/// As JSON, llama.cpp's own `timings` object (its `prompt_n`, `prompt_ms`, `predicted_n`,
/// `predicted_ms`) with an `attempts` array beside them, so a llama.cpp completion's
/// `timings` reads as [`Timings::server`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Timings {
    /// One entry per attempt, in order.
    pub attempts: Vec<AttemptTimings>,
    /// What the server reported (llama.cpp's `timings` object), if it did.
    pub server: Option<ServerTimings>,
}

/// [`Timings`] on the wire: the server's fields flat, the attempts beside them.
#[derive(Serialize, Deserialize)]
struct TimingsWire {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attempts: Vec<AttemptTimings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt_n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    predicted_n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    predicted_ms: Option<f64>,
}

impl Serialize for Timings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let server = self.server.as_ref();
        TimingsWire {
            attempts: self.attempts.clone(),
            prompt_n: server.map(|t| t.prompt_n),
            prompt_ms: server.map(|t| t.prompt_ms),
            predicted_n: server.map(|t| t.predicted_n),
            predicted_ms: server.map(|t| t.predicted_ms),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Timings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = TimingsWire::deserialize(d)?;
        let any = wire.prompt_n.is_some()
            || wire.prompt_ms.is_some()
            || wire.predicted_n.is_some()
            || wire.predicted_ms.is_some();
        Ok(Self {
            attempts: wire.attempts,
            server: any.then(|| ServerTimings {
                prompt_n: wire.prompt_n.unwrap_or_default(),
                prompt_ms: wire.prompt_ms.unwrap_or_default(),
                predicted_n: wire.predicted_n.unwrap_or_default(),
                predicted_ms: wire.predicted_ms.unwrap_or_default(),
            }),
        })
    }
}

impl Timings {
    fn is_empty(&self) -> bool {
        self.attempts.is_empty() && self.server.is_none()
    }
}

/// One attempt, timed from its start. Durations serialize as milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AttemptTimings {
    /// The attempt (1-based).
    pub attempt: u32,
    /// Until the connection was up (TCP and TLS); `None` on a reused pooled connection.
    #[serde(with = "millis_opt", default)]
    pub connect: Option<Duration>,
    /// Until the response head arrived.
    #[serde(with = "millis_opt", default)]
    pub first_byte: Option<Duration>,
    /// Until the first content, reasoning or tool-call delta.
    #[serde(with = "millis_opt", default)]
    pub first_token: Option<Duration>,
    /// Until the last one.
    #[serde(with = "millis_opt", default)]
    pub last_token: Option<Duration>,
    /// Until the attempt ended.
    #[serde(with = "millis")]
    pub total: Duration,
    /// Bytes received (status line and headers included).
    pub bytes: u64,
}

/// The figures llama.cpp's server sends with its chunks (`timings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServerTimings {
    /// Prompt tokens evaluated (not taken from the cache).
    #[serde(default)]
    pub prompt_n: u64,
    /// Time spent on them, in milliseconds.
    #[serde(default)]
    pub prompt_ms: f64,
    /// Tokens generated.
    #[serde(default)]
    pub predicted_n: u64,
    /// Time spent generating them, in milliseconds.
    #[serde(default)]
    pub predicted_ms: f64,
}

impl ServerTimings {
    /// Generated tokens per second, by the server's clock.
    pub fn tokens_per_second(&self) -> Option<f64> {
        (self.predicted_ms > 0.0).then(|| self.predicted_n as f64 * 1000.0 / self.predicted_ms)
    }
}

/// A duration as fractional milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default())
    }
}

/// An optional duration as fractional milliseconds (`null` when absent).
mod millis_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64() * 1000.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let ms = Option::<f64>::deserialize(d)?;
        Ok(ms.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok()))
    }
}

/// One choice of a [`ChatResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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
            retries: &'r [RetryRecord],
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            stopped_by_caller: bool,
            #[serde(skip_serializing_if = "Timings::is_empty")]
            timings: &'r Timings,
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
            stopped_by_caller: self.stopped_by_caller,
            timings: &self.timings,
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
            tool_calls: m.and_then(|m| m.tool_calls.clone()),
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
            tool_calls,
            tool_call_id: None,
            name: None,
            reasoning_content,
            refusal: None,
        }
        .ensure_sendable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
            },
            "retries": []
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
}
