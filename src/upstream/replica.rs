//! Per-replica state that outlives snapshots, and the upstream a route proxies to.
//!
//! A [`Replica`] is keyed by upstream name + address and lives in the [`Registry`] as long as
//! some snapshot uses it, so a rebuilt snapshot picks up the same connection pool and counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::body::RequestBody;
use crate::config;
use crate::upstream::pool::{Pool, PoolSettings};

/// One replica of an upstream: its connection pool and live counters.
pub struct Replica {
    /// The upstream's name.
    pub upstream: Arc<str>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `addr` as text, for logs and metric labels.
    pub label: Arc<str>,
    /// The replica's HTTP/1.1 connections.
    pub pool: Arc<Pool<RequestBody>>,
    in_flight: AtomicUsize,
}

impl Replica {
    /// Requests being served by this replica right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
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

/// An upstream as compiled into a snapshot.
#[derive(Debug)]
pub struct Upstream {
    /// Its name from the config.
    pub name: Arc<str>,
    /// Every replica, in config order (DNS names expanded to their addresses).
    pub replicas: Vec<Arc<Replica>>,
    /// Replica indices repeated by weight and interleaved, for weighted round-robin.
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl Upstream {
    /// Builds the upstream over already-registered replicas with their weights.
    pub fn new(name: Arc<str>, replicas: Vec<(Arc<Replica>, u32)>) -> Self {
        let schedule = interleave(&replicas.iter().map(|(_, w)| *w).collect::<Vec<_>>());
        Self {
            name,
            replicas: replicas.into_iter().map(|(r, _)| r).collect(),
            schedule,
            next: AtomicUsize::new(0),
        }
    }

    /// The next replica by weighted round-robin.
    pub fn pick(&self) -> Option<&Arc<Replica>> {
        if self.schedule.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.replicas.get(self.schedule[n % self.schedule.len()])
    }
}

/// Spreads each index over the schedule in proportion to its weight (smooth weighted
/// round-robin, as nginx does), so weight 2 vs 1 gives `0 1 0`, not `0 0 1`.
fn interleave(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|&(i, c)| (*c, -(i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

/// A replica's identity: upstream name and address.
type ReplicaKey = (Arc<str>, SocketAddr);

/// Replicas by identity, kept while any snapshot holds them.
#[derive(Default)]
pub struct Registry {
    replicas: Mutex<HashMap<ReplicaKey, Weak<Replica>>>,
}

impl Registry {
    /// The live replica for this identity, or a new one with a fresh pool.
    pub fn replica(
        &self,
        upstream: &config::Upstream,
        addr: SocketAddr,
        connect_timeout: Option<std::time::Duration>,
    ) -> Arc<Replica> {
        let mut map = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        let key: ReplicaKey = (upstream.name.as_str().into(), addr);
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let settings = PoolSettings {
            max_connections: upstream.max_connections,
            queue_timeout: upstream.queue_timeout,
            idle_timeout: upstream.idle_timeout,
            connect_timeout,
            max_response_header: upstream.max_response_header,
        };
        let replica = Arc::new(Replica {
            upstream: Arc::clone(&key.0),
            addr,
            label: addr.to_string().into(),
            pool: Pool::new(addr, settings),
            in_flight: AtomicUsize::new(0),
        });
        map.insert(key, Arc::downgrade(&replica));
        replica
    }
}

#[cfg(test)]
mod tests {
    use super::interleave;

    #[test]
    fn smooth_weighted_schedule() {
        assert_eq!(interleave(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(interleave(&[2, 1]), vec![0, 1, 0]);
        let s = interleave(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 5);
        // Never more than two heavy picks in a row around the light ones.
        assert_ne!(&s[..3], &[0, 0, 0]);
    }
}
