//! Which script answers which chat request, and the server-wide settings beside it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::continuation::Continuation;
use super::fault::FaultRule;
use super::record::RecordedRequest;
use super::script::{DEFAULT_MODEL, Script};
use super::session::DEFAULT_REPLAY_TTL;

type ReplyFn = dyn Fn(&RecordedRequest) -> Script + Send + Sync;

/// What a [`MockServer`](super::MockServer) answers: one [`Script`] for every chat request, a
/// sequence of scripts (one per turn of an agent loop), or a function of the request; plus the
/// server's own faults and settings.
///
/// - `Replies::from(script)` (what [`MockServer::start`](super::MockServer::start) does with a
///   `Script`): the script answers every chat request, and its faults are the server's.
/// - [`Replies::sequence`]: the k-th chat request that gets a reply is answered by the k-th
///   script; after the last, the last answers every request. A request answered by a
///   `status`/`html` fault or rejected as invalid uses up no script, so a retried turn gets the
///   same script again.
/// - [`Replies::from_fn`]: the function picks the script from the recorded request (its
///   messages, headers, ...). If it panics, the request gets a 500.
///
/// # Faults
///
/// The server's faults ([`Replies::fault`], or the faults of the one script given to
/// [`MockServer::start`](super::MockServer::start)) hit every response of their schedule:
/// chat requests, replay `GET`s and feeds, and the connections. A script in a sequence or from
/// a function keeps its own faults for the chat replies it gives: they are scheduled by the
/// same streamed-response numbers, and only faults that shape a chat response (cuts, stalls,
/// statuses, body faults, `no-replay`, `ring`) take effect there; connection behaviours
/// (`stale`, `idle-close-ms`, `close-after-response`) only work as server faults.
///
/// ```
/// use oai_sse::mock::{MockServer, Replies, Script};
///
/// // An agent loop: a tool call for the user's question, text once the tool answered.
/// let replies = Replies::from_fn(|request| match request.last_message_role() {
///     Some("tool") => Script::new().text("It is sunny."),
///     _ => Script::new().tool_call("get_weather", r#"{"city":"Oslo"}"#),
/// });
/// let server = MockServer::start(replies)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Replies {
    source: Source,
    pub(super) faults: Vec<FaultRule>,
    pub(super) replay_ttl: Duration,
    pub(super) continuation: Continuation,
    pub(super) replay_routes: ReplayRoutes,
    /// Sent on every response, after the response's own headers; a response that sets a
    /// header of the same name itself (the `html` fault's `Server: nginx`) keeps its own.
    pub(super) headers: Vec<(String, String)>,
}

/// The shapes of llama.cpp's stream-replay routes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplayRoutes {
    /// llama.cpp 0c1e570 (llama-cpp-python 0.3.36): `GET`/`DELETE /v1/stream?conv_id=ID`
    /// and `POST /v1/streams/lookup`.
    #[default]
    Query,
    /// The same without the lookup route (older builds, a gateway that passes only
    /// `/v1/stream` on).
    QueryWithoutLookup,
    /// The shape of the pull request that added replay (ggml-org/llama.cpp#23226):
    /// `GET`/`DELETE /v1/stream/ID` and `GET /v1/streams`.
    Path,
}

#[derive(Clone)]
enum Source {
    Sequence(Vec<Script>),
    Function(Arc<ReplyFn>),
}

impl Replies {
    /// Script k answers the k-th chat request that gets a reply; the last answers the rest.
    /// An empty sequence answers with [`Script::default`].
    pub fn sequence(scripts: impl IntoIterator<Item = Script>) -> Self {
        Self::with(Source::Sequence(scripts.into_iter().collect()))
    }

    /// `reply` picks the script for each chat request.
    pub fn from_fn(reply: impl Fn(&RecordedRequest) -> Script + Send + Sync + 'static) -> Self {
        Self::with(Source::Function(Arc::new(reply)))
    }

    fn with(source: Source) -> Self {
        Self {
            source,
            faults: Vec::new(),
            replay_ttl: DEFAULT_REPLAY_TTL,
            continuation: Continuation::default(),
            replay_routes: ReplayRoutes::default(),
            headers: Vec::new(),
        }
    }

