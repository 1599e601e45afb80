//! Static files: a route's `static = { root = "..." }` action.
//!
//! A [`StaticSite`] is opened when the snapshot is built: the root directory's descriptor
//! (every file is opened beneath it, [`resolve`]), the build manifest ([`hashed`]), the
//! in-memory cache ([`cache`]) and a file-system watcher that invalidates it. Serving a
//! request:
//!
//! ```text
//! GET/HEAD? ─► path below the prefix: decode, refuse escapes and dot-files (resolve::target)
//!   ─► cache hit (checked against the disk at most once a second) ─► respond from memory
//!   ─► miss: on the blocking pool, open beneath the root, small file -> cache entry (with
//!      sidecars, or compressed once), large file -> streamed in 128 KiB chunks (stream.rs)
//!   ─► 304 / 206 / 416 / 200 (conditional.rs)
//! ```

pub mod cache;
pub mod conditional;
pub mod hashed;
mod load;
pub mod resolve;
pub mod stream;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, HeaderName, LAST_MODIFIED, LOCATION, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, request};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::OnceCell;

use crate::body::ResponseBody;
use crate::config::StaticConfig;
use crate::error::{FileError, RequestError};
use crate::normalize;
use cache::{Cache, Entry};
use conditional::{Accept, Encoding, RangeReply};
use hashed::{MANIFESTS, Manifest, Patterns};
use load::{Loaded, Streamed};
use resolve::{PathError, Resolver};
use stream::FileBody;

/// Whether bodies of the (lower-case, parameter-free) media type `mime` compress well:
/// text, JavaScript, JSON, XML, SVG, WebAssembly, web app manifests, uncompressed fonts and
/// icons. Images, `woff2`, archives and media are already compressed.
pub fn is_compressible(mime: &str) -> bool {
    mime.starts_with("text/") || load::COMPRESSIBLE.contains(&mime)
}

/// Largest build manifest read.
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// One static root, as a route serves it. Dropping it stops its watcher.
pub struct StaticSite {
    site: Arc<Site>,
    _watcher: Option<RecommendedWatcher>,
}

/// What the request path and the watcher share.
pub(crate) struct Site {
    resolver: Resolver,
    index: Box<str>,
    spa_fallback: bool,
    serve_hidden: bool,
    compress: bool,
    patterns: Patterns,
    manifest: ArcSwap<Manifest>,
    cache_hashed: HeaderValue,
    cache_other: HeaderValue,
    cache: Cache,
    /// Loads in flight by cache key (see [`StaticSite::serve`]).
    loading: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Loads started, for tests.
    loads: AtomicU64,
}

impl StaticSite {
    /// Opens the root, reads its build manifest and starts watching it. Blocking: call it
    /// off the runtime. A watcher that cannot start (inotify limits) is logged; the cache is
    /// then kept true by the once-a-second revalidation alone.
    pub fn open(config: &StaticConfig) -> std::io::Result<Self> {
        Self::open_with(config, true)
    }

    /// [`StaticSite::open`], optionally without the watcher (tests of the revalidation that
    /// covers for missed events).
    pub(crate) fn open_with(config: &StaticConfig, watch_root: bool) -> std::io::Result<Self> {
        let resolver = Resolver::new(&config.root, config.follow_symlinks_outside)?;
        let manifest = Manifest::load(|path| resolver.read_small(path, MAX_MANIFEST));
        let site = Arc::new(Site {
            resolver,
            index: config.index.as_str().into(),
            spa_fallback: config.spa_fallback,
            serve_hidden: config.serve_hidden,
            compress: config.compress,
            patterns: Patterns::new(&config.immutable_patterns),
            manifest: ArcSwap::from_pointee(manifest),
            cache_hashed: config.cache_control_hashed.clone(),
            cache_other: config.cache_control_other.clone(),
            cache: Cache::default(),
            loading: Mutex::default(),
            loads: AtomicU64::new(0),
        });
        let watcher = if watch_root {
            watch(&site, &config.root)
                .map_err(|err| {
                    tracing::warn!(root = %config.root.display(), "cannot watch static root, changes are seen within a second instead: {err}");
                })
                .ok()
        } else {
            None
        };
        Ok(StaticSite {
            site,
            _watcher: watcher,
        })
    }

