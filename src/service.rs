//! Per request: load the snapshot once, resolve the client, normalise, route, act.
//!
//! [`handle`] never fails: it turns errors into short responses, adds the headers every
//! response carries, and writes the access record. `pipeline` is the inner path, written
//! with `?`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::header::{CONTENT_TYPE, HOST, LOCATION, SERVER, STRICT_TRANSPORT_SECURITY};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, request};
use http_body::Body as _;
use tokio_util::task::TaskTracker;

use crate::access_log::{self, AccessLog};
use crate::body::{Inbound, ResponseBody};
use crate::error::{RequestError, Side};
use crate::forwarded::{self, Peer, PeerText, names::X_REQUEST_ID};
use crate::metrics::{ConnGauges, Metrics};
use crate::normalize::{self, Authority};
use crate::ratelimit;
use crate::snapshot::{Action, Route, Snapshot};
use crate::tls::CertStore;
use crate::trace_context::TraceContext;
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
    /// Pending ACME challenges, when ACME is on: answered over HTTP-01 before anything else,
    /// and over TLS-ALPN-01 by the listener.
    pub acme: Option<Arc<crate::acme::Acme>>,
    /// Upgraded tunnels, tracked so shutdown can find them (the listener stops tracking
    /// upgraded connections).
    pub tunnels: TaskTracker,
    /// Endless responses (server-sent events) being streamed, so shutdown can count them.
    pub streams: TaskTracker,
    /// Cancelled when shutdown stops waiting for streams and tunnels.
    pub stop_streams: tokio_util::sync::CancellationToken,
    /// Process-wide metrics (reload hooks, connection gauges).
    pub metrics: Arc<Metrics>,
    /// The batching access log writer.
    pub access_log: AccessLog,
}

/// What a request needs to know about its connection.
pub struct Conn {
    /// Index of the listener in the snapshot's listener list.
    pub listener: usize,
    /// Peer address as the client identity starts from, and TLS/port facts.
    pub peer: Peer,
    /// The peer's address and port as header values.
    pub peer_text: PeerText,
    /// The TCP (or PROXY-protocol) peer, for logs.
    pub remote: SocketAddr,
    /// `"h1"` or `"h2"`.
    pub proto: &'static str,
    /// Request counts and the close signal shared with the connection's driver.
    pub life: crate::listener::Lifecycle,
    /// The listener's open-connection gauges (an upgrade moves the connection to
    /// `websocket`).
    pub gauges: ConnGauges,
}

/// Facts gathered along the way for the access record and the metrics. The one access record:
/// every field of an access line comes from here or from the request head.
#[derive(Default)]
pub struct Record {
    /// Resolved client.
    pub client: Option<IpAddr>,
    /// The id sent upstream and returned.
    pub request_id: Option<HeaderValue>,
    /// Matched route (its name and counters).
    pub route: Option<Arc<Route>>,
    /// What happened upstream, for proxied requests.
    pub upstream: UpstreamFacts,
    /// The rate limit that refused the request.
    pub rate_limited: Option<Arc<str>>,
    /// The trace context sent to the app.
    pub trace: Option<TraceContext>,
    /// Whether to log this request.
    pub log: bool,
}

/// What the proxy learned about the upstream exchange.
#[derive(Default)]
pub struct UpstreamFacts {
    /// Replica that answered, or the last one tried.
    pub replica: Option<Arc<str>>,
    /// Sending to that replica until its response head.
    pub duration: Option<Duration>,
    /// Attempts sent again to another replica.
    pub retries: u32,
}

/// The parts of the request head the access line needs after the request was consumed: clones
/// of shared buffers, not copies.
struct Head {
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    version: Version,
    bytes_in: Option<u64>,
}

