//! The stream accumulator: feeds on dispatched SSE events, hands each delta to the caller with
//! borrowed text, merges the deltas into a [`ChatResponse`] and says when the stream is over.
//!
//! Pure state machine: no I/O, no clock, bounded memory ([`ChatLimits`]).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::Value;

use super::StreamEvent;
use super::types::{
    ApiError, ChatResponse, Choice, ChoiceDelta, ChunkRef, Content, FunctionCall, Message, Role,
    ToolCall, ToolCallDeltaRef, Usage, truncate_chars,
};
use crate::FailureKind;

/// Memory bounds of one [`Accumulator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Most distinct choice indices in one response.
    pub max_choices: u32,
    /// Most tool calls in one choice.
    pub max_tool_calls: u32,
    /// Most bytes of aggregated text (content, reasoning, refusal, tool ids, names and
    /// arguments) over all choices.
    pub max_response_bytes: usize,
}

impl ChatLimits {
    /// Default for [`ChatLimits::max_choices`].
    pub const DEFAULT_MAX_CHOICES: u32 = 16;
    /// Default for [`ChatLimits::max_tool_calls`].
    pub const DEFAULT_MAX_TOOL_CALLS: u32 = 128;
    /// Default for [`ChatLimits::max_response_bytes`] (64 MiB).
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            max_choices: Self::DEFAULT_MAX_CHOICES,
            max_tool_calls: Self::DEFAULT_MAX_TOOL_CALLS,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// Whether the caller should keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More events are expected.
    Continue,
    /// The response is complete; stop reading and call [`Accumulator::finish`].
    Complete,
}

/// Why a chat response could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The server reported an error (`event: error`, an `error` object in the stream, or an
    /// error body). Usually not worth retrying unless the message says overloaded.
    #[error("api error: {0}")]
    Api(Box<ApiError>),
    /// A data line was not a chat chunk (or a body was not a chat completion). The server or a
    /// proxy is broken; retrying may help.
    #[error("malformed chunk: {reason} (data: {snippet})")]
    MalformedChunk {
        /// The JSON parser's message.
        reason: String,
        /// The first [`ChatError::SNIPPET_CHARS`] characters of the data.
        snippet: String,
    },
    /// The stream ended before `[DONE]` or before every choice finished. Retry; or, when
    /// `finish_seen` and only the trailer was lost, decide whether the EOF was clean.
    #[error("stream ended early after {received_events} events (finish seen: {finish_seen})")]
    IncompleteStream {
        /// Chunks (and `[DONE]`) decoded so far.
        received_events: u64,
        /// Every choice seen had reported a finish reason.
        finish_seen: bool,
    },
    /// A tool call's arguments are not valid JSON although the model did not stop for
    /// `length`: the stream was cut. Retry.
    #[error("tool call {index} ({name}) of choice {choice} has truncated arguments")]
    TruncatedToolCallArguments {
        /// Choice index.
        choice: u32,
        /// Tool-call slot.
        index: u32,
        /// Call id.
        id: String,
        /// Function name.
        name: String,
    },
    /// A tool call's arguments were cut by the token limit (`finish_reason: length`). Raise
    /// `max_tokens` before retrying.
    #[error("tool call {index} ({name}) of choice {choice} was cut by the token limit")]
    ToolCallArgumentsCutByLength {
        /// Choice index.
        choice: u32,
        /// Tool-call slot.
        index: u32,
        /// Function name.
        name: String,
    },
    /// The response has more choices than [`ChatLimits::max_choices`]. Lower `n` or raise the limit.
    #[error("more than {limit} choices")]
    TooManyChoices {
        /// The limit.
        limit: u32,
    },
    /// A choice has more tool calls than [`ChatLimits::max_tool_calls`]. Raise the limit or
    /// disable `parallel_tool_calls`.
    #[error("more than {limit} tool calls in one choice")]
    TooManyToolCalls {
        /// The limit.
        limit: u32,
    },
    /// The aggregated text exceeds [`ChatLimits::max_response_bytes`]. Lower `max_tokens` or raise
    /// the limit.
    #[error("response larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: usize,
    },
}

impl ChatError {
    /// Length of [`ChatError::MalformedChunk`]'s snippet, in characters.
    pub const SNIPPET_CHARS: usize = 120;

    /// The normalized failure class, for the retry policy.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Api(_) => FailureKind::ApiError,
            Self::MalformedChunk { .. } => FailureKind::MalformedChunk,
            Self::IncompleteStream { .. } => FailureKind::IncompleteStream,
            Self::TruncatedToolCallArguments { .. } => FailureKind::TruncatedToolCallArguments,
            Self::ToolCallArgumentsCutByLength { .. } => FailureKind::ToolCallArgumentsCutByLength,
            Self::TooManyChoices { .. }
            | Self::TooManyToolCalls { .. }
            | Self::ResponseTooLarge { .. } => FailureKind::LimitExceeded,
        }
    }

    fn malformed(reason: impl ToString, data: &str) -> Self {
        Self::MalformedChunk {
            reason: reason.to_string(),
            snippet: truncate_chars(data, Self::SNIPPET_CHARS),
        }
    }
}

/// Turns the events of one streamed chat completion into [`StreamEvent`]s and a
/// [`ChatResponse`].
///
/// Feed every dispatched SSE event to [`Accumulator::push_event`]; stop reading when it returns
/// [`Progress::Complete`] (some servers never send `[DONE]` and keep the connection open), then
/// call [`Accumulator::finish`].
#[derive(Debug, Clone)]
pub struct Accumulator {
    limits: ChatLimits,
    usage_requested: bool,
    id: String,
    model: String,
    created: Option<u64>,
    system_fingerprint: Option<String>,
    /// In order of first appearance; at most `limits.max_choices`.
    choices: Vec<ChoiceAcc>,
    usage: Option<Usage>,
    received_events: u64,
    budget: Budget,
    done: bool,
    has_output: bool,
    /// Choices the request asked for (`n`): a server may stream them one after another, so
    /// the stream is not complete before this many have finished.
    expected_choices: usize,
}

