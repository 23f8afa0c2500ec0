//! The error's helpers, and the classification table read through real errors.

use super::*;
use crate::retry::RetryAction;

#[test]
fn error_stays_small() {
    // `Result<_, Error>` travels through every layer; grow it only on purpose.
    assert!(
        std::mem::size_of::<Error>() <= 56,
        "{}",
        std::mem::size_of::<Error>()
    );
}

fn http(status: u16) -> Error {
    Error::Http(Box::new(HttpError {
        status,
        error: ApiError {
            message: "slow down".into(),
            ..ApiError::default()
        },
        retry_after: None,
        retry_after_ms: None,
        should_retry: None,
    }))
}

fn after(last: Error, exhausted: bool) -> Error {
    Error::AfterRetries(Box::new(AfterRetries {
        attempts: 2,
        last,
        history: vec![RetryRecord::new(
            1,
            FailureKind::HttpStatus,
            250,
            RetryAction::Restarted,
        )],
        exhausted,
    }))
}

#[test]
fn helpers_look_through_retries() {
    let err = after(http(429), true);
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.kind(), FailureKind::HttpStatus);
    assert_eq!(
        err.api_error().map(|e| e.message.as_str()),
        Some("slow down")
    );
    assert_eq!(err.retries().len(), 1);
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "gave up after 2 attempts: http 429: slow down"
    );

    let err = after(http(400), false);
    assert!(!err.is_transient());
    assert_eq!(err.to_string(), "http 400: slow down (after 1 retry)");

    let eof = Error::io(
        FailureKind::UnexpectedEof,
        io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"),
    );
    assert_eq!(eof.to_string(), "unexpected eof: peer closed");
    assert!(eof.is_transient());
    assert_eq!(eof.status(), None);
    assert_eq!(
        eof.transport().map(|t| t.io_error().kind()),
        Some(io::ErrorKind::UnexpectedEof)
    );
    let idle = Error::Transport(TransportError::timeout(
        FailureKind::IdleTimeout,
        Duration::from_secs(60),
    ));
    assert_eq!(idle.to_string(), "idle timeout (60000 ms)");
    assert_eq!(
        idle.transport().and_then(TransportError::limit),
        Some(Duration::from_secs(60))
    );
}

mod classification {
    //! The retry table ([`retry::classify`], [`retry::decide`]) read through real errors.
    use super::super::*;
    use crate::retry::{Decision, Rng, Situation, Verdict, classify, decide};
    use std::time::{Duration, UNIX_EPOCH};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn http(status: u16, code: Option<&str>, headers: [Option<&str>; 3]) -> Error {
        let [retry_after, retry_after_ms, should_retry] = headers.map(|h| h.map(str::to_owned));
        Error::Http(Box::new(HttpError {
            status,
            error: ApiError {
                message: "m".into(),
                code: code.map(str::to_owned),
                ..ApiError::default()
            },
            retry_after,
            retry_after_ms,
            should_retry,
        }))
    }

    fn io_err(kind: io::ErrorKind) -> Error {
        Error::io(FailureKind::from_io_kind(kind), io::Error::new(kind, "x"))
    }

    fn timeout(kind: FailureKind) -> Error {
        Error::Transport(TransportError::timeout(kind, Duration::from_secs(1)))
    }

    fn failed(kind: FailureKind) -> Error {
        Error::io(kind, io::Error::other("x"))
    }

    const T: Verdict = Verdict::Transient { server_delay: None };
    const P: Verdict = Verdict::Permanent;

