//! Watching the config file and the certificate files for changes.
//!
//! Directories are watched, not files: an editor's write-to-temp-and-rename and a Kubernetes
//! ConfigMap update (a new timestamped directory, then an atomic rename of the `..data`
//! symlink; the config file itself is a symlink through `..data`) replace the file rather
//! than write to it, and a watch on the file itself would stay on the old inode. For each
//! watched file the watcher follows every symlink on the way to the real file and watches the
//! directory of each link and of the real file; an event on any of those names counts.
//!
//! After every reload, and once a second, the watched set is recomputed: a swapped symlink
//! leads to other directories, and a watched directory that was replaced (a new inode under
//! the same name) must be watched again. A replaced directory also triggers a reload, since
//! its events were missed.
//!
//! Events are debounced: a reload runs [`DEBOUNCE`] after the last event of a burst (at most
//! [`MAX_DELAY`] after the first), so a burst of writes, renames and attribute changes makes
//! one reload. A reload of bytes already applied is skipped by the [`Reloader`].

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Reloader, Trigger};

/// Quiet time after the last event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest wait after the first event of a burst that never goes quiet.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// How often the watched directories are checked for replacement.
const RECHECK: Duration = Duration::from_secs(1);
/// Bound on symlinks followed per file (a loop would otherwise never end).
const MAX_LINKS: usize = 40;

/// Watches the config and certificate files until `stop`, reloading on changes while
/// `reload.watch` is on. If no watcher can be made (inotify limits), logs why and returns:
/// SIGHUP and `POST /admin/reload` still work.
pub async fn run(reloader: Arc<Reloader>, stop: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event| {
        // The receiver is gone only when the task has stopped.
        let _ = tx.send(event);
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(err) => {
            tracing::warn!(
                "cannot watch the config file ({err}); reload with SIGHUP or POST /admin/reload"
            );
            return;
        }
    };
    let mut watched = Watched::default();
    watched.sync(&mut watcher, &targets(&reloader));
    reloader.set_watching(true);

    let mut pending = Pending::default();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(event) = rx.recv() => match event {
                Ok(event) if !changes_content(&event.kind) => {}
                Ok(event) => {
                    for path in &event.paths {
                        let (config, certs) = watched.touches(path);
                        pending.mark(config, certs);
                    }
                }
                Err(err) => tracing::debug!("file watch error: {err}"),
            },
            () = pending.due(), if pending.any() => {
                let (config, certs) = pending.take();
                if enabled(&reloader) {
                    if config {
                        reloader.reload(Trigger::Watch).await;
                    }
                    if certs {
                        reloader.reload_certificates(Trigger::Watch).await;
                    }
                }
                watched.sync(&mut watcher, &targets(&reloader));
            }
            _ = recheck.tick() => {
                if watched.sync(&mut watcher, &targets(&reloader)) {
                    pending.mark(true, true);
                }
            }
        }
    }
    reloader.set_watching(false);
}

/// Everything but reads: opening or closing a file without writing (as every reload does)
/// must not trigger another reload.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// `reload.watch` of the running config: turning it off keeps the watches but ignores them.
fn enabled(reloader: &Reloader) -> bool {
    reloader.shared().snapshot.load().config.reload.watch
}

/// The files to watch: the config file, and the certificate files when TLS is served.
struct Targets {
    config: PathBuf,
    certs: Vec<PathBuf>,
}

fn targets(reloader: &Reloader) -> Targets {
    let snapshot = reloader.shared().snapshot.load();
    let certs = if reloader.tls {
        snapshot
            .config
            .tls
            .certificates
            .iter()
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .collect()
    } else {
        Vec::new()
    };
    Targets {
        config: reloader.path().to_path_buf(),
        certs,
    }
}

