//! Limits shared through Redis: one atomic Lua script per decision implements GCRA the way
//! redis-cell does (the theoretical arrival time per key, expiring once the bucket is full
//! again, on the Redis server's clock so gateways need not agree on time).
//!
//! While Redis is slow or down, calls are skipped except for one trial every
//! [`RETRY_EVERY`], so requests do not each wait out the timeout; the caller follows the
//! configured failure policy. The outage is logged once and counted, and the first trial that
//! succeeds ends it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::local::Verdict;
use crate::config::{self, RedisFailure};

/// How often a trial call goes through while Redis is down.
pub const RETRY_EVERY: Duration = Duration::from_millis(200);

/// KEYS[1]: the bucket. ARGV[1]: microseconds per request; ARGV[2]: burst tolerance in
/// microseconds (`interval * (burst - 1)`). Returns `{allowed, remaining, retry_after_us,
/// reset_us}`.
///
/// Reading `TIME` before writing needs effect replication: the default since Redis 5, and
/// switched on explicitly for Redis 3.2 and 4.
const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local allow_at = tat - tau
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
local remaining = math.floor((now + tau + interval - new_tat) / interval)
return {1, remaining, 0, new_tat - now}
";

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // `redis://secret@host` is read as a password by Redis clients.
        None => "***".to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

/// Counters of one Redis backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    /// Calls that failed or timed out.
    pub failures: u64,
    /// Decisions made without Redis (by the local limiter, or 429 when failing closed).
    pub fallbacks: u64,
}

/// The Redis connection shared by every limit with `backend = "redis"`.
pub struct RedisBackend {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    /// What limits do while Redis is unavailable.
    pub failure: RedisFailure,
    url: String,
    down: AtomicBool,
    /// Milliseconds since `start` before which no trial call is made while down.
    next_try_ms: AtomicU64,
    start: Instant,
    failures: AtomicU64,
    fallbacks: AtomicU64,
}

impl RedisBackend {
    /// A client that connects on first use and reconnects by itself. Must be called inside a
    /// tokio runtime.
    pub fn new(config: &config::Redis) -> Result<Self, redis::RedisError> {
        if config.url.starts_with("rediss://") {
            // The redis client builds its rustls config from the process default; an
            // already installed provider is fine.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let client = redis::Client::open(config.url.as_str())?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_secs(1))))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, settings)?;
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            timeout: config.timeout,
            failure: config.failure,
            url: redact_url(&config.url),
            down: AtomicBool::new(false),
            next_try_ms: AtomicU64::new(0),
            start: Instant::now(),
            failures: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }

    /// One GCRA decision for `key`, or `None` when Redis is unavailable (the caller then
    /// follows [`RedisBackend::failure`]).
    pub async fn check(&self, key: &str, interval: Duration, burst: u32) -> Option<Verdict> {
        if !self.may_try() {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let tau_us = interval_us.saturating_mul(u64::from(burst.saturating_sub(1)));
        let mut conn = self.conn.clone();
        let mut call = self.script.key(key);
        call.arg(interval_us).arg(tau_us);
        let reply = tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut conn));
        match reply.await {
            Ok(Ok(values)) if values.len() == 4 => {
                self.recovered();
                Some(verdict(&values))
            }
            Ok(Ok(values)) => {
                self.failed(&format!("unexpected script reply {values:?}"));
                None
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed(&format!("no reply within {:?}", self.timeout));
                None
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            failures: self.failures.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Up: always. Down: only the one caller that claims the next trial slot.
    fn may_try(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.elapsed_ms();
        let next = self.next_try_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_try_ms
                .compare_exchange(
                    next,
                    now + RETRY_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn failed(&self, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.next_try_ms.store(
            self.elapsed_ms() + RETRY_EVERY.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !self.down.swap(true, Ordering::Relaxed) {
            let policy = match self.failure {
                RedisFailure::FailOpen => "fail_open: limits are decided by each gateway alone",
                RedisFailure::FailClosed => "fail_closed: requests to Redis-backed limits get 429",
            };
            tracing::warn!(redis = %self.url, error = why, "Redis unavailable; {policy}");
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(
                redis = %self.url,
                failures = self.failures.load(Ordering::Relaxed),
                "Redis reachable again; shared limits resumed"
            );
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn verdict(values: &[i64]) -> Verdict {
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    if values[0] == 1 {
        Verdict::Allowed {
            remaining: u32::try_from(values[1]).unwrap_or(0),
            reset: micros(values[3]),
        }
    } else {
        Verdict::Denied {
            retry_after: micros(values[2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("redis://user:s3cret@cache:6379/0"),
            "redis://user:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@cache:6380"),
            "rediss://:***@cache:6380"
        );
        assert_eq!(redact_url("redis://s3cret@cache"), "redis://***@cache");
        assert_eq!(redact_url("redis://cache:6379/2"), "redis://cache:6379/2");
        assert_eq!(
            redact_url("redis://u:p@ss@cache/1?x=y"),
            "redis://u:***@cache/1?x=y"
        );
    }
}
