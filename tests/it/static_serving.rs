//! Static files: serving, headers, methods, directories, hidden names, traversal attempts,
//! symlinks and the SPA fallback.

use std::os::unix::fs::symlink;

use crate::harness::*;

const INDEX: &[u8] = b"<!doctype html><title>site</title>";

fn site() -> tempfile::TempDir {
    let dir = write_site(&[
        ("index.html", INDEX),
        ("hello.txt", b"hello"),
        ("app.js", b"console.log(1)"),
        ("logo.png", b"\x89PNG fake"),
        ("docs/index.html", b"docs index"),
        ("docs/page.html", b"docs page"),
        ("empty/.keep", b""),
        (".env", b"SECRET=1"),
        (".git/config", b"[core]"),
        ("assets/.hidden.js", b"hidden"),
        (".well-known/security.txt", b"Contact: x"),
        ("with space.txt", b"spaced"),
        ("caf\u{e9}.txt", b"accent"),
    ]);
    symlink("hello.txt", dir.path().join("inside-link.txt")).unwrap();
    symlink("/etc", dir.path().join("escape")).unwrap();
    symlink("/etc/passwd", dir.path().join("passwd-link")).unwrap();
    symlink(
        "../../../../../../etc/passwd",
        dir.path().join("docs/relative-escape"),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn files_are_served_with_type_nosniff_and_ranges_advertised() {
    let root = site();
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");

    let r = get(http, "/hello.txt", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert!(r.header("etag").is_some_and(|e| e.starts_with('"')));
    assert!(r.header("last-modified").is_some());

    let js = get(http, "/app.js", &[]).await.unwrap();
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert!(
        js.header("content-type")
            .unwrap()
            .ends_with("charset=utf-8")
    );
    let png = get(http, "/logo.png", &[]).await.unwrap();
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert_eq!(
        get(http, "/with%20space.txt", &[]).await.unwrap().text(),
        "spaced"
    );
    assert_eq!(
        get(http, "/caf%C3%A9.txt", &[]).await.unwrap().text(),
        "accent"
    );
}

#[tokio::test]
async fn head_has_headers_and_no_body_and_other_methods_get_405() {
    let root = site();
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");

    let head = request(http, "HEAD", "/hello.txt", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("5"));
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(head.header("etag").is_some());

    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(http, method, "/hello.txt", &[]).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[tokio::test]
async fn directories_serve_their_index_and_are_never_listed() {
    let root = site();
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");

    let r = get(http, "/", &[]).await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, INDEX));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(get(http, "/docs/", &[]).await.unwrap().text(), "docs index");
    let r = get(http, "/docs?x=1", &[]).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    assert_eq!(get(http, "/empty/", &[]).await.unwrap().status, 404);
    assert_eq!(get(http, "/missing.txt", &[]).await.unwrap().status, 404);
    assert_eq!(get(http, "/hello.txt/", &[]).await.unwrap().status, 404);
}

#[tokio::test]
async fn dot_files_are_hidden_except_well_known() {
    let root = site();
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    for path in [
        "/.env",
        "/.git/config",
        "/.git/",
        "/assets/.hidden.js",
        "/%2Eenv",
    ] {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains("SECRET"), "{path}");
    }
    let r = get(http, "/.well-known/security.txt", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "Contact: x"));

    let shown = Gateway::start(&static_config("/", root.path(), "serve_hidden = true")).await;
    assert_eq!(
        get(shown.addr("http"), "/.env", &[]).await.unwrap().text(),
        "SECRET=1"
    );
}

/// Requests that try to leave the root, raw and percent-encoded: each is refused with 400
/// or 404 and nothing from outside the root comes back.
#[tokio::test]
async fn traversal_attempts_never_leave_the_root() {
    let root = site();
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    let attempts: &[(&str, u16)] = &[
        ("/../etc/passwd", 400),
        ("/docs/../../etc/passwd", 400),
        ("/%2e%2e/etc/passwd", 400),
        ("/%2E%2E/%2e%2e/etc/passwd", 400),
        ("/.%2e/etc/passwd", 400),
        ("/..%2fetc%2fpasswd", 400),
        ("/docs/..%2F..%2Fetc/passwd", 400),
        ("/%2Fetc%2Fpasswd", 400),
        ("/..%5c..%5cetc%5cpasswd", 400),
        ("/docs%5c..%5c..%5cetc%5cpasswd", 400),
        ("/hello.txt%00.png", 400),
        ("/%00", 400),
        ("/escape/passwd", 404),
        ("/escape/", 404),
        ("/passwd-link", 404),
        ("/docs/relative-escape", 404),
    ];
    for (path, status) in attempts {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!(r.status, *status, "{path}");
        assert!(!r.text().contains("root:"), "{path} leaked a file");
    }
    // Raw bytes the client library would refuse to send.
    for target in ["/..\\..\\etc\\passwd", "/docs\\..\\..\\etc\\passwd"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let out = raw(http, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{target}: {out}");
        assert!(!out.contains("root:"), "{target}");
    }
    // A symlink that stays inside the root is fine.
    assert_eq!(
        get(http, "/inside-link.txt", &[]).await.unwrap().text(),
        "hello"
    );
}

#[tokio::test]
async fn symlinks_outside_are_followed_only_when_allowed() {
    let outside = write_site(&[("shared.txt", b"from outside")]);
    let root = write_site(&[("index.html", INDEX)]);
    symlink(outside.path(), root.path().join("shared")).unwrap();

    let strict = Gateway::start(&static_config("/", root.path(), "")).await;
    assert_eq!(
        get(strict.addr("http"), "/shared/shared.txt", &[])
            .await
            .unwrap()
            .status,
        404
    );

    let allowed = static_config("/", root.path(), "follow_symlinks_outside = true");
    let gw = Gateway::start(&allowed).await;
    let r = get(gw.addr("http"), "/shared/shared.txt", &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "from outside"));
}

