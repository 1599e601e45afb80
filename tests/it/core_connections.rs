//! Connection-level limits: requests per connection, the global bound shedding idle
//! connections first, HTTP/2 idle close.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test]
async fn max_requests_per_connection_closes_after_the_last_response() {
    let up = Upstream::ok().await;
    let template = simple_config(up.addr, "").replace(
        "[upstreams.app]",
        "[server]\nmax_requests_per_connection = 2\n\n[upstreams.app]",
    );
    let gw = Gateway::start(&template).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("http"))
        .await
        .unwrap();
    let req = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    s.write_all(req).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out).to_lowercase();
    assert_eq!(out.matches("http/1.1 200").count(), 2, "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn at_the_global_bound_idle_connections_make_room() {
    let up = Upstream::ok().await;
    let template = simple_config(up.addr, "").replace(
        "[upstreams.app]",
        "[server]\nmax_connections = 3\n\n[upstreams.app]",
    );
    let gw = Gateway::start(&template).await;
    let http = gw.addr("http");
    // Three keep-alive connections, each idle after one request.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        idle.push(s);
    }
    // A fourth client is served, and idle connections were closed to make room.
    let r = get(http, "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let mut closed = 0;
    for s in &mut idle {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection was closed");
}

#[tokio::test]
async fn idle_http2_connection_is_closed() {
    let pki = Pki::new();
    let up = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let template = tls_config(
        &pki,
        dir.path(),
        "app.test",
        up.addr,
        "[timeouts]\nkeepalive_idle = \"300ms\"",
    );
    let gw = Gateway::start(&template).await;
    let mut h2 = h2_client(&pki, gw.addr("https"), "app.test").await;
    let resp = h2
        .send_request(
            http::Request::get("https://app.test/")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually("the idle HTTP/2 connection to be closed", || h2.is_closed()).await;
}
