//! One HTTP exchange over the client's pooled ureq agent, with our socket layer underneath.
//!
//! - [`Transport`] owns the agent: one keep-alive pool per client, shared by its clones and
//!   reused across calls and retries, with our connector chain (dialer, proxy tunnel, TLS).
//! - [`Transport::send`] sends one request under an attempt's I/O context ([`AttemptIo`])
//!   and returns the status, headers and a body reader. A request that fails on a reused
//!   pooled connection before any response byte arrived (the server closed the idle
//!   connection just as we reused it) is sent again at once on another connection: no
//!   retry, no wait, a `debug!` line.
//! - The body reader keeps the attempt current while it reads, so the first-byte, idle and
//!   drain limits and the cancel switch apply to every body read.
//! - Every failure becomes an [`Error`] with the exact [`FailureKind`]: the attempt's own
//!   record (a limit that fired, a cancel, a failed name lookup, a reset that ureq reports as
//!   an end of input) wins over what ureq carries up.
//!
//! A connection goes back to the pool only when its body was read to the end (ureq's rule);
//! a call that was cancelled, timed out, failed or stopped early drops its connection.

mod attempt;
mod dial;
mod response;
mod socket;
mod tls;
mod unversioned;

pub(crate) use attempt::{AttemptIo, Limits, Phase};
pub(crate) use response::{
    ERROR_BODY_TIME, HasAttempt, MAX_ERROR_BODY, drain, http_error, interrupted, read_bounded,
    unexpected_type, unreadable_encoding,
};
pub(crate) use tls::{SSL_CERT_FILE, TlsSettings};

use crate::error::{Error, TransportError};
use crate::retry::FailureKind;
use dial::Dialer;
use socket::{MarkConnected, SocketConnector};
use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Arc;
use unversioned::{ConnectProxyConnector, Connector, NextTimeout, ResolvedSocketAddrs, Resolver};
use ureq::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// How many times a request is sent again after stale pooled connections (one more than the
/// connections the pool keeps per host: after that, the next is a fresh one).
const MAX_STALE_RESENDS: usize = 4;
/// Pooled connections kept per host.
const IDLE_PER_HOST: usize = 3;
/// Read buffer of a connection: holds a response head (the limit below) and a few chunks.
const INPUT_BUFFER: usize = 64 << 10;
/// Write buffer: requests are written through it in pieces of this size, but the request
/// head (request line and headers) must fit it whole.
const OUTPUT_BUFFER: usize = 16 << 10;
/// Room in the head for what ureq adds (Host, User-Agent, Content-Length, Accept) and the
/// framing of the request line.
const HEAD_RESERVE: usize = 512;
/// Largest response head accepted (status line and headers).
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 << 10;

/// Everything the transport needs from the client's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub connect_timeout: std::time::Duration,
    pub proxy: Option<ureq::Proxy>,
    pub tls: TlsSettings,
    pub pinned: Vec<(String, Vec<IpAddr>)>,
    pub user_agent: String,
}

/// The client's HTTP machinery: the pooled agent and its dialer.
#[derive(Debug)]
pub(crate) struct Transport {
    agent: ureq::Agent,
}

/// What a request sends.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: &'a str,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Option<&'a [u8]>,
}

impl Request<'_> {
    /// The bytes of the request line and the headers given, without what ureq adds.
    fn head_len(&self) -> usize {
        let line = self.method.as_str().len() + self.url.len() + " HTTP/1.1\r\n".len() + 1;
        let headers = self.headers.iter();
        line + headers
            .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
            .sum::<usize>()
    }
}

/// A response whose head has arrived.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: BodyRead,
}

impl Response {
    /// A header's value as text, if present and readable.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of `Content-Type`, lowercased, without parameters (empty if absent).
    pub(crate) fn media_type(&self) -> String {
        self.header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }
}

/// Resolves nothing: our connector resolves when (and only when) it opens a connection, so
/// a call on a pooled connection does no lookup at all.
#[derive(Debug)]
struct LazyResolver;

impl Resolver for LazyResolver {
    fn resolve(
        &self,
        _: &ureq::http::Uri,
        _: &ureq::config::Config,
        _: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        Ok(self.empty())
    }
}

