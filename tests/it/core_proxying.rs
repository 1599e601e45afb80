//! Proxying: errors, streaming both ways, upgrades, upstream connection reuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Response;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

#[tokio::test]
async fn refused_upstream_is_502_and_silent_one_is_504() {
    let gw = Gateway::start(&without_probes(simple_config(dead_addr(), ""))).await;
    let r = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(r.status, 502);
    assert!(
        gw.log().contains("connect_refused"),
        "one log line names the cause:\n{}",
        gw.log()
    );

    // Accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = Gateway::start(&without_probes(simple_config(
        addr,
        "timeouts = { upstream_header = \"300ms\" }",
    )))
    .await;
    let r = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(r.status, 504);
}

#[tokio::test]
async fn sse_events_reach_the_client_as_the_app_writes_them() {
    let release = Arc::new(tokio::sync::Notify::new());
    let release2 = Arc::clone(&release);
    let up = Upstream::start_raw(move |_req| {
        let release = Arc::clone(&release2);
        async move {
            let (tx, body) = ChannelBody::channel(4);
            tokio::spawn(async move {
                tx.send(Bytes::from_static(b"data: one\n\n")).await.unwrap();
                release.notified().await;
                tx.send(Bytes::from_static(b"data: two\n\n")).await.unwrap();
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    })
    .await;
    let gw = Gateway::start(&without_probes(simple_config(up.addr, ""))).await;
    let resp = get_streaming(gw.addr("http"), "/events").await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.into_data().unwrap(),
        "data: one\n\n",
        "event 1 arrives before event 2 is written"
    );
    release.notify_one();
    let second = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.into_data().unwrap(), "data: two\n\n");
}

#[tokio::test]
async fn websocket_is_tunnelled_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        ws.send(Message::text(format!("echo: {}", msg.to_text().unwrap())))
                            .await
                            .unwrap();
                    }
                }
            });
        }
    });
    let gw = Gateway::start(&without_probes(simple_config(addr, ""))).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr("http"))
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://a.test/ws", tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.to_text().unwrap(), format!("echo: hello {i}"));
    }
}

#[tokio::test]
async fn reused_connection_closed_by_the_app_is_retried_transparently() {
    // Answers one request per connection and closes it without `Connection: close`, as an
    // app does when its keep-alive timer fires just as the gateway reuses the connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let gw = Gateway::start(&without_probes(simple_config(addr, ""))).await;
    for _ in 0..20 {
        let r = get(gw.addr("http"), "/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn one_gib_upload_streams_with_flat_memory() {
    let received = Arc::new(AtomicUsize::new(0));
    let rec = Arc::clone(&received);
    let up = Upstream::start_raw(move |req| {
        let rec = Arc::clone(&rec);
        async move {
            let mut body = req.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    rec.fetch_add(d.len(), Ordering::Relaxed);
                }
            }
            Response::new(full("done"))
        }
    })
    .await;
    let gw = Gateway::start(&simple_config(up.addr, "max_body = \"2GiB\"")).await;
    let before = gw.vm_hwm_kib();
    const TOTAL: usize = 1 << 30;
    let (tx, body) = ChannelBody::channel(8);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![7u8; 256 * 1024]);
        for _ in 0..TOTAL / chunk.len() {
            if tx.send(chunk.clone()).await.is_err() {
                return;
            }
        }
    });
    let req = http::Request::post("/upload")
        .header("host", "a.test")
        .body(body)
        .unwrap();
    let r = send_h1(gw.addr("http"), req).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);
    let growth = gw.vm_hwm_kib().saturating_sub(before);
    assert!(
        growth < 64 * 1024,
        "gateway peak memory grew by {growth} KiB"
    );
}

#[tokio::test]
async fn http2_cookies_are_joined_and_authority_becomes_host() {
    let pki = Pki::new();
    let up = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf(dir.path(), "app", &["app.test"]);
    let template = format!(
        r#"
[listeners.secure]
listen = "127.0.0.1:{{https}}"
tls = true

[[tls.certificates]]
cert = "{}"
key = "{}"

[upstreams.app]
replicas = ["{}"]

[[routes]]
path = "/"
upstream = "app"
"#,
        cert.display(),
        key.display(),
        up.addr
    );
    let gw = Gateway::start(&template).await;
    let mut h2 = h2_client(&pki, gw.addr("https"), "app.test").await;
    let req = http::Request::get("https://app.test/x?y=1")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(empty())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let seen = up.seen();
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    assert_eq!(seen[0].uri, "/x?y=1");
    assert_eq!(seen[0].headers["host"], "app.test");
    assert_eq!(
        seen[0].headers.get_all("cookie").iter().collect::<Vec<_>>(),
        vec!["a=1; b=2"]
    );
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn a_stalled_upstream_body_is_cut_after_upstream_body_idle() {
    let up = Upstream::start_raw(|_req| async {
        let (tx, body) = ChannelBody::channel(1);
        tokio::spawn(async move {
            tx.send(Bytes::from_static(b"first")).await.unwrap();
            // Then nothing, without ending the body.
            std::future::pending::<()>().await;
            drop(tx);
        });
        Response::builder()
            .header("content-type", "application/octet-stream")
            .body(body)
            .unwrap()
    })
    .await;
    let gw = Gateway::start(&without_probes(simple_config(
        up.addr,
        "timeouts = { upstream_body_idle = \"300ms\" }",
    )))
    .await;
    let resp = get_streaming(gw.addr("http"), "/download").await;
    let mut body = resp.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    // The gateway gives up on the idle upstream: the client sees the body end in an error
    // (no terminating chunk), not a clean end and not a hang.
    let end = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("cut in time");
    assert!(matches!(end, Some(Err(_))), "{end:?}");
}
