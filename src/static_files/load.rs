//! The blocking side of serving a file: open it beneath the root, read its metadata, read
//! small files whole (with their sidecars, or compressed once) into a cache entry, and hand
//! large ones back open for streaming. Everything here runs on tokio's blocking pool.

use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use super::Site;
use super::cache::{Entry, EntryParts, MAX_CACHED_FILE, Stamp, Stamps, Validators, Variant};
use super::conditional::{Accept, Encoding};
use super::hashed::is_hashed_name;
use super::resolve::is_not_found;

/// Bodies smaller than this are not worth compressing.
pub const MIN_COMPRESS: u64 = 1024;

/// What a path turned out to be.
pub enum Loaded {
    /// A small file, cached if it fit.
    Cached(Arc<Entry>),
    /// A large file, open, to be streamed.
    Stream(Box<Streamed>),
    /// A directory requested without its trailing slash.
    AddSlash,
    /// Nothing servable there.
    NotFound,
}

/// A large file ready to stream.
pub struct Streamed {
    /// The file to send: the original, or the chosen sidecar.
    pub file: File,
    /// Its length.
    pub len: u64,
    /// The encoding of what is sent (a sidecar's, or the one to compress with).
    pub encoding: Option<Encoding>,
    /// Compress while streaming (no sidecar for the chosen encoding).
    pub compress: bool,
    /// ETag of what is sent; `Last-Modified` of the original.
    pub validators: Validators,
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// `Cache-Control`.
    pub cache_control: HeaderValue,
    /// Responses vary by `Accept-Encoding`.
    pub vary: bool,
}

impl Site {
    /// Resolves and loads the request path `path` (from `resolve::target`); `key` is its
    /// cache key. `accept` and `ranged` pick what a large file is streamed as.
    pub(super) fn load(
        &self,
        key: &str,
        path: &str,
        dir: bool,
        accept: Accept,
        ranged: bool,
    ) -> io::Result<Loaded> {
        let loaded = self.load_path(key, path, dir, accept, ranged)?;
        let no_extension = !path.rsplit('/').next().unwrap_or(path).contains('.');
        if matches!(loaded, Loaded::NotFound)
            && self.spa_fallback
            && no_extension
            && !path.is_empty()
        {
            return self.load_path("", "", true, accept, ranged);
        }
        Ok(loaded)
    }

    fn load_path(
        &self,
        key: &str,
        path: &str,
        dir: bool,
        accept: Accept,
        ranged: bool,
    ) -> io::Result<Loaded> {
        let file_path = match (dir, path.is_empty()) {
            (false, _) => path.to_owned(),
            (true, true) => self.index.to_string(),
            (true, false) => format!("{path}/{}", self.index),
        };
        let file = match self.resolver.open(&file_path) {
            Ok(file) => file,
            Err(err) if is_not_found(&err) => return Ok(Loaded::NotFound),
            Err(err) => return Err(err),
        };
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Ok(if dir {
                Loaded::NotFound
            } else {
                Loaded::AddSlash
            });
        }
        if !meta.is_file() {
            return Ok(Loaded::NotFound);
        }
        let (content_type, compressible) = content_type(&file_path);
        let cache_control = if self.is_hashed(&file_path) {
            self.cache_hashed.clone()
        } else {
            self.cache_other.clone()
        };
        let compressible = compressible && self.compress && meta.len() >= MIN_COMPRESS;
        if meta.len() <= MAX_CACHED_FILE {
            let entry = self.read_entry(
                file,
                &meta,
                file_path,
                content_type,
                cache_control,
                compressible,
            )?;
            self.cache.insert(key, Arc::clone(&entry));
            return Ok(Loaded::Cached(entry));
        }

