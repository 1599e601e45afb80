//! Real handshakes between a tokio-rustls client and the server configuration, over an
//! in-memory duplex pipe.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, HandshakeKind, ProtocolVersion, SignatureScheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use super::*;

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "edgeward-tls-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh ECDSA certificate and key for `names`, as PEM.
fn pem_pair(names: &[&str]) -> (String, String) {
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn cert(names: &[&str], source: CertSource) -> LoadedCert {
    let (cert_pem, key_pem) = pem_pair(names);
    load_pem(cert_pem.as_bytes(), key_pem.as_bytes(), source).unwrap()
}

fn file_cert(names: &[&str]) -> LoadedCert {
    let source = CertSource::File {
        cert: PathBuf::from("/etc/edgeward/test.pem"),
        key: PathBuf::from("/etc/edgeward/test.key"),
    };
    cert(names, source)
}

fn tls_config(tickets: bool) -> crate::config::Tls {
    crate::config::Tls {
        certificates: Vec::new(),
        self_signed_dir: PathBuf::from("/nonexistent"),
        session_cache_size: 64,
        tickets,
    }
}

/// Accepts any server certificate, so tests can see which one was served even when its names
/// do not match.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn default_client() -> Arc<ClientConfig> {
    client_config(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"])
}

/// `None` connects by IP address, for which clients send no SNI.
fn server_name(sni: Option<&str>) -> ServerName<'static> {
    match sni {
        Some(name) => ServerName::try_from(name.to_owned()).unwrap(),
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    }
}

type Pair = (
    io::Result<server::TlsStream<DuplexStream>>,
    io::Result<client::TlsStream<DuplexStream>>,
);

async fn handshake(
    server: &Arc<rustls::ServerConfig>,
    client: &Arc<ClientConfig>,
    sni: Option<&str>,
) -> Pair {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    tokio::join!(
        TlsAcceptor::from(Arc::clone(server)).accept(server_io),
        TlsConnector::from(Arc::clone(client)).connect(server_name(sni), client_io),
    )
}

/// The leaf certificate a client was served for `sni`.
async fn served_leaf(
    server: &Arc<rustls::ServerConfig>,
    sni: Option<&str>,
) -> CertificateDer<'static> {
    let (server_side, client_side) = handshake(server, &default_client(), sni).await;
    server_side.unwrap();
    let client_side = client_side.unwrap();
    client_side.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn leaf_of(cert: &LoadedCert) -> &CertificateDer<'static> {
    &cert.key.cert[0]
}

#[tokio::test]
async fn sni_picks_exact_then_one_label_wildcard_then_default() {
    let exact = file_cert(&["a.example.com"]);
    let wildcard = file_cert(&["*.example.com"]);
    let fallback = file_cert(&["default.test"]);
    let store = CertStore::new();
    store.set_files(vec![
        (exact.clone(), false),
        (wildcard.clone(), false),
        (fallback.clone(), true),
    ]);
    let server = server_config(Arc::clone(&store), &tls_config(true)).unwrap();

    assert_eq!(
        &served_leaf(&server, Some("a.example.com")).await,
        leaf_of(&exact)
    );
    assert_eq!(
        &served_leaf(&server, Some("b.example.com")).await,
        leaf_of(&wildcard)
    );
    assert_eq!(
        &served_leaf(&server, Some("x.b.example.com")).await,
        leaf_of(&fallback)
    );
    assert_eq!(
        &served_leaf(&server, Some("example.com")).await,
        leaf_of(&fallback)
    );
    assert_eq!(&served_leaf(&server, None).await, leaf_of(&fallback));

    let resolved = |sni| store.resolve_name(sni).map(|key| key.cert[0].clone());
    assert_eq!(
        resolved(Some("A.Example.COM.")).as_ref(),
        Some(leaf_of(&exact))
    );
}

