//! Active health: a pure rise/fall counter, one probe over its own connection, and one task
//! per replica that probes liveness and readiness on a jittered interval.
//!
//! Probes never go through the replica's pool: a probe must not wait behind traffic or take a
//! connection slot, and a pool full of slow requests is exactly when an honest answer matters.

use std::fmt;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{self, HealthMode};
use crate::upstream::replica::{ProbeReport, Replica};

/// Counts probe results in a row and says when the state flips.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    /// `None` until the first result, which decides the state at once.
    up: Option<bool>,
    streak: u32,
}

impl Counter {
    /// A counter whose state is already known.
    pub fn known(up: bool) -> Self {
        Self {
            up: Some(up),
            streak: 0,
        }
    }

    /// Records one result; returns the new state when it flips (or is first known).
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let Some(up) = self.up else {
            self.up = Some(ok);
            return Some(ok);
        };
        if ok == up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { rise } else { fall };
        if self.streak >= needed {
            self.up = Some(ok);
            self.streak = 0;
            return Some(ok);
        }
        None
    }
}

/// What one probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The replica answered with this status.
    Status(u16),
    /// No answer within the probe timeout.
    Timeout,
    /// The connection was refused.
    Refused,
    /// The connection failed otherwise, or the answer was not HTTP.
    Failed,
}

impl ProbeOutcome {
    /// Whether the outcome passes for an expected status range.
    pub fn passes(self, expected: (u16, u16)) -> bool {
        matches!(self, Self::Status(s) if (expected.0..=expected.1).contains(&s))
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => write!(f, "status {s}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Refused => f.write_str("refused"),
            Self::Failed => f.write_str("connection failed"),
        }
    }
}

/// One `GET path` on a new connection, bounded by `timeout` from connect to response head.
pub async fn probe(
    addr: SocketAddr,
    path: &str,
    host: &HeaderValue,
    timeout: Duration,
) -> ProbeOutcome {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ProbeOutcome::Refused
            } else {
                ProbeOutcome::Failed
            }
        })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ProbeOutcome::Failed)?;
        let request = Request::get(path)
            .header(HOST, host)
            .header(CONNECTION, HeaderValue::from_static("close"))
            .header(
                USER_AGENT,
                HeaderValue::from_static("edgeward-health-check"),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|_| ProbeOutcome::Failed)?;
        // Drive the connection in this future, not a task, so a hung replica leaves nothing
        // behind once the timeout drops it.
        // With `Connection: close` the connection may end right after delivering the answer;
        // the response future then resolves at once, so wait for it either way.
        let mut conn = pin!(conn);
        let mut send = pin!(sender.send_request(request));
        let resp = tokio::select! {
            biased;
            resp = &mut send => resp,
            _ = &mut conn => send.await,
        };
        resp.map(|r| ProbeOutcome::Status(r.status().as_u16()))
            .map_err(|_| ProbeOutcome::Failed)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(outcome) | Err(outcome)) => outcome,
        Err(_) => ProbeOutcome::Timeout,
    }
}

/// Starts the replica's probe task; it ends when the replica is dropped or drained.
pub(crate) fn spawn(replica: &Arc<Replica>) {
    let stop = replica.stop.clone();
    let weak = Arc::downgrade(replica);
    tokio::spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = run(weak) => {}
        }
    });
}

