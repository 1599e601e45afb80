//! Proxying one request: decide on the body before touching it, rewrite the head in place,
//! pick a replica, send, and rewrite the response. Upgrades become tracked tunnels.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, COOKIE, EXPECT, HOST};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, Version, request};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use crate::body::{
    BodyError, BodyFault, ClientBody, Inbound, RequestBody, ResponseBody, UpstreamBody,
};
use crate::error::{RequestError, UpstreamFailure};
use crate::forwarded::names::TRACEPARENT;
use crate::forwarded::{self, Added, ForwardCtx, Resolved};
use crate::http1::OnUpgrade;
use crate::metrics::Protocol;
use crate::normalize::{self, Authority};
use crate::service::{Conn, Shared, UpstreamFacts};
use crate::snapshot::{Route, RouteId, RouteLife};
use crate::trace_context::TraceContext;
use crate::tunnel;
use crate::upstream::outlier;
use crate::upstream::pool::ErrorKind;
use crate::upstream::replica::{Replica, Upstream};
use crate::upstream::retry::{self, Attempt};

/// Most attempts per request, the first included.
const MAX_ATTEMPTS: usize = 3;

/// Everything `forward` needs besides the request.
pub struct Forward<'a> {
    /// Connection-independent state.
    pub shared: &'a Shared,
    /// The client connection.
    pub conn: &'a Conn,
    /// The matched route.
    pub route: &'a Route,
    /// Its upstream.
    pub upstream: &'a Arc<Upstream>,
    /// The resolved client identity.
    pub resolved: &'a Resolved,
    /// The request's effective authority.
    pub authority: &'a Authority,
    /// The normalised path.
    pub path: &'a str,
    /// The request id.
    pub request_id: &'a HeaderValue,
    /// The trace context the app gets.
    pub trace: &'a TraceContext,
    /// Filled in for the access record: replica, upstream time, retries.
    pub facts: &'a mut UpstreamFacts,
    /// Server-wide settings from the request's snapshot.
    pub server: &'a crate::config::Server,
    /// Route lives from the request's snapshot: an upgrade takes its route's removal token.
    pub route_lives: &'a HashMap<RouteId, RouteLife>,
}