    /// Serves `req` for the normalised `path` under the route's `prefix`.
    pub async fn serve(
        &self,
        req: &request::Parts,
        path: &str,
        prefix: &str,
    ) -> Result<Response<ResponseBody>, RequestError> {
        let head = match req.method {
            Method::GET => false,
            Method::HEAD => true,
            _ => return Err(RequestError::MethodNotAllowed),
        };
        let rel = normalize::strip_prefix(path, prefix);
        let target = resolve::target(rel, self.site.serve_hidden).map_err(|e| match e {
            PathError::Malformed => RequestError::File(FileError::BadPath),
            PathError::Hidden => RequestError::File(FileError::NotFound),
        })?;
        let key: Cow<'_, str> = match &target.path {
            Cow::Borrowed(_) => Cow::Borrowed(rel.trim_start_matches('/')),
            Cow::Owned(p) if target.dir => Cow::Owned(format!("{p}/")),
            Cow::Owned(p) => Cow::Borrowed(p.as_str()),
        };
        let headers = &req.headers;

        if let Some(entry) = self.site.cache.get(&key) {
            if !self.site.cache.due(&entry) || self.unchanged(&entry).await {
                return Ok(respond_cached(&entry, headers, head));
            }
            self.site.cache.remove(&key, &entry);
        }

        // One load at a time per key: on a cold cache, a burst of requests for one file
        // would otherwise read and compress it once per request (a brotli encoder holds
        // megabytes), each on its own blocking thread. The others wait for that load, then
        // look in the cache again; what is not cached (large files) they load themselves.
        let accept = Accept::from_headers(headers);
        let ranged = conditional::has_range(headers);
        let flight = Flight::join(&self.site, &key);
        let mut led = None;
        flight
            .cell
            .get_or_init(|| async {
                led = Some(self.load(&key, &target, accept, ranged).await);
            })
            .await;
        drop(flight);
        let loaded = match led {
            Some(loaded) => loaded?,
            None => match self.site.cache.get(&key) {
                Some(entry) => return Ok(respond_cached(&entry, headers, head)),
                None => self.load(&key, &target, accept, ranged).await?,
            },
        };
        match loaded {
            Loaded::Cached(entry) => Ok(respond_cached(&entry, headers, head)),
            Loaded::Stream(streamed) => respond_streamed(*streamed, headers, head),
            Loaded::AddSlash => Ok(add_slash(path, req.uri.query())),
            Loaded::NotFound => Err(RequestError::File(FileError::NotFound)),
        }
    }

    /// Reads `target` off the runtime: a cache entry (stored for the next request), a file
    /// to stream, or what to answer instead.
    async fn load(
        &self,
        key: &str,
        target: &resolve::Target<'_>,
        accept: Accept,
        ranged: bool,
    ) -> Result<Loaded, RequestError> {
        self.site.loads.fetch_add(1, Ordering::Relaxed);
        let site = Arc::clone(&self.site);
        let (key, file, dir) = (key.to_owned(), target.path.to_string(), target.dir);
        tokio::task::spawn_blocking(move || site.load(&key, &file, dir, accept, ranged))
            .await
            .map_err(|_| RequestError::File(FileError::Io))?
            .map_err(|err| {
                tracing::warn!(path = %target.path, "cannot read static file: {err}");
                RequestError::File(FileError::Io)
            })
    }

    /// Loads started so far.
    #[cfg(test)]
    pub(crate) fn loads(&self) -> u64 {
        self.site.loads.load(Ordering::Relaxed)
    }

    async fn unchanged(&self, entry: &Arc<Entry>) -> bool {
        let (site, entry) = (Arc::clone(&self.site), Arc::clone(entry));
        tokio::task::spawn_blocking(move || site.unchanged(&entry))
            .await
            .unwrap_or(false)
    }
}

