//! [`ClientBuilder`]: every setting of a client, checked when it is built; the API key and
//! proxy settings, which never print their secrets.

use super::Client;
use crate::call::{Known, Shared, Urls};
use crate::chat::ChatLimits;
use crate::error::Error;
use crate::http::{self, Limits, TlsSettings, Transport};
use crate::retry::RetryPolicy;
use crate::sse::Limits as SseLimits;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use ureq::http::{HeaderName, HeaderValue, header};

/// How long the rest of a complete response (the chunked terminator) may take before the
/// connection is dropped instead of pooled.
const DRAIN_LIMIT: Duration = Duration::from_millis(50);

/// An API key. `Debug` and `Display` print `<redacted>`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where requests go through a proxy.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ProxyConfig {
    /// From `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, honouring `NO_PROXY` (ureq's default).
    #[default]
    FromEnv,
    /// Never use a proxy.
    None,
    /// This proxy (`http://host:port`, `http://user:password@host:port`).
    Url(String),
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FromEnv => f.write_str("FromEnv"),
            Self::None => f.write_str("None"),
            Self::Url(url) => f
                .debug_tuple("Url")
                .field(&crate::redact::redact_userinfo(url))
                .finish(),
        }
    }
}

/// Builds a [`Client`]. Every setting has a default chosen for LLM servers; see each method.
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<ApiKey>,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    proxy: ProxyConfig,
    sse_limits: SseLimits,
    chat_limits: ChatLimits,
    root_pems: Vec<(Vec<u8>, String)>,
    root_files: Vec<PathBuf>,
    roots_from_env: bool,
    platform_verifier: bool,
    pinned: Vec<(String, Vec<IpAddr>)>,
    split_think: bool,
    max_retries: Option<u32>,
    resume: Option<bool>,
    server_continues: Option<bool>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials as often as not (Azure's `api-key`, gateway keys).
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ClientBuilder")
            .field("base_url", &crate::redact::redact_userinfo(&self.base_url))
            .field("api_key", &self.api_key)
            .field("headers", &header_names)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("deadline", &self.deadline)
            .field("retry", &self.retry)
            .field("proxy", &self.proxy)
            .field("root_certificates", &self.root_pems.len())
            .field("root_certificate_files", &self.root_files)
            .field("split_think", &self.split_think)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080/v1".into(),
            api_key: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            deadline: None,
            retry: RetryPolicy::default(),
            proxy: ProxyConfig::FromEnv,
            sse_limits: SseLimits::default(),
            chat_limits: ChatLimits::default(),
            root_pems: Vec::new(),
            root_files: Vec::new(),
            roots_from_env: true,
            platform_verifier: false,
            pinned: Vec::new(),
            split_think: true,
            max_retries: None,
            resume: None,
            server_continues: None,
        }
    }
}

