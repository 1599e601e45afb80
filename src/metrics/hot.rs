//! What a request touches: plain atomics in structs resolved when the snapshot is built (per
//! route) or when a replica is created (per replica). No labels are formatted and no map is
//! consulted per request; the scrape turns these into labelled series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::error::UpstreamFailure;
use crate::upstream::pool::ErrorKind;

/// Upper bounds of the duration histograms, in microseconds (0.5 ms to 60 s): a gateway sees
/// cache hits well under a millisecond and long polls near its timeouts.
pub const BUCKETS_US: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 60_000_000,
];

/// A duration histogram of atomics: one counter per bucket (not cumulative; the scrape sums
/// them), the total in microseconds and the count.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A histogram read at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
    /// `(upper bound in seconds, count in this bucket alone)`, ending with `+Inf`; the
    /// encoder makes them cumulative.
    pub buckets: Vec<(f64, u64)>,
}

impl DurationHistogram {
    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&upper| upper < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Buckets, sum and count, read now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BUCKETS_US.len() + 1);
        for (i, bucket) in self.buckets.iter().enumerate() {
            let n = bucket.load(Ordering::Relaxed);
            count += n;
            let upper = BUCKETS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((upper, n));
        }
        HistogramSnapshot {
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count,
            buckets,
        }
    }
}

/// The closed set of method labels; anything else is `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];

/// Status class labels, `1xx` to `5xx`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index of `method` in [`METHODS`].
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// Index of `status`'s class in [`STATUS_CLASSES`].
pub fn class_index(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

/// Per-route counters, carried across snapshots by route name so a reload does not reset
/// them.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    requests: [[AtomicU64; STATUS_CLASSES.len()]; METHODS.len()],
    /// Time from the request head to the response head.
    pub duration: DurationHistogram,
    rate_limited: AtomicU64,
}

impl RouteMetrics {
    /// Counts one answered request.
    pub fn record(&self, method: &Method, status: StatusCode, elapsed: Duration) {
        self.requests[method_index(method)][class_index(status)].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    /// Counts one request refused by a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests with this method and status class index.
    pub fn requests(&self, method: usize, class: usize) -> u64 {
        self.requests[method][class].load(Ordering::Relaxed)
    }

    /// Requests answered with any 5xx status.
    pub fn errors(&self) -> u64 {
        (0..METHODS.len()).map(|m| self.requests(m, 4)).sum()
    }

    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Requests refused by a rate limit.
    pub fn rate_limited_count(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
}

/// Failure kinds of an upstream exchange, as metric labels.
pub const UPSTREAM_ERRORS: [&str; 9] = [
    "connect_refused",
    "connect_timeout",
    "connect",
    "queue_timeout",
    "closed",
    "reset",
    "response_head_too_large",
    "other",
    "header_timeout",
];

fn failure_index(failure: UpstreamFailure) -> usize {
    match failure {
        UpstreamFailure::Pool(kind) => match kind {
            ErrorKind::ConnectRefused => 0,
            ErrorKind::ConnectTimeout => 1,
            ErrorKind::Connect => 2,
            ErrorKind::QueueTimeout => 3,
            ErrorKind::Closed => 4,
            ErrorKind::Reset => 5,
            ErrorKind::ResponseHeadTooLarge => 6,
            ErrorKind::Other => 7,
            ErrorKind::HeaderTimeout => 8,
        },
    }
}

/// Per-replica counters; they live in the replica, so they leave `/metrics` with it.
#[derive(Debug, Default)]
pub struct ReplicaMetrics {
    /// Request sent to response head, per attempt that got one.
    pub duration: DurationHistogram,
    errors: [AtomicU64; UPSTREAM_ERRORS.len()],
}

impl ReplicaMetrics {
    /// Counts one failed attempt.
    pub fn failed(&self, failure: UpstreamFailure) {
        self.errors[failure_index(failure)].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed attempts by [`UPSTREAM_ERRORS`] index.
    pub fn errors(&self, index: usize) -> u64 {
        self.errors[index].load(Ordering::Relaxed)
    }
}

/// Per-upstream counters, kept in the upstream's state across snapshots.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl UpstreamMetrics {
    /// Counts one retry sent to another replica.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one retry the retry budget refused.
    pub fn budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Refused retries so far.
    pub fn budget_exhaustions(&self) -> u64 {
        self.budget_exhausted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds_are_inclusive() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(501));
        h.observe(Duration::from_secs(120));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[1], (0.001, 1));
        assert_eq!(s.buckets[BUCKETS_US.len() - 1].1, 0);
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 1));
        assert!((s.sum - 120.001001).abs() < 1e-9);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(METHODS[method_index(&Method::PATCH)], "PATCH");
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(METHODS[method_index(&odd)], "other");
        assert_eq!(
            STATUS_CLASSES[class_index(StatusCode::SWITCHING_PROTOCOLS)],
            "1xx"
        );
        assert_eq!(STATUS_CLASSES[class_index(StatusCode::NOT_FOUND)], "4xx");
        assert_eq!(
            STATUS_CLASSES[class_index(StatusCode::from_u16(599).unwrap())],
            "5xx"
        );
        for kind in [ErrorKind::ConnectRefused, ErrorKind::ResponseHeadTooLarge] {
            assert_eq!(
                UPSTREAM_ERRORS[failure_index(UpstreamFailure::Pool(kind))],
                kind.as_str()
            );
        }
    }

    #[test]
    fn route_counts_by_method_and_class() {
        let m = RouteMetrics::default();
        for _ in 0..3 {
            m.record(&Method::GET, StatusCode::OK, Duration::from_millis(1));
        }
        m.record(
            &Method::POST,
            StatusCode::BAD_GATEWAY,
            Duration::from_millis(1),
        );
        assert_eq!(m.requests(0, 1), 3);
        assert_eq!(m.requests(2, 4), 1);
        assert_eq!((m.total(), m.errors()), (4, 1));
        assert_eq!(m.duration.count(), 4);
    }
}
