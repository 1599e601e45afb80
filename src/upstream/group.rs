//! An upstream as compiled into a snapshot: its replicas (swappable, for DNS discovery), its
//! balancing rule and its retry budget.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use http::HeaderMap;
use tokio::time::Instant;

use crate::config::{HashOn, Policy};
use crate::forwarded::Added;
use crate::upstream::balancer::{self, Balance, Pick, View, hash_bytes};
use crate::upstream::registry::UpstreamState;
use crate::upstream::replica::Replica;
use crate::upstream::retry::RetryBudget;

/// The replicas an upstream balances over, with what the balancer precomputes from them.
#[derive(Debug, Default)]
pub struct Members {
    /// In config order, DNS names expanded to their addresses (sorted).
    pub replicas: Vec<Arc<Replica>>,
    weights: Vec<f64>,
    /// Replica indices repeated by weight and interleaved, for weighted round-robin.
    schedule: Vec<usize>,
}

impl Members {
    /// Members with their weights.
    pub fn new(list: Vec<(Arc<Replica>, u32)>) -> Self {
        let weights: Vec<u32> = list.iter().map(|(_, w)| *w).collect();
        Self {
            schedule: balancer::interleave(&weights),
            weights: weights.into_iter().map(f64::from).collect(),
            replicas: list.into_iter().map(|(r, _)| r).collect(),
        }
    }
}

/// Which fallback a pick used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Live, ready, not ejected, not draining.
    Eligible,
    /// `fail_open`: live and not draining.
    Live,
    /// `fail_open`: anything not draining.
    Any,
}

/// An upstream in a snapshot.
pub struct Upstream {
    /// Its name from the config.
    pub name: Arc<str>,
    /// State shared with the other snapshots' copies of this upstream.
    pub state: Arc<UpstreamState>,
    members: ArcSwap<Members>,
    balance: Balance,
    hash_on: Option<HashOn>,
    slow_start: Option<Duration>,
    fail_open: bool,
    /// Seeded randomness when the config sets `seed` (tests); thread-local otherwise.
    seeded: Option<Mutex<fastrand::Rng>>,
    turn: AtomicUsize,
    /// Bounds retries to this upstream.
    pub budget: RetryBudget,
    /// Bodies up to this size with a known length are buffered for retries.
    pub retry_buffer: u64,
    /// Other 5xx answers count as failures for ejection.
    pub count_5xx: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

impl Upstream {
    /// Builds the upstream over already-registered replicas with their weights.
    pub fn new(state: Arc<UpstreamState>, replicas: Vec<(Arc<Replica>, u32)>) -> Self {
        let settings = state.settings();
        let (balance, hash_on) = match &settings.policy {
            Policy::P2cEwma => (Balance::P2cEwma, None),
            Policy::RoundRobin => (Balance::RoundRobin, None),
            Policy::LeastConn => (Balance::LeastConn, None),
            Policy::Hash(on) => (Balance::Hash, Some(on.clone())),
        };
        Self {
            name: Arc::clone(&state.name),
            members: ArcSwap::from_pointee(Members::new(replicas)),
            balance,
            hash_on,
            slow_start: settings.slow_start,
            fail_open: settings.fail_open,
            seeded: settings
                .seed
                .map(|seed| Mutex::new(fastrand::Rng::with_seed(seed))),
            turn: AtomicUsize::new(0),
            budget: RetryBudget::new(settings.retry_budget_percent, settings.retry_budget_min),
            retry_buffer: settings.retry_buffer,
            count_5xx: settings.outlier.count_5xx,
            state,
        }
    }

    /// The current replicas.
    pub fn members(&self) -> Guard<Arc<Members>> {
        self.members.load()
    }

    /// Replaces the replicas (DNS discovery).
    pub fn set_members(&self, members: Members) {
        self.members.store(Arc::new(members));
    }

    /// The request's hash key, when the policy hashes: the header (as sent upstream, so one
    /// the gateway adds counts) or cookie, else the client address (so requests without the
    /// key still spread, and stick per client).
    pub fn hash_key(&self, headers: &HeaderMap, added: &Added, client: IpAddr) -> u64 {
        let from_request = match &self.hash_on {
            None => return 0,
            Some(HashOn::ClientIp) => None,
            Some(HashOn::Header(name)) => added
                .get(name)
                .or_else(|| headers.get(name))
                .map(|v| hash_bytes(v.as_bytes())),
            Some(HashOn::Cookie(name)) => cookie(headers, name).map(hash_bytes),
        };
        from_request.unwrap_or_else(|| match client {
            IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        })
    }

    /// Picks a replica for a request with hash `key`, skipping those in `tried`; `now` is
    /// when the attempt began.
    pub fn pick(&self, key: u64, tried: &[Arc<Replica>], now: Instant) -> Option<Arc<Replica>> {
        let members = self.members.load();
        let gates: &[Gate] = if self.fail_open {
            &[Gate::Eligible, Gate::Live, Gate::Any]
        } else {
            &[Gate::Eligible]
        };
        let now = self.state.us_at(now);
        // A retry does not take a turn of its own: the turn stays with the next request, so
        // one dead replica does not become every request's first choice.
        let turn = match (self.balance, tried.is_empty()) {
            (Balance::RoundRobin, true) => self.turn.fetch_add(1, Ordering::Relaxed),
            (Balance::RoundRobin, false) => self.turn.load(Ordering::Relaxed),
            _ => 0,
        };
        let plan = Pick {
            balance: self.balance,
            key,
            turn,
            schedule: &members.schedule,
        };
        for &gate in gates {
            let view = |i: usize| {
                let r = members.replicas.get(i)?;
                let open = match gate {
                    Gate::Eligible => r.is_eligible(now),
                    Gate::Live => r.is_usable_failing_open(true),
                    Gate::Any => r.is_usable_failing_open(false),
                };
                if !open || tried.iter().any(|t| Arc::ptr_eq(t, r)) {
                    return None;
                }
                Some(View {
                    weight: members.weights[i],
                    ramp: r.ramp(now, self.slow_start),
                    in_flight: r.in_flight(),
                    latency: if self.balance == Balance::P2cEwma {
                        r.latency_us(now)
                    } else {
                        0.0
                    },
                    id: r.id,
                })
            };
            let n = members.replicas.len();
            let picked = match &self.seeded {
                Some(rng) => {
                    let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
                    balancer::pick(n, view, &plan, &mut rng)
                }
                None => balancer::pick(n, view, &plan, &mut fastrand::Rng::new()),
            };
            if let Some(i) = picked {
                if gate != Gate::Eligible {
                    tracing::debug!(upstream = %self.name, "no ready replica: failing open");
                }
                return members.replicas.get(i).cloned();
            }
        }
        None
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (k == name.as_bytes()).then(|| &v[1..])
        })
}

#[cfg(test)]
mod tests {
    use super::cookie;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; session=xyz; sessionx=2"),
        );
        assert_eq!(cookie(&h, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie(&h, "sess"), None);
    }
}
