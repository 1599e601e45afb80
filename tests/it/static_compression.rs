//! Static files: precompressed sidecars, on-the-fly compression, and large files streamed
//! with flat memory.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::harness::*;

/// Text that compresses well, `n` bytes.
fn text(n: usize) -> Vec<u8> {
    b"body { color: #333; margin: 0 auto; }\n"
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn set_mtime(path: &std::path::Path, time: SystemTime) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(time).unwrap();
}

#[tokio::test]
async fn sidecars_are_chosen_by_accept_encoding() {
    let css = text(4000);
    let root = write_site(&[
        ("app.css", &css),
        ("app.css.br", b"BROTLI-SIDECAR"),
        ("app.css.gz", &gzip(&css)),
    ]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");

    let br = get(
        http,
        "/app.css",
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await
    .unwrap();
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(&br.body[..], b"BROTLI-SIDECAR");
    assert_eq!(br.header("vary"), Some("accept-encoding"));
    assert_eq!(br.header("content-type"), Some("text/css; charset=utf-8"));

    let gz = get(http, "/app.css", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), css);

    let weighted = [("accept-encoding", "br;q=0.5, gzip;q=0.9")];
    let r = get(http, "/app.css", &weighted).await.unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = get(http, "/app.css", &[("accept-encoding", "br;q=0, gzip;q=0")])
        .await
        .unwrap();
    assert_eq!(
        (r.header("content-encoding"), &r.body[..]),
        (None, &css[..])
    );

    let plain = get(http, "/app.css", &[]).await.unwrap();
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, css);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));

    // Each encoding has its own ETag, and a 304 only for its own.
    let tags = [br.header("etag"), gz.header("etag"), plain.header("etag")];
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let br_tag = tags[0].unwrap();
    let again = [("accept-encoding", "br"), ("if-none-match", br_tag)];
    assert_eq!(get(http, "/app.css", &again).await.unwrap().status, 304);
    let other = [("accept-encoding", "gzip"), ("if-none-match", br_tag)];
    assert_eq!(get(http, "/app.css", &other).await.unwrap().status, 200);

    // A range is served from the original, never from a sidecar.
    let ranged = [("accept-encoding", "br"), ("range", "bytes=0-3")];
    let r = get(http, "/app.css", &ranged).await.unwrap();
    assert_eq!((r.status, r.header("content-encoding")), (206, None));
    assert_eq!(&r.body[..], &css[..4]);
}

#[tokio::test]
async fn a_stale_sidecar_is_ignored() {
    let js = text(3000);
    let root = write_site(&[("app.js", &js), ("app.js.br", b"OLD-BUILD")]);
    set_mtime(
        &root.path().join("app.js.br"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    let big = text(600 * 1024);
    std::fs::write(root.path().join("big.js"), &big).unwrap();
    std::fs::write(root.path().join("big.js.gz"), b"OLD-BUILD").unwrap();
    set_mtime(
        &root.path().join("big.js.gz"),
        SystemTime::now() - Duration::from_secs(3600),
    );
    let gw = Gateway::start(&static_config("/", root.path(), "compress = false")).await;
    let http = gw.addr("http");
    let r = get(http, "/app.js", &[("accept-encoding", "br, gzip")])
        .await
        .unwrap();
    assert_eq!((r.header("content-encoding"), &r.body[..]), (None, &js[..]));
    let r = get(http, "/big.js", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.body == big, "stale big.js.gz was served");
}

#[tokio::test]
async fn compressible_types_are_compressed_on_the_fly() {
    let css = text(8000);
    let big = text(700 * 1024);
    let root = write_site(&[
        ("style.css", &css),
        ("tiny.css", b"a{}"),
        ("photo.png", &text(8000)),
        ("big.js", &big),
    ]);
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    let both = [("accept-encoding", "gzip, br")];

    let r = get(http, "/style.css", &both).await.unwrap();
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(r.body.len() < css.len() / 4);
    assert_eq!(unbrotli(&r.body), css);
    let r = get(http, "/style.css", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&r.body), css);

    // Below 1 KiB, already-compressed types, and ranges stay as they are.
    let r = get(http, "/tiny.css", &both).await.unwrap();
    assert_eq!(
        (r.header("content-encoding"), &r.body[..]),
        (None, &b"a{}"[..])
    );
    assert_eq!(r.header("vary"), None);
    let r = get(http, "/photo.png", &both).await.unwrap();
    assert_eq!(r.header("content-encoding"), None);
    let ranged = [("accept-encoding", "gzip"), ("range", "bytes=0-9")];
    let r = get(http, "/style.css", &ranged).await.unwrap();
    assert_eq!((r.status, r.header("content-encoding")), (206, None));

    // A large file is compressed while it streams.
    let r = get(http, "/big.js", &[("accept-encoding", "gzip")])
        .await
        .unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-length"), None);
    assert!(gunzip(&r.body) == big);
    let r = get(http, "/big.js", &[("accept-encoding", "br")])
        .await
        .unwrap();
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert!(unbrotli(&r.body) == big);

    let off = Gateway::start(&static_config("/", root.path(), "compress = false")).await;
    let r = get(off.addr("http"), "/style.css", &both).await.unwrap();
    assert_eq!(r.header("content-encoding"), None);
}

/// Peak memory of the gateway grows by far less than the file while 100 MiB stream out.
#[tokio::test]
async fn a_large_file_streams_with_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let root = write_site(&[("small.txt", b"warm up")]);
    let file = std::fs::File::create(root.path().join("movie.mp4")).unwrap();
    file.set_len(SIZE).unwrap();
    let gw = Gateway::start(&static_config("/", root.path(), "")).await;
    let http = gw.addr("http");
    assert_eq!(get(http, "/small.txt", &[]).await.unwrap().status, 200);
    let before = gw.vm_hwm_kib();

    let stream = tokio::net::TcpStream::connect(http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/movie.mp4")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"].to_str().unwrap(),
        SIZE.to_string()
    );
    let mut body = resp.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
        }
    }
    assert_eq!(received, SIZE);
    let growth = gw.vm_hwm_kib().saturating_sub(before);
    assert!(growth < 32 * 1024, "peak memory grew by {growth} KiB");
}

