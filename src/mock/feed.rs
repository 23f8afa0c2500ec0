//! The generic event feed (`/v1/events`), sans-IO: its query parameters and the exact events it
//! sends, so a test knows every byte of a fault-free feed without a server.

use std::str::FromStr;
use std::time::Duration;

use super::http::parse_query;
use super::wire::Piece;

/// What a `GET /v1/events?QUERY` feed sends, parsed from its query string (`"count=3&retry=500"
/// .parse()`), so tests and curl users configure it the same way. Unset parameters keep the
/// [`Default`]: ten `tick` events, one data line each, no waits, ending the body cleanly.
///
/// | parameter | meaning |
/// |---|---|
/// | `count=N` | events `1..=N` (default 10) |
/// | `event=NAME` | the `event:` field (default `tick`); `event=` (empty) sends no `event:` line |
/// | `multiline=1` | each data spans three lines (`{`, `  "n": K`, `}`); else one line `{"n":K}` |
/// | `retry=MS` | a `retry: MS` field (in a block of its own) before anything else |
/// | `interval-ms=MS` | wait MS before every event but the first sent |
/// | `ping-ms=MS` | while waiting, a `: ping` comment every MS (MS > 0) |
/// | `priming=1` | before the events, a block with only `id: K` (K = the resume point, 0 at first) |
/// | `end=close\|hold\|204` | after the last event: end the chunked body (`close`, default), keep the connection open sending nothing but pings (`hold`), or like `close`, and answer `204 No Content` to a request whose `Last-Event-ID` is N (`204`) |
/// | `status=CODE` | `204` always answers 204; other codes but 200 answer with a JSON error body |
/// | `retry-after=TEXT` | a `Retry-After` header on a `status` error |
///
/// A `Last-Event-ID: K` request header with K in `1..=N` resumes after event K; any other
/// value starts from event 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSpec {
    /// Events `1..=count`.
    pub count: u64,
    /// The `event:` field; `None` sends none.
    pub event: Option<String>,
    /// Data on three lines instead of one.
    pub multiline: bool,
    /// A `retry:` field first.
    pub retry: Option<u64>,
    /// The wait before each event but the first sent.
    pub interval: Duration,
    /// A `: ping` comment this often while waiting.
    pub ping: Option<Duration>,
    /// An id-only block before the events.
    pub priming: bool,
    /// What happens after the last event.
    pub end: FeedEnd,
    /// The response status: 200 streams, 204 sends nothing, others an error body.
    pub status: u16,
    /// `Retry-After` on an error status.
    pub retry_after: Option<String>,
}

/// How a feed ends after its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEnd {
    /// End the chunked body (the zero-size chunk); the connection stays usable.
    Close,
    /// Send nothing more (pings if `ping-ms`) until the client closes the connection.
    Hold,
    /// As `Close`, and answer `204 No Content` to a request whose `Last-Event-ID` is the last
    /// event's id: the client has everything.
    NoContent,
}

impl Default for FeedSpec {
    fn default() -> Self {
        Self {
            count: 10,
            event: Some("tick".to_owned()),
            multiline: false,
            retry: None,
            interval: Duration::ZERO,
            ping: None,
            priming: false,
            end: FeedEnd::Close,
            status: 200,
            retry_after: None,
        }
    }
}

/// Why a feed query did not parse; the server answers it with a 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedSpecError {
    /// Not one of the feed's parameters.
    #[error(
        "unknown feed parameter `{0}` (expected count, event, multiline, retry, interval-ms, \
         ping-ms, priming, end, status or retry-after)"
    )]
    UnknownParameter(String),
    /// A value that does not parse, or is out of range.
    #[error("invalid value `{value}` for feed parameter `{key}`")]
    InvalidValue {
        /// The parameter.
        key: String,
        /// The value given.
        value: String,
    },
}

/// Parses a query string, with or without its leading `?`.
impl FromStr for FeedSpec {
    type Err = FeedSpecError;