impl Transport {
    /// Builds the agent: our dialer at the bottom, a proxy tunnel and TLS on top.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for unusable TLS settings.
    pub(crate) fn new(settings: Settings) -> Result<Self, Error> {
        let config = ureq::Agent::config_builder()
            // Error statuses are read and classified by the caller, body included.
            .http_status_as_error(false)
            // Bounds the TLS handshake and proxy negotiation; the TCP connect is bounded by
            // the dialer, and first-byte, idle and deadline limits by the socket layer.
            .timeout_connect(Some(settings.connect_timeout))
            .proxy(settings.proxy)
            .max_redirects(0)
            .user_agent(settings.user_agent.as_str())
            .max_idle_connections_per_host(IDLE_PER_HOST)
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER)
            .max_response_header_size(MAX_RESPONSE_HEAD)
            .no_delay(true);
        #[cfg(feature = "tls")]
        let config = config.tls_config(settings.tls.ureq_config());
        #[cfg(not(feature = "tls"))]
        let _ = &settings.tls;
        let dialer = Arc::new(Dialer::new(settings.pinned));
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(SocketConnector { dialer });
        #[cfg(feature = "tls")]
        let connector = connector.chain(unversioned::RustlsConnector::default());
        let connector = connector.chain(MarkConnected);
        let agent = ureq::Agent::with_parts(config.build(), connector, LazyResolver);
        Ok(Self { agent })
    }

    /// Sends `request` as the attempt `io` and returns once the response head arrived.
    ///
    /// # Errors
    ///
    /// The failure, labelled as exactly as the attempt's record allows.
    pub(crate) fn send(
        &self,
        request: &Request<'_>,
        io: &Arc<AttemptIo>,
    ) -> Result<Response, Error> {
        let head = request.head_len();
        if head > OUTPUT_BUFFER - HEAD_RESERVE {
            return Err(Error::Config(format!(
                "the request head would take {head} bytes, more than the {} a request may \
                 carry: a header value or the URL is too long",
                OUTPUT_BUFFER - HEAD_RESERVE
            )));
        }
        let mut resends = 0;
        loop {
            let result = {
                let _current = attempt::enter(io);
                self.run(request)
            };
            match result {
                Ok(response) => {
                    io.set_phase(Phase::FirstBody);
                    let (parts, body) = response.into_parts();
                    return Ok(Response {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body: BodyRead {
                            inner: body.into_reader(),
                            io: Arc::clone(io),
                        },
                    });
                }
                Err(err) => {
                    let err = error_from_ureq(err, io);
                    if resends < MAX_STALE_RESENDS && is_stale(&err, io) {
                        resends += 1;
                        log::debug!(
                            "pooled connection was closed by the server ({}); sending again on another",
                            err.kind()
                        );
                        io.reset_connection();
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// The (decoded) password of the proxy in use, if it has one: a secret to keep out of
    /// error messages.
    pub(crate) fn proxy_password(&self) -> Option<&str> {
        self.agent.config().proxy()?.password()
    }

    fn run(&self, request: &Request<'_>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method.clone())
            .uri(request.url);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        match request.body {
            Some(body) => self.agent.run(builder.body(body)?),
            None => self.agent.run(builder.body(())?),
        }
    }
}

/// A failure that only means "this pooled connection was already dead": it had served
/// before, and it failed before any byte of the response arrived.
fn is_stale(err: &Error, io: &AttemptIo) -> bool {
    io.reused()
        && io.received() == 0
        && io.interrupted().is_none()
        && err.kind().is_broken_connection()
}

/// The response body, read with its attempt current (limits, kill switch, progress).
pub(crate) struct BodyRead {
    inner: ureq::BodyReader<'static>,
    io: Arc<AttemptIo>,
}

impl std::fmt::Debug for BodyRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyRead").finish_non_exhaustive()
    }
}

impl BodyRead {
    /// The attempt this body belongs to.
    pub(crate) fn attempt(&self) -> &Arc<AttemptIo> {
        &self.io
    }
}

impl Read for BodyRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let _current = attempt::enter(&self.io);
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.io.saw_body();
        }
        Ok(n)
    }
}

/// The error a body read failed with, labelled by the attempt's record.
pub(crate) fn read_error(err: io::Error, io: &AttemptIo) -> Error {
    error_from_io(err, io)
}

