use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::Snapshot;
use crate::config::{self, Config};
use crate::upstream::registry::Registry;

/// An app whose readiness probe answers `ready`; everything else 200.
async fn app(ready: u16) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| async move {
                    let status = if req.uri().path() == "/health/ready" {
                        ready
                    } else {
                        200
                    };
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn config_for(replicas: &[SocketAddr]) -> Arc<Config> {
    let list: Vec<String> = replicas.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "[listeners.l]\nlisten = \"127.0.0.1:0\"\n[upstreams.app]\nreplicas = [{}]\n\
         [upstreams.app.health]\ninterval = \"100ms\"\n[[routes]]\nupstream = \"app\"\n",
        list.join(", ")
    );
    Arc::new(config::parse(&text, std::path::Path::new("/x.toml"), &|_| None).unwrap())
}

#[tokio::test]
async fn health_and_counters_survive_a_rebuild_and_removed_replicas_drain() {
    let good = app(200).await;
    let sick = app(503).await;
    let registry = Registry::default();
    let limiters = crate::ratelimit::Registry::default();
    let first = Snapshot::build(config_for(&[good, sick]), &registry, &limiters, 1)
        .await
        .unwrap();
    let members = first.upstreams["app"].members().replicas.clone();
    for r in &members {
        tokio::time::timeout(Duration::from_secs(10), r.first_round())
            .await
            .expect("first probe round");
    }
    let (g, s) = (&members[0], &members[1]);
    assert!(g.is_ready() && !s.is_ready());
    let in_flight = g.begin();

    let second = Snapshot::build(config_for(&[good, sick]), &registry, &limiters, 2)
        .await
        .unwrap();
    let rebuilt = second.upstreams["app"].members().replicas.clone();
    assert!(Arc::ptr_eq(&rebuilt[0], g) && Arc::ptr_eq(&rebuilt[1], s));
    assert!(
        !rebuilt[1].is_ready(),
        "a rebuild does not reset health to ready"
    );
    assert_eq!(rebuilt[0].in_flight(), 1);
    drop(first);

    let third = Snapshot::build(config_for(&[good]), &registry, &limiters, 3)
        .await
        .unwrap();
    third.retire_replaced(&second);
    assert!(s.is_draining(), "a replica that left is drained");
    assert!(!g.is_draining());
    assert!(
        second.upstreams["app"]
            .pick(0, &[], tokio::time::Instant::now())
            .is_some_and(|r| Arc::ptr_eq(&r, g))
    );
    drop(in_flight);
}
