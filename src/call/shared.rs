//! What every call of one client shares: the transport (one connection pool), the endpoints,
//! the headers, limits and retry policy, and what the client has learnt about its server —
//! its replay route, whether it continues a final assistant message, whether it accepts
//! `stream_options`, whether it ever answered.

use super::replay::RouteShape;
use crate::chat::ChatLimits;
use crate::error::Error;
use crate::http::{Limits, Transport};
use crate::retry::RetryPolicy;
use crate::sse::Limits as SseLimits;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use ureq::http::{HeaderName, HeaderValue};

/// How long a server found without the stream-replay route is not asked again.
const REPLAY_MEMORY: Duration = Duration::from_secs(600);

/// The endpoints a client talks to, derived from its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Urls {
    /// `{base}`: the API root, e.g. `http://127.0.0.1:8080/v1`.
    pub api: String,
    /// `POST` chat completions here.
    pub chat: String,
    /// `POST` Responses API requests here.
    pub responses: String,
    /// The model list: `GET {base}/models`.
    pub models: String,
}

impl Urls {
    /// `base` → the endpoints (see `ClientBuilder::base_url`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not `http(s)://host...`, one with a query or a
    /// fragment (the paths are appended to it), or `https` without the `tls` feature.
    pub(crate) fn from_base(base: &str) -> Result<Self, Error> {
        let shown = crate::redact::redact_userinfo(base);
        let trimmed = base.trim().trim_end_matches('/');
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
                if !cfg!(feature = "tls") {
                    return Err(Error::Config(format!(
                        "{shown:?} needs TLS, but oai-sse was built without the `tls` feature"
                    )));
                }
                rest
            }
            _ => {
                return Err(Error::Config(format!(
                    "base URL {shown:?} must start with http:// or https://"
                )));
            }
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::Config(format!("base URL {shown:?} has no host")));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(Error::Config(format!(
                "base URL {shown:?} has a query or a fragment: the API paths are appended to \
                 the base URL, so give it without (a gateway key goes in a header)"
            )));
        }
        let api = if let Some(api) = trimmed.strip_suffix("/chat/completions") {
            api.to_owned()
        } else if rest.contains('/') {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/v1")
        };
        let urls = Self {
            chat: format!("{api}/chat/completions"),
            responses: format!("{api}/responses"),
            models: format!("{api}/models"),
            api,
        };
        urls.chat
            .parse::<ureq::http::Uri>()
            .map_err(|e| Error::Config(format!("invalid base URL {shown:?}: {e}")))?;
        Ok(urls)
    }
}

/// What is known about one capability of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Known {
    Unknown = 0,
    Yes = 1,
    No = 2,
}

impl Known {
    fn load(cell: &AtomicU8) -> Self {
        match cell.load(Ordering::Relaxed) {
            1 => Self::Yes,
            2 => Self::No,
            _ => Self::Unknown,
        }
    }
}

/// What a client knows about its server's stream-replay routes (llama.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRoute {
    /// Not asked yet.
    Unknown,
    /// The routes answer, in this shape.
    Present(RouteShape),
    /// They are not there; not asked again before this time.
    Absent(Instant),
}