#[tokio::test]
async fn spa_fallback_serves_the_index_for_paths_without_an_extension() {
    let root = site();
    let gw = Gateway::start(&static_config("/", root.path(), "spa_fallback = true")).await;
    let http = gw.addr("http");
    for path in ["/settings", "/users/42/profile", "/deep/link/"] {
        let r = get(http, path, &[]).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, INDEX), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
    }
    for path in ["/missing.js", "/assets/app-DiwrgTda.js", "/img/x.png"] {
        assert_eq!(get(http, path, &[]).await.unwrap().status, 404, "{path}");
    }
    assert_eq!(get(http, "/hello.txt", &[]).await.unwrap().text(), "hello");
    assert_eq!(get(http, "/.env", &[]).await.unwrap().status, 404);

    let plain = Gateway::start(&static_config("/", root.path(), "")).await;
    assert_eq!(
        get(plain.addr("http"), "/settings", &[])
            .await
            .unwrap()
            .status,
        404
    );
}

#[tokio::test]
async fn a_prefixed_route_serves_the_path_below_its_prefix() {
    let root = site();
    let up = Upstream::start(|_| async { http::Response::new(full("app")) }).await;
    let template = format!(
        "{}\n[upstreams.app]\nreplicas = [\"{}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n",
        static_config("/build", root.path(), "access_log = false"),
        up.addr
    )
    // `access_log` belongs to the route, not the static table.
    .replace(", access_log = false }", " }\naccess_log = false");
    let gw = Gateway::start(&template).await;
    let http = gw.addr("http");
    assert_eq!(
        get(http, "/build/hello.txt", &[]).await.unwrap().text(),
        "hello"
    );
    assert_eq!(get(http, "/build/", &[]).await.unwrap().body, INDEX);
    assert_eq!(
        get(http, "/build/docs/page.html", &[])
            .await
            .unwrap()
            .text(),
        "docs page"
    );
    assert_eq!(get(http, "/hello.txt", &[]).await.unwrap().text(), "app");
    assert_eq!(up.seen().len(), 1, "static requests never reach the app");
    // The static route opted out of the access log; the proxied request is logged.
    let start = std::time::Instant::now();
    while !gw.log().contains("\"/hello.txt\"") {
        assert!(
            start.elapsed() < DEADLINE,
            "no access record:\n{}",
            gw.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !gw.log().contains("\"/build/hello.txt\""),
        "static route was logged"
    );
}

#[tokio::test]
async fn files_are_served_over_http2() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf(certs.path(), "site", &["site.test"]);
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 253) as u8).collect();
    let root = write_site(&[("hello.txt", b"hello"), ("big.bin", &big)]);
    let template = format!(
        "[listeners.secure]\nlisten = \"127.0.0.1:{{https}}\"\ntls = true\n\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\n[[routes]]\npath = \"/\"\nstatic = {{ root = \"{}\" }}\n",
        cert.display(),
        key.display(),
        root.path().display()
    );
    let gw = Gateway::start(&template).await;
    let mut h2 = h2_client(&pki, gw.addr("https"), "site.test").await;
    for (method, path, body) in [
        ("GET", "/hello.txt", &b"hello"[..]),
        ("HEAD", "/hello.txt", &b""[..]),
        ("GET", "/big.bin", &big[..]),
        ("HEAD", "/big.bin", &b""[..]),
    ] {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("https://site.test{path}"))
            .body(empty())
            .unwrap();
        let r = collect(h2.send_request(req).await.unwrap()).await.unwrap();
        assert_eq!(r.status, 200, "{method} {path}");
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(&r.body[..], body, "{method} {path}");
        let len = if path == "/big.bin" { big.len() } else { 5 };
        assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    }
}
