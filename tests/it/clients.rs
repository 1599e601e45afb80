//! Client helpers beside the harness: requests from a chosen loopback source address, over
//! TLS trusting one certificate, and status-only requests that tolerate a refused connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;

use crate::harness::{Got, collect, connect_from, empty, send_h1};

/// One request on a fresh connection; `None` when nothing accepts the connection.
pub async fn status(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<u16> {
    TcpStream::connect(addr).await.ok()?;
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "localhost");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send_h1(addr, b.body(empty()).unwrap())
        .await
        .ok()
        .map(|r| r.status)
}

/// A client config trusting only the certificate in `pem` (e.g. the gateway's self-signed
/// one), offering HTTP/1.1.
pub fn trusting(pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One HTTP/1.1 request over TLS (SNI `localhost`) from a chosen loopback source address.
pub async fn get_tls_from(
    cfg: Arc<rustls::ClientConfig>,
    src: [u8; 4],
    addr: SocketAddr,
    path: &str,
) -> Got {
    let tcp = connect_from(src, addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    collect(sender.send_request(req).await.unwrap())
        .await
        .unwrap()
}
