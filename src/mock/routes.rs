//! The streamed routes: chat completions, llama.cpp's stream replay, and the event feed. Each
//! handler answers one request under its fault plan and says whether the connection stays open.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::continuation::Prefill;
use super::fault::Plan;
use super::feed::{FeedEnd, FeedSpec};
use super::http::{self, Head};
use super::record::RecordedRequest;
use super::script::Script;
use super::session::{MAX_RING_BYTES, Sessions, Tail};
use super::wire::Wire;
use super::{Shared, lock};

/// llama.cpp's replay error messages, verbatim.
pub(super) const MISSING_ID: &str = "Missing conversation id in path";
pub(super) const NOT_FOUND: &str = "Stream not found or expired";
pub(super) const OFFSET_LOST: &str = "Stream offset lost, please restart";
pub(super) const INVALID_FROM: &str = "Invalid 'from' offset";

/// One request's connection and server.
pub(super) struct Ctx<'a> {
    pub stream: &'a TcpStream,
    pub shared: &'a Shared,
    /// The client asked to close after this response.
    pub close: bool,
}

impl Ctx<'_> {
    fn wire(&self, plan: &Plan) -> Wire<'_> {
        Wire::with_plan(
            self.stream,
            &self.shared.stop,
            &self.shared.replies.headers,
            plan,
        )
    }

    /// Ends a response: a cut closes (FIN) or resets (RST) the connection; otherwise it stays
    /// open if the response went out whole and the client did not ask to close.
    fn finish(&self, plan: &Plan, sent: io::Result<bool>) -> bool {
        match plan.cut {
            Some((_, false)) => {
                let _ = self.stream.shutdown(Shutdown::Write);
                false
            }
            Some((_, true)) => {
                // Linger 0 makes the close that follows send an RST instead of a FIN.
                let _ = socket2::SockRef::from(self.stream).set_linger(Some(Duration::ZERO));
                false
            }
            None => sent.unwrap_or(false) && !self.close,
        }
    }
}

/// The 404 of a route the server does not have (also `no-replay`'s answer, with its status).
pub(super) fn unknown_route(w: &mut Wire, status: u16, head: &Head, close: bool) -> io::Result<()> {
    let message = format!("Unknown request URL: {} {}", head.method, head.path());
    let body = super::wire::error_body(&message, "invalid_request_error", Value::Null);
    w.reply(status, super::wire::JSON, &[], body.as_bytes(), close)
}

/// Which API a generating request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Api {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/responses`: the same script, faults and replay, as Responses events.
    Responses,
}

/// `POST /v1/chat/completions` or `POST /v1/responses`, streamed response number `n`.
pub(super) fn chat(ctx: &Ctx, n: u64, record: &RecordedRequest, api: Api) -> bool {
    let shared = ctx.shared;
    if api == Api::Chat {
        shared.chat_requests.fetch_add(1, SeqCst);
    }
    let request = record.json.as_ref().filter(|j| j.is_object());
    let replies = &shared.replies;
    // A response is not continued: no prefill, no refusal of one.
    let chat = api == Api::Chat;
    let refusal = request
        .filter(|_| chat)
        .and_then(|r| replies.continuation.refusal(r));
    // The script, its plan, and whether it generates a reply (not an error answer).
    let pick = |turn| {
        let script = replies.script(turn, record)?;
        let plan = Plan::new(replies.faults.iter().chain(&script.faults), n);
        let generates = request.is_some() && plan.reply.is_none() && refusal.is_none();
        Some((script, plan, generates))
    };
    // A sequence's script depends on how many replies came before: pick it and count its
    // reply in one step. A reply function runs outside the lock.
    let picked = if replies.by_turn() {
        let mut turns = lock(&shared.generations);
        let picked = pick(*turns);
        *turns += u64::from(picked.as_ref().is_some_and(|p| p.2));
        picked
    } else {
        let picked = pick(0);
        *lock(&shared.generations) += u64::from(picked.as_ref().is_some_and(|p| p.2));
        picked
    };
    let Some((script, plan, generates)) = picked else {
        let mut w = Wire::new(ctx.stream, &shared.stop, &shared.replies.headers);
        let message = "the mock server's reply function panicked";
        let sent = w.error(500, message, Value::Null, &[], ctx.close);
        return sent.is_ok() && !ctx.close;
    };
    let script = if plan.truncate {
        script.with_truncated_tool_args()
    } else {
        script
    };
    let prefill = request
        .filter(|_| chat)
        .and_then(|r| replies.continuation.prefill(r));
    if generates {
        // The whole reply counts, whatever a fault does to its bytes: the mock generates it at
        // once, as llama.cpp goes on generating a stream it keeps for replay.
        let tokens = script.completion_tokens(prefill);
        shared.generated_tokens.fetch_add(tokens, SeqCst);
    }
    let turn = Turn {
        script: &script,
        plan: &plan,
        request,
        conv_id: record
            .header("x-conversation-id")
            .filter(|id| !id.is_empty()),
        prefill,
        refusal,
        api,
    };
    let mut w = ctx.wire(&plan);
    let sent = write_chat(&mut w, ctx, &turn);
    ctx.finish(&plan, sent)
}

