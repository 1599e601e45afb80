//! Rate limit decision cost and memory per key. Run with `cargo bench --bench ratelimit`;
//! how the numbers in `benches/README.md` were taken is written there.
//!
//! With redis-server installed, it also measures one Redis-backed decision against a local
//! redis-server it starts on a free port (and kills by PID afterwards).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::num::NonZeroU32;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use edgeward::config::{LimitBackend, LimitKey, RateLimit, Redis, RedisFailure};
use edgeward::ratelimit::{Key, Limiter, LocalLimiter, RedisBackend, check};
use futures_util::FutureExt;
use governor::clock::DefaultClock;
use http::HeaderMap;

/// Never refuses within a benchmark run: the decision path, not the refusal, is measured.
fn roomy(max_keys: usize) -> LocalLimiter {
    LocalLimiter::new(
        "bench".into(),
        Duration::from_nanos(1),
        NonZeroU32::MAX,
        max_keys,
        DefaultClock::default(),
    )
}

fn definition(backend: LimitBackend) -> RateLimit {
    RateLimit {
        name: "bench".into(),
        requests: 1_000_000,
        window: Duration::from_secs(1),
        burst: u32::MAX,
        key: LimitKey::ClientIp,
        ipv6_prefix: 64,
        max_keys: 2_000_000,
        headers: false,
        backend,
    }
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("local");

    let one = roomy(1_000_000);
    group.bench_function("check one hot key", |b| {
        b.iter(|| one.check(black_box(&Key::V4(0x7f00_0001))))
    });

    let full = roomy(2_000_000);
    for k in 0..1_000_000u32 {
        full.check(&Key::V4(k));
    }
    let mut next = 0u32;
    group.bench_function("check among 1M tracked keys", |b| {
        b.iter(|| {
            next = next.wrapping_add(7_919) % 1_000_000;
            full.check(black_box(&Key::V4(next)))
        })
    });

    let limiter = Arc::new(Limiter::new(
        &definition(LimitBackend::Local),
        None,
        DefaultClock::default(),
    ));
    let limits = [Arc::clone(&limiter)];
    let headers = HeaderMap::new();
    let v6: IpAddr = "2001:db8:1:2::7".parse().expect("IPv6 literal");
    group.bench_function("route check, IPv6 client (key + decision)", |b| {
        b.iter(|| {
            check(&limits, black_box(v6), &headers, 0)
                .now_or_never()
                .expect("local checks never wait")
        })
    });
    group.finish();

    if let Some(redis) = RedisProcess::start() {
        redis_decision(c, &redis);
    } else {
        println!("redis: skipped, redis-server not installed");
    }
}

fn redis_decision(c: &mut Criterion, redis: &RedisProcess) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let config = Redis {
        url: format!("redis://127.0.0.1:{}", redis.port),
        timeout: Duration::from_secs(1),
        failure: RedisFailure::FailClosed,
    };
    let limiter = runtime.block_on(async {
        let backend = Arc::new(RedisBackend::new(&config).expect("redis client"));
        Arc::new(Limiter::new(
            &definition(LimitBackend::Redis),
            Some(backend),
            DefaultClock::default(),
        ))
    });
    let limits = [limiter];
    let headers = HeaderMap::new();
    let mut n = 0u32;
    c.bench_function("redis/route check over loopback", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n = n.wrapping_add(1);
                    let client = IpAddr::V4(Ipv4Addr::from(n));
                    black_box(check(&limits, client, &headers, 0).await.is_ok());
                }
                start.elapsed()
            })
        })
    });
    if let Some(backend) = limits[0].redis() {
        // A failed call is decided without Redis and would flatter the number.
        println!(
            "redis: calls that failed during the run: {}",
            backend.stats().failures
        );
    }
}

/// A throwaway redis-server without persistence.
struct RedisProcess {
    child: Child,
    port: u16,
}

impl RedisProcess {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let process = Self { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(process)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Tracks 1,000,000 IPv4 and then 1,000,000 IPv6 keys and reports the resident memory they
/// add.
fn memory_report() {
    for (label, make) in [
        ("IPv4", (|k: u32| Key::V4(k)) as fn(u32) -> Key),
        ("IPv6 /64", |k: u32| {
            Key::V6(0x2001_0db8_0000_0000 | u64::from(k), 0)
        }),
    ] {
        let before = rss();
        let limiter = roomy(1_000_000);
        for k in 0..1_000_000u32 {
            limiter.check(&make(k));
        }
        let after = rss();
        println!(
            "memory: {label}: 1,000,000 keys tracked ({} tracked, capacity {}): RSS +{:.1} MiB, {} bytes per key",
            limiter.tracked_keys(),
            limiter.capacity(),
            (after - before) as f64 / (1 << 20) as f64,
            (after - before) / 1_000_000
        );
        drop(limiter);
    }
}

criterion_group!(benches, decision);

fn main() {
    // `cargo test` runs benches in test mode: skip the slow memory report there.
    if std::env::args().any(|a| a == "--bench") {
        memory_report();
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
