//! Per-replica state that outlives snapshots: the connection pool, in-flight count, latency
//! estimate, health flags and probe results.
//!
//! A [`Replica`] is keyed by upstream name + address and kept by the
//! [`Registry`] as long as some snapshot (or an in-flight request)
//! uses it, so a rebuilt snapshot picks up the same pool, counters and health.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::RequestBody;
use crate::config::HealthMode;
use crate::upstream::health::ProbeOutcome;
use crate::upstream::latency::PeakEwma;
use crate::upstream::outlier::{self, Verdict};
use crate::upstream::pool::Pool;
use crate::upstream::registry::UpstreamState;

pub use crate::upstream::group::Upstream;
pub use crate::upstream::registry::Registry;

/// `ejected_until` value meaning: ejected until a readiness probe passes after `release_at`.
const UNTIL_PROBED: u64 = u64::MAX;

/// One replica of an upstream: its connection pool, live counters and health.
pub struct Replica {
    /// The upstream's name.
    pub upstream: Arc<str>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as text, for logs and metric labels.
    pub label: Arc<str>,
    /// Stable identity for consistent hashing.
    pub id: u64,
    /// The replica's HTTP/1.1 connections.
    pub pool: Arc<Pool<RequestBody>>,
    /// The upstream-wide state it belongs to (settings, clock, siblings).
    pub state: Arc<UpstreamState>,
    /// Request counters for `/metrics`; they leave it with the replica.
    pub metrics: crate::metrics::ReplicaMetrics,
    in_flight: AtomicUsize,
    live: AtomicBool,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Microseconds on the upstream clock; 0 when not ejected.
    ejected_until: AtomicU64,
    release_at: AtomicU64,
    last_release: AtomicU64,
    failures: AtomicU32,
    ejections: AtomicU32,
    ready_since: AtomicU64,
    latency: PeakEwma,
    report: Mutex<ProbeReport>,
    first_round: watch::Sender<bool>,
    /// Ends the probe task when the replica is dropped.
    pub(crate) stop: CancellationToken,
}

/// The latest probe results, for `/admin/upstreams`.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// Last liveness probe.
    pub live: Option<ProbeOutcome>,
    /// Last readiness probe.
    pub ready: Option<ProbeOutcome>,
    /// When the last probe round ended.
    pub at: Option<SystemTime>,
}

impl Replica {
    /// A replica in its initial health: live, and ready only when probes are off or
    /// `start_ready` is set.
    pub(crate) fn new(
        state: Arc<UpstreamState>,
        addr: SocketAddr,
        pool: Arc<Pool<RequestBody>>,
    ) -> Self {
        let settings = state.settings();
        let probes_off = settings.health.mode == HealthMode::Off;
        let label: Arc<str> = addr.to_string().into();
        Self {
            upstream: Arc::clone(&state.name),
            addr,
            id: super::balancer::hash_bytes(label.as_bytes()),
            label,
            pool,
            metrics: crate::metrics::ReplicaMetrics::default(),
            in_flight: AtomicUsize::new(0),
            live: AtomicBool::new(true),
            ready: AtomicBool::new(probes_off || settings.health.start_ready),
            draining: AtomicBool::new(false),
            ejected_until: AtomicU64::new(0),
            release_at: AtomicU64::new(0),
            last_release: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ready_since: AtomicU64::new(state.now_us()),
            latency: PeakEwma::default(),
            report: Mutex::new(ProbeReport::default()),
            first_round: watch::Sender::new(probes_off),
            stop: CancellationToken::new(),
            state,
        }
    }

    /// Requests being served by this replica right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Live and ready, not draining, not ejected: may take new requests.
    pub fn is_eligible(&self, now_us: u64) -> bool {
        self.live.load(Ordering::Relaxed)
            && self.ready.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= now_us
    }

    /// The `fail_open` fallbacks: `strict` asks for live and not draining, otherwise only not
    /// draining.
    pub fn is_usable_failing_open(&self, strict: bool) -> bool {
        !self.draining.load(Ordering::Relaxed) && (!strict || self.live.load(Ordering::Relaxed))
    }

    /// Whether the liveness probe last passed.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether the readiness probe last passed (or probes are off).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether the replica left its upstream and only finishes what it has.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether passive health has taken it out.
    pub fn is_ejected(&self, now_us: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_us
    }

