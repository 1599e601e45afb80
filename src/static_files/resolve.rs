//! From a request path to an open file beneath the static root, without a check-then-open
//! race.
//!
//! The path is checked as text first ([`target`]): escapes decoded, and decoded `/`, `\`,
//! NUL, control bytes and dot segments refused, dot-files hidden. Then it is opened relative
//! to a directory descriptor held since the snapshot was built ([`Resolver::open`]), with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel refuses any resolution that
//! leaves the root, including through symlinks and `..` inside them, at the moment of the
//! open. Kernels without `openat2` (before 5.6, or a seccomp filter that answers `ENOSYS`)
//! get a component-by-component `openat` with `O_NOFOLLOW`, which refuses every symlink.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Why a request path was refused before touching the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// An escape decodes to `/`, `\`, NUL or a control byte, or a segment is `.`/`..`, or the
    /// name is not UTF-8: 400.
    Malformed,
    /// A dot-file or dot-directory while `serve_hidden` is off: 404.
    Hidden,
}

/// A request path below the static root.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// Segments joined by `/`, no leading or trailing `/`; empty for the root itself.
    pub path: Cow<'a, str>,
    /// The request named a directory (ended in `/`, or was the root).
    pub dir: bool,
}

/// Checks and decodes `rel`, the request path below the route's prefix (starting with `/`).
/// Empty segments (`a//b`) are dropped. `.well-known` is never hidden.
pub fn target(rel: &str, serve_hidden: bool) -> Result<Target<'_>, PathError> {
    let trimmed = rel.trim_start_matches('/');
    let dir = trimmed.is_empty() || trimmed.ends_with('/');
    let trimmed = trimmed.trim_end_matches('/');
    let simple = !trimmed.contains('%') && !trimmed.contains("//");
    let mut decoded = if simple {
        None
    } else {
        Some(String::with_capacity(trimmed.len()))
    };
    for segment in trimmed.split('/').filter(|s| !s.is_empty()) {
        let segment = decode_segment(segment)?;
        if segment == "." || segment == ".." {
            return Err(PathError::Malformed);
        }
        if segment.starts_with('.') && !serve_hidden && segment != ".well-known" {
            return Err(PathError::Hidden);
        }
        if let Some(out) = &mut decoded {
            if !out.is_empty() {
                out.push('/');
            }
            out.push_str(&segment);
        }
    }
    let path = match decoded {
        Some(owned) => Cow::Owned(owned),
        None => Cow::Borrowed(trimmed),
    };
    Ok(Target { path, dir })
}

/// Percent-decodes one segment. The core already decoded unreserved escapes and refused
/// broken ones; what is left (`%2F`, `%5C`, `%00`, `%20`, UTF-8 bytes...) is decoded here, and
/// anything that would change the path's shape is refused.
fn decode_segment(segment: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = segment.as_bytes();
    if !bytes.contains(&b'%') {
        return Ok(Cow::Borrowed(segment));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::Malformed)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::Malformed)?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| PathError::Malformed)?;
            if byte == b'/' || byte == b'\\' || byte < 0x20 || byte == 0x7f {
                return Err(PathError::Malformed);
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::Malformed)
}

/// Opens paths beneath a root directory held open for the snapshot's lifetime.
#[derive(Debug)]
pub struct Resolver {
    root: OwnedFd,
    follow_outside: bool,
    /// Set once `openat2` answered `ENOSYS`; then every open walks components.
    no_openat2: AtomicBool,
}

impl Resolver {
    /// Opens `root` as a directory. `follow_outside` lets symlinks lead out of it.
    pub fn new(root: &Path, follow_outside: bool) -> io::Result<Self> {
        let root = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            root,
            follow_outside,
            no_openat2: AtomicBool::new(false),
        })
    }

    /// Opens `path` (from [`target`]: no leading `/`, no dot segments; empty is the root)
    /// for reading. Blocking: call it off the runtime. A symlink leading out of the root
    /// fails like a missing file (`ENOENT`-like kinds are mapped by [`is_not_found`]).
    pub fn open(&self, path: &str) -> io::Result<std::fs::File> {
        let path = if path.is_empty() { "." } else { path };
        // O_NONBLOCK: opening a FIFO someone left in the tree must not hang a thread; it is
        // refused afterwards as not a regular file. It has no effect on regular files.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let fd = if self.follow_outside {
            // The path holds no `..` (checked by `target`), so only symlinks can lead out,
            // which is what this setting allows.
            rustix::fs::openat(&self.root, path, flags, Mode::empty())?
        } else if self.no_openat2.load(Ordering::Relaxed) {
            self.open_walk(path, flags)?
        } else {
            let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.root, path, flags, Mode::empty(), how) {
                Err(rustix::io::Errno::NOSYS) => {
                    tracing::info!(
                        "openat2 is unavailable; static files are opened component by component and symlinks are refused"
                    );
                    self.no_openat2.store(true, Ordering::Relaxed);
                    self.open_walk(path, flags)?
                }
                other => other?,
            }
        };
        Ok(std::fs::File::from(fd))
    }

    /// The fallback: each directory opened with `O_NOFOLLOW`, so no symlink is ever followed.
    pub fn open_walk(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let mut parts = path.split('/').peekable();
        let mut dir: Option<OwnedFd> = None;
        while let Some(part) = parts.next() {
            let at = dir.as_ref().map_or(self.root.as_fd(), AsFd::as_fd);
            if parts.peek().is_none() {
                return Ok(rustix::fs::openat(
                    at,
                    part,
                    flags | OFlags::NOFOLLOW,
                    Mode::empty(),
                )?);
            }
            let next = rustix::fs::openat(
                at,
                part,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            dir = Some(next);
        }
        Err(io::ErrorKind::NotFound.into())
    }

    /// Reads a small file beneath the root whole, `None` when absent or larger than `max`.
    pub fn read_small(&self, path: &str, max: u64) -> Option<Vec<u8>> {
        use std::io::Read;
        let file = self.open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > max {
            return None;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
        file.take(max).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }
}

/// Whether an open error means "no such file here" (404) rather than a fault (500):
/// missing, not a directory on the way, a symlink leading out (`EXDEV`), a refused symlink
/// (`ELOOP`), or a name too long.
pub fn is_not_found(err: &io::Error) -> bool {
    use rustix::io::Errno;
    if err.kind() == io::ErrorKind::NotFound {
        return true;
    }
    let Some(code) = err.raw_os_error() else {
        return false;
    };
    let errno = Errno::from_raw_os_error(code);
    [
        Errno::NOENT,
        Errno::NOTDIR,
        Errno::XDEV,
        Errno::LOOP,
        Errno::NAMETOOLONG,
    ]
    .contains(&errno)
}

#[cfg(test)]
mod tests;
