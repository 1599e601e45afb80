//! TLS-ALPN-01 (RFC 8737): the validation certificate for one name, and the dedicated server
//! configuration that presents it. A handshake offering `acme-tls/1` must be answered with
//! that protocol and nothing else; rustls would abort it under the normal configuration
//! (whose ALPN list is `h2`, `http/1.1`), so the listener picks this one from the ClientHello.

use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, X509Error, provider};

/// The ALPN protocol of TLS-ALPN-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A self-signed certificate for `name` carrying the critical `acmeIdentifier` extension with
/// `digest` (the SHA-256 of the key authorization).
pub fn acme_validation_cert(name: &str, digest: &[u8]) -> Result<CertifiedKey, TlsError> {
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|source| TlsError::BadKey {
            what: format!("TLS-ALPN-01 key for {name}"),
            source,
        })?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// The server configuration for one validation handshake: TLS 1.2/1.3, ALPN `acme-tls/1`
/// only, always presenting `key`.
pub fn acme_validation_config(key: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(key)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Whether a ClientHello asks for a TLS-ALPN-01 validation handshake.
pub fn offers_acme_alpn(hello: &ClientHello<'_>) -> bool {
    hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
}

/// What renewal scheduling reads from a certificate (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalFacts {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The authority key identifier's `keyIdentifier`, if present (ARI needs it).
    pub authority_key_id: Option<Vec<u8>>,
    /// The serial's encoded content bytes (ARI needs them).
    pub serial_der: Vec<u8>,
}

/// Validity and identity of a certificate (DER), for renewal scheduling.
pub fn renewal_facts(der: &[u8]) -> Result<RenewalFacts, X509Error> {
    let facts = super::x509::parse(der)?;
    Ok(RenewalFacts {
        not_before: facts.not_before,
        not_after: facts.not_after,
        authority_key_id: facts.authority_key_id,
        serial_der: facts.serial_der,
    })
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
