//! Admin and probe listeners: own accept loops and small connection budgets, never routed,
//! limited or redirected. Both serve `/health/live` and `/health/ready`; the admin listener
//! also guards against DNS rebinding (`Host` check), requires the token when set, and rejects
//! cross-site `Origin` on state-changing requests, and serves `GET /admin/upstreams`: every
//! upstream and replica with its health, load and last probe results, as JSON; `GET /metrics`
//! (also on the probe listener with `probe.metrics = true`); and the status page, `GET /`,
//! with its data at `GET /admin/status`.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, ORIGIN,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::body::ResponseBody;
use crate::metrics::Metrics;
use crate::reload::{Reloader, Trigger, Verdict};
use crate::service::Shared;
use crate::snapshot::Snapshot;
use crate::status::{self, StatusPage};

/// The gateway's own readiness: a latch released when config is loaded, certificates are
/// available, every listener is bound and every upstream's first probe round has run (or
/// `startup.probe_timeout` passed), and closed again from the first shutdown signal.
#[derive(Default)]
pub struct Readiness {
    config: AtomicBool,
    certificates: AtomicBool,
    listeners: AtomicBool,
    probes: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Config loaded and compiled.
    pub fn config_loaded(&self) {
        self.config.store(true, Ordering::Release);
    }
    /// Certificates available for every TLS listener.
    pub fn certificates_ready(&self) {
        self.certificates.store(true, Ordering::Release);
    }
    /// Every data-plane listener bound.
    pub fn listeners_bound(&self) {
        self.listeners.store(true, Ordering::Release);
    }
    /// Every upstream's first probe round completed, or the wait for it timed out.
    pub fn probes_done(&self) {
        self.probes.store(true, Ordering::Release);
    }
    /// Shutdown began: report not ready from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }
    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.config.load(Ordering::Acquire)
            && self.certificates.load(Ordering::Acquire)
            && self.listeners.load(Ordering::Acquire)
            && self.probes.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
    }
}

/// Which surface a listener serves.
#[derive(Clone)]
pub enum Surface {
    /// The admin listener with its access rules.
    Admin {
        /// Extra accepted `Host` values (lower-case, no port).
        hosts: Arc<[String]>,
        /// Required bearer token.
        token: Option<Arc<str>>,
    },
    /// The probe listener: health endpoints, and `/metrics` when `metrics` is set.
    Probe {
        /// `probe.metrics`.
        metrics: bool,
    },
}

/// State the admin handlers read.
pub struct AdminState {
    /// The readiness latch.
    pub readiness: Arc<Readiness>,
    /// The data plane's state, once it exists (the admin listener starts first).
    pub shared: OnceLock<Arc<Shared>>,
    /// Set once the first snapshot is serving; `/admin/reload` answers 503 until then.
    pub reloader: std::sync::OnceLock<Arc<Reloader>>,
    /// The metrics `/metrics` encodes.
    pub metrics: Arc<Metrics>,
    /// The status page, assembled (and its policy hashed) at startup.
    pub page: StatusPage,
}

