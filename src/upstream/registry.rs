//! Replicas and per-upstream state by identity, kept while any snapshot (or request) holds
//! them, so a rebuilt snapshot reuses pools, counters and health.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::config;
use crate::upstream::health;
use crate::upstream::pool::{Pool, PoolSettings};
use crate::upstream::replica::Replica;

/// What an upstream shares across snapshots: its latest settings, the clock its replicas'
/// timestamps use, its replicas, and configuration errors found by probing.
pub struct UpstreamState {
    /// The upstream's name.
    pub name: Arc<str>,
    /// Retry counters for `/metrics`, kept across snapshots.
    pub metrics: crate::metrics::UpstreamMetrics,
    settings: ArcSwap<config::Upstream>,
    clock: Instant,
    members: Mutex<Vec<Weak<Replica>>>,
    missing_paths: Mutex<Vec<String>>,
}

impl UpstreamState {
    /// The settings of the latest snapshot that used this upstream.
    pub fn settings(&self) -> Arc<config::Upstream> {
        self.settings.load_full()
    }

    /// Microseconds since this upstream was first seen; replica timestamps use this clock.
    pub fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    /// [`now_us`](Self::now_us) for an instant the caller already read, so that one request
    /// reads the clock once for its pick, its idle connection and its record.
    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.clock).as_micros() as u64
    }

    /// The replicas still in rotation (alive and not draining).
    pub fn members(&self) -> Vec<Arc<Replica>> {
        let mut list = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        list.iter()
            .filter_map(Weak::upgrade)
            .filter(|r| !r.is_draining())
            .collect()
    }

    /// Probe paths that answered 404 on every replica: a configuration error.
    pub fn config_errors(&self) -> Vec<String> {
        self.missing_paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|path| format!("probe path {path} answers 404 on every replica"))
            .collect()
    }

    /// Re-checks whether `path` answers 404 everywhere after a probe; logs the error once
    /// when it appears.
    pub(crate) fn check_probe_path(&self, path: &str, last: impl Fn(&Replica) -> bool) {
        let members = self.members();
        let everywhere = !members.is_empty() && members.iter().all(|r| last(r));
        let mut missing = self
            .missing_paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = missing.iter().position(|p| p == path);
        match (everywhere, known) {
            (true, None) => {
                tracing::error!(
                    upstream = %self.name,
                    path,
                    "configuration error: the probe path answers 404 on every replica; set health.live_path / health.ready_path, or health.mode = \"off\""
                );
                missing.push(path.to_owned());
            }
            (false, Some(i)) => {
                missing.remove(i);
            }
            _ => {}
        }
    }
}

/// A replica's identity: upstream name and address.
type ReplicaKey = (Arc<str>, SocketAddr);

#[derive(Default)]
struct Maps {
    replicas: HashMap<ReplicaKey, Weak<Replica>>,
    upstreams: HashMap<Arc<str>, Weak<UpstreamState>>,
}

/// Replicas and upstream states by identity. Cheap to clone (DNS refresh tasks hold one).
#[derive(Clone, Default)]
pub struct Registry {
    maps: Arc<Mutex<Maps>>,
    /// Route counters by name, carried across snapshots like replicas.
    pub routes: Arc<crate::metrics::Carried>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state of `upstream`, updated to these settings (new if none is alive).
    pub fn upstream(&self, upstream: &config::Upstream) -> Arc<UpstreamState> {
        let mut maps = self.lock();
        maps.upstreams.retain(|_, w| w.strong_count() > 0);
        let name: Arc<str> = upstream.name.as_str().into();
        if let Some(state) = maps.upstreams.get(&name).and_then(Weak::upgrade) {
            state.settings.store(Arc::new(upstream.clone()));
            return state;
        }
        let state = Arc::new(UpstreamState {
            name: Arc::clone(&name),
            metrics: crate::metrics::UpstreamMetrics::default(),
            settings: ArcSwap::from_pointee(upstream.clone()),
            clock: Instant::now(),
            members: Mutex::new(Vec::new()),
            missing_paths: Mutex::new(Vec::new()),
        });
        maps.upstreams.insert(name, Arc::downgrade(&state));
        state
    }

    /// The replica at `addr` of `state`'s upstream, or a new one with a fresh pool and its
    /// probe task. A draining replica is not brought back: its pool no longer reuses
    /// connections, so a returning address gets a new replica.
    pub fn replica(
        &self,
        state: &Arc<UpstreamState>,
        addr: SocketAddr,
        connect_timeout: Option<Duration>,
    ) -> Arc<Replica> {
        let mut maps = self.lock();
        maps.replicas.retain(|_, weak| weak.strong_count() > 0);
        let key: ReplicaKey = (Arc::clone(&state.name), addr);
        if let Some(existing) = maps.replicas.get(&key).and_then(Weak::upgrade) {
            if !existing.is_draining() {
                return existing;
            }
        }
        let settings = state.settings();
        let pool = Pool::new(addr, PoolSettings::for_upstream(&settings, connect_timeout));
        let replica = Arc::new(Replica::new(Arc::clone(state), addr, pool));
        maps.replicas.insert(key, Arc::downgrade(&replica));
        drop(maps);
        state
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&replica));
        health::spawn(&replica);
        replica
    }
}