        let identity = Validators::of(&meta, "");
        // Probed even for a range (served from the original) so that `Vary` is the same on
        // every response for this file.
        let mut sidecars = [None, None];
        for (slot, encoding) in sidecars.iter_mut().zip(Encoding::ALL) {
            *slot = self.sidecar(&file_path, encoding, &meta)?;
        }
        let has_sidecar = sidecars.iter().any(Option::is_some);
        let chosen = if ranged {
            None
        } else if has_sidecar {
            accept.choose(|e| sidecars[index(e)].is_some())
        } else if compressible {
            accept.choose(|_| true)
        } else {
            None
        };
        let mut streamed = Streamed {
            len: meta.len(),
            file,
            encoding: chosen,
            compress: chosen.is_some() && !has_sidecar,
            validators: identity,
            content_type,
            cache_control,
            vary: has_sidecar || compressible,
        };
        if let Some(encoding) = chosen {
            if let Some((file, side_meta)) = sidecars[index(encoding)].take() {
                streamed.validators = Validators {
                    etag: Validators::of(&side_meta, encoding.etag_suffix()).etag,
                    ..streamed.validators
                };
                streamed.len = side_meta.len();
                streamed.file = file;
            } else {
                streamed.validators = streamed.validators.with_suffix(encoding.etag_suffix());
            }
        }
        Ok(Loaded::Stream(Box::new(streamed)))
    }

    /// A sidecar of `file_path` for `encoding` that is a regular file not older than the
    /// original (a stale one left by a deploy is ignored).
    fn sidecar(
        &self,
        file_path: &str,
        encoding: Encoding,
        original: &Metadata,
    ) -> io::Result<Option<(File, Metadata)>> {
        let path = format!("{file_path}{}", encoding.suffix());
        let file = match self.resolver.open(&path) {
            Ok(file) => file,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        let meta = file.metadata()?;
        let fresh = meta.is_file() && Stamp::of(&meta).not_older_than(&Stamp::of(original));
        Ok(fresh.then_some((file, meta)))
    }

    fn read_entry(
        &self,
        file: File,
        meta: &Metadata,
        file_path: String,
        content_type: HeaderValue,
        cache_control: HeaderValue,
        compressible: bool,
    ) -> io::Result<Arc<Entry>> {
        let body = read_whole(file, meta.len())?;
        let validators = Validators::of(meta, "");
        let mut encoded = [None, None];
        let mut stamps = Stamps {
            file: Stamp::of(meta),
            sidecars: [None, None],
        };
        for (i, encoding) in Encoding::ALL.into_iter().enumerate() {
            let path = format!("{file_path}{}", encoding.suffix());
            let side = match self.resolver.open(&path) {
                Ok(side) => side,
                Err(err) if is_not_found(&err) => continue,
                Err(err) => return Err(err),
            };
            let side_meta = side.metadata()?;
            if !side_meta.is_file() {
                continue;
            }
            stamps.sidecars[i] = Some(Stamp::of(&side_meta));
            if Stamp::of(&side_meta).not_older_than(&stamps.file)
                && side_meta.len() <= MAX_CACHED_FILE
            {
                let bytes = read_whole(side, side_meta.len())?;
                let etag = Validators::of(&side_meta, encoding.etag_suffix()).etag;
                encoded[i] = Some(Variant::new(bytes, etag));
            }
        }
        let room = self.cache.has_room(meta.len().saturating_mul(3));
        if compressible && room && stamps.sidecars.iter().all(Option::is_none) {
            for (i, encoding) in Encoding::ALL.into_iter().enumerate() {
                let packed = compress(&body, encoding)?;
                // Keep a copy only when it saves something worth a header.
                if packed.len() + 64 < body.len() {
                    let etag = validators.with_suffix(encoding.etag_suffix()).etag;
                    encoded[i] = Some(Variant::new(Bytes::from(packed), etag));
                }
            }
        }
        let identity = Variant::new(body, validators.etag.clone());
        Ok(self.cache.entry(EntryParts {
            file: file_path.into(),
            identity,
            encoded,
            content_type,
            cache_control,
            validators,
            stamps,
        }))
    }

    /// Whether `entry` still matches the disk: the same file (device, inode, size, mtime) at
    /// its path, and the same sidecars.
    pub(super) fn unchanged(&self, entry: &Entry) -> bool {
        let stamp = |path: &str| -> Option<Stamp> {
            let meta = self.resolver.open(path).ok()?.metadata().ok()?;
            meta.is_file().then(|| Stamp::of(&meta))
        };
        if stamp(&entry.file) != Some(entry.stamps.file) {
            return false;
        }
        Encoding::ALL.into_iter().enumerate().all(|(i, encoding)| {
            stamp(&format!("{}{}", entry.file, encoding.suffix())) == entry.stamps.sidecars[i]
        })
    }

    fn is_hashed(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.manifest.load().contains(path) || self.patterns.matches(path) || is_hashed_name(name)
    }
}

fn index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Brotli => 0,
        Encoding::Gzip => 1,
    }
}

fn read_whole(file: File, len: u64) -> io::Result<Bytes> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // A file that grew since its metadata was read is cut at the size the headers promise;
    // the next check sees the new size.
    file.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while read",
        ));
    }
    Ok(Bytes::from(bytes))
}

/// Compresses a cached body once, at the codecs' high settings: the cost is paid once per
/// file change, not per request.
fn compress(body: &[u8], encoding: Encoding) -> io::Result<Vec<u8>> {
    match encoding {
        Encoding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(body)?;
            encoder.finish()
        }
        Encoding::Brotli => {
            let params = brotli::enc::BrotliEncoderParams {
                quality: 9,
                lgwin: 22,
                size_hint: body.len(),
                ..Default::default()
            };
            let mut out = Vec::new();
            brotli::BrotliCompress(&mut &body[..], &mut out, &params)?;
            Ok(out)
        }
    }
}

/// Media types whose bodies compress well; everything else (images, fonts in compressed
/// formats, archives, video) is sent as it is.
pub(super) const COMPRESSIBLE: &[&str] = &[
    "application/javascript",
    "application/json",
    "application/manifest+json",
    "application/wasm",
    "application/xml",
    "application/x-javascript",
    "application/vnd.ms-fontobject",
    "font/otf",
    "font/ttf",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
];

/// Text that gets `charset=utf-8` besides `text/*`.
const TEXTUAL: &[&str] = &[
    "application/javascript",
    "application/json",
    "application/manifest+json",
    "application/xml",
    "application/x-javascript",
    "image/svg+xml",
];

/// `Content-Type` for a path by its extension, and whether such bodies compress well.
pub fn content_type(path: &str) -> (HeaderValue, bool) {
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream");
    let text = mime.starts_with("text/");
    let compressible = super::is_compressible(mime);
    let value = if text || TEXTUAL.contains(&mime) {
        HeaderValue::try_from(format!("{mime}; charset=utf-8"))
    } else {
        HeaderValue::try_from(mime)
    };
    let value = value.unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    (value, compressible)
}
