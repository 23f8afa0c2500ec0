//! The faults the mock server injects, which requests they hit, and their text spec syntax.

use std::{str::FromStr, time::Duration};

/// One way to break a chat response. Byte offsets count from the first byte of the status line,
/// headers and chunk framing included.
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

/// A fault and the chat requests it hits: numbers `after + 1 ..= after + times` (1-based).
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

    /// This fault on the first `n` chat requests only.
    pub fn times(self, n: u64) -> FaultRule {
        FaultRule::from(self).times(n)
    }

    /// This fault on every chat request after the first `k`.
    pub fn after(self, k: u64) -> FaultRule {
        FaultRule::from(self).after(k)
    }
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

    /// Whether the `n`th chat request (1-based) gets this fault.
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
         html, truncate-tool-args, no-done, hold-open, crlf, ping or slices)"
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
