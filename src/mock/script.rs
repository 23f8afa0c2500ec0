//! What the mock answers, and the pure rendering of it as SSE events or a JSON completion.

use std::iter::once;

use serde_json::{Map, Value, json};

use super::continuation::Prefill;
use super::fault::{FaultRule, Plan};
use super::wire::Piece;

/// The reply text of [`Script::default`].
pub const DEFAULT_REPLY: &str = "Hello from the oai-sse mock server.";
/// The model [`Script::default`] lists and answers as when a request names none.
pub const DEFAULT_MODEL: &str = "mock-model";
/// Fixed so that rendered streams are byte-for-byte reproducible.
pub(super) const CREATED: u64 = 1_700_000_000;
const ID: &str = "chatcmpl-mock";
/// Tool-call arguments are streamed in pieces of about this many bytes.
const ARG_PIECE: usize = 8;

/// What the mock server replies to a chat request, and the faults it injects. A builder:
/// `Script::new().text("Hi").tool_call("get_weather", r#"{"city":"Paris"}"#).fault(Fault::Crlf)`.
///
/// The reply text is [`DEFAULT_REPLY`] unless set with [`Script::text`] — except that a script
/// with tool calls and no explicit text replies with no content at all.
#[derive(Debug, Clone)]
pub struct Script {
    /// `None`: the default reply, or nothing when there are tool calls.
    text: Option<String>,
    repeat: usize,
    reasoning: Option<String>,
    tool_calls: Vec<(String, String)>,
    finish_reason: Option<String>,
    model: String,
    pub(super) faults: Vec<FaultRule>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            text: None,
            repeat: 1,
            reasoning: None,
            tool_calls: Vec::new(),
            finish_reason: None,
            model: DEFAULT_MODEL.to_owned(),
            faults: Vec::new(),
        }
    }
}

impl Script {
    /// The default script: [`DEFAULT_REPLY`] from [`DEFAULT_MODEL`], no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reply text, streamed one word (with its leading space) per chunk. May be empty.
    /// Also sent beside tool calls when set.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Reply with the text `n` times, joined by spaces, without building it in memory when
    /// streaming: `Script::new().text("word").repeat(50_000)` streams 50,000 content chunks.
    pub fn repeat(mut self, n: usize) -> Self {
        self.repeat = n;
        self
    }

    /// Reasoning text, streamed word by word as `reasoning_content` before the reply.
    pub fn reasoning(mut self, text: impl Into<String>) -> Self {
        self.reasoning = Some(text.into());
        self
    }

    /// Adds a tool call; `arguments` is the complete JSON string, streamed in ~8-byte pieces.
    /// Without [`Script::text`] the reply then has no content.
    pub fn tool_call(mut self, name: impl Into<String>, arguments: impl Into<String>) -> Self {
        self.tool_calls.push((name.into(), arguments.into()));
        self
    }

    /// Overrides the finish reason (default `tool_calls` if there are tool calls, else `stop`).
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    /// The model `/v1/models` lists and replies name when the request has no `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Adds a fault: a [`Fault`](super::Fault) (hits every request of its schedule) or a
    /// [`FaultRule`].
    pub fn fault(mut self, fault: impl Into<FaultRule>) -> Self {
        self.faults.push(fault.into());
        self
    }

    /// The reasoning text, if set.
    pub(super) fn reasoning_text(&self) -> Option<&str> {
        self.reasoning.as_deref()
    }

    /// The tool calls: `(name, arguments)`.
    pub(super) fn tool_calls(&self) -> &[(String, String)] {
        &self.tool_calls
    }

    pub(super) fn model_name(&self) -> &str {
        &self.model
    }

    /// The reply text as set, or its default.
    fn content(&self) -> &str {
        match &self.text {
            Some(text) => text,
            None if self.tool_calls.is_empty() => DEFAULT_REPLY,
            None => "",
        }
    }

