//! The stream accumulator: feeds on dispatched SSE events, merges the deltas into a
//! [`ChatResponse`], says when the stream is over, and hands out each delta as a
//! [`StreamEvent`].
//!
//! The events point into the accumulator's own buffers: a content delta is the tail of the
//! choice's aggregated content, a tool-call fragment the tail of that call's arguments. So an
//! event costs no copy beyond the one aggregation makes anyway, and it outlives the chunk it
//! was decoded from (a pull-style caller reads it after the socket buffer moved on). Each push
//! queues the events of one SSE event; [`Accumulator::next_event`] hands them out in order.
//!
//! Pure state machine: no I/O, no clock, bounded memory ([`ChatLimits`]).

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::de::IgnoredAny;

use super::chunk::{ChoiceDelta, ChunkRef, ToolCallDeltaRef};
use super::event::StreamEvent;
use super::message::{Content, FunctionCall, Message, Role, ToolCall};
use super::response::{ChatResponse, Choice, ServerTimings, Timings, Usage};
use super::think::{Piece, ThinkSplitter};
use crate::wire::{ApiError, StreamError, truncate_chars};

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

/// Whether a streamed response is complete: what [`Accumulator::push_event`] says after
/// each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Completion {
    /// More events are expected.
    Pending,
    /// The response is complete; stop reading and call [`Accumulator::finish`].
    Complete,
}

pub(crate) use recover::{Against, Shown};

/// Turns the events of one streamed chat completion into [`StreamEvent`]s and a
/// [`ChatResponse`].
///
/// Feed every dispatched SSE event to [`Accumulator::push_event`]; stop reading when it returns
/// [`Completion::Complete`] (some servers never send `[DONE]` and keep the connection open), then
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
    /// Whether content that opens with `<think>` is split into reasoning.
    split_think: bool,
    /// The events of the last push not handed out yet (cleared by the next push).
    pending: VecDeque<Pending>,
    /// The server's own timings, the last ones it sent.
    server_timings: Option<ServerTimings>,
    /// Text shown before a restart, not handed out again.
    hidden: Vec<recover::Hidden>,
    /// Usage was shown before a restart: the restarted answer's is not handed out again.
    usage_hidden: bool,
    /// Chunks that carried output: about the tokens generated (a server streams one token per
    /// chunk, or a few).
    output_chunks: u64,
}

/// An event waiting in the queue: which buffer it points into and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Role {
        at: usize,
    },
    Text {
        at: usize,
        field: TextField,
        start: usize,
        end: usize,
    },
    ToolCall {
        at: usize,
        slot: usize,
        start: usize,
        end: usize,
        id: bool,
        name: bool,
    },
    Finish {
        at: usize,
    },
    Usage,
}

/// Which text buffer of a choice a [`Pending::Text`] points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextField {
    Content,
    Reasoning,
    Refusal,
}

/// One choice being aggregated.
#[derive(Debug, Clone)]
struct ChoiceAcc {
    index: u32,
    /// Splits a `<think>` block that opens the content into reasoning.
    think: ThinkSplitter,
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
    /// A continuation's start, held while it may be an echo of the content.
    echo: Option<recover::Echo>,
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
    /// Appends `text` to `buf`; returns where it landed.
    fn append(&mut self, buf: &mut String, text: &str) -> Result<(usize, usize), StreamError> {
        self.used = self
            .used
            .checked_add(text.len())
            .filter(|&n| n <= self.limit)
            .ok_or(StreamError::ResponseTooLarge { limit: self.limit })?;
        let start = buf.len();
        buf.push_str(text);
        Ok((start, buf.len()))
    }