    #[test]
    fn classifier_table() {
        use io::ErrorKind as K;
        let none = [None, None, None];
        let table: Vec<(&str, Error, Verdict)> = vec![
            ("eof", io_err(K::UnexpectedEof), T),
            ("reset", io_err(K::ConnectionReset), T),
            ("aborted", io_err(K::ConnectionAborted), T),
            ("broken pipe", io_err(K::BrokenPipe), T),
            ("refused", io_err(K::ConnectionRefused), T),
            ("socket timeout", io_err(K::TimedOut), T),
            ("would block", io_err(K::WouldBlock), T),
            ("other io", io_err(K::PermissionDenied), P),
            ("connect timeout", timeout(FailureKind::ConnectTimeout), T),
            ("first byte", timeout(FailureKind::FirstByteTimeout), T),
            ("idle", timeout(FailureKind::IdleTimeout), T),
            ("deadline", timeout(FailureKind::DeadlineExceeded), P),
            ("dns", failed(FailureKind::Dns), P),
            ("tls", failed(FailureKind::Tls), P),
            ("protocol", failed(FailureKind::Protocol), P),
            (
                "incomplete",
                Error::Stream(StreamError::IncompleteStream {
                    received_events: 3,
                    finish_seen: false,
                }),
                T,
            ),
            (
                "truncated tool args",
                Error::Stream(StreamError::TruncatedToolCallArguments {
                    choice: 0,
                    index: 0,
                    id: "c".into(),
                    name: "f".into(),
                }),
                T,
            ),
            (
                "cut by length",
                Error::Stream(StreamError::ToolCallArgumentsCutByLength {
                    choice: 0,
                    index: 0,
                    name: "f".into(),
                }),
                P,
            ),
            (
                "malformed",
                Error::Stream(StreamError::MalformedChunk {
                    reason: "r".into(),
                    snippet: "s".into(),
                }),
                P,
            ),
            (
                "api error in stream",
                Error::Stream(StreamError::Api(Box::default())),
                P,
            ),
            (
                "sse limit",
                Error::Sse(crate::sse::SseError::LineTooLong { limit: 1 }),
                P,
            ),
            ("cancelled", Error::Cancelled, P),
            ("config", Error::Config("x".into()), P),
            ("408", http(408, None, none), T),
            ("429", http(429, None, none), T),
            (
                "429 no quota",
                http(429, Some("insufficient_quota"), none),
                P,
            ),
            (
                "429 no quota, told to retry",
                http(429, Some("insufficient_quota"), [None, None, Some("true")]),
                T,
            ),
            ("502", http(502, None, none), T),
            ("503", http(503, None, none), T),
            (
                "503 told not to",
                http(503, None, [None, None, Some("false")]),
                P,
            ),
            ("504", http(504, None, none), T),
            ("500", http(500, None, none), P),
            (
                "500 told to retry",
                http(500, None, [None, None, Some("true")]),
                T,
            ),
            ("400", http(400, None, none), P),
            ("401", http(401, None, none), P),
            ("404", http(404, None, none), P),
            (
                "429 retry-after 2",
                http(429, None, [Some("2"), None, None]),
                Verdict::Transient {
                    server_delay: Some(Duration::from_secs(2)),
                },
            ),
            (
                "429 retry-after-ms",
                http(429, None, [Some("9"), Some("1500"), None]),
                Verdict::Transient {
                    server_delay: Some(Duration::from_millis(1500)),
                },
            ),
            (
                "429 retry-after too long",
                http(429, None, [Some("61"), None, None]),
                Verdict::WaitTooLong(Duration::from_secs(61)),
            ),
            (
                "429 retry-after too large to represent",
                http(429, None, [Some("1e21"), None, None]),
                Verdict::WaitTooLong(Duration::MAX),
            ),
            (
                "503 retry-after-ms 1e300",
                http(503, None, [None, Some("1e300"), None]),
                Verdict::WaitTooLong(Duration::MAX),
            ),
            (
                "400 with retry-after",
                http(400, None, [Some("1"), None, None]),
                P,
            ),
        ];
        let policy = RetryPolicy::default();
        for (name, err, want) in table {
            assert_eq!(
                classify(&err.failure(), &policy, UNIX_EPOCH),
                want,
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn configurable_classes() {
        let policy = RetryPolicy {
            retry_statuses: vec![500],
            retry_dns: true,
            ..RetryPolicy::default()
        };
        assert_eq!(
            classify(&http(500, None, [None; 3]).failure(), &policy, UNIX_EPOCH),
            T
        );
        assert_eq!(
            classify(&http(503, None, [None; 3]).failure(), &policy, UNIX_EPOCH),
            P
        );
        assert_eq!(
            classify(&failed(FailureKind::Dns).failure(), &policy, UNIX_EPOCH),
            T
        );
    }

    #[test]
    fn decision_table() {
        let policy = RetryPolicy {
            jitter: 0.0,
            max_elapsed: Some(Duration::from_secs(10)),
            max_wait_for_server: Some(Duration::from_secs(5)),
            ..RetryPolicy::default()
        };
        let eof = io_err(io::ErrorKind::UnexpectedEof);
        let refused = io_err(io::ErrorKind::ConnectionRefused);
        let loading = http(503, None, [None; 3]);
        let slow = http(429, None, [Some("3"), None, None]);
        let huge = http(429, None, [Some("1e300"), None, None]);
        let s = Duration::from_secs;
        let at = |retries_done: u32, elapsed: u64| Situation {
            retries_done,
            elapsed: s(elapsed),
            ..Situation::default()
        };
        let table: Vec<(&str, &Error, Situation, Decision)> = vec![
            ("first retry", &eof, at(0, 0), Decision::Retry(ms(250))),
            ("third retry", &eof, at(2, 0), Decision::Retry(ms(1000))),
            ("out of retries", &eof, at(3, 0), Decision::Exhausted),
            (
                "after output, allowed",
                &eof,
                Situation {
                    restart_after_output: true,
                    ..at(0, 0)
                },
                Decision::Retry(ms(250)),
            ),
            ("server delay wins", &slow, at(0, 0), Decision::Retry(s(3))),
            (
                "unrepresentable server delay",
                &huge,
                at(0, 0),
                Decision::GiveUp,
            ),
            ("budget spent", &eof, at(0, 10), Decision::Exhausted),
            (
                "wait would pass the budget",
                &slow,
                at(0, 8),
                Decision::Exhausted,
            ),
            (
                "wait would pass the deadline",
                &slow,
                Situation {
                    deadline: Some(s(4)),
                    ..at(0, 1)
                },
                Decision::Exhausted,
            ),
            ("permanent", &Error::Cancelled, at(0, 0), Decision::GiveUp),
            (
                "server down: not counted",
                &refused,
                Situation {
                    server_down_for: Some(s(0)),
                    ..at(3, 0)
                },
                Decision::Retry(ms(2000)),
            ),
            (
                "loading: waits within the server budget",
                &loading,
                Situation {
                    server_down_for: Some(s(1)),
                    ..at(3, 1)
                },
                Decision::Retry(ms(2000)),
            ),
            (
                "server down too long",
                &refused,
                Situation {
                    server_down_for: Some(ms(4900)),
                    ..at(0, 4)
                },
                Decision::Exhausted,
            ),
        ];
        for (name, err, situation, want) in table {
            let got = decide(
                &err.failure(),
                &policy,
                &situation,
                UNIX_EPOCH,
                &mut Rng::seeded(1),
            );
            assert_eq!(got, want, "{name}");
        }
        let no_mid_stream = RetryPolicy {
            retry_after_output: false,
            ..policy.clone()
        };
        let restart = Situation {
            restart_after_output: true,
            ..Situation::default()
        };
        let got = decide(
            &eof.failure(),
            &no_mid_stream,
            &restart,
            UNIX_EPOCH,
            &mut Rng::seeded(1),
        );
        assert_eq!(got, Decision::GiveUp);
        let counted = RetryPolicy {
            max_wait_for_server: None,
            ..policy
        };
        let got = decide(
            &refused.failure(),
            &counted,
            &at(3, 0),
            UNIX_EPOCH,
            &mut Rng::seeded(1),
        );
        assert_eq!(
            got,
            Decision::Exhausted,
            "without a server budget, refusals count"
        );
    }
}