    /// The exact fault-free SSE events (`data: {json}\n\n`, ending with `data: [DONE]\n\n`) the
    /// server streams for this request body, lazily (as a server that continues no final
    /// assistant message, [`Continuation::Ignores`](super::Continuation::Ignores)).
    pub fn sse_events(&self, request: &Value) -> impl Iterator<Item = String> + '_ {
        let (body, tail) = self.stream_parts(request, None);
        body.chain(tail)
            .map(|chunk| sse_frame(&chunk.to_string(), false))
            .chain(once(sse_frame("[DONE]", false)))
    }

    /// The `chat.completion` object the server returns for a non-streaming request body (as
    /// [`Script::sse_events`], continuing no final assistant message).
    pub fn completion(&self, request: &Value) -> Value {
        self.completion_with(request, None)
    }

    /// The `chat.completion` object for a request, continuing a final assistant message when
    /// `prefill` says so.
    pub(super) fn completion_with(&self, request: &Value, prefill: Option<Prefill>) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        let content: String = self.reply_pieces(prefill).collect();
        let content = Some(content).filter(|c| !c.is_empty());
        message.insert("content".into(), content.into());
        if let Some(r) = self.reasoning.as_ref().filter(|_| prefill.is_none()) {
            message.insert("reasoning_content".into(), r.as_str().into());
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().enumerate().map(|(i, (name, args))| {
                json!({"id": call_id(i), "type": "function",
                       "function": {"name": name, "arguments": args}})
            });
            message.insert("tool_calls".into(), calls.collect());
        }
        json!({
            "id": ID, "object": "chat.completion", "created": CREATED,
            "model": self.model_for(request),
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": self.finish()}],
            "usage": self.usage(request, prefill),
        })
    }

    /// The stream as chunk objects: the body (role, reasoning, content and tool-call deltas),
    /// then the tail (the finish-reason chunk, and the usage chunk if the request asked for it).
    /// A prefilled reply has no reasoning and its content goes on after the prefix.
    pub(super) fn stream_parts<'a>(
        &'a self,
        request: &Value,
        prefill: Option<Prefill<'a>>,
    ) -> (impl Iterator<Item = Value> + 'a, Vec<Value>) {
        let model = self.model_for(request);
        let reasoning = self
            .reasoning
            .iter()
            .filter(move |_| prefill.is_none())
            .flat_map(|r| words(r));
        let content = self.reply_pieces(prefill);
        let tools = self
            .tool_calls
            .iter()
            .enumerate()
            .flat_map(|(i, (name, args))| {
                let first = json!({"tool_calls": [{"index": i, "id": call_id(i), "type": "function",
                                               "function": {"name": name, "arguments": ""}}]});
                let rest = pieces(args).map(
                    move |p| json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}),
                );
                once(first).chain(rest)
            });
        let m = model.clone();
        let body = once(json!({"role": "assistant", "content": ""}))
            .chain(reasoning.map(|w| json!({"reasoning_content": w})))
            .chain(content.map(|w| json!({"content": w})))
            .chain(tools)
            .map(move |delta| chunk(&m, delta, None));
        let mut tail = vec![chunk(&model, json!({}), Some(self.finish()))];
        if request.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
            tail.push(
                json!({"id": ID, "object": "chat.completion.chunk", "created": CREATED,
                             "model": model, "choices": [], "usage": self.usage(request, prefill)}),
            );
        }
        (body, tail)
    }

    /// The uncut reply text's content pieces: one word (with its leading whitespace) each,
    /// repeated [`Script::repeat`] times with a space between repetitions.
    pub(super) fn content_pieces(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.repeat).flat_map(move |i| {
            words(self.content())
                .enumerate()
                .map(move |(j, w)| match (i, j) {
                    (1.., 0) => format!(" {w}"),
                    _ => w.to_owned(),
                })
        })
    }

    /// Whether the uncut reply text starts with `prefix`; reads no further than its length.
    fn text_starts_with(&self, prefix: &str) -> bool {
        let mut rest = prefix.as_bytes();
        for piece in self.content_pieces() {
            if rest.is_empty() {
                break;
            }
            let n = piece.len().min(rest.len());
            let (head, tail) = rest.split_at(n);
            if piece.as_bytes().get(..n) != Some(head) {
                return false;
            }
            rest = tail;
        }
        rest.is_empty()
    }

    /// The content pieces a reply sends: without a prefill the uncut ones; with one, the
    /// echoed prefix if asked, then the uncut pieces from where the prefix ends (all of them
    /// when the text does not start with it).
    fn reply_pieces<'a>(
        &'a self,
        prefill: Option<Prefill<'a>>,
    ) -> impl Iterator<Item = String> + 'a {
        let echo = prefill
            .filter(|p| p.echo && !p.prefix.is_empty())
            .map(|p| p.prefix.to_owned());
        let skip = prefill
            .filter(|p| self.text_starts_with(p.prefix))
            .map_or(0, |p| p.prefix.len());
        let generated = self
            .content_pieces()
            .scan(0_usize, |offset, piece| {
                let start = *offset;
                *offset += piece.len();
                Some((start, piece))
            })
            .filter_map(move |(start, piece)| match skip.checked_sub(start) {
                None | Some(0) => Some(piece),
                // The prefix ends inside this piece, on a character boundary of the text.
                Some(cut) => piece
                    .get(cut..)
                    .filter(|rest| !rest.is_empty())
                    .map(str::to_owned),
            });
        echo.into_iter().chain(generated)
    }

    /// The tokens a reply generates, one per content, reasoning or tool-argument piece it
    /// sends (an echoed prefix was not generated): its `usage.completion_tokens`.
    pub(super) fn completion_tokens(&self, prefill: Option<Prefill>) -> u64 {
        let echoed = prefill.is_some_and(|p| p.echo && !p.prefix.is_empty());
        let content = self.reply_pieces(prefill).count() - usize::from(echoed);
        let reasoning = match (&self.reasoning, prefill) {
            (Some(r), None) => words(r).count(),
            _ => 0,
        };
        let arguments: usize = self.tool_calls.iter().map(|(_, a)| pieces(a).count()).sum();
        (content + reasoning + arguments) as u64
    }

    /// The streamed body under the plan's body faults (`crlf`, `ping`, `no-done`, `hold-open`),
    /// one HTTP chunk per event or ping: exactly [`Script::sse_events`] without them.
    pub(super) fn pieces<'a>(
        &'a self,
        request: &'a Value,
        plan: &Plan,
        prefill: Option<Prefill<'a>>,
    ) -> impl Iterator<Item = Piece> + 'a {
        let (body, tail) = self.stream_parts(request, prefill);
        let tail = if plan.no_done { Vec::new() } else { tail };
        let done = (!plan.no_done && plan.hold.is_none()).then(|| "[DONE]".to_owned());
        let (crlf, ping) = (plan.crlf, plan.ping);
        body.chain(tail)
            .map(|chunk| chunk.to_string())
            .chain(done)
            .enumerate()
            .flat_map(move |(i, data)| {
                let event = sse_frame(&data, crlf);
                // A ping, then the wait, then the event.
                let ping_text = if crlf { ": ping\r\n\r\n" } else { ": ping\n\n" };
                let every = ping.filter(|_| i > 0);
                let ping = every.map(|_| Piece::now(ping_text.to_owned()));
                let wait = every.unwrap_or_default();
                ping.into_iter().chain(once(Piece { wait, data: event }))
            })
    }

    /// A copy whose tool-call arguments lack their last streamed piece (invalid JSON).
    pub(super) fn with_truncated_tool_args(&self) -> Self {
        let mut s = self.clone();
        for (_, args) in &mut s.tool_calls {
            let keep = args.len() - pieces(args).last().map_or(0, str::len);
            args.truncate(keep);
        }
        s
    }

    pub(super) fn model_for(&self, request: &Value) -> String {
        let model = request.get("model").and_then(Value::as_str);
        model.unwrap_or(&self.model).to_owned()
    }

    pub(super) fn finish(&self) -> &str {
        match &self.finish_reason {
            Some(r) => r,
            None if self.tool_calls.is_empty() => "stop",
            None => "tool_calls",
        }
    }

    /// Token counts: the prompt's as rough word counts of every message (a prefill's prefix
    /// included), the completion's as the pieces generated.
    fn usage(&self, request: &Value, prefill: Option<Prefill>) -> Value {
        let messages = request.get("messages").and_then(Value::as_array);
        let prompt: u64 = messages
            .into_iter()
            .flatten()
            .map(|m| {
                let content = m.get("content").and_then(Value::as_str);
                content.map_or(0, |c| words(c).count() as u64)
            })
            .sum();
        let completion = self.completion_tokens(prefill);
        json!({"prompt_tokens": prompt, "completion_tokens": completion,
               "total_tokens": prompt.saturating_add(completion)})
    }
}