impl ClientBuilder {
    /// The server's base URL (default `http://127.0.0.1:8080/v1`). `http://host:port` gets
    /// `/v1` added; a URL already ending in `/chat/completions` is used as it is; any other
    /// path (`https://openrouter.ai/api/v1`) gets `/chat/completions` appended.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sends `Authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// An extra header on every request (e.g. `OpenAI-Organization`, a gateway's routing
    /// key). It replaces a header of the same name the client would send (an `Authorization`
    /// header replaces the API key's), and a later call replaces an earlier one. Values
    /// never appear in `Debug` output.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Limit on establishing a connection, DNS and TLS included (default 10 s: a healthy
    /// server accepts in milliseconds; a dead host should fail fast and be retried).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Limit from sending the request to the first byte of the response body (default
    /// 300 s: prompt evaluation of a long context on a small machine takes minutes).
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// How long one read of the body may wait for the server once the body flows
    /// (default 60 s). Keep-alive comments count as reads; time the caller spends between
    /// reads (a slow callback, a blocked pipe) does not. There is deliberately no total body
    /// timeout, which would kill long healthy generations.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Limit on a whole call, retries and waits included (default none).
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// How transient failures are retried (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the policy's `max_retries`, whatever policy is given before or after.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Sets the policy's `resume` (pick a broken stream up where it broke on servers that
    /// replay it; default on), whatever policy is given before or after.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = Some(resume);
        self
    }

    /// Whether the server continues a final assistant message (`continue_final_message`),
    /// which a broken answer then uses to go on without generating the delivered part again.
    /// By default it is detected: llama.cpp says so in its `Server` header (behind LiteLLM in
    /// `llm_provider-server`); for vLLM or SGLang say `true`; `false` never continues.
    pub fn server_continues(mut self, continues: bool) -> Self {
        self.server_continues = Some(continues);
        self
    }

    /// Proxy selection (default: from the environment, as ureq does).
    pub fn proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = proxy;
        self
    }

    /// Bounds on SSE lines and events.
    pub fn sse_limits(mut self, limits: SseLimits) -> Self {
        self.sse_limits = limits;
        self
    }

    /// Bounds on the aggregated response.
    pub fn chat_limits(mut self, limits: ChatLimits) -> Self {
        self.chat_limits = limits;
        self
    }

    /// Whether content that opens with `<think>` is split off as reasoning, up to
    /// `</think>` (default true): models served without a reasoning parser (llama.cpp with
    /// `--reasoning-format none`, older Ollama, some gateways) send their thinking that way.
    /// It then arrives as [`StreamEvent::Reasoning`](crate::StreamEvent::Reasoning) and in the response's reasoning; see
    /// [`Accumulator::split_think`](crate::chat::Accumulator::split_think).
    pub fn split_think(mut self, on: bool) -> Self {
        self.split_think = on;
        self
    }

    /// Trusts the certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----` blocks),
    /// e.g. an internal CA. Given roots replace the built-in Mozilla roots, like
    /// `curl --cacert`; call it again (or [`root_certificate_file`](Self::root_certificate_file))
    /// to trust several. Without this, the file named by `SSL_CERT_FILE` is used if set.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        let n = self.root_pems.len() + 1;
        self.root_pems
            .push((pem.into(), format!("root certificate PEM #{n}")));
        self
    }

    /// Trusts the certificates in the PEM file at `path` (read when the client is built).
    /// See [`root_certificate_pem`](Self::root_certificate_pem).
    pub fn root_certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_files.push(path.into());
        self
    }

    /// Whether `SSL_CERT_FILE` names the trusted roots when none are given (default true,
    /// as curl and Python do).
    pub fn roots_from_env(mut self, honour: bool) -> Self {
        self.roots_from_env = honour;
        self
    }

    /// Verifies certificates with the operating system's verifier and trust store (feature
    /// `platform-verifier`).
    #[cfg(feature = "platform-verifier")]
    pub fn platform_verifier(mut self) -> Self {
        self.platform_verifier = true;
        self
    }

    /// Connects to `ip` for `host` without asking DNS, like `curl --resolve`; the URL (and
    /// the TLS server name) keep the host name.
    pub fn resolve(mut self, host: impl Into<String>, ip: IpAddr) -> Self {
        let host = host.into();
        match self
            .pinned
            .iter_mut()
            .find(|(h, _)| h.eq_ignore_ascii_case(&host))
        {
            Some((_, ips)) => ips.push(ip),
            None => self.pinned.push((host, vec![ip])),
        }
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL that is not `http(s)://host...` (or has a query or a
    /// fragment), an `https` URL without the `tls` feature, an API key that is not printable
    /// ASCII, an invalid header name or value, an invalid proxy URL, or root certificates
    /// that cannot be read.
    pub fn build(self) -> Result<Client, Error> {
        let urls = Urls::from_base(&self.base_url)?;
        let headers = self.request_headers()?;
        let proxy = match &self.proxy {
            ProxyConfig::FromEnv => ureq::Proxy::try_from_env(),
            ProxyConfig::None => None,
            ProxyConfig::Url(url) => Some(ureq::Proxy::new(url).map_err(|e| {
                Error::Config(format!(
                    "invalid proxy {}: {e}",
                    crate::redact::redact_userinfo(url)
                ))
            })?),
        };
        let mut tls = TlsSettings::default();
        for (pem, source) in &self.root_pems {
            tls.add_pem(pem, source)?;
        }
        for path in &self.root_files {
            tls.add_pem_file(path)?;
        }
        // The environment's bundle matters only for HTTPS (and costs a parse of a few
        // hundred certificates), so a plain-HTTP client skips it.
        let https = self
            .base_url
            .trim_start()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if !tls.has_roots() && self.roots_from_env && https {
            if let Some(path) = std::env::var_os(http::SSL_CERT_FILE).filter(|p| !p.is_empty()) {
                tls.add_pem_file(std::path::Path::new(&path))
                    .map_err(|e| Error::Config(format!("{}: {e}", http::SSL_CERT_FILE)))?;
            }
        }
        tls.platform_verifier = self.platform_verifier;
        let transport = Transport::new(http::Settings {
            connect_timeout: self.connect_timeout,
            proxy,
            tls,
            pinned: self.pinned,
            user_agent: concat!("oai-sse/", env!("CARGO_PKG_VERSION")).to_owned(),
        })?;
        let mut retry = self.retry;
        if let Some(n) = self.max_retries {
            retry.max_retries = n;
        }
        if let Some(on) = self.resume {
            retry.resume = on;
        }
        let limits = Limits {
            connect: self.connect_timeout,
            first_byte: self.first_byte_timeout,
            idle: self.idle_timeout,
            drain: DRAIN_LIMIT,
        };
        let continues = match self.server_continues {
            None => Known::Unknown,
            Some(true) => Known::Yes,
            Some(false) => Known::No,
        };
        Ok(Client {
            inner: Arc::new(Shared::new(
                transport,
                urls,
                headers,
                limits,
                self.deadline,
                retry,
                self.sse_limits,
                self.chat_limits,
                self.split_think,
                continues,
            )),
        })
    }

    /// The headers every request carries: the API key's `Authorization`, unless the caller
    /// gave one, then the caller's (a later one replaces an earlier one of the same name).
    fn request_headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
        let mut given: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
            let mut value = HeaderValue::from_str(value.trim())
                .map_err(|_| Error::Config(format!("invalid value for header {name}")))?;
            value.set_sensitive(true);
            given.retain(|(n, _)| *n != name);
            given.push((name, value));
        }
        let mut headers = Vec::with_capacity(given.len() + 1);
        if let Some(key) = &self.api_key {
            let key = key.expose().trim();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::Config(
                    "the API key must be printable ASCII without spaces".into(),
                ));
            }
            if given.iter().any(|(n, _)| *n == header::AUTHORIZATION) {
                log::debug!("an Authorization header was given: the API key is not sent");
            } else {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| Error::Config("the API key cannot go in a header".into()))?;
                value.set_sensitive(true);
                headers.push((header::AUTHORIZATION, value));
            }
        }
        headers.extend(given);
        Ok(headers)
    }
}
