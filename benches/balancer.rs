//! `pick` for each policy over 3 and 100 eligible replicas (the pure selection; the snapshot's
//! `Upstream::pick` adds one atomic load per candidate it looks at).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgeward::upstream::balancer::{Balance, Pick, View, hash_bytes, interleave, pick};

fn views(n: usize) -> Vec<View> {
    (0..n)
        .map(|i| View {
            weight: 1.0,
            ramp: 1.0,
            in_flight: i % 7,
            latency: 1_000.0 + (i * 37 % 500) as f64,
            id: hash_bytes(format!("10.0.{}.{}:8000", i / 256, i % 256).as_bytes()),
        })
        .collect()
}

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for n in [3usize, 100] {
        let all = views(n);
        let schedule = interleave(&vec![1; n]);
        for (name, balance) in [
            ("p2c_ewma", Balance::P2cEwma),
            ("round_robin", Balance::RoundRobin),
            ("least_conn", Balance::LeastConn),
            ("hash", Balance::Hash),
        ] {
            let mut rng = fastrand::Rng::with_seed(7);
            let mut turn = 0usize;
            group.bench_with_input(BenchmarkId::new(name, n), &all, |b, all| {
                b.iter(|| {
                    turn = turn.wrapping_add(1);
                    let plan = Pick {
                        balance,
                        key: hash_bytes(&turn.to_le_bytes()),
                        turn,
                        schedule: &schedule,
                    };
                    black_box(pick(all.len(), |i| all.get(i).copied(), &plan, &mut rng))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench_pick
}
criterion_main!(benches);