    /// Adds a server fault: it hits every response (or connection) of its schedule.
    pub fn fault(mut self, fault: impl Into<FaultRule>) -> Self {
        self.faults.push(fault.into());
        self
    }

    /// How long a stream session stays replayable (default [`DEFAULT_REPLAY_TTL`], 300 s).
    pub fn replay_ttl(mut self, ttl: Duration) -> Self {
        self.replay_ttl = ttl;
        self
    }

    /// Which shape of llama.cpp's replay routes the server has (default
    /// [`ReplayRoutes::Query`], the shape of the llama.cpp the tests build).
    pub fn replay_routes(mut self, routes: ReplayRoutes) -> Self {
        self.replay_routes = routes;
        self
    }

    /// Whether and how the server continues a final assistant message (default
    /// [`Continuation::Ignores`]: it answers afresh).
    pub fn continuation(mut self, continuation: Continuation) -> Self {
        self.continuation = continuation;
        self
    }

    /// The `Server` header of every response, e.g. `"llama.cpp"` (what llama.cpp's server
    /// sends, and how clients recognise it); as [`Replies::header`].
    pub fn server_header(self, value: impl Into<String>) -> Self {
        self.header("Server", value)
    }

    /// Adds a header to every response the server sends, e.g. LiteLLM's
    /// `llm_provider-server: llama.cpp`; setting a name again (in any case) replaces its
    /// value. A response that sets the header itself keeps its own value (the `html` fault's
    /// `Server: nginx`: a gateway answered).
    ///
    /// # Panics
    /// If `name` is not an HTTP token, names a header that frames the response
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`), or `value` has a control
    /// character other than tab: a test's mistake, caught before it garbles responses.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if let Err(why) = check_header(&name, &value) {
            panic!("Replies::header({name:?}, {value:?}): {why}");
        }
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value));
        self
    }

    /// The model `/v1/models` lists: the first script's, or [`DEFAULT_MODEL`] for a function.
    pub(super) fn model(&self) -> &str {
        match &self.source {
            Source::Sequence(scripts) => scripts.first().map_or(DEFAULT_MODEL, Script::model_name),
            Source::Function(_) => DEFAULT_MODEL,
        }
    }

    /// The script for the chat request that would be reply number `turn` (0-based); `None` if
    /// the reply function panicked.
    pub(super) fn script(&self, turn: u64, request: &RecordedRequest) -> Option<Script> {
        match &self.source {
            Source::Sequence(scripts) => {
                let last = scripts.len().saturating_sub(1);
                let k = usize::try_from(turn).unwrap_or(usize::MAX).min(last);
                Some(scripts.get(k).cloned().unwrap_or_default())
            }
            Source::Function(reply) => {
                let reply = std::panic::AssertUnwindSafe(|| reply(request));
                std::panic::catch_unwind(reply).ok()
            }
        }
    }

    /// Whether the script depends on the turn number (so picking it must be atomic with
    /// counting the reply).
    pub(super) fn by_turn(&self) -> bool {
        matches!(self.source, Source::Sequence(_))
    }
}

/// The script answers every chat request; its faults become the server's.
impl From<Script> for Replies {
    fn from(mut script: Script) -> Self {
        let faults = std::mem::take(&mut script.faults);
        Self {
            faults,
            ..Self::sequence([script])
        }
    }
}

impl fmt::Debug for Replies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Replies");
        match &self.source {
            Source::Sequence(scripts) => d.field("sequence", scripts),
            Source::Function(_) => d.field("function", &"Fn(&RecordedRequest) -> Script"),
        };
        d.field("faults", &self.faults)
            .field("replay_ttl", &self.replay_ttl)
            .field("continuation", &self.continuation)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Why a header cannot be added to the mock's responses (see [`Replies::header`]).
fn check_header(name: &str, value: &str) -> Result<(), &'static str> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err("the name is not an HTTP token");
    }
    let framing = ["content-length", "transfer-encoding", "connection"];
    if framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Err("the mock frames its responses itself");
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("the value has a control character");
    }
    Ok(())
}