/// What every call of a client shares.
pub(crate) struct Shared {
    pub transport: Transport,
    pub urls: Urls,
    /// Authorization and the builder's extra headers, on every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub limits: Limits,
    pub deadline: Option<Duration>,
    pub retry: RetryPolicy,
    pub sse_limits: SseLimits,
    pub chat_limits: ChatLimits,
    /// Whether a `<think>` block opening the content is split into reasoning.
    pub split_think: bool,
    /// The builder's word on continuation: `Unknown` = detect.
    pub continues_setting: Known,
    replay: Mutex<ReplayRoute>,
    /// Whether the server continues a final assistant message (detected or learnt).
    continues: AtomicU8,
    /// The server did not refuse `stream_options` (cleared when it does).
    stream_options: AtomicBool,
    /// Some request of this client got an answer (any status).
    answered: AtomicBool,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        transport: Transport,
        urls: Urls,
        headers: Vec<(HeaderName, HeaderValue)>,
        limits: Limits,
        deadline: Option<Duration>,
        retry: RetryPolicy,
        sse_limits: SseLimits,
        chat_limits: ChatLimits,
        split_think: bool,
        continues_setting: Known,
    ) -> Self {
        Self {
            transport,
            urls,
            headers,
            limits,
            deadline,
            retry,
            sse_limits,
            chat_limits,
            split_think,
            continues_setting,
            replay: Mutex::new(ReplayRoute::Unknown),
            continues: AtomicU8::new(continues_setting as u8),
            stream_options: AtomicBool::new(true),
            answered: AtomicBool::new(false),
        }
    }

    /// What is known about the replay route now.
    pub(crate) fn replay_route(&self) -> ReplayRoute {
        let route = *self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        match route {
            ReplayRoute::Absent(until) if Instant::now() >= until => ReplayRoute::Unknown,
            route => route,
        }
    }

    /// Whether to try resuming on this server (it was not found without the route lately).
    pub(crate) fn replay_available(&self) -> bool {
        !matches!(self.replay_route(), ReplayRoute::Absent(_))
    }

    /// Remembers what the server showed about the route.
    pub(crate) fn set_replay_route(&self, shape: Option<RouteShape>) {
        let route = match shape {
            Some(shape) => ReplayRoute::Present(shape),
            None => ReplayRoute::Absent(Instant::now() + REPLAY_MEMORY),
        };
        *self.replay.lock().unwrap_or_else(PoisonError::into_inner) = route;
    }

    /// Whether the server is known to continue a final assistant message.
    pub(crate) fn continues(&self) -> Known {
        Known::load(&self.continues)
    }

    /// A response's headers say who the server is: llama.cpp continues a final assistant
    /// message (`Server: llama.cpp`, or behind LiteLLM `llm_provider-server: llama.cpp`). The
    /// builder's setting wins; a server that refused a continuation stays refused.
    pub(crate) fn observe_server(&self, server: Option<&str>) {
        if self.continues_setting != Known::Unknown || self.continues() != Known::Unknown {
            return;
        }
        if server.is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("llama.cpp")) {
            log::debug!("the server is llama.cpp: a broken stream can be continued");
            self.continues.store(Known::Yes as u8, Ordering::Relaxed);
        }
    }

    /// The server answered a continuation as one it does not understand.
    pub(crate) fn refuse_continuation(&self) {
        if self.continues_setting != Known::Yes {
            self.continues.store(Known::No as u8, Ordering::Relaxed);
        }
    }

    /// Whether to ask for usage with `stream_options` (the server did not refuse it).
    pub(crate) fn stream_options_accepted(&self) -> bool {
        self.stream_options.load(Ordering::Relaxed)
    }

    /// Remembers whether the server accepts `stream_options`.
    pub(crate) fn set_stream_options_accepted(&self, accepted: bool) {
        self.stream_options.store(accepted, Ordering::Relaxed);
    }

    /// Some request got an answer.
    pub(crate) fn server_answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }

    /// Whether any request of this client ever got an answer.
    pub(crate) fn ever_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }

    /// `err` with the server's text made fit for logs, hooks and terminals: this client's
    /// secrets redacted, controls escaped (see [`Error::sanitized`]).
    pub(crate) fn sanitized(&self, err: Error, extra: &[&str]) -> Error {
        let headers = self
            .headers
            .iter()
            .filter(|(_, v)| v.is_sensitive())
            .filter_map(|(_, v)| v.to_str().ok())
            .flat_map(crate::redact::header_secrets);
        let urls = crate::redact::userinfo_secrets(&self.urls.chat);
        let secrets: Vec<&str> = headers
            .chain(urls.iter().map(|s| s.as_ref()))
            .chain(self.transport.proxy_password())
            .chain(extra.iter().copied())
            .collect();
        err.sanitized(&secrets)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Client")
            .field("url", &crate::redact::redact_userinfo(&self.urls.chat))
            .field("headers", &names)
            .field("limits", &self.limits)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalization() {
        let table = [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"),
            ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
            ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
            ("http://h/api/v1", "http://h/api/v1"),
            ("http://h/v1/chat/completions", "http://h/v1"),
            (" HTTP://[::1]:9000 ", "HTTP://[::1]:9000/v1"),
        ];
        for (base, api) in table {
            let want = Urls {
                api: api.to_owned(),
                chat: format!("{api}/chat/completions"),
                responses: format!("{api}/responses"),
                models: format!("{api}/models"),
            };
            assert_eq!(Urls::from_base(base).ok(), Some(want), "{base}");
        }
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://h/v1",
            "http://",
            "http:///v1",
            "http://h h/v1",
            "http://h/v1?api-version=1",
            "http://h?q",
            "http://h/v1#frag",
        ] {
            assert!(
                matches!(Urls::from_base(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }
}