    /// Replaces `old` bytes held with `new` ones.
    fn replace(&mut self, old: usize, new: usize) -> Result<(), StreamError> {
        self.used = self
            .used
            .saturating_sub(old)
            .checked_add(new)
            .filter(|&n| n <= self.limit)
            .ok_or(StreamError::ResponseTooLarge { limit: self.limit })?;
        Ok(())
    }
}

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
            split_think: true,
            pending: VecDeque::new(),
            server_timings: None,
            hidden: Vec::new(),
            usage_hidden: false,
            output_chunks: 0,
        }
    }

    /// Feeds one dispatched SSE event (its type and data) and queues the events it produced
    /// for [`next_event`](Self::next_event); events of the previous push that were not taken
    /// are dropped.
    ///
    /// `[DONE]` completes the stream; empty data and event types other than `message` and
    /// `error` are ignored; `event: error` or a chunk with an `error` object is
    /// [`StreamError::Api`].
    ///
    /// # Errors
    ///
    /// [`StreamError`] for an error event, a malformed chunk or a crossed limit; the
    /// accumulator should be dropped then.
    ///
    /// # Examples
    ///
    /// ```
    /// use oai_sse::StreamEvent;
    /// use oai_sse::chat::{Accumulator, Completion};
    ///
    /// let mut acc = Accumulator::new(false);
    /// let chunk = r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#;
    /// assert_eq!(acc.push_event("message", chunk)?, Completion::Complete);
    /// assert_eq!(acc.next_event(), Some(StreamEvent::Content { choice: 0, text: "Hi" }));
    /// assert_eq!(acc.next_event(), Some(StreamEvent::Finish { choice: 0, reason: "stop" }));
    /// assert_eq!(acc.next_event(), None);
    /// assert_eq!(acc.finish()?.content(), "Hi");
    /// # Ok::<(), oai_sse::StreamError>(())
    /// ```
    pub fn push_event(&mut self, event_type: &str, data: &str) -> Result<Completion, StreamError> {
        self.pending.clear();
        match event_type {
            "" | "message" => {}
            "error" => {
                return Err(StreamError::Api(Box::new(ApiError::from_body(
                    data.as_bytes(),
                ))));
            }
            other => {
                log::debug!(
                    "ignoring SSE event type {:?}",
                    truncate_chars(other, StreamError::SNIPPET_CHARS)
                );
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
            self.flush_think()?;
            return Ok(Completion::Complete);
        }
        if !data.starts_with('{') {
            return Err(StreamError::malformed("expected a JSON object", data));
        }
        let mut chunk: ChunkRef<'_> =
            serde_json::from_str(data).map_err(|e| StreamError::malformed(e, data))?;
        self.received_events += 1;
        if let Some(err) = chunk.error.take() {
            return Err(StreamError::Api(Box::new(err)));
        }
        self.apply(chunk)?;
        Ok(self.progress())
    }

    /// The next event of the last push, if any. Text borrows from the aggregated response.
    pub fn next_event(&mut self) -> Option<StreamEvent<'_>> {
        loop {
            let pending = self.pending.pop_front()?;
            if self.visible(&pending) {
                return self.event(pending);
            }
        }
    }

    /// Feeds one SSE event and hands each event it produced to `on_event` (a push followed by
    /// draining [`next_event`](Self::next_event)).
    ///
    /// # Errors
    ///
    /// As [`push_event`](Self::push_event).
    pub fn push_event_with(
        &mut self,
        event_type: &str,
        data: &str,
        on_event: &mut dyn FnMut(&StreamEvent<'_>),
    ) -> Result<Completion, StreamError> {
        let progress = self.push_event(event_type, data)?;
        while let Some(event) = self.next_event() {
            on_event(&event);
        }
        Ok(progress)
    }

    /// Resolves a queued event against the buffers it points into (`None` only for a usage
    /// event without usage, which `apply` never queues).
    fn event(&self, pending: Pending) -> Option<StreamEvent<'_>> {
        let choice_of = |at: usize| self.choices.get(at);
        let index = |at: usize| choice_of(at).map_or(0, |c| c.index);
        fn slice(text: &str, start: usize, end: usize) -> &str {
            text.get(start..end).unwrap_or("")
        }
        Some(match pending {
            Pending::Role { at } => StreamEvent::Role {
                choice: index(at),
                role: choice_of(at).and_then(|c| c.role.as_deref()).unwrap_or(""),
            },
            Pending::Text {
                at,
                field,
                start,
                end,
            } => {
                let choice = index(at);
                let buf = choice_of(at).map_or("", |c| match field {
                    TextField::Content => c.content.as_str(),
                    TextField::Reasoning => c.reasoning.as_str(),
                    TextField::Refusal => c.refusal.as_str(),
                });
                let text = slice(buf, start.max(self.hidden_text(at, field)), end);
                match field {
                    TextField::Content => StreamEvent::Content { choice, text },
                    TextField::Reasoning => StreamEvent::Reasoning { choice, text },
                    TextField::Refusal => StreamEvent::Refusal { choice, text },
                }
            }
            Pending::ToolCall {
                at,
                slot,
                start,
                end,
                id,
                name,
            } => {
                let call = choice_of(at).and_then(|c| c.tools.get(slot));
                let (hidden, shown) = self.hidden_tool(at, slot);
                StreamEvent::ToolCall {
                    choice: index(at),
                    index: u32::try_from(slot).unwrap_or(u32::MAX),
                    id: call.filter(|_| id && !shown).map(|c| c.id.as_str()),
                    name: call.filter(|_| name && !shown).map(|c| c.name.as_str()),
                    arguments: call
                        .map_or("", |c| slice(&c.arguments, start.max(hidden).min(end), end)),
                }
            }
            Pending::Finish { at } => StreamEvent::Finish {
                choice: index(at),
                reason: choice_of(at)
                    .and_then(|c| c.finish_reason.as_deref())
                    .unwrap_or(""),
            },
            Pending::Usage => StreamEvent::Usage(self.usage.as_ref()?),
        })
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

    /// Whether content that opens with `<think>` (after whitespace) is reasoning, up to
    /// `</think>` (default true). Servers without a reasoning parser (llama.cpp with
    /// `--reasoning-format none`, older Ollama, some gateways) send a thinking model's
    /// reasoning that way; it then arrives as [`StreamEvent::Reasoning`] and in the
    /// response's reasoning. Split across deltas anywhere, tags are still recognised; text
    /// waits only for the few bytes that could still start a tag. When on, leading
    /// whitespace of the content is dropped. Set it before the first push.
    pub fn split_think(mut self, on: bool) -> Self {
        self.split_think = on;
        for choice in &mut self.choices {
            choice.think = ThinkSplitter::new(on);
        }
        self
    }

    /// Whether any content, reasoning, refusal or tool-call delta has been produced.
    pub fn has_output(&self) -> bool {
        self.has_output
    }

    /// Chunks that carried output so far.
    pub(crate) fn output_chunks(&self) -> u64 {
        self.output_chunks
    }

    /// Whether some choice has a tool call.
    pub(crate) fn has_tool_calls(&self) -> bool {
        self.choices.iter().any(|c| !c.tools.is_empty())
    }

    /// The completion id (empty before the first chunk that had one).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The latest usage.
    pub(crate) fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// The bounds.
    pub(crate) fn limits(&self) -> ChatLimits {
        self.limits
    }

    /// Whether a `<think>` block opening the content is split off.
    pub(crate) fn splits_think(&self) -> bool {
        self.split_think
    }

    /// Whether `[DONE]` arrived.
    pub fn saw_done(&self) -> bool {
        self.done
    }

    /// Whether events of the last push wait for [`next_event`](Self::next_event).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The error [`finish`](Self::finish) would report for a stream that ended now without
    /// being complete.
    pub fn check_complete(&self) -> Result<(), StreamError> {
        if self.is_complete() {
            Ok(())
        } else {
            Err(StreamError::IncompleteStream {
                received_events: self.received_events,
                finish_seen: self.all_finished(),
            })
        }
    }

    /// End of stream: check completeness and tool-call arguments, and return the aggregated
    /// response (choices sorted by index).
    ///
    /// # Errors
    ///
    /// [`StreamError::IncompleteStream`] before the end, and the tool-argument errors.
    pub fn finish(self) -> Result<ChatResponse, StreamError> {
        self.check_complete()?;
        self.into_response(true)
    }

    /// What arrived so far, as a response, without the end-of-stream checks: for a caller
    /// that stopped the stream early. Tool-call arguments may be cut and finish reasons
    /// missing.
    pub fn partial_response(self) -> ChatResponse {
        // Without the argument checks, `into_response` cannot fail.
        self.into_response(false).unwrap_or_default()
    }

    fn into_response(mut self, check: bool) -> Result<ChatResponse, StreamError> {
        // What a `<think>` splitter still holds (a tag prefix) is text; the budget is
        // not checked for those few bytes, so `partial_response` cannot fail.
        let _ = self.flush_think();
        self.choices.sort_by_key(|c| c.index);
        let choices = self
            .choices
            .into_iter()
            .map(|c| c.into_choice(check))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChatResponse {
            id: self.id,
            created: self.created.unwrap_or(0),
            model: self.model,
            system_fingerprint: self.system_fingerprint,
            choices,
            usage: self.usage,
            timings: Timings {
                attempts: Vec::new(),
                server: self.server_timings,
            },
            ..ChatResponse::default()
        })
    }

    fn all_finished(&self) -> bool {
        self.choices.len() >= self.expected_choices
            && self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    fn progress(&self) -> Completion {
        if self.is_complete() {
            Completion::Complete
        } else {
            Completion::Pending
        }
    }

    fn apply(&mut self, chunk: ChunkRef<'_>) -> Result<(), StreamError> {
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
        let used = self.budget.used;
        for delta in &chunk.choices {
            let at = self.choice_slot(delta.index)?;
            let Some(acc) = self.choices.get_mut(at) else {
                continue;
            };
            let mut out = Out {
                at,
                budget: &mut self.budget,
                has_output: &mut self.has_output,
                pending: &mut self.pending,
            };
            acc.apply(delta, &self.limits, &mut out)?;
        }
        if self.budget.used > used {
            self.output_chunks += 1;
        }
        if let Some(usage) = chunk.usage {
            // Only the latest usage is held (vLLM can send one on every chunk).
            let held = self.usage.as_ref().map_or(0, Usage::extra_len);
            self.budget.replace(held, usage.extra_len())?;
            self.usage = Some(usage);
            self.pending.push_back(Pending::Usage);
        }
        if chunk.timings.is_some() {
            self.server_timings = chunk.timings;
        }
        Ok(())
    }

    /// Ends every choice's `<think>` splitter: the bytes it held (at most a tag prefix) are
    /// queued as events.
    fn flush_think(&mut self) -> Result<(), StreamError> {
        for (at, acc) in self.choices.iter_mut().enumerate() {
            let mut out = Out {
                at,
                budget: &mut self.budget,
                has_output: &mut self.has_output,
                pending: &mut self.pending,
            };
            acc.flush_think(&mut out)?;
        }
        Ok(())
    }

    fn choice_slot(&mut self, index: u32) -> Result<usize, StreamError> {
        if let Some(at) = self.choices.iter().position(|c| c.index == index) {
            return Ok(at);
        }
        if self.choices.len() >= self.limits.max_choices as usize {
            return Err(StreamError::TooManyChoices {
                limit: self.limits.max_choices,
            });
        }
        self.choices.push(ChoiceAcc {
            index,
            think: ThinkSplitter::new(self.split_think),
            role: None,
            content: String::new(),
            reasoning: String::new(),
            refusal: String::new(),
            tools: Vec::new(),
            wire: Vec::new(),
            last_slot: None,
            finish_reason: None,
            echo: None,
        });
        Ok(self.choices.len() - 1)
    }
}

