//! The one door to ureq's semver-exempt API (`ureq::unversioned`): every item of it this
//! crate uses is named here, and only here.
//!
//! Why we use it: the transport plugs its own connector and socket layer into ureq — a
//! cancellable dialer without a resolver thread, read timeouts per phase (first byte, idle,
//! drain, the call's deadline) set on the socket before each read, a per-socket kill switch
//! for cancel, and tracking of which pooled connection a request went out on. ureq's
//! public API has none of these hooks.
//!
//! The pin: Cargo.toml asks for `ureq = "~3.5"`, so a 3.6 never arrives unannounced. When it
//! does, check before widening the pin:
//! - `transport::{Connector, Transport, Buffers, LazyBuffers, ConnectionDetails, Either,
//!   NextTimeout}`: the signatures our `SocketConnector`, `SocketTransport` and
//!   `MarkConnected` implement (src/http/socket.rs, src/http/mod.rs), and whether
//!   `Transport::await_input` still gets a `NextTimeout` per read;
//! - `resolver::{Resolver, ResolvedSocketAddrs}`: our `LazyResolver` leaves name lookup to
//!   the dialer;
//! - `transport::{ConnectProxyConnector, RustlsConnector}` and the order of the chain;
//! - the log target `ureq::unversioned::transport` the CLI caps at debug (src/cli/logging.rs);
//! - then run the transport tests (tests/transport.rs: pool reuse, stale resends, cancel,
//!   timeouts, TLS) and the calls bench.

pub(crate) use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
#[cfg(feature = "tls")]
pub(crate) use ureq::unversioned::transport::RustlsConnector;
pub(crate) use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    Transport,
};