    /// Peak-EWMA latency to the response head, microseconds.
    pub fn latency_us(&self, now_us: u64) -> f64 {
        self.latency.get(now_us)
    }

    /// Slow-start factor in (0, 1]: how far into its ramp a newly ready replica is.
    pub fn ramp(&self, now_us: u64, slow_start: Option<Duration>) -> f64 {
        let Some(ramp) = slow_start else { return 1.0 };
        let since = now_us.saturating_sub(self.ready_since.load(Ordering::Relaxed));
        let total = ramp.as_micros() as f64;
        // Never zero, so a ramping replica alone still gets requests.
        (since as f64 / total).clamp(0.05, 1.0)
    }

    /// Records the outcome of one exchange that ended at `at`: latency on a response head,
    /// failure streaks and ejection.
    pub fn record(&self, verdict: Verdict, rtt: Option<Duration>, at: Instant) {
        let now = self.state.us_at(at);
        if let Some(rtt) = rtt {
            self.latency.observe(rtt.as_micros() as f64, now);
        }
        match verdict {
            Verdict::Neutral => {}
            Verdict::Success => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            Verdict::Failure => {
                let streak = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let settings = self.state.settings();
                if streak >= settings.outlier.consecutive_failures && !self.is_ejected(now) {
                    self.eject(now);
                }
            }
        }
    }

    /// Takes the replica out for a backoff that doubles on repeats, unless too much of the
    /// pool is out already.
    fn eject(&self, now: u64) {
        let settings = self.state.settings();
        let outlier = &settings.outlier;
        let siblings = self.state.members();
        let ejected = siblings.iter().filter(|r| r.is_ejected(now)).count();
        if !outlier::may_eject(ejected, siblings.len(), outlier.max_ejected_percent) {
            tracing::debug!(upstream = %self.upstream, replica = %self.label, "not ejected: too much of the pool is out");
            return;
        }
        // A replica that behaved for a whole maximum ejection starts its backoff afresh.
        let quiet = now.saturating_sub(self.last_release.load(Ordering::Relaxed));
        if quiet > outlier.max_ejection.as_micros() as u64 {
            self.ejections.store(0, Ordering::Relaxed);
        }
        let nth = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = outlier::ejection_time(outlier.base_ejection, outlier.max_ejection, nth);
        let release = now.saturating_add(time.as_micros() as u64);
        self.release_at.store(release, Ordering::Relaxed);
        let until = if settings.health.mode == HealthMode::Active {
            UNTIL_PROBED
        } else {
            release
        };
        self.ejected_until.store(until, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        tracing::warn!(
            upstream = %self.upstream,
            replica = %self.label,
            ejection = nth,
            for_ms = time.as_millis() as u64,
            "replica ejected after consecutive failures"
        );
    }

    /// A readiness probe passed: ends an ejection whose backoff is over.
    pub(crate) fn probe_passed(&self) {
        let now = self.state.now_us();
        if self.ejected_until.load(Ordering::Relaxed) == UNTIL_PROBED
            && now >= self.release_at.load(Ordering::Relaxed)
        {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.last_release.store(now, Ordering::Relaxed);
            tracing::info!(upstream = %self.upstream, replica = %self.label, "replica back after ejection");
        }
    }

    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
        if !live {
            self.pool.close_idle();
        }
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        if ready && !self.ready.load(Ordering::Relaxed) {
            self.ready_since
                .store(self.state.now_us(), Ordering::Relaxed);
        }
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Takes the replica out of rotation for good: no new requests, no connection reuse;
    /// in-flight requests finish.
    pub fn drain(&self) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            self.pool.retire();
            self.stop.cancel();
        }
    }

    pub(crate) fn set_report(&self, report: ProbeReport) {
        *self.report.lock().unwrap_or_else(PoisonError::into_inner) = report;
    }

    /// The latest probe results.
    pub fn report(&self) -> ProbeReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the first probe round as done.
    pub(crate) fn first_round_done(&self) {
        self.first_round.send_replace(true);
    }

    /// Resolves once the first probe round has completed, whatever its result.
    pub async fn first_round(&self) {
        let mut rx = self.first_round.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("upstream", &self.upstream)
            .field("addr", &self.addr)
            .finish()
    }
}

/// RAII in-flight count: decremented when the request (including its response body) ends.
pub struct InFlight(Arc<Replica>);

impl InFlight {
    /// The replica this request went to.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
