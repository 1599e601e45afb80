//! The access log: one line per request, JSON or text, written in batches by one thread.
//!
//! A request formats its line into a reused thread-local buffer (a hand-written JSON writer
//! with proper escaping, no `tracing` event and no `core::fmt` on the common path: numbers
//! and IPv4 addresses are written digit by digit, the date and time up to the second are
//! formatted once per second, and strings with nothing to escape are copied whole) and
//! appends it to a shared batch under a lock held only for the copy. A dedicated thread writes the batch when it reaches [`BATCH`] bytes or
//! every [`FLUSH_EVERY`], like nginx's `access_log ... buffer=64k flush=...`. If the writer
//! falls behind by more than [`MAX_PENDING`], lines are dropped and counted rather than
//! blocking requests. A file target is reopened on request (SIGUSR1), for logrotate.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::LogFormat;

/// Written as soon as the batch holds this much.
pub const BATCH: usize = 64 * 1024;
/// Written at least this often while lines wait.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines beyond this much unwritten text are dropped (a stuck disk or pipe).
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// Everything one access line says. Strings are written escaped; `None` is `null` / `-`.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the request started.
    pub time: SystemTime,
    /// The id returned to the client in `X-Request-Id`.
    pub request_id: Option<&'a [u8]>,
    /// The resolved client address.
    pub client: IpAddr,
    /// Request method.
    pub method: &'a str,
    /// `Host` / `:authority` as received.
    pub host: Option<&'a [u8]>,
    /// Path as received, without the query.
    pub path: &'a str,
    /// The query, only when `log.log_query = true`.
    pub query: Option<&'a str>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// Response status.
    pub status: u16,
    /// Request body size when known up front (`Content-Length`, or no body).
    pub bytes_in: Option<u64>,
    /// Response body size when known at the response head.
    pub bytes_out: Option<u64>,
    /// Request head to response head.
    pub duration: Duration,
    /// Matched route.
    pub route: Option<&'a str>,
    /// Replica that answered (or failed last).
    pub replica: Option<&'a str>,
    /// Sending to the replica until its response head.
    pub upstream_duration: Option<Duration>,
    /// Attempts sent again to another replica.
    pub retries: u32,
    /// The rate limit that refused the request.
    pub rate_limit: Option<&'a str>,
    /// The W3C trace id sent to the app.
    pub trace_id: Option<[u8; 32]>,
}

struct Inner {
    batch: Mutex<Vec<u8>>,
    wake: Condvar,
    format: LogFormat,
    reopen: AtomicBool,
    stop: AtomicBool,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Handle to the access log; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The last second formatted, and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

impl AccessLog {
    /// Starts the writer thread for stdout (`None`) or the file at `path` (appended to,
    /// created if missing; failing to open it fails here, at startup).
    pub fn start(path: Option<PathBuf>, format: LogFormat) -> io::Result<Self> {
        let sink = match path {
            None => Sink::Stdout,
            Some(path) => Sink::File {
                file: open(&path)?,
                path,
            },
        };
        let inner = Arc::new(Inner {
            batch: Mutex::new(Vec::with_capacity(BATCH)),
            wake: Condvar::new(),
            format,
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            thread: Mutex::new(None),
        });
        let writer = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(&writer, sink))?;
        *inner.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(Self { inner })
    }

