//! The faults the mock server injects, which requests they hit, and their text spec syntax.

use std::{str::FromStr, time::Duration};

/// [`Fault::Stale`]'s probability scale: this many parts per million is "always".
pub const PER_MILLION: u32 = 1_000_000;

/// One way to break a response or a connection. Byte offsets count from the first byte of the
/// status line, headers and chunk framing included. [`Fault::schedule`] says what a rule's
/// `after`/`times` count for each fault.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Write the first n bytes, then close the socket (FIN).
    CloseAfter(usize),
    /// Write the first n bytes, then reset the connection (RST); 0 resets before the status line.
    ResetAfter(usize),
    /// Write the first `bytes` bytes, go silent for `pause`, then carry on.
    StallAfter {
        /// Bytes written before the pause.
        bytes: usize,
        /// How long to go silent.
        pause: Duration,
    },
    /// Wait before writing the status line.
    StallBeforeStatus(Duration),
    /// Answer with an HTTP error status and an OpenAI-style error body.
    Status(StatusFault),
    /// Answer with a gateway's HTML error page (like nginx's 502).
    HtmlError(u16),
    /// Drop the last piece of each tool call's arguments, so they are not valid JSON.
    TruncateToolArgs,
    /// End the stream without the finish-reason chunk, the usage chunk and `data: [DONE]`.
    NoDone,
    /// After the finish-reason (and usage) chunk, send nothing for this long, then close.
    HoldOpen(Duration),
    /// Use CRLF line endings in the SSE framing.
    Crlf,
    /// Write a `: ping` comment between events and wait this long after it.
    Ping(Duration),
    /// Write the response in slices of `size` bytes with `delay` between them.
    Slices {
        /// Bytes per write.
        size: usize,
        /// Pause after each write.
        delay: Duration,
    },
    /// The server has no stream-replay route: `GET`/`DELETE /v1/stream` answer this status with
    /// an "Unknown request URL" body, and a chat request this hits registers no stream session.
    NoReplay(u16),
    /// A replay `GET /v1/stream` answers 404 "Stream not found or expired".
    ReplayExpired,
    /// A replay `GET /v1/stream` answers 400 "Stream offset lost, please restart".
    ReplayLost,
    /// A replay starts this many bytes after the offset asked for (before it, if negative):
    /// a server that counts offsets in other bytes than the client (a gateway that re-frames).
    ReplayShift(i64),
    /// A replay ignores the offset and sends the stream from its first byte.
    ReplayFromStart,
    /// A replay sends another conversation's stream: the stored bytes under another
    /// completion id.
    ReplayForeign,
    /// A chat stream answers `200 text/event-stream` and ends without a single event
    /// (llama-cpp-python does so for a prompt longer than its context).
    EmptyStream,
    /// The stream session a chat request registers keeps only its last this many bytes; replays
    /// from earlier offsets answer 400 "Stream offset lost".
    Ring(usize),
    /// A request that is not the first on its keep-alive connection is read, then answered by
    /// closing the connection without a byte (the server closed the idle connection just as the
    /// client reused it), with probability `per_million` / [`PER_MILLION`], drawn from a
    /// generator seeded with `seed`.
    Stale {
        /// Chance in parts per million; [`PER_MILLION`] drops every reused request.
        per_million: u32,
        /// Seeds the deterministic draw.
        seed: u64,
    },
    /// Close a kept-alive connection that stays idle this long after a response.
    IdleClose(Duration),
    /// Close the connection right after the response, without announcing it with
    /// `Connection: close` (so the client believes it can reuse the connection).
    CloseAfterResponse,
}

/// What a [`FaultRule`]'s `after` and `times` count: the sequence a fault is scheduled by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schedule {
    /// Streamed responses, numbered together in arrival order: chat completion requests,
    /// replay `GET /v1/stream` requests and `/v1/events` feed requests.
    Streamed,
    /// Requests that arrive on a reused keep-alive connection (not the first on it).
    Reuses,
    /// Accepted connections.
    Connections,
    /// Requests of any kind, in arrival order (as [`MockServer::requests_since`] numbers them).
    ///
    /// [`MockServer::requests_since`]: super::MockServer::requests_since
    Requests,
}

/// The error response of [`Fault::Status`]; `None` fields are left out or get a default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFault {
    /// The HTTP status code.
    pub code: u16,
    /// Sent as the `Retry-After` header (seconds or an HTTP date, as given).
    pub retry_after: Option<String>,
    /// Sent as the `retry-after-ms` header.
    pub retry_after_ms: Option<u64>,
    /// Sent as the `x-should-retry` header.
    pub should_retry: Option<bool>,
    /// `error.type`; defaults from the status code.
    pub error_type: Option<String>,
    /// `error.code`; `null` when absent.
    pub error_code: Option<String>,
    /// `error.message`; defaults to "mock error: HTTP {code}".
    pub message: Option<String>,
}