/// What one chat request is answered with.
struct Turn<'a> {
    /// The script, its tool arguments already truncated if the plan says so.
    script: &'a Script,
    plan: &'a Plan,
    /// The body, if it is a JSON object.
    request: Option<&'a Value>,
    conv_id: Option<&'a str>,
    /// The final assistant message the reply continues.
    prefill: Option<Prefill<'a>>,
    /// Why the request is refused with a 400 instead of a reply.
    refusal: Option<&'static str>,
    api: Api,
}

impl<'a> Turn<'a> {
    /// The streamed body's pieces under the plan's body faults.
    fn pieces(&self, request: &'a Value) -> Box<dyn Iterator<Item = super::wire::Piece> + 'a> {
        match self.api {
            Api::Chat => Box::new(self.script.pieces(request, self.plan, self.prefill)),
            Api::Responses => Box::new(self.script.response_pieces(request, self.plan).into_iter()),
        }
    }
}

/// Writes the chat response; `Ok(false)` when the connection must end afterwards.
fn write_chat(w: &mut Wire, ctx: &Ctx, turn: &Turn) -> io::Result<bool> {
    let close = ctx.close;
    let Turn {
        script,
        plan,
        request,
        conv_id,
        prefill,
        refusal,
        ..
    } = *turn;
    let streaming = request.is_some_and(|r| r.get("stream") == Some(&Value::Bool(true)));
    if let (Some(request), true, None, None, Some(id), None) = (
        request,
        streaming,
        &plan.reply,
        refusal,
        conv_id,
        plan.no_replay,
    ) {
        // llama.cpp installs the session as soon as the request arrives, before its first
        // token (a client that timed out waiting for the first byte finds it from byte 0).
        // The whole reply is generated at once, so the session is complete before a byte is
        // sent and survives whatever happens to this connection.
        let ring = plan.ring.unwrap_or(MAX_RING_BYTES).min(MAX_RING_BYTES);
        let mut tail = Tail::new(ring);
        for piece in turn.pieces(request).filter(|_| !plan.empty) {
            tail.push(piece.data.as_bytes());
        }
        lock(&ctx.shared.sessions).insert(id, tail.finish(), Instant::now());
    }
    if let Some(d) = plan.stall_before {
        w.pause(d)?;
    }
    let Some(request) = request else {
        let message = "request body must be a JSON object";
        w.error(400, message, Value::Null, &[], close)?;
        return Ok(true);
    };
    if plan.reply.is_some() || refusal.is_some() {
        // llama.cpp installs the session before generating and evicts it when the request
        // fails early, so a failed request also ends the previous session of its id.
        if let (true, Some(id)) = (streaming, conv_id) {
            lock(&ctx.shared.sessions).remove(id);
        }
        match (&plan.reply, refusal) {
            (Some(fault), _) => w.fault_reply(fault, close)?,
            (None, Some(message)) => w.error(400, message, Value::Null, &[], close)?,
            (None, None) => {}
        }
        return Ok(true);
    }
    if !streaming {
        let body = match turn.api {
            Api::Chat => script.completion_with(request, prefill),
            Api::Responses => script.response(request),
        }
        .to_string();
        w.reply(200, super::wire::JSON, &[], body.as_bytes(), close)?;
        return Ok(true);
    }
    w.event_stream_head(close)?;
    if plan.empty {
        w.last_chunk()?;
        return Ok(true);
    }
    w.pieces(turn.pieces(request))?;
    if let Some(d) = plan.hold {
        w.pause(d)?;
        w.last_chunk()?;
        return Ok(false);
    }
    w.last_chunk()?;
    Ok(true)
}

/// `GET /v1/stream?conv_id=ID&from=N`, streamed response number `n`.
pub(super) fn replay(ctx: &Ctx, n: u64, head: &Head) -> bool {
    let plan = Plan::new(&ctx.shared.replies.faults, n);
    let mut w = ctx.wire(&plan);
    let sent = write_replay(&mut w, ctx, &plan, head);
    ctx.finish(&plan, sent)
}

fn write_replay(w: &mut Wire, ctx: &Ctx, plan: &Plan, head: &Head) -> io::Result<bool> {
    let close = ctx.close;
    if let Some(d) = plan.stall_before {
        w.pause(d)?;
    }
    let found = if let Some(status) = plan.no_replay {
        unknown_route(w, status, head, close)?;
        return Ok(true);
    } else if let Some(fault) = &plan.reply {
        w.fault_reply(fault, close)?;
        return Ok(true);
    } else if plan.replay_expired {
        Err((404, NOT_FOUND))
    } else if plan.replay_lost {
        Err((400, OFFSET_LOST))
    } else {
        let query = replay_query(head);
        lookup(&mut lock(&ctx.shared.sessions), &query, Instant::now())
    };
    let found = found.map(|bytes| misreplay(ctx, plan, head, bytes));
    match found {
        Ok(bytes) => {
            ctx.shared.replays.fetch_add(1, SeqCst);
            w.event_stream_head(close)?;
            w.chunk(&bytes)?;
            w.last_chunk()?;
        }
        Err((status, message)) => w.error(status, message, status.into(), &[], close)?,
    }
    Ok(true)
}

/// The bytes a replay that the plan makes wrong sends instead of `bytes` (the stored stream
/// from the offset asked for).
fn misreplay(ctx: &Ctx, plan: &Plan, head: &Head, bytes: Vec<u8>) -> Vec<u8> {
    if !(plan.replay_from_start || plan.replay_foreign || plan.replay_shift.is_some()) {
        return bytes;
    }
    let query = replay_query(head);
    let id = query.iter().find(|(k, _)| k == "conv_id").map(|(_, v)| v);
    let Some(all) = id.and_then(|id| {
        let mut sessions = lock(&ctx.shared.sessions);
        sessions
            .get(id, Instant::now())
            .and_then(|t| t.from(0))
            .map(<[u8]>::to_vec)
    }) else {
        return bytes;
    };
    let asked = all.len() - bytes.len();
    let start = if plan.replay_from_start {
        0
    } else {
        let shift = plan.replay_shift.unwrap_or(0);
        asked
            .saturating_add_signed(isize::try_from(shift).unwrap_or(0))
            .min(all.len())
    };
    let out = all.get(start..).unwrap_or_default().to_vec();
    if plan.replay_foreign {
        let text =
            String::from_utf8_lossy(&out).replace("\"id\":\"chatcmpl-", "\"id\":\"chatcmpl-other-");
        return text.into_bytes();
    }
    out
}

/// A replay or stop request's parameters: the query's, with the id of a
/// `/v1/stream/ID` path as `conv_id`.
fn replay_query(head: &Head) -> Vec<(String, String)> {
    let mut query = http::query_pairs(&head.target);
    let path = head.path();
    if let Some(id) = path
        .strip_prefix("/v1")
        .unwrap_or(path)
        .strip_prefix("/stream/")
    {
        query.retain(|(k, _)| k != "conv_id");
        let decoded = http::parse_query(&format!("conv_id={id}"));
        query.extend(decoded);
    }
    query
}

/// `POST /v1/streams/lookup {"conversation_ids":[...]}` (or `GET /v1/streams`): the sessions
/// held among the ids asked about (all of them for the list), as llama.cpp answers. Not a
/// streamed response: `no-replay` hits it when it hits the latest streamed response.
pub(super) fn lookup_sessions(ctx: &Ctx, head: &Head, body: &Option<Value>) -> bool {
    let shared = ctx.shared;
    let latest = shared.streamed.load(SeqCst).max(1);
    let no_replay = Plan::new(&shared.replies.faults, latest).no_replay;
    let mut w = Wire::new(ctx.stream, &shared.stop, &shared.replies.headers);
    if let Some(status) = no_replay {
        let sent = unknown_route(&mut w, status, head, ctx.close);
        return sent.is_ok() && !ctx.close;
    }
    let asked: Option<Vec<String>> = (head.method == "POST").then(|| {
        body.as_ref()
            .and_then(|b| b.get("conversation_ids"))
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    });
    let now = Instant::now();
    let mut sessions = lock(&shared.sessions);
    let entries: Vec<Value> = sessions
        .ids(now)
        .into_iter()
        .filter(|id| asked.as_ref().is_none_or(|asked| asked.contains(id)))
        .filter_map(|id| {
            let total = sessions.get(&id, now)?.total();
            Some(serde_json::json!({
                "conversation_id": id,
                "is_done": true,
                "total_bytes": total,
                "started_at": 0,
                "completed_at": 0,
            }))
        })
        .collect();
    drop(sessions);
    let body = Value::Array(entries).to_string();
    let sent = w.reply(200, super::wire::JSON, &[], body.as_bytes(), ctx.close);
    sent.is_ok() && !ctx.close
}

/// The replay a query asks for, or the status and message llama.cpp answers, checked in
/// llama.cpp's order: missing id, unknown id, malformed offset, lost offset.
pub(super) fn lookup(
    sessions: &mut Sessions,
    query: &[(String, String)],
    now: Instant,
) -> Result<Vec<u8>, (u16, &'static str)> {
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let id = param("conv_id")
        .filter(|id| !id.is_empty())
        .ok_or((400, MISSING_ID))?;
    let tail = sessions.get(id, now).ok_or((404, NOT_FOUND))?;
    let from = match param("from").filter(|f| !f.is_empty()) {
        None => 0,
        Some(f) if f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u64>().map_err(|_| (400, INVALID_FROM))?
        }
        Some(_) => return Err((400, INVALID_FROM)),
    };
    tail.from(from)
        .map(<[u8]>::to_vec)
        .ok_or((400, OFFSET_LOST))
}

