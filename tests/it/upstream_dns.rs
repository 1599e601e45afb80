//! DNS discovery: every address of a name is a replica with its own health; new addresses
//! join, vanished ones are drained.

use std::net::{Ipv4Addr, SocketAddr};

use crate::harness::*;

#[tokio::test]
async fn a_dns_name_becomes_one_replica_per_address_and_follows_changes() {
    let ip = |last| Ipv4Addr::new(127, 0, 0, last);
    let first = App::start_on(SocketAddr::from((ip(2), 0))).await;
    let port = first.addr.port();
    let second = App::start_on(SocketAddr::from((ip(3), port))).await;
    let third = App::start_on(SocketAddr::from((ip(4), port))).await;
    let dns = DnsServer::start(&[ip(2), ip(3)]).await;

    let template = dns_upstream_config(port, &dns, r#"policy = "round_robin""#);
    let gw = Gateway::start(&template).await;
    let listed = |v: &serde_json::Value| -> Vec<String> {
        v["upstreams"][0]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["addr"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = admin_upstreams(&gw).await;
    assert_eq!(
        listed(&all),
        vec![first.addr.to_string(), second.addr.to_string()]
    );
    for _ in 0..10 {
        assert_eq!(get(gw.addr("http"), "/", &[]).await.unwrap().status, 200);
    }
    assert_eq!((first.hits(), second.hits()), (5, 5));

    dns.set(&[ip(2), ip(3), ip(4)]);
    until_ready(&gw, "app", third.addr, "the third address joins, ready").await;
    for _ in 0..9 {
        get(gw.addr("http"), "/", &[]).await.unwrap();
    }
    assert!(third.hits() >= 2, "the new replica takes its share");

    dns.set(&[ip(3), ip(4)]);
    eventually_async("the vanished address leaves", || async {
        replica_state(&gw, "app", first.addr).await.is_none()
    })
    .await;
    let before = first.hits();
    for _ in 0..10 {
        assert_eq!(get(gw.addr("http"), "/", &[]).await.unwrap().status, 200);
    }
    assert_eq!(
        first.hits(),
        before,
        "a drained replica gets no new request"
    );

    // A failing nameserver keeps the last known addresses.
    drop(dns);
    for _ in 0..10 {
        assert_eq!(get(gw.addr("http"), "/", &[]).await.unwrap().status, 200);
    }
    eventually("the failed lookup is logged", || {
        gw.log()
            .contains("DNS lookup failed; keeping the last known addresses")
    })
    .await;
    assert_eq!(listed(&admin_upstreams(&gw).await).len(), 2);
}

#[tokio::test]
async fn hashed_keys_stay_put_when_dns_adds_a_replica_and_only_move_to_it() {
    let ip = |last| Ipv4Addr::new(127, 0, 0, last);
    let first = App::start_on(SocketAddr::from((ip(5), 0))).await;
    let port = first.addr.port();
    let mut apps = vec![first];
    for last in 6..=8 {
        apps.push(App::start_on(SocketAddr::from((ip(last), port))).await);
    }
    let dns = DnsServer::start(&[ip(5), ip(6), ip(7)]).await;
    let template = dns_upstream_config(port, &dns, r#"hash_on = "header:X-User""#);
    let gw = Gateway::start(&template).await;
    let owners = |gw: &Gateway| {
        let http = gw.addr("http");
        async move {
            let mut out = Vec::new();
            for k in 0..300 {
                let user = format!("user-{k}");
                let r = get(http, "/", &[("x-user", user.as_str())]).await.unwrap();
                assert_eq!(r.status, 200);
                out.push(r.text());
            }
            out
        }
    };
    let before = owners(&gw).await;
    assert_eq!(before, owners(&gw).await, "a key sticks to its replica");

    dns.set(&[ip(5), ip(6), ip(7), ip(8)]);
    until_ready(&gw, "app", apps[3].addr, "the fourth replica is ready").await;
    let after = owners(&gw).await;
    let newcomer = apps[3].addr.to_string();
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(
        moved.iter().all(|(_, a)| **a == newcomer),
        "keys moved only to the new replica"
    );
    assert!(
        moved.len() <= 105 && moved.len() >= 30,
        "{} of 300 keys moved",
        moved.len()
    );
}
