//! In-process tests of a static site: the cache, its invalidation, and the revalidation that
//! covers for missed file-system events.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;

use super::StaticSite;
use crate::body::ResponseBody;
use crate::config::StaticConfig;

fn config(root: &Path) -> StaticConfig {
    StaticConfig {
        root: root.to_path_buf(),
        index: "index.html".to_owned(),
        spa_fallback: false,
        serve_hidden: false,
        follow_symlinks_outside: false,
        immutable_patterns: Vec::new(),
        cache_control_hashed: HeaderValue::from_static("public, max-age=31536000, immutable"),
        cache_control_other: HeaderValue::from_static("no-cache"),
        compress: true,
    }
}

async fn get(site: &StaticSite, path: &str) -> Response<Bytes> {
    let (req, ()) = Request::get(path).body(()).unwrap().into_parts();
    let resp = site.serve(&req, path, "/").await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = match body {
        ResponseBody::Full(Some(bytes)) => bytes,
        other => other.collect().await.unwrap().to_bytes(),
    };
    Response::from_parts(parts, body)
}

#[tokio::test]
async fn small_files_are_cached_with_their_compressed_copies() {
    let root = tempfile::tempdir().unwrap();
    let css = "a { color: red; }\n".repeat(200);
    std::fs::write(root.path().join("a.css"), &css).unwrap();
    std::fs::write(root.path().join("b.txt"), "b").unwrap();
    let site = StaticSite::open_with(&config(root.path()), false).unwrap();

    let first = get(&site, "/a.css").await;
    let second = get(&site, "/a.css").await;
    assert_eq!(first.body(), css.as_bytes());
    // The same buffer: served from memory, not read again.
    assert_eq!(first.body().as_ptr(), second.body().as_ptr());
    let entry = site.site.cache.get("a.css").expect("cached");
    assert!(entry.vary && entry.encoded.iter().all(Option::is_some));
    let tiny = {
        get(&site, "/b.txt").await;
        site.site.cache.get("b.txt").expect("cached")
    };
    assert!(!tiny.vary, "too small to compress");
}

#[tokio::test]
async fn invalidation_drops_the_file_its_sidecars_and_what_is_below_a_directory() {
    let root = tempfile::tempdir().unwrap();
    for path in [
        "app.js",
        "app.js2",
        "docs/index.html",
        "docs/a.html",
        "docsx/a.html",
    ] {
        let full = root.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, path).unwrap();
    }
    let site = StaticSite::open_with(&config(root.path()), false).unwrap();
    let cache = &site.site.cache;
    for path in [
        "/app.js",
        "/app.js2",
        "/docs/",
        "/docs/a.html",
        "/docsx/a.html",
    ] {
        get(&site, path).await;
    }
    let cached = |key: &str| cache.get(key).is_some();
    assert!(
        ["app.js", "app.js2", "docs/", "docs/a.html", "docsx/a.html"]
            .iter()
            .all(|k| cached(k))
    );

    cache.invalidate("app.js.br");
    assert!(!cached("app.js") && cached("app.js2"));
    cache.invalidate("docs");
    assert!(!cached("docs/") && !cached("docs/a.html") && cached("docsx/a.html"));
    cache.clear();
    assert!(!cached("docsx/a.html") && cache.has_room(super::cache::MAX_CACHE_BYTES as u64));
}

/// Without a watcher, a changed file is still noticed: each entry is checked against the
/// disk at most once a second.
#[tokio::test]
async fn a_change_without_an_event_is_seen_by_revalidation() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("v.json");
    std::fs::write(&file, "1").unwrap();
    let site = StaticSite::open_with(&config(root.path()), false).unwrap();
    assert_eq!(get(&site, "/v.json").await.body(), "1");
    let entry = site.site.cache.get("v.json").unwrap();
    assert!(site.site.unchanged(&entry));

    std::fs::write(&file, "2").unwrap();
    assert!(!site.site.unchanged(&entry), "same size, new mtime");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&site, "/v.json").await.body() != "2" {
        assert!(Instant::now() < deadline, "the change was never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new sidecar is a change too.
    let entry = site.site.cache.get("v.json").unwrap();
    std::fs::write(root.path().join("v.json.gz"), "gz").unwrap();
    assert!(!site.site.unchanged(&entry));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_misses_for_one_file_loads_it_once() {
    let root = tempfile::tempdir().unwrap();
    let js = "export const answer = 42;\n".repeat(400);
    std::fs::write(root.path().join("app.js"), &js).unwrap();
    std::fs::write(root.path().join("big.bin"), vec![7u8; 4 << 20]).unwrap();
    let site = std::sync::Arc::new(StaticSite::open_with(&config(root.path()), false).unwrap());

    let burst = |path: &'static str| {
        (0..32)
            .map(|_| {
                let site = std::sync::Arc::clone(&site);
                tokio::spawn(async move { get(&site, path).await })
            })
            .collect::<Vec<_>>()
    };
    for request in burst("/app.js") {
        assert_eq!(request.await.unwrap().body(), js.as_bytes());
    }
    assert_eq!(
        site.loads(),
        1,
        "one read and compression for the whole burst"
    );

    // Files too large for the cache are streamed per request: every request still gets one.
    let before = site.loads();
    for request in burst("/big.bin") {
        assert_eq!(request.await.unwrap().body().len(), 4 << 20);
    }
    assert!(site.loads() - before >= 32);
}

#[tokio::test]
async fn a_load_cancelled_alone_leaves_nothing_in_flight() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("app.js"), "x".repeat(4096)).unwrap();
    let site = StaticSite::open_with(&config(root.path()), false).unwrap();
    // Polled once: the load is started (on a blocking thread) and the request dropped.
    let (req, ()) = Request::get("/app.js").body(()).unwrap().into_parts();
    let mut serving = Box::pin(site.serve(&req, "/app.js", "/"));
    assert!(futures_util::poll!(serving.as_mut()).is_pending());
    assert_eq!(site.site.loading.lock().unwrap().len(), 1);
    drop(serving);
    assert!(site.site.loading.lock().unwrap().is_empty());
    // The next request loads again and is served.
    assert_eq!(get(&site, "/app.js").await.body().len(), 4096);
    assert!(site.site.loading.lock().unwrap().is_empty());
}
