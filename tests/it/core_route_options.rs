//! Per-route options: allow/deny, header edits, upstream Host, HSTS, IPv6 listeners,
//! oversized upstream heads.

use http::Response;

use crate::harness::*;

#[tokio::test]
async fn allow_and_deny_use_the_resolved_client() {
    let up = Upstream::ok().await;
    let template = simple_config(up.addr, "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.3\"]")
        .replace(
            "listen = \"127.0.0.1:{http}\"",
            "listen = \"127.0.0.1:{http}\"\ntrusted_proxies = [\"127.0.0.4\"]",
        );
    let gw = Gateway::start(&template).await;
    let http = gw.addr("http");
    let status_from = |src: [u8; 4], xff: Option<&'static str>| async move {
        let s = connect_from(src, http).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut b = http::Request::get("/").header("host", "a.test");
        if let Some(xff) = xff {
            b = b.header("x-forwarded-for", xff);
        }
        sender
            .send_request(b.body(empty()).unwrap())
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status_from([127, 0, 0, 2], None).await, 200);
    assert_eq!(status_from([127, 0, 0, 3], None).await, 403);
    // A spoofed header from an untrusted peer changes nothing.
    assert_eq!(status_from([127, 0, 0, 3], Some("127.0.0.2")).await, 403);
    // Through a trusted proxy the resolved client is what counts.
    assert_eq!(status_from([127, 0, 0, 4], Some("127.0.0.3")).await, 403);
    assert_eq!(
        status_from([127, 0, 0, 4], Some("10.0.0.1")).await,
        403,
        "not in the allow list"
    );
    assert_eq!(status_from([127, 0, 0, 4], Some("127.0.0.9")).await, 200);
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn header_edits_and_upstream_host() {
    let up = Upstream::start(|_| async {
        Response::builder()
            .header("server", "uvicorn")
            .header("x-internal", "1")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let route = r#"upstream_host = "internal.svc"
request_headers = { set = { "X-Env" = "prod" }, remove = ["X-Debug"] }
response_headers = { set = { "X-Frame-Options" = "DENY" }, remove = ["Server", "X-Internal"] }"#;
    let gw = Gateway::start(&simple_config(up.addr, route)).await;
    let r = get(
        gw.addr("http"),
        "/",
        &[("x-debug", "1"), ("host", "public.test")],
    )
    .await
    .unwrap();
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r.header("server").is_none());
    assert!(r.header("x-internal").is_none());
    assert!(
        r.header("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    let seen = up.seen();
    assert_eq!(seen[0].headers["host"], "internal.svc");
    assert_eq!(seen[0].headers["x-forwarded-host"], "public.test");
    assert_eq!(seen[0].headers["x-env"], "prod");
    assert!(seen[0].headers.get("x-debug").is_none());
}

#[tokio::test]
async fn hsts_only_on_https_and_only_as_configured() {
    let pki = Pki::new();
    let up = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let template = tls_config(
        &pki,
        dir.path(),
        "app.test",
        up.addr,
        "[listeners.public]\nlisten = \"127.0.0.1:{http}\"\n\n[hsts]\nmax_age = \"365d\"",
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
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000",
        "no includeSubDomains or preload unless set"
    );
    let plain = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert!(plain.header("strict-transport-security").is_none());
}

#[tokio::test]
async fn ipv6_listener_serves_and_resolves_the_v6_client() {
    let up = Upstream::ok().await;
    let template = simple_config(up.addr, "").replace(
        "listen = \"127.0.0.1:{http}\"",
        "listen = \"[::1]:{http}\"\nv6_only = true",
    );
    let gw = Gateway::start(&template).await;
    let addr: std::net::SocketAddr = format!("[::1]:{}", gw.ports["http"]).parse().unwrap();
    let r = get(addr, "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.seen()[0].headers["x-forwarded-for"], "::1");
}

#[tokio::test]
async fn oversized_upstream_response_head_is_502() {
    let big = "x".repeat(100 * 1024);
    let up = Upstream::start(move |_| {
        let big = big.clone();
        async move {
            Response::builder()
                .header("x-big", big)
                .body(full("ok"))
                .unwrap()
        }
    })
    .await;
    let gw = Gateway::start(&simple_config(up.addr, "")).await;
    let r = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(
        r.status,
        502,
        "{:?} {}",
        r.headers.keys().collect::<Vec<_>>(),
        gw.log()
    );
}
