//! The Responses API replies of a [`Script`]: the numbered `response.*` events OpenAI streams
//! (`event:` and `data:` lines, `sequence_number`, `output_index`), and the response object
//! of a request without `stream`. Pure rendering; the route is `routes::chat`'s, so every
//! fault and the replay apply as they do to chat.
//!
//! The items come in chat's order — reasoning, the message, the function calls — each
//! delta a word (or an ~8-byte piece of arguments), as the chat stream sends them. A script
//! whose finish reason is `length` ends with `response.incomplete` (`max_output_tokens`),
//! `failed` with `response.failed`; the `no-done` fault drops the final event.

use std::iter::once;

use serde_json::{Value, json};

use super::fault::Plan;
use super::script::{CREATED, Script, call_id, pieces, words};
use super::wire::Piece;

const RESPONSE_ID: &str = "resp_mock";
const MESSAGE_ID: &str = "msg_mock";
const REASONING_ID: &str = "rs_mock";
/// The message of a script that fails (finish reason `failed`): `response.failed` with code
/// `invalid_prompt`, a failure a retry cannot help.
pub const FAILED_MESSAGE: &str = "the mock server's response failed";

impl Script {
    /// The exact fault-free Responses API events (`event: TYPE\ndata: {json}\n\n`) the server
    /// streams for this request body.
    pub fn responses_events(&self, request: &Value) -> impl Iterator<Item = String> + '_ {
        self.response_stream(request)
            .into_iter()
            .map(|(kind, data)| frame(&kind, &data.to_string(), false))
    }

    /// The response object the server returns for a Responses request without `stream` (and
    /// that the stream's final event carries).
    pub fn response(&self, request: &Value) -> Value {
        let mut response = self.response_head(request);
        let status = match self.finish() {
            "length" => "incomplete",
            "failed" => "failed",
            _ => "completed",
        };
        response["status"] = status.into();
        response["output"] = self.output_items().into();
        response["usage"] = self.response_usage(request);
        match status {
            "incomplete" => {
                response["incomplete_details"] = json!({"reason": "max_output_tokens"});
            }
            "failed" => {
                response["error"] = json!({"code": "invalid_prompt", "message": FAILED_MESSAGE});
            }
            _ => {}
        }
        response
    }

    fn response_head(&self, request: &Value) -> Value {
        json!({"id": RESPONSE_ID, "object": "response", "created_at": CREATED,
               "status": "in_progress", "model": self.model_for(request), "output": [],
               "usage": null, "incomplete_details": null, "error": null})
    }

    /// The complete output items.
    fn output_items(&self) -> Vec<Value> {
        let mut items = Vec::new();
        if let Some(reasoning) = self.reasoning_text() {
            items.push(reasoning_item(reasoning, "completed"));
        }
        let text: String = self.content_pieces().collect();
        if !text.is_empty() {
            items.push(message_item(&text, "completed"));
        }
        for (i, (name, args)) in self.tool_calls().iter().enumerate() {
            items.push(call_item(i, name, args, "completed"));
        }
        items
    }

    /// `input_tokens`: the words of the input's texts; `output_tokens`: the pieces generated.
    fn response_usage(&self, request: &Value) -> Value {
        let input = match request.get("input") {
            Some(Value::String(text)) => words(text).count() as u64,
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.get("content")?.as_str())
                .map(|c| words(c).count() as u64)
                .sum(),
            _ => 0,
        };
        let output = self.completion_tokens(None);
        json!({"input_tokens": input, "output_tokens": output,
               "total_tokens": input.saturating_add(output)})
    }

    /// The events of the stream: `(type, event)`, numbered.
    pub(super) fn response_stream(&self, request: &Value) -> Vec<(String, Value)> {
        let mut events: Vec<Value> = Vec::new();
        let head = self.response_head(request);
        events.push(json!({"type": "response.created", "response": head}));
        events.push(json!({"type": "response.in_progress", "response": head}));
        let mut index = 0_u64;
        if let Some(reasoning) = self.reasoning_text() {
            events.push(
                json!({"type": "response.output_item.added", "output_index": index,
                               "item": reasoning_item("", "in_progress")}),
            );
            for w in words(reasoning) {
                events.push(json!({"type": "response.reasoning_text.delta",
                    "item_id": REASONING_ID, "output_index": index, "content_index": 0,
                    "delta": w}));
            }
            events.push(
                json!({"type": "response.reasoning_text.done", "item_id": REASONING_ID,
                               "output_index": index, "content_index": 0, "text": reasoning}),
            );
            events.push(
                json!({"type": "response.output_item.done", "output_index": index,
                               "item": reasoning_item(reasoning, "completed")}),
            );
            index += 1;
        }
        let text: String = self.content_pieces().collect();
        if !text.is_empty() {
            let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
            events.push(
                json!({"type": "response.output_item.added", "output_index": index,
                               "item": message_item("", "in_progress")}),
            );
            events.push(
                json!({"type": "response.content_part.added", "item_id": MESSAGE_ID,
                               "output_index": index, "content_index": 0, "part": part("")}),
            );
            for w in self.content_pieces() {
                events.push(
                    json!({"type": "response.output_text.delta", "item_id": MESSAGE_ID,
                    "output_index": index, "content_index": 0, "delta": w, "logprobs": []}),
                );
            }
            events.push(
                json!({"type": "response.output_text.done", "item_id": MESSAGE_ID,
                "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            );
            events.push(
                json!({"type": "response.content_part.done", "item_id": MESSAGE_ID,
                               "output_index": index, "content_index": 0, "part": part(&text)}),
            );
            events.push(
                json!({"type": "response.output_item.done", "output_index": index,
                               "item": message_item(&text, "completed")}),
            );
            index += 1;
        }
        for (i, (name, args)) in self.tool_calls().iter().enumerate() {
            let id = format!("fc_mock_{i}");
            events.push(
                json!({"type": "response.output_item.added", "output_index": index,
                               "item": call_item(i, name, "", "in_progress")}),
            );
            for p in pieces(args) {
                events.push(json!({"type": "response.function_call_arguments.delta",
                    "item_id": id, "output_index": index, "delta": p}));
            }
            events.push(
                json!({"type": "response.function_call_arguments.done", "item_id": id,
                               "output_index": index, "arguments": args}),
            );
            events.push(
                json!({"type": "response.output_item.done", "output_index": index,
                               "item": call_item(i, name, args, "completed")}),
            );
            index += 1;
        }
        let last = self.response(request);
        let kind = match last["status"].as_str() {
            Some("incomplete") => "response.incomplete",
            Some("failed") => "response.failed",
            _ => "response.completed",
        };
        events.push(json!({"type": kind, "response": last}));
        events
            .into_iter()
            .enumerate()
            .map(|(seq, mut event)| {
                event["sequence_number"] = (seq as u64).into();
                let kind = event["type"].as_str().unwrap_or_default().to_owned();
                (kind, event)
            })
            .collect()
    }

    /// The streamed body under the plan's body faults (`crlf`, `ping`, `no-done` — which
    /// drops the final event); exactly [`Script::responses_events`] without them.
    pub(super) fn response_pieces(&self, request: &Value, plan: &Plan) -> Vec<Piece> {
        let mut events = self.response_stream(request);
        if plan.no_done {
            events.pop();
        }
        let (crlf, ping) = (plan.crlf, plan.ping);
        events
            .into_iter()
            .enumerate()
            .flat_map(|(i, (kind, data))| {
                let event = frame(&kind, &data.to_string(), crlf);
                let ping_text = if crlf { ": ping\r\n\r\n" } else { ": ping\n\n" };
                let every = ping.filter(|_| i > 0);
                let ping = every.map(|_| Piece::now(ping_text.to_owned()));
                let wait = every.unwrap_or_default();
                ping.into_iter().chain(once(Piece { wait, data: event }))
            })
            .collect()
    }
}

/// One SSE event with its `event:` line.
fn frame(kind: &str, data: &str, crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    format!("event: {kind}{nl}data: {data}{nl}{nl}")
}

fn reasoning_item(text: &str, status: &str) -> Value {
    let content: Vec<Value> = Some(text)
        .filter(|t| !t.is_empty())
        .map(|t| json!({"type": "reasoning_text", "text": t}))
        .into_iter()
        .collect();
    json!({"type": "reasoning", "id": REASONING_ID, "summary": [], "content": content,
           "status": status})
}

fn message_item(text: &str, status: &str) -> Value {
    let content: Vec<Value> = Some(text)
        .filter(|t| !t.is_empty())
        .map(|t| json!({"type": "output_text", "text": t, "annotations": []}))
        .into_iter()
        .collect();
    json!({"type": "message", "id": MESSAGE_ID, "role": "assistant", "status": status,
           "content": content})
}

fn call_item(i: usize, name: &str, args: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_mock_{i}"), "call_id": call_id(i),
           "name": name, "arguments": args, "status": status})
}