/// Serves one request; never fails.
///
/// `handle`, `pipeline`, `proxy::forward` and the pool's `send` and `exchange` return an
/// `async` block instead of being `async fn`s: an `async fn` moves its arguments into locals
/// of its own when first polled (rust-lang/rust#62958), so the request would be copied once
/// more at each level and held twice in the connection's future (about 270 instructions per
/// request over the five). For the same reason the head is split off here, once, and the
/// levels below work on it in place through `&mut request::Parts`: each level taking the
/// request by value copied its 264 bytes into memory no other request had warmed.
#[expect(clippy::manual_async_fn, reason = "no second copy of the arguments")]
pub fn handle(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    req: Request<Inbound>,
) -> impl Future<Output = Response<ResponseBody>> {
    async move {
        let start = Instant::now();
        let _active = conn.life.begin();
        let snap = shared.snapshot.load_full();
        let (mut parts, body) = req.into_parts();
        let method = parts.method.clone();
        // The request head is kept for the access line only when one may be written.
        let head = snap.config.log.access_log.then(|| Head {
            method: method.clone(),
            uri: parts.uri.clone(),
            host: parts.headers.get(HOST).cloned(),
            version: parts.version,
            bytes_in: body.size_hint().exact(),
        });
        let mut rec = Record {
            log: head.is_some(),
            ..Record::default()
        };

        let mut resp = match pipeline(&shared, &conn, &snap, &mut parts, body, &mut rec).await {
            Ok(resp) => resp,
            Err(err) => {
                log_error(&err, &conn, &rec);
                error_response(&err)
            }
        };

        let headers = resp.headers_mut();
        if let Some(id) = rec.request_id.take() {
            // Unique to each response, so an HPACK encoder (HTTP/2) that indexed it would add
            // a table entry per response, walk every earlier id on the next one and evict the
            // fields that do repeat; a "never indexed" field is sent as a literal. HTTP/1.1
            // ignores the flag.
            let mut value = id.clone();
            value.set_sensitive(true);
            headers.insert(X_REQUEST_ID, value);
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

        let elapsed = start.elapsed();
        let counters = match &rec.route {
            Some(route) => route.metrics.as_ref(),
            None => snap.unrouted.as_ref(),
        };
        if let Some(counters) = counters {
            counters.record(&method, resp.status(), elapsed);
        }
        if let Some(head) = head.as_ref().filter(|_| rec.log) {
            access(&shared, &snap, &conn, head, &rec, &resp, elapsed);
        }
        resp
    }
}

/// Writes the access line. Sizes are those known at the response head: `Content-Length` or
/// an exact body size; a streamed body of unknown length is logged as unknown.
fn access(
    shared: &Shared,
    snap: &Snapshot,
    conn: &Conn,
    head: &Head,
    rec: &Record,
    resp: &Response<ResponseBody>,
    elapsed: Duration,
) {
    let authority = head.uri.authority().map(|a| a.as_str().as_bytes());
    let route = rec.route.as_deref();
    shared.access_log.write(&access_log::Entry {
        time: SystemTime::now()
            .checked_sub(elapsed)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        request_id: rec.request_id.as_ref().map(HeaderValue::as_bytes),
        client: rec.client.unwrap_or_else(|| conn.remote.ip()),
        method: head.method.as_str(),
        host: head.host.as_ref().map(HeaderValue::as_bytes).or(authority),
        path: head.uri.path(),
        query: head.uri.query().filter(|_| snap.config.log.log_query),
        protocol: match head.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        },
        status: resp.status().as_u16(),
        bytes_in: head.bytes_in,
        bytes_out: resp.body().size_hint().exact(),
        duration: elapsed,
        route: route.map(|r| &*r.name),
        replica: rec.upstream.replica.as_deref(),
        upstream_duration: rec.upstream.duration,
        retries: rec.upstream.retries,
        rate_limit: rec.rate_limited.as_deref(),
        trace_id: rec.trace.as_ref().map(TraceContext::trace_id_hex),
    });
}

