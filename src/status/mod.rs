//! The status page on the admin listener: `GET /` serves one self-contained HTML page that
//! refreshes itself from `GET /admin/status` (JSON): routes with request and error counts,
//! upstreams with each replica's health and latency, certificates with days to expiry, and
//! the last config reload.
//!
//! The page's inline style and script are allowed by their SHA-256 hashes, computed once at
//! startup, under a `Content-Security-Policy` that allows nothing else but fetching from the
//! admin listener itself; the script writes data only through `textContent`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{self, HostMatch};
use crate::metrics::{Metrics, ReloadReport, unix_seconds};
use crate::service::Shared;
use crate::snapshot::Snapshot;

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The page and the policy that allows exactly its inline style and script.
pub struct StatusPage {
    /// The HTML.
    pub html: Bytes,
    /// `Content-Security-Policy` for it.
    pub csp: HeaderValue,
}

impl StatusPage {
    /// Assembles the page and hashes its inline style and script.
    pub fn build() -> Self {
        let html = TEMPLATE
            .replace("{style}", STYLE)
            .replace("{script}", SCRIPT);
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(SCRIPT),
            hash(STYLE)
        );
        Self {
            html: Bytes::from(html),
            // Base64 and ASCII keywords are always a valid header value.
            csp: HeaderValue::try_from(csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
        }
    }
}

fn hash(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// What `GET /admin/status` returns.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The gateway's version.
    pub version: &'static str,
    /// Snapshot generation (1 at start, +1 per applied reload).
    pub generation: u64,
    /// The readiness latch.
    pub ready: bool,
    /// Seconds since start.
    pub uptime_s: f64,
    /// When this was taken (Unix seconds), so the page can compute rates.
    pub now_unix: f64,
    /// Requests and 5xx responses since start, all routes together.
    pub totals: Totals,
    /// Routes in config order.
    pub routes: Vec<RouteStatus>,
    /// Upstreams by name.
    pub upstreams: Vec<UpstreamStatus>,
    /// Loaded certificates.
    pub certificates: Vec<CertificateStatus>,
    /// The last reload attempt; `null` until a reloader has recorded one.
    pub reload: Option<ReloadReport>,
}

/// Request totals.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
}

/// One route.
#[derive(Debug, Serialize)]
pub struct RouteStatus {
    /// Route name.
    pub name: String,
    /// Host it matches (`null`: any).
    pub host: Option<String>,
    /// Path prefix.
    pub path: String,
    /// `proxy`, `static` or `redirect`.
    pub action: &'static str,
    /// The upstream of a proxy route.
    pub upstream: Option<String>,
    /// Requests answered (0 with `metrics.enabled = false`).
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Refused by a rate limit.
    pub rate_limited: u64,
}

/// One upstream.
#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    /// Upstream name.
    pub name: String,
    /// Configuration errors found by probing.
    pub config_errors: Vec<String>,
    /// Its replicas now.
    pub replicas: Vec<ReplicaStatus>,
}

/// One replica.
#[derive(Debug, Serialize)]
pub struct ReplicaStatus {
    /// Address.
    pub addr: String,
    /// Liveness probe passes.
    pub live: bool,
    /// Readiness probe passes.
    pub ready: bool,
    /// Taken out by passive health.
    pub ejected: bool,
    /// Requests being served.
    pub in_flight: usize,
    /// Peak-EWMA latency to the response head, milliseconds.
    pub ewma_ms: f64,
}

/// One certificate.
#[derive(Debug, Serialize)]
pub struct CertificateStatus {
    /// Names it covers.
    pub names: Vec<String>,
    /// `file`, `acme` or `self_signed`.
    pub source: &'static str,
    /// Expiry, Unix seconds.
    pub not_after_unix: f64,
    /// Days until expiry (negative once expired).
    pub days_left: f64,
    /// Served when SNI matches nothing.
    pub default: bool,
}

