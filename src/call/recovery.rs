//! How a call carries on after a failed attempt: the order of recovery, decided by a pure
//! function from a few facts, and why a way was passed over.
//!
//! Each way is tried in turn, and verified before a byte of it reaches the caller:
//!
//! 1. **resume** — the server replays the stream from before the break (llama.cpp's replay,
//!    checked byte for byte on an overlap): nothing is generated again;
//! 2. **continue** — the same request with the delivered text as a final assistant message
//!    the server goes on from (llama.cpp, vLLM): only the rest is generated;
//! 3. **restart** — the request again; what the new answer repeats of the delivered one is
//!    swallowed, and only if it says something else does the caller get a `Restart`.
//!
//! An event source has one way: reconnect with `Last-Event-ID`. A way that cannot be had
//! (a 404, an overlap that does not match, a continuation refused) passes the break on to
//! the next *within the same retry*: one break costs one retry, whatever it took.

use crate::retry::FailureKind;
use std::fmt;

/// One way of carrying on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rung {
    Resume,
    Continue,
    Restart,
    Reconnect,
}

/// What the choice depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Why the attempt failed.
    pub kind: Option<FailureKind>,
    /// Output of this answer was handed to the caller.
    pub delivered: bool,
    /// The server may replay this generation (a conversation id was sent, the route is not
    /// known to be missing, resume is on).
    pub resumable: bool,
    /// The protocol can build a continuation of what was delivered, and the server is known
    /// to continue one.
    pub continuable: bool,
    /// The policy lets a call start over once output was delivered.
    pub restart_after_output: bool,
    /// The stream is an event source: it reconnects.
    pub reconnects: bool,
}

/// The ways to try, in order (at most three).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ladder {
    rungs: [Option<Rung>; 3],
}

impl Ladder {
    fn push(&mut self, rung: Rung) {
        if let Some(slot) = self.rungs.iter_mut().find(|r| r.is_none()) {
            *slot = Some(rung);
        }
    }

    /// The next way to try, taken off the ladder.
    pub(crate) fn pop(&mut self) -> Option<Rung> {
        let first = self.rungs[0].take();
        self.rungs.rotate_left(1);
        first
    }

    /// The next way, left on the ladder.
    pub(crate) fn peek(&self) -> Option<Rung> {
        self.rungs[0]
    }

    #[cfg(test)]
    fn to_vec(self) -> Vec<Rung> {
        self.rungs.into_iter().flatten().collect()
    }
}

/// The ways to carry on after a failure that the retry policy lets the call retry.
pub(crate) fn ladder(facts: &Facts) -> Ladder {
    let mut ladder = Ladder::default();
    if facts.reconnects {
        ladder.push(Rung::Reconnect);
        return ladder;
    }
    let broke = facts.kind.is_some_and(FailureKind::is_break);
    if broke && facts.resumable {
        ladder.push(Rung::Resume);
    }
    if facts.delivered && facts.continuable {
        ladder.push(Rung::Continue);
    }
    if !facts.delivered || facts.restart_after_output {
        ladder.push(Rung::Restart);
    }
    ladder
}

/// Why a way of carrying on was passed over (said in the retry history and on the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PassedOver {
    /// The replay route answered with this status (404: no such stream, or no route).
    ResumeStatus(u16),
    /// The server has no replay route.
    NoReplayRoute,
    /// The server has the replay routes but no longer holds the stream (expired, or never
    /// stored: the connection broke before the server had it).
    StreamGone,
    /// The server dropped the bytes before the offset.
    OffsetLost,
    /// The replay's bytes differ from those received: another framing, stream or offset.
    NotVerified,
    /// The replay answer was not an event stream.
    NotEventStream,
    /// The server refused the continuation with this status.
    ContinuationRefused(u16),
}

impl fmt::Display for PassedOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResumeStatus(status) => write!(f, "the server cannot resume ({status})"),
            Self::NoReplayRoute => f.write_str("the server has no stream replay"),
            Self::StreamGone => f.write_str("the server no longer holds the stream (404)"),
            Self::OffsetLost => f.write_str("the server dropped the bytes before the break"),
            Self::NotVerified => f.write_str(
                "the replay did not match the bytes received (a gateway re-framed the stream?)",
            ),
            Self::NotEventStream => f.write_str("the replay was not an event stream"),
            Self::ContinuationRefused(status) => {
                write!(f, "the server refused to continue ({status})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind as K;
    use Rung::*;

    #[test]
    fn the_order_of_recovery() {
        let f = |kind, delivered, resumable, continuable, restart_after_output| Facts {
            kind: Some(kind),
            delivered,
            resumable,
            continuable,
            restart_after_output,
            reconnects: false,
        };
        // (facts, ways in order)
        let table: &[(Facts, &[Rung])] = &[
            (
                f(K::UnexpectedEof, true, true, true, true),
                &[Resume, Continue, Restart],
            ),
            (
                f(K::UnexpectedEof, true, false, true, true),
                &[Continue, Restart],
            ),
            (f(K::UnexpectedEof, true, false, false, true), &[Restart]),
            (
                f(K::UnexpectedEof, false, true, true, true),
                &[Resume, Restart],
            ),
            (f(K::UnexpectedEof, false, false, false, false), &[Restart]),
            // Resume and continue never take anything back: allowed without restarts.
            (
                f(K::ConnectionReset, true, true, true, false),
                &[Resume, Continue],
            ),
            (f(K::IdleTimeout, true, false, false, false), &[]),
            (
                f(K::UpstreamBroke, true, true, true, true),
                &[Resume, Continue, Restart],
            ),
            // Not a break (a 503 before the body): the generation never ran to replay.
            (f(K::HttpStatus, false, true, false, true), &[Restart]),
            (
                f(K::TruncatedToolCallArguments, true, true, false, true),
                &[Restart],
            ),
        ];
        for (facts, want) in table {
            assert_eq!(ladder(facts).to_vec(), *want, "{facts:?}");
        }
        let source = Facts {
            reconnects: true,
            ..Facts::default()
        };
        assert_eq!(ladder(&source).to_vec(), [Reconnect]);
    }

    #[test]
    fn a_ladder_is_taken_in_order() {
        let mut ladder = ladder(&Facts {
            kind: Some(K::UnexpectedEof),
            delivered: true,
            resumable: true,
            continuable: true,
            restart_after_output: true,
            reconnects: false,
        });
        assert_eq!(ladder.peek(), Some(Resume));
        let taken: Vec<Rung> = std::iter::from_fn(|| ladder.pop()).collect();
        assert_eq!(taken, [Resume, Continue, Restart]);
        assert_eq!(ladder.peek(), None);
    }

    #[test]
    fn reasons_read_as_words() {
        assert_eq!(
            PassedOver::ResumeStatus(404).to_string(),
            "the server cannot resume (404)"
        );
        assert_eq!(
            PassedOver::ContinuationRefused(400).to_string(),
            "the server refused to continue (400)"
        );
    }
}
