//! Per request: load the snapshot once, resolve the client, normalise, route, act.
//!
//! [`handle`] never fails: it turns errors into short responses, adds the headers every
//! response carries, and writes the access record. [`pipeline`] is the inner path, written
//! with `?`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{CONTENT_TYPE, LOCATION, SERVER, STRICT_TRANSPORT_SECURITY};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::body::ResponseBody;
use crate::error::{RequestError, Side};
use crate::forwarded::{self, Peer, names::X_REQUEST_ID};
use crate::normalize::{self, Authority};
use crate::ratelimit;
use crate::snapshot::{Action, Route, Snapshot};
use crate::tls::CertStore;
use crate::upstream::replica::Registry;
use crate::{compress, proxy};

/// State shared by every connection of the data plane.
pub struct Shared {
    /// The current compiled config.
    pub snapshot: ArcSwap<Snapshot>,
    /// Replica state that outlives snapshots.
    pub registry: Registry,
    /// Rate limiters (and their buckets) that outlive snapshots.
    pub limiters: ratelimit::Registry,
    /// Certificates for TLS listeners (and for deciding which hosts get HTTPS redirects).
    pub certs: Arc<CertStore>,
    /// Upgraded tunnels, tracked so shutdown can find them (hyper stops tracking upgraded
    /// connections).
    pub tunnels: TaskTracker,
    /// Endless responses (server-sent events) being streamed, so shutdown can count them.
    pub streams: TaskTracker,
    /// Cancelled when shutdown stops waiting for streams and tunnels.
    pub stop_streams: tokio_util::sync::CancellationToken,
}

/// What a request needs to know about its connection.
pub struct Conn {
    /// Index of the listener in the snapshot's listener list.
    pub listener: usize,
    /// Peer address as the client identity starts from, and TLS/port facts.
    pub peer: Peer,
    /// The TCP (or PROXY-protocol) peer, for logs.
    pub remote: SocketAddr,
    /// `"h1"` or `"h2"`.
    pub proto: &'static str,
    /// Request counts and the close signal shared with the connection's driver.
    pub life: crate::listener::Lifecycle,
}

/// Facts gathered along the way for the access record.
#[derive(Default)]
pub struct Record {
    /// Resolved client.
    pub client: Option<IpAddr>,
    /// The id sent upstream and returned.
    pub request_id: Option<HeaderValue>,
    /// Matched route.
    pub route: Option<Arc<str>>,
    /// Replica that answered.
    pub replica: Option<Arc<str>>,
    /// The rate limit that refused the request.
    pub rate_limited: Option<Arc<str>>,
    /// Whether to log this request.
    pub log: bool,
}

