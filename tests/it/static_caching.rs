//! Static files: cache policy by name and manifest, conditional and range requests, and
//! changes on disk seen without a restart.

use crate::harness::*;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[tokio::test]
async fn hashed_names_are_immutable_and_the_rest_revalidate() {
    let root = write_site(&[
        ("index.html", b"<!doctype html>"),
        ("robots.txt", b"User-agent: *"),
        ("assets/index-DiwrgTda.js", b"vite"),
        ("static/css/main.3f9a8c1b.css", b"webpack"),
        ("assets/app-5XQJ2K7D.js", b"esbuild"),
        ("logo-small.png", b"png"),
        ("release-2024.pdf", b"pdf"),
        ("normalize-override.css", b"css"),
        ("settings-userdata.json", b"{}"),
        ("fonts/inter.woff2", b"font"),
        ("bundle.js", b"listed"),
    ]);
    let extra = r#"immutable_patterns = ["fonts/*.woff2", "bundle.*"]"#;
    let gw = Gateway::start(&static_config("/", root.path(), extra)).await;
    let http = gw.addr("http");
    let hashed = [
        "/assets/index-DiwrgTda.js",
        "/static/css/main.3f9a8c1b.css",
        "/assets/app-5XQJ2K7D.js",
        "/fonts/inter.woff2",
        "/bundle.js",
    ];
    for path in hashed {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some(IMMUTABLE), "{path}");
    }
    let other = [
        "/",
        "/index.html",
        "/robots.txt",
        "/logo-small.png",
        "/release-2024.pdf",
        "/normalize-override.css",
        "/settings-userdata.json",
    ];
    for path in other {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert!(
            r.header("etag").is_some() && r.header("last-modified").is_some(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn both_policies_can_be_overridden_per_route() {
    let root = write_site(&[("a.txt", b"a"), ("app.3f9a8c1b.js", b"b")]);
    let extra = r#"cache_control_hashed = "public, max-age=600", cache_control_other = "no-store""#;
    let gw = Gateway::start(&static_config("/", root.path(), extra)).await;
    let http = gw.addr("http");
    let r = get(http, "/app.3f9a8c1b.js", &[]).await.unwrap();
    assert_eq!(r.header("cache-control"), Some("public, max-age=600"));
    let r = get(http, "/a.txt", &[]).await.unwrap();
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_name_listed_in_a_build_manifest_is_hashed() {
    let vite = br#"{
  "index.html": { "file": "assets/entry.js", "isEntry": true, "css": ["assets/look.css"] },
  "src/unhashed.ts": { "file": "assets/unhashed.js" }
}"#;
    let root = write_site(&[
        ("index.html", b"<!doctype html>"),
        (".vite/manifest.json", vite),
        ("assets/entry.js", b"entry"),
        ("assets/look.css", b"look"),
        ("assets/unhashed.js", b"plain"),
    ]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    for path in ["/assets/entry.js", "/assets/look.css"] {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!(r.header("cache-control"), Some(IMMUTABLE), "{path}");
    }
    let r = get(http, "/assets/unhashed.js", &[]).await.unwrap();
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(
        get(http, "/index.html", &[])
            .await
            .unwrap()
            .header("cache-control"),
        Some("no-cache")
    );
    // The manifest itself lives in a dot-directory and is not served.
    assert_eq!(
        get(http, "/.vite/manifest.json", &[]).await.unwrap().status,
        404
    );

    // A webpack manifest at the root, with a public path prefix.
    let webpack = br#"{ "app.js": "/static/js/app.x1.js", "index.html": "/index.html" }"#;
    let root = write_site(&[
        ("index.html", b"<!doctype html>"),
        (
            "asset-manifest.json",
            br#"{ "files": { "main.js": "/static/js/bundle.js", "index.html": "/index.html" } }"#,
        ),
        ("manifest.json", webpack),
        ("static/js/bundle.js", b"cra"),
        ("static/js/app.x1.js", b"webpack"),
    ]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    for path in ["/static/js/bundle.js", "/static/js/app.x1.js"] {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!(r.header("cache-control"), Some(IMMUTABLE), "{path}");
    }
    assert_eq!(
        get(http, "/index.html", &[])
            .await
            .unwrap()
            .header("cache-control"),
        Some("no-cache")
    );
}

#[tokio::test]
async fn validators_answer_304() {
    let root = write_site(&[
        ("page.html", b"<p>page</p>"),
        ("big.bin", &[7u8; 300 * 1024]),
    ]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    // Both a cached (small) and a streamed (large) file.
    for path in ["/page.html", "/big.bin"] {
        let first = get(http, path, &[]).await.unwrap();
        let etag = first.header("etag").unwrap().to_owned();
        let modified = first.header("last-modified").unwrap().to_owned();

        let r = get(http, path, &[("if-none-match", &etag)]).await.unwrap();
        assert_eq!(r.status, 304, "{path}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        let weak = format!("\"other\", W/{etag}");
        assert_eq!(
            get(http, path, &[("if-none-match", &weak)])
                .await
                .unwrap()
                .status,
            304
        );
        assert_eq!(
            get(http, path, &[("if-none-match", "*")])
                .await
                .unwrap()
                .status,
            304
        );
        let r = get(http, path, &[("if-none-match", "\"stale\"")])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}");

        let r = get(http, path, &[("if-modified-since", &modified)])
            .await
            .unwrap();
        assert_eq!(r.status, 304, "{path}");
        let old = "Mon, 01 Jan 2001 00:00:00 GMT";
        assert_eq!(
            get(http, path, &[("if-modified-since", old)])
                .await
                .unwrap()
                .status,
            200
        );
        // If-None-Match wins over If-Modified-Since.
        let both = [
            ("if-none-match", "\"stale\""),
            ("if-modified-since", modified.as_str()),
        ];
        assert_eq!(get(http, path, &both).await.unwrap().status, 200, "{path}");
    }
}

#[tokio::test]
async fn ranges_answer_206_and_416() {
    let small: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..400 * 1024).map(|i| (i % 251) as u8).collect();
    let root = write_site(&[("small.bin", &small), ("large.bin", &large)]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    for (path, data) in [("/small.bin", &small), ("/large.bin", &large)] {
        let len = data.len();
        let r = get(http, path, &[("range", "bytes=10-19")]).await.unwrap();
        assert_eq!(r.status, 206, "{path}");
        assert_eq!(&r.body[..], &data[10..20]);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 10-19/{len}").as_str())
        );
        assert_eq!(r.header("content-length"), Some("10"));

        let r = get(http, path, &[("range", "bytes=-5")]).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (206, &data[len - 5..]), "{path}");
        let r = get(http, path, &[("range", &format!("bytes={}-", len - 3))])
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (206, &data[len - 3..]), "{path}");

        let r = get(http, path, &[("range", &format!("bytes={len}-"))])
            .await
            .unwrap();
        assert_eq!(r.status, 416, "{path}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );

        // Several ranges: the whole file.
        let r = get(http, path, &[("range", "bytes=0-1,5-6")])
            .await
            .unwrap();
        assert_eq!((r.status, r.body.len()), (200, len), "{path}");

        let etag = get(http, path, &[])
            .await
            .unwrap()
            .header("etag")
            .unwrap()
            .to_owned();
        let r = get(http, path, &[("range", "bytes=0-3"), ("if-range", &etag)])
            .await
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (206, &data[..4]), "{path}");
        let r = get(
            http,
            path,
            &[("range", "bytes=0-3"), ("if-range", "\"old\"")],
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.len()), (200, len), "{path}");
    }
}

#[tokio::test]
async fn a_file_replaced_on_disk_is_served_fresh() {
    let root = write_site(&[("config.json", b"{\"v\":1}"), ("index.html", b"one")]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    assert_eq!(
        get(http, "/config.json", &[]).await.unwrap().text(),
        "{\"v\":1}"
    );
    assert_eq!(get(http, "/", &[]).await.unwrap().text(), "one");
    let old_etag = get(http, "/config.json", &[])
        .await
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned();

    // Same size, written in place; and an atomic rename over the index.
    std::fs::write(root.path().join("config.json"), b"{\"v\":2}").unwrap();
    std::fs::write(root.path().join("index.new"), b"two!").unwrap();
    std::fs::rename(
        root.path().join("index.new"),
        root.path().join("index.html"),
    )
    .unwrap();

    eventually_async("the new config.json", || async {
        get(http, "/config.json", &[]).await.unwrap().text() == "{\"v\":2}"
    })
    .await;
    eventually_async("the new index", || async {
        get(http, "/", &[]).await.unwrap().text() == "two!"
    })
    .await;
    let r = get(http, "/config.json", &[("if-none-match", &old_etag)])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "the old ETag no longer matches");

    // A deleted file stops being served.
    std::fs::remove_file(root.path().join("config.json")).unwrap();
    eventually_async("config.json gone", || async {
        get(http, "/config.json", &[]).await.unwrap().status == 404
    })
    .await;
}