/// A fault and the requests it hits: numbers `after + 1 ..= after + times` (1-based) of the
/// sequence its fault is scheduled by ([`Fault::schedule`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// What goes wrong.
    pub fault: Fault,
    /// Requests to leave alone before the first hit.
    pub after: u64,
    /// How many requests to hit; `None` hits every request after `after`.
    pub times: Option<u64>,
}

impl Fault {
    /// A [`Fault::Status`] with only the code set.
    pub fn status(code: u16) -> Self {
        Self::Status(StatusFault {
            code,
            ..StatusFault::default()
        })
    }

    /// A [`Fault::Stale`] with probability `p` (clamped to 0..=1) and seed 0.
    pub fn stale(p: f64) -> Self {
        Self::Stale {
            per_million: probability(p),
            seed: 0,
        }
    }

    /// This fault on the first `n` requests of its [`Schedule`] only.
    pub fn times(self, n: u64) -> FaultRule {
        FaultRule::from(self).times(n)
    }

    /// This fault on every request of its [`Schedule`] after the first `k`.
    pub fn after(self, k: u64) -> FaultRule {
        FaultRule::from(self).after(k)
    }

    /// What this fault's `after`/`times` count.
    pub fn schedule(&self) -> Schedule {
        match self {
            Self::Stale { .. } => Schedule::Reuses,
            Self::IdleClose(_) => Schedule::Connections,
            Self::CloseAfterResponse => Schedule::Requests,
            _ => Schedule::Streamed,
        }
    }
}

/// `p` in 0..=1 as parts per million (NaN counts as 0).
fn probability(p: f64) -> u32 {
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
    // In 0..=1_000_000 after the clamp, so the cast is exact enough and cannot wrap.
    (p * f64::from(PER_MILLION)).round() as u32
}

impl From<Fault> for FaultRule {
    fn from(fault: Fault) -> Self {
        Self {
            fault,
            after: 0,
            times: None,
        }
    }
}

impl FaultRule {
    /// Hits only `n` requests.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Leaves the first `k` requests alone.
    pub fn after(mut self, k: u64) -> Self {
        self.after = k;
        self
    }

    /// Whether the `n`th request (1-based) of the fault's [`Schedule`] gets this fault.
    pub fn applies_to(&self, n: u64) -> bool {
        n > self.after && self.times.is_none_or(|t| n - self.after <= t)
    }
}

/// Why a fault spec did not parse. Fix the spec; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultSpecError {
    /// Nothing was given.
    #[error("empty fault spec")]
    Empty,
    /// The fault name is not one of the list.
    #[error(
        "unknown fault `{0}` (expected close-after, reset-after, stall-after, stall-before, status, \
         html, truncate-tool-args, no-done, hold-open, crlf, ping, slices, no-replay, \
         replay-expired, replay-lost, replay-shift, replay-from-start, replay-foreign, \
         empty-stream, ring, stale, idle-close-ms or close-after-response)"
    )]
    UnknownFault(String),
    /// An option the fault does not take.
    #[error("option `{option}` does not apply to fault `{fault}`")]
    UnknownOption {
        /// The fault.
        fault: String,
        /// The option.
        option: String,
    },
    /// A key without `=value`.
    #[error("`{0}` needs a value (`{0}=...`)")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("invalid value `{value}` for `{key}`")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// A required option is missing.
    #[error("fault `{fault}` needs option `{option}=...`")]
    MissingOption {
        /// The fault.
        fault: String,
        /// The option it needs.
        option: &'static str,
    },
}