    /// Formats `entry` and queues it for the writer.
    pub fn write(&self, entry: &Entry<'_>) {
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            match self.inner.format {
                LogFormat::Json => json_line(&mut line, entry),
                LogFormat::Text => text_line(&mut line, entry),
            }
            let mut batch = self.inner.lock();
            if batch.len() + line.len() > MAX_PENDING {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let before = batch.len();
            batch.extend_from_slice(&line);
            // Wake the writer once, when the batch first reaches its size.
            if before < BATCH && batch.len() >= BATCH {
                self.inner.wake.notify_one();
            }
        });
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }

    /// Writes what is queued and stops the writer thread.
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        let handle = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Sink {
    Stdout,
    File { path: PathBuf, file: File },
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            // Locking stdout keeps whole lines apart from `tracing`'s own writes.
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Self::File { file, .. } => file.write_all(bytes),
        }
    }

    fn reopen(&mut self) {
        if let Self::File { path, file } = self {
            match open(path) {
                Ok(fresh) => {
                    *file = fresh;
                    tracing::info!(path = %path.display(), "access log reopened");
                }
                Err(err) => {
                    tracing::error!(path = %path.display(), "cannot reopen the access log, still writing to the old file: {err}");
                }
            }
        }
    }
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: waits until the batch is full, [`FLUSH_EVERY`] passed, or it is asked
/// to reopen or stop; swaps the batch out and writes it without holding the lock.
fn run(inner: &Inner, mut sink: Sink) {
    let mut spare = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        let deadline = Instant::now() + FLUSH_EVERY;
        let mut batch = inner.lock();
        loop {
            if batch.len() >= BATCH
                || inner.stop.load(Ordering::Acquire)
                || inner.reopen.load(Ordering::Acquire)
            {
                break;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            batch = inner
                .wake
                .wait_timeout(batch, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut *batch, &mut spare);
        drop(batch);

        if !spare.is_empty() {
            match sink.write_all(&spare) {
                Ok(()) => failing = false,
                // Said once per outage, not once per batch.
                Err(err) if !failing => {
                    failing = true;
                    tracing::error!("cannot write the access log: {err}");
                }
                Err(_) => {}
            }
            spare.clear();
        }
        let dropped = inner.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "access log lines dropped: the writer fell behind");
        }
        if inner.reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        if inner.stop.load(Ordering::Acquire) && inner.lock().is_empty() {
            return;
        }
    }
}

