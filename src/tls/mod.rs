//! TLS termination: a swappable certificate store that resolves SNI, the self-signed fallback,
//! the rustls server configuration, and handshake-failure accounting.
//!
//! The listener drives a `tokio_rustls::TlsAcceptor` built from [`server_config`] under the
//! handshake timeout, classifies any failure with [`failure_reason`] and hands it to
//! [`HandshakeFailures`]. Certificates live in a [`CertStore`] that the config holds only by
//! `Arc`: reload and ACME replace certificates in the store, so listeners and their
//! `ServerConfig` never change.

mod acme_alpn;
mod failures;
mod selfsigned;
mod store;
mod x509;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

pub use acme_alpn::{
    ACME_TLS_ALPN, RenewalFacts, acme_validation_cert, acme_validation_config, offers_acme_alpn,
    renewal_facts,
};
pub use failures::{FailureReason, HandshakeFailures, failure_reason};
pub use selfsigned::{SelfSignedOrigin, self_signed};
pub use store::{CertInfo, CertStore};
pub use x509::X509Error;

/// Why a certificate could not be loaded or the TLS configuration could not be built. Every
/// variant names the file (or in-memory source) it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: malformed PEM: {source}")]
    Pem {
        what: String,
        #[source]
        source: pem::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: no PEM private key (PKCS#8, SEC1 or PKCS#1) found")]
    NoKey { what: String },
    #[error("{what}: unusable private key: {source}")]
    BadKey {
        what: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{what}: cannot read the certificate: {source}")]
    BadCertificate {
        what: String,
        #[source]
        source: X509Error,
    },
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("cannot generate the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// A certificate ready to serve, with what the status page and metrics need.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// The chain (leaf first) and signing key handed to rustls.
    pub key: Arc<CertifiedKey>,
    /// DNS subject alternative names lower-cased, and IP ones as text. The subject common
    /// name is ignored, as clients ignore it; a certificate without SANs can only be the
    /// default.
    pub names: Vec<String>,
    pub not_after: SystemTime,
    pub source: CertSource,
    /// Lower-case hex, as `openssl x509 -serial` prints it.
    pub serial_hex: String,
}

/// Where a certificate came from; decides precedence in the [`CertStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `[[tls.certificates]]` in the config.
    File { cert: PathBuf, key: PathBuf },
    /// Issued by the ACME task.
    Acme,
    /// The generated fallback.
    SelfSigned,
}

impl CertSource {
    /// Bounded label for the status page and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::File { .. } => "file",
            Self::Acme => "acme",
            Self::SelfSigned => "self_signed",
        }
    }
}

/// Load a PEM chain and private key (PKCS#8, SEC1 or PKCS#1) from files. Errors name the file
/// and what is wrong with it: unreadable, no certificate, no key, or a key that does not match
/// the certificate.
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let source = CertSource::File {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    load_pem(&cert_pem, &key_pem, source)
}

/// Like [`load_pem_files`] for PEM already in memory (an ACME order, the self-signed files).
/// Errors name the certificate by its source.
pub fn load_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    source: CertSource,
) -> Result<LoadedCert, TlsError> {
    let (cert_what, key_what) = match &source {
        CertSource::File { cert, key } => (cert.display().to_string(), key.display().to_string()),
        CertSource::Acme => ("ACME certificate".to_owned(), "ACME key".to_owned()),
        CertSource::SelfSigned => (
            "self-signed certificate".to_owned(),
            "self-signed key".to_owned(),
        ),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: cert_what.clone(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { what: cert_what });
    };
    let facts = x509::parse(leaf).map_err(|source| TlsError::BadCertificate {
        what: cert_what.clone(),
        source,
    })?;
    let key_der = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey { what: key_what }),
        Err(source) => {
            return Err(TlsError::Pem {
                what: key_what,
                source,
            });
        }
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::BadKey {
            what: key_what.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // Only a key type that cannot report its public half gives Unknown; rustls's own
        // `CertifiedKey::from_der` accepts that too.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_what,
                key: key_what,
            });
        }
        Err(source) => {
            return Err(TlsError::BadKey {
                what: cert_what,
                source,
            });
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        names: facts.names,
        not_after: facts.not_after,
        source,
        serial_hex: facts.serial_hex,
    })
}

/// Tickets sent after a full TLS 1.3 handshake when stateless tickets are on. Each ticket
/// resumes one connection (RFC 8446 §C.4 asks clients not to reuse them); two cover a browser's
/// usual reconnect without spending much on the handshake.
const STATELESS_TICKETS: usize = 2;
/// With stateless tickets off, TLS 1.3 resumption uses tickets that are keys into the server's
/// session cache; each one takes a cache entry, so send only one.
const STATEFUL_TICKETS: usize = 1;

/// The rustls server configuration for every TLS listener: aws-lc-rs chosen explicitly (no
/// process-wide default provider), TLS 1.3 and 1.2 only, no 0-RTT, ALPN `h2` then `http/1.1`,
/// a server-side session cache of `tls.session_cache_size` entries, and certificates resolved
/// by `store` at each handshake.
///
/// `tls.tickets` turns on stateless session tickets (a ticketer whose keys rotate every 6 h,
/// each key accepted for 12 h). Off, resumption still works through the session cache, which
/// keeps no key material that outlives the process.
pub fn server_config(
    store: Arc<CertStore>,
    tls: &crate::config::Tls,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // 0-RTT data is replayable; a gateway in front of arbitrary POST handlers must not accept it.
    config.max_early_data_size = 0;
    config.session_storage = if tls.session_cache_size == 0 {
        Arc::new(NoServerSessionStorage {})
    } else {
        ServerSessionMemoryCache::new(tls.session_cache_size)
    };
    config.send_tls13_tickets = if tls.tickets {
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Config)?;
        STATELESS_TICKETS
    } else if tls.session_cache_size == 0 {
        0
    } else {
        STATEFUL_TICKETS
    };
    Ok(Arc::new(config))
}

/// The SNI name a client sent, lower-cased by rustls.
pub fn sni_of(conn: &ServerConnection) -> Option<&str> {
    conn.server_name()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(test)]
mod tests;
