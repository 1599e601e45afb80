//! Request limits, timeouts, framing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[server]
max_uri = "1KiB"
max_connections_per_ip = 50
{extra}

[upstreams.app]
replicas = ["{up}"]

[[routes]]
path = "/"
upstream = "app"
max_body = "1KiB"
timeouts = {{ client_body_idle = "300ms" }}
"#,
        up = up.addr
    )
}

#[tokio::test]
async fn oversized_requests_get_4xx_and_never_reach_the_app() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    let http = gw.addr("http");

    // 414: target over max_uri.
    let long = format!("/{}", "a".repeat(2000));
    assert_eq!(get(http, &long, &[]).await.unwrap().status, 414);

    // 431: head over max_request_header (16 KiB default), whether it arrives in one read or
    // across several.
    for size in [17_000, 60_000] {
        let big = "b".repeat(size);
        let head = format!("GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {big}\r\n\r\n");
        let out = raw(http, head.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{size}: {out}");
    }
    // 431: more than max_headers (100) fields.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = raw(
        http,
        format!("GET / HTTP/1.1\r\nHost: a.test\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    // 413 from Content-Length, before any body byte is read.
    let out = raw(
        http,
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");

    // 413 for a chunked body that grows past max_body mid-stream.
    let mut req = b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw(http, &req).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(
        up.seen().iter().all(|s| s.body.len() <= 1024),
        "no oversized body reached the app whole"
    );
}

#[tokio::test]
async fn expect_continue_is_refused_before_the_body_is_read() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("http"))
        .await
        .unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "got {head}");
    assert!(!head.contains("100 Continue"));

    // A small one within the limit gets 100 Continue and is forwarded, without Expect.
    let mut s = tokio::net::TcpStream::connect(gw.addr("http"))
        .await
        .unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    s.write_all(b"hello").await.unwrap();
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"hello");
    assert!(seen[0].headers.get("expect").is_none());

    let out = raw(gw.addr("http"), b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nExpect: teapot\r\nConnection: close\r\n\r\nx").await;
    assert!(out.starts_with("HTTP/1.1 417"), "{out}");
}

#[tokio::test]
async fn stalled_request_body_gets_408() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("http"))
        .await
        .unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\npartial")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    let out = String::from_utf8_lossy(&buf);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

#[tokio::test]
async fn smuggled_request_in_a_cl_te_body_reaches_the_app_as_one_request() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    let smuggled = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let out = raw(gw.addr("http"), smuggled).await;
    // hyper frames by Transfer-Encoding and closes after the response (RFC 9112 §6.3); the
    // bytes after the terminating chunk are never parsed as a request.
    assert!(
        out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.1 400"),
        "{out}"
    );
    let seen = up.seen();
    assert!(seen.len() <= 1, "the app saw {} requests", seen.len());
    assert!(seen.iter().all(|s| s.uri.path() != "/smuggled"));
}

#[tokio::test]
async fn slow_header_connections_from_one_address_do_not_starve_another() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    let http = gw.addr("http");
    let mut held = Vec::new();
    for _ in 0..500 {
        match connect_from([127, 0, 0, 2], http).await {
            Ok(mut s) => {
                let _ = s
                    .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")
                    .await;
                held.push(s);
            }
            Err(_) => break,
        }
    }
    assert!(!held.is_empty());
    for _ in 0..5 {
        let mut s = connect_from([127, 0, 0, 3], http).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    }
    drop(held);
}

/// An app speaking raw HTTP/1.1 that answers every request head on a connection with
/// `answer`, whatever it is. Returns its address and a count of connections.
async fn raw_app(answer: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0; 1];
                loop {
                    match stream.read(&mut byte).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => head.push(byte[0]),
                    }
                    if head.ends_with(b"\r\n\r\n") {
                        head.clear();
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn raw_app_config(app: SocketAddr) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{app}"]
health = {{ mode = "off" }}

[[routes]]
path = "/"
upstream = "app"
"#
    )
}

#[tokio::test]
async fn an_ambiguous_answer_from_the_app_is_refused_and_stray_bytes_answer_nobody() {
    // Two different lengths: the gateway does not guess which one frames the body.
    let (app, _) =
        raw_app(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").await;
    let gw = Gateway::start(&raw_app_config(app)).await;
    let out = raw(
        gw.addr("http"),
        b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    drop(gw);

    // A complete answer followed by a second, forged one: the first request gets the real
    // answer; the forged bytes are never read as the answer to the next request.
    let (app, accepted) = raw_app(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
    )
    .await;
    let gw = Gateway::start(&raw_app_config(app)).await;
    for _ in 0..2 {
        let out = raw(
            gw.addr("http"),
            b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("\r\n\r\nok"), "{out}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