#[expect(clippy::manual_async_fn, reason = "no second copy of the arguments")]
fn pipeline(
    shared: &Shared,
    conn: &Conn,
    snap: &Snapshot,
    parts: &mut request::Parts,
    body: Inbound,
    rec: &mut Record,
) -> impl Future<Output = Result<Response<ResponseBody>, RequestError>> {
    async move {
        // ACME HTTP-01 comes first: the CA's validator must reach it whatever the redirect,
        // routing and rate-limit rules say.
        if let Some(acme) = shared.acme.as_deref().filter(|_| !conn.peer.tls) {
            if let Some(token) = parts.uri.path().strip_prefix(ACME_CHALLENGE_PREFIX) {
                return Ok(acme_http01(acme.challenges(), &parts.method, token).await);
            }
        }
        let policy = &snap.listeners[conn.listener];
        let resolved = forwarded::resolve_client(
            &conn.peer,
            &policy.trusted_proxies,
            policy.client_ip_header,
            &parts.headers,
        );
        rec.client = Some(resolved.client.ip);
        rec.request_id = Some(forwarded::request_id(&parts.headers, resolved.peer_trusted));
        rec.trace = Some(TraceContext::of_request(
            &parts.headers,
            resolved.peer_trusted,
        ));

        let max_uri = snap.config.server.max_uri;
        if parts
            .uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().len() > max_uri)
        {
            return Err(RequestError::UriTooLong(max_uri));
        }
        let authority = normalize::effective_authority(parts.version, &parts.uri, &parts.headers)?;
        // A clone of the target is a reference-count bump; it lets the normalised path borrow
        // from it (no allocation when the path is already normal) while the head is rewritten.
        let target = parts.uri.clone();
        let path = normalize::normalize_path(target.path())?;

        if let Some(redirect) = &policy.redirect_https {
            if snap.router.knows_host(authority.host()) || shared.certs.covers(authority.host()) {
                return Ok(https_redirect(
                    &authority,
                    redirect.port,
                    &path,
                    parts.uri.query(),
                ));
            }
        }

        let route = snap
            .router
            .lookup(authority.host(), &path)
            .ok_or(RequestError::NoRoute)?;
        rec.route = Some(Arc::clone(route));
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
                &parts.headers,
                route.limit_key,
            )
            .await
            .map_err(|denial| {
                rec.rate_limited = Some(Arc::clone(&denial.limit));
                if let Some(counters) = &route.metrics {
                    counters.rate_limited();
                }
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
                    if let Some(q) = parts.uri.query() {
                        t.push('?');
                        t.push_str(q);
                    }
                    t
                } else {
                    to.to_string()
                };
                redirect(*status, &target)
            }
            Action::Static(site) => site.serve(parts, &path, &route.prefix).await?,
            Action::Proxy(upstream) => {
                let wanted = route
                    .compress
                    .then(|| compress::Wanted::of(&parts.method, &parts.headers));
                let ctx = proxy::Forward {
                    shared,
                    conn,
                    route,
                    upstream,
                    resolved: &resolved,
                    authority: &authority,
                    path: &path,
                    request_id: rec.request_id.as_ref().expect("set above"),
                    trace: rec.trace.as_ref().expect("set above"),
                    facts: &mut rec.upstream,
                    server: &snap.config.server,
                    route_lives: &snap.route_lives,
                };
                let mut resp = proxy::forward(ctx, parts, body).await?;
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
}

/// Where HTTP-01 validators fetch their tokens.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Answers an HTTP-01 validation request: 200 with the key authorization, or 404 for a
/// token that is malformed (checked before any lookup) or not pending. The `Host` is not
/// consulted: tokens are unique, and validators send `name:port`.
async fn acme_http01(
    challenges: &crate::acme::challenge::Challenges,
    method: &http::Method,
    token: &str,
) -> Response<ResponseBody> {
    let found = if method == http::Method::GET || method == http::Method::HEAD {
        challenges.http01(token).await
    } else {
        None
    };
    let Some(key_auth) = found else {
        let mut resp = Response::new(ResponseBody::text("not found\n"));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    tracing::info!(token, "served an ACME HTTP-01 challenge");
    let mut resp = Response::new(ResponseBody::Full(Some(bytes::Bytes::from(key_auth))));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
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
    let mut target = String::with_capacity(16 + authority.host().len() + path.len());
    target.push_str("https://");
    target.push_str(authority.host());
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
            tracing::warn!(peer = %conn.remote, request_id = id, route = rec.route.as_ref().map_or("-", |r| &*r.name), "{err}")
        }
    }
}