/// The attempt's record first (a fired limit, a cancel, a label), then ureq's error.
fn error_from_ureq(err: ureq::Error, io: &AttemptIo) -> Error {
    if let Some(err) = recorded(io) {
        return err;
    }
    let kind = match &err {
        ureq::Error::Io(_) => None,
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            let limit = io.limits().connect;
            return Error::Transport(TransportError::timeout(FailureKind::ConnectTimeout, limit));
        }
        ureq::Error::Timeout(_) => Some(FailureKind::TimedOut),
        ureq::Error::HostNotFound => Some(FailureKind::Dns),
        ureq::Error::Tls(_) => Some(FailureKind::Tls),
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(_) => Some(FailureKind::Tls),
        // ureq's Display says `protocol: …`; the kind says it once.
        ureq::Error::Protocol(err) => {
            return Error::io(FailureKind::Protocol, io::Error::other(err.to_string()));
        }
        ureq::Error::Http(_) => Some(FailureKind::Protocol),
        ureq::Error::LargeResponseHeader(..) | ureq::Error::BodyExceedsLimit(_) => {
            Some(FailureKind::LimitExceeded)
        }
        // ureq's reader reports a connection closed inside the chunked framing (in a
        // chunk-size line, or before a chunk's CRLF) as a stalled body: a cut connection.
        // So it reports a chunk-size line that never ends (the socket saw the read buffer
        // fill up): broken framing, which a retry would meet again.
        ureq::Error::BodyStalled => match io.failure_label() {
            Some(FailureKind::Protocol) => {
                return Error::io(
                    FailureKind::Protocol,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "broken chunked framing: a chunk-size line longer than the read buffer",
                    ),
                );
            }
            _ => Some(FailureKind::UnexpectedEof),
        },
        ureq::Error::BadUri(_) | ureq::Error::InvalidProxyUrl => Some(FailureKind::InvalidConfig),
        _ => Some(FailureKind::Other),
    };
    match (kind, err) {
        (None, ureq::Error::Io(e)) => error_from_io(e, io),
        (Some(FailureKind::InvalidConfig), err) => Error::Config(err.to_string()),
        (Some(kind), err) => Error::io(kind, io::Error::other(err.to_string())),
        (None, err) => Error::io(FailureKind::Other, io::Error::other(err.to_string())),
    }
}

fn error_from_io(err: io::Error, io: &AttemptIo) -> Error {
    if let Some(err) = recorded(io) {
        return err;
    }
    // The body reader wraps ureq's errors in io::Error.
    if err.get_ref().is_some_and(|e| e.is::<ureq::Error>()) {
        if let Some(inner) = err
            .into_inner()
            .and_then(|e| e.downcast::<ureq::Error>().ok())
        {
            return error_from_ureq(*inner, io);
        }
        return Error::io(
            FailureKind::Other,
            io::Error::other("unreadable transport error"),
        );
    }
    let mut kind = FailureKind::from_io_kind(err.kind());
    match io.failure_label() {
        // The socket saw the read buffer fill up with the head (`saw_full_buffer`).
        Some(FailureKind::LimitExceeded) => {
            let message = format!("response head larger than {} KiB", MAX_RESPONSE_HEAD >> 10);
            return Error::io(
                FailureKind::LimitExceeded,
                io::Error::new(io::ErrorKind::InvalidData, message),
            );
        }
        Some(label) => return Error::io(label, err),
        None => {}
    }
    // ureq ends a body on a reset as if the peer had closed: keep the real kind.
    if kind == FailureKind::UnexpectedEof
        && let Some(read) = io.read_error()
    {
        kind = FailureKind::from_io_kind(read);
    }
    // A failure on an open socket before the connection was up is the TLS handshake's.
    if io.is_bound() && !io.connected() && err.kind() == io::ErrorKind::InvalidData {
        kind = FailureKind::Tls;
    }
    Error::io(kind, err)
}

/// A limit that fired or a cancel: what interrupted the attempt, whatever error it caused.
fn recorded(io: &AttemptIo) -> Option<Error> {
    io.interrupted().map(|(kind, limit)| match kind {
        FailureKind::Cancelled => Error::Cancelled,
        kind => Error::Transport(TransportError::timeout(kind, limit)),
    })
}
