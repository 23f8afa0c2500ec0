//! `oai-sse mock`: the fault-injecting mock server as a process, for any client.

use super::Failure;
use super::args::{Args, UsageError};
use oai_sse::mock::{
    Continuation, FaultRule, MockServer, RecordedRequest, Replies, Schedule, Script,
};
use std::net::{SocketAddr, ToSocketAddrs};
use std::thread;
use std::time::Duration;

pub const HELP: &str = "\
usage: oai-sse mock [--listen ADDR] [--fault SPEC]... [--reply TEXT] [--reasoning TEXT]
                    [--tool NAME=JSON_ARGS]... [--model NAME] [--replay-ttl S]
                    [--continuation continues|echoes|ignores] [--server-header VALUE]
                    [--header 'NAME: VALUE']...

Serves a fault-injecting OpenAI-compatible chat server until killed (Ctrl-C), for any client:
curl, other SDKs, your own code. Prints `oai-sse mock listening on http://ADDR/v1` on stderr
once it accepts connections, then logs each request (RUST_LOG=warn silences that).

  POST /v1/chat/completions  with \"stream\": true, a chunked text/event-stream of
                             chat.completion.chunk events: role, reasoning_content and the
                             reply word by word, tool-call arguments in ~8-byte pieces, the
                             finish reason, usage if stream_options.include_usage, then
                             data: [DONE]; without it, one chat.completion JSON body.
                             With an X-Conversation-Id: ID header, a streamed reply is kept
                             for replay (llama.cpp's resume protocol). usage counts the
                             pieces generated as completion tokens. A request ending with
                             an assistant message PREFIX may be continued (--continuation)
  GET  /v1/stream?conv_id=ID&from=N
                             replays the kept SSE bytes of ID from byte N (default 0): 200
                             text/event-stream; 400 \"Missing conversation id in path\",
                             404 \"Stream not found or expired\", 400 \"Invalid 'from' offset\",
                             400 \"Stream offset lost, please restart\"
  DELETE /v1/stream?conv_id=ID
                             forgets ID; 204, idempotent
  GET|POST /v1/events?QUERY  a numbered SSE feed (id: K, event: tick, data: {\"n\":K}); a
                             Last-Event-ID: K header resumes after event K. QUERY:
                               count=N          events 1..=N (default 10)
                               event=NAME       the event field (default tick; empty: none)
                               multiline=1      data on three lines
                               retry=MS         a retry: MS field first
                               interval-ms=MS   wait MS between events
                               ping-ms=MS       a `: ping` comment every MS while waiting
                               priming=1        an id-only event first (id: 0, or the
                                                Last-Event-ID resumed from)
                               end=close|hold|204
                                                after the last event: end the body (close),
                                                keep the connection open (hold), or answer
                                                204 once Last-Event-ID is N (204)
                               status=CODE      answer 204, or an error status with a JSON
                                                body; retry-after=TEXT adds Retry-After
  GET  /v1/models            lists the model
  The /v1 prefix is optional; anything else is a 404 with an OpenAI error body.

options:
  --listen ADDR          address to listen on (default 127.0.0.1:8080; a bare port means
                         127.0.0.1:PORT; port 0 picks a free one). Loopback only: the mock
                         never listens beyond this machine
  --fault SPEC           inject a fault (repeatable; several combine, e.g. crlf + ping + a reset)
  --reply TEXT           the reply (default \"Hello from the oai-sse mock server.\", or no
                         text when --tool is given)
  --reasoning TEXT       reasoning streamed as reasoning_content before the reply
  --tool NAME=JSON_ARGS  add a tool call with these arguments (repeatable; must be valid JSON)
  --model NAME           the model /v1/models lists and replies name when a request gives none
                         (default mock-model; otherwise the request's model is echoed)
  --replay-ttl S         how long a kept reply stays replayable (default 300 seconds)
  --continuation MODE    what a request ending with {\"role\":\"assistant\",\"content\":PREFIX}
                         gets: the reply after PREFIX when flagged \"continue_final_message\":
                         true, \"add_generation_prompt\": false (continues, like vLLM);
                         PREFIX, then the reply after it, flags or not (echoes, like
                         llama.cpp without the flags); the whole reply (ignores, default).
                         A reply that does not start with PREFIX is sent whole; a prefilled
                         reply has no reasoning; a prefilled request with n > 1 gets 400
  --server-header VALUE  the Server header of every response (e.g. llama.cpp)
  --header 'NAME: VALUE' a header on every response (repeatable; e.g.
                         'llm_provider-server: llama.cpp', as LiteLLM sends)

fault specs: FAULT[=VALUE][,OPTION=VALUE]...
  N counts bytes of the whole response: status line, headers and chunk framing. S is seconds
  (fractions allowed), MS milliseconds. Values cannot contain commas.
  Hitting any streamed response (chat requests, replay GETs and feed requests, numbered
  together in arrival order):
  close-after=N             write N bytes, then close the connection (FIN)
  reset-after=N             write N bytes, then reset the connection (RST); 0 resets before
                            the status line
  stall-after=N,secs=S      write N bytes, go silent for S seconds, then carry on (secs required)
  stall-before=S            wait S seconds before the status line
  slices=N[,delay-ms=MS]    write the response N bytes at a time, MS apart
  status=CODE               answer with HTTP CODE and an OpenAI error body; options:
                              retry-after=TEXT          Retry-After header (seconds or HTTP date)
                              retry-after-ms=MS         retry-after-ms header
                              should-retry=true|false   x-should-retry header
                              type=T                    error.type (default from the code)
                              code=C                    error.code (default null)
                              message=M                 error.message
  html=CODE                 answer with a gateway's HTML error page (nginx style)
  Shaping chat streams only:
  truncate-tool-args        drop the last piece of each tool call's arguments (invalid JSON)
  no-done                   end the stream without the finish chunk, usage and [DONE]
  hold-open=S               after the finish (and usage) chunk, send nothing for S seconds,
                            then close
  crlf                      CRLF line endings in the SSE framing
  ping=MS                   a `: ping` comment between events, then a pause of MS
  Stream replay:
  no-replay[=STATUS]        no replay route: GET/DELETE /v1/stream answer STATUS (default
                            404) and chat requests keep nothing
  replay-expired            a replay GET answers 404 \"Stream not found or expired\"
  replay-lost               a replay GET answers 400 \"Stream offset lost, please restart\"
  ring=BYTES                a kept reply keeps only its last BYTES (older offsets are lost)
  Connections (keep-alive):
  stale[=P][,seed=S]        a request on a reused connection is read, then the connection
                            closes without a byte, with probability P (default 1); times/after
                            count requests on reused connections
  idle-close-ms=MS          close a kept-alive connection after MS idle; times/after count
                            connections
  close-after-response      close the connection after each response without sending
                            Connection: close; times/after count requests of any kind
  Every fault also takes times=N (hit only N requests) and after=K (leave the first K
  alone); without times it hits every request after the first K.

examples:
  oai-sse mock --fault reset-after=300,times=1           # reset the first stream mid-way
  oai-sse mock --fault status=429,retry-after=1,times=2  # rate-limit the first two requests
  oai-sse mock --fault stall-after=200,secs=5            # every stream goes silent for 5 s
  oai-sse mock --fault status=503,after=1,times=1        # only the second request fails
  oai-sse mock --fault close-after=700,times=1           # cut the first stream; replay it:
  curl -N 'http://127.0.0.1:8080/v1/stream?conv_id=c1&from=0'
  oai-sse mock --tool 'get_weather={\"city\":\"Paris\"}' --fault truncate-tool-args,times=1
  curl -N http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \\
    -H 'x-conversation-id: c1' \\
    -d '{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'
  curl -N 'http://127.0.0.1:8080/v1/events?count=5&interval-ms=500&retry=1000'";

pub const TAKES_VALUE: &[&str] = &[
    "--listen",
    "--fault",
    "--reply",
    "--reasoning",
    "--tool",
    "--model",
    "--replay-ttl",
    "--continuation",
    "--server-header",
    "--header",
];

/// How often new requests are looked for, to log them.
const POLL: Duration = Duration::from_millis(50);

pub fn run(mut args: Args) -> Result<(), Failure> {
    let listen: String = args
        .value(&["--listen"])?
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let specs = args.values(&["--fault"])?;
    let reply: Option<String> = args.value(&["--reply"])?;
    let reasoning: Option<String> = args.value(&["--reasoning"])?;
    let tools = args.values(&["--tool"])?;
    let model: Option<String> = args.value(&["--model"])?;
    let replay_ttl: Option<String> = args.value(&["--replay-ttl"])?;
    let continuation: Option<String> = args.value(&["--continuation"])?;
    let server_header: Option<String> = args.value(&["--server-header"])?;
    let headers = args.values(&["--header"])?;
    args.finish(0)?;

    let mut script = Script::new();
    if let Some(reply) = reply {
        script = script.text(reply);
    }
    if let Some(reasoning) = reasoning {
        script = script.reasoning(reasoning);
    }
    if let Some(model) = model {
        script = script.model(model);
    }
    for tool in &tools {
        let (name, arguments) = tool
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| UsageError(format!("--tool {tool:?}: expected NAME=JSON_ARGS")))?;
        serde_json::from_str::<serde_json::Value>(arguments)
            .map_err(|e| UsageError(format!("--tool {name}: arguments are not JSON: {e}")))?;
        script = script.tool_call(name, arguments);
    }
    let mut rules = Vec::with_capacity(specs.len());
    for spec in specs {
        let rule: FaultRule = spec
            .parse()
            .map_err(|e| UsageError(format!("--fault {spec:?}: {e}")))?;
        script = script.fault(rule.clone());
        rules.push((spec, rule));
    }
    let mut replies = Replies::from(script);
    if let Some(ttl) = replay_ttl {
        let secs = ttl
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| UsageError(format!("--replay-ttl {ttl:?}: expected seconds")))?;
        replies = replies.replay_ttl(secs);
    }
    if let Some(mode) = continuation {
        replies = replies.continuation(match mode.as_str() {
            "continues" => Continuation::Continues,
            "echoes" => Continuation::Echoes,
            "ignores" => Continuation::Ignores,
            _ => {
                let why = format!("--continuation {mode:?}: expected continues, echoes or ignores");
                return Err(UsageError(why).into());
            }
        });
    }
    if let Some(value) = server_header {
        check_header("--server-header", "Server", &value)?;
        replies = replies.server_header(value);
    }
    for header in &headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| UsageError(format!("--header {header:?}: expected 'NAME: VALUE'")))?;
        let (name, value) = (name.trim(), value.trim());
        check_header("--header", name, value)?;
        replies = replies.header(name, value);
    }
    let addrs = loopback_addrs(&listen)?;

    let server = MockServer::start_on(&addrs[..], replies)
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    super::logging::init(log::LevelFilter::Info);
    eprintln!("oai-sse mock listening on {}", server.base_url());
    let (mut seen, mut chats) = (0, 0);
    loop {
        thread::sleep(POLL);
        let (new, total) = server.requests_since(seen);
        for (_, request) in &new {
            log_request(request, &rules, &mut chats);
        }
        seen = total;
    }
}

/// A usage error for a header [`Replies::header`] refuses (it panics on them): a name that is
/// no HTTP token or frames the response, a value with a control character.
fn check_header(option: &str, name: &str, value: &str) -> Result<(), UsageError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let framing = ["content-length", "transfer-encoding", "connection"];
    let why = if name.is_empty() || !name.bytes().all(token) {
        "the name is not an HTTP token"
    } else if framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        "the mock frames its responses itself"
    } else if value.chars().any(|c| c.is_control() && c != '\t') {
        "the value has a control character"
    } else {
        return Ok(());
    };
    Err(UsageError(format!("{option} {name}: {value:?}: {why}")))
}

