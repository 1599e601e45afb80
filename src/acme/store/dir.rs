//! The directory store: one file per key under a root that only the gateway's user can read
//! (directories 0700, files 0600). A put writes a temporary file, fsyncs it, renames it over
//! the key's file and fsyncs the directory, so a crash leaves the old value or the new one.
//!
//! A lock is a file `locks/<name>.lock` holding the holder's token and the lease's expiry in
//! Unix milliseconds, created with `O_EXCL`. A lock whose expiry has passed may be taken over:
//! it is first renamed aside (only one contender can rename it), then created afresh.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Lease, Locked, StoreError, check_key, new_token};

/// A store in a directory, typically a volume shared by every replica.
#[derive(Clone)]
pub struct DirStore {
    root: Arc<PathBuf>,
}

impl DirStore {
    /// Opens (creating, mode 0700) the store directory.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        make_dir(root)?;
        Ok(Self {
            root: Arc::new(root.to_path_buf()),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let root = Arc::clone(&self.root);
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .unwrap_or_else(|join| {
                Err(StoreError::Io {
                    op: "run",
                    path: String::new(),
                    source: io::Error::other(join),
                })
            })
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        self.blocking(move |_| match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_err("read", &path, source)),
        })
        .await
    }

    /// Atomically replaces the value under `key`.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let value = value.to_vec();
        self.blocking(move |root| {
            if let Some(parent) = path.parent() {
                make_dirs_under(root, parent)?;
            }
            write_atomic(&path, &value)
        })
        .await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.blocking(move |_| match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_err("remove", &path, source)),
        })
        .await
    }

    /// Takes the lock unless an unexpired lease holds it.
    pub async fn lock(&self, name: &str, lease: Duration) -> Result<Locked, StoreError> {
        let path = self.path(&format!("locks/{name}.lock"))?;
        let name = name.to_owned();
        self.blocking(move |root| {
            make_dirs_under(root, &root.join("locks"))?;
            let token = new_token();
            for _ in 0..2 {
                match create_lock(&path, &token, lease) {
                    Ok(()) => {
                        return Ok(Locked::Acquired(Lease {
                            name: name.clone(),
                            token: token.clone(),
                            lease,
                        }));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(io_err("create", &path, source)),
                }
                let Some((holder, expiry)) = read_lock(&path)? else {
                    // Released between our create and our read: try again.
                    continue;
                };
                if expiry > now_ms() {
                    return Ok(Locked::Held { holder });
                }
                // Stale: rename it aside. Of several contenders only one rename succeeds; the
                // others find no file and compete on the create above.
                let aside = path.with_extension(format!("stale-{:016x}", fastrand::u64(..)));
                match fs::rename(&path, &aside) {
                    Ok(()) => {
                        let _ = fs::remove_file(&aside);
                        tracing::info!(lock = %name, previous = %holder, "took over an expired ACME lock");
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(io_err("rename", &path, source)),
                }
            }
            match read_lock(&path)? {
                Some((holder, _)) => Ok(Locked::Held { holder }),
                None => Ok(Locked::Held {
                    holder: "another contender".to_owned(),
                }),
            }
        })
        .await
    }

    /// Extends the lease if this token still holds the lock.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        let path = self.path(&format!("locks/{}.lock", lease.name))?;
        let lease = lease.clone();
        self.blocking(move |_| match read_lock(&path)? {
            Some((holder, _)) if holder == lease.token => {
                write_atomic(&path, lock_content(&lease.token, lease.lease).as_bytes())?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .await
    }

    /// Removes the lock if this token holds it.
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let path = self.path(&format!("locks/{}.lock", lease.name))?;
        let token = lease.token.clone();
        self.blocking(move |_| {
            if let Some((holder, _)) = read_lock(&path)? {
                if holder == token {
                    fs::remove_file(&path).or_else(|e| match e.kind() {
                        io::ErrorKind::NotFound => Ok(()),
                        _ => Err(io_err("remove", &path, e)),
                    })?;
                }
            }
            Ok(())
        })
        .await
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn lock_content(token: &str, lease: Duration) -> String {
    format!("{token}\n{}\n", now_ms() + lease.as_millis())
}

fn create_lock(path: &Path, token: &str, lease: Duration) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(lock_content(token, lease).as_bytes())?;
    file.sync_all()
}

/// How long a lock file without a readable expiry (being written, or left by a crash
/// mid-write) counts as held, from its modification time.
const UNREADABLE_LOCK_GRACE: Duration = Duration::from_secs(10);

/// `(holder, expiry_ms)`, or `None` if there is no lock file. A file without a readable
/// expiry is held for a short grace from its modification time (its creator may be writing
/// it), then counts as expired, so a crash mid-write cannot wedge the lock.
fn read_lock(path: &Path) -> Result<Option<(String, u128)>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_err("read", path, source)),
    };
    let mut lines = text.lines();
    let holder = lines.next().unwrap_or_default().to_owned();
    let expiry = match lines.next().and_then(|l| l.parse().ok()) {
        Some(expiry) => expiry,
        None => fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |t| (t + UNREADABLE_LOCK_GRACE).as_millis()),
    };
    let holder = if holder.is_empty() {
        "a replica still writing its lock".to_owned()
    } else {
        holder
    };
    Ok(Some((holder, expiry)))
}

fn make_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io_err("create directory", dir, source))?;
    // An existing directory keeps its mode: tighten it, since keys live here.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|source| io_err("chmod", dir, source))
}

/// Creates `dir` and any missing parents below `root`, each 0700.
fn make_dirs_under(root: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir == root || dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs_under(root, parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(io_err("create directory", dir, source)),
    }
}

/// Temp file (0600) in the same directory, fsync, rename over `path`, fsync the directory.
fn write_atomic(path: &Path, value: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("value");
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", fastrand::u64(..)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(value)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        io_err("write", path, source)
    })
}
