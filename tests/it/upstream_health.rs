//! Active health: readiness drains, liveness takes out, nothing available answers 503 at
//! once, and a probe path missing everywhere is reported.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::harness::*;

/// Two or more apps under one upstream probed every 100 ms, rise and fall 2.
fn config(apps: &[SocketAddr], extra: &str) -> String {
    let upstream = format!("policy = \"round_robin\"\n{extra}");
    app_pool_config(apps, &upstream, "rise = 2\nfall = 2", "")
}

async fn flag(gw: &Gateway, addr: SocketAddr, key: &str, want: bool) {
    eventually_async(&format!("{addr} {key} = {want}"), || async {
        replica_state(gw, "app", addr)
            .await
            .is_some_and(|r| r[key] == want)
    })
    .await;
}

#[tokio::test]
async fn not_ready_drains_while_in_flight_requests_finish_and_rise_brings_it_back() {
    let a = App::start().await;
    let b = App::start().await;
    let gw = Gateway::start(&config(&[a.addr, b.addr], "")).await;
    let http = gw.addr("http");

    // Park one request on A behind its latch (requests that land on B return at once).
    let mut parked = None;
    for _ in 0..4 {
        let task = tokio::spawn(async move { get(http, "/hold", &[]).await });
        eventually("the request is held by A or answered by B", || {
            a.held.load(Ordering::SeqCst) == 1 || task.is_finished()
        })
        .await;
        if a.held.load(Ordering::SeqCst) == 1 {
            parked = Some(task);
            break;
        }
    }
    let parked = parked.expect("a request parked on A");

    a.set_ready(503);
    flag(&gw, a.addr, "ready", false).await;
    let a_before = a.hits();
    for _ in 0..50 {
        let r = get(http, "/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            b.addr.to_string(),
            "a not-ready replica got a request"
        );
    }
    assert_eq!(a.hits(), a_before);
    let state = replica_state(&gw, "app", a.addr).await.unwrap();
    assert_eq!(state["in_flight"], 1, "{state}");
    assert_eq!(state["last_probe"]["ready"], "status 503", "{state}");

    // The parked request still completes on A.
    a.release.add_permits(1);
    let r = parked.await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), a.addr.to_string());

    a.set_ready(200);
    flag(&gw, a.addr, "ready", true).await;
    for _ in 0..10 {
        get(http, "/", &[]).await.unwrap();
    }
    assert!(a.hits() > a_before + 1, "A is back in rotation");
    let log = gw.log();
    assert_eq!(
        log.matches("replica not ready: draining").count(),
        1,
        "a flip is logged once, not per probe:\n{log}"
    );
    assert!(
        log.contains("status 503"),
        "the flip names its reason:\n{log}"
    );
}

#[tokio::test]
async fn not_live_but_ready_is_out() {
    let a = App::start().await;
    let b = App::start().await;
    let gw = Gateway::start(&config(&[a.addr, b.addr], "")).await;
    a.set_live(500);
    flag(&gw, a.addr, "live", false).await;
    let before = a.hits();
    for _ in 0..20 {
        let r = get(gw.addr("http"), "/", &[]).await.unwrap();
        assert_eq!(r.text(), b.addr.to_string());
    }
    assert_eq!(a.hits(), before);
    let state = replica_state(&gw, "app", a.addr).await.unwrap();
    assert_eq!(state["ready"], true, "{state}");
}

#[tokio::test]
async fn nothing_available_is_503_with_retry_after() {
    let a = App::start().await;
    let b = App::start().await;
    let gw = Gateway::start(&config(&[a.addr, b.addr], "")).await;
    a.set_ready(503);
    b.set_ready(503);
    flag(&gw, a.addr, "ready", false).await;
    flag(&gw, b.addr, "ready", false).await;
    let r = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(a.hits() + b.hits(), 0);

    // fail_open sends to the live ones instead.
    let gw = Gateway::start(&config(&[a.addr, b.addr], "fail_open = true")).await;
    flag(&gw, a.addr, "ready", false).await;
    let r = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn new_replicas_wait_for_their_first_probe_and_dead_ones_never_get_traffic() {
    let a = App::start().await;
    let dead = dead_addr();
    let gw = Gateway::start(&config(&[a.addr, dead], "")).await;
    // Ready means the first probe round ran: the dead replica is known not ready already.
    let state = replica_state(&gw, "app", dead).await.unwrap();
    assert_eq!(state["ready"], false, "{state}");
    assert_eq!(state["last_probe"]["ready"], "refused", "{state}");
    for _ in 0..10 {
        let r = get(gw.addr("http"), "/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(a.hits(), 10);
}

#[tokio::test]
async fn probe_path_missing_everywhere_is_reported_once() {
    let a = App::start().await;
    let b = App::start().await;
    let template = config(&[a.addr, b.addr], "").replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\nready_path = \"/readyz\"",
    );
    let gw = Gateway::start(&template).await;
    eventually_async("the missing probe path is reported", || async {
        let all = admin_upstreams(&gw).await;
        all["upstreams"][0]["config_errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|m| m.as_str().unwrap().contains("/readyz")))
    })
    .await;
    // Several more probe rounds, still one log line.
    let seen = |gw: &Gateway| {
        let gw_log = gw.log();
        gw_log.matches("answers 404 on every replica").count()
    };
    let at = replica_state(&gw, "app", a.addr).await.unwrap()["last_probe"]["at_unix_ms"].clone();
    eventually_async("three more probe rounds", || async {
        let now = replica_state(&gw, "app", a.addr).await.unwrap()["last_probe"]["at_unix_ms"]
            .as_u64()
            .unwrap();
        now > at.as_u64().unwrap() + 250
    })
    .await;
    assert_eq!(seen(&gw), 1, "{}", gw.log());
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("answers 404 on every replica"))
        .unwrap();
    assert!(line.contains("/readyz"), "the error names the path: {line}");
}

#[tokio::test]
async fn readiness_waits_for_the_first_probe_round_but_not_forever() {
    // Accepts connections and never answers: the first probe round hangs for 30 s.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let template = config(&[addr], "").replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\ntimeout = \"30s\"",
    ) + "\n[startup]\nprobe_timeout = \"500ms\"\n";
    let mut gw = Gateway::builder(&template).no_wait().start().await;
    gw.wait_ready().await;
    let log = gw.log();
    assert!(
        log.contains("first probe round not complete in startup.probe_timeout"),
        "{log}"
    );
    let r = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(r.status, 503, "the unprobed replica takes no request");
}
