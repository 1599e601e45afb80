//! Passive health: failing answers eject a replica until its backoff is over and a probe
//! passes; never more than the allowed share of a pool.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::harness::*;

fn config(apps: &[SocketAddr], outlier: &str) -> String {
    let section = format!("[upstreams.app.outlier]\nconsecutive_failures = 3\n{outlier}");
    app_pool_config(apps, r#"policy = "round_robin""#, "", &section)
}

#[tokio::test]
async fn failing_answers_eject_until_the_backoff_ends_and_a_probe_passes() {
    let bad = App::start().await;
    let good = App::start().await;
    bad.fail.store(503, Ordering::SeqCst);
    let gw = Gateway::start(&config(&[bad.addr, good.addr], "base_ejection = \"1s\"")).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(get(gw.addr("http"), "/", &[]).await.unwrap().status);
    }
    // Round-robin alternates until the third 503 in a row ejects the bad replica.
    assert_eq!(bad.hits(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 3);
    let state = replica_state(&gw, "app", bad.addr).await.unwrap();
    assert_eq!(state["ejected"], true, "{state}");
    assert_eq!(state["ready"], true, "probes still pass: {state}");

    bad.fail.store(0, Ordering::SeqCst);
    eventually_async("the ejected replica returns", || async {
        replica_state(&gw, "app", bad.addr).await.unwrap()["ejected"] == false
    })
    .await;
    for _ in 0..4 {
        assert_eq!(get(gw.addr("http"), "/", &[]).await.unwrap().status, 200);
    }
    assert!(bad.hits() > 3, "back in rotation");
    assert_eq!(gw.log().matches("replica ejected").count(), 1);
}

#[tokio::test]
async fn a_500_counts_only_when_asked_and_half_the_pool_at_most_is_ejected() {
    let a = App::start().await;
    let b = App::start().await;
    a.fail.store(500, Ordering::SeqCst);
    b.fail.store(500, Ordering::SeqCst);
    let gw = Gateway::start(&config(&[a.addr, b.addr], "")).await;
    for _ in 0..12 {
        assert_eq!(get(gw.addr("http"), "/", &[]).await.unwrap().status, 500);
    }
    assert_eq!(
        (a.hits(), b.hits()),
        (6, 6),
        "500 does not eject by default"
    );

    let gw = Gateway::start(&config(&[a.addr, b.addr], "count_5xx = true")).await;
    for _ in 0..12 {
        get(gw.addr("http"), "/", &[]).await.unwrap();
    }
    let mut ejected = Vec::new();
    for addr in [a.addr, b.addr] {
        ejected.push(replica_state(&gw, "app", addr).await.unwrap()["ejected"] == true);
    }
    assert_eq!(
        ejected.iter().filter(|e| **e).count(),
        1,
        "max_ejected_percent = 50 keeps one of two: {ejected:?}"
    );
}