    fn from_str(query: &str) -> Result<Self, Self::Err> {
        let mut spec = Self::default();
        for (key, value) in parse_query(query.strip_prefix('?').unwrap_or(query)) {
            let invalid = || FeedSpecError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
            };
            let number = || value.parse::<u64>().map_err(|_| invalid());
            let flag = || match value.as_str() {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(invalid()),
            };
            // A CR or LF would end the field early and forge other fields.
            let line = || match value.contains(['\r', '\n']) {
                true => Err(invalid()),
                false => Ok(value.clone()),
            };
            match key.as_str() {
                "count" => spec.count = number()?,
                "event" => spec.event = Some(line()?).filter(|e| !e.is_empty()),
                "multiline" => spec.multiline = flag()?,
                "retry" => spec.retry = Some(number()?),
                "interval-ms" => spec.interval = Duration::from_millis(number()?),
                "ping-ms" => match number()? {
                    0 => return Err(invalid()),
                    ms => spec.ping = Some(Duration::from_millis(ms)),
                },
                "priming" => spec.priming = flag()?,
                "end" => {
                    spec.end = match value.as_str() {
                        "close" => FeedEnd::Close,
                        "hold" => FeedEnd::Hold,
                        "204" => FeedEnd::NoContent,
                        _ => return Err(invalid()),
                    }
                }
                "status" => match number()? {
                    code @ 200..=599 => spec.status = code.try_into().map_err(|_| invalid())?,
                    _ => return Err(invalid()),
                },
                "retry-after" => spec.retry_after = Some(line()?),
                _ => return Err(FeedSpecError::UnknownParameter(key)),
            }
        }
        Ok(spec)
    }
}

impl FeedSpec {
    /// The events a client with this `Last-Event-ID` already has: K for an id K in
    /// `1..=count`, else 0 (no header, not a number, or an id this feed never sent).
    pub fn resume_after(&self, last_event_id: Option<&str>) -> u64 {
        last_event_id
            .and_then(|id| id.parse::<u64>().ok())
            .filter(|k| (1..=self.count).contains(k))
            .unwrap_or(0)
    }

    /// Whether a request with this `Last-Event-ID` gets `204 No Content`.
    pub fn answers_no_content(&self, last_event_id: Option<&str>) -> bool {
        self.status == 204
            || (self.end == FeedEnd::NoContent
                && last_event_id.is_some_and(|id| id.parse::<u64>() == Ok(self.count)))
    }

    /// The exact body of a fault-free `200` feed response for a request with this
    /// `Last-Event-ID`, de-chunked: pings included, and for `end=hold` up to the hold.
    pub fn body(&self, last_event_id: Option<&str>) -> String {
        self.pieces(self.resume_after(last_event_id))
            .map(|p| p.data)
            .collect()
    }

