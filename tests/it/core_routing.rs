//! Normalisation and routing.

use crate::harness::*;

async fn two_upstreams() -> (Upstream, Upstream, Gateway) {
    let api = Upstream::start(|_| async { http::Response::new(full("api")) }).await;
    let site = Upstream::start(|_| async { http::Response::new(full("site")) }).await;
    let template = format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"
redirect_https = true
https_port = 443

[upstreams.api]
replicas = ["{api}"]
[upstreams.site]
replicas = ["{site}"]

[[routes]]
host = "app.test"
path = "/api"
strip_prefix = true
upstream = "api"

[[routes]]
host = "app.test"
path = "/"
upstream = "site"

[[routes]]
host = "old.test"
path = "/"
redirect = {{ to = "https://new.test", status = 301, preserve_path = true }}
"#,
        api = api.addr,
        site = site.addr
    );
    let gw = Gateway::start(&template).await;
    (api, site, gw)
}

#[tokio::test]
async fn https_redirect_only_for_known_hosts() {
    let (api, _site, gw) = two_upstreams().await;
    let r = get(gw.addr("http"), "/api/users?id=1", &[("host", "app.test")])
        .await
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://app.test/api/users?id=1")
    );
    let r = get(gw.addr("http"), "/x", &[("host", "unknown.test")])
        .await
        .unwrap();
    assert_eq!(
        r.status, 404,
        "unknown hosts are not redirected and match no route"
    );
    assert!(api.seen().is_empty());
}

#[tokio::test]
async fn routing_and_prefix_stripping() {
    let api = Upstream::start(|_| async { http::Response::new(full("api")) }).await;
    let site = Upstream::start(|_| async { http::Response::new(full("site")) }).await;
    let template = format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.api]
replicas = ["{api}"]
[upstreams.site]
replicas = ["{site}"]

[[routes]]
path = "/api"
strip_prefix = true
upstream = "api"

[[routes]]
path = "/"
upstream = "site"

[[routes]]
host = "old.test"
path = "/"
redirect = {{ to = "https://new.test", status = 301, preserve_path = true }}
"#,
        api = api.addr,
        site = site.addr
    );
    let gw = Gateway::start(&template).await;
    let http = gw.addr("http");
    assert_eq!(get(http, "/api", &[]).await.unwrap().text(), "api");
    assert_eq!(get(http, "/api/users", &[]).await.unwrap().text(), "api");
    assert_eq!(get(http, "/apix", &[]).await.unwrap().text(), "site");
    let seen = api.seen();
    assert_eq!(seen[0].uri, "/");
    assert_eq!(seen[1].uri, "/users");
    assert_eq!(seen[1].headers["x-forwarded-prefix"], "/api");
    assert_eq!(site.seen()[0].uri, "/apix");

    // Normalised once: what the app sees is the normalised path.
    assert_eq!(
        get(http, "/b/./../%61pi/x", &[]).await.unwrap().text(),
        "api"
    );
    assert_eq!(api.seen().last().unwrap().uri, "/x");

    let r = get(http, "/q/y?z=1", &[("host", "OLD.test.")])
        .await
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://new.test/q/y?z=1"));
}

#[tokio::test]
async fn malformed_targets_are_rejected() {
    let up = Upstream::ok().await;
    let template = format!(
        "[listeners.public]\nlisten = \"127.0.0.1:{{http}}\"\n[upstreams.app]\nreplicas = [\"{}\"]\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n",
        up.addr
    );
    let gw = Gateway::start(&template).await;
    let http = gw.addr("http");
    for (what, req) in [
        (
            "missing host",
            &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        ),
        (
            "duplicate host",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "climbing dot-segments",
            b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "encoded climbing",
            b"GET /%2e%2e/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        ),
        (
            "absolute-form mismatch",
            b"GET http://b.test/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let out = raw(http, req).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
    }
    assert!(up.seen().is_empty(), "no malformed request reached the app");
}
