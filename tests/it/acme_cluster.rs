//! Two gateways on one store: one holds the lock and orders, the other waits and serves the
//! same certificate. The CA's validator reaches the second one, which answers from the store
//! when the first holds the challenge.

use std::net::SocketAddr;

use crate::acme_http01::{ISSUE_WAIT, Site, local};
use crate::harness::*;
use crate::pebble::{self, Pebble, PebbleSetup, wait_for_leaf};

async fn two_gateways_share_one_certificate(storage: &str) {
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleSetup {
        http_port,
        tls_port,
        blocklist: &[],
    })
    .await;
    // The validator goes to the second gateway's address.
    pebble.set_a("cluster.test", "127.0.0.2").await;
    let up = Upstream::ok().await;
    let root = pebble.issuing_root().await;
    let config_on = |ip: [u8; 4]| {
        Site {
            plain: Some(SocketAddr::from((ip, http_port))),
            tls: SocketAddr::from((ip, tls_port)),
            directory: &pebble.directory,
            ca_roots: &pebble.tls_ca,
            storage,
            acme_extra: "",
            names: &["cluster.test"],
            upstream: up.addr,
        }
        .config()
    };
    let a = Gateway::start(&config_on([127, 0, 0, 1])).await;
    let b = Gateway::start(&config_on([127, 0, 0, 2])).await;
    let logs = || {
        format!(
            "--- a ---\n{}\n--- b ---\n{}\n{}",
            a.log(),
            b.log(),
            pebble.logs()
        )
    };
    let on_a = wait_for_leaf(
        local(tls_port),
        "cluster.test",
        &root,
        ISSUE_WAIT,
        |_| true,
        logs,
    )
    .await;
    let on_b = wait_for_leaf(
        SocketAddr::from(([127, 0, 0, 2], tls_port)),
        "cluster.test",
        &root,
        ISSUE_WAIT,
        |leaf| *leaf == on_a,
        logs,
    )
    .await;
    assert_eq!(on_a, on_b);
    let (log_a, log_b) = (a.log(), b.log());
    let ordered = [&log_a, &log_b]
        .iter()
        .filter(|l| l.contains("ordering an ACME certificate"))
        .count();
    assert_eq!(ordered, 1, "exactly one replica orders:\n{}", logs());
    let holders = [&log_a, &log_b]
        .iter()
        .filter(|l| l.contains("holding the ACME lock"))
        .count();
    assert_eq!(holders, 1, "exactly one lock holder is logged:\n{}", logs());
    assert!(
        log_b.contains("served an ACME HTTP-01 challenge"),
        "the replica the CA reached answered:\n{}",
        logs()
    );
}

#[tokio::test]
async fn two_gateways_on_one_directory_store_serve_the_same_certificate() {
    if !pebble::installed() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    two_gateways_share_one_certificate(&format!("dir:{}", store.path().display())).await;
    let files = pebble::files_under(store.path());
    assert_eq!(
        files.iter().filter(|f| f.ends_with("bundle.pem")).count(),
        1,
        "{files:?}"
    );
}

#[tokio::test]
async fn two_gateways_on_one_redis_store_serve_the_same_certificate() {
    if !pebble::installed() {
        return;
    }
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let url = format!("{}/", redis.url());
    two_gateways_share_one_certificate(&url).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("edgeward:acme:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.ends_with("/bundle.pem")), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("edgeward:acme:accounts/")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("challenges/")), "{keys:?}");
}
