//! The in-memory cache of small files: bodies as `Bytes` and every response header value
//! pre-built, so that a hit costs no syscall and no allocation beyond the response itself.
//!
//! Entries are dropped when the file-system watcher reports a change under their path, and
//! revalidated against the file's (device, inode, size, mtime) at most once a second each, for
//! file systems where events are missed.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;

use super::conditional::Encoding;

/// Files up to this size are held in memory.
pub const MAX_CACHED_FILE: u64 = 256 * 1024;
/// Bytes (bodies, compressed copies included) one static root may hold in memory; files
/// that do not fit are served from disk.
pub const MAX_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Entries one static root may hold.
pub const MAX_ENTRIES: usize = 16 * 1024;
/// An entry is checked against the disk at most this often.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    /// From an open file's metadata.
    pub fn of(meta: &Metadata) -> Self {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    /// Whether this file is at least as new as `other` (sidecars must not be older than their
    /// original).
    pub fn not_older_than(&self, other: &Stamp) -> bool {
        (self.mtime, self.mtime_nsec) >= (other.mtime, other.mtime_nsec)
    }
}

/// Validators of one file: a strong ETag from its mtime and size (stable across gateway
/// replicas serving the same files, unlike one with the inode), and `Last-Modified`.
#[derive(Debug, Clone)]
pub struct Validators {
    /// `"<mtime hex>.<nanos hex>-<size hex>"`.
    pub etag: HeaderValue,
    /// HTTP date.
    pub last_modified: HeaderValue,
    /// Seconds since the epoch, for `If-Modified-Since`.
    pub modified: u64,
}

impl Validators {
    /// For a file with `meta`; `suffix` (`-br`, `-gz`) goes inside the quotes.
    pub fn of(meta: &Metadata, suffix: &str) -> Self {
        let etag = format!(
            "\"{:x}.{:x}-{:x}{suffix}\"",
            meta.mtime(),
            meta.mtime_nsec(),
            meta.len()
        );
        let modified = u64::try_from(meta.mtime()).unwrap_or(0);
        let time = UNIX_EPOCH + Duration::from_secs(modified);
        Validators {
            etag: HeaderValue::try_from(etag).expect("hex digits, dots and dashes in quotes"),
            last_modified: HeaderValue::try_from(httpdate::fmt_http_date(time))
                .expect("an HTTP date is a valid header value"),
            modified,
        }
    }

    /// The same validators for another encoding of the same bytes.
    pub fn with_suffix(&self, suffix: &str) -> Self {
        let base = self.etag.as_bytes();
        let mut etag = Vec::with_capacity(base.len() + suffix.len());
        etag.extend_from_slice(&base[..base.len() - 1]);
        etag.extend_from_slice(suffix.as_bytes());
        etag.push(b'"');
        Validators {
            etag: HeaderValue::from_bytes(&etag).unwrap_or_else(|_| self.etag.clone()),
            last_modified: self.last_modified.clone(),
            modified: self.modified,
        }
    }
}

/// One representation held in memory.
#[derive(Debug)]
pub struct Variant {
    /// The bytes sent.
    pub body: Bytes,
    /// Its own strong ETag.
    pub etag: HeaderValue,
    /// `Content-Length`.
    pub length: HeaderValue,
}

impl Variant {
    /// A representation of `body` with `etag`.
    pub fn new(body: Bytes, etag: HeaderValue) -> Self {
        let length = HeaderValue::from(body.len());
        Variant { body, etag, length }
    }
}

/// A cached file with everything its responses need.
#[derive(Debug)]
pub struct Entry {
    /// The file's path below the root (the index file for a directory request).
    pub file: Box<str>,
    /// The file as it is.
    pub identity: Variant,
    /// Brotli and gzip copies (precompressed sidecars, or compressed once when cached), in
    /// [`Encoding::ALL`] order.
    pub encoded: [Option<Variant>; 2],
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// `Cache-Control`: the hashed or the other policy.
    pub cache_control: HeaderValue,
    /// `Last-Modified` of the file.
    pub last_modified: HeaderValue,
    /// The same in seconds.
    pub modified: u64,
    /// Responses vary by `Accept-Encoding` (some encoded copy exists).
    pub vary: bool,
    /// What the entry was built from: the file, and each sidecar that was present.
    pub stamps: Stamps,
    /// Milliseconds since the cache's epoch when the entry was last checked.
    checked: AtomicU64,
}

