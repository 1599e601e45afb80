//! The Redis store: every key under a prefix, values as plain strings of bytes (SET is atomic),
//! locks as `SET key token NX PX lease`, renewed and released only by their holder through
//! compare-and-set Lua scripts. `rediss://` is recommended: the store holds private keys.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::{Lease, Locked, StoreError, check_key, new_token};

/// Extends the lock's expiry only if the caller's token still holds it.
const RENEW: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the lock only if the caller's token still holds it.
const RELEASE: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0";

/// A store on a Redis server shared by every replica.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    /// Connects lazily: a Redis that is down at start delays issuance, not the gateway.
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        // The redis client builds its rustls configuration from the process-wide default
        // provider; the gateway itself names aws-lc-rs explicitly, so install it once here.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(key)?;
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
    }

    /// Replaces the value under `key`.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = self.key(key)?;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = self.key(key)?;
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// `SET lock token NX PX lease`; on failure, reports the current holder.
    pub async fn lock(&self, name: &str, lease: Duration) -> Result<Locked, StoreError> {
        let key = self.key(&format!("locks/{name}"))?;
        let token = new_token();
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms(lease))
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(Locked::Acquired(Lease {
                name: name.to_owned(),
                token,
                lease,
            }));
        }
        let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        Ok(Locked::Held {
            holder: holder.unwrap_or_else(|| "another contender".to_owned()),
        })
    }

    /// Extends the lease if this token still holds the lock.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        let key = self.key(&format!("locks/{}", lease.name))?;
        let mut conn = self.conn.clone();
        let renewed: i64 = Script::new(RENEW)
            .key(key)
            .arg(&lease.token)
            .arg(lease_ms(lease.lease))
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    /// Deletes the lock if this token still holds it.
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let key = self.key(&format!("locks/{}", lease.name))?;
        let mut conn = self.conn.clone();
        Script::new(RELEASE)
            .key(key)
            .arg(&lease.token)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }
}

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1)
}