/// A request's part in the load in flight for a key. Once the load is done, the first to leave
/// ends the flight for later misses; a request cancelled mid-load leaves it to the others, or
/// ends it when it was alone, so no key stays behind in the map.
struct Flight<'a> {
    site: &'a Site,
    key: &'a str,
    cell: Arc<OnceCell<()>>,
}

impl<'a> Flight<'a> {
    /// The load in flight for `key`, or a new one to lead.
    fn join(site: &'a Site, key: &'a str) -> Self {
        let mut loading = site.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let cell = Arc::clone(loading.entry(key.to_owned()).or_default());
        Flight { site, key, cell }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut loading = self
            .site
            .loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let over = self.cell.initialized() || Arc::strong_count(&self.cell) == 2;
        if over
            && loading
                .get(self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.cell))
        {
            loading.remove(self.key);
        }
    }
}

impl Site {
    /// A path below the root changed: drop what was built from it; a manifest change is
    /// re-read and empties the cache (any name may have changed policy).
    fn changed(&self, rel: &str) {
        if rel.is_empty() || MANIFESTS.contains(&rel) || rel == ".vite" {
            let manifest = Manifest::load(|path| self.resolver.read_small(path, MAX_MANIFEST));
            self.manifest.store(Arc::new(manifest));
            self.cache.clear();
        } else {
            self.cache.invalidate(rel);
        }
    }
}

/// Starts a recursive watcher on `root` whose events invalidate `site`'s cache. It holds
/// the site weakly, so a dropped snapshot is not kept alive by its watcher thread.
fn watch(site: &Arc<Site>, root: &Path) -> notify::Result<RecommendedWatcher> {
    let weak = Arc::downgrade(site);
    let base = root.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| {
        let Some(site) = weak.upgrade() else { return };
        let event = match event {
            Ok(event) => event,
            Err(_) => return site.changed(""),
        };
        // The gateway's own reads open and close files: those events change nothing.
        if let EventKind::Access(kind) = event.kind {
            if kind != AccessKind::Close(AccessMode::Write) {
                return;
            }
        }
        for path in &event.paths {
            match path.strip_prefix(&base).ok().and_then(Path::to_str) {
                Some(rel) => site.changed(rel),
                None => site.changed(""),
            }
        }
    };
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = RecommendedWatcher::new(handler, config)?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const ACCEPT_ENCODING_VARY: HeaderValue = HeaderValue::from_static("accept-encoding");

/// Headers every static response carries.
struct Common<'a> {
    content_type: &'a HeaderValue,
    cache_control: &'a HeaderValue,
    last_modified: &'a HeaderValue,
    etag: &'a HeaderValue,
    vary: bool,
}

impl Common<'_> {
    /// `304`: validators and caching headers, no body.
    fn not_modified(&self) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody::Empty);
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        let h = resp.headers_mut();
        h.insert(ETAG, self.etag.clone());
        h.insert(CACHE_CONTROL, self.cache_control.clone());
        h.insert(LAST_MODIFIED, self.last_modified.clone());
        if self.vary {
            h.insert(VARY, ACCEPT_ENCODING_VARY);
        }
        resp
    }

    fn response(&self, status: StatusCode, body: ResponseBody) -> Response<ResponseBody> {
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.reserve(10);
        h.insert(CONTENT_TYPE, self.content_type.clone());
        h.insert(CACHE_CONTROL, self.cache_control.clone());
        h.insert(ETAG, self.etag.clone());
        h.insert(LAST_MODIFIED, self.last_modified.clone());
        h.insert(ACCEPT_RANGES, BYTES);
        h.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        if self.vary {
            h.insert(VARY, ACCEPT_ENCODING_VARY);
        }
        resp
    }

    /// `416` with `Content-Range: bytes */len`.
    fn unsatisfiable(&self, len: u64) -> Response<ResponseBody> {
        let mut resp = self.response(StatusCode::RANGE_NOT_SATISFIABLE, ResponseBody::Empty);
        let h = resp.headers_mut();
        h.remove(CONTENT_TYPE);
        set(h, CONTENT_RANGE, format!("bytes */{len}"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(0));
        resp
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(name, v);
    }
}

