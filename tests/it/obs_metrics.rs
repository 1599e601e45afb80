//! `/metrics`: exact deltas and labels after known traffic, replica gauges that follow
//! readiness, the switch that turns request counting off, the probe listener, promtool.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::{Response, StatusCode};

use crate::harness::*;

/// Route `api` on `/api` only: anything else matches no route.
fn config(up: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{up}"]

[upstreams.app.health]
mode = "off"

[[routes]]
name = "api"
path = "/api"
upstream = "app"
{extra}
"#
    )
}

/// An upstream answering 404 for `/api/missing`, 200 otherwise.
async fn app() -> Upstream {
    Upstream::start(|seen| async move {
        let mut resp = Response::new(full("ok"));
        if seen.uri.path() == "/api/missing" {
            *resp.status_mut() = StatusCode::NOT_FOUND;
        }
        resp
    })
    .await
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn requests_are_counted_by_route_method_and_status_class() {
    let up = app().await;
    let gw = Gateway::start(&config(up.addr, "")).await;
    let http = gw.addr("http");
    let before = scrape(gw.admin).await;

    for _ in 0..3 {
        assert_eq!(get(http, "/api/users?id=7", &[]).await.unwrap().status, 200);
    }
    assert_eq!(get(http, "/api/missing", &[]).await.unwrap().status, 404);
    assert_eq!(request(http, "POST", "/api/users", &[]).await.status, 200);
    assert_eq!(get(http, "/elsewhere", &[]).await.unwrap().status, 404);
    let odd = request(http, "PROPFIND", "/api/dav", &[]).await;
    assert_eq!(odd.status, 200);

    let after = scrape(gw.admin).await;
    let series = |s: &str| delta(&before, &after, s);
    let api = |method: &str, class: &str| {
        series(&format!(
            "edgeward_requests_total{{route=\"api\",method=\"{method}\",status_class=\"{class}\"}}"
        ))
    };
    assert_eq!(api("GET", "2xx"), 3.0);
    assert_eq!(api("GET", "4xx"), 1.0);
    assert_eq!(api("POST", "2xx"), 1.0);
    assert_eq!(
        api("other", "2xx"),
        1.0,
        "methods outside the closed set are `other`"
    );
    assert_eq!(
        series(r#"edgeward_requests_total{route="",method="GET",status_class="4xx"}"#),
        1.0,
        "no route"
    );
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, _)| k.starts_with("edgeward_requests_total"))
        .filter(|(k, _)| delta(&before, &after, k) != 0.0)
        .collect();
    assert_eq!(changed.len(), 5, "{changed:?}");
    assert_eq!(
        series(r#"edgeward_request_duration_seconds_count{route="api"}"#),
        6.0
    );
    assert_eq!(
        series(r#"edgeward_request_duration_seconds_bucket{le="+Inf",route="api"}"#),
        6.0
    );
    let replica = format!("upstream=\"app\",replica=\"{}\"", up.addr);
    assert_eq!(
        series(&format!(
            "edgeward_upstream_request_duration_seconds_count{{{replica}}}"
        )),
        6.0
    );
    assert_eq!(after[&format!("edgeward_replica_ready{{{replica}}}")], 1.0);
    let open = r#"edgeward_open_connections{listener="public",protocol="h1"}"#;
    eventually_async("every client connection closed", || async {
        scrape(gw.admin).await.get(open) == Some(&0.0)
    })
    .await;

    // Bounded labels: no paths, queries, request ids or client addresses.
    let text = get(gw.admin, "/metrics", &[]).await.unwrap().text();
    for leak in ["/api/users", "id=7", "PROPFIND", "/elsewhere"] {
        assert!(!text.contains(leak), "{leak} in /metrics");
    }
    match promtool_check(&text) {
        None => println!("skipped: promtool not installed"),
        Some((ok, report)) => assert!(ok, "promtool check metrics:\n{report}\n{text}"),
    }
}

#[tokio::test]
async fn upstream_errors_are_counted_by_replica_and_kind() {
    let dead = dead_addr();
    let gw = Gateway::start(&config(dead, "")).await;
    let before = scrape(gw.admin).await;
    assert_eq!(get(gw.addr("http"), "/api", &[]).await.unwrap().status, 502);
    let after = scrape(gw.admin).await;
    let series = format!(
        "edgeward_upstream_errors_total{{upstream=\"app\",replica=\"{dead}\",kind=\"connect_refused\"}}"
    );
    assert_eq!(delta(&before, &after, &series), 1.0);
    assert_eq!(
        delta(
            &before,
            &after,
            r#"edgeward_requests_total{route="api",method="GET",status_class="5xx"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn replica_gauges_follow_readiness() {
    let a = App::start().await;
    let b = App::start().await;
    let gw = Gateway::start(&format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{}", "{}"]

[upstreams.app.health]
interval = "100ms"
rise = 1
fall = 1

[[routes]]
path = "/"
upstream = "app"
"#,
        a.addr, b.addr
    ))
    .await;
    let gauge = |m: &HashMap<String, f64>, name: &str, addr: SocketAddr| {
        m.get(&format!(
            "edgeward_replica_{name}{{upstream=\"app\",replica=\"{addr}\"}}"
        ))
        .copied()
    };
    let now = scrape(gw.admin).await;
    assert_eq!(gauge(&now, "ready", b.addr), Some(1.0));
    assert_eq!(gauge(&now, "live", b.addr), Some(1.0));
    assert_eq!(gauge(&now, "ejected", b.addr), Some(0.0));

    b.set_ready(503);
    eventually_async("b not ready in /metrics", || async {
        gauge(&scrape(gw.admin).await, "ready", b.addr) == Some(0.0)
    })
    .await;
    let now = scrape(gw.admin).await;
    assert_eq!(gauge(&now, "ready", a.addr), Some(1.0));
    assert_eq!(gauge(&now, "live", b.addr), Some(1.0));

    b.set_ready(200);
    eventually_async("b ready again", || async {
        gauge(&scrape(gw.admin).await, "ready", b.addr) == Some(1.0)
    })
    .await;
}

#[tokio::test]
async fn counting_can_be_turned_off_and_the_probe_listener_can_serve_metrics() {
    let up = app().await;
    let cfg = config(up.addr, "")
        + "\n[metrics]\nenabled = false\n\n[probe]\nlisten = \"127.0.0.1:{probe}\"\nmetrics = true\n";
    let gw = Gateway::start(&cfg).await;
    assert_eq!(get(gw.addr("http"), "/api", &[]).await.unwrap().status, 200);
    let m = scrape(gw.addr("probe")).await;
    assert!(
        !m.keys().any(|k| k.starts_with("edgeward_requests_total")),
        "{m:?}"
    );
    let replica = format!("upstream=\"app\",replica=\"{}\"", up.addr);
    assert_eq!(
        m[&format!("edgeward_upstream_request_duration_seconds_count{{{replica}}}")],
        0.0
    );
    assert_eq!(m[&format!("edgeward_replica_ready{{{replica}}}")], 1.0);

    let gw = Gateway::start(&(config(up.addr, "") + "\n[probe]\nlisten = \"127.0.0.1:{probe}\"\n"))
        .await;
    let r = get(gw.addr("probe"), "/metrics", &[]).await.unwrap();
    assert_eq!(r.status, 404, "probe.metrics defaults to off");
}

#[tokio::test]
async fn series_of_a_replica_that_left_its_pool_are_removed() {
    let ip = |last| std::net::Ipv4Addr::new(127, 0, 0, last);
    let first = App::start_on(SocketAddr::from((ip(2), 0))).await;
    let port = first.addr.port();
    let second = App::start_on(SocketAddr::from((ip(3), port))).await;
    let dns = DnsServer::start(&[ip(2), ip(3)]).await;
    let gw = Gateway::start(&dns_upstream_config(
        port,
        &dns,
        r#"policy = "round_robin""#,
    ))
    .await;
    for _ in 0..4 {
        assert_eq!(get(gw.addr("http"), "/", &[]).await.unwrap().status, 200);
    }
    let count = |addr: SocketAddr| {
        format!(
            "edgeward_upstream_request_duration_seconds_count{{upstream=\"app\",replica=\"{addr}\"}}"
        )
    };
    let m = scrape(gw.admin).await;
    assert_eq!((m[&count(first.addr)], m[&count(second.addr)]), (2.0, 2.0));

    dns.set(&[ip(3)]);
    eventually_async("the vanished replica leaves /metrics", || async {
        !scrape(gw.admin)
            .await
            .keys()
            .any(|k| k.contains(&format!("replica=\"{}\"", first.addr)))
    })
    .await;
    let m = scrape(gw.admin).await;
    assert_eq!(
        m[&count(second.addr)],
        2.0,
        "the remaining replica keeps its counts"
    );
    assert_eq!(
        m[&format!(
            "edgeward_replica_ready{{upstream=\"app\",replica=\"{}\"}}",
            second.addr
        )],
        1.0
    );
}