/// The loopback addresses `listen` stands for; anything else is a usage error.
fn loopback_addrs(listen: &str) -> Result<Vec<SocketAddr>, UsageError> {
    let with_host;
    let listen = if listen.parse::<u16>().is_ok() {
        with_host = format!("127.0.0.1:{listen}");
        &with_host
    } else {
        listen
    };
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| UsageError(format!("--listen {listen:?}: {e}")))?
        .collect();
    let loopback: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| a.ip().is_loopback())
        .collect();
    if loopback.is_empty() {
        return Err(UsageError(format!(
            "--listen {listen}: the mock server listens on loopback addresses only \
             (127.0.0.1, [::1], localhost)"
        )));
    }
    Ok(loopback)
}

/// Logs one served request, with the faults the server applied to it: chat requests are
/// numbered, and each streamed response shows the faults scheduled on its number.
fn log_request(request: &RecordedRequest, rules: &[(String, FaultRule)], chats: &mut u64) {
    if request.dropped {
        log::info!(
            "{} {} (dropped: stale connection {})",
            request.method,
            request.path,
            request.connection
        );
        return;
    }
    let Some(n) = request.streamed else {
        log::info!("{} {}", request.method, request.path);
        return;
    };
    let applied: Vec<&str> = rules
        .iter()
        .filter(|(_, rule)| rule.fault.schedule() == Schedule::Streamed && rule.applies_to(n))
        .map(|(spec, _)| spec.as_str())
        .collect();
    let faults = if applied.is_empty() {
        "no fault".to_owned()
    } else {
        format!("fault {}", applied.join(" + "))
    };
    if !request.is_chat() {
        log::info!(
            "{} {} (streamed response {n}, {faults})",
            request.method,
            request.path
        );
        return;
    }
    *chats += 1;
    let stream = request
        .json
        .as_ref()
        .and_then(|j| j.get("stream"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    log::info!(
        "{} {} (chat request {}, {}, {faults})",
        request.method,
        request.path,
        *chats,
        if stream { "streamed" } else { "not streamed" }
    );
}