/// Where a choice's deltas go: the shared budget, the output flag, the event queue.
struct Out<'a> {
    /// The choice's position in `Accumulator::choices`.
    at: usize,
    budget: &'a mut Budget,
    has_output: &'a mut bool,
    pending: &'a mut VecDeque<Pending>,
}

impl Out<'_> {
    fn text(&mut self, buf: &mut String, field: TextField, text: &str) -> Result<(), StreamError> {
        self.push_text(buf, field, text, false)
    }

    /// Like [`text`](Self::text), but text that continues the last queued event of the same
    /// buffer extends that event: a `<think>` splitter may hand one delta over in pieces.
    fn text_continued(
        &mut self,
        buf: &mut String,
        field: TextField,
        text: &str,
    ) -> Result<(), StreamError> {
        self.push_text(buf, field, text, true)
    }

    fn push_text(
        &mut self,
        buf: &mut String,
        field: TextField,
        text: &str,
        merge: bool,
    ) -> Result<(), StreamError> {
        let (start, end) = self.budget.append(buf, text)?;
        *self.has_output = true;
        if let Some(Pending::Text {
            at,
            field: last,
            end: last_end,
            ..
        }) = self.pending.back_mut().filter(|_| merge)
            && *at == self.at
            && *last == field
            && *last_end == start
        {
            *last_end = end;
            return Ok(());
        }
        self.pending.push_back(Pending::Text {
            at: self.at,
            field,
            start,
            end,
        });
        Ok(())
    }

    /// One piece of content from the `<think>` splitter, into its buffer.
    fn piece(
        &mut self,
        content: &mut String,
        reasoning: &mut String,
        piece: Piece<'_>,
    ) -> Result<(), StreamError> {
        match piece {
            Piece::Reasoning(text) => self.text_continued(reasoning, TextField::Reasoning, text),
            Piece::Content(text) => self.text_continued(content, TextField::Content, text),
        }
    }
}