/// The probe loop: a first round at once (new replicas and gateway readiness wait for it),
/// then one round per interval from a per-replica phase, skipping missed ticks so probes
/// never pile up behind a slow one.
async fn run(weak: Weak<Replica>) {
    let mut live = Counter::default();
    let mut ready = Counter::default();
    let mut period = Duration::ZERO;
    let mut ticks = tokio::time::interval(Duration::from_secs(3600));
    loop {
        let Some(replica) = weak.upgrade() else {
            return;
        };
        let settings = replica.state.settings();
        let health = &settings.health;
        if health.interval != period {
            period = health.interval;
            let phase = period.mul_f64(fastrand::f64());
            ticks = tokio::time::interval_at(Instant::now() + phase.max(period / 2), period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        }
        match health.mode {
            HealthMode::Off => {
                live = Counter::known(true);
                ready = Counter::known(true);
                replica.set_live(true);
                replica.set_ready(true);
                replica.first_round_done();
            }
            HealthMode::Active => round(&replica, &settings, &mut live, &mut ready).await,
        }
        drop(replica);
        ticks.tick().await;
    }
}

/// Probes liveness and readiness together and applies the results.
async fn round(
    replica: &Replica,
    settings: &config::Upstream,
    live: &mut Counter,
    ready: &mut Counter,
) {
    let health = &settings.health;
    let host = health.host.clone().unwrap_or_else(|| {
        HeaderValue::from_str(&replica.label).unwrap_or(HeaderValue::from_static("localhost"))
    });
    let (live_out, ready_out) = tokio::join!(
        probe(replica.addr, &health.live_path, &host, health.timeout),
        probe(replica.addr, &health.ready_path, &host, health.timeout),
    );
    replica.set_report(ProbeReport {
        live: Some(live_out),
        ready: Some(ready_out),
        at: Some(SystemTime::now()),
    });

    let expected = health.expected_status;
    let (up, name, label) = (&replica.upstream, "replica", &replica.label);
    if let Some(now_live) = live.record(live_out.passes(expected), health.rise, health.fall) {
        replica.set_live(now_live);
        if now_live {
            tracing::info!(upstream = %up, replica = %label, "{name} live");
        } else {
            tracing::warn!(upstream = %up, replica = %label, reason = %live_out, path = %health.live_path, "{name} not live: out of rotation, idle connections closed");
        }
    }
    let ready_ok = ready_out.passes(expected);
    if let Some(now_ready) = ready.record(ready_ok, health.rise, health.fall) {
        replica.set_ready(now_ready);
        if now_ready {
            tracing::info!(upstream = %up, replica = %label, "{name} ready");
        } else {
            tracing::warn!(upstream = %up, replica = %label, reason = %ready_out, path = %health.ready_path, "{name} not ready: draining");
        }
    }
    if ready_ok && live_out.passes(expected) {
        replica.probe_passed();
    }
    replica.first_round_done();

    let is_404 = |o: Option<ProbeOutcome>| o == Some(ProbeOutcome::Status(404));
    replica
        .state
        .check_probe_path(&health.live_path, |r| is_404(r.report().live));
    if health.ready_path != health.live_path {
        replica
            .state
            .check_probe_path(&health.ready_path, |r| is_404(r.report().ready));
    }
}

#[cfg(test)]
mod tests {
    use super::{Counter, ProbeOutcome};

    #[test]
    fn first_result_decides_then_rise_and_fall() {
        let mut c = Counter::default();
        assert_eq!(c.record(false, 2, 3), Some(false));
        assert_eq!(c.record(false, 2, 3), None);
        assert_eq!(c.record(true, 2, 3), None);
        assert_eq!(c.record(true, 2, 3), Some(true), "rise = 2");
        assert_eq!(c.record(false, 2, 3), None);
        assert_eq!(c.record(false, 2, 3), None);
        assert_eq!(c.record(false, 2, 3), Some(false), "fall = 3");
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut c = Counter::known(true);
        assert_eq!(c.record(false, 2, 2), None);
        assert_eq!(c.record(true, 2, 2), None);
        assert_eq!(c.record(false, 2, 2), None);
        assert_eq!(c.record(false, 2, 2), Some(false));
    }

    #[test]
    fn outcomes_pass_by_range_and_read_well() {
        assert!(ProbeOutcome::Status(204).passes((200, 399)));
        assert!(!ProbeOutcome::Status(503).passes((200, 399)));
        assert!(!ProbeOutcome::Timeout.passes((200, 399)));
        assert_eq!(ProbeOutcome::Status(503).to_string(), "status 503");
        assert_eq!(ProbeOutcome::Refused.to_string(), "refused");
    }
}
