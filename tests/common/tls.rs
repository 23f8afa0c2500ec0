//! A TLS-terminating loopback proxy for tests and the benchmark: a certificate authority made
//! per run (rcgen), a server certificate it signs for `localhost` and `127.0.0.1`, and a proxy
//! that accepts TLS (rustls), counts handshakes, and forwards the plain bytes of each TLS
//! connection over its own TCP connection to a backend — usually a `MockServer`, so every
//! mock fault works over TLS too, and a backend that closes a connection closes its TLS
//! connection (close_notify, then FIN).
//!
//! Self-contained (std, rustls, rcgen) so the benchmark package can include it by path.
#![allow(dead_code)] // Each user takes a different part.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Every proxy socket gives up after this long without progress.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// A test certificate authority and the server certificate it issued.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    config: Arc<ServerConfig>,
}

impl TestCa {
    /// A fresh CA and a server certificate for `localhost`, `127.0.0.1` and `names`.
    pub fn new(names: &[&str]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "oai-sse test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        sans.extend(names.iter().map(|n| (*n).to_owned()));
        let mut leaf = CertificateParams::new(sans).expect("server params");
        leaf.distinguished_name
            .push(DnType::CommonName, "oai-sse test server");
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("server cert");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf_cert.der().clone(), ca_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .expect("server config");
        Self {
            ca_pem: pem("CERTIFICATE", ca_cert.der()),
            config: Arc::new(config),
        }
    }
}

/// `der` as a PEM block.
fn pem(label: &str, der: &CertificateDer<'_>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for group in der.as_ref().chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A running TLS proxy; stops accepting when dropped (open connections end with their peers).
pub struct TlsProxy {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    /// TCP connections accepted.
    accepted: AtomicU64,
    /// TLS handshakes completed.
    handshakes: AtomicU64,
    /// Connections that failed during the handshake (e.g. the client rejected the certificate).
    failed_handshakes: AtomicU64,
}

impl TlsProxy {
    /// Serves TLS on a free loopback port, forwarding to `backend`.
    pub fn start(ca: &TestCa, backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop, config) = (
                Arc::clone(&counts),
                Arc::clone(&stop),
                Arc::clone(&ca.config),
            );
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    if stop.load(SeqCst) {
                        return;
                    }
                    let Ok(tcp) = tcp else { continue };
                    counts.accepted.fetch_add(1, SeqCst);
                    let (counts, config) = (Arc::clone(&counts), Arc::clone(&config));
                    std::thread::spawn(move || {
                        if let Err(e) = relay(tcp, backend, config, &counts) {
                            // Expected when a test's client goes away mid-stream.
                            let _ = e;
                        }
                    });
                }
            })
        };
        Self {
            addr,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("https://{}/v1", self.addr)
    }

    /// `https://HOST:PORT/v1`, for a host name the certificate carries.
    pub fn base_url_for(&self, host: &str) -> String {
        format!("https://{host}:{}/v1", self.addr.port())
    }

    pub fn accepted(&self) -> u64 {
        self.counts.accepted.load(SeqCst)
    }

    pub fn handshakes(&self) -> u64 {
        self.counts.handshakes.load(SeqCst)
    }

    pub fn failed_handshakes(&self) -> u64 {
        self.counts.failed_handshakes.load(SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(thread) = self.thread.take() {
            // Wakes the blocking accept; the loop sees the flag and ends.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

fn lock(conn: &Mutex<ServerConnection>) -> std::sync::MutexGuard<'_, ServerConnection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes every pending TLS record of `conn` to `tcp`.
fn flush_tls(conn: &mut ServerConnection, mut tcp: &TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    Ok(())
}

/// Carries one TLS connection: this thread reads the client (TLS in, plain bytes out to the
/// backend), a second reads the backend (plain bytes in, TLS out to the client).
fn relay(
    tcp: TcpStream,
    backend: SocketAddr,
    config: Arc<ServerConfig>,
    counts: &Counts,
) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    tcp.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    let conn = Arc::new(Mutex::new(
        ServerConnection::new(config).map_err(io::Error::other)?,
    ));
    let tcp = Arc::new(tcp);
    let mut plain_out: Option<TcpStream> = None;
    let mut down: Option<JoinHandle<()>> = None;
    let mut buf = vec![0u8; 64 << 10];
    let mut plain = vec![0u8; 64 << 10];
    let result = loop {
        let n = match (&*tcp).read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let mut to_backend = Vec::new();
        {
            let mut c = lock(&conn);
            let was_handshaking = c.is_handshaking();
            let mut input = &buf[..n];
            while !input.is_empty() {
                if c.read_tls(&mut input)? == 0 {
                    break;
                }
                if let Err(e) = c.process_new_packets() {
                    let _ = flush_tls(&mut c, &tcp);
                    if was_handshaking {
                        counts.failed_handshakes.fetch_add(1, SeqCst);
                    }
                    return Err(io::Error::other(e));
                }
            }
            if was_handshaking && !c.is_handshaking() {
                counts.handshakes.fetch_add(1, SeqCst);
            }
            loop {
                match c.reader().read(&mut plain) {
                    Ok(0) => break,
                    Ok(m) => to_backend.extend_from_slice(&plain[..m]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            flush_tls(&mut c, &tcp)?;
        }
        if to_backend.is_empty() {
            continue;
        }
        if plain_out.is_none() {
            let b = TcpStream::connect_timeout(&backend, Duration::from_secs(5))?;
            b.set_nodelay(true)?;
            b.set_read_timeout(Some(SOCKET_TIMEOUT))?;
            b.set_write_timeout(Some(SOCKET_TIMEOUT))?;
            let reader = b.try_clone()?;
            let (conn, tcp) = (Arc::clone(&conn), Arc::clone(&tcp));
            down = Some(std::thread::spawn(move || {
                let _ = backward(reader, &conn, &tcp);
            }));
            plain_out = Some(b);
        }
        if let Some(b) = &mut plain_out {
            b.write_all(&to_backend)?;
        }
    };
    if lock(&conn).is_handshaking() {
        // The client hung up mid-handshake: it rejected the certificate (rustls clients
        // often close without sending their alert).
        counts.failed_handshakes.fetch_add(1, SeqCst);
    }
    // The client is gone (or failed): close the backend side so the other half ends too.
    if let Some(b) = &plain_out {
        let _ = b.shutdown(Shutdown::Both);
    }
    if let Some(down) = down {
        let _ = down.join();
    }
    result
}

/// Backend → client: plain bytes in, TLS records out. When the backend closes, the TLS
/// connection closes too (close_notify, then FIN), as a server closing it would.
fn backward(
    mut backend: TcpStream,
    conn: &Mutex<ServerConnection>,
    tcp: &TcpStream,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match backend.read(&mut buf) {
            Ok(0) | Err(_) => {
                let mut c = lock(conn);
                c.send_close_notify();
                let _ = flush_tls(&mut c, tcp);
                let _ = tcp.shutdown(Shutdown::Both);
                return Ok(());
            }
            Ok(n) => n,
        };
        let mut c = lock(conn);
        c.writer().write_all(&buf[..n])?;
        flush_tls(&mut c, tcp)?;
    }
}
