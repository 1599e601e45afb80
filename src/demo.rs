//! `edgeward demo`: a small built-in app to put behind the gateway on the first run, so a
//! newcomer sees what edgeward does with nothing else installed.
//!
//! It serves a JSON echo of what the app received (the forwarding headers are the point), a
//! server-sent-events ticker, a WebSocket echo, and the `/health/live` / `/health/ready`
//! probes an app behind edgeward is expected to have. The shipped config mounts it under
//! `/api` with the prefix stripped, beside a static front end at `/`; its own page builds its
//! links from `X-Forwarded-Prefix`, as an app behind a stripped prefix must.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

type DemoBody = BoxBody<Bytes, Infallible>;

/// Serves the demo app on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(|req| async move { Ok::<_, Infallible>(route(req).await) });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// Binds the demo app's address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn route(req: Request<Incoming>) -> Response<DemoBody> {
    match req.uri().path() {
        "/health/live" | "/health/ready" => text(StatusCode::OK, "ok\n"),
        "/events" => events(),
        "/ws" => websocket(req),
        "/" => page(req.headers().get("x-forwarded-prefix")),
        _ => echo(req).await,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<DemoBody> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What the app received: method, path, and every header, as JSON.
async fn echo(req: Request<Incoming>) -> Response<DemoBody> {
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": body_len,
    });
    let mut resp = Response::new(Full::new(Bytes::from(format!("{json:#}\n"))).boxed());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// One event per second, ten in all.
fn events() -> Response<DemoBody> {
    let ticks = futures_util::stream::unfold(0u32, |n| async move {
        if n >= 10 {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let event = format!("id: {n}\ndata: tick {n}\n\n");
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), n + 1))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(ticks)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Accepts a WebSocket upgrade and echoes text and binary messages.
fn websocket(mut req: Request<Incoming>) -> Response<DemoBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::text(format!("echo: {t}")),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(Full::new(Bytes::new()).boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

/// A landing page that links the rest, below the prefix the gateway stripped (if any).
fn page(prefix: Option<&HeaderValue>) -> Response<DemoBody> {
    // Only a plain path prefix is used; anything else links from the root.
    let prefix = prefix
        .and_then(|v| v.to_str().ok())
        .filter(|p| {
            p.starts_with('/')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
        })
        .map_or("", |p| p.trim_end_matches('/'));
    let html = PAGE.replace("{prefix}", prefix);
    let mut resp = Response::new(Full::new(Bytes::from(html)).boxed());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><meta charset="utf-8"><title>edgeward demo app</title>
<h1>edgeward demo app</h1>
<p>This page comes from the demo app behind the gateway, mounted at
<code>{prefix}/</code>.</p>
<ul>
<li><a href="{prefix}/echo">{prefix}/echo</a>: what the app received, with the X-Forwarded-* headers
edgeward set (try sending your own <code>X-Forwarded-For</code>: it is replaced)</li>
<li><a href="{prefix}/events">{prefix}/events</a>: a server-sent-events ticker, streamed without
buffering</li>
<li><code>{prefix}/ws</code>: a WebSocket echo (<code>websocat ws://localhost:8080{prefix}/ws</code>)</li>
<li><a href="{prefix}/health/ready">{prefix}/health/ready</a>: the app's readiness probe</li>
<li><a href="/">the static front end</a>, served by edgeward itself</li>
</ul>
"#;