/// `DELETE /v1/stream?conv_id=ID`: 204, idempotent. Not a streamed response: `no-replay`
/// hits it when it hits the latest streamed response.
pub(super) fn stop_replay(ctx: &Ctx, head: &Head) -> bool {
    let shared = ctx.shared;
    let latest = shared.streamed.load(SeqCst).max(1);
    let no_replay = Plan::new(&shared.replies.faults, latest).no_replay;
    let mut w = Wire::new(ctx.stream, &shared.stop, &shared.replies.headers);
    let query = replay_query(head);
    let id = query
        .iter()
        .find(|(k, v)| k == "conv_id" && !v.is_empty())
        .map(|(_, v)| v);
    let sent = match (no_replay, id) {
        (Some(status), _) => unknown_route(&mut w, status, head, ctx.close),
        (None, None) => w.error(400, MISSING_ID, 400.into(), &[], ctx.close),
        (None, Some(id)) => {
            lock(&shared.sessions).remove(id);
            lock(&shared.deleted).push(id.clone());
            w.no_content(ctx.close)
        }
    };
    sent.is_ok() && !ctx.close
}

/// `GET`/`POST /v1/events?QUERY`, streamed response number `n`.
pub(super) fn feed(ctx: &Ctx, n: u64, head: &Head) -> bool {
    ctx.shared.feeds.fetch_add(1, SeqCst);
    let plan = Plan::new(&ctx.shared.replies.faults, n);
    let mut w = ctx.wire(&plan);
    let sent = write_feed(&mut w, ctx, &plan, head);
    ctx.finish(&plan, sent)
}

