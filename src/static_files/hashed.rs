//! Which files are content-hashed, and so safe to cache for a year.
//!
//! A file is hashed when a build manifest at the static root lists it, when a configured
//! pattern matches it, or when its name carries a hash the way bundlers write one. The name
//! rules are deliberately strict: a false positive caches a mutable file for a year, a false
//! negative only costs a revalidation.

use std::collections::HashSet;

use serde_json::Value;

/// Build manifests looked for at the static root, relative to it.
pub const MANIFESTS: [&str; 3] = [
    ".vite/manifest.json",
    "manifest.json",
    "asset-manifest.json",
];

/// Whether `name` (a file name, no directory) carries a content hash.
///
/// The candidate is the segment between the stem's last `.` or `-` and the extension (after
/// dropping a trailing `.map`, and `.chunk` or `.min` before the extension), with a non-empty
/// name before it:
///
/// - 8 to 64 hex digits of one case with at least one digit and one letter
///   (`main.3f9a8c1b.css`; a letter is required so that dates such as `20240101` are not
///   taken for hashes);
/// - 8 to 64 base64url characters with an upper-case letter and a digit
///   (`app-5XQJ2K7D.js`, `index-B3kDlQx9.js`);
/// - exactly 8 letters of both cases after a `-` (Vite and Rollup's default, `index-DiwrgTda.js`);
/// - Vite's 8-character hash may itself hold `-` or `_`: the last 8 characters of the stem
///   after a `-` count when they hold a digit and both letter cases (`index-B_3kDl-x.js`).
pub fn is_hashed_name(name: &str) -> bool {
    let name = name.strip_suffix(".map").unwrap_or(name);
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    // Create React App's `787.c4e7f8f5.chunk.js`, and minified copies.
    let stem = stem
        .strip_suffix(".chunk")
        .or_else(|| stem.strip_suffix(".min"))
        .unwrap_or(stem);
    if let Some(split) = stem.rfind(['.', '-']) {
        let (before, token) = (&stem[..split], &stem[split + 1..]);
        let after_dash = stem.as_bytes()[split] == b'-';
        if !before.is_empty() && is_hash_token(token, after_dash) {
            return true;
        }
    }
    // `name-XXXXXXXX` where the 8 characters may hold `-` and `_`.
    let bytes = stem.as_bytes();
    if bytes.len() >= 10 && bytes[bytes.len() - 9] == b'-' {
        let token = &bytes[bytes.len() - 8..];
        let classes = Classes::of(token);
        return classes.base64url && classes.digit && classes.upper && classes.lower;
    }
    false
}

fn is_hash_token(token: &str, after_dash: bool) -> bool {
    let bytes = token.as_bytes();
    if !(8..=64).contains(&bytes.len()) {
        return false;
    }
    let c = Classes::of(bytes);
    let hex_one_case = bytes.iter().all(u8::is_ascii_hexdigit) && !(c.upper && c.lower);
    if hex_one_case && c.digit && (c.upper || c.lower) {
        return true;
    }
    // Tokens here hold no `-` (it splits), so base64url means letters, digits and `_`.
    if !c.base64url {
        return false;
    }
    // With a digit: an upper-case letter too. Without: Vite's 8 letters of both cases.
    c.upper && (c.digit || (after_dash && bytes.len() == 8 && c.lower))
}

/// Which character classes a token holds.
struct Classes {
    digit: bool,
    upper: bool,
    lower: bool,
    /// Only `A-Z a-z 0-9 - _`.
    base64url: bool,
}

impl Classes {
    fn of(bytes: &[u8]) -> Self {
        Classes {
            digit: bytes.iter().any(u8::is_ascii_digit),
            upper: bytes.iter().any(u8::is_ascii_uppercase),
            lower: bytes.iter().any(u8::is_ascii_lowercase),
            base64url: bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        }
    }
}

/// Configured `immutable_patterns`: `*` matches any run of characters except `/`. A pattern
/// without `/` is matched against the file name, one with `/` against the whole path below
/// the root.
#[derive(Debug, Default)]
pub struct Patterns(Vec<Box<str>>);

impl Patterns {
    /// Compiles validated patterns (no leading `/`).
    pub fn new(patterns: &[String]) -> Self {
        Patterns(patterns.iter().map(|p| p.as_str().into()).collect())
    }