impl ChoiceAcc {
    fn apply(
        &mut self,
        d: &ChoiceDelta<'_>,
        limits: &ChatLimits,
        out: &mut Out<'_>,
    ) -> Result<(), StreamError> {
        let delta = &d.delta;
        if self.role.is_none()
            && let Some(role) = non_empty(&delta.role)
        {
            self.role = Some(role.to_owned());
            out.pending.push_back(Pending::Role { at: out.at });
        }
        // Servers use either field; some fill both with the same text.
        let rc = non_empty(&delta.reasoning_content);
        let r = non_empty(&delta.reasoning).filter(|r| Some(*r) != rc);
        for text in [rc, r].into_iter().flatten() {
            out.text(&mut self.reasoning, TextField::Reasoning, text)?;
        }
        if let Some(text) = non_empty(&delta.content).and_then(|t| self.unecho(t)) {
            let (content, reasoning) = (&mut self.content, &mut self.reasoning);
            let mut result = Ok(());
            self.think.push(&text, |piece| {
                if result.is_ok() {
                    result = out.piece(content, reasoning, piece);
                }
            });
            result?;
        }
        if let Some(text) = non_empty(&delta.refusal) {
            out.text(&mut self.refusal, TextField::Refusal, text)?;
        }
        for call in delta.tool_calls.iter().flatten() {
            self.apply_tool(call, limits, out)?;
        }
        if let Some(reason) = non_empty(&d.finish_reason)
            && self.finish_reason.as_deref() != Some(reason)
        {
            // The choice's text is over: what the splitter holds goes out before the finish.
            self.flush_think(out)?;
            self.finish_reason = Some(reason.to_owned());
            out.pending.push_back(Pending::Finish { at: out.at });
        }
        Ok(())
    }

