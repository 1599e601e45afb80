//! Rate limits owned by routes: keyed GCRA limiters, local or shared through Redis.
//!
//! A [`Limiter`] is compiled from one `[rate_limits.<name>]` definition and lives in the
//! [`Registry`] while a snapshot uses it, so a rebuilt snapshot with the same definition keeps
//! its buckets. A route holds its limiters in order; [`check`] asks each of them and denies
//! when any one does.
//!
//! - [`local`]: governor's GCRA over a store capped at `max_keys` keys, idle keys evicted by a
//!   background task that ends with the limiter.
//! - [`redis`]: the same algorithm as one Lua script, with a failure policy.
//! - [`headers`]: `Retry-After`, `RateLimit-Policy`, `RateLimit` (draft-10 syntax).

pub mod headers;
pub mod local;
pub mod redis;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use http::HeaderMap;

use crate::config::{self, LimitBackend, LimitKey, RateLimit, RedisFailure};
pub use headers::RateHeaders;
pub use local::{Key, LocalLimiter, Verdict};
pub use redis::{RedisBackend, RedisStats, redact_url};

/// Where ACME HTTP-01 challenges are answered; never limited, so a certificate can always be
/// obtained or renewed, however busy the site.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Whether a (normalised) path is exempt from rate limits.
pub fn is_exempt(path: &str) -> bool {
    path.starts_with(ACME_CHALLENGE_PREFIX)
}

/// FNV-1a: stable across processes and versions, so every gateway derives the same Redis key
/// from a header value or route name. The map that holds local buckets hashes keys again with
/// a random seed, so chosen inputs cannot flood it.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One compiled `[rate_limits.<name>]`.
pub struct Limiter<C: Clock = DefaultClock> {
    /// The definition's name.
    pub name: Arc<str>,
    definition: RateLimit,
    /// Time one request takes out of a bucket: `window / requests`.
    interval: Duration,
    v6_mask: u128,
    /// `"name";q=..;w=..`, built once.
    policy: String,
    local: LocalLimiter<C>,
    redis: Option<Arc<RedisBackend>>,
}

impl<C: Clock> Limiter<C> {
    /// Compiles `definition` on `clock`; `redis` is used when its backend is Redis.
    pub fn new(definition: &RateLimit, redis: Option<Arc<RedisBackend>>, clock: C) -> Self {
        let name: Arc<str> = definition.name.as_str().into();
        let interval = definition.window / definition.requests.max(1);
        let burst = NonZeroU32::new(definition.burst).unwrap_or(NonZeroU32::MIN);
        let prefix = u32::from(definition.ipv6_prefix.clamp(1, 128));
        Self {
            local: LocalLimiter::new(
                Arc::clone(&name),
                interval,
                burst,
                definition.max_keys,
                clock,
            ),
            policy: headers::policy_item(&name, definition.requests, definition.window),
            name,
            interval,
            v6_mask: u128::MAX << (128 - prefix),
            redis: match definition.backend {
                LimitBackend::Redis => redis,
                LimitBackend::Local => None,
            },
            definition: definition.clone(),
        }
    }

    /// The bucket a request falls in. `route_key` is [`stable_hash`] of the route's name.
    pub fn key(&self, client: IpAddr, headers: &HeaderMap, route_key: u64) -> Key {
        match &self.definition.key {
            LimitKey::ClientIp => self.client_key(client),
            LimitKey::Header(name) => match headers.get(name) {
                Some(value) => Key::Header(stable_hash(value.as_bytes())),
                None => self.client_key(client),
            },
            LimitKey::Route => Key::Route(route_key),
        }
    }