#[tokio::test]
async fn proxied_responses_are_compressed_only_when_the_route_asks() {
    let json = format!("[{}0]", "{\"id\": 1, \"name\": \"edgeward\"}, ".repeat(100));
    let body = json.clone();
    let up = Upstream::start(move |seen| {
        let body = body.clone();
        async move {
            let (ct, extra, payload): (&str, Option<(&str, &str)>, String) = match seen.uri.path() {
                "/json" => ("application/json", Some(("etag", "\"v1\"")), body),
                "/small" => ("application/json", None, "{}".to_owned()),
                "/events" => ("text/event-stream", None, "data: x\n\n".repeat(200)),
                "/keep" => ("text/plain", Some(("cache-control", "no-transform")), body),
                "/png" => ("image/png", None, body),
                _ => ("text/plain", Some(("content-encoding", "gzip")), body),
            };
            let mut resp = http::Response::new(full(payload));
            resp.headers_mut()
                .insert("content-type", ct.parse().unwrap());
            if let Some((k, v)) = extra {
                resp.headers_mut().insert(k, v.parse().unwrap());
            }
            resp
        }
    })
    .await;
    let gw = Gateway::start(&simple_config(up.addr, "compress = true")).await;
    let http = gw.addr("http");
    let gz = [("accept-encoding", "gzip")];

    let r = get(http, "/json", &gz).await.unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("vary"), Some("accept-encoding"));
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert_eq!(gunzip(&r.body), json.as_bytes());
    let r = get(http, "/json", &[("accept-encoding", "br")])
        .await
        .unwrap();
    assert_eq!(unbrotli(&r.body), json.as_bytes());
    let r = get(http, "/json", &[]).await.unwrap();
    assert_eq!(
        (r.header("content-encoding"), r.text()),
        (None, json.clone())
    );
    let r = get(
        http,
        "/json",
        &[("accept-encoding", "gzip"), ("range", "bytes=0-1")],
    )
    .await
    .unwrap();
    assert_eq!(r.header("content-encoding"), None);

    for path in ["/small", "/events", "/keep", "/png"] {
        let r = get(http, path, &gz).await.unwrap();
        assert_eq!(r.header("content-encoding"), None, "{path}");
    }
    let r = get(http, "/encoded", &gz).await.unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.text(),
        json,
        "an encoded body is passed through untouched"
    );

    let off = Gateway::start(&simple_config(up.addr, "")).await;
    let r = get(off.addr("http"), "/json", &gz).await.unwrap();
    assert_eq!((r.header("content-encoding"), r.text()), (None, json));
}