    /// The chunks of the body after event `after`, each with its wait.
    pub(super) fn pieces(&self, after: u64) -> impl Iterator<Item = Piece> + '_ {
        let retry = self.retry.map(|ms| Piece::now(format!("retry: {ms}\n\n")));
        let priming = self.priming.then(|| Piece::now(format!("id: {after}\n\n")));
        let events = (after.saturating_add(1)..=self.count)
            .enumerate()
            .flat_map(move |(i, k)| {
                let wait = if i == 0 {
                    Duration::ZERO
                } else {
                    self.interval
                };
                self.waited(wait, self.event(k))
            });
        retry.into_iter().chain(priming).chain(events)
    }

    /// `data` after `wait`, with a ping every `ping` while waiting.
    fn waited(&self, wait: Duration, data: String) -> impl Iterator<Item = Piece> + use<> {
        let (pings, every, rest) = match self.ping {
            Some(every) if !every.is_zero() => {
                let pings = wait.as_nanos() / every.as_nanos();
                let rest = Duration::from_nanos((wait.as_nanos() % every.as_nanos()) as u64);
                (pings, every, rest)
            }
            _ => (0, Duration::ZERO, wait),
        };
        let ping = move |_| Piece {
            wait: every,
            data: ": ping\n\n".to_owned(),
        };
        (0..pings)
            .map(ping)
            .chain(std::iter::once(Piece { wait: rest, data }))
    }

    fn event(&self, k: u64) -> String {
        let mut s = format!("id: {k}\n");
        if let Some(name) = &self.event {
            s.push_str(&format!("event: {name}\n"));
        }
        if self.multiline {
            s.push_str(&format!("data: {{\ndata:   \"n\": {k}\ndata: }}\n\n"));
        } else {
            s.push_str(&format!("data: {{\"n\":{k}}}\n\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queries() {
        let spec: FeedSpec =
            "?count=3&event=&multiline=1&retry=500&interval-ms=20&ping-ms=7&priming=true&end=hold"
                .parse()
                .expect("valid");
        assert_eq!(
            spec,
            FeedSpec {
                count: 3,
                event: None,
                multiline: true,
                retry: Some(500),
                interval: Duration::from_millis(20),
                ping: Some(Duration::from_millis(7)),
                priming: true,
                end: FeedEnd::Hold,
                ..FeedSpec::default()
            }
        );
        let spec: FeedSpec = "status=503&retry-after=2&event=up%20date"
            .parse()
            .expect("valid");
        assert_eq!(
            (
                spec.status,
                spec.retry_after.as_deref(),
                spec.event.as_deref()
            ),
            (503, Some("2"), Some("up date"))
        );
        assert_eq!("".parse(), Ok(FeedSpec::default()));
        let bad = [
            ("count=-1", "invalid value `-1` for feed parameter `count`"),
            ("multiline=yes", "invalid value `yes`"),
            ("ping-ms=0", "invalid value `0`"),
            ("end=later", "invalid value `later`"),
            ("status=99", "invalid value `99`"),
            ("status=600", "invalid value `600`"),
            ("event=a%0Adata:x", "invalid value `a\ndata:x`"),
            ("counts=1", "unknown feed parameter `counts`"),
        ];
        for (query, message) in bad {
            let err = query.parse::<FeedSpec>().expect_err(query);
            assert!(err.to_string().starts_with(message), "{query}: {err}");
        }
    }

    #[test]
    fn renders_events() {
        let spec: FeedSpec = "count=2".parse().expect("valid");
        assert_eq!(
            spec.body(None),
            "id: 1\nevent: tick\ndata: {\"n\":1}\n\nid: 2\nevent: tick\ndata: {\"n\":2}\n\n"
        );
        let spec: FeedSpec = "count=3&event=&multiline=1&retry=250&priming=1"
            .parse()
            .expect("valid");
        assert_eq!(
            spec.body(Some("2")),
            "retry: 250\n\nid: 2\n\nid: 3\ndata: {\ndata:   \"n\": 3\ndata: }\n\n"
        );
        assert_eq!(spec.body(Some("3")), "retry: 250\n\nid: 3\n\n");
    }

    #[test]
    fn last_event_id_resumes_only_from_a_known_id() {
        let spec: FeedSpec = "count=5&end=204".parse().expect("valid");
        let cases = [
            (None, 0, false),
            (Some("0"), 0, false),
            (Some("3"), 3, false),
            (Some("5"), 5, true),
            (Some("6"), 0, false),
            (Some(" 3"), 0, false),
            (Some("x"), 0, false),
        ];
        for (id, after, no_content) in cases {
            assert_eq!(spec.resume_after(id), after, "{id:?}");
            assert_eq!(spec.answers_no_content(id), no_content, "{id:?}");
        }
        let close: FeedSpec = "count=5".parse().expect("valid");
        assert!(!close.answers_no_content(Some("5")));
        assert_eq!(close.body(Some("5")), "");
        let always: FeedSpec = "status=204".parse().expect("valid");
        assert!(always.answers_no_content(None));
    }

    #[test]
    fn pings_fill_the_waits() {
        let spec: FeedSpec = "count=3&interval-ms=25&ping-ms=10".parse().expect("valid");
        let pieces: Vec<(u64, bool)> = spec
            .pieces(0)
            .map(|p| (p.wait.as_millis() as u64, p.data.starts_with(": ping")))
            .collect();
        let ping = (10, true);
        let event = |ms| (ms, false);
        assert_eq!(
            pieces,
            [event(0), ping, ping, event(5), ping, ping, event(5)]
        );
        assert_eq!(spec.body(None).matches(": ping\n\n").count(), 4);
    }
}
