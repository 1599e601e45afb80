//! Admin and probe listeners: the readiness latch, the admin access rules, the probe-only
//! surface, and their own connection budgets.

use std::net::{SocketAddr, TcpListener as StdListener};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::clients::status;
use crate::harness::*;

#[tokio::test]
async fn ready_is_503_until_every_listener_is_bound() {
    let up = Upstream::ok().await;
    // Another server still holds the data-plane address, as a stopping process would.
    let holder = StdListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut gw = Gateway::builder(&format!(
        "[listeners.public]\nlisten = \"127.0.0.1:{port}\"\n\n[upstreams.app]\nreplicas = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n",
        up.addr
    ))
    .no_wait()
    .start()
    .await;
    let admin = gw.admin;

    eventually_async("the admin listener answers", || async {
        status(admin, "GET", "/health/live", &[]).await == Some(200)
    })
    .await;
    assert_eq!(status(admin, "GET", "/health/ready", &[]).await, Some(503));
    eventually("the wait is logged", || gw.log().contains("address in use")).await;
    // Still not ready: the address is still held.
    assert_eq!(status(admin, "GET", "/health/ready", &[]).await, Some(503));
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "still waiting, not exited"
    );

    drop(holder);
    eventually_async("ready once the listener is bound", || async {
        status(admin, "GET", "/health/ready", &[]).await == Some(200)
    })
    .await;
    let data = SocketAddr::from(([127, 0, 0, 1], port));
    let r = get(data, "/", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(up.seen().len(), 1);
    gw.signal(rustix::process::Signal::INT);
    assert!(gw.wait_exit().await.success());
}

const GUARDED: &str = r#"
[listeners.public]
listen = "127.0.0.1:{http}"

[admin]
listen = "127.0.0.1:{admin}"
hosts = ["edgeward.internal"]
token = "s3cret-token"

[probe]
listen = "127.0.0.1:{probe}"

[upstreams.app]
replicas = ["127.0.0.1:9"]

[[routes]]
path = "/"
upstream = "app"
"#;

#[tokio::test]
async fn admin_rejects_foreign_host_missing_token_and_cross_site_origin() {
    let mut gw = Gateway::builder(GUARDED).no_wait().start().await;
    let admin = gw.admin;
    let auth = ("authorization", "Bearer s3cret-token");
    eventually_async("admin up and ready", || async {
        status(admin, "GET", "/health/ready", &[auth]).await == Some(200)
    })
    .await;

    // Host: loopback literals, localhost and configured names only (DNS rebinding).
    for host in [
        "localhost",
        "127.0.0.1:9901",
        "[::1]:9901",
        "LOCALHOST",
        "edgeward.internal",
    ] {
        assert_eq!(
            status(admin, "GET", "/health/live", &[("host", host), auth]).await,
            Some(200),
            "Host {host}"
        );
    }
    for host in [
        "evil.example",
        "evil.example:9901",
        "10.0.0.1",
        "edgeward.internal.evil",
    ] {
        assert_eq!(
            status(admin, "GET", "/health/live", &[("host", host), auth]).await,
            Some(421),
            "Host {host}"
        );
    }

    // Token: missing, wrong, wrong scheme, right.
    assert_eq!(status(admin, "GET", "/health/live", &[]).await, Some(401));
    for bad in [
        "Bearer wrong",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
        "s3cret-token",
    ] {
        assert_eq!(
            status(admin, "GET", "/health/live", &[("authorization", bad)]).await,
            Some(401),
            "Authorization: {bad}"
        );
    }
    let got = get(admin, "/health/ready", &[]).await.unwrap();
    assert_eq!(got.header("www-authenticate"), Some("Bearer"));

    // Non-GET with a cross-site Origin is refused before routing; same-origin or no Origin
    // (scripts) reach routing, which has no POST endpoint yet (405 on a health path).
    let host = format!("127.0.0.1:{}", admin.port());
    let same = format!("http://{host}");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 5] = [
        ("POST", &[("origin", "https://evil.example")], 403),
        ("POST", &[("origin", "null")], 403),
        ("DELETE", &[("origin", "http://localhost:1")], 403),
        ("POST", &[("origin", same.as_str())], 405),
        ("POST", &[], 405),
    ];
    for (method, extra, want) in cases {
        let mut headers = vec![auth, ("host", host.as_str())];
        headers.extend_from_slice(extra);
        assert_eq!(
            status(admin, method, "/health/ready", &headers).await,
            Some(want),
            "{method} with {extra:?}"
        );
    }
    // A cross-site GET is only a read.
    assert_eq!(
        status(
            admin,
            "GET",
            "/health/live",
            &[auth, ("origin", "https://evil.example")]
        )
        .await,
        Some(200)
    );
    gw.signal(rustix::process::Signal::INT);
    assert!(gw.wait_exit().await.success());
}

