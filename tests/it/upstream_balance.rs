//! Balancing under load: latency-aware p2c against round-robin, a replica killed in the
//! middle of a stream of requests, and a hash on a field the gateway writes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::harness::*;

fn config(apps: &[SocketAddr], policy: &str) -> String {
    app_pool_config(apps, &format!("policy = \"{policy}\"\nseed = 42"), "", "")
}

/// 400 GETs from 8 concurrent clients; returns how many the slow replica served.
async fn share_of_slow(policy: &str) -> usize {
    let fast = App::start().await;
    let slow = App::start().await;
    slow.delay_ms.store(50, Ordering::SeqCst);
    let gw = Gateway::start(&config(&[fast.addr, slow.addr], policy)).await;
    let http = gw.addr("http");
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..8 {
        let next = Arc::clone(&next);
        clients.spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < 400 {
                let r = get(http, "/", &[]).await.unwrap();
                assert_eq!(r.status, 200);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    assert_eq!(fast.hits() + slow.hits(), 400);
    slow.hits()
}

#[tokio::test]
async fn p2c_ewma_avoids_a_slow_replica_that_round_robin_keeps_using() {
    let p2c = share_of_slow("p2c_ewma").await;
    assert!(p2c < 100, "p2c_ewma sent {p2c} of 400 to the slow replica");
    let rr = share_of_slow("round_robin").await;
    eprintln!("slow replica share: p2c_ewma {p2c}/400, round_robin {rr}/400");
    assert!(
        (160..=240).contains(&rr),
        "round_robin sent {rr} of 400 to the slow replica"
    );
}

/// An app whose every connection can be cut at once, as when its process dies.
struct Killable {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    kill: tokio_util::sync::CancellationToken,
}

impl Killable {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let kill = tokio_util::sync::CancellationToken::new();
        let (h, k) = (Arc::clone(&hits), kill.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = k.cancelled() => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => return },
                };
                let (h, k) = (Arc::clone(&h), k.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        if !is_probe(req.headers()) {
                            h.fetch_add(1, Ordering::SeqCst);
                        }
                        async move { Ok::<_, std::convert::Infallible>(http::Response::new(full("ok"))) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    // Dropping the connection mid-stream closes the socket under the gateway.
                    tokio::select! {
                        _ = conn => {}
                        () = k.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, hits, kill }
    }
}

#[tokio::test]
async fn a_replica_killed_under_load_costs_no_request() {
    let victim = Killable::start().await;
    let a = App::start().await;
    let b = App::start().await;
    let mut template = config(&[victim.addr, a.addr, b.addr], "round_robin");
    template.push_str("\n[upstreams.app.outlier]\nconsecutive_failures = 3\n");
    let gw = Gateway::start(&template).await;
    let http = gw.addr("http");

    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..4 {
        let (sent, failed) = (Arc::clone(&sent), Arc::clone(&failed));
        clients.spawn(async move {
            while sent.fetch_add(1, Ordering::SeqCst) < 2000 {
                match get(http, "/", &[]).await {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        eprintln!("failed: {other:?}");
                    }
                }
            }
        });
    }
    eventually("500 requests sent", || sent.load(Ordering::SeqCst) >= 500).await;
    victim.kill.cancel();
    let victim_served = victim.hits.load(Ordering::SeqCst);
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "{}", gw.log());
    eprintln!(
        "victim served {victim_served}; retries: {}",
        gw.log().matches("retrying on another replica").count()
    );
    assert!(
        victim_served > 50,
        "the victim served traffic before: {victim_served}"
    );
    assert!(a.hits() + b.hits() + victim.hits.load(Ordering::SeqCst) >= 2000);
    let state = replica_state(&gw, "app", victim.addr).await.unwrap();
    assert!(
        state["live"] == false || state["ready"] == false || state["ejected"] == true,
        "the dead replica is out: {state}"
    );
}

#[tokio::test]
async fn a_hash_on_a_field_the_gateway_writes_reads_the_value_it_sends() {
    // The client is not a trusted proxy, so its `X-Request-Id` is replaced by a fresh id, and
    // the hash follows the id the app receives: the same client value still spreads. Hashing
    // the client's own field would send all of them to one replica.
    let a = App::start().await;
    let b = App::start().await;
    let upstream = r#"hash_on = "header:X-Request-Id""#;
    let gw = Gateway::start(&app_pool_config(&[a.addr, b.addr], upstream, "", "")).await;
    for app in [&a, &b] {
        until_ready(&gw, "app", app.addr, "both replicas are ready").await;
    }
    for _ in 0..40 {
        let r = get(gw.addr("http"), "/", &[("x-request-id", "same")])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(a.hits() + b.hits(), 40);
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "{} and {} requests",
        a.hits(),
        b.hits()
    );
}
