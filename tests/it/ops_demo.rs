//! `edgeward demo` on free ports: the built-in app behind the gateway, over HTTP and HTTPS.

use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

use crate::clients::*;
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
        .await
        .unwrap(),
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
    let cfg = trusting(&gw.dir.path().join("certs/self-signed.pem"));
    let echo = json(&get_tls_from(cfg, [127, 0, 0, 8], gw.addr("https"), "/echo").await);
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.8");
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