/// One choice being aggregated.
#[derive(Debug, Clone, Default)]
struct ChoiceAcc {
    index: u32,
    role: Option<String>,
    content: String,
    reasoning: String,
    refusal: String,
    tools: Vec<ToolSlot>,
    /// Server tool-call index → slot in `tools`.
    wire: Vec<(i64, usize)>,
    /// The slot the last tool-call fragment went to.
    last_slot: Option<usize>,
    finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct ToolSlot {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

/// Bytes aggregated so far against [`ChatLimits::max_response_bytes`].
#[derive(Debug, Clone, Copy)]
struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    fn append(&mut self, buf: &mut String, text: &str) -> Result<(), ChatError> {
        self.used = self
            .used
            .checked_add(text.len())
            .filter(|&n| n <= self.limit)
            .ok_or(ChatError::ResponseTooLarge { limit: self.limit })?;
        buf.push_str(text);
        Ok(())
    }
}

type Sink<'s> = dyn FnMut(&StreamEvent<'_>) + 's;

fn non_empty<'s>(s: &'s Option<Cow<'_, str>>) -> Option<&'s str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl Accumulator {
    /// An accumulator with default [`ChatLimits`]. Pass `usage_requested` = the request asked for
    /// `stream_options.include_usage`, so completion waits for the usage chunk.
    pub fn new(usage_requested: bool) -> Self {
        Self::with_limits(usage_requested, ChatLimits::default())
    }

    /// An accumulator with explicit limits.
    pub fn with_limits(usage_requested: bool, limits: ChatLimits) -> Self {
        Self {
            limits,
            usage_requested,
            id: String::new(),
            model: String::new(),
            created: None,
            system_fingerprint: None,
            choices: Vec::new(),
            usage: None,
            received_events: 0,
            budget: Budget {
                used: 0,
                limit: limits.max_response_bytes,
            },
            done: false,
            has_output: false,
            expected_choices: 1,
        }
    }

    /// Feed one dispatched SSE event (its type and data). Calls `on_event` for each delta, in
    /// order, with text borrowed from `data`.
    ///
    /// `[DONE]` completes the stream; empty data and event types other than `message` and
    /// `error` are ignored; `event: error` or a chunk with an `error` object is
    /// [`ChatError::Api`].
    pub fn push_event(
        &mut self,
        event_type: &str,
        data: &str,
        on_event: &mut dyn FnMut(&StreamEvent<'_>),
    ) -> Result<Progress, ChatError> {
        match event_type {
            "" | "message" => {}
            "error" => {
                return Err(ChatError::Api(Box::new(ApiError::from_body(
                    data.as_bytes(),
                ))));
            }
            other => {
                log::debug!("ignoring SSE event type {other:?}");
                return Ok(self.progress());
            }
        }
        let data = data.trim();
        if data.is_empty() {
            return Ok(self.progress());
        }
        if data == "[DONE]" {
            self.received_events += 1;
            self.done = true;
            return Ok(Progress::Complete);
        }
        if !data.starts_with('{') {
            return Err(ChatError::malformed("expected a JSON object", data));
        }
        let chunk: ChunkRef<'_> =
            serde_json::from_str(data).map_err(|e| ChatError::malformed(e, data))?;
        self.received_events += 1;
        if let Some(err) = chunk.error.as_ref().filter(|e| !e.is_null()) {
            return Err(ChatError::Api(Box::new(ApiError::from_value(err))));
        }
        self.apply(chunk, on_event)?;
        Ok(self.progress())
    }

    /// The stream is over: `[DONE]` arrived, or every choice finished and usage (if requested)
    /// arrived.
    pub fn is_complete(&self) -> bool {
        self.done || (self.all_finished() && (!self.usage_requested || self.usage.is_some()))
    }

    /// Expects `n` choices (the request's `n`, default 1): completion without `[DONE]` then
    /// waits until that many have finished, for servers that stream choices one by one.
    pub fn expect_choices(mut self, n: u32) -> Self {
        self.expected_choices = (n.max(1) as usize).min(self.limits.max_choices as usize);
        self
    }

    /// Whether any content, reasoning, refusal or tool-call delta has been delivered.
    pub fn has_output(&self) -> bool {
        self.has_output
    }

    /// End of stream: check completeness and tool-call arguments, and return the aggregated
    /// response (choices sorted by index).
    pub fn finish(mut self) -> Result<ChatResponse, ChatError> {
        if !self.is_complete() {
            return Err(ChatError::IncompleteStream {
                received_events: self.received_events,
                finish_seen: self.all_finished(),
            });
        }
        self.choices.sort_by_key(|c| c.index);
        let choices = self
            .choices
            .into_iter()
            .map(ChoiceAcc::into_choice)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChatResponse {
            id: self.id,
            created: self.created.unwrap_or(0),
            model: self.model,
            system_fingerprint: self.system_fingerprint,
            choices,
            usage: self.usage,
            retries: Vec::new(),
        })
    }

    fn all_finished(&self) -> bool {
        self.choices.len() >= self.expected_choices
            && self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    fn progress(&self) -> Progress {
        if self.is_complete() {
            Progress::Complete
        } else {
            Progress::Continue
        }
    }

    fn apply(&mut self, chunk: ChunkRef<'_>, on_event: &mut Sink<'_>) -> Result<(), ChatError> {
        fn first(slot: &mut String, v: &Option<Cow<'_, str>>) {
            if slot.is_empty()
                && let Some(v) = non_empty(v)
            {
                v.clone_into(slot);
            }
        }
        first(&mut self.id, &chunk.id);
        first(&mut self.model, &chunk.model);
        if self.system_fingerprint.is_none() {
            self.system_fingerprint = non_empty(&chunk.system_fingerprint).map(str::to_owned);
        }
        if self.created.is_none() {
            self.created = chunk.created;
        }
        for delta in &chunk.choices {
            let at = self.choice_slot(delta.index)?;
            let Some(acc) = self.choices.get_mut(at) else {
                continue;
            };
            acc.apply(
                delta,
                &self.limits,
                &mut self.budget,
                &mut self.has_output,
                on_event,
            )?;
        }
        if let Some(usage) = &chunk.usage {
            on_event(&StreamEvent::Usage(usage));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        Ok(())
    }

    fn choice_slot(&mut self, index: u32) -> Result<usize, ChatError> {
        if let Some(at) = self.choices.iter().position(|c| c.index == index) {
            return Ok(at);
        }
        if self.choices.len() >= self.limits.max_choices as usize {
            return Err(ChatError::TooManyChoices {
                limit: self.limits.max_choices,
            });
        }
        self.choices.push(ChoiceAcc {
            index,
            ..ChoiceAcc::default()
        });
        Ok(self.choices.len() - 1)
    }
}

impl ChoiceAcc {
    fn apply(
        &mut self,
        d: &ChoiceDelta<'_>,
        limits: &ChatLimits,
        budget: &mut Budget,
        has_output: &mut bool,
        on_event: &mut Sink<'_>,
    ) -> Result<(), ChatError> {
        let choice = self.index;
        let delta = &d.delta;
        if self.role.is_none()
            && let Some(role) = non_empty(&delta.role)
        {
            self.role = Some(role.to_owned());
            on_event(&StreamEvent::Role { choice, role });
        }
        // Servers use either field; some fill both with the same text.
        let rc = non_empty(&delta.reasoning_content);
        let r = non_empty(&delta.reasoning).filter(|r| Some(*r) != rc);
        for text in [rc, r].into_iter().flatten() {
            budget.append(&mut self.reasoning, text)?;
            *has_output = true;
            on_event(&StreamEvent::Reasoning { choice, text });
        }
        if let Some(text) = non_empty(&delta.content) {
            budget.append(&mut self.content, text)?;
            *has_output = true;
            on_event(&StreamEvent::Content { choice, text });
        }
        if let Some(text) = non_empty(&delta.refusal) {
            budget.append(&mut self.refusal, text)?;
            *has_output = true;
            on_event(&StreamEvent::Refusal { choice, text });
        }
        for call in delta.tool_calls.iter().flatten() {
            self.apply_tool(call, limits, budget, has_output, on_event)?;
        }
        if let Some(reason) = non_empty(&d.finish_reason)
            && self.finish_reason.as_deref() != Some(reason)
        {
            self.finish_reason = Some(reason.to_owned());
            on_event(&StreamEvent::Finish { choice, reason });
        }
        Ok(())
    }

    fn apply_tool(
        &mut self,
        call: &ToolCallDeltaRef<'_>,
        limits: &ChatLimits,
        budget: &mut Budget,
        has_output: &mut bool,
        on_event: &mut Sink<'_>,
    ) -> Result<(), ChatError> {
        let id = non_empty(&call.id);
        let name = call.function.as_ref().and_then(|f| non_empty(&f.name));
        let arguments = call
            .function
            .as_ref()
            .and_then(|f| f.arguments.as_deref())
            .unwrap_or("");
        let at = self.tool_slot(call.index.filter(|i| *i >= 0), id, limits.max_tool_calls)?;
        self.last_slot = Some(at);
        let Some(slot) = self.tools.get_mut(at) else {
            return Ok(());
        };
        for (field, value) in [
            (&mut slot.id, id),
            (&mut slot.kind, non_empty(&call.kind)),
            (&mut slot.name, name),
        ] {
            if field.is_empty()
                && let Some(v) = value
            {
                budget.append(field, v)?;
            }
        }
        budget.append(&mut slot.arguments, arguments)?;
        if id.is_some() || name.is_some() || !arguments.is_empty() {
            *has_output = true;
            on_event(&StreamEvent::ToolCall {
                choice: self.index,
                index: u32::try_from(at).unwrap_or(u32::MAX),
                id,
                name,
                arguments,
            });
        }
        Ok(())
    }

    /// The slot a fragment belongs to. Fragments with an index are grouped by it, slots
    /// numbered in order of first appearance (sparse indices compact). Fragments without one
    /// (or with -1) continue the last slot unless they carry a different id. An index reused
    /// with a different id (proxies that send index 0 for every call) opens a new slot.
    fn tool_slot(
        &mut self,
        wire: Option<i64>,
        id: Option<&str>,
        max: u32,
    ) -> Result<usize, ChatError> {
        let differs = |slot: &ToolSlot, id: Option<&str>| id.is_some_and(|id| slot.id != id);
        match wire {
            Some(w) => match self.wire.iter().position(|(k, _)| *k == w) {
                Some(pos) => {
                    let (_, at) = self.wire[pos];
                    let reused = self
                        .tools
                        .get(at)
                        .is_some_and(|s| !s.id.is_empty() && differs(s, id));
                    if !reused {
                        return Ok(at);
                    }
                    log::debug!("tool-call index {w} reused with a new id; opening a new slot");
                    let at = self.open_slot(max)?;
                    self.wire[pos].1 = at;
                    Ok(at)
                }
                None => {
                    let at = self.open_slot(max)?;
                    self.wire.push((w, at));
                    Ok(at)
                }
            },
            None => match self.last_slot {
                Some(at) if self.tools.get(at).is_some_and(|s| !differs(s, id)) => Ok(at),
                _ => self.open_slot(max),
            },
        }
    }

    fn open_slot(&mut self, max: u32) -> Result<usize, ChatError> {
        if self.tools.len() >= max as usize {
            return Err(ChatError::TooManyToolCalls { limit: max });
        }
        self.tools.push(ToolSlot::default());
        Ok(self.tools.len() - 1)
    }

    fn into_choice(self) -> Result<Choice, ChatError> {
        let mut calls: Vec<ToolCall> = self
            .tools
            .into_iter()
            .map(|s| ToolCall {
                id: s.id,
                kind: if s.kind.is_empty() {
                    "function".to_owned()
                } else {
                    s.kind
                },
                function: FunctionCall {
                    name: s.name,
                    arguments: s.arguments,
                },
            })
            .collect();
        check_tool_arguments(self.index, self.finish_reason.as_deref(), &mut calls)?;
        let has_calls = !calls.is_empty();
        // OpenAI: content is null when the model only called tools.
        let content = if !self.content.is_empty() || !has_calls {
            Some(Content::Text(self.content))
        } else {
            None
        };
        let some = |s: String| (!s.is_empty()).then_some(s);
        Ok(Choice {
            index: self.index,
            message: Message {
                role: self.role.as_deref().map_or(Role::Assistant, parse_role),
                content,
                tool_calls: has_calls.then_some(calls),
                tool_call_id: None,
                name: None,
                reasoning_content: some(self.reasoning),
                refusal: some(self.refusal),
            },
            finish_reason: self.finish_reason,
        })
    }
}

fn parse_role(role: &str) -> Role {
    match role {
        "system" => Role::System,
        "user" => Role::User,
        "tool" => Role::Tool,
        "developer" => Role::Developer,
        _ => Role::Assistant,
    }
}

/// Empty arguments become `{}`; invalid JSON is an error whose kind depends on whether the
/// choice stopped for `length`.
fn check_tool_arguments(
    choice: u32,
    finish_reason: Option<&str>,
    calls: &mut [ToolCall],
) -> Result<(), ChatError> {
    for (i, call) in calls.iter_mut().enumerate() {
        let args = &mut call.function.arguments;
        if args.trim().is_empty() {
            "{}".clone_into(args);
            continue;
        }
        if serde_json::from_str::<IgnoredAny>(args).is_ok() {
            continue;
        }
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        let name = call.function.name.clone();
        return Err(if finish_reason == Some("length") {
            ChatError::ToolCallArgumentsCutByLength {
                choice,
                index,
                name,
            }
        } else {
            ChatError::TruncatedToolCallArguments {
                choice,
                index,
                id: call.id.clone(),
                name,
            }
        });
    }
    Ok(())
}

/// Read a whole `chat.completion` body (a 200 `application/json` answer to a streamed request,
/// from a server that ignored `stream`). Applies the same tool-argument check as
/// [`Accumulator::finish`]; an `{"error":..}` body is [`ChatError::Api`].
pub fn response_from_completion_json(body: &[u8]) -> Result<ChatResponse, ChatError> {
    let lossy = || String::from_utf8_lossy(&body[..body.len().min(4 * ChatError::SNIPPET_CHARS)]);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ChatError::malformed(e, &lossy()))?;
    if let Some(err) = value.get("error").filter(|e| !e.is_null()) {
        return Err(ChatError::Api(Box::new(ApiError::from_value(err))));
    }
    let mut response: ChatResponse =
        serde_json::from_value(value).map_err(|e| ChatError::malformed(e, &lossy()))?;
    response.choices.sort_by_key(|c| c.index);
    for choice in &mut response.choices {
        if let Some(calls) = choice.message.tool_calls.as_mut() {
            check_tool_arguments(choice.index, choice.finish_reason.as_deref(), calls)?;
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequential_choices_complete_only_when_all_n_finished() {
        let chunk = |i: u32, delta: &str, finish: &str| {
            format!(r#"{{"choices":[{{"index":{i},"delta":{delta},"finish_reason":{finish}}}]}}"#)
        };
        let mut acc = super::Accumulator::new(false).expect_choices(2);
        let mut sink = |_: &super::StreamEvent<'_>| {};
        for (data, want) in [
            (
                chunk(0, r#"{"content":"a"}"#, "null"),
                super::Progress::Continue,
            ),
            (chunk(0, "{}", r#""stop""#), super::Progress::Continue),
            (
                chunk(1, r#"{"content":"b"}"#, "null"),
                super::Progress::Continue,
            ),
            (chunk(1, "{}", r#""stop""#), super::Progress::Complete),
        ] {
            assert_eq!(
                acc.push_event("message", &data, &mut sink),
                Ok(want),
                "{data}"
            );
        }
        let response = acc.finish().expect("complete");
        assert_eq!(response.choices.len(), 2);
        assert_eq!(response.choices[1].message.text(), "b");
    }

    use super::*;
    use crate::chat::OwnedStreamEvent as E;
    use serde_json::json;

    /// What feeding a list of `(event type, data)` produced.
    struct Run {
        events: Vec<E>,
        progress: Vec<Progress>,
        error: Option<ChatError>,
        acc: Accumulator,
    }

    fn run_with(usage: bool, limits: ChatLimits, input: &[(&str, &str)]) -> Run {
        let mut acc = Accumulator::with_limits(usage, limits);
        let mut events = Vec::new();
        let mut progress = Vec::new();
        let mut error = None;
        for (ty, data) in input {
            match acc.push_event(ty, data, &mut |e| events.push(e.to_owned_event())) {
                Ok(p) => progress.push(p),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Run {
            events,
            progress,
            error,
            acc,
        }
    }

    fn run(usage: bool, input: &[(&str, &str)]) -> Run {
        run_with(usage, ChatLimits::default(), input)
    }

    /// `message` events from data lines.
    fn msgs<'a>(lines: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        lines.iter().map(|d| ("message", *d)).collect()
    }

    fn finish_json(acc: Accumulator) -> Result<Value, ChatError> {
        acc.finish()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
    }

    fn role(choice: u32) -> E {
        E::Role {
            choice,
            role: "assistant".into(),
        }
    }
    fn text(choice: u32, t: &str) -> E {
        E::Content {
            choice,
            text: t.into(),
        }
    }
    fn think(choice: u32, t: &str) -> E {
        E::Reasoning {
            choice,
            text: t.into(),
        }
    }
    fn tool(choice: u32, index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> E {
        E::ToolCall {
            choice,
            index,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        }
    }
    fn fin(choice: u32, reason: &str) -> E {
        E::Finish {
            choice,
            reason: reason.into(),
        }
    }
    fn usage(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
            ..Usage::default()
        }
    }

    use Progress::{Complete as Done, Continue as More};

    const OPENAI_TEXT: [&str; 5] = [
        r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{"content":" \"world\""},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"chatcmpl-AyPbt","object":"chat.completion.chunk","created":1739000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_72ed7ab54c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    ];

    fn openai_text_response(usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": "chatcmpl-AyPbt",
            "object": "chat.completion",
            "created": 1739000000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_72ed7ab54c",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello \"world\""},
                "finish_reason": "stop"
            }]
        });
        if let (Some(u), Some(obj)) = (usage, v.as_object_mut()) {
            obj.insert("usage".into(), u);
        }
        v
    }

    #[test]
    fn openai_content_stream() {
        let text_events = vec![
            role(0),
            text(0, "Hello"),
            text(0, " \"world\""),
            fin(0, "stop"),
        ];
        let full_usage = json!({"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,
            "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}});
        // (usage requested, lines, progress after each, response usage)
        type Case<'a> = (bool, Vec<&'a str>, Vec<Progress>, Option<Value>);
        let cases: Vec<Case<'_>> = vec![
            // Without usage the finish chunk already completes: no need to wait for [DONE].
            (
                false,
                OPENAI_TEXT[..4].to_vec(),
                vec![More, More, More, Done],
                None,
            ),
            (
                false,
                [&OPENAI_TEXT[..4], &["[DONE]"]].concat(),
                vec![More, More, More, Done, Done],
                None,
            ),
            // With usage requested, completion waits for the usage chunk.
            (
                true,
                OPENAI_TEXT.to_vec(),
                vec![More, More, More, More, Done],
                Some(full_usage.clone()),
            ),
            (
                true,
                [&OPENAI_TEXT[..], &["[DONE]"]].concat(),
                vec![More, More, More, More, Done, Done],
                Some(full_usage),
            ),
        ];
        for (usage_requested, lines, progress, want_usage) in cases {
            let r = run(usage_requested, &msgs(&lines));
            assert_eq!(r.error, None);
            assert_eq!(r.progress, progress, "usage {usage_requested}");
            let mut want_events = text_events.clone();
            if usage_requested {
                want_events.push(E::Usage(Usage {
                    extra: want_usage
                        .as_ref()
                        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
                        .map(|u| u.extra)
                        .unwrap_or_default(),
                    ..usage(9, 3)
                }));
            }
            assert_eq!(r.events, want_events);
            assert!(r.acc.is_complete() && r.acc.has_output());
            assert_eq!(
                finish_json(r.acc),
                Ok(openai_text_response(want_usage)),
                "usage {usage_requested}"
            );
        }
    }

    #[test]
    fn llama_cpp_reasoning_with_timings_and_no_done() {
        let lines = [
            r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
            r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"reasoning_content":"The user"}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
            r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"reasoning_content":" wants 6*7."}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
            r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"42"}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk"}"#,
            r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1745000000,"id":"chatcmpl-Xb3","model":"Qwen3-8B-Q4_K_M.gguf","system_fingerprint":"b5415-6a2bc8bf","object":"chat.completion.chunk","usage":{"completion_tokens":9,"prompt_tokens":14,"total_tokens":23},"timings":{"prompt_n":14,"prompt_ms":21.5,"prompt_per_token_ms":1.5,"predicted_n":9,"predicted_ms":88.1,"predicted_per_second":102.1}}"#,
        ];
        for usage_requested in [false, true] {
            let r = run(usage_requested, &msgs(&lines));
            assert_eq!(r.error, None);
            assert_eq!(r.progress, vec![More, More, More, More, Done]);
            assert_eq!(
                r.events,
                vec![
                    role(0),
                    think(0, "The user"),
                    think(0, " wants 6*7."),
                    text(0, "42"),
                    fin(0, "stop"),
                    E::Usage(usage(14, 9)),
                ]
            );
            assert_eq!(
                finish_json(r.acc),
                Ok(json!({
                    "id": "chatcmpl-Xb3",
                    "object": "chat.completion",
                    "created": 1745000000,
                    "model": "Qwen3-8B-Q4_K_M.gguf",
                    "system_fingerprint": "b5415-6a2bc8bf",
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": "42",
                                    "reasoning_content": "The user wants 6*7."},
                        "finish_reason": "stop"
                    }],
                    "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}
                }))
            );
        }
    }

    #[test]
    fn reasoning_field_variants() {
        // (delta, reasoning events, aggregated reasoning)
        let cases: [(&str, Vec<E>, &str); 5] = [
            (r#"{"reasoning":"vllm"}"#, vec![think(0, "vllm")], "vllm"),
            (r#"{"reasoning_content":"ds"}"#, vec![think(0, "ds")], "ds"),
            // Both fields with the same text in one delta: counted once.
            (
                r#"{"reasoning_content":"same","reasoning":"same"}"#,
                vec![think(0, "same")],
                "same",
            ),
            (
                r#"{"reasoning_content":"a","reasoning":"b"}"#,
                vec![think(0, "a"), think(0, "b")],
                "ab",
            ),
            (r#"{"reasoning_content":"","reasoning":null}"#, vec![], ""),
        ];
        for (delta, want_events, want) in cases {
            let chunk = format!(r#"{{"choices":[{{"index":0,"delta":{delta}}}]}}"#);
            let done =
                r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#;
            let r = run(false, &msgs(&[&chunk, done]));
            let mut all = want_events;
            all.extend([text(0, "ok"), fin(0, "stop")]);
            assert_eq!(r.events, all, "{delta}");
            let resp = r.acc.finish();
            let got = resp.as_ref().ok().and_then(|r| r.reasoning());
            assert_eq!(got, (!want.is_empty()).then_some(want), "{delta}");
        }
    }

    const PARALLEL_TOOLS: [&str; 9] = [
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_sF9t","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Pa"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ris\"}"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_Qx2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\": "}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1739000001,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#,
        "[DONE]",
    ];

    #[test]
    fn parallel_tool_calls_split_across_chunks() {
        let r = run(false, &msgs(&PARALLEL_TOOLS));
        assert_eq!(r.error, None);
        assert_eq!(
            r.progress,
            vec![More, More, More, More, More, More, More, Done, Done]
        );
        assert_eq!(
            r.events,
            vec![
                role(0),
                tool(0, 0, Some("call_sF9t"), Some("get_weather"), ""),
                tool(0, 0, None, None, "{\"lo"),
                tool(0, 0, None, None, "cation\": \"Pa"),
                tool(0, 0, None, None, "ris\"}"),
                tool(0, 1, Some("call_Qx2"), Some("get_time"), ""),
                tool(0, 1, None, None, "{\"tz\": "),
                tool(0, 1, None, None, "\"CET\"}"),
                fin(0, "tool_calls"),
            ]
        );
        let resp = r.acc.finish();
        let message = resp.as_ref().map(ChatResponse::to_message);
        assert_eq!(
            message.map(|m| serde_json::to_value(m).unwrap_or_default()),
            Ok(json!({
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_sF9t", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                    {"id": "call_Qx2", "type": "function",
                     "function": {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}}
                ]
            }))
        );
        assert_eq!(resp.map(|r| r.content().to_owned()), Ok(String::new()));
    }

    /// Tool-call fragments of choice 0 in separate chunks, then finish `tool_calls` and `[DONE]`.
    fn tool_stream(fragments: &[&str]) -> Vec<String> {
        let mut lines: Vec<String> = fragments
            .iter()
            .map(|f| format!(r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{f}]}}}}]}}"#))
            .collect();
        lines.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#.into());
        lines.push("[DONE]".into());
        lines
    }

    fn calls_of(
        r: Result<ChatResponse, ChatError>,
    ) -> Result<Vec<(String, String, String)>, ChatError> {
        r.map(|r| {
            r.tool_calls()
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.function.name.clone(),
                        c.function.arguments.clone(),
                    )
                })
                .collect()
        })
    }

    #[test]
    fn tool_call_index_normalization() {
        type Calls = Vec<(&'static str, &'static str, &'static str)>;
        // (fragments, slot of each fragment's event, final calls)
        let cases: Vec<(Vec<&str>, Vec<u32>, Calls)> = vec![
            // No index: every call complete in one fragment with its own id (Gemini-style).
            (
                vec![
                    r#"{"id":"c1","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}}"#,
                    r#"{"id":"c2","type":"function","function":{"name":"b","arguments":"{}"}}"#,
                ],
                vec![0, 1],
                vec![("c1", "a", "{\"x\":1}"), ("c2", "b", "{}")],
            ),
            // Index -1: id only in the first fragment, later fragments continue it.
            (
                vec![
                    r#"{"index":-1,"id":"c1","function":{"name":"a","arguments":"{\"x\""}}"#,
                    r#"{"index":-1,"function":{"arguments":":1}"}}"#,
                    r#"{"index":-1,"id":"c2","function":{"name":"b","arguments":"{}"}}"#,
                ],
                vec![0, 0, 1],
                vec![("c1", "a", "{\"x\":1}"), ("c2", "b", "{}")],
            ),
            // No index, the same id repeated on every fragment.
            (
                vec![
                    r#"{"id":"c1","function":{"name":"a","arguments":"[1,"}}"#,
                    r#"{"id":"c1","function":{"arguments":"2]"}}"#,
                ],
                vec![0, 0],
                vec![("c1", "a", "[1,2]")],
            ),
            // Indexed first fragment, index-less continuation.
            (
                vec![
                    r#"{"index":0,"id":"c1","function":{"name":"a","arguments":""}}"#,
                    r#"{"function":{"arguments":"{}"}}"#,
                ],
                vec![0, 0],
                vec![("c1", "a", "{}")],
            ),
            // Sparse indices compact in order of first appearance.
            (
                vec![
                    r#"{"index":2,"id":"c1","function":{"name":"a","arguments":"{"}}"#,
                    r#"{"index":7,"id":"c2","function":{"name":"b","arguments":"["}}"#,
                    r#"{"index":2,"function":{"arguments":"}"}}"#,
                    r#"{"index":0,"id":"c3","function":{"name":"c","arguments":"1"}}"#,
                    r#"{"index":7,"function":{"arguments":"]"}}"#,
                ],
                vec![0, 1, 0, 2, 1],
                vec![("c1", "a", "{}"), ("c2", "b", "[]"), ("c3", "c", "1")],
            ),
            // Index 0 reused for a second call with a new id (some proxies).
            (
                vec![
                    r#"{"index":0,"id":"c1","function":{"name":"a","arguments":"{}"}}"#,
                    r#"{"index":0,"id":"c2","function":{"name":"b","arguments":"{"}}"#,
                    r#"{"index":0,"function":{"arguments":"}"}}"#,
                ],
                vec![0, 1, 1],
                vec![("c1", "a", "{}"), ("c2", "b", "{}")],
            ),
            // id, type and name: the first non-empty value wins.
            (
                vec![
                    r#"{"index":0,"id":"","type":"","function":{"name":"","arguments":""}}"#,
                    r#"{"index":0,"id":"c1","function":{"name":"a"}}"#,
                    r#"{"index":0,"id":"c1","type":"function","function":{"name":"a","arguments":"{}"}}"#,
                ],
                vec![0, 0],
                vec![("c1", "a", "{}")],
            ),
        ];
        for (fragments, slots, want) in cases {
            let lines = tool_stream(&fragments);
            let input: Vec<(&str, &str)> = lines.iter().map(|l| ("message", l.as_str())).collect();
            let r = run(false, &input);
            assert_eq!(r.error, None, "{fragments:?}");
            let got_slots: Vec<u32> = r
                .events
                .iter()
                .filter_map(|e| match e {
                    E::ToolCall { index, .. } => Some(*index),
                    _ => None,
                })
                .collect();
            assert_eq!(got_slots, slots, "{fragments:?}");
            let want: Vec<(String, String, String)> = want
                .into_iter()
                .map(|(a, b, c)| (a.into(), b.into(), c.into()))
                .collect();
            assert_eq!(calls_of(r.acc.finish()), Ok(want), "{fragments:?}");
        }
    }

    #[test]
    fn interleaved_choices() {
        let lines = [
            r#"{"id":"x","choices":[{"index":1,"delta":{"role":"assistant","content":"B"}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"A"}}]}"#,
            r#"{"id":"x","choices":[{"index":1,"delta":{"content":"b"},"finish_reason":"stop"},{"index":0,"delta":{"content":"a"}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"length"}]}"#,
        ];
        let r = run(false, &msgs(&lines));
        assert_eq!(r.error, None);
        assert_eq!(r.progress, vec![More, More, More, Done]);
        assert_eq!(
            r.events,
            vec![
                role(1),
                text(1, "B"),
                role(0),
                text(0, "A"),
                text(1, "b"),
                fin(1, "stop"),
                text(0, "a"),
                text(0, "!"),
                fin(0, "length"),
            ]
        );
        let got = r.acc.finish().map(|r| {
            r.choices
                .iter()
                .map(|c| {
                    (
                        c.index,
                        c.message.text().to_owned(),
                        c.finish_reason.clone(),
                    )
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(
            got,
            Ok(vec![
                (0, "Aa!".to_owned(), Some("length".to_owned())),
                (1, "Bb".to_owned(), Some("stop".to_owned())),
            ])
        );
    }

    #[test]
    fn server_errors() {
        let err = |message: &str, kind: Option<&str>, code: Option<&str>| {
            ChatError::Api(Box::new(ApiError {
                message: message.into(),
                kind: kind.map(Into::into),
                param: None,
                code: code.map(Into::into),
            }))
        };
        let ok_chunk = r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
        let cases = [
            (
                (
                    "message",
                    r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
                ),
                err(
                    "The server had an error while processing your request.",
                    Some("server_error"),
                    None,
                ),
            ),
            (
                (
                    "message",
                    r#"{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}"#,
                ),
                err(
                    "Context size has been exceeded.",
                    Some("server_error"),
                    Some("500"),
                ),
            ),
            (
                (
                    "message",
                    r#"{"id":"x","choices":[],"error":{"message":"Overloaded"}}"#,
                ),
                err("Overloaded", None, None),
            ),
            (
                (
                    "error",
                    r#"{"error":{"message":"model crashed","type":"internal"}}"#,
                ),
                err("model crashed", Some("internal"), None),
            ),
            (
                ("error", "upstream timeout"),
                err("upstream timeout", None, None),
            ),
        ];
        for ((ty, data), want) in cases {
            let r = run(false, &[("message", ok_chunk), (ty, data)]);
            assert_eq!(r.events, vec![text(0, "hi")]);
            assert_eq!(
                r.error.as_ref().map(ChatError::kind),
                Some(FailureKind::ApiError)
            );
            assert_eq!(r.error, Some(want), "{data}");
        }
    }

    #[test]
    fn malformed_chunks() {
        let cases = [
            (
                r#"{"choices":[{"delta":{"content":"abc"#,
                "EOF while parsing a string at line 1 column 36",
            ),
            (
                r#"{"choices":[{"index":"zero"}]}"#,
                "invalid type: string \"zero\", expected u32 at line 1 column 27",
            ),
            ("hello", "expected a JSON object"),
            ("[1,2]", "expected a JSON object"),
            (
                r#"{"a":1} trailing"#,
                "trailing characters at line 1 column 9",
            ),
        ];
        for (data, reason) in cases {
            let r = run(false, &[("message", data)]);
            assert_eq!(
                r.error,
                Some(ChatError::MalformedChunk {
                    reason: reason.into(),
                    snippet: data.into()
                }),
                "{data}"
            );
        }
        let long = format!("{{\"x\":\"{}", "é".repeat(300));
        let r = run(false, &[("message", &long)]);
        match r.error {
            Some(ChatError::MalformedChunk { snippet, .. }) => {
                assert_eq!(snippet.chars().count(), ChatError::SNIPPET_CHARS);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ignored_events_and_done_variants() {
        let content = r#"{"choices":[{"delta":{"content":"x"}}]}"#;
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<Progress>);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![("ping", "not json"), ("message", "")],
                vec![More, More],
            ),
            (vec![("message", "  \n")], vec![More]),
            (vec![("message", " [DONE] \n")], vec![Done]),
            (vec![("", "[DONE]")], vec![Done]),
            (
                vec![("message", content), ("message", "[DONE]")],
                vec![More, Done],
            ),
            // A stream without choices only completes on [DONE].
            (
                vec![("message", r#"{"choices":[],"usage":{"prompt_tokens":1}}"#)],
                vec![More],
            ),
        ];
        for (input, progress) in cases {
            let r = run(false, &input);
            assert_eq!(r.error, None, "{input:?}");
            assert_eq!(r.progress, progress, "{input:?}");
        }
        // After [DONE] the response may have no choices at all.
        let r = run(false, &[("message", "[DONE]")]);
        assert_eq!(r.acc.finish().map(|r| r.choices.len()), Ok(0));
    }

    #[test]
    fn incomplete_streams() {
        let role_only = r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
        let content = r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#;
        let finished = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        let second = r#"{"choices":[{"index":1,"delta":{"content":"y"}}]}"#;
        // (usage requested, lines, has_output, received_events, finish_seen)
        let cases: Vec<(bool, Vec<&str>, bool, u64, bool)> = vec![
            (false, vec![], false, 0, false),
            (false, vec![role_only], false, 1, false),
            (false, vec![role_only, content], true, 2, false),
            (false, vec![content, finished, second], true, 3, false),
            // Finished, but the requested usage chunk never came.
            (true, vec![content, finished], true, 2, true),
        ];
        for (usage_requested, lines, has_output, received_events, finish_seen) in cases {
            let r = run(usage_requested, &msgs(&lines));
            assert_eq!(r.error, None);
            assert!(!r.acc.is_complete());
            assert_eq!(r.acc.has_output(), has_output, "{lines:?}");
            let err = r.acc.finish().err();
            assert_eq!(
                err.as_ref().map(ChatError::kind),
                Some(FailureKind::IncompleteStream)
            );
            assert_eq!(
                err,
                Some(ChatError::IncompleteStream {
                    received_events,
                    finish_seen
                }),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn tool_argument_checks() {
        let frag = |args: &str| {
            format!(
                r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","function":{{"name":"search","arguments":{}}}}}]}}}}]}}"#,
                serde_json::to_string(args).unwrap_or_default()
            )
        };
        let end = |reason: &str| {
            format!(r#"{{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#)
        };
        let ok = |args: &str| {
            Ok(vec![(
                "call_1".to_owned(),
                "search".to_owned(),
                args.to_owned(),
            )])
        };
        let cases = [
            ("{\"q\":\"rust\"}", "tool_calls", ok("{\"q\":\"rust\"}")),
            ("", "tool_calls", ok("{}")),
            ("  \n", "stop", ok("{}")),
            (
                "{\"q\":\"ru",
                "tool_calls",
                Err(ChatError::TruncatedToolCallArguments {
                    choice: 0,
                    index: 0,
                    id: "call_1".into(),
                    name: "search".into(),
                }),
            ),
            (
                "{\"q\":\"ru",
                "length",
                Err(ChatError::ToolCallArgumentsCutByLength {
                    choice: 0,
                    index: 0,
                    name: "search".into(),
                }),
            ),
            (
                "{\"q\":1}}",
                "stop",
                Err(ChatError::TruncatedToolCallArguments {
                    choice: 0,
                    index: 0,
                    id: "call_1".into(),
                    name: "search".into(),
                }),
            ),
        ];
        for (args, reason, want) in cases {
            let (a, b) = (frag(args), end(reason));
            let r = run(false, &msgs(&[&a, &b, "[DONE]"]));
            assert_eq!(r.error, None);
            assert_eq!(calls_of(r.acc.finish()), want, "{args:?} {reason}");
        }
    }

    #[test]
    fn limits() {
        let limits = ChatLimits {
            max_choices: 2,
            max_tool_calls: 2,
            max_response_bytes: 10,
        };
        let three_choices =
            r#"{"choices":[{"index":0,"delta":{}},{"index":1,"delta":{}},{"index":2,"delta":{}}]}"#;
        let three_calls = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a"},{"index":1,"id":"b"},{"index":2,"id":"c"}]}}]}"#;
        let three_unindexed =
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a"},{"id":"b"},{"id":"c"}]}}]}"#;
        let ten = r#"{"choices":[{"delta":{"content":"12345","reasoning":"67890"}}]}"#;
        let one_more = r#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#;
        let cases: Vec<(Vec<&str>, Option<ChatError>)> = vec![
            (
                vec![three_choices],
                Some(ChatError::TooManyChoices { limit: 2 }),
            ),
            (
                vec![three_calls],
                Some(ChatError::TooManyToolCalls { limit: 2 }),
            ),
            (
                vec![three_unindexed],
                Some(ChatError::TooManyToolCalls { limit: 2 }),
            ),
            (vec![ten], None),
            (
                vec![ten, one_more],
                Some(ChatError::ResponseTooLarge { limit: 10 }),
            ),
        ];
        for (lines, want) in cases {
            let r = run_with(false, limits, &msgs(&lines));
            assert_eq!(r.error, want, "{lines:?}");
            if let Some(e) = &r.error {
                assert_eq!(e.kind(), FailureKind::LimitExceeded);
            }
        }
        assert_eq!(ChatLimits::default().max_response_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn nulls_everywhere_and_repeated_fields() {
        let lines = [
            r#"{"id":null,"object":"chat.completion.chunk","created":null,"model":null,"system_fingerprint":null,"choices":null,"usage":null}"#,
            r#"{"id":"","model":"","choices":[{"index":null,"delta":null,"finish_reason":null,"logprobs":null}]}"#,
            r#"{"id":"a","model":"m1","created":5,"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":null,"reasoning":null,"refusal":null,"tool_calls":null},"finish_reason":""}]}"#,
            r#"{"id":"b","model":"m2","created":6,"system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"x","refusal":"no"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":"stop"}],"usage":{"prompt_tokens":null}}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#,
        ];
        let r = run(false, &msgs(&lines));
        assert_eq!(r.error, None);
        assert_eq!(
            r.events,
            vec![
                role(0),
                text(0, "x"),
                E::Refusal {
                    choice: 0,
                    text: "no".into()
                },
                fin(0, "stop"),
                E::Usage(usage(0, 0)),
                E::Usage(usage(2, 1)),
            ]
        );
        assert_eq!(
            finish_json(r.acc),
            Ok(json!({
                "id": "a", "object": "chat.completion", "created": 5, "model": "m1",
                "system_fingerprint": "fp",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "x", "refusal": "no"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
            }))
        );
    }

    #[test]
    fn completion_json_bodies() {
        let body = |msg: Value, finish: &str| {
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
            })
            .to_string()
        };
        let call = |args: &str| {
            json!({"role":"assistant","content":null,"tool_calls":[
                {"id":"c1","type":"function","function":{"name":"f","arguments":args}}]})
        };
        let text_body = body(
            json!({"role":"assistant","content":"hi","reasoning_content":"r"}),
            "stop",
        );
        let cases: Vec<(String, Result<Value, ChatError>)> = vec![
            (
                text_body.clone(),
                Ok(serde_json::from_str::<Value>(&text_body).unwrap_or_default()),
            ),
            (
                body(call(""), "tool_calls"),
                Ok(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
                    "choices": [{"index": 0, "message": {"role":"assistant","tool_calls":[
                        {"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                        "finish_reason": "tool_calls"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
                })),
            ),
            (
                body(call("{\"a\":"), "length"),
                Err(ChatError::ToolCallArgumentsCutByLength {
                    choice: 0,
                    index: 0,
                    name: "f".into(),
                }),
            ),
            (
                r#"{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}"#.into(),
                Err(ChatError::Api(Box::new(ApiError {
                    message: "bad model".into(),
                    kind: Some("invalid_request_error".into()),
                    param: None,
                    code: Some("model_not_found".into()),
                }))),
            ),
            (
                "<html>oops</html>".into(),
                Err(ChatError::MalformedChunk {
                    reason: "expected value at line 1 column 1".into(),
                    snippet: "<html>oops</html>".into(),
                }),
            ),
            (
                r#"{"choices":[{"index":0}]}"#.into(),
                Err(ChatError::MalformedChunk {
                    reason: "missing field `message`".into(),
                    snippet: r#"{"choices":[{"index":0}]}"#.into(),
                }),
            ),
        ];
        for (input, want) in cases {
            let got = response_from_completion_json(input.as_bytes())
                .map(|r| serde_json::to_value(r).unwrap_or_default());
            assert_eq!(got, want, "{input}");
        }
        assert!(response_from_completion_json(b"\xff\xfe").is_err());
    }

    #[test]
    fn error_kinds() {
        let cases = [
            (ChatError::Api(Box::default()), FailureKind::ApiError),
            (
                ChatError::MalformedChunk {
                    reason: String::new(),
                    snippet: String::new(),
                },
                FailureKind::MalformedChunk,
            ),
            (
                ChatError::IncompleteStream {
                    received_events: 0,
                    finish_seen: false,
                },
                FailureKind::IncompleteStream,
            ),
            (
                ChatError::TruncatedToolCallArguments {
                    choice: 0,
                    index: 0,
                    id: String::new(),
                    name: String::new(),
                },
                FailureKind::TruncatedToolCallArguments,
            ),
            (
                ChatError::ToolCallArgumentsCutByLength {
                    choice: 0,
                    index: 1,
                    name: "f".into(),
                },
                FailureKind::ToolCallArgumentsCutByLength,
            ),
            (
                ChatError::TooManyChoices { limit: 1 },
                FailureKind::LimitExceeded,
            ),
            (
                ChatError::TooManyToolCalls { limit: 1 },
                FailureKind::LimitExceeded,
            ),
            (
                ChatError::ResponseTooLarge { limit: 1 },
                FailureKind::LimitExceeded,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
        }
        assert_eq!(
            ChatError::ToolCallArgumentsCutByLength {
                choice: 0,
                index: 1,
                name: "f".into()
            }
            .to_string(),
            "tool call 1 (f) of choice 0 was cut by the token limit"
        );
    }

    #[test]
    fn any_prefix_of_real_data_is_handled_without_panic() {
        let samples = PARALLEL_TOOLS
            .iter()
            .chain(OPENAI_TEXT.iter())
            .copied()
            .chain([r#"{"choices":[{"delta":{"content":"h\u00e9 \ud83d\ude00 é"}}]}"#]);
        for line in samples {
            for (cut, _) in line.char_indices() {
                let prefix = &line[..cut];
                for ty in ["message", "error"] {
                    let mut acc = Accumulator::new(true);
                    let _ = acc.push_event(ty, prefix, &mut |_| {});
                    let _ = acc.finish();
                }
                let _ = ApiError::from_body(prefix.as_bytes());
                let _ = response_from_completion_json(prefix.as_bytes());
            }
        }
        for bytes in [
            &b"\xff{\"error\":1}"[..],
            b"<\xff>",
            b"\xc3",
            b"{\"detail\":[{}]}",
        ] {
            let _ = ApiError::from_body(bytes);
            let _ = response_from_completion_json(bytes);
        }
    }

    #[test]
    fn content_is_borrowed_on_the_hot_path() {
        // The callback sees a slice of the data itself when the text has no escapes.
        let data = r#"{"choices":[{"index":0,"delta":{"content":"zero-copy"}}]}"#;
        let range = data.as_bytes().as_ptr_range();
        let mut inside = None;
        let mut acc = Accumulator::new(false);
        let res = acc.push_event("message", data, &mut |e| {
            if let StreamEvent::Content { text, .. } = e {
                inside = Some(range.contains(&text.as_ptr()));
            }
        });
        assert_eq!(res, Ok(More));
        assert_eq!(inside, Some(true));
    }
}