    /// Whether any pattern matches `path` (below the root, no leading `/`).
    pub fn matches(&self, path: &str) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.0.iter().any(|p| {
            let subject = if p.contains('/') { path } else { name };
            glob(p.as_bytes(), subject.as_bytes())
        })
    }
}

/// `*` matches any run of bytes except `/`; everything else matches itself. Iterative with
/// one backtrack point, so it is linear-ish and cannot blow up on hostile input.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| text[st] != b'/') {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Files that a build manifest at the root names as emitted (hashed) assets, stored as every
/// `/`-suffix of each path so that a `publicPath` prefix in the manifest (`/static/js/x.js`,
/// `https://cdn.example.com/build/x.js`) still matches the file's path below the root.
#[derive(Debug, Default)]
pub struct Manifest(HashSet<Box<str>>);

impl Manifest {
    /// Reads whatever manifests `read` returns (a manifest's text by its path below the root,
    /// `None` when absent). Unreadable or malformed manifests are skipped with a warning:
    /// without them names are still judged by their shape.
    pub fn load(read: impl Fn(&str) -> Option<Vec<u8>>) -> Self {
        let mut manifest = Manifest::default();
        for path in MANIFESTS {
            let Some(bytes) = read(path) else { continue };
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => manifest.collect(&value),
                Err(err) => tracing::warn!(manifest = path, "ignoring build manifest: {err}"),
            }
        }
        manifest
    }

    /// Whether the manifest names `path` (below the root).
    pub fn contains(&self, path: &str) -> bool {
        !self.0.is_empty() && self.0.contains(path)
    }

    /// Whether no manifest named any file.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn collect(&mut self, value: &Value) {
        let Value::Object(map) = value else { return };
        // Create React App: { "files": { "main.js": "/static/js/main.3f9a8c1b.js",
        // "index.html": "/index.html", ... } }: every emitted file but the pages is hashed.
        if let Some(Value::Object(files)) = map.get("files") {
            for file in files.values().filter_map(Value::as_str) {
                if !strip_url(file).ends_with(".html") {
                    self.insert(file);
                }
            }
            return;
        }
        for (name, entry) in map {
            match entry {
                // Vite: { "src/main.ts": { "file": "assets/index-DiwrgTda.js", "css": [..] } }.
                // A chunk whose file kept its source's stem was emitted without a hash.
                Value::Object(chunk) => {
                    if let Some(Value::String(file)) = chunk.get("file") {
                        if stem(file) != stem(name) {
                            self.insert(file);
                        }
                    }
                    for list in ["css", "assets"] {
                        if let Some(Value::Array(items)) = chunk.get(list) {
                            items
                                .iter()
                                .filter_map(Value::as_str)
                                .for_each(|f| self.insert(f));
                        }
                    }
                }
                // webpack-manifest-plugin: { "main.js": "/static/main.3f9a8c1b.js" }. The
                // emitted name must extend the logical one, which also keeps a web app
                // manifest (`"start_url": "/index.html"`) from being read as a build manifest.
                Value::String(file) => {
                    let (logical, emitted) = (stem(name), stem(file));
                    if emitted != logical && emitted.starts_with(logical) && !logical.is_empty() {
                        self.insert(file);
                    }
                }
                _ => {}
            }
        }
    }

    fn insert(&mut self, file: &str) {
        let path = strip_url(file).trim_start_matches('/');
        if path.is_empty() || path.ends_with('/') {
            return;
        }
        let mut rest = path;
        loop {
            self.0.insert(rest.into());
            match rest.split_once('/') {
                Some((_, tail)) if !tail.is_empty() => rest = tail,
                _ => break,
            }
        }
    }
}

/// The file name of a path or URL without its extension.
fn stem(path: &str) -> &str {
    let name = strip_url(path).rsplit('/').next().unwrap_or_default();
    name.rsplit_once('.').map_or(name, |(stem, _)| stem)
}

/// `https://cdn/x/y.js?v=1#f` -> `/x/y.js`; a plain path loses only query and fragment.
fn strip_url(file: &str) -> &str {
    let file = file.split(['?', '#']).next().unwrap_or(file);
    match file.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |slash| &rest[slash..]),
        None => file,
    }
}

#[cfg(test)]
mod tests;