fn encoding_header(encoding: Encoding) -> HeaderValue {
    HeaderValue::from_static(encoding.token())
}

fn respond_cached(entry: &Entry, headers: &HeaderMap, head: bool) -> Response<ResponseBody> {
    let ranged = conditional::has_range(headers);
    let encoding = if ranged {
        None
    } else {
        Accept::from_headers(headers).choose(|e| entry.has(e))
    };
    let variant = entry.variant(encoding);
    let common = Common {
        content_type: &entry.content_type,
        cache_control: &entry.cache_control,
        last_modified: &entry.last_modified,
        etag: &variant.etag,
        vary: entry.vary,
    };
    if conditional::not_modified(headers, variant.etag.as_bytes(), entry.modified) {
        return common.not_modified();
    }
    let len = variant.body.len() as u64;
    let reply = if encoding.is_none() {
        conditional::range(headers, len, variant.etag.as_bytes(), entry.modified)
    } else {
        RangeReply::Full
    };
    let body = |bytes: Bytes| {
        if head {
            ResponseBody::Empty
        } else {
            ResponseBody::Full(Some(bytes))
        }
    };
    match reply {
        RangeReply::Unsatisfiable => common.unsatisfiable(len),
        RangeReply::Partial { start, end } => {
            let slice = variant.body.slice(start as usize..=end as usize);
            let mut resp = common.response(StatusCode::PARTIAL_CONTENT, body(slice));
            let h = resp.headers_mut();
            set(h, CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            h.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            resp
        }
        RangeReply::Full => {
            let mut resp = common.response(StatusCode::OK, body(variant.body.clone()));
            let h = resp.headers_mut();
            h.insert(CONTENT_LENGTH, variant.length.clone());
            if let Some(encoding) = encoding {
                h.insert(CONTENT_ENCODING, encoding_header(encoding));
            }
            resp
        }
    }
}

fn respond_streamed(
    streamed: Streamed,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<ResponseBody>, RequestError> {
    let Streamed {
        mut file,
        len,
        encoding,
        compress,
        validators,
        content_type,
        cache_control,
        vary,
    } = streamed;
    let common = Common {
        content_type: &content_type,
        cache_control: &cache_control,
        last_modified: &validators.last_modified,
        etag: &validators.etag,
        vary,
    };
    if conditional::not_modified(headers, validators.etag.as_bytes(), validators.modified) {
        return Ok(common.not_modified());
    }
    let reply = if encoding.is_none() {
        conditional::range(
            headers,
            len,
            validators.etag.as_bytes(),
            validators.modified,
        )
    } else {
        RangeReply::Full
    };
    let (status, start, count) = match reply {
        RangeReply::Unsatisfiable => return Ok(common.unsatisfiable(len)),
        RangeReply::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeReply::Full => (StatusCode::OK, 0, len),
    };
    let body = match (head, compress, encoding) {
        (true, _, _) => ResponseBody::Empty,
        (false, true, Some(encoding)) => ResponseBody::File(FileBody::compressed(file, encoding)),
        (false, _, _) => {
            if start > 0 {
                // lseek only moves the offset; it does no I/O.
                file.seek(SeekFrom::Start(start)).map_err(|err| {
                    tracing::warn!("cannot seek static file: {err}");
                    RequestError::File(FileError::Io)
                })?;
            }
            ResponseBody::File(FileBody::plain(file, count))
        }
    };
    let mut resp = common.response(status, body);
    let h = resp.headers_mut();
    if let Some(encoding) = encoding {
        h.insert(CONTENT_ENCODING, encoding_header(encoding));
    }
    if !compress {
        h.insert(CONTENT_LENGTH, HeaderValue::from(count));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    Ok(resp)
}

/// `301` from a directory named without its slash to the same path with one, so relative
/// links in its index resolve below it.
fn add_slash(path: &str, query: Option<&str>) -> Response<ResponseBody> {
    let mut target = String::with_capacity(path.len() + 2 + query.map_or(0, str::len));
    target.push_str(path);
    target.push('/');
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    let mut resp = Response::new(ResponseBody::Empty);
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::try_from(target) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests;
