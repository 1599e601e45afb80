//! The scrape: labels the hot-path atomics of the current snapshot and reads state that lives
//! elsewhere (replica health, certificates, TLS handshake counts). Whatever the current
//! snapshot no longer holds is simply not emitted.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::Sources;
use super::hot::{HistogramSnapshot, METHODS, RouteMetrics, STATUS_CLASSES, UPSTREAM_ERRORS};
use crate::ratelimit::Limiter;
use crate::snapshot::Snapshot;
use crate::tls::{CertStore, HandshakeFailures};

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if let Some(shared) = self.shared.get() {
            let snap = shared.snapshot.load_full();
            routes(&mut encoder, &snap)?;
            rate_limits(&mut encoder, &snap)?;
            upstreams(&mut encoder, &snap)?;
            certificates(&mut encoder, &shared.certs)?;
        }
        if let Some(handshakes) = self.handshakes.get() {
            tls(&mut encoder, handshakes)?;
        }
        Ok(())
    }
}

/// One counter without labels.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

/// One counter family: HELP/TYPE, then a sample per label set.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, u64>(&value, None)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

fn histograms<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, HistogramSnapshot)>,
) -> Result<(), fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in series {
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
    }
    Ok(())
}

/// Routes of the snapshot sorted by name, plus the counters of requests no route matched
/// (labelled `route=""`).
fn route_metrics(snap: &Snapshot) -> Vec<(Arc<str>, Arc<RouteMetrics>)> {
    let mut list: Vec<_> = snap
        .router
        .values()
        .filter_map(|r| Some((Arc::clone(&r.name), Arc::clone(r.metrics.as_ref()?))))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(unrouted) = &snap.unrouted {
        list.push((Arc::from(""), Arc::clone(unrouted)));
    }
    list
}

fn routes(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> Result<(), fmt::Error> {
    let list = route_metrics(snap);
    let mut requests = Vec::new();
    for (name, m) in &list {
        for (mi, method) in METHODS.iter().enumerate() {
            for (ci, class) in STATUS_CLASSES.iter().enumerate() {
                let n = m.requests(mi, ci);
                // Only combinations seen: 40 zero series per route would bury the real ones.
                if n > 0 {
                    let labels = [
                        ("route", &**name),
                        ("method", *method),
                        ("status_class", *class),
                    ];
                    requests.push((labels, n));
                }
            }
        }
    }
    counters(
        encoder,
        "requests",
        "Requests answered, by route, method and status class",
        requests,
    )?;
    histograms(
        encoder,
        "request_duration",
        "Time from the request head to the response head, by route",
        list.iter()
            .map(|(name, m)| ([("route", &**name)], m.duration.snapshot())),
    )?;
    counters(
        encoder,
        "rate_limited_requests",
        "Requests refused with 429 by a rate limit, by route",
        list.iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, m)| ([("route", &**name)], m.rate_limited_count())),
    )
}