/// Which changes are waiting for their debounce to end.
#[derive(Default)]
struct Pending {
    config: bool,
    certs: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Pending {
    fn mark(&mut self, config: bool, certs: bool) {
        if !config && !certs {
            return;
        }
        self.config |= config;
        self.certs |= certs;
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn any(&self) -> bool {
        self.config || self.certs
    }

    async fn due(&self) {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until((last + DEBOUNCE).min(first + MAX_DELAY)).await;
    }

    fn take(&mut self) -> (bool, bool) {
        let taken = (self.config, self.certs);
        *self = Self::default();
        taken
    }
}

/// The directories being watched and the names in them that matter.
#[derive(Default)]
struct Watched {
    /// Directory -> its (device, inode) when the watch was added.
    dirs: BTreeMap<PathBuf, (u64, u64)>,
    config: BTreeSet<PathBuf>,
    certs: BTreeSet<PathBuf>,
}

impl Watched {
    /// Whether an event on `path` concerns the config, the certificates (or, for a watched
    /// directory itself, both).
    fn touches(&self, path: &Path) -> (bool, bool) {
        if self.dirs.contains_key(path) {
            return (true, true);
        }
        (self.config.contains(path), self.certs.contains(path))
    }

    /// Recomputes what to watch and adjusts the watches. Returns whether a directory was
    /// added, replaced or lost (its events may have been missed).
    fn sync(&mut self, watcher: &mut impl Watcher, targets: &Targets) -> bool {
        self.config = dependencies(&targets.config);
        self.certs = targets.certs.iter().flat_map(|c| dependencies(c)).collect();
        let wanted: BTreeMap<PathBuf, (u64, u64)> = self
            .config
            .iter()
            .chain(&self.certs)
            .filter_map(|p| p.parent())
            .filter_map(|dir| identity(dir).map(|id| (dir.to_path_buf(), id)))
            .collect();
        let mut changed = false;
        for (dir, id) in &self.dirs {
            if wanted.get(dir) != Some(id) {
                // The watch may already be gone with its directory.
                let _ = watcher.unwatch(dir);
                changed = true;
            }
        }
        let mut now = BTreeMap::new();
        for (dir, id) in wanted {
            let kept = self.dirs.get(&dir) == Some(&id);
            if kept || watch(watcher, &dir) {
                changed |= !kept;
                now.insert(dir, id);
            }
        }
        self.dirs = now;
        changed
    }
}

fn watch(watcher: &mut impl Watcher, dir: &Path) -> bool {
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => {
            tracing::debug!(dir = %dir.display(), "watching");
            true
        }
        Err(err) => {
            tracing::warn!(dir = %dir.display(), "cannot watch: {err}");
            false
        }
    }
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Every name whose change can change what reading `file` returns, each as
/// `<canonical directory>/<name>` (the form watch events carry): `file` itself, each symlink
/// followed on the way, whether it replaces the file or one of its directories (a ConfigMap's
/// `..data`), and the real file.
pub fn dependencies(file: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(file) = std::path::absolute(file) else {
        return out;
    };
    let mut todo = vec![file.clone()];
    let mut followed = 0;
    while let Some(path) = todo.pop() {
        followed += 1;
        if followed > MAX_LINKS {
            break;
        }
        let Some(entry) = entry(&path) else { continue };
        if !out.insert(entry) {
            continue;
        }
        if let Some(parent) = path.parent() {
            let mut prefix = PathBuf::new();
            for part in parent.components() {
                prefix.push(part);
                if prefix.is_symlink() {
                    todo.push(prefix.clone());
                }
            }
        }
        if let (Ok(target), Some(parent)) = (std::fs::read_link(&path), path.parent()) {
            todo.push(parent.join(target));
        }
    }
    if let Ok(real) = std::fs::canonicalize(&file) {
        out.insert(real);
    }
    out
}

/// `path` as its parent's canonical form joined with its name.
fn entry(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let dir = std::fs::canonicalize(path.parent()?).ok()?;
    Some(dir.join(name))
}