#[tokio::test]
async fn probe_listener_serves_only_probes() {
    let mut gw = Gateway::builder(GUARDED).no_wait().start().await;
    let probe = gw.addr("probe");
    eventually_async("probe ready", || async {
        status(probe, "GET", "/health/ready", &[]).await == Some(200)
    })
    .await;
    // No token, no Host check: kubelet probes the pod IP with whatever Host it likes.
    for host in ["localhost", "10.1.2.3:9902", "pod.example"] {
        assert_eq!(
            status(probe, "GET", "/health/live", &[("host", host)]).await,
            Some(200)
        );
        assert_eq!(
            status(probe, "HEAD", "/health/ready", &[("host", host)]).await,
            Some(200)
        );
    }
    for path in [
        "/",
        "/metrics",
        "/admin/upstreams",
        "/health",
        "/health/ready/x",
    ] {
        assert_eq!(status(probe, "GET", path, &[]).await, Some(404), "{path}");
    }
    assert_eq!(status(probe, "POST", "/health/ready", &[]).await, Some(405));
    // Never routed: the data plane's catch-all route does not apply here.
    let r = get(probe, "/anything", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (404, "not found\n"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    gw.signal(rustix::process::Signal::INT);
    assert!(gw.wait_exit().await.success());
}

#[tokio::test]
async fn a_full_data_plane_does_not_starve_the_probes() {
    // Every data-plane connection is busy (its request held by the app), so none is idle
    // enough to be shed and the budget is really spent.
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let gate = std::sync::Arc::clone(&release);
    let up = Upstream::start(move |_| {
        let gate = std::sync::Arc::clone(&gate);
        async move {
            let _ = gate.acquire().await.map(|p| p.forget());
            http::Response::new(full("ok"))
        }
    })
    .await;
    let mut gw = Gateway::start(&format!(
        "{}\n[server]\nmax_connections = 3\n\n[probe]\nlisten = \"127.0.0.1:{{probe}}\"\n",
        without_probes(simple_config(up.addr, ""))
    ))
    .await;
    let data = gw.addr("http");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(data).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    eventually("the app holds three requests", || up.seen().len() == 3).await;
    // The budget is spent: one more data-plane connection is closed without an answer.
    eventually_async("the data plane refuses more connections", || async {
        let mut extra = TcpStream::connect(data).await.unwrap();
        let _ =
            tokio::io::AsyncWriteExt::write_all(&mut extra, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
                .await;
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(DEADLINE, extra.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    })
    .await;
    assert_eq!(
        status(gw.addr("probe"), "GET", "/health/ready", &[]).await,
        Some(200)
    );
    assert_eq!(
        status(gw.admin, "GET", "/health/ready", &[]).await,
        Some(200)
    );
    assert_eq!(up.seen().len(), 3);
    release.add_permits(1000);
    drop(held);
    eventually_async("the data plane serves again", || async {
        status(data, "GET", "/", &[]).await == Some(200)
    })
    .await;
    gw.signal(rustix::process::Signal::INT);
    assert!(gw.wait_exit().await.success());
}