    /// Ends the `<think>` splitter: the bytes it held become text of the mode it was in.
    fn flush_think(&mut self, out: &mut Out<'_>) -> Result<(), StreamError> {
        if let Some(held) = self.release_echo() {
            out.text(&mut self.content, TextField::Content, &held)?;
        }
        let (content, reasoning) = (&mut self.content, &mut self.reasoning);
        let mut result = Ok(());
        self.think.finish(|piece| {
            if result.is_ok() {
                result = out.piece(content, reasoning, piece);
            }
        });
        result
    }

    /// Merges one fragment into its slot. The event carries the id and the name only when
    /// this fragment set them, so a server that repeats them in every fragment does not
    /// deliver (or make a channel hold) them again and again.
    fn apply_tool(
        &mut self,
        call: &ToolCallDeltaRef<'_>,
        limits: &ChatLimits,
        out: &mut Out<'_>,
    ) -> Result<(), StreamError> {
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
        let mut set = [false; 3];
        for ((field, value), set) in [
            (&mut slot.id, id),
            (&mut slot.kind, non_empty(&call.kind)),
            (&mut slot.name, name),
        ]
        .into_iter()
        .zip(&mut set)
        {
            if field.is_empty()
                && let Some(v) = value
            {
                out.budget.append(field, v)?;
                *set = true;
            }
        }
        let (start, end) = out.budget.append(&mut slot.arguments, arguments)?;
        let [id_set, _, name_set] = set;
        if id_set || name_set || start < end {
            *out.has_output = true;
            out.pending.push_back(Pending::ToolCall {
                at: out.at,
                slot: at,
                start,
                end,
                id: id_set,
                name: name_set,
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
    ) -> Result<usize, StreamError> {
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

    fn open_slot(&mut self, max: u32) -> Result<usize, StreamError> {
        if self.tools.len() >= max as usize {
            return Err(StreamError::TooManyToolCalls { limit: max });
        }
        self.tools.push(ToolSlot::default());
        Ok(self.tools.len() - 1)
    }

    fn into_choice(self, check: bool) -> Result<Choice, StreamError> {
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
        if check {
            check_tool_arguments(self.index, self.finish_reason.as_deref(), &mut calls)?;
        }
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
        "assistant" => Role::Assistant,
        _ => Role::Other,
    }
}

/// Empty arguments become `{}`; invalid JSON is an error whose kind depends on whether the
/// choice stopped for `length`.
pub(super) fn check_tool_arguments(
    choice: u32,
    finish_reason: Option<&str>,
    calls: &mut [ToolCall],
) -> Result<(), StreamError> {
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
            StreamError::ToolCallArgumentsCutByLength {
                choice,
                index,
                name,
            }
        } else {
            StreamError::TruncatedToolCallArguments {
                choice,
                index,
                id: call.id.clone(),
                name,
            }
        });
    }
    Ok(())
}

mod recover;
#[cfg(test)]
mod tests;
