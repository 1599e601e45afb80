//! Long-lived connections across reloads: WebSockets and event streams stay open without
//! pinning the old snapshot, a removed route's WebSockets close after the grace, and
//! certificate files are swapped under open TLS connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;
use crate::reload_helpers::*;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket server answering each text message with `echo: <text>`.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        let reply = format!("echo: {}", msg.to_text().unwrap());
                        if ws.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn open_ws(gw: &Gateway, path: &str) -> Ws {
    let tcp = TcpStream::connect(gw.addr("http")).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://localhost{path}"), tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn assert_echoes(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("a reply in time")
        .expect("the tunnel is open")
        .expect("a message");
    assert_eq!(reply.to_text().unwrap(), format!("echo: {text}"));
}

/// The app: `/events` is an endless event stream fed by the test, anything else `200 ok`.
async fn app(feeds: Arc<Mutex<Vec<tokio::sync::mpsc::Sender<Bytes>>>>) -> Upstream {
    Upstream::start_raw(move |req| {
        let feeds = Arc::clone(&feeds);
        async move {
            if req.uri().path() != "/events" {
                return Response::new(full("ok"));
            }
            let (tx, body) = ChannelBody::channel(4);
            tx.send(Bytes::from_static(b"data: one\n\n")).await.unwrap();
            feeds.lock().unwrap().push(tx);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    })
    .await
}

fn streams_config(app: SocketAddr, ws: SocketAddr, grace: &str) -> String {
    format!(
        r#"[listeners.public]
listen = "127.0.0.1:{{http}}"

[reload]
watch = false
removed_route_grace = "{grace}"

[upstreams.app]
replicas = ["{app}"]
health = {{ mode = "off" }}

[upstreams.ws]
replicas = ["{ws}"]
health = {{ mode = "off" }}

[[routes]]
path = "/"
upstream = "app"
response_headers = {{ set = {{ "x-config" = "a" }} }}

[[routes]]
path = "/chat"
upstream = "ws"

[[routes]]
path = "/ws"
upstream = "ws"
response_headers = {{ set = {{ "x-route" = "ws" }} }}
"#
    )
}

#[tokio::test]
async fn websockets_and_event_streams_stay_open_without_pinning_the_old_snapshot() {
    let feeds = Arc::new(Mutex::new(Vec::new()));
    let up = app(Arc::clone(&feeds)).await;
    let gw = Gateway::start(&streams_config(up.addr, echo_server().await, "30s")).await;
    let mut ws = open_ws(&gw, "/ws").await;
    assert_echoes(&mut ws, "before").await;

    let tcp = TcpStream::connect(gw.addr("http")).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/events")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let mut events = sender.send_request(req).await.unwrap().into_body();
    let first = events.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: one\n\n");

    // Three reloads, one of them editing the WebSocket's own route (its headers: the route
    // keeps its identity).
    let edits = [
        ("\"a\"", "\"b\""),
        ("\"x-route\" = \"ws\"", "\"x-route\" = \"ws2\""),
        ("\"b\"", "\"c\""),
    ];
    for (i, (from, to)) in edits.into_iter().enumerate() {
        std::fs::write(&gw.config_path, edited(&gw.config_path, from, to)).unwrap();
        let (status, answer) = post(&gw).await;
        assert_eq!(
            (status, &answer["result"]),
            (200, &"applied".into()),
            "{answer}"
        );
        assert_echoes(&mut ws, &format!("after reload {i}")).await;
    }
    assert_eq!(served_tag(gw.addr("http")).await, "c");

    // Neither the tunnel nor the stream holds a replaced snapshot.
    eventually_async("replaced snapshots are released", || async {
        report(&gw).await["retained_snapshots"] == 0
    })
    .await;

    let feed = feeds.lock().unwrap()[0].clone();
    feed.send(Bytes::from_static(b"data: two\n\n"))
        .await
        .unwrap();
    let second = tokio::time::timeout(DEADLINE, events.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(second, "data: two\n\n");
    assert_echoes(&mut ws, "still open").await;
}

#[tokio::test]
async fn a_websocket_whose_route_was_removed_is_closed_after_the_grace() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&streams_config(up.addr, echo_server().await, "2s")).await;
    let mut removed = open_ws(&gw, "/ws").await;
    let mut kept = open_ws(&gw, "/chat").await;
    assert_echoes(&mut removed, "hello").await;

    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let start = text.find("[[routes]]\npath = \"/ws\"").unwrap();
    let end = text[start..].find("\n\n").map_or(text.len(), |i| start + i);
    std::fs::write(
        &gw.config_path,
        format!("{}{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let before_reload = Instant::now();
    let (status, answer) = post(&gw).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &"applied".into()),
        "{answer}"
    );

    // A new WebSocket to the removed path finds no route; the open one ends with a FIN, and
    // not before the grace period.
    let tcp = TcpStream::connect(gw.addr("http")).await.unwrap();
    let refused = tokio_tungstenite::client_async("ws://localhost/ws", tcp).await;
    assert!(refused.is_err(), "no route for /ws any more");
    let ended = tokio::time::timeout(DEADLINE, removed.next()).await;
    if let Ok(Some(Ok(message))) = &ended {
        assert!(message.is_close(), "unexpected message {message:?}");
    }
    assert!(
        ended.is_ok(),
        "the removed route's WebSocket was not closed"
    );
    assert!(
        before_reload.elapsed() >= std::time::Duration::from_secs(2),
        "closed before the grace ended: {:?}",
        before_reload.elapsed()
    );
    assert_echoes(&mut kept, "the other route's WebSocket stays").await;
}

