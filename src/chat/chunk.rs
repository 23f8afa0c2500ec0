//! One streamed `chat.completion.chunk`, decoded without copying: strings borrow from the
//! SSE data where they contain no escapes.

use serde::Deserialize;
use std::borrow::Cow;

use super::response::{ServerTimings, Usage};
use crate::wire::ApiError;
use crate::wire::lenient::{null_default, opt_cow};

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
    /// Token counts, usually only in the last chunk (on every chunk for vLLM's
    /// `continuous_usage_stats`). Unknown fields are kept up to [`Usage::MAX_EXTRA_BYTES`].
    #[serde(default)]
    pub usage: Option<Usage>,
    /// An error object a server sent instead of a chunk (read within a few KiB whatever
    /// its size; `null` reads as none).
    #[serde(default)]
    pub error: Option<ApiError>,
    /// llama.cpp's own timings (prompt and generation), on some or all chunks.
    #[serde(default)]
    pub timings: Option<ServerTimings>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
                r#"{"id":null,"model":null,"created":null,"system_fingerprint":null,"choices":null,"usage":null,"error":null,"timings":{"predicted_n":3,"extra":1}}"#,
                ChunkRef {
                    timings: Some(ServerTimings {
                        predicted_n: 3,
                        ..ServerTimings::default()
                    }),
                    ..ChunkRef::default()
                },
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
}
