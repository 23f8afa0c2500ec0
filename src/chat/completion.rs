//! A whole `chat.completion` body: what a server that ignored `stream: true` answers (a 200
//! `application/json`). Decoded straight into the response types as it is read: no copy of
//! the body, no `serde_json::Value` of it, unknown fields skipped unbuilt, error objects and
//! `usage` extras capped (see `capped`).

use serde::Deserialize;
use std::io::{self, BufReader, Read};

use super::accumulate::check_tool_arguments;
use super::message::{Content, Message};
use super::response::{ChatResponse, Choice, Timings, Usage};
use super::think::{Piece, ThinkSplitter};
use crate::wire::ApiError;
use crate::wire::StreamError;
use crate::wire::lenient::null_default;

/// The body's fields; `error` makes it an error body whatever else it has.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default, deserialize_with = "null_default")]
    id: String,
    #[serde(default, deserialize_with = "null_default")]
    created: u64,
    #[serde(default, deserialize_with = "null_default")]
    model: String,
    #[serde(default)]
    system_fingerprint: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    /// llama.cpp's own figures (and, in this crate's JSON, the attempts, not read back).
    #[serde(default)]
    timings: Option<Timings>,
}

impl Completion {
    fn into_response(self, split_think: bool) -> Result<ChatResponse, StreamError> {
        if let Some(err) = self.error {
            return Err(StreamError::Api(Box::new(err)));
        }
        let mut response = ChatResponse {
            id: self.id,
            created: self.created,
            model: self.model,
            system_fingerprint: self.system_fingerprint,
            choices: self.choices,
            usage: self.usage,
            timings: Timings {
                attempts: Vec::new(),
                server: self.timings.and_then(|t| t.server),
            },
            ..ChatResponse::default()
        };
        response.choices.sort_by_key(|c| c.index);
        for choice in &mut response.choices {
            if let Some(calls) = choice.message.tool_calls.as_mut() {
                check_tool_arguments(choice.index, choice.finish_reason.as_deref(), calls)?;
            }
            if split_think {
                split_reasoning(&mut choice.message);
            }
        }
        Ok(response)
    }
}

/// Reasoning that opens the content between `<think>` and `</think>` moves to
/// `reasoning_content` (as the stream accumulator does), unless the server filled that.
fn split_reasoning(message: &mut Message) {
    let Some(Content::Text(text)) = &message.content else {
        return;
    };
    if message.reasoning_content.is_some() || !text.trim_start().starts_with("<think>") {
        return;
    }
    let (mut content, mut reasoning) = (String::new(), String::new());
    let mut add = |piece: Piece<'_>| match piece {
        Piece::Reasoning(t) => reasoning.push_str(t),
        Piece::Content(t) => content.push_str(t),
    };
    let mut splitter = ThinkSplitter::new(true);
    splitter.push(text, &mut add);
    splitter.finish(&mut add);
    message.content = Some(Content::Text(content));
    message.reasoning_content = (!reasoning.is_empty()).then_some(reasoning);
}

/// Read a whole `chat.completion` body. Applies the same tool-argument check as
/// [`Accumulator::finish`](super::Accumulator::finish); an `{"error":..}` body is
/// [`StreamError::Api`].
///
/// # Errors
///
/// [`StreamError::Api`] for an error body, [`StreamError::MalformedChunk`] for one that is not a
/// completion, and the tool-argument errors.
pub fn response_from_completion_json(body: &[u8]) -> Result<ChatResponse, StreamError> {
    let snippet =
        || String::from_utf8_lossy(&body[..body.len().min(4 * StreamError::SNIPPET_CHARS)]);
    let completion: Completion =
        serde_json::from_slice(body).map_err(|e| StreamError::malformed(e, &snippet()))?;
    completion.into_response(false)
}

/// Why [`read_completion`] failed.
#[derive(Debug)]
pub(crate) enum ReadCompletionError {
    /// Reading the body failed.
    Io(io::Error),
    /// The body is not a usable completion (or it is an error body, or too large).
    Chat(StreamError),
}

