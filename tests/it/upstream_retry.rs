//! Retries: a request that never reached a replica goes to another one whatever its method;
//! a POST whose streamed body was sent is never replayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::harness::*;

fn two_replicas(first: std::net::SocketAddr, second: std::net::SocketAddr) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{first}", "{second}"]
policy = "round_robin"

[upstreams.app.health]
mode = "off"

[[routes]]
path = "/"
upstream = "app"
"#
    )
}

#[tokio::test]
async fn a_post_refused_at_connect_is_retried_on_another_replica() {
    let app = Upstream::ok().await;
    let gw = Gateway::start(&two_replicas(dead_addr(), app.addr)).await;
    let body = Bytes::from(vec![b'x'; 1024]);
    for _ in 0..4 {
        let req = http::Request::post("/submit")
            .header("host", "a.test")
            .header("content-length", "1024")
            .body(full(body.clone()))
            .unwrap();
        let r = send_h1(gw.addr("http"), req).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let seen = app.seen();
    assert_eq!(seen.len(), 4, "each POST reached the app exactly once");
    assert!(seen.iter().all(|s| s.body == body));
    let log = gw.log();
    assert!(
        log.matches("retrying on another replica").count() >= 2,
        "round-robin sent half of them to the dead replica first:\n{log}"
    );
}

#[tokio::test]
async fn a_post_whose_streamed_body_was_sent_is_not_retried() {
    // Reads the whole request, then closes without answering.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let swallower = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let rec = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let rec = Arc::clone(&rec);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0usize;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            total += n;
                            rec.store(total, Ordering::SeqCst);
                            // Chunked terminator: the body has ended.
                            if buf[..n].ends_with(b"0\r\n\r\n") {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    let other = Upstream::ok().await;
    let gw = Gateway::start(&two_replicas(swallower, other.addr)).await;

    let (tx, body) = ChannelBody::channel(4);
    tokio::spawn(async move {
        for _ in 0..16 {
            if tx.send(Bytes::from(vec![b'y'; 64 * 1024])).await.is_err() {
                return;
            }
        }
    });
    let req = http::Request::post("/upload")
        .header("host", "a.test")
        .body(body)
        .unwrap();
    let r = send_h1(gw.addr("http"), req).await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        received.load(Ordering::SeqCst) >= 1 << 20,
        "the 1 MiB body was sent: {}",
        received.load(Ordering::SeqCst)
    );
    assert!(other.seen().is_empty(), "the POST was replayed elsewhere");
}