/// The stamps an entry is revalidated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamps {
    /// The original file.
    pub file: Stamp,
    /// Each sidecar in [`Encoding::ALL`] order, when one was present.
    pub sidecars: [Option<Stamp>; 2],
}

/// Everything of an [`Entry`] but its check time.
pub struct EntryParts {
    pub file: Box<str>,
    pub identity: Variant,
    pub encoded: [Option<Variant>; 2],
    pub content_type: HeaderValue,
    pub cache_control: HeaderValue,
    pub validators: Validators,
    pub stamps: Stamps,
}

impl Entry {
    /// Whether the entry holds a copy in `encoding`.
    pub fn has(&self, encoding: Encoding) -> bool {
        let index = Encoding::ALL.iter().position(|&x| x == encoding);
        index.is_some_and(|i| self.encoded[i].is_some())
    }

    /// The variant for `encoding` when the entry has one.
    pub fn variant(&self, encoding: Option<Encoding>) -> &Variant {
        let index = match encoding {
            None => return &self.identity,
            Some(e) => Encoding::ALL.iter().position(|&x| x == e).unwrap_or(0),
        };
        self.encoded[index].as_ref().unwrap_or(&self.identity)
    }

    fn weight(&self) -> usize {
        self.file.len()
            + self.identity.body.len()
            + self
                .encoded
                .iter()
                .flatten()
                .map(|v| v.body.len())
                .sum::<usize>()
    }
}

/// Cached entries of one static root, keyed by request path below the root (`""` is the
/// root's index, `docs/` a directory's).
pub struct Cache {
    inner: RwLock<Inner>,
    epoch: Instant,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Box<str>, Arc<Entry>>,
    bytes: usize,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            inner: RwLock::default(),
            epoch: Instant::now(),
        }
    }
}

impl Cache {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Builds an entry checked now.
    pub fn entry(&self, parts: EntryParts) -> Arc<Entry> {
        let EntryParts {
            file,
            identity,
            encoded,
            content_type,
            cache_control,
            validators,
            stamps,
        } = parts;
        Arc::new(Entry {
            file,
            vary: encoded.iter().any(Option::is_some),
            identity,
            encoded,
            content_type,
            cache_control,
            last_modified: validators.last_modified,
            modified: validators.modified,
            stamps,
            checked: AtomicU64::new(self.now_ms()),
        })
    }

    /// The entry for `key`, if cached.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.map.get(key).cloned()
    }

    /// Whether `entry` is due for a check against the disk; at most one caller per second
    /// gets `true` for a given entry.
    pub fn due(&self, entry: &Entry) -> bool {
        let now = self.now_ms();
        let last = entry.checked.load(Ordering::Relaxed);
        now.saturating_sub(last) >= REVALIDATE_EVERY.as_millis() as u64
            && entry
                .checked
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether `bytes` more would fit now (checked before compressing a body, so that a
    /// file that will not be cached is not compressed per request).
    pub fn has_room(&self, bytes: u64) -> bool {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.map.len() < MAX_ENTRIES
            && (inner.bytes as u64).saturating_add(bytes) <= MAX_CACHE_BYTES as u64
    }

    /// Stores `entry` under `key` if it fits; replaces what was there.
    pub fn insert(&self, key: &str, entry: Arc<Entry>) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = inner.map.remove(key) {
            inner.bytes -= old.weight();
        }
        let weight = entry.weight();
        if inner.map.len() >= MAX_ENTRIES || inner.bytes + weight > MAX_CACHE_BYTES {
            return false;
        }
        inner.bytes += weight;
        inner.map.insert(key.into(), entry);
        true
    }

    /// Drops the entry under `key` if it is still `entry` (a newer one is kept).
    pub fn remove(&self, key: &str, entry: &Arc<Entry>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.map.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            if let Some(old) = inner.map.remove(key) {
                inner.bytes -= old.weight();
            }
        }
    }

    /// Drops every entry built from `changed` (a path below the root), from a file below it
    /// when it is a directory, or from a sidecar of it.
    pub fn invalidate(&self, changed: &str) {
        let original = changed
            .strip_suffix(".br")
            .or_else(|| changed.strip_suffix(".gz"))
            .unwrap_or(changed);
        let hit = |file: &str| {
            file == changed
                || file == original
                || file
                    .strip_prefix(changed)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut freed = 0;
        inner.map.retain(|_, e| {
            let keep = !hit(&e.file);
            if !keep {
                freed += e.weight();
            }
            keep
        });
        inner.bytes -= freed;
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.map.clear();
        inner.bytes = 0;
    }
}
