//! The in-process limiter: governor's GCRA over a keyed store with a cap on keys.
//!
//! governor's keyed stores grow without bound, so the store here counts the keys it tracks and,
//! at `max_keys`, sends every new key to one shared overflow bucket instead of growing. Idle
//! keys (whose bucket is full again, so forgetting them changes nothing) are removed by
//! [`LocalLimiter::evict`], which the registry runs on an interval.

use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

/// One bucket's identity. `Copy` and at most 24 bytes, so a decision allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// An IPv4 client (IPv4-mapped IPv6 clients included).
    V4(u32),
    /// An IPv6 client, masked to the limit's prefix (two halves keep the key 8-byte aligned).
    V6(u64, u64),
    /// A request header's value, hashed so that long values cost no memory.
    Header(u64),
    /// A route, by the hash of its name.
    Route(u64),
    /// The bucket that new keys share once the store is full.
    Overflow,
}

/// One write into the hasher instead of a discriminant and then each field. Keys of different
/// kinds may collide; `Eq` tells them apart.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (hi, lo) = match *self {
            Key::V4(ip) => (1, u64::from(ip)),
            Key::V6(hi, lo) => (hi, lo),
            Key::Header(h) => (2, h),
            Key::Route(h) => (3, h),
            Key::Overflow => (4, 0),
        };
        state.write_u128(u128::from(hi) << 64 | u128::from(lo));
    }
}

/// What one limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through.
    Allowed {
        /// Requests that could follow right now.
        remaining: u32,
        /// Until the bucket is full again (an upper bound, exact to one request's interval).
        reset: Duration,
    },
    /// Over the limit.
    Denied {
        /// Until the next request would be allowed.
        retry_after: Duration,
    },
}

/// Counters shared by the store and the limiter that owns it.
#[derive(Debug, Default)]
struct Counts {
    /// Keys in the map other than the overflow bucket.
    tracked: AtomicUsize,
    /// Requests decided by the overflow bucket.
    overflow_hits: AtomicU64,
    /// Whether the current stretch at the cap has been logged.
    overflow_logged: AtomicBool,
}

/// A [`DashMap`] of GCRA states that tracks at most `max_keys` keys.
#[derive(Debug)]
struct BoundedStore {
    map: DashMap<Key, InMemoryState>,
    max_keys: usize,
    counts: Arc<Counts>,
    /// For the log line at the cap.
    name: Arc<str>,
}

impl BoundedStore {
    /// Takes a slot for a new key, unless the store is full.
    fn admit(&self) -> bool {
        self.counts
            .tracked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    fn overflowed(&self) {
        self.counts.overflow_hits.fetch_add(1, Ordering::Relaxed);
        if !self.counts.overflow_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = %self.name,
                max_keys = self.max_keys,
                "rate limit tracks max_keys keys; new keys share one overflow bucket until idle keys are evicted"
            );
        }
    }
}

/// The stored theoretical arrival time, read without changing it.
fn stored_tat(state: &InMemoryState) -> Option<Nanos> {
    let read: Result<((), Nanos), Option<Nanos>> =
        state.measure_and_replace(&NotKeyed::NonKey, Err);
    read.err().flatten()
}

impl StateStore for BoundedStore {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Known key: one lookup under a shard read lock, then a CAS on the state.
        if let Some(state) = self.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        match self.map.entry(*key) {
            Entry::Occupied(entry) => entry.get().measure_and_replace(&NotKeyed::NonKey, f),
            Entry::Vacant(entry) if self.admit() => entry
                .insert(InMemoryState::default())
                .measure_and_replace(&NotKeyed::NonKey, f),
            Entry::Vacant(entry) => {
                drop(entry);
                self.overflowed();
                let state = self.map.entry(Key::Overflow).or_default();
                state.measure_and_replace(&NotKeyed::NonKey, f)
            }
        }
    }
}

impl ShrinkableKeyedStateStore<Key> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut removed = 0;
        self.map.retain(|key, state| {
            let keep = stored_tat(state).is_some_and(|tat| tat > drop_below);
            if !keep && *key != Key::Overflow {
                removed += 1;
            }
            keep
        });
        let before = self
            .counts
            .tracked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(removed))
            })
            .unwrap_or_default();
        if before.saturating_sub(removed) < self.max_keys {
            self.counts.overflow_logged.store(false, Ordering::Relaxed);
        }
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Lets the limiter own the store while [`LocalLimiter`] keeps a handle for statistics.
#[derive(Debug)]
struct SharedStore(Arc<BoundedStore>);

impl StateStore for SharedStore {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<Key> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&*self.0)
    }
}

/// A keyed GCRA limiter with bounded memory, on clock `C` (a fake one in tests: governor
/// keeps its own time, which `tokio::time::pause()` does not move).
pub struct LocalLimiter<C: Clock = DefaultClock> {
    gcra: RateLimiter<Key, SharedStore, C, StateInformationMiddleware>,
    store: Arc<BoundedStore>,
    /// Time one request takes out of the bucket.
    interval: Duration,
    burst: u32,
}

impl<C: Clock> LocalLimiter<C> {
    /// `burst` requests at once, refilled at one per `interval`; at most `max_keys` buckets.
    /// `name` labels the log line at the cap.
    pub fn new(
        name: Arc<str>,
        interval: Duration,
        burst: NonZeroU32,
        max_keys: usize,
        clock: C,
    ) -> Self {
        // A zero interval is rejected by config validation; one nanosecond is the floor.
        let interval = interval.max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        let store = Arc::new(BoundedStore {
            map: DashMap::new(),
            max_keys,
            counts: Arc::default(),
            name,
        });
        let gcra = RateLimiter::<Key, SharedStore, C, NoOpMiddleware<C::Instant>>::new(
            quota,
            SharedStore(Arc::clone(&store)),
            clock,
        )
        .with_middleware::<StateInformationMiddleware>();
        Self {
            gcra,
            store,
            interval,
            burst: burst.get(),
        }
    }

    /// Takes one request from `key`'s bucket if it has one.
    pub fn check(&self, key: &Key) -> Verdict {
        match self.gcra.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let spent = self.burst - remaining.min(self.burst);
                Verdict::Allowed {
                    remaining,
                    reset: self.interval.checked_mul(spent).unwrap_or(Duration::MAX),
                }
            }
            Err(not_until) => Verdict::Denied {
                retry_after: not_until.wait_time_from(self.gcra.clock().now()),
            },
        }
    }

    /// Forgets keys whose bucket is full again and gives the freed memory back.
    pub fn evict(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
    }

    /// Keys tracked (the overflow bucket not included).
    pub fn tracked_keys(&self) -> usize {
        self.store.counts.tracked.load(Ordering::Relaxed)
    }

    /// Most keys tracked before new ones share the overflow bucket.
    pub fn max_keys(&self) -> usize {
        self.store.max_keys
    }

    /// Entries the map has room for without growing.
    pub fn capacity(&self) -> usize {
        self.store.map.capacity()
    }

    /// Requests decided by the shared overflow bucket so far.
    pub fn overflow_hits(&self) -> u64 {
        self.store.counts.overflow_hits.load(Ordering::Relaxed)
    }

    /// The clock decisions are made on.
    pub fn clock(&self) -> &C {
        self.gcra.clock()
    }
}