/// The status now. `shared` is `None` while the data plane is still starting.
pub fn status(shared: Option<&Shared>, metrics: &Metrics, ready: bool) -> Status {
    let now = SystemTime::now();
    let mut status = Status {
        version: env!("CARGO_PKG_VERSION"),
        generation: 0,
        ready,
        uptime_s: now
            .duration_since(metrics.started())
            .map_or(0.0, |d| d.as_secs_f64()),
        now_unix: unix_seconds(now),
        totals: Totals::default(),
        routes: Vec::new(),
        upstreams: Vec::new(),
        certificates: Vec::new(),
        reload: metrics.last_reload(),
    };
    let Some(shared) = shared else {
        return status;
    };
    let snap = shared.snapshot.load_full();
    status.generation = snap.generation;
    status.routes = routes(&snap);
    if let Some(unrouted) = &snap.unrouted {
        status.totals.requests += unrouted.total();
        status.totals.errors += unrouted.errors();
    }
    for r in &status.routes {
        status.totals.requests += r.requests;
        status.totals.errors += r.errors;
    }
    status.upstreams = upstreams(&snap);
    let now_s = status.now_unix;
    status.certificates = shared
        .certs
        .list()
        .into_iter()
        .map(|c| {
            let not_after_unix = unix_seconds(c.not_after);
            CertificateStatus {
                names: c.names,
                source: c.source,
                not_after_unix,
                days_left: (not_after_unix - now_s) / 86_400.0,
                default: c.default,
            }
        })
        .collect();
    status
}

fn routes(snap: &Snapshot) -> Vec<RouteStatus> {
    let compiled: HashMap<&str, _> = snap
        .router
        .values()
        .map(|r| (&*r.name, r.metrics.as_ref()))
        .collect();
    snap.config
        .routes
        .iter()
        .map(|r| {
            let m = compiled.get(r.name.as_str()).copied().flatten();
            let (action, upstream) = match &r.action {
                config::Action::Proxy { upstream } => ("proxy", Some(upstream.clone())),
                config::Action::Static(_) => ("static", None),
                config::Action::Redirect { .. } => ("redirect", None),
            };
            RouteStatus {
                name: r.name.clone(),
                host: r.host.as_ref().map(|h| match h {
                    HostMatch::Exact(h) => h.clone(),
                    HostMatch::Wildcard(suffix) => format!("*{suffix}"),
                }),
                path: r.path.clone(),
                action,
                upstream,
                requests: m.map_or(0, |m| m.total()),
                errors: m.map_or(0, |m| m.errors()),
                rate_limited: m.map_or(0, |m| m.rate_limited_count()),
            }
        })
        .collect()
}

fn upstreams(snap: &Snapshot) -> Vec<UpstreamStatus> {
    let mut ups: Vec<_> = snap.upstreams.values().map(Arc::clone).collect();
    ups.sort_by(|a, b| a.name.cmp(&b.name));
    ups.iter()
        .map(|up| {
            let now = up.state.now_us();
            UpstreamStatus {
                name: up.name.to_string(),
                config_errors: up.state.config_errors(),
                replicas: up
                    .members()
                    .replicas
                    .iter()
                    .map(|r| ReplicaStatus {
                        addr: r.label.to_string(),
                        live: r.is_live(),
                        ready: r.is_ready(),
                        ejected: r.is_ejected(now),
                        in_flight: r.in_flight(),
                        ewma_ms: (r.latency_us(now) / 10.0).round() / 100.0,
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hashes_the_inline_code_and_allows_nothing_else() {
        let page = StatusPage::build();
        let csp = page.csp.to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(csp.contains(&format!("'sha256-{}'", hash(SCRIPT))));
        assert!(csp.contains(&format!("'sha256-{}'", hash(STYLE))));
        assert!(csp.contains("connect-src 'self'"));
        let html = std::str::from_utf8(&page.html).unwrap();
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(!html.contains("{script}") && !html.contains("{style}"));
        // Self-contained: nothing is loaded from elsewhere.
        for external in ["src=", "href=", "http://", "https://", "@import"] {
            assert!(!html.contains(external), "{external}");
        }
        // Data only through textContent.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!SCRIPT.contains(sink), "{sink}");
        }
    }

    #[test]
    fn hash_matches_a_known_digest() {
        assert_eq!(hash(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn without_a_data_plane_the_reload_is_null() {
        let metrics = Metrics::new();
        let json = serde_json::to_value(status(None, &metrics, false)).unwrap();
        assert!(json["reload"].is_null());
        assert_eq!(json["routes"], serde_json::json!([]));
        metrics.record_reload(crate::metrics::ReloadOutcome::Failed, Some("bad".into()));
        let json = serde_json::to_value(status(None, &metrics, false)).unwrap();
        assert_eq!(json["reload"]["outcome"], "failed");
        assert_eq!(json["reload"]["error"], "bad");
    }
}
