//! The Responses stream accumulator: feeds on dispatched SSE events (`response.*`, `error`),
//! builds the [`ResponseObject`], says when the stream is over, and hands out each delta as
//! a [`ResponseEvent`].
//!
//! Items are found the way each server names them: by `output_index` (OpenAI, vLLM), by
//! `item_id` (llama.cpp sends neither index nor sequence number, and names a function call
//! by its `call_id`), or as the last open item of the event's kind. A delta for an item never
//! announced opens it. The `.done` events carry the complete text: what the deltas missed of
//! it is handed out as one more delta, so a server that sends only `.done` events (or only
//! `response.completed`) still streams.
//!
//! Completion rules, as for chat: the stream is complete at `response.completed` or
//! `response.incomplete`; `response.failed` and `error` are the server's error; anything
//! else ending the stream is an incomplete stream (a break). A function call whose arguments
//! are not valid JSON when it is done is a break too. `sequence_number`s, when the server
//! sends them, must count up by one: a gap or a repeat is a malformed stream.
//!
//! Pure state machine: no I/O, no clock, bounded memory ([`ResponseLimits`]).

use std::borrow::Cow;
use std::collections::VecDeque;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::event::{ItemKind, ResponseEvent};
use super::object::{OutputItem, ResponseObject, ResponseStatus, ResponseUsage};
use crate::chat::Completion;
use crate::wire::capped::json_len;
use crate::wire::{ApiError, StreamError};

/// Memory bounds of one [`ResponsesAccumulator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Most output items in one response.
    pub max_output_items: usize,
    /// Most bytes of aggregated text (texts, ids, names, arguments, other items as JSON).
    pub max_response_bytes: usize,
}

impl ResponseLimits {
    /// Default for [`ResponseLimits::max_output_items`].
    pub const DEFAULT_MAX_OUTPUT_ITEMS: usize = 256;
    /// Default for [`ResponseLimits::max_response_bytes`] (64 MiB).
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            max_output_items: Self::DEFAULT_MAX_OUTPUT_ITEMS,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The fields of a streaming event this accumulator reads; the texts borrow from the data.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    sequence_number: Option<u64>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default, borrow)]
    item_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
    #[serde(default)]
    part: Option<Value>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
}

/// An event waiting in the queue: which item it points into and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Created,
    ItemAdded { at: usize },
    Text { at: usize, start: usize, end: usize },
    ItemDone { at: usize },
    Other,
}

/// One output item being aggregated.
#[derive(Debug, Clone)]
struct ItemAcc {
    kind: ItemKind,
    /// The server's `output_index`, if it sends them.
    wire_index: Option<u64>,
    id: String,
    call_id: String,
    name: String,
    /// Message or reasoning text, or function-call arguments.
    text: String,
    /// Another item type, whole (as its `.done` or `response.completed` carried it).
    other: Option<Value>,
    kind_name: String,
    done: bool,
}

/// Turns the events of one streamed response into [`ResponseEvent`]s and a
/// [`ResponseObject`].
///
/// Feed every dispatched SSE event to [`push_event`](Self::push_event); stop reading when it
/// returns [`Completion::Complete`], then call [`finish`](Self::finish).
///
/// # Examples
///
/// ```
/// use oai_sse::ResponseEvent;
/// use oai_sse::chat::Completion;
/// use oai_sse::responses::ResponsesAccumulator;
///
/// let mut acc = ResponsesAccumulator::new();
/// let mut text = String::new();
/// for data in [
///     r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress"}}"#,
///     r#"{"type":"response.output_text.delta","sequence_number":1,"output_index":0,"item_id":"msg_1","delta":"Hi"}"#,
///     r#"{"type":"response.completed","sequence_number":2,"response":{"id":"resp_1","status":"completed"}}"#,
/// ] {
///     let done = acc.push_event("", data)? == Completion::Complete;
///     while let Some(event) = acc.next_event() {
///         if let ResponseEvent::Text { text: t, .. } = event {
///             text.push_str(t);
///         }
///     }
///     if done {
///         break;
///     }
/// }
/// let response = acc.finish()?;
/// assert_eq!(response.output_text(), "Hi");
/// assert_eq!(text, "Hi");
/// # Ok::<(), oai_sse::StreamError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResponsesAccumulator {
    limits: ResponseLimits,
    id: String,
    model: String,
    created_at: u64,
    status: Option<ResponseStatus>,
    incomplete_reason: Option<String>,
    items: Vec<ItemAcc>,
    usage: Option<ResponseUsage>,
    received_events: u64,
    last_sequence: Option<u64>,
    used: usize,
    pending: VecDeque<Pending>,
    other_type: String,
    other_data: String,
}

