//! The work of one reload off the request path, for a large config (1,000 routes over 100
//! upstreams): parsing and validating the file, and compiling the snapshot with every replica
//! found in the registry (the steady state of a reload).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use edgeward::config;
use edgeward::snapshot::Snapshot;
use edgeward::upstream::replica::Registry;

/// 100 upstreams of two replicas, 1,000 routes on 50 hosts, each with header edits, an allow
/// list and timeouts, as a busy production file might have.
fn large_config() -> String {
    let mut text = String::from("[listeners.public]\nlisten = \"127.0.0.1:8080\"\n\n");
    for u in 0..100 {
        text.push_str(&format!(
            "[upstreams.u{u}]\nreplicas = [\"10.0.{}.1:8000\", \"10.0.{}.2:8000\"]\n\n",
            u, u
        ));
    }
    for r in 0..1000 {
        text.push_str(&format!(
            "[[routes]]\nhost = \"h{}.example.com\"\npath = \"/svc{r}/api\"\nupstream = \"u{}\"\n\
             request_headers = {{ set = {{ \"x-env\" = \"prod\" }}, remove = [\"x-debug\"] }}\n\
             response_headers = {{ set = {{ \"x-frame-options\" = \"DENY\" }} }}\n\
             allow = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n\
             timeouts = {{ upstream_header = \"30s\" }}\n\n",
            r % 50,
            r % 100
        ));
    }
    text
}

fn reload(c: &mut Criterion) {
    let text = large_config();
    let path = Path::new("/etc/edgeward/edgeward.toml");
    let no_env = |_: &str| None;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let registry = Registry::default();
    let limiters = edgeward::ratelimit::Registry::default();
    let parsed = Arc::new(config::parse(&text, path, &no_env).expect("valid config"));
    // The first build registers the replicas, as the running gateway has.
    let _first = rt
        .block_on(Snapshot::build(
            Arc::clone(&parsed),
            &registry,
            &limiters,
            1,
        ))
        .expect("snapshot");

    c.bench_function("reload/parse_1000_routes_100_upstreams", |b| {
        b.iter(|| config::parse(black_box(&text), path, &no_env).expect("valid"))
    });
    c.bench_function("reload/build_1000_routes_100_upstreams", |b| {
        b.iter(|| {
            rt.block_on(Snapshot::build(
                Arc::clone(&parsed),
                &registry,
                &limiters,
                2,
            ))
            .expect("snapshot")
        })
    });
    c.bench_function("reload/parse_and_build_1000_routes_100_upstreams", |b| {
        b.iter(|| {
            let config = config::parse(black_box(&text), path, &no_env).expect("valid");
            rt.block_on(Snapshot::build(Arc::new(config), &registry, &limiters, 2))
                .expect("snapshot")
        })
    });
}

criterion_group!(benches, reload);
criterion_main!(benches);