fn leaf_of(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Moves a leaf written by [`Pki::leaf`] over the served files, each file atomically.
fn install(
    from: &(std::path::PathBuf, std::path::PathBuf),
    to: &(std::path::PathBuf, std::path::PathBuf),
) {
    std::fs::rename(&from.1, &to.1).unwrap();
    std::fs::rename(&from.0, &to.0).unwrap();
}

async fn handshake_leaf(pki: &Pki, addr: SocketAddr) -> CertificateDer<'static> {
    leaf_of(&tls_connect(pki, addr, Some("localhost"), &[b"http/1.1"]).await)
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_handshakes_and_open_connections_keep_going() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let served = pki.leaf(certs.path(), "live", &["localhost"]);
    let first = CertificateDer::from_pem_file(&served.0).unwrap();
    let up = Upstream::ok().await;
    let template = tagged_config(up.addr, "a", "").replace(
        "[upstreams.app]",
        &format!(
            "[listeners.secure]\nlisten = \"127.0.0.1:{{https}}\"\ntls = true\n\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\n[upstreams.app]",
            served.0.display(),
            served.1.display()
        ),
    );
    let gw = Gateway::start(&template).await;
    let https = gw.addr("https");

    let old = tls_connect(&pki, https, Some("localhost"), &[b"http/1.1"]).await;
    assert_eq!(leaf_of(&old), first);
    let (mut old_sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get_on_old = || {
        Request::get("/")
            .header("host", "localhost")
            .body(empty())
            .unwrap()
    };
    assert_eq!(
        old_sender
            .send_request(get_on_old())
            .await
            .unwrap()
            .status(),
        200
    );

    // Renewal: new files moved over the old ones.
    let renewed = pki.leaf(certs.path(), "next", &["localhost"]);
    let second = CertificateDer::from_pem_file(&renewed.0).unwrap();
    install(&renewed, &served);
    eventually_async("new handshakes get the renewed certificate", || async {
        handshake_leaf(&pki, https).await == second
    })
    .await;
    assert_eq!(
        old_sender
            .send_request(get_on_old())
            .await
            .unwrap()
            .status(),
        200
    );
    let r = report(&gw).await;
    assert!(count(&r["certificates"], "applied") >= 1, "{r}");
    assert_eq!(
        count(&r, "applied"),
        0,
        "certificate reloads are counted apart: {r}"
    );

    // A broken pair keeps the previous certificate and says why.
    std::fs::write(certs.path().join("broken.key"), "not a key").unwrap();
    std::fs::rename(certs.path().join("broken.key"), &served.1).unwrap();
    eventually_async("the broken pair is reported", || async {
        count(&report(&gw).await["certificates"], "failed") >= 1
    })
    .await;
    let r = report(&gw).await;
    let error = &r["certificates"]["last"]["errors"][0];
    assert_eq!(error["key"], "tls.certificates[0]", "{r}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(served.1.to_str().unwrap()),
        "names the key file: {r}"
    );
    assert_eq!(handshake_leaf(&pki, https).await, second);
    assert!(gw.log().contains("the previous certificate is kept"));

    // A config reload that lists other files serves them.
    let other = pki.leaf(certs.path(), "other", &["localhost"]);
    let third = CertificateDer::from_pem_file(&other.0).unwrap();
    let text = edited(
        &gw.config_path,
        served.0.to_str().unwrap(),
        other.0.to_str().unwrap(),
    )
    .replace(served.1.to_str().unwrap(), other.1.to_str().unwrap());
    std::fs::write(&gw.config_path, text).unwrap();
    eventually_async("the newly listed certificate is served", || async {
        handshake_leaf(&pki, https).await == third
    })
    .await;
    assert_eq!(
        old_sender
            .send_request(get_on_old())
            .await
            .unwrap()
            .status(),
        200
    );
}