/// One SSE event carrying `data`, with LF or CRLF line endings.
pub(super) fn sse_frame(data: &str, crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    format!("data: {data}{nl}{nl}")
}

fn chunk(model: &str, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": model,
           "choices": [{"index": 0, "delta": delta, "logprobs": null,
                        "finish_reason": finish_reason}]})
}

pub(super) fn call_id(i: usize) -> String {
    format!("call_mock_{i}")
}

/// Splits text into words that keep their leading whitespace: "Hello world" → "Hello", " world".
pub(super) fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let start = rest.len() - rest.trim_start().len();
        let end = rest
            .get(start..)?
            .find(char::is_whitespace)
            .map_or(rest.len(), |i| start + i);
        let (word, tail) = rest.split_at_checked(end)?;
        rest = tail;
        Some(word).filter(|w| !w.is_empty())
    })
}

/// Splits text into pieces of about [`ARG_PIECE`] bytes, on character boundaries.
pub(super) fn pieces(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let end = (ARG_PIECE..=rest.len())
            .find(|&i| rest.is_char_boundary(i))
            .unwrap_or(rest.len());
        let (piece, tail) = rest.split_at_checked(end)?;
        rest = tail;
        Some(piece).filter(|p| !p.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_and_pieces() {
        let w: Vec<_> = words("Hello  big\nworld ").collect();
        assert_eq!(w, ["Hello", "  big", "\nworld", " "]);
        assert_eq!(words("").count(), 0);
        let p: Vec<_> = pieces(r#"{"city":"Zürich"}"#).collect();
        assert_eq!(p, [r#"{"city":"#, r#""Zürich"#, r#""}"#]);
        assert_eq!(p.concat(), r#"{"city":"Zürich"}"#);
    }
}