#[test]
fn file_beats_acme_beats_self_signed() {
    let name = Some("a.example.com");
    let self_signed = cert(&["a.example.com", "localhost"], CertSource::SelfSigned);
    let acme = cert(&["a.example.com"], CertSource::Acme);
    let file = file_cert(&["a.example.com"]);
    let store = CertStore::new();
    assert!(store.is_empty());
    assert!(store.resolve_name(name).is_none());

    store.set_self_signed(self_signed.clone());
    assert!(!store.is_empty());
    assert!(Arc::ptr_eq(
        &store.resolve_name(name).unwrap(),
        &self_signed.key
    ));

    store.set_files(vec![(file.clone(), false)]);
    store.set_acme(acme.clone());
    assert!(Arc::ptr_eq(&store.resolve_name(name).unwrap(), &file.key));

    store.set_files(Vec::new());
    assert!(Arc::ptr_eq(&store.resolve_name(name).unwrap(), &acme.key));
    // The ACME certificate is also the default now, ahead of the self-signed one.
    assert!(Arc::ptr_eq(&store.resolve_name(None).unwrap(), &acme.key));
    // Names only the self-signed certificate has still get it.
    assert!(Arc::ptr_eq(
        &store.resolve_name(Some("localhost")).unwrap(),
        &self_signed.key
    ));
}

#[test]
fn acme_renewal_replaces_the_certificate_for_the_same_names() {
    let store = CertStore::new();
    let first = cert(&["a.example.com", "b.example.com"], CertSource::Acme);
    let other = cert(&["c.example.com"], CertSource::Acme);
    let renewed = cert(&["b.example.com", "a.example.com"], CertSource::Acme);
    store.set_acme(first);
    store.set_acme(other.clone());
    store.set_acme(renewed.clone());

    let listed = store.list();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].serial_hex, other.serial_hex);
    assert!(
        listed[0].default,
        "the oldest ACME certificate is the default"
    );
    assert_eq!(listed[1].serial_hex, renewed.serial_hex);
    assert_eq!(listed[1].source, "acme");
    assert!(Arc::ptr_eq(
        &store.resolve_name(Some("a.example.com")).unwrap(),
        &renewed.key
    ));
}

#[test]
fn first_file_wins_a_shared_name_and_the_flag_picks_the_default() {
    let first = file_cert(&["a.example.com"]);
    let second = file_cert(&["a.example.com", "b.example.com"]);
    let store = CertStore::new();

    store.set_files(vec![(first.clone(), false), (second.clone(), false)]);
    assert!(Arc::ptr_eq(
        &store.resolve_name(Some("a.example.com")).unwrap(),
        &first.key
    ));
    assert!(Arc::ptr_eq(
        &store.resolve_name(Some("b.example.com")).unwrap(),
        &second.key
    ));
    assert!(Arc::ptr_eq(&store.resolve_name(None).unwrap(), &first.key));

    store.set_files(vec![(first.clone(), false), (second.clone(), true)]);
    assert!(Arc::ptr_eq(&store.resolve_name(None).unwrap(), &second.key));
    let listed = store.list();
    assert_eq!(
        listed
            .iter()
            .map(|info| (info.source, info.default))
            .collect::<Vec<_>>(),
        [("file", false), ("file", true)]
    );
    assert_eq!(listed[1].names, ["a.example.com", "b.example.com"]);
    assert_eq!(listed[1].not_after, second.not_after);
}

