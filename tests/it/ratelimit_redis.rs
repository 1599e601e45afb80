//! Limits shared through a real `redis-server` (started per test on a free port, stopped by
//! its PID): two gateways share one limit, and a Redis outage follows the failure policy and
//! ends by itself when Redis returns.

use crate::harness::*;

/// A gateway whose route is limited to `rate` through Redis (`${REDIS_URL}`) with `failure`.
fn config(up: &Upstream, rate: &str, failure: &str) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{up}"]

[redis]
url = "${{REDIS_URL}}"
timeout = "2s"
failure = "{failure}"

[rate_limits.shared]
rate = "{rate}"
backend = "redis"
headers = true

[[routes]]
path = "/"
upstream = "app"
rate_limits = ["shared"]
"#,
        up = up.addr
    )
}

async fn status(gw: &Gateway) -> u16 {
    get(gw.addr("http"), "/", &[]).await.unwrap().status
}

#[tokio::test]
async fn two_gateways_share_one_limit() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::ok().await;
    let template = config(&up, "4/h", "fail_open");
    let a = Gateway::builder(&template)
        .env("REDIS_URL", &redis.url())
        .start()
        .await;
    let b = Gateway::builder(&template)
        .env("REDIS_URL", &redis.url())
        .start()
        .await;

    let first = get(a.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit"), Some("\"shared\";r=3;t=900"));
    let got = [status(&b).await, status(&a).await, status(&b).await];
    assert_eq!(got, [200, 200, 200]);
    let over = get(a.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(over.status, 429);
    assert!(over.header("retry-after").is_some());
    assert_eq!(status(&b).await, 429);
    assert_eq!(up.seen().len(), 4, "four in total, not four per gateway");
    assert!(!a.log().contains("Redis unavailable"), "{}", a.log());
}

#[tokio::test]
async fn fail_open_decides_locally_while_redis_is_down() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&config(&up, "3/h", "fail_open"))
        .env("REDIS_URL", &redis.url())
        .start()
        .await;
    // Two of the shared three are spent in Redis.
    assert_eq!([status(&gw).await, status(&gw).await], [200, 200]);

    redis.kill();
    // The local limiter knows nothing of those two: it allows its own three, then refuses.
    let got = [
        status(&gw).await,
        status(&gw).await,
        status(&gw).await,
        status(&gw).await,
    ];
    assert_eq!(got, [200, 200, 200, 429]);
    let metrics = scrape(gw.admin).await;
    assert_eq!(metrics["edgeward_rate_limit_redis_fallbacks_total"], 4.0);
    assert!(metrics["edgeward_rate_limit_redis_failures_total"] >= 1.0);
    eventually("the outage is logged", || {
        gw.log().contains("Redis unavailable")
    })
    .await;
    assert_eq!(
        gw.log().matches("Redis unavailable").count(),
        1,
        "logged once"
    );
    assert!(gw.log().contains("fail_open"));
}

#[tokio::test]
async fn fail_closed_refuses_while_redis_is_down_and_recovers_when_it_returns() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&config(&up, "100/m", "fail_closed"))
        .env("REDIS_URL", &redis.url())
        .start()
        .await;
    assert_eq!(status(&gw).await, 200);

    redis.kill();
    let refused = get(gw.addr("http"), "/", &[]).await.unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(status(&gw).await, 429);
    let seen_while_down = up.seen().len();
    assert_eq!(seen_while_down, 1);

    // Same port, empty data: the gateway reconnects by itself.
    redis.restart().await;
    let addr = gw.addr("http");
    eventually_async("requests are allowed again", || async move {
        get(addr, "/", &[]).await.unwrap().status == 200
    })
    .await;
    eventually("the recovery is logged", || {
        gw.log().contains("Redis reachable again")
    })
    .await;
    assert_eq!(gw.log().matches("Redis unavailable").count(), 1);
}