    fn client_key(&self, client: IpAddr) -> Key {
        match client {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::V4(u32::from(v4)),
                None => {
                    let masked = u128::from(v6) & self.v6_mask;
                    Key::V6((masked >> 64) as u64, masked as u64)
                }
            },
        }
    }

    /// Decides for one request in `key`'s bucket.
    pub async fn check(&self, key: Key) -> Verdict {
        match &self.redis {
            None => self.local.check(&key),
            // Boxed: the Redis call's state is large, and a local decision's future should not
            // carry (and copy) it.
            Some(redis) => Box::pin(self.check_shared(redis, key)).await,
        }
    }

    async fn check_shared(&self, redis: &RedisBackend, key: Key) -> Verdict {
        let shared = redis
            .check(&self.redis_key(key), self.interval, self.definition.burst)
            .await;
        match (shared, redis.failure) {
            (Some(verdict), _) => verdict,
            (None, RedisFailure::FailOpen) => self.local.check(&key),
            (None, RedisFailure::FailClosed) => Verdict::Denied {
                retry_after: redis::RETRY_EVERY.max(Duration::from_secs(1)),
            },
        }
    }

    /// The Redis key of a bucket: the same on every gateway.
    fn redis_key(&self, key: Key) -> String {
        let name = &self.name;
        match key {
            Key::V4(ip) => format!("edgeward:rl:{name}:4:{ip:08x}"),
            Key::V6(hi, lo) => format!("edgeward:rl:{name}:6:{hi:016x}{lo:016x}"),
            Key::Header(h) => format!("edgeward:rl:{name}:h:{h:016x}"),
            Key::Route(h) => format!("edgeward:rl:{name}:r:{h:016x}"),
            Key::Overflow => format!("edgeward:rl:{name}:overflow"),
        }
    }

    /// Whether allowed responses carry the `RateLimit*` fields.
    pub fn sends_headers(&self) -> bool {
        self.definition.headers
    }

    /// The `RateLimit-Policy` item.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The in-process limiter (the whole limiter for local limits, the fallback for Redis).
    pub fn local(&self) -> &LocalLimiter<C> {
        &self.local
    }

    /// The Redis backend, for Redis limits.
    pub fn redis(&self) -> Option<&Arc<RedisBackend>> {
        self.redis.as_ref()
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub struct Denial {
    /// The limit that refused it.
    pub limit: Arc<str>,
    /// `Retry-After` and `RateLimit*` for the 429.
    pub headers: RateHeaders,
}

/// Checks the limits of a route in order and stops at the first that refuses: limits before
/// it have counted the request (the client did send it), limits after it have not.
///
/// Returns the headers to add to the response when any limit sends them, or the denial.
pub async fn check<C: Clock>(
    limiters: &[Arc<Limiter<C>>],
    client: IpAddr,
    request_headers: &HeaderMap,
    route_key: u64,
) -> Result<Option<RateHeaders>, Box<Denial>> {
    let mut allowed = RateHeaders::default();
    for limiter in limiters {
        let key = limiter.key(client, request_headers, route_key);
        match limiter.check(key).await {
            Verdict::Allowed { remaining, reset } => {
                if limiter.sends_headers() {
                    allowed.push(limiter.policy(), remaining, reset);
                }
            }
            Verdict::Denied { retry_after } => {
                let mut headers = RateHeaders::default();
                headers.push(limiter.policy(), 0, retry_after);
                headers.set_retry_after(retry_after);
                return Err(Box::new(Denial {
                    limit: Arc::clone(&limiter.name),
                    headers,
                }));
            }
        }
    }
    Ok((!allowed.is_empty()).then_some(allowed))
}

/// A limiter's identity: its definition, and the Redis it shares buckets through.
type LimiterKey = (RateLimit, Option<config::Redis>);

/// Limiters by definition, kept while any snapshot holds them, and the Redis connection.
#[derive(Default)]
pub struct Registry {
    limiters: Mutex<HashMap<LimiterKey, Weak<Limiter>>>,
    redis: Mutex<Option<(config::Redis, Arc<RedisBackend>)>>,
}

impl Registry {
    /// The live limiter for this definition, or a new one with empty buckets and its eviction
    /// task. Call inside a tokio runtime (Redis connections and the task need one).
    pub fn limiter(&self, definition: &RateLimit, redis: Option<&config::Redis>) -> Arc<Limiter> {
        let redis = match definition.backend {
            LimitBackend::Redis => redis,
            LimitBackend::Local => None,
        };
        let key: LimiterKey = (definition.clone(), redis.cloned());
        let mut map = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let backend = redis.and_then(|r| self.redis_backend(r));
        let limiter = Arc::new(Limiter::new(definition, backend, DefaultClock::default()));
        spawn_eviction(&limiter, definition.window);
        map.insert(key, Arc::downgrade(&limiter));
        limiter
    }

    /// One connection per Redis configuration; replaced when the configuration changes.
    fn redis_backend(&self, config: &config::Redis) -> Option<Arc<RedisBackend>> {
        let mut slot = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((current, backend)) = slot.as_ref() {
            if current == config {
                return Some(Arc::clone(backend));
            }
        }
        match RedisBackend::new(config) {
            Ok(backend) => {
                let backend = Arc::new(backend);
                *slot = Some((config.clone(), Arc::clone(&backend)));
                Some(backend)
            }
            Err(e) => {
                // Validation parsed the URL already; this is a client-side setup failure.
                tracing::error!(
                    redis = %redact_url(&config.url),
                    error = %e,
                    "cannot set up the Redis client; Redis-backed limits run locally"
                );
                None
            }
        }
    }
}

/// Evicts idle keys every `window` (between 1 s and 60 s) until the limiter is dropped. The
/// sweep locks map shards one by one, so it runs on a blocking thread.
fn spawn_eviction(limiter: &Arc<Limiter>, window: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(limiter);
    let every = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(limiter) = weak.upgrade() else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || limiter.local.evict()).await;
        }
    });
}
