//! TLS termination: SNI, the default certificate, ALPN, the self-signed first run.

use rustls::pki_types::CertificateDer;

use crate::harness::*;

fn leaf_of(
    tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn sni_picks_the_certificate_and_no_sni_gets_the_default() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = pki.leaf(dir.path(), "a", &["a.test"]);
    let (b_cert, b_key) = pki.leaf(dir.path(), "b", &["*.b.test"]);
    let up = Upstream::ok().await;
    let template = format!(
        r#"
[listeners.secure]
listen = "127.0.0.1:{{https}}"
tls = true

[[tls.certificates]]
cert = "{}"
key = "{}"

[[tls.certificates]]
cert = "{}"
key = "{}"
default = true

[upstreams.app]
replicas = ["{}"]

[[routes]]
path = "/"
upstream = "app"
"#,
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display(),
        up.addr
    );
    let gw = Gateway::start(&template).await;
    let https = gw.addr("https");
    let pem = |p: &std::path::Path| {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(p).unwrap()
    };
    let a = tls_connect(&pki, https, Some("a.test"), &[b"http/1.1"]).await;
    assert_eq!(leaf_of(&a), pem(&a_cert));
    let b = tls_connect(&pki, https, Some("x.b.test"), &[b"http/1.1"]).await;
    assert_eq!(leaf_of(&b), pem(&b_cert));
    assert_eq!(b.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Without SNI (a client dialling a bare IP) the default certificate is served; the client
    // verifies it against a name the default covers.
    let mut cfg = (*pki.client_config(&[b"h2"])).clone();
    cfg.enable_sni = false;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("y.b.test").unwrap();
    let no_sni = connector.connect(name, tcp).await.unwrap();
    assert_eq!(
        leaf_of(&no_sni),
        pem(&b_cert),
        "no SNI gets the default certificate"
    );
    assert_eq!(no_sni.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn first_run_makes_a_self_signed_certificate_and_keeps_it() {
    let up = Upstream::ok().await;
    let template = format!(
        r#"
[listeners.secure]
listen = "127.0.0.1:{{https}}"
tls = true

[tls]
self_signed_dir = "{{dir}}/certs"

[upstreams.app]
replicas = ["{}"]

[[routes]]
host = "app.test"
path = "/"
upstream = "app"
"#,
        up.addr
    );
    let gw = Gateway::start(&template).await;
    let certs = gw.dir.path().join("certs");
    let key = certs.join("self-signed.key");
    assert!(certs.join("self-signed.pem").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        gw.log().contains("self-signed"),
        "the log says so:\n{}",
        gw.log()
    );
}
