//! Which certificate authorities the client trusts.
//!
//! By default: Mozilla's root store (webpki-roots, compiled in). Edge boxes often talk to
//! servers behind an internal CA instead; then the client trusts exactly the certificates it
//! is given — as PEM bytes or files through the builder, or the file named by
//! `SSL_CERT_FILE`, as curl, OpenSSL and Python's `ssl` do. Given roots replace the built-in
//! store, like `curl --cacert`: to trust public CAs as well, add the system bundle too
//! (`/etc/ssl/certs/ca-certificates.crt` on Debian). The `platform-verifier` feature uses the
//! operating system's verifier instead.

use crate::error::Error;
use std::path::Path;

/// The environment variable naming a PEM bundle of trusted roots.
pub(crate) const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The trust settings of one client.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// Certificates to trust instead of the built-in roots (empty: built-in roots).
    #[cfg(feature = "tls")]
    roots: Vec<ureq::tls::Certificate<'static>>,
    /// Where the roots came from, for messages.
    sources: Vec<String>,
    /// Use the operating system's verifier (feature `platform-verifier`).
    pub platform_verifier: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("root_sources", &self.sources)
            .field("platform_verifier", &self.platform_verifier)
            .finish()
    }
}

impl TlsSettings {
    /// Adds every certificate in `pem` (other items, such as keys, are skipped); `source`
    /// names it in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the PEM is malformed, holds no certificate, or the crate was
    /// built without TLS.
    pub(crate) fn add_pem(&mut self, pem: &[u8], source: &str) -> Result<(), Error> {
        #[cfg(feature = "tls")]
        {
            use ureq::tls::{PemItem, parse_pem};
            let before = self.roots.len();
            for item in parse_pem(pem) {
                match item {
                    Ok(PemItem::Certificate(cert)) => self.roots.push(cert),
                    Ok(_) => {}
                    Err(e) => return Err(Error::Config(format!("{source}: bad PEM: {e}"))),
                }
            }
            if self.roots.len() == before {
                return Err(Error::Config(format!(
                    "{source}: no certificate found (expected -----BEGIN CERTIFICATE-----)"
                )));
            }
            self.sources.push(source.to_owned());
            Ok(())
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = pem;
            Err(Error::Config(format!(
                "{source}: root certificates need the `tls` feature"
            )))
        }
    }

    /// Adds the certificates of the PEM file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the file cannot be read or holds no certificate.
    pub(crate) fn add_pem_file(&mut self, path: &Path) -> Result<(), Error> {
        let name = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| Error::Config(format!("{name}: {e}")))?;
        self.add_pem(&pem, &name)
    }

    /// Whether any roots were given.
    pub(crate) fn has_roots(&self) -> bool {
        !self.sources.is_empty()
    }

    #[cfg(feature = "tls")]
    pub(crate) fn ureq_config(&self) -> ureq::tls::TlsConfig {
        use ureq::tls::{RootCerts, TlsConfig};
        let roots = if self.platform_verifier {
            RootCerts::PlatformVerifier
        } else if self.roots.is_empty() {
            RootCerts::WebPki
        } else {
            RootCerts::new_with_certs(&self.roots)
        };
        TlsConfig::builder().root_certs(roots).build()
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn pem_without_certificates_is_a_config_error() {
        let mut tls = TlsSettings::default();
        for bad in [
            &b""[..],
            b"no pem here",
            b"-----BEGIN CERTIFICATE-----\n!!\n",
        ] {
            assert!(
                matches!(tls.add_pem(bad, "test"), Err(Error::Config(m)) if m.starts_with("test:")),
                "{bad:?}"
            );
        }
        assert!(!tls.has_roots());
        let missing = tls.add_pem_file(Path::new("/nonexistent/ca.pem"));
        assert!(matches!(missing, Err(Error::Config(m)) if m.contains("/nonexistent/ca.pem")));
    }
}