/// Serves `surface` on `listener` with at most `max_connections` at once, until `stop`.
pub async fn serve(
    listener: TcpListener,
    surface: Surface,
    state: Arc<AdminState>,
    max_connections: usize,
    stop: CancellationToken,
) {
    let budget = Arc::new(Semaphore::new(max_connections));
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends persist: back off instead of spinning on them.
                    tracing::warn!("admin accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over budget: close rather than queue, so probes fail fast and visibly.
        let Ok(permit) = Arc::clone(&budget).try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let surface = surface.clone();
        let state = Arc::clone(&state);
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let surface = surface.clone();
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&surface, &state, &req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
}

async fn handle(
    surface: &Surface,
    state: &AdminState,
    req: &Request<Incoming>,
) -> Response<ResponseBody> {
    let is_admin = matches!(surface, Surface::Admin { .. });
    let serves_metrics = is_admin || matches!(surface, Surface::Probe { metrics: true });
    if let Surface::Admin { hosts, token } = surface {
        if !host_allowed(req, hosts) {
            return text(StatusCode::MISDIRECTED_REQUEST, "unknown host\n");
        }
        if let Some(token) = token {
            if !bearer_matches(req, token) {
                let mut resp = text(StatusCode::UNAUTHORIZED, "missing or wrong token\n");
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
                return resp;
            }
        }
        if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(req) {
            return text(StatusCode::FORBIDDEN, "cross-site request refused\n");
        }
    }
    let admin = matches!(surface, Surface::Admin { .. });
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/health/live") => text(StatusCode::OK, "live\n"),
        (&Method::GET | &Method::HEAD, "/admin/reload") if admin => reload_report(state),
        (&Method::POST, "/admin/reload") if admin => reload_now(state).await,
        (_, "/admin/reload") if admin => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        (&Method::GET | &Method::HEAD, "/health/ready") => {
            if state.readiness.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET | &Method::HEAD, "/admin/upstreams") if is_admin => {
            let body = state
                .shared
                .get()
                .map(|shared| upstreams_json(&shared.snapshot.load()))
                .unwrap_or_else(|| "{\"upstreams\":[]}".to_owned());
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = ResponseBody::Full(Some(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        (&Method::GET | &Method::HEAD, "/admin/acme") if is_admin => {
            let body = state
                .shared
                .get()
                .and_then(|shared| shared.acme.as_ref().map(|acme| acme.status_json()))
                .unwrap_or_else(|| "{\"certificates\":[]}".to_owned());
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = ResponseBody::Full(Some(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        (&Method::GET | &Method::HEAD, "/metrics") if serves_metrics => {
            let accept = req.headers().get(http::header::ACCEPT);
            let (body, content_type) = state.metrics.encode_for(accept.map(|a| a.as_bytes()));
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = ResponseBody::Full(Some(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        (&Method::GET | &Method::HEAD, "/admin/status") if is_admin => {
            let shared = state.shared.get().map(|s| &**s);
            let status = status::status(shared, &state.metrics, state.readiness.is_ready());
            let body = serde_json::to_vec(&status).unwrap_or_default();
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = ResponseBody::Full(Some(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        (&Method::GET | &Method::HEAD, "/") if is_admin => status_page(&state.page),
        (_, "/health/live" | "/health/ready") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The status page with its policy: only its own hashed style and script, fetches only to
/// this listener, never framed.
fn status_page(page: &StatusPage) -> Response<ResponseBody> {
    let mut resp = text(StatusCode::OK, "");
    *resp.body_mut() = ResponseBody::Full(Some(page.html.clone()));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, page.csp.clone());
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// Every upstream and replica of `snapshot` with its health, load and last probe results.
fn upstreams_json(snapshot: &Snapshot) -> String {
    let mut names: Vec<_> = snapshot.upstreams.keys().collect();
    names.sort();
    let upstreams: Vec<serde_json::Value> = names
        .into_iter()
        .filter_map(|name| snapshot.upstreams.get(name))
        .map(|up| {
            let now = up.state.now_us();
            let replicas: Vec<serde_json::Value> = up
                .members()
                .replicas
                .iter()
                .map(|r| {
                    let report = r.report();
                    let at_ms = report.at.and_then(|t| {
                        t.duration_since(SystemTime::UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_millis() as u64)
                    });
                    serde_json::json!({
                        "addr": &*r.label,
                        "live": r.is_live(),
                        "ready": r.is_ready(),
                        "ejected": r.is_ejected(now),
                        "draining": r.is_draining(),
                        "in_flight": r.in_flight(),
                        "ewma_ms": (r.latency_us(now) / 10.0).round() / 100.0,
                        "last_probe": {
                            "live": report.live.map(|o| o.to_string()),
                            "ready": report.ready.map(|o| o.to_string()),
                            "at_unix_ms": at_ms,
                        },
                    })
                })
                .collect();
            serde_json::json!({
                "name": &*up.name,
                "config_errors": up.state.config_errors(),
                "replicas": replicas,
            })
        })
        .collect();
    serde_json::json!({ "upstreams": upstreams }).to_string()
}

/// `GET /admin/reload`: counts, the last outcomes, the generation serving.
fn reload_report(state: &AdminState) -> Response<ResponseBody> {
    match state.reloader.get() {
        Some(reloader) => json(StatusCode::OK, &reloader.report()),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "not started yet\n"),
    }
}

/// `POST /admin/reload`: reloads now and answers with the outcome; 422 when the file was
/// rejected (the running config is kept).
async fn reload_now(state: &AdminState) -> Response<ResponseBody> {
    let Some(reloader) = state.reloader.get() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not started yet\n");
    };
    let answer = reloader.reload(Trigger::Admin).await;
    let status = match answer.config.result {
        Verdict::Applied | Verdict::Skipped => StatusCode::OK,
        Verdict::Failed => StatusCode::UNPROCESSABLE_ENTITY,
    };
    json(status, &answer)
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ResponseBody> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut resp = Response::new(ResponseBody::Full(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Loopback literals, `localhost`, or a configured name; anything else may be a rebinding
/// attack carrying a victim's cookies to this listener.
fn host_allowed(req: &Request<Incoming>, hosts: &[String]) -> bool {
    let Some(host) = req.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = strip_port(host).to_ascii_lowercase();
    if name == "localhost" || hosts.contains(&name) {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 2]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Compares in constant time so the token can't be found byte by byte from response timing.
fn bearer_matches(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    let want = token.as_bytes();
    given.len() == want.len()
        && given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// No `Origin` (curl, scripts) or an `Origin` whose host:port is this request's `Host`.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = req.headers().get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    origin_host.eq_ignore_ascii_case(host)
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::Full(Some(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("127.0.0.1:9901"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:9901"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("localhost"), "localhost");
    }
}
