//! Rate limits in one gateway: 429s with draft-ietf-httpapi-ratelimit-headers-10 fields, keyed
//! on the resolved client only, never on exempt paths.

use crate::harness::*;

/// One upstream behind a route limited by `per_ip` (3 per hour: no refill within a test),
/// plus a redirect route under the same limit.
fn config(up: &Upstream, headers: bool) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{up}"]

[rate_limits.per_ip]
rate = "3/h"
headers = {headers}

[[routes]]
path = "/"
upstream = "app"
rate_limits = ["per_ip"]

[[routes]]
path = "/old"
redirect = {{ to = "https://example.com/new" }}
rate_limits = ["per_ip"]
"#,
        up = up.addr
    )
}

#[tokio::test]
async fn over_the_limit_gets_429_with_headers_and_never_reaches_the_app() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, true)).await;
    let addr = gw.addr("http");

    for remaining in [2, 1, 0] {
        let resp = get(addr, "/x", &[]).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("ratelimit-policy"),
            Some("\"per_ip\";q=3;w=3600")
        );
        let state = resp.header("ratelimit").unwrap();
        let expected = format!("\"per_ip\";r={remaining};t=");
        assert!(state.starts_with(&expected), "{state}");
    }

    let resp = get(addr, "/x", &[]).await.unwrap();
    assert_eq!(resp.status, 429);
    assert_eq!(resp.text(), "too many requests\n");
    // One request per 1200 s: the next is allowed at most 1200 s from now.
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1200).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        resp.header("ratelimit-policy"),
        Some("\"per_ip\";q=3;w=3600")
    );
    assert_eq!(
        resp.header("ratelimit"),
        Some(format!("\"per_ip\";r=0;t={retry}").as_str())
    );
    assert!(resp.header("x-request-id").is_some());
    assert_eq!(up.seen().len(), 3, "the app saw only the allowed requests");

    // Redirect routes are limited too: the client's bucket is shared with `/`.
    let resp = get(addr, "/old", &[]).await.unwrap();
    assert_eq!(resp.status, 429);

    eventually("the access log names the limit", || {
        // Field separators may carry colour codes; the values are what matter.
        gw.log().lines().any(|l| {
            l.contains("edgeward::access") && l.contains("429") && l.contains("\"per_ip\"")
        })
    })
    .await;
}

#[tokio::test]
async fn allowed_responses_carry_no_fields_unless_asked() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, false)).await;
    let resp = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.header("ratelimit").is_none());
    assert!(resp.header("ratelimit-policy").is_none());
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_do_not_dodge_the_limit() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, false)).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let fake = format!("198.51.100.{i}");
        let resp = get(
            gw.addr("http"),
            "/",
            &[
                ("x-forwarded-for", fake.as_str()),
                ("x-real-ip", fake.as_str()),
                ("forwarded", &format!("for={fake}")),
            ],
        )
        .await
        .unwrap();
        statuses.push(resp.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn acme_challenges_are_never_limited() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, false)).await;
    let addr = gw.addr("http");
    for _ in 0..3 {
        assert_eq!(get(addr, "/", &[]).await.unwrap().status, 200);
    }
    assert_eq!(get(addr, "/", &[]).await.unwrap().status, 429);
    for _ in 0..5 {
        let resp = get(addr, "/.well-known/acme-challenge/x", &[])
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert!(resp.header("retry-after").is_none());
    }
    let paths: Vec<String> = up.seen().iter().map(|s| s.uri.path().to_owned()).collect();
    assert_eq!(paths.len(), 8);
    assert!(
        paths[3..]
            .iter()
            .all(|p| p == "/.well-known/acme-challenge/x")
    );
}

#[tokio::test]
async fn each_client_has_its_own_bucket() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&config(&up, false)).await;
    let addr = gw.addr("http");
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(
            get_from([127, 0, 0, 2], addr, "/", &[])
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(a, [200, 200, 200, 429]);
    // 127.0.0.2 is spent; 127.0.0.3 starts with a full bucket.
    let mut b = Vec::new();
    for _ in 0..4 {
        b.push(
            get_from([127, 0, 0, 3], addr, "/", &[])
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(b, [200, 200, 200, 429]);
    let seen = up.seen();
    let clients: Vec<&str> = seen
        .iter()
        .map(|s| s.headers["x-real-ip"].to_str().unwrap())
        .collect();
    assert_eq!(
        clients,
        [
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.3",
            "127.0.0.3"
        ]
    );
    let metrics = scrape(gw.admin).await;
    assert_eq!(metrics[r#"edgeward_rate_limit_keys{limit="per_ip"}"#], 2.0);
    assert_eq!(
        metrics[r#"edgeward_rate_limit_max_keys{limit="per_ip"}"#],
        1_000_000.0
    );
    assert_eq!(
        metrics[r#"edgeward_rate_limit_overflow_decisions_total{limit="per_ip"}"#],
        0.0
    );
}

#[tokio::test]
async fn limits_keyed_by_header_and_by_route() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{up}"]

[rate_limits.per_key]
rate = "2/h"
key = "header:X-Api-Key"

[rate_limits.whole_route]
rate = "5/h"
key = "route"

[[routes]]
path = "/"
upstream = "app"
rate_limits = ["per_key", "whole_route"]
"#,
        up = up.addr
    ))
    .await;
    let addr = gw.addr("http");
    let send = |key: &'static str| async move {
        get(addr, "/", &[("x-api-key", key)]).await.unwrap().status
    };
    assert_eq!(
        [
            send("alice").await,
            send("alice").await,
            send("alice").await
        ],
        [200, 200, 429]
    );
    assert_eq!([send("bob").await, send("bob").await], [200, 200]);
    // The route counted 4 (alice's refused third never reached it): one left.
    assert_eq!([send("carol").await, send("carol").await], [200, 429]);
    assert_eq!(up.seen().len(), 5);
}