impl Default for ResponsesAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponsesAccumulator {
    /// An accumulator with the default limits.
    pub fn new() -> Self {
        Self::with_limits(ResponseLimits::default())
    }

    /// An accumulator with these limits.
    pub fn with_limits(limits: ResponseLimits) -> Self {
        Self {
            limits,
            id: String::new(),
            model: String::new(),
            created_at: 0,
            status: None,
            incomplete_reason: None,
            items: Vec::new(),
            usage: None,
            received_events: 0,
            last_sequence: None,
            used: 0,
            pending: VecDeque::new(),
            other_type: String::new(),
            other_data: String::new(),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> ResponseLimits {
        self.limits
    }

    /// The response id, once the server sent it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The last `sequence_number` seen, if the server numbers its events.
    pub fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }

    /// Whether the stream reached `response.completed` or `response.incomplete`.
    pub fn is_complete(&self) -> bool {
        self.status.is_some()
    }

    /// Token usage, once reported.
    pub fn usage(&self) -> Option<&ResponseUsage> {
        self.usage.as_ref()
    }

    /// Feeds one dispatched SSE event: its `event:` name (empty if none) and its data. The
    /// event's own `type` field decides; the name is the fallback.
    ///
    /// # Errors
    ///
    /// [`StreamError::Api`] for `response.failed` and `error`; [`StreamError::MalformedChunk`]
    /// for data that is not an event object or a sequence number out of order;
    /// [`StreamError::TruncatedToolCallArguments`] for a function call done with arguments
    /// that are not JSON; [`StreamError::ResponseTooLarge`] past the limits.
    pub fn push_event(&mut self, event_type: &str, data: &str) -> Result<Completion, StreamError> {
        self.pending.clear();
        let data = data.trim();
        // A keep-alive, or a gateway's `[DONE]` after the terminal event.
        if data.is_empty() || data == "[DONE]" {
            return Ok(self.progress());
        }
        if !data.starts_with('{') {
            if event_type == "error" {
                return Err(StreamError::Api(Box::new(ApiError::from_body(
                    data.as_bytes(),
                ))));
            }
            return Err(StreamError::malformed("expected a JSON object", data));
        }
        let event: WireEvent<'_> =
            serde_json::from_str(data).map_err(|e| StreamError::malformed(e, data))?;
        self.received_events += 1;
        if let Some(seq) = event.sequence_number {
            if let Some(last) = self.last_sequence {
                if last.checked_add(1) != Some(seq) {
                    let what = if seq <= last { "a repeat" } else { "a gap" };
                    return Err(StreamError::malformed(
                        format!("sequence_number {seq} after {last} ({what})"),
                        data,
                    ));
                }
            }
            self.last_sequence = Some(seq);
        }
        let kind = event.kind.clone();
        self.apply(kind.as_deref().unwrap_or(event_type), &event, data)?;
        Ok(self.progress())
    }

    fn progress(&self) -> Completion {
        if self.status.is_some() {
            Completion::Complete
        } else {
            Completion::Pending
        }
    }

    fn apply(&mut self, kind: &str, event: &WireEvent<'_>, data: &str) -> Result<(), StreamError> {
        let at_of =
            |acc: &Self, kind| acc.locate(event.output_index, event.item_id.as_deref(), kind);
        match kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(response) = &event.response {
                    self.take_meta(response)?;
                }
                if kind == "response.created" {
                    self.pending.push_back(Pending::Created);
                }
            }
            "response.output_item.added" => {
                let Some(item) = &event.item else {
                    return Err(StreamError::malformed("an added item without `item`", data));
                };
                let at = self.item_from(item, event.output_index, false)?;
                self.pending.push_back(Pending::ItemAdded { at });
            }
            "response.output_text.delta"
            | "response.reasoning_text.delta"
            | "response.function_call_arguments.delta" => {
                let kind = match kind {
                    "response.output_text.delta" => ItemKind::Message,
                    "response.reasoning_text.delta" => ItemKind::Reasoning,
                    _ => ItemKind::FunctionCall,
                };
                let delta = event.delta.as_deref().unwrap_or_default();
                let at = match at_of(self, kind) {
                    Some(at) => at,
                    None => self.open(kind, event.output_index, event.item_id.as_deref())?,
                };
                self.append(at, delta)?;
            }
            "response.output_text.done" | "response.reasoning_text.done" => {
                let kind = if kind == "response.output_text.done" {
                    ItemKind::Message
                } else {
                    ItemKind::Reasoning
                };
                if let (Some(at), Some(text)) = (at_of(self, kind), event.text.as_deref()) {
                    self.catch_up(at, text)?;
                }
            }
            "response.content_part.done" => {
                let text = event.part.as_ref().and_then(|p| p.get("text")?.as_str());
                if let (Some(at), Some(text)) = (at_of(self, ItemKind::Message), text) {
                    self.catch_up(at, text)?;
                }
            }
            "response.function_call_arguments.done" => {
                if let (Some(at), Some(args)) = (
                    at_of(self, ItemKind::FunctionCall),
                    event.arguments.as_deref(),
                ) {
                    self.catch_up(at, args)?;
                }
            }
            "response.output_item.done" => {
                let Some(item) = &event.item else {
                    return Err(StreamError::malformed("a done item without `item`", data));
                };
                let at = self.item_from(item, event.output_index, true)?;
                self.check_arguments(at, false)?;
                if let Some(slot) = self.items.get_mut(at) {
                    slot.done = true;
                }
                self.pending.push_back(Pending::ItemDone { at });
            }
            "response.content_part.added" => {}
            "response.completed" | "response.incomplete" => {
                let Some(response) = &event.response else {
                    return Err(StreamError::malformed(
                        "a final event without `response`",
                        data,
                    ));
                };
                self.take_meta(response)?;
                self.take_final(response)?;
                let status = response.get("status").and_then(Value::as_str);
                self.status = Some(match (kind, status) {
                    (_, Some(status)) => ResponseStatus::from_wire(status),
                    ("response.completed", None) => ResponseStatus::Completed,
                    _ => ResponseStatus::Incomplete,
                });
                self.incomplete_reason = response
                    .pointer("/incomplete_details/reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                for at in 0..self.items.len() {
                    self.check_arguments(at, true)?;
                }
            }
            "response.failed" => {
                let error = event
                    .response
                    .as_ref()
                    .and_then(|r| r.get("error"))
                    .filter(|e| !e.is_null());
                let api = match error {
                    Some(error) => ApiError::from_value(error),
                    None => ApiError::from_body(data.as_bytes()),
                };
                return Err(StreamError::Api(Box::new(api)));
            }
            "error" => {
                let mut api = ApiError::from_body(data.as_bytes());
                if api.kind.as_deref() == Some("error") {
                    api.kind = None;
                }
                return Err(StreamError::Api(Box::new(api)));
            }
            other => {
                self.other_type.clear();
                self.other_type.push_str(other);
                self.other_data.clear();
                self.other_data.push_str(data);
                self.pending.push_back(Pending::Other);
            }
        }
        Ok(())
    }

    /// The response's id, model and creation time, from a `response` object.
    fn take_meta(&mut self, response: &Value) -> Result<(), StreamError> {
        let text = |k: &str| {
            response
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if let Some(id) = text("id") {
            if id != self.id {
                self.charge(id.len())?;
                id.clone_into(&mut self.id);
            }
        }
        if let Some(model) = text("model") {
            if model != self.model {
                self.charge(model.len())?;
                model.clone_into(&mut self.model);
            }
        }
        if let Some(t) = response.get("created_at").and_then(Value::as_u64) {
            self.created_at = t;
        }
        Ok(())
    }

    /// The final `response` object: its usage, and the output items the events did not
    /// bring (a gateway that sends only the final event), handed out as they are added.
    fn take_final(&mut self, response: &Value) -> Result<(), StreamError> {
        if let Some(usage) = response.get("usage").filter(|u| u.is_object()) {
            self.usage = serde_json::from_value(usage.clone()).ok();
        }
        let Some(output) = response.get("output").and_then(Value::as_array) else {
            return Ok(());
        };
        for (i, item) in output.iter().enumerate() {
            if i < self.items.len() {
                // Known already: fill in what the events left out (llama.cpp's ids).
                self.fill_ids(i, item)?;
                continue;
            }
            let at = self.item_from(item, None, true)?;
            self.items[at].done = true;
        }
        Ok(())
    }

    /// The item an event is about.
    fn locate(
        &self,
        output_index: Option<u64>,
        item_id: Option<&str>,
        kind: ItemKind,
    ) -> Option<usize> {
        if let Some(i) = output_index {
            if let Some(at) = self.items.iter().position(|it| it.wire_index == Some(i)) {
                return Some(at);
            }
        }
        if let Some(id) = item_id.filter(|id| !id.is_empty()) {
            let named = |it: &ItemAcc| {
                it.id == id || (it.kind == ItemKind::FunctionCall && it.call_id == id)
            };
            if let Some(at) = self.items.iter().position(named) {
                return Some(at);
            }
        }
        self.items
            .iter()
            .rposition(|it| it.kind == kind && !it.done)
    }

    /// Opens an item that no event announced.
    fn open(
        &mut self,
        kind: ItemKind,
        output_index: Option<u64>,
        id: Option<&str>,
    ) -> Result<usize, StreamError> {
        if self.items.len() >= self.limits.max_output_items {
            return Err(StreamError::TooManyOutputItems {
                limit: self.limits.max_output_items,
            });
        }
        let id = id.unwrap_or_default();
        self.charge(id.len())?;
        let (item_id, call_id) = match kind {
            // llama.cpp names a call's deltas by its call id.
            ItemKind::FunctionCall => (String::new(), id.to_owned()),
            _ => (id.to_owned(), String::new()),
        };
        self.items.push(ItemAcc {
            kind,
            wire_index: output_index,
            id: item_id,
            call_id,
            name: String::new(),
            text: String::new(),
            other: None,
            kind_name: String::new(),
            done: false,
        });
        let at = self.items.len() - 1;
        self.pending.push_back(Pending::ItemAdded { at });
        Ok(at)
    }

    /// An item object (`.added`, `.done`, the final output): the item it is, created if
    /// new, with its complete text caught up when `complete`.
    fn item_from(
        &mut self,
        item: &Value,
        output_index: Option<u64>,
        complete: bool,
    ) -> Result<usize, StreamError> {
        let kind_name = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let kind = ItemKind::of(kind_name);
        let field = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
        let id = Some(field("id"))
            .filter(|s| !s.is_empty())
            .or(Some(field("call_id")));
        let found = if complete {
            self.locate(output_index, id, kind)
        } else {
            output_index.and_then(|i| self.items.iter().position(|it| it.wire_index == Some(i)))
        };
        let at = match found {
            Some(at) => at,
            None => {
                let at = self.open(kind, output_index, None)?;
                if complete {
                    // Announced and done at once: the caller sees it start.
                } else {
                    // `open` queued the ItemAdded the caller gets for this event.
                    self.pending.pop_back();
                }
                at
            }
        };
        if self.items[at].kind_name.is_empty() && !kind_name.is_empty() {
            self.charge(kind_name.len())?;
            kind_name.clone_into(&mut self.items[at].kind_name);
        }
        self.fill_ids(at, item)?;
        if !complete {
            return Ok(at);
        }
        match kind {
            ItemKind::Message => {
                let text = joined(item.get("content"), "output_text");
                self.settle(at, &text)?;
            }
            ItemKind::Reasoning => {
                let mut text = joined(item.get("content"), "reasoning_text");
                if text.is_empty() {
                    text = joined(item.get("summary"), "summary_text");
                }
                self.settle(at, &text)?;
            }
            ItemKind::FunctionCall => {
                let args = field("arguments");
                self.settle(at, args)?;
            }
            ItemKind::Other => {
                let size = json_len(item);
                let old = self.items[at].other.as_ref().map_or(0, json_len);
                self.used = self.used.saturating_sub(old);
                self.charge(size)?;
                self.items[at].other = Some(item.clone());
            }
        }
        Ok(at)
    }

    /// Takes the ids, name and call id an item object carries where the item has none.
    fn fill_ids(&mut self, at: usize, item: &Value) -> Result<(), StreamError> {
        let field = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        for (key, pick) in [("id", 0), ("call_id", 1), ("name", 2)] {
            let Some(value) = field(key) else { continue };
            let slot = &self.items[at];
            let current = match pick {
                0 => &slot.id,
                1 => &slot.call_id,
                _ => &slot.name,
            };
            if !current.is_empty() {
                continue;
            }
            self.charge(value.len())?;
            let slot = &mut self.items[at];
            let target = match pick {
                0 => &mut slot.id,
                1 => &mut slot.call_id,
                _ => &mut slot.name,
            };
            value.clone_into(target);
        }
        Ok(())
    }

    /// Appends a delta to an item's text and queues it.
    fn append(&mut self, at: usize, delta: &str) -> Result<(), StreamError> {
        if delta.is_empty() {
            return Ok(());
        }
        self.charge(delta.len())?;
        let text = &mut self.items[at].text;
        let start = text.len();
        text.push_str(delta);
        let end = text.len();
        self.pending.push_back(Pending::Text { at, start, end });
        Ok(())
    }

    /// A part's complete text: what the deltas missed of it, if they were its start.
    fn catch_up(&mut self, at: usize, full: &str) -> Result<(), StreamError> {
        let have = &self.items[at].text;
        if let Some(rest) = full.strip_prefix(have.as_str()) {
            let rest = rest.to_owned();
            self.append(at, &rest)?;
        }
        Ok(())
    }

    /// The item's complete text: caught up, or — when the deltas said otherwise — replaced
    /// by the server's final word (an empty final text keeps the deltas').
    fn settle(&mut self, at: usize, full: &str) -> Result<(), StreamError> {
        if full.is_empty() || full == self.items[at].text {
            return Ok(());
        }
        if full.starts_with(self.items[at].text.as_str()) {
            return self.catch_up(at, full);
        }
        let old = self.items[at].text.len();
        self.used = self.used.saturating_sub(old);
        self.charge(full.len())?;
        full.clone_into(&mut self.items[at].text);
        Ok(())
    }

    /// A done function call's arguments must be JSON; `at_end`: the response is over, and a
    /// cut by the token limit is called so.
    fn check_arguments(&self, at: usize, at_end: bool) -> Result<(), StreamError> {
        let Some(item) = self
            .items
            .get(at)
            .filter(|it| it.kind == ItemKind::FunctionCall)
        else {
            return Ok(());
        };
        let args = item.text.trim();
        if args.is_empty() || serde_json::from_str::<IgnoredAny>(args).is_ok() {
            return Ok(());
        }
        let index = u32::try_from(at).unwrap_or(u32::MAX);
        let by_length = at_end && self.incomplete_reason.as_deref() == Some("max_output_tokens");
        Err(if by_length {
            StreamError::ToolCallArgumentsCutByLength {
                choice: 0,
                index,
                name: item.name.clone(),
            }
        } else {
            StreamError::TruncatedToolCallArguments {
                choice: 0,
                index,
                id: item.call_id.clone(),
                name: item.name.clone(),
            }
        })
    }

    fn charge(&mut self, n: usize) -> Result<(), StreamError> {
        let limit = self.limits.max_response_bytes;
        self.used = self
            .used
            .checked_add(n)
            .filter(|&used| used <= limit)
            .ok_or(StreamError::ResponseTooLarge { limit })?;
        Ok(())
    }

    /// The next event of the last push, if any. Text borrows from the aggregated response.
    pub fn next_event(&mut self) -> Option<ResponseEvent<'_>> {
        let pending = self.pending.pop_front()?;
        self.event(pending)
    }

    /// Whether the last push has events not taken yet.
    pub fn has_events(&self) -> bool {
        !self.pending.is_empty()
    }

    fn event(&self, pending: Pending) -> Option<ResponseEvent<'_>> {
        Some(match pending {
            Pending::Created => ResponseEvent::Created {
                id: &self.id,
                model: &self.model,
            },
            Pending::ItemAdded { at } => {
                let item = self.items.get(at)?;
                ResponseEvent::ItemAdded {
                    index: at,
                    kind: item.kind,
                    id: if item.id.is_empty() {
                        &item.call_id
                    } else {
                        &item.id
                    },
                }
            }
            Pending::Text { at, start, end } => {
                let item = self.items.get(at)?;
                let text = item.text.get(start..end)?;
                match item.kind {
                    ItemKind::Reasoning => ResponseEvent::Reasoning { index: at, text },
                    ItemKind::FunctionCall => ResponseEvent::Arguments {
                        index: at,
                        call_id: &item.call_id,
                        name: &item.name,
                        delta: text,
                    },
                    _ => ResponseEvent::Text { index: at, text },
                }
            }
            Pending::ItemDone { at } => ResponseEvent::ItemDone {
                index: at,
                kind: self.items.get(at)?.kind,
            },
            Pending::Other => ResponseEvent::Other {
                event_type: &self.other_type,
                data: &self.other_data,
            },
        })
    }

    /// Whether the stream may end here: `Ok` after `response.completed` or
    /// `response.incomplete`.
    ///
    /// # Errors
    ///
    /// [`StreamError::IncompleteStream`] (a break) otherwise.
    pub fn check_complete(&self) -> Result<(), StreamError> {
        if self.status.is_some() {
            return Ok(());
        }
        Err(StreamError::IncompleteStream {
            received_events: self.received_events,
            finish_seen: false,
        })
    }

    /// Whether any event was received.
    pub(crate) fn received_events(&self) -> u64 {
        self.received_events
    }

    /// The response as aggregated so far, whether complete or not (a stopped call's).
    pub fn partial_response(&self) -> ResponseObject {
        ResponseObject {
            id: self.id.clone(),
            model: self.model.clone(),
            created_at: self.created_at,
            status: self.status.clone().unwrap_or(ResponseStatus::InProgress),
            incomplete_reason: self.incomplete_reason.clone(),
            output: self.items.iter().map(output_item).collect(),
            usage: self.usage.clone(),
            ..ResponseObject::default()
        }
    }

    /// The complete response.
    ///
    /// # Errors
    ///
    /// [`StreamError::IncompleteStream`] if the stream did not reach its final event; a
    /// function call's arguments that are not JSON.
    pub fn finish(self) -> Result<ResponseObject, StreamError> {
        self.check_complete()?;
        for at in 0..self.items.len() {
            self.check_arguments(at, true)?;
        }
        Ok(self.partial_response())
    }
}

/// The caller's item.
fn output_item(item: &ItemAcc) -> OutputItem {
    match item.kind {
        ItemKind::Message => OutputItem::Message {
            id: item.id.clone(),
            text: item.text.clone(),
        },
        ItemKind::Reasoning => OutputItem::Reasoning {
            id: item.id.clone(),
            text: item.text.clone(),
        },
        ItemKind::FunctionCall => OutputItem::FunctionCall {
            id: item.id.clone(),
            call_id: item.call_id.clone(),
            name: item.name.clone(),
            arguments: if item.text.trim().is_empty() {
                "{}".to_owned()
            } else {
                item.text.clone()
            },
        },
        ItemKind::Other => OutputItem::Other {
            kind: item.kind_name.clone(),
            item: item
                .other
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": item.kind_name, "id": item.id})),
        },
    }
}

/// The texts of the parts of type `part_type` in a `content` (or `summary`) array, joined.
fn joined(parts: Option<&Value>, part_type: &str) -> String {
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == part_type)
        })
        .filter_map(|p| p.get("text")?.as_str())
        .collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
