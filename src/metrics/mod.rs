//! Prometheus metrics at `/metrics`.
//!
//! Two kinds of series:
//! - **request counters** ([`hot`]): atomics in per-route structs resolved when the snapshot is
//!   built, in each replica and in each upstream's state. A request increments a few atomics
//!   and formats nothing. The scrape walks the *current* snapshot to label them, so routes,
//!   upstreams and replicas that a reload or DNS removed leave `/metrics` by themselves.
//! - **process-wide families** registered here: config reloads (incremented by the reloader
//!   through [`Metrics::record_reload`]), open connections by listener and protocol (gauge
//!   handles resolved per listener), `build_info`.
//!
//! State that already lives somewhere (replica health, certificates, TLS handshake counts) is
//! read at scrape time by [`collect`], never mirrored on the hot path.
//!
//! Label values are bounded: route and upstream names come from the config, methods from a
//! closed set, statuses by class, replicas by address. Never paths, client addresses or ids.

pub mod collect;
pub mod hot;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::SystemTime;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use hot::{DurationHistogram, ReplicaMetrics, RouteMetrics, UpstreamMetrics};

use crate::service::Shared;
use crate::tls::HandshakeFailures;

/// The outcome of one config reload attempt, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// A new snapshot was built and swapped in.
    Applied,
    /// The new config was invalid or could not be compiled; the old one stays.
    Failed,
    /// Nothing changed (same file contents), nothing was rebuilt.
    Skipped,
}

impl ReloadOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

impl EncodeLabelValue for ReloadOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    outcome: ReloadOutcome,
}

/// The connection protocols counted by [`ConnGauges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.x.
    H1,
    /// HTTP/2.
    H2,
    /// An upgraded HTTP/1.1 connection (WebSocket) tunnelled to a replica.
    WebSocket,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::H1 => "h1",
            Self::H2 => "h2",
            Self::WebSocket => "websocket",
        }
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConnLabels {
    listener: String,
    protocol: Protocol,
}

/// One listener's open-connection gauges, resolved when the listener starts.
#[derive(Debug, Clone, Default)]
pub struct ConnGauges {
    h1: Gauge,
    h2: Gauge,
    websocket: Gauge,
}

impl ConnGauges {
    /// Counts a connection of `protocol` as open until the guard drops.
    pub fn open(&self, protocol: Protocol) -> OpenGuard {
        let gauge = match protocol {
            Protocol::H1 => &self.h1,
            Protocol::H2 => &self.h2,
            Protocol::WebSocket => &self.websocket,
        };
        gauge.inc();
        OpenGuard(gauge.clone())
    }
}

/// Decrements an open-connection gauge when dropped.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The last reload as the status page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// When it finished, Unix seconds.
    pub at_unix: u64,
    /// What happened.
    pub outcome: ReloadOutcome,
    /// Why it failed (config errors name file, line and key).
    pub error: Option<String>,
}

/// Route counters by route name, kept while a snapshot uses them, so a rebuilt snapshot
/// continues the same counts.
#[derive(Default)]
pub struct Carried {
    routes: Mutex<HashMap<String, Weak<RouteMetrics>>>,
    unrouted: Mutex<Weak<RouteMetrics>>,
}

impl Carried {
    /// The counters of the route called `name` (new if no snapshot uses that name).
    pub fn route(&self, name: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = routes.get(name).and_then(Weak::upgrade) {
            return existing;
        }
        let fresh = Arc::new(RouteMetrics::default());
        routes.insert(name.to_owned(), Arc::downgrade(&fresh));
        fresh
    }

    /// The counters of requests that matched no route.
    pub fn unrouted(&self) -> Arc<RouteMetrics> {
        let mut slot = self.unrouted.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = slot.upgrade() {
            return existing;
        }
        let fresh = Arc::new(RouteMetrics::default());
        *slot = Arc::downgrade(&fresh);
        fresh
    }
}

/// What the scrape reads besides the registered families; set once the data plane exists.
#[derive(Default)]
pub struct Sources {
    shared: OnceLock<Arc<Shared>>,
    handshakes: OnceLock<Arc<HandshakeFailures>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("attached", &self.shared.get().is_some())
            .finish()
    }
}

/// Every metric of the process, and the reload hooks.
pub struct Metrics {
    registry: Registry,
    reloads: Family<ReloadLabels, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    last_reload: Mutex<Option<ReloadReport>>,
    connections: Family<ConnLabels, Gauge>,
    sources: Arc<Sources>,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and `build_info` set.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgeward");
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reload attempts by outcome",
            reloads.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the config was last loaded or reloaded successfully (Unix time)",
            last_success.clone(),
        );
        let connections = Family::<ConnLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Open data-plane connections by listener and protocol",
            connections.clone(),
        );
        // A gauge rather than an OpenMetrics `info`: the Prometheus text format, which
        // promtool and older scrapers read, has no `info` type.
        let build_info = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("build_info", "Build information; always 1", build_info);
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(Arc::clone(&sources)));
        let started = SystemTime::now();
        last_success.set(unix_seconds(started));
        Self {
            registry,
            reloads,
            last_success,
            last_reload: Mutex::new(None),
            connections,
            sources,
            started,
        }
    }

    /// Lets the scrape read the data plane: snapshot, certificates, handshake counts.
    pub fn attach(&self, shared: &Arc<Shared>, handshakes: &Arc<HandshakeFailures>) {
        let _ = self.sources.shared.set(Arc::clone(shared));
        let _ = self.sources.handshakes.set(Arc::clone(handshakes));
    }

    /// The open-connection gauges of listener `name`.
    pub fn connection_gauges(&self, name: &str) -> ConnGauges {
        let gauge = |protocol| {
            self.connections.get_or_create_owned(&ConnLabels {
                listener: name.to_owned(),
                protocol,
            })
        };
        ConnGauges {
            h1: gauge(Protocol::H1),
            h2: gauge(Protocol::H2),
            websocket: gauge(Protocol::WebSocket),
        }
    }

    /// The reloader's hook: counts the attempt, keeps it for the status page, and on success
    /// sets the last-success timestamp.
    pub fn record_reload(&self, outcome: ReloadOutcome, error: Option<String>) {
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
        let now = SystemTime::now();
        if outcome == ReloadOutcome::Applied {
            self.last_success.set(unix_seconds(now));
        }
        *self
            .last_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(ReloadReport {
            at_unix: unix_seconds(now) as u64,
            outcome,
            error,
        });
    }

    /// The last reload attempt; `None` until a reloader records one.
    pub fn last_reload(&self) -> Option<ReloadReport> {
        self.last_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When this process started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in the format the client asked for: OpenMetrics when `accept` names it
    /// (Prometheus servers do), else the classic Prometheus text format (curl, promtool,
    /// older scrapers). Returns the body and its `Content-Type`.
    pub fn encode_for(&self, accept: Option<&[u8]>) -> (String, &'static str) {
        let text = self.encode();
        let wants_openmetrics = accept.is_some_and(|a| {
            a.windows(b"application/openmetrics-text".len())
                .any(|w| w.eq_ignore_ascii_case(b"application/openmetrics-text"))
        });
        if wants_openmetrics {
            (text, CONTENT_TYPE)
        } else {
            (to_classic(&text), CLASSIC_CONTENT_TYPE)
        }
    }
}

/// OpenMetrics text to the classic Prometheus text format: a counter family's HELP and TYPE
/// name its `_total` samples, and there are no `# UNIT` or `# EOF` lines.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(kind);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Seconds since the Unix epoch, with a fraction.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of the classic Prometheus text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests;
