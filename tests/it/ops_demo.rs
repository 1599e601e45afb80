//! `edgeward demo` on free ports: the built-in app behind the gateway, over HTTP and HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

const DEMO: &str = r#"
[listeners.public]
listen = "127.0.0.1:{http}"

[listeners.secure]
listen = "127.0.0.1:{https}"
tls = true

[tls]
self_signed_dir = "{dir}/certs"

[upstreams.app]
replicas = ["127.0.0.1:{http2}"]

[[routes]]
path = "/"
upstream = "app"
"#;

/// GET over a connection from a chosen loopback source address.
async fn get_from(src: [u8; 4], addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let tcp = connect_from(src, addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    collect(sender.send_request(b.body(empty()).unwrap()).await.unwrap())
        .await
        .unwrap()
}

fn json(got: &Got) -> serde_json::Value {
    assert_eq!(got.status, 200, "{}", got.text());
    serde_json::from_slice(&got.body).unwrap()
}

#[tokio::test]
async fn demo_serves_its_pages_through_the_gateway() {
    let mut gw = Gateway::builder(DEMO).subcommand("demo").start().await;
    let http = gw.addr("http");

    let page = get(http, "/", &[]).await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.text().contains("edgeward demo app"), "{}", page.text());
    assert_eq!(get(http, "/health/ready", &[]).await.unwrap().status, 200);

    // The echo shows the forwarding headers the app got: the client's own claim is replaced.
    let echo = json(
        &get_from(
            [127, 0, 0, 7],
            http,
            "/echo?x=1",
            &[("x-forwarded-for", "6.6.6.6")],
        )
        .await,
    );
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1");
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.7");
    assert_eq!(h["x-real-ip"], "127.0.0.7");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h["x-request-id"].as_str().is_some_and(|id| !id.is_empty()));

    // Server-sent events arrive one at a time, in order.
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("/events")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut events = String::new();
    while !events.contains("data: tick 1\n\n") {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        events.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
    }
    assert!(
        events.starts_with("id: 0\ndata: tick 0\n\nid: 1\n"),
        "{events}"
    );

    // WebSocket echo.
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://localhost/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    let reply = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.to_text().unwrap(), "echo: hello");

    // HTTPS with the self-signed certificate the first run made.
    let pem = gw.dir.path().join("certs/self-signed.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr("https"))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
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
    let resp = sender
        .send_request(
            Request::get("/echo")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let echo = json(&collect(resp).await.unwrap());
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");

    // It printed where to look.
    let out = gw.log();
    for url in [
        format!("http://localhost:{}/echo", http.port()),
        format!("https://localhost:{}/events", gw.ports["https"]),
        format!("http://{}/health/ready", gw.admin),
    ] {
        assert!(out.contains(&url), "{url} in:\n{out}");
    }
    gw.signal(rustix::process::Signal::INT);
    assert!(gw.wait_exit().await.success());
}
