//! Client identity and forwarding headers: what a client can't spoof.

use crate::harness::*;

fn config(up: &Upstream, trusted: &str) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"
trusted_proxies = [{trusted}]

[upstreams.app]
replicas = ["{up}"]

[[routes]]
path = "/"
upstream = "app"
"#,
        up = up.addr
    )
}

#[tokio::test]
async fn spoofed_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    let resp = get(
        gw.addr("http"),
        "/x",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x_forwarded_for", "7.7.7.7"),
            ("x-real-ip", "6.6.6.6"),
            ("x-request-id", "spoofed-id"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(
        h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
        vec!["127.0.0.1"]
    );
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h.get("x_forwarded_for").is_none());
    assert!(h.get("forwarded").is_none());
    let id = h["x-request-id"].to_str().unwrap();
    assert_ne!(id, "spoofed-id");
    // The client gets the same id the app saw.
    assert_eq!(resp.header("x-request-id"), Some(id));
}

#[tokio::test]
async fn trusted_peer_chain_is_walked_from_the_right() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, r#""127.0.0.1", "10.0.0.0/8""#)).await;
    get(
        gw.addr("http"),
        "/",
        &[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3"),
            ("x-request-id", "abc-123"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await
    .unwrap();
    let seen = up.seen();
    let h = &seen[0].headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.2.3, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "203.0.113.9");
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn connection_header_cannot_strip_the_gateways_headers() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, "")).await;
    get(
        gw.addr("http"),
        "/",
        &[
            ("connection", "X-Forwarded-For, X-Real-IP, x-custom"),
            ("x-custom", "1"),
            ("x-kept", "2"),
        ],
    )
    .await
    .unwrap();
    let seen = up.seen();
    let h = &seen[0].headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert!(
        h.get("x-custom").is_none(),
        "a header named in Connection is hop-by-hop"
    );
    assert_eq!(h["x-kept"], "2");
}

#[tokio::test]
async fn proxy_protocol_from_trusted_peer_sets_the_client() {
    let up = Upstream::ok().await;
    let template = format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"
proxy_protocol = true
trusted_proxies = ["127.0.0.1"]

[upstreams.app]
replicas = ["{}"]

[[routes]]
path = "/"
upstream = "app"
"#,
        up.addr
    );
    let gw = Gateway::start(&template).await;
    let out = raw(
        gw.addr("http"),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = up.seen();
    assert_eq!(seen[0].headers["x-real-ip"], "198.51.100.7");
    // The PROXY address is only believed from the trusted peer itself: the same header from
    // 127.0.0.2 (not trusted) gets the connection closed.
    let mut s = connect_from([127, 0, 0, 2], gw.addr("http")).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        b"PROXY TCP4 198.51.100.8 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(
        buf.is_empty(),
        "untrusted PROXY peer got: {}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(up.seen().len(), 1);
}
