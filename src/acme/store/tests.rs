use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::{Backend, DirStore, Locked, RedisStore, Store, check_key};

#[test]
fn keys_cannot_leave_the_store() {
    for good in [
        "account.json",
        "certs/app.test-1a2b/bundle.pem",
        "challenges/http-01/Ab_9-x",
    ] {
        assert!(check_key(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../b",
        "a//b",
        "a/./b",
        "a\\b",
        "a b",
        "a%2Fb",
        "a/",
    ] {
        assert!(check_key(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn dir_store_round_trips_with_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("acme");
    let store = Backend::Dir(DirStore::open(&root).unwrap());
    assert_eq!(store.get("certs/a/bundle.pem").await.unwrap(), None);
    store.put("certs/a/bundle.pem", b"one").await.unwrap();
    store.put("certs/a/bundle.pem", b"two").await.unwrap();
    assert_eq!(
        store.get("certs/a/bundle.pem").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("certs/a")), 0o700);
    assert_eq!(mode(&root.join("certs/a/bundle.pem")), 0o600);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(root.join("certs/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bundle.pem"]);
    store.delete("certs/a/bundle.pem").await.unwrap();
    store.delete("certs/a/bundle.pem").await.unwrap();
    assert_eq!(store.get("certs/a/bundle.pem").await.unwrap(), None);
    assert!(store.get("../outside").await.is_err());
}

#[tokio::test]
async fn dir_lock_is_exclusive_renewable_and_taken_over_when_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Backend::Dir(DirStore::open(tmp.path()).unwrap());
    let Locked::Acquired(first) = store.lock("set", Duration::from_secs(60)).await.unwrap() else {
        panic!("first lock must be acquired");
    };
    match store.lock("set", Duration::from_secs(60)).await.unwrap() {
        Locked::Held { holder } => assert_eq!(holder, first.token),
        Locked::Acquired(_) => panic!("second lock must wait"),
    }
    assert!(store.renew(&first).await.unwrap());
    store.release(&first).await.unwrap();
    assert!(
        !store.renew(&first).await.unwrap(),
        "a released lease cannot be renewed"
    );

    // A lease that ran out is taken over, and its old holder learns it lost the lock.
    let Locked::Acquired(short) = store.lock("set", Duration::from_millis(1)).await.unwrap() else {
        panic!("free lock must be acquired");
    };
    std::thread::sleep(Duration::from_millis(5));
    let Locked::Acquired(next) = store.lock("set", Duration::from_secs(60)).await.unwrap() else {
        panic!("an expired lease must be taken over");
    };
    assert_ne!(next.token, short.token);
    assert!(!store.renew(&short).await.unwrap());
    store.release(&short).await.unwrap();
    assert!(
        store.renew(&next).await.unwrap(),
        "the old holder's release must not free it"
    );
}

/// A redis-server on a free port for one test, killed by PID when dropped; `None` (with a
/// skip line) when redis-server is not installed.
struct RedisServer(std::process::Child, u16);

impl RedisServer {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            println!("skipped: redis-server not installed");
            return None;
        };
        let server = Self(child, port);
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn redis_store_round_trips_and_locks_by_token() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", server.1);
    let store = Backend::Redis(RedisStore::open(&url, "test:").unwrap());
    assert_eq!(store.get("certs/a/bundle.pem").await.unwrap(), None);
    store.put("certs/a/bundle.pem", b"one").await.unwrap();
    assert_eq!(
        store.get("certs/a/bundle.pem").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    store.delete("certs/a/bundle.pem").await.unwrap();
    assert_eq!(store.get("certs/a/bundle.pem").await.unwrap(), None);
    assert!(store.get("../x").await.is_err());

    let Locked::Acquired(first) = store.lock("set", Duration::from_secs(60)).await.unwrap() else {
        panic!("first lock must be acquired");
    };
    match store.lock("set", Duration::from_secs(60)).await.unwrap() {
        Locked::Held { holder } => assert_eq!(holder, first.token),
        Locked::Acquired(_) => panic!("second lock must wait"),
    }
    assert!(store.renew(&first).await.unwrap());
    // Only the holder's token releases it.
    let mut impostor = first.clone();
    impostor.token = "someone-else".to_owned();
    store.release(&impostor).await.unwrap();
    assert!(store.renew(&first).await.unwrap());
    assert!(!store.renew(&impostor).await.unwrap());
    store.release(&first).await.unwrap();
    assert!(!store.renew(&first).await.unwrap());
    let Locked::Acquired(_) = store.lock("set", Duration::from_secs(60)).await.unwrap() else {
        panic!("a released lock is free");
    };
}