/// Parses `FAULT[=VALUE][,OPTION=VALUE]...`, e.g. `status=429,retry-after=1,times=2`.
/// The grammar is documented in the [module docs](crate::mock#fault-specs).
impl FromStr for FaultRule {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        use FaultSpecError as E;
        let mut items = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split_once('=')
                    .map_or((s, None), |(k, v)| (k.trim(), Some(v.trim())))
            });
        let (kind, value) = items.next().ok_or(E::Empty)?;
        let flag = |fault: Fault| match value {
            None => Ok(fault),
            Some(v) => Err(invalid(kind, v)),
        };
        let fault = match kind {
            "close-after" => Fault::CloseAfter(number(kind, value)?),
            "reset-after" => Fault::ResetAfter(number(kind, value)?),
            "stall-after" => Fault::StallAfter {
                bytes: number(kind, value)?,
                pause: Duration::ZERO,
            },
            "stall-before" => Fault::StallBeforeStatus(secs(kind, value)?),
            "status" => Fault::status(status_code(kind, value)?),
            "html" => Fault::HtmlError(status_code(kind, value)?),
            "truncate-tool-args" => flag(Fault::TruncateToolArgs)?,
            "no-done" => flag(Fault::NoDone)?,
            "hold-open" => Fault::HoldOpen(secs(kind, value)?),
            "crlf" => flag(Fault::Crlf)?,
            "ping" => Fault::Ping(millis(kind, value)?),
            "slices" => match number(kind, value)? {
                0 => return Err(invalid(kind, "0")),
                size => Fault::Slices {
                    size,
                    delay: Duration::ZERO,
                },
            },
            "no-replay" => match value {
                None => Fault::NoReplay(404),
                Some(_) => Fault::NoReplay(error_status(kind, value)?),
            },
            "replay-expired" => flag(Fault::ReplayExpired)?,
            "replay-lost" => flag(Fault::ReplayLost)?,
            "replay-shift" => match value.map(str::parse::<i64>) {
                Some(Ok(n)) => Fault::ReplayShift(n),
                Some(Err(_)) => return Err(invalid(kind, value.unwrap_or_default())),
                None => return Err(E::MissingValue(kind.to_owned())),
            },
            "replay-from-start" => flag(Fault::ReplayFromStart)?,
            "replay-foreign" => flag(Fault::ReplayForeign)?,
            "empty-stream" => flag(Fault::EmptyStream)?,
            "ring" => Fault::Ring(number(kind, value)?),
            "stale" => match value {
                None => Fault::stale(1.0),
                Some(v) => match v.parse::<f64>() {
                    Ok(p) if (0.0..=1.0).contains(&p) => Fault::stale(p),
                    _ => return Err(invalid(kind, v)),
                },
            },
            "idle-close-ms" => Fault::IdleClose(millis(kind, value)?),
            "close-after-response" => flag(Fault::CloseAfterResponse)?,
            _ => return Err(E::UnknownFault(kind.to_owned())),
        };
        let mut rule = FaultRule::from(fault);
        let mut has_secs = false;
        for (key, value) in items {
            match (key, &mut rule.fault) {
                ("times", _) => rule.times = Some(number(key, value)?),
                ("after", _) => rule.after = number(key, value)?,
                ("secs", Fault::StallAfter { pause, .. }) => {
                    *pause = secs(key, value)?;
                    has_secs = true;
                }
                ("delay-ms", Fault::Slices { delay, .. }) => *delay = millis(key, value)?,
                ("seed", Fault::Stale { seed, .. }) => *seed = number(key, value)?,
                ("retry-after", Fault::Status(s)) => s.retry_after = Some(text(key, value)?),
                ("retry-after-ms", Fault::Status(s)) => {
                    s.retry_after_ms = Some(number(key, value)?)
                }
                ("should-retry", Fault::Status(s)) => {
                    s.should_retry = Some(number(key, value)?);
                }
                ("type", Fault::Status(s)) => s.error_type = Some(text(key, value)?),
                ("code", Fault::Status(s)) => s.error_code = Some(text(key, value)?),
                ("message", Fault::Status(s)) => s.message = Some(text(key, value)?),
                _ => {
                    return Err(E::UnknownOption {
                        fault: kind.to_owned(),
                        option: key.to_owned(),
                    });
                }
            }
        }
        if matches!(rule.fault, Fault::StallAfter { .. }) && !has_secs {
            return Err(E::MissingOption {
                fault: kind.to_owned(),
                option: "secs",
            });
        }
        Ok(rule)
    }
}

fn invalid(key: &str, value: &str) -> FaultSpecError {
    FaultSpecError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

fn text(key: &str, value: Option<&str>) -> Result<String, FaultSpecError> {
    value
        .map(str::to_owned)
        .ok_or_else(|| FaultSpecError::MissingValue(key.to_owned()))
}

fn number<T: FromStr>(key: &str, value: Option<&str>) -> Result<T, FaultSpecError> {
    let v = text(key, value)?;
    v.parse().map_err(|_| invalid(key, &v))
}

fn status_code(key: &str, value: Option<&str>) -> Result<u16, FaultSpecError> {
    match number(key, value)? {
        code @ 100..=599 => Ok(code),
        code => Err(invalid(key, &code.to_string())),
    }
}

fn error_status(key: &str, value: Option<&str>) -> Result<u16, FaultSpecError> {
    match number(key, value)? {
        code @ 400..=599 => Ok(code),
        code => Err(invalid(key, &code.to_string())),
    }
}

/// Seconds, fractions allowed (`2`, `0.25`).
fn secs(key: &str, value: Option<&str>) -> Result<Duration, FaultSpecError> {
    let v = text(key, value)?;
    v.parse()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| invalid(key, &v))
}