/// Serves one request; never fails.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let _active = conn.life.begin();
    let snap = shared.snapshot.load_full();
    let method = req.method().clone();
    let path_for_log = if snap.config.log.access_log {
        Some(req.uri().path().to_owned())
    } else {
        None
    };
    let mut rec = Record {
        log: snap.config.log.access_log,
        ..Record::default()
    };

    let mut resp = match pipeline(&shared, &conn, &snap, req, &mut rec).await {
        Ok(resp) => resp,
        Err(err) => {
            log_error(&err, &conn, &rec);
            error_response(&err)
        }
    };

    let headers = resp.headers_mut();
    if let Some(id) = rec.request_id.take() {
        headers.insert(X_REQUEST_ID, id.clone());
        rec.request_id = Some(id);
    }
    if conn.peer.tls {
        if let Some(hsts) = &snap.hsts {
            headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    if let Some(server) = &snap.config.server.server_header {
        headers.entry(SERVER).or_insert_with(|| server.clone());
    }

    if rec.log {
        tracing::info!(
            target: "edgeward::access",
            request_id = rec.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
            client = %rec.client.unwrap_or_else(|| conn.remote.ip()),
            method = %method,
            path = path_for_log.as_deref().unwrap_or("-"),
            proto = conn.proto,
            status = resp.status().as_u16(),
            route = rec.route.as_deref().unwrap_or("-"),
            replica = rec.replica.as_deref().unwrap_or("-"),
            rate_limit = rec.rate_limited.as_deref().unwrap_or("-"),
            duration_us = start.elapsed().as_micros() as u64,
        );
    }
    Ok(resp)
}

async fn pipeline(
    shared: &Shared,
    conn: &Conn,
    snap: &Snapshot,
    req: Request<Incoming>,
    rec: &mut Record,
) -> Result<Response<ResponseBody>, RequestError> {
    let policy = &snap.listeners[conn.listener];
    let resolved = forwarded::resolve_client(
        &conn.peer,
        &policy.trusted_proxies,
        policy.client_ip_header,
        req.headers(),
    );
    rec.client = Some(resolved.client.ip);
    rec.request_id = Some(forwarded::request_id(req.headers(), resolved.peer_trusted));

    let max_uri = snap.config.server.max_uri;
    if req
        .uri()
        .path_and_query()
        .is_some_and(|pq| pq.as_str().len() > max_uri)
    {
        return Err(RequestError::UriTooLong(max_uri));
    }
    let authority = normalize::effective_authority(req.version(), req.uri(), req.headers())?;
    // A clone of the target is a reference-count bump; it lets the normalised path borrow
    // from it (no allocation when the path is already normal) while the request moves on.
    let target = req.uri().clone();
    let path = normalize::normalize_path(target.path())?;

    if let Some(redirect) = &policy.redirect_https {
        if snap.router.knows_host(&authority.host) || shared.certs.covers(&authority.host) {
            return Ok(https_redirect(
                &authority,
                redirect.port,
                &path,
                req.uri().query(),
            ));
        }
    }

    let route = snap
        .router
        .lookup(&authority.host, &path)
        .ok_or(RequestError::NoRoute)?;
    rec.route = Some(Arc::clone(&route.name));
    rec.log &= route.access_log;
    if !route.admits(resolved.client.ip) {
        return Err(RequestError::Forbidden);
    }
    // Only the resolved client keys a per-client limit: forwarding headers from untrusted
    // peers were already discarded by `resolve_client`.
    let limit_headers = if route.limits.is_empty() || ratelimit::is_exempt(&path) {
        None
    } else {
        ratelimit::check(
            &route.limits,
            resolved.client.ip,
            req.headers(),
            route.limit_key,
        )
        .await
        .map_err(|denial| {
            rec.rate_limited = Some(Arc::clone(&denial.limit));
            RequestError::RateLimited(denial)
        })?
    };

    let mut resp = match &route.action {
        Action::Redirect {
            to,
            status,
            preserve_path,
        } => {
            let target = if *preserve_path {
                let mut t = format!("{}{}", to.trim_end_matches('/'), path);
                if let Some(q) = req.uri().query() {
                    t.push('?');
                    t.push_str(q);
                }
                t
            } else {
                to.to_string()
            };
            redirect(*status, &target)
        }
        Action::Static(site) => site.serve(&req, &path, &route.prefix).await?,
        Action::Proxy(upstream) => {
            let wanted = route
                .compress
                .then(|| compress::Wanted::of(req.method(), req.headers()));
            let ctx = proxy::Forward {
                shared,
                conn,
                route,
                upstream,
                resolved: &resolved,
                authority: &authority,
                path: &path,
                request_id: rec.request_id.as_ref().expect("set above"),
                server: &snap.config.server,
                route_lives: &snap.route_lives,
            };
            let (mut resp, replica) = proxy::forward(ctx, req).await?;
            rec.replica = Some(replica);
            if let Some(wanted) = wanted {
                compress::response(&mut resp, wanted);
            }
            resp
        }
    };
    apply_response_edits(route, &mut resp);
    if let Some(limit_headers) = limit_headers {
        limit_headers.apply(resp.headers_mut());
    }
    Ok(resp)
}

fn apply_response_edits(route: &Route, resp: &mut Response<ResponseBody>) {
    let headers = resp.headers_mut();
    for name in &route.response_headers.remove {
        headers.remove(name);
    }
    for (name, value) in &route.response_headers.set {
        headers.insert(name.clone(), value.clone());
    }
}

/// `308` to `https://<host>[:port]<path>?<query>`.
fn https_redirect(
    authority: &Authority,
    port: Option<u16>,
    path: &str,
    query: Option<&str>,
) -> Response<ResponseBody> {
    let mut target = String::with_capacity(16 + authority.host.len() + path.len());
    target.push_str("https://");
    target.push_str(&authority.host);
    if let Some(port) = port {
        target.push(':');
        target.push_str(&port.to_string());
    }
    target.push_str(path);
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    redirect(StatusCode::PERMANENT_REDIRECT, &target)
}

fn redirect(status: StatusCode, target: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::Empty);
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(target) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// A short plain-text error response.
pub fn error_response(err: &RequestError) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::text(err.body()));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(err, RequestError::MethodNotAllowed) {
        // The only routes that refuse methods are static ones.
        resp.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if err.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let RequestError::RateLimited(denial) = err {
        denial.headers.apply(resp.headers_mut());
    }
    resp
}

fn log_error(err: &RequestError, conn: &Conn, rec: &Record) {
    let id = rec
        .request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    match err.side() {
        Side::Client => {
            tracing::debug!(peer = %conn.remote, request_id = id, "rejected request: {err}")
        }
        Side::Upstream | Side::Internal => {
            tracing::warn!(peer = %conn.remote, request_id = id, route = rec.route.as_deref().unwrap_or("-"), "{err}")
        }
    }
}