/// Each rate limit the routes of the snapshot use, once, by name; and the Redis backend they
/// share, if any. Read at scrape time: the request path only counts in the limiters.
fn rate_limits(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> Result<(), fmt::Error> {
    let mut limits: Vec<&Arc<Limiter>> = snap.router.values().flat_map(|r| &r.limits).collect();
    limits.sort_by(|a, b| a.name.cmp(&b.name));
    limits.dedup_by(|a, b| Arc::ptr_eq(a, b));
    if limits.is_empty() {
        return Ok(());
    }
    gauges(
        encoder,
        "rate_limit_keys",
        "Buckets a rate limit tracks now (clients, header values), by limit",
        None,
        limits
            .iter()
            .map(|l| ([("limit", &*l.name)], l.local().tracked_keys() as f64)),
    )?;
    gauges(
        encoder,
        "rate_limit_max_keys",
        "Most buckets a rate limit tracks before new keys share its overflow bucket",
        None,
        limits
            .iter()
            .map(|l| ([("limit", &*l.name)], l.local().max_keys() as f64)),
    )?;
    counters(
        encoder,
        "rate_limit_overflow_decisions",
        "Decisions made in the shared overflow bucket because the key cap was reached",
        limits
            .iter()
            .map(|l| ([("limit", &*l.name)], l.local().overflow_hits())),
    )?;
    let Some(redis) = limits.iter().find_map(|l| l.redis()) else {
        return Ok(());
    };
    let stats = redis.stats();
    counter(
        encoder,
        "rate_limit_redis_failures",
        "Redis calls for shared rate limits that failed or timed out",
        stats.failures,
    )?;
    counter(
        encoder,
        "rate_limit_redis_fallbacks",
        "Rate-limit decisions made without Redis (locally, or 429 when failing closed)",
        stats.fallbacks,
    )
}

fn upstreams(encoder: &mut DescriptorEncoder, snap: &Snapshot) -> Result<(), fmt::Error> {
    let mut ups: Vec<_> = snap.upstreams.values().collect();
    ups.sort_by(|a, b| a.name.cmp(&b.name));
    let members: Vec<_> = ups
        .iter()
        .map(|up| (Arc::clone(&up.name), up.members().replicas.clone()))
        .collect();
    let per_replica = || {
        members.iter().flat_map(|(name, replicas)| {
            replicas
                .iter()
                .map(move |r| ([("upstream", &**name), ("replica", &*r.label)], r))
        })
    };

    histograms(
        encoder,
        "upstream_request_duration",
        "Time from sending to a replica to its response head",
        per_replica().map(|(labels, r)| (labels, r.metrics.duration.snapshot())),
    )?;
    let mut errors = Vec::new();
    for (name, replicas) in &members {
        for r in replicas {
            for (i, kind) in UPSTREAM_ERRORS.iter().enumerate() {
                let n = r.metrics.errors(i);
                if n > 0 {
                    errors.push((
                        [
                            ("upstream", &**name),
                            ("replica", &*r.label),
                            ("kind", kind),
                        ],
                        n,
                    ));
                }
            }
        }
    }
    counters(
        encoder,
        "upstream_errors",
        "Failed exchanges with a replica, by kind",
        errors,
    )?;
    counters(
        encoder,
        "upstream_retries",
        "Requests sent again to another replica",
        ups.iter()
            .map(|up| ([("upstream", &*up.name)], up.state.metrics.retries())),
    )?;
    counters(
        encoder,
        "upstream_retry_budget_exhausted",
        "Retries refused because the retry budget was spent",
        ups.iter().map(|up| {
            (
                [("upstream", &*up.name)],
                up.state.metrics.budget_exhaustions(),
            )
        }),
    )?;

    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    gauges(
        encoder,
        "replica_live",
        "1 when the replica's liveness probe passes",
        None,
        per_replica().map(|(labels, r)| (labels, flag(r.is_live()))),
    )?;
    gauges(
        encoder,
        "replica_ready",
        "1 when the replica's readiness probe passes (or probes are off)",
        None,
        per_replica().map(|(labels, r)| (labels, flag(r.is_ready()))),
    )?;
    gauges(
        encoder,
        "replica_ejected",
        "1 while passive health has taken the replica out",
        None,
        per_replica().map(|(labels, r)| (labels, flag(r.is_ejected(r.state.now_us())))),
    )?;
    gauges(
        encoder,
        "replica_in_flight_requests",
        "Requests being served by the replica",
        None,
        per_replica().map(|(labels, r)| (labels, r.in_flight() as f64)),
    )
}

fn certificates(encoder: &mut DescriptorEncoder, certs: &CertStore) -> Result<(), fmt::Error> {
    let list = certs.list();
    let names: Vec<String> = list.iter().map(|c| c.names.join(",")).collect();
    gauges(
        encoder,
        "certificate_expiry_timestamp",
        "When each loaded certificate expires (Unix time)",
        Some(&Unit::Seconds),
        list.iter().zip(&names).map(|(c, names)| {
            (
                [
                    ("names", names.as_str()),
                    ("source", c.source),
                    ("serial", c.serial_hex.as_str()),
                ],
                super::unix_seconds(c.not_after),
            )
        }),
    )
}

fn tls(encoder: &mut DescriptorEncoder, handshakes: &HandshakeFailures) -> Result<(), fmt::Error> {
    counter(
        encoder,
        "tls_handshakes",
        "Completed TLS handshakes",
        handshakes.handshakes_ok(),
    )?;
    counters(
        encoder,
        "tls_handshake_failures",
        "Failed TLS handshakes by reason",
        handshakes
            .counts()
            .into_iter()
            .map(|(reason, n)| ([("reason", reason)], n)),
    )
}