async fn negotiated_alpn(offer: &[&[u8]]) -> Option<Vec<u8>> {
    let store = CertStore::new();
    store.set_files(vec![(file_cert(&["a.example.com"]), true)]);
    let server = server_config(store, &tls_config(true)).unwrap();
    let client = client_config(rustls::DEFAULT_VERSIONS, offer);
    let (server_side, client_side) = handshake(&server, &client, Some("a.example.com")).await;
    let server_side = server_side.unwrap();
    client_side.unwrap();
    server_side.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn alpn_prefers_h2_and_falls_back_to_http1() {
    assert_eq!(
        negotiated_alpn(&[b"http/1.1", b"h2"]).await.as_deref(),
        Some(&b"h2"[..])
    );
    assert_eq!(
        negotiated_alpn(&[b"http/1.1"]).await.as_deref(),
        Some(&b"http/1.1"[..])
    );
    assert_eq!(negotiated_alpn(&[]).await, None);
}

#[tokio::test]
async fn tls12_only_clients_are_served() {
    let store = CertStore::new();
    store.set_files(vec![(file_cert(&["a.example.com"]), true)]);
    let server = server_config(store, &tls_config(true)).unwrap();
    for (versions, want) in [
        (&[&rustls::version::TLS12][..], ProtocolVersion::TLSv1_2),
        (&[&rustls::version::TLS13][..], ProtocolVersion::TLSv1_3),
    ] {
        let client = client_config(versions, &[b"h2"]);
        let (server_side, client_side) = handshake(&server, &client, Some("a.example.com")).await;
        client_side.unwrap();
        assert_eq!(
            server_side.unwrap().get_ref().1.protocol_version(),
            Some(want)
        );
    }
}

/// Two connections with the same client config; the handshake kind of the second.
async fn second_handshake_kind(
    tickets: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Option<HandshakeKind> {
    let store = CertStore::new();
    store.set_files(vec![(file_cert(&["a.example.com"]), true)]);
    let server = server_config(store, &tls_config(tickets)).unwrap();
    let client = client_config(versions, &[b"h2"]);

    let (server_side, client_side) = handshake(&server, &client, Some("a.example.com")).await;
    let (mut server_side, mut client_side) = (server_side.unwrap(), client_side.unwrap());
    assert_eq!(
        client_side.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    // TLS 1.3 tickets arrive after the handshake: read until the server closes to take them in.
    server_side.write_all(b"bye").await.unwrap();
    server_side.shutdown().await.unwrap();
    let mut received = Vec::new();
    client_side.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, b"bye");

    let (server_side, client_side) = handshake(&server, &client, Some("a.example.com")).await;
    server_side.unwrap();
    client_side.unwrap().get_ref().1.handshake_kind()
}

#[tokio::test]
async fn sessions_resume_with_and_without_stateless_tickets() {
    let tls13 = &[&rustls::version::TLS13][..];
    let tls12 = &[&rustls::version::TLS12][..];
    assert_eq!(
        second_handshake_kind(true, tls13).await,
        Some(HandshakeKind::Resumed)
    );
    assert_eq!(
        second_handshake_kind(false, tls13).await,
        Some(HandshakeKind::Resumed)
    );
    assert_eq!(
        second_handshake_kind(true, tls12).await,
        Some(HandshakeKind::Resumed)
    );
    assert_eq!(
        second_handshake_kind(false, tls12).await,
        Some(HandshakeKind::Resumed)
    );
}

#[test]
fn server_config_refuses_early_data_and_sizes_tickets() {
    let with_tickets = server_config(CertStore::new(), &tls_config(true)).unwrap();
    assert_eq!(with_tickets.max_early_data_size, 0);
    assert_eq!(
        with_tickets.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(with_tickets.ticketer.enabled());
    assert_eq!(with_tickets.send_tls13_tickets, STATELESS_TICKETS);

    let without = server_config(CertStore::new(), &tls_config(false)).unwrap();
    assert!(!without.ticketer.enabled());
    assert_eq!(without.send_tls13_tickets, STATEFUL_TICKETS);
}

/// The server's accept error when a client sends `bytes` and then hangs up.
async fn accept_error_after(bytes: &[u8]) -> io::Error {
    let store = CertStore::new();
    store.set_files(vec![(file_cert(&["a.example.com"]), true)]);
    let server = server_config(store, &tls_config(true)).unwrap();
    let (mut client_io, server_io) = tokio::io::duplex(64 * 1024);
    client_io.write_all(bytes).await.unwrap();
    drop(client_io);
    match TlsAcceptor::from(server).accept(server_io).await {
        Ok(_) => panic!("handshake succeeded"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn plain_http_is_a_bad_client_hello() {
    let err = accept_error_after(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n").await;
    assert_eq!(failure_reason(&err), "bad_client_hello", "{err:?}");
}

#[tokio::test]
async fn a_client_that_hangs_up_is_eof() {
    assert_eq!(failure_reason(&accept_error_after(b"").await), "eof");
    // The first bytes of a TLS record header, then nothing.
    assert_eq!(
        failure_reason(&accept_error_after(&[0x16, 0x03, 0x01]).await),
        "eof"
    );
}

#[tokio::test]
async fn unknown_sni_without_default_is_no_certificate() {
    let server = server_config(CertStore::new(), &tls_config(true)).unwrap();
    let (server_side, client_side) =
        handshake(&server, &default_client(), Some("a.example.com")).await;
    assert!(client_side.is_err());
    let err = server_side.err().unwrap();
    assert_eq!(failure_reason(&err), "no_certificate", "{err:?}");
}

#[tokio::test]
async fn no_common_alpn_is_classified() {
    let store = CertStore::new();
    store.set_files(vec![(file_cert(&["a.example.com"]), true)]);
    let server = server_config(store, &tls_config(true)).unwrap();
    let client = client_config(rustls::DEFAULT_VERSIONS, &[b"spdy/3"]);
    let (server_side, _) = handshake(&server, &client, Some("a.example.com")).await;
    assert_eq!(failure_reason(&server_side.err().unwrap()), "no_alpn");
}

#[tokio::test]
async fn a_client_that_distrusts_the_certificate_sends_an_alert() {
    let store = CertStore::new();
    store.set_files(vec![(file_cert(&["a.example.com"]), true)]);
    let server = server_config(store, &tls_config(true)).unwrap();
    let client = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    );
    let (server_side, client_side) = handshake(&server, &client, Some("a.example.com")).await;
    assert!(client_side.is_err());
    let err = server_side.err().unwrap();
    assert_eq!(failure_reason(&err), "alert_received", "{err:?}");
}

fn write(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn load_pem_files_reads_chain_key_and_facts() {
    let dir = TempDir::new();
    let (cert_pem, key_pem) = pem_pair(&["A.example.com", "192.0.2.7"]);
    let cert = write(&dir, "c.pem", &cert_pem);
    let key = write(&dir, "c.key", &key_pem);
    let loaded = load_pem_files(&cert, &key).unwrap();
    assert_eq!(loaded.names, ["a.example.com", "192.0.2.7"]);
    assert_eq!(loaded.source, CertSource::File { cert, key });
    assert_eq!(loaded.source.label(), "file");
    assert!(!loaded.serial_hex.is_empty());
}

#[test]
fn load_pem_files_errors_name_the_file_and_the_problem() {
    let dir = TempDir::new();
    let (cert_pem, key_pem) = pem_pair(&["a.example.com"]);
    let (_, other_key_pem) = pem_pair(&["a.example.com"]);
    let cert = write(&dir, "c.pem", &cert_pem);
    let key = write(&dir, "c.key", &key_pem);
    let other_key = write(&dir, "other.key", &other_key_pem);
    let garbage = write(&dir, "garbage", "this is not PEM\n");
    let missing = dir.path().join("missing.pem");

    let err = load_pem_files(&missing, &key).unwrap_err();
    assert!(
        matches!(&err, TlsError::Read { path, .. } if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let err = load_pem_files(&garbage, &key).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage"), "{err}");

    let err = load_pem_files(&cert, &garbage).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage"), "{err}");

    // A key file holding only a certificate has no key either.
    let err = load_pem_files(&cert, &cert).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err:?}");

    let err = load_pem_files(&cert, &other_key).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("other.key"), "{err}");
    assert!(err.to_string().contains("c.pem"), "{err}");

    let truncated = write(&dir, "truncated.pem", &cert_pem[..cert_pem.len() / 2]);
    let err = load_pem_files(&truncated, &key).unwrap_err();
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
}