fn millis(key: &str, value: Option<&str>) -> Result<Duration, FaultSpecError> {
    number(key, value).map(Duration::from_millis)
}

/// The faults hitting one streamed response, merged (the first of each kind wins). Connection
/// behaviours ([`Schedule::Reuses`], [`Schedule::Connections`], [`Schedule::Requests`]) are
/// not part of a plan: the connection loop applies them.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Where to cut, and whether with an RST.
    pub cut: Option<(usize, bool)>,
    pub stall: Option<(usize, Duration)>,
    pub stall_before: Option<Duration>,
    /// A status or HTML error reply instead of the response.
    pub reply: Option<Fault>,
    pub truncate: bool,
    pub no_done: bool,
    pub hold: Option<Duration>,
    pub crlf: bool,
    pub ping: Option<Duration>,
    pub slices: Option<(usize, Duration)>,
    pub no_replay: Option<u16>,
    pub replay_expired: bool,
    pub replay_lost: bool,
    pub replay_shift: Option<i64>,
    pub replay_from_start: bool,
    pub replay_foreign: bool,
    pub empty: bool,
    pub ring: Option<usize>,
}

impl Plan {
    /// The plan for streamed response number `n` under `rules`.
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a FaultRule>, n: u64) -> Self {
        let mut p = Self::default();
        let hits = rules
            .into_iter()
            .filter(|r| r.fault.schedule() == Schedule::Streamed && r.applies_to(n));
        for rule in hits {
            let f = &rule.fault;
            match *f {
                Fault::CloseAfter(n) => p.cut = p.cut.or(Some((n, false))),
                Fault::ResetAfter(n) => p.cut = p.cut.or(Some((n, true))),
                Fault::StallAfter { bytes, pause } => p.stall = p.stall.or(Some((bytes, pause))),
                Fault::StallBeforeStatus(d) => p.stall_before = p.stall_before.or(Some(d)),
                Fault::Status(_) | Fault::HtmlError(_) => {
                    p.reply = p.reply.take().or_else(|| Some(f.clone()));
                }
                Fault::TruncateToolArgs => p.truncate = true,
                Fault::NoDone => p.no_done = true,
                Fault::HoldOpen(d) => p.hold = p.hold.or(Some(d)),
                Fault::Crlf => p.crlf = true,
                Fault::Ping(d) => p.ping = p.ping.or(Some(d)),
                Fault::Slices { size, delay } => p.slices = p.slices.or(Some((size.max(1), delay))),
                Fault::NoReplay(code) => p.no_replay = p.no_replay.or(Some(code)),
                Fault::ReplayExpired => p.replay_expired = true,
                Fault::ReplayLost => p.replay_lost = true,
                Fault::ReplayShift(n) => p.replay_shift = p.replay_shift.or(Some(n)),
                Fault::ReplayFromStart => p.replay_from_start = true,
                Fault::ReplayForeign => p.replay_foreign = true,
                Fault::EmptyStream => p.empty = true,
                Fault::Ring(n) => p.ring = p.ring.or(Some(n)),
                Fault::Stale { .. } | Fault::IdleClose(_) | Fault::CloseAfterResponse => {}
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_probability_is_clamped_and_rounded() {
        let cases = [
            (0.0, 0),
            (1.0, PER_MILLION),
            (0.25, 250_000),
            (2.0, PER_MILLION),
            (-1.0, 0),
            (f64::NAN, 0),
        ];
        for (p, ppm) in cases {
            assert_eq!(probability(p), ppm, "{p}");
        }
    }

    #[test]
    fn plan_merges_only_streamed_faults_that_hit() {
        let rules = [
            Fault::CloseAfter(10).times(1),
            Fault::ResetAfter(20).into(),
            Fault::Crlf.after(1),
            Fault::stale(1.0).into(),
            Fault::Ring(64).into(),
        ];
        let first = Plan::new(&rules, 1);
        assert_eq!(
            (first.cut, first.crlf, first.ring),
            (Some((10, false)), false, Some(64))
        );
        let second = Plan::new(&rules, 2);
        assert_eq!((second.cut, second.crlf), (Some((20, true)), true));
    }
}