/// Sends the request to a replica; returns the response for the client. The head is
/// rewritten in place for the app. An `async` block rather than an `async fn`, for the
/// reason given at `service::handle`.
#[expect(clippy::manual_async_fn, reason = "no second copy of the arguments")]
pub fn forward<'a>(
    ctx: Forward<'a>,
    parts: &'a mut request::Parts,
    body: Inbound,
) -> impl Future<Output = Result<Response<ResponseBody>, RequestError>> {
    async move {
        let Forward {
            shared,
            conn,
            route,
            upstream,
            resolved,
            authority,
            path,
            request_id,
            trace,
            facts,
            server,
            route_lives,
        } = ctx;
        // Replica and upstream counters move only when the route counts (`metrics.enabled`).
        let observe = route.metrics.is_some();

        // Decide everything about the body before it is polled: the connection sends
        // `100 Continue` only when the body is first read, so a refused request never gets one.
        // `Expect` itself goes with the hop-by-hop fields in `rewrite_request`.
        if let Some(expect) = parts.headers.get(EXPECT) {
            if !expect.as_bytes().eq_ignore_ascii_case(b"100-continue") {
                return Err(RequestError::ExpectationFailed);
            }
        }
        // The declared length, as the connection framed the body (`Content-Length`; none
        // for a chunked or HTTP/2 body without one), without looking the field up again.
        let declared = body.size_hint().exact();
        if declared.is_some_and(|len| len > route.max_body) {
            return Err(RequestError::BodyTooLarge(route.max_body));
        }

        // The HTTP/1.1 server half prepares the hand-over exactly for a request that asks for
        // one (`Connection: upgrade` and an `Upgrade` field); HTTP/2 has no such upgrade.
        let client_upgrade = if parts.version == Version::HTTP_11 {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        let upgrade = client_upgrade.is_some();
        if parts.version == Version::HTTP_2 {
            join_cookies(&mut parts.headers);
        }

        let forwarded_path = if route.strip_prefix {
            normalize::strip_prefix(path, &route.prefix)
        } else {
            path
        };
        let mut added = Added::new();
        forwarded::rewrite_request(
            &mut parts.headers,
            &mut added,
            &ForwardCtx {
                peer: &conn.peer,
                peer_text: &conn.peer_text,
                resolved,
                authority: &authority.header,
                request_id,
                prefix: route.strip_prefix.then_some(&*route.prefix),
                allow_underscore: server.allow_underscore_headers,
                forwarded_header: server.forwarded_header,
                upgrade,
                replace_trace: !trace.kept,
            },
        );
        if let Some(traceparent) = trace.traceparent() {
            added.push(TRACEPARENT, traceparent);
        }
        // A route may not edit the gateway's own fields (the config refuses it), but it may edit
        // the trace context, and its edit wins.
        for name in &route.request_headers.remove {
            parts.headers.remove(name);
            added.remove(name);
        }
        for (name, value) in &route.request_headers.set {
            added.remove(name);
            parts.headers.insert(name.clone(), value.clone());
        }
        // The client's `Host` (there is at most one) is replaced where it stands.
        let host = route
            .upstream_host
            .clone()
            .unwrap_or_else(|| authority.header.clone());
        match parts.headers.get_mut(HOST) {
            Some(value) => *value = host,
            None => added.push(HOST, host),
        }
        // The pool writes only the path and query; a target already in that shape (the common
        // case: nothing to strip, nothing normalised away) is kept rather than parsed again.
        if !(parts.uri.scheme().is_none() && parts.uri.path() == forwarded_path) {
            parts.uri = origin_form(forwarded_path, parts.uri.query())?;
        }
        parts.version = Version::HTTP_11;

        // Where a streaming body records why it stopped (none for a request without a body).
        let mut fault = None;
        let idempotent = retry::is_idempotent(&parts.method, &route.idempotent_methods);
        let (mut body, replayable) = if body.is_end_stream() {
            (RequestBody::Empty, true)
        } else {
            let recorded = fault.insert(Arc::new(BodyFault::default()));
            let client = ClientBody::new(
                body,
                route.max_body,
                route.timeouts.client_body_idle,
                Arc::clone(recorded),
            );
            // Only a body that may be replayed after it was sent is worth holding back: an
            // unsent request's body comes back from the pool whole, whatever it is.
            let small = declared.is_some_and(|n| n <= upstream.retry_buffer);
            if idempotent && small && !upgrade {
                let bytes = client
                    .collect()
                    .await
                    .map_err(|_| {
                        client_fault(fault.as_deref(), route).unwrap_or(RequestError::BodyAborted)
                    })?
                    .to_bytes();
                (RequestBody::Full(Some(bytes)), true)
            } else {
                (RequestBody::Client(client), false)
            }
        };

        let key = upstream.hash_key(&parts.headers, &added, resolved.client.ip);
        upstream.budget.deposit();
        // What a lost request's body is rebuilt from (its head never left); kept only when it
        // could be replayed elsewhere.
        let replay = (idempotent
            && replayable
            && upstream.members().replicas.len() > 1
            && !upstream.budget.never_grants())
        .then(|| Replay::keep(&body));
        let mut tried: Vec<Arc<Replica>> = Vec::new();
        // After a failed attempt with nowhere else to go, that failure is the answer.
        let mut last_failure = None;
        // The head stays where `service::handle` split it off, for every attempt; only the
        // body goes to the pool (and comes back from it unsent).
        let (mut resp, guard) = loop {
            // One clock reading serves the pick, the pool (an idle connection's age, the
            // `upstream_header` clock) and the round trip.
            let started = Instant::now();
            let Some(replica) = upstream.pick(key, &tried, started) else {
                return Err(last_failure
                    .unwrap_or_else(|| RequestError::NoReplica(Arc::clone(&upstream.name))));
            };
            let guard = replica.begin();
            facts.replica = Some(Arc::clone(&replica.label));
            let upstream_err = |kind| RequestError::Upstream {
                upstream: Arc::clone(&upstream.name),
                replica: Arc::clone(&replica.label),
                kind,
            };
            let result = replica
                .pool
                .send(
                    parts,
                    body,
                    added.as_slice(),
                    route.timeouts.upstream_header,
                    started,
                )
                .await;
            let err = match result {
                Ok(resp) => {
                    let verdict =
                        outlier::status_verdict(resp.status().as_u16(), upstream.count_5xx);
                    let answered = Instant::now();
                    let took = answered.saturating_duration_since(started);
                    replica.record(verdict, Some(took), answered);
                    facts.duration = Some(took);
                    if observe {
                        replica.metrics.duration.observe(took);
                    }
                    break (resp, guard);
                }
                Err(err) => err,
            };
            // A body that failed on the client side explains the broken exchange.
            if let Some(client_err) = client_fault(fault.as_deref(), route) {
                return Err(client_err);
            }
            let failure = UpstreamFailure::Pool(err.kind);
            replica.record(outlier::failure_verdict(failure), None, Instant::now());
            if observe {
                replica.metrics.failed(failure);
            }
            let (attempt, next) = match err.body {
                Some(unsent) => (Attempt::Unsent, Some(unsent)),
                None if matches!(err.kind, ErrorKind::Closed | ErrorKind::Reset) => {
                    (Attempt::Lost, replay.as_ref().map(Replay::body))
                }
                None => (Attempt::Final, None),
            };
            let retry = next
                .filter(|_| {
                    tried.len() + 1 < MAX_ATTEMPTS.min(upstream.members().replicas.len())
                        && retry::may_retry(attempt, idempotent, replayable)
                })
                .filter(|_| {
                    let granted = upstream
                        .budget
                        .withdraw(upstream.state.now_us() / 1_000_000);
                    if !granted && observe {
                        upstream.state.metrics.budget_exhausted();
                    }
                    granted
                });
            let Some(next) = retry else {
                return Err(upstream_err(failure));
            };
            facts.retries += 1;
            if observe {
                upstream.state.metrics.retried();
            }
            tracing::debug!(upstream = %upstream.name, replica = %replica.label, kind = %err.kind, "retrying on another replica");
            last_failure = Some(upstream_err(failure));
            drop(guard);
            tried.push(replica);
            body = next;
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_io = resp.body_mut().take_upgraded();
            if let (Some(client), Some(upstream_io)) = (client_upgrade, upstream_io) {
                // Every route of a snapshot has a life; the default (never cancelled) only
                // guards against a broken invariant.
                let removed = route_lives
                    .get(&route.id)
                    .map(|life| life.removed.clone())
                    .unwrap_or_default();
                tunnel::spawn(
                    shared,
                    client,
                    upstream_io,
                    route.timeouts.tunnel_idle,
                    guard,
                    removed,
                    conn.gauges.open(Protocol::WebSocket),
                );
                let (mut head, _) = resp.into_parts();
                forwarded::rewrite_response(&mut head.headers, true);
                return Ok(Response::from_parts(head, ResponseBody::Empty));
            }
        }

        let (mut head, body) = resp.into_parts();
        forwarded::rewrite_response(&mut head.headers, false);
        let (idle, stream) = if is_event_stream(&head.headers) {
            (
                None,
                Some((shared.stop_streams.clone(), shared.streams.token())),
            )
        } else {
            (route.timeouts.upstream_body_idle, None)
        };
        let body = UpstreamBody::new(body, idle, stream, guard);
        Ok(Response::from_parts(head, ResponseBody::Upstream(body)))
    }
}

/// Why a client body stopped, if it did: 413 or 408 rather than an upstream error.
fn client_fault(fault: Option<&BodyFault>, route: &Route) -> Option<RequestError> {
    match fault?.get()? {
        BodyError::TooLarge => Some(RequestError::BodyTooLarge(route.max_body)),
        BodyError::Idle => Some(RequestError::BodyTimeout),
        BodyError::Aborted => Some(RequestError::BodyAborted),
    }
}

/// The body of a replayable request (none, or a buffered one), to send it again after the
/// first attempt was lost. The head needs no copy: the pool only borrows it.
struct Replay {
    body: Option<bytes::Bytes>,
}

impl Replay {
    fn keep(body: &RequestBody) -> Self {
        Self {
            body: match body {
                RequestBody::Full(b) => b.clone(),
                RequestBody::Empty | RequestBody::Client(_) => None,
            },
        }
    }

    fn body(&self) -> RequestBody {
        match &self.body {
            Some(b) => RequestBody::Full(Some(b.clone())),
            None => RequestBody::Empty,
        }
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().len() >= 17 && v.as_bytes()[..17].eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// HTTP/2 may split `cookie` into several fields; HTTP/1.1 needs one, joined with `"; "`
/// (RFC 9113 §8.2.3). Starlette reads only the first `Cookie` header.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 4);
    for (i, v) in headers.get_all(COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, v);
    }
}

fn origin_form(path: &str, query: Option<&str>) -> Result<Uri, RequestError> {
    let uri = match query {
        None => Uri::try_from(path),
        Some(q) => {
            let mut s = String::with_capacity(path.len() + 1 + q.len());
            s.push_str(path);
            s.push('?');
            s.push_str(q);
            Uri::try_from(s)
        }
    };
    uri.map_err(|_| RequestError::Target(normalize::TargetError::MalformedPath))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_joined_in_order() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        assert_eq!(
            h.get_all(COOKIE).iter().collect::<Vec<_>>(),
            vec!["a=1; b=2; c=3"]
        );
    }

    #[test]
    fn event_stream_detected_with_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        assert!(is_event_stream(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_event_stream(&h));
    }
}