/// One JSON object and a newline; the fields of `tracing`'s JSON lines (`timestamp`, `level`,
/// `target`) come first so both kinds of line ship through the same pipeline.
pub fn json_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    rfc3339(out, e.time);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"edgeward::access\"");
    json_field(out, "request_id", e.request_id);
    out.extend_from_slice(b",\"client\":\"");
    ip(out, e.client);
    out.push(b'"');
    json_field(out, "method", Some(e.method.as_bytes()));
    json_field(out, "host", e.host);
    json_field(out, "path", Some(e.path.as_bytes()));
    if let Some(query) = e.query {
        json_field(out, "query", Some(query.as_bytes()));
    }
    out.extend_from_slice(b",\"protocol\":\"");
    out.extend_from_slice(e.protocol.as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    digits(out, u64::from(e.status));
    json_number(out, "bytes_in", e.bytes_in);
    json_number(out, "bytes_out", e.bytes_out);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(out, e.duration);
    json_field(out, "route", e.route.map(str::as_bytes));
    json_field(out, "replica", e.replica.map(str::as_bytes));
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.upstream_duration {
        Some(d) => millis(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"retries\":");
    digits(out, u64::from(e.retries));
    json_field(out, "rate_limit", e.rate_limit.map(str::as_bytes));
    json_field(out, "trace_id", e.trace_id.as_ref().map(|t| &t[..]));
    out.extend_from_slice(b"}\n");
}

fn json_field(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    match value {
        Some(v) => {
            out.push(b'"');
            escape(out, v, Style::Json);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn json_number(out: &mut Vec<u8>, key: &str, value: Option<u64>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    match value {
        Some(n) => digits(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// `key=value` pairs after a `tracing`-like prefix; strings quoted and escaped, absent `-`.
pub fn text_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    rfc3339(out, e.time);
    out.extend_from_slice(b"  INFO edgeward::access:");
    text_field(out, "request_id", e.request_id);
    out.extend_from_slice(b" client=");
    ip(out, e.client);
    text_field(out, "method", Some(e.method.as_bytes()));
    text_field(out, "host", e.host);
    text_field(out, "path", Some(e.path.as_bytes()));
    if let Some(query) = e.query {
        text_field(out, "query", Some(query.as_bytes()));
    }
    out.extend_from_slice(b" protocol=");
    out.extend_from_slice(e.protocol.as_bytes());
    out.extend_from_slice(b" status=");
    digits(out, u64::from(e.status));
    text_number(out, "bytes_in", e.bytes_in);
    text_number(out, "bytes_out", e.bytes_out);
    out.extend_from_slice(b" duration_ms=");
    millis(out, e.duration);
    text_field(out, "route", e.route.map(str::as_bytes));
    text_field(out, "replica", e.replica.map(str::as_bytes));
    out.extend_from_slice(b" upstream_ms=");
    match e.upstream_duration {
        Some(d) => millis(out, d),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" retries=");
    digits(out, u64::from(e.retries));
    text_field(out, "rate_limit", e.rate_limit.map(str::as_bytes));
    text_field(out, "trace_id", e.trace_id.as_ref().map(|t| &t[..]));
    out.push(b'\n');
}

fn text_field(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    match value {
        Some(v) => {
            out.push(b'"');
            escape(out, v, Style::Text);
            out.push(b'"');
        }
        None => out.push(b'-'),
    }
}

fn text_number(out: &mut Vec<u8>, key: &str, value: Option<u64>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    match value {
        Some(n) => digits(out, n),
        None => out.push(b'-'),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Json,
    Text,
}

/// Escapes quotes, backslashes, control characters (C0, DEL) and, when `v` is not UTF-8,
/// every byte above ASCII: a log line never carries a raw control byte or invalid UTF-8, so
/// a request cannot forge lines or terminal escapes.
fn escape(out: &mut Vec<u8>, v: &[u8], style: Style) {
    // The common case: printable ASCII without quotes or backslashes, copied whole. The
    // check has no early exit: no branch per byte.
    let special = v.iter().fold(false, |seen, &b| {
        seen | !(0x20..0x7f).contains(&b) | (b == b'"') | (b == b'\\')
    });
    if !special {
        out.extend_from_slice(v);
        return;
    }
    let utf8 = std::str::from_utf8(v).is_ok();
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => hex_escape(out, b, style),
            0x80.. if !utf8 => hex_escape(out, b, style),
            _ => out.push(b),
        }
    }
}

fn hex_escape(out: &mut Vec<u8>, b: u8, style: Style) {
    let _ = match style {
        Style::Json => write!(out, "\\u{:04x}", b),
        Style::Text => write!(out, "\\x{:02x}", b),
    };
}

/// Milliseconds with microsecond precision: `12.345`.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    digits(out, us / 1000);
    out.push(b'.');
    padded(out, us % 1000, 3);
}

/// `n` in decimal.
fn digits(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// The low `width` decimal digits of `n`, zero-padded.
fn padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// An address as `Display` writes it; IPv4 (every client behind a typical load balancer)
/// without `core::fmt`.
fn ip(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                digits(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `2025-01-02T03:04:05.678901Z`. The text up to the second is made once per second per
/// thread.
pub fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let (year, month, day) = civil_from_days((secs / 86_400) as i64);
            let rem = secs % 86_400;
            let mut text = Vec::with_capacity(19);
            padded(&mut text, u64::try_from(year).unwrap_or(0), 4);
            for (sep, value) in [
                (b'-', u64::from(month)),
                (b'-', u64::from(day)),
                (b'T', rem / 3600),
                (b':', rem % 3600 / 60),
                (b':', rem % 60),
            ] {
                text.push(sep);
                padded(&mut text, value, 2);
            }
            cached.1.copy_from_slice(&text);
            cached.0 = secs;
        }
        out.extend_from_slice(&cached.1);
    });
    out.push(b'.');
    padded(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
