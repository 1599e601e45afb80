//! Where ACME state lives: the account, each certificate set's key and chain, challenge
//! material, the next allowed attempt, and the locks that let one replica of a cluster order
//! while the others wait.
//!
//! Two backends behind one [`Store`] trait, chosen by [`Backend`]: a directory ([`DirStore`],
//! a shared volume makes a cluster) and Redis ([`RedisStore`]). Keys are `/`-separated paths
//! of `[A-Za-z0-9._-]` segments, checked by [`check_key`] before either backend touches
//! anything, so no key can name a file outside the store.

mod dir;
mod redis;

use std::future::Future;
use std::time::Duration;

pub use dir::DirStore;
pub use redis::RedisStore;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("invalid store key {0:?}")]
    BadKey(String),
}

/// A lock held until its lease runs out, unless renewed.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The lock's name.
    pub name: String,
    /// Who holds it: host, process id and a random part, so that logs can tell replicas apart
    /// and only the holder can renew or release it.
    pub token: String,
    /// How long the lock lasts without renewal.
    pub lease: Duration,
}

/// The outcome of asking for a lock.
#[derive(Debug)]
pub enum Locked {
    /// This process holds it now.
    Acquired(Lease),
    /// Another holder has it; the text names the holder.
    Held { holder: String },
}

/// Atomic get/put of byte values by key, and leased locks.
pub trait Store: Send + Sync {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Replaces the value under `key` atomically: readers see the old or the new value whole.
    fn put(&self, key: &str, value: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes `key`; removing an absent key is not an error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes the lock `name` for `lease` unless someone else holds an unexpired lease on it.
    fn lock(
        &self,
        name: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Locked, StoreError>> + Send;
    /// Extends a held lease; `false` when it was lost (expired and taken, or removed).
    fn renew(&self, lease: &Lease) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives the lock up if this lease still holds it.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The configured backend.
pub enum Backend {
    /// `storage = "dir:<path>"`.
    Dir(DirStore),
    /// `storage = "redis://..."` or `"rediss://..."`.
    Redis(RedisStore),
}

impl Backend {
    /// Short description for logs (never the Redis URL, which may hold a password).
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(d) => format!("dir:{}", d.root().display()),
            Self::Redis(r) => format!("redis (prefix {:?})", r.prefix()),
        }
    }
}

impl Store for Backend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Dir(s) => s.get(key).await,
            Self::Redis(s) => s.get(key).await,
        }
    }

    async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        match self {
            Self::Dir(s) => s.put(key, value).await,
            Self::Redis(s) => s.put(key, value).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Self::Dir(s) => s.delete(key).await,
            Self::Redis(s) => s.delete(key).await,
        }
    }

    async fn lock(&self, name: &str, lease: Duration) -> Result<Locked, StoreError> {
        match self {
            Self::Dir(s) => s.lock(name, lease).await,
            Self::Redis(s) => s.lock(name, lease).await,
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        match self {
            Self::Dir(s) => s.renew(lease).await,
            Self::Redis(s) => s.renew(lease).await,
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        match self {
            Self::Dir(s) => s.release(lease).await,
            Self::Redis(s) => s.release(lease).await,
        }
    }
}

/// Checks that `key` is `/`-separated segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_owned()))
    }
}

/// A lock token naming this process: `host/pid/random`.
pub fn new_token() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}/{}/{:016x}", std::process::id(), fastrand::u64(..))
}

#[cfg(test)]
mod tests;