fn write_feed(w: &mut Wire, ctx: &Ctx, plan: &Plan, head: &Head) -> io::Result<bool> {
    let close = ctx.close;
    if let Some(d) = plan.stall_before {
        w.pause(d)?;
    }
    let query = head.target.split_once('?').map_or("", |(_, q)| q);
    let spec = match query.parse::<FeedSpec>() {
        Ok(spec) => spec,
        Err(e) => {
            w.error(400, &e.to_string(), Value::Null, &[], close)?;
            return Ok(true);
        }
    };
    if let Some(fault) = &plan.reply {
        w.fault_reply(fault, close)?;
        return Ok(true);
    }
    let last_id = head.header("last-event-id");
    if spec.answers_no_content(last_id) {
        w.no_content(close)?;
        return Ok(true);
    }
    if spec.status != 200 {
        let retry_after = spec.retry_after.iter().map(|v| ("Retry-After", v.clone()));
        let message = format!("mock feed: HTTP {}", spec.status);
        let headers: Vec<_> = retry_after.collect();
        w.error(spec.status, &message, Value::Null, &headers, close)?;
        return Ok(true);
    }
    w.event_stream_head(close)?;
    w.pieces(spec.pieces(spec.resume_after(last_id)))?;
    if spec.end == FeedEnd::Hold {
        w.hold(spec.ping)?;
        return Ok(false);
    }
    w.last_chunk()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_answers_like_llama_cpp() {
        let now = Instant::now();
        let mut sessions = Sessions::new(Duration::from_secs(60));
        let mut tail = Tail::new(6);
        tail.push(b"0123456789");
        sessions.insert("c 1", tail.finish(), now);
        type Answer = Result<&'static [u8], (u16, &'static str)>;
        let cases: &[(&str, Answer)] = &[
            ("", Err((400, MISSING_ID))),
            ("conv_id=", Err((400, MISSING_ID))),
            ("conv_id=nope&from=x", Err((404, NOT_FOUND))),
            ("conv_id=c+1", Err((400, OFFSET_LOST))),
            ("conv_id=c%201&from=", Err((400, OFFSET_LOST))),
            ("conv_id=c+1&from=4", Ok(b"456789")),
            ("conv_id=c+1&from=9", Ok(b"9")),
            ("conv_id=c+1&from=10", Ok(b"")),
            ("conv_id=c+1&from=11", Ok(b"")),
            ("conv_id=c+1&from=3", Err((400, OFFSET_LOST))),
            ("conv_id=c+1&from=-1", Err((400, INVALID_FROM))),
            ("conv_id=c+1&from=+5", Err((400, INVALID_FROM))),
            ("conv_id=c+1&from=5x", Err((400, INVALID_FROM))),
            (
                "conv_id=c+1&from=99999999999999999999",
                Err((400, INVALID_FROM)),
            ),
        ];
        for (query, want) in cases {
            let got = lookup(&mut sessions, &http::parse_query(query), now);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{query}");
        }
    }
}
