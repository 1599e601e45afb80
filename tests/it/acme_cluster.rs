//! Two gateways on one store: one holds the lock and orders, the other waits and serves the
//! same certificate. The CA's validator reaches the second one, which answers from the store
//! when the first holds the challenge.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    let Some(redis) = Redis::start() else {
        return;
    };
    let url = format!("redis://{}/", redis.addr);
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

/// A redis-server on a free port, stopped by PID when dropped.
struct Redis {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            println!("skipped: redis-server not installed");
            return None;
        };
        let redis = Redis {
            child,
            addr: local(port),
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(redis.addr).is_err() {
            assert!(start.elapsed() < DEADLINE, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