/// Reads a `chat.completion` body from `body` as it arrives, at most `max_body` bytes of it
/// (a longer body is [`StreamError::ResponseTooLarge`] with `max_response`): memory holds the
/// response, not the body. `split_think` moves a leading `<think>` block to the reasoning.
pub(crate) fn read_completion(
    body: impl Read,
    max_body: u64,
    max_response: usize,
    split_think: bool,
) -> Result<ChatResponse, ReadCompletionError> {
    let mut reader = BufReader::with_capacity(16 << 10, body.take(max_body));
    let mut de = serde_json::Deserializer::from_reader(&mut reader);
    let parsed = Completion::deserialize(&mut de).and_then(|c| de.end().map(|()| c));
    match parsed {
        Ok(completion) => completion
            .into_response(split_think)
            .map_err(ReadCompletionError::Chat),
        Err(err) if err.is_io() => Err(ReadCompletionError::Io(err.into())),
        Err(_) if reader.get_ref().limit() == 0 => {
            Err(ReadCompletionError::Chat(StreamError::ResponseTooLarge {
                limit: max_response,
            }))
        }
        Err(err) => Err(ReadCompletionError::Chat(StreamError::malformed(
            err,
            "(a chat.completion body)",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(content: &str) -> String {
        format!(
            r#"{{"id":"c1","object":"chat.completion","created":5,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}}}"#,
            serde_json::to_string(content).unwrap_or_default()
        )
    }

    fn read(text: &str, max_body: u64, split: bool) -> Result<ChatResponse, String> {
        read_completion(text.as_bytes(), max_body, 1000, split).map_err(|e| match e {
            ReadCompletionError::Io(e) => format!("io: {e}"),
            ReadCompletionError::Chat(e) => e.to_string(),
        })
    }

    #[test]
    fn completion_bodies_read_from_a_reader() {
        let ok = read(&body("Hello"), 10_000, false).expect("a completion");
        assert_eq!(ok.content(), "Hello");
        assert_eq!(ok.usage.map(|u| u.total_tokens), Some(3));
        // The same body through the slice entry point.
        assert_eq!(
            response_from_completion_json(body("Hello").as_bytes()).map(|r| r.content().to_owned()),
            Ok("Hello".to_owned())
        );
        let cases = [
            (body("Hello"), 50, "response larger than 1000 bytes"),
            (
                r#"{"error":{"message":"model not loaded","type":"unavailable"}}"#.to_owned(),
                10_000,
                "api error: model not loaded (type: unavailable)",
            ),
            (
                r#""text""#.to_owned(),
                10_000,
                "malformed chunk: invalid type: string \"text\", expected struct Completion at line 1 column 6 (data: (a chat.completion body))",
            ),
            (
                format!("{} trailing", body("x")),
                10_000,
                "malformed chunk: trailing characters at line 1 column 223 (data: (a chat.completion body))",
            ),
        ];
        for (text, max, want) in cases {
            assert_eq!(
                read(&text, max, false).err().as_deref(),
                Some(want),
                "{text}"
            );
        }
    }

    #[test]
    fn think_blocks_in_a_completion_move_to_reasoning_when_asked() {
        let text = body("<think>\nplan</think>\n\nAnswer");
        let split = read(&text, 10_000, true).expect("a completion");
        assert_eq!(
            (split.content(), split.reasoning()),
            ("Answer", Some("plan"))
        );
        let kept = read(&text, 10_000, false).expect("a completion");
        assert_eq!(
            (kept.content(), kept.reasoning()),
            ("<think>\nplan</think>\n\nAnswer", None)
        );
    }

    #[test]
    fn unknown_fields_and_object_arguments_are_not_built() {
        let text = format!(
            r#"{{"junk":[{}0],"choices":[{{"index":0,"message":{{"role":"assistant","content":null,"tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":{{"b":[1,2],"a":"x"}}}}}}]}},"finish_reason":"tool_calls"}}]}}"#,
            "0,".repeat(100_000)
        );
        let response = read(&text, 1 << 20, false).expect("a completion");
        assert_eq!(
            response.tool_calls()[0].function.arguments,
            r#"{"b":[1,2],"a":"x"}"#
        );
    }
}
