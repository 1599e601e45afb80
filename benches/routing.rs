//! Router lookup and request-target normalisation: the pure per-request work before a
//! request reaches an action.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edgeward::config::HostMatch;
use edgeward::normalize::{effective_authority, normalize_path};
use edgeward::router::Router;
use http::{HeaderMap, HeaderValue, Uri, Version};

fn router(routes: usize) -> Router<usize> {
    let mut r = Router::default();
    for i in 0..routes {
        let host = HostMatch::Exact(format!("app{}.example.com", i % 8));
        r.insert(Some(&host), &format!("/svc{i}/api"), i);
    }
    r.insert(
        Some(&HostMatch::Wildcard(".example.com".into())),
        "/",
        usize::MAX,
    );
    r.insert(None, "/", usize::MAX - 1);
    r
}

fn routing(c: &mut Criterion) {
    for n in [16, 1000] {
        let r = router(n);
        let last = n - 1;
        let host = format!("app{}.example.com", last % 8);
        let path = format!("/svc{last}/api/users/42");
        c.bench_function(&format!("router/lookup_{n}_routes_hit"), |b| {
            b.iter(|| r.lookup(black_box(&host), black_box(&path)))
        });
        c.bench_function(&format!("router/lookup_{n}_routes_fallthrough"), |b| {
            b.iter(|| r.lookup(black_box("zzz.example.com"), black_box("/static/app.js")))
        });
    }
}

fn normalising(c: &mut Criterion) {
    c.bench_function("normalize/path_already_normal", |b| {
        b.iter(|| normalize_path(black_box("/api/v1/users/42/orders")))
    });
    c.bench_function("normalize/path_with_escapes_and_dots", |b| {
        b.iter(|| normalize_path(black_box("/api/v1/./users/%34%32/../orders")))
    });
    let uri: Uri = "/api/v1/users".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("App.Example.com:8443"));
    c.bench_function("normalize/authority_from_host", |b| {
        b.iter(|| effective_authority(Version::HTTP_11, black_box(&uri), black_box(&headers)))
    });
}

criterion_group!(benches, routing, normalising);
criterion_main!(benches);
