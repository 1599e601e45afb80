//! One replica's pool of HTTP/1.1 connections.
//!
//! The pool speaks HTTP/1.1 itself (`wire.rs`, `conn.rs`) from the request's task: no task per
//! connection, no channel between a request and its connection. hyper's client
//! (`hyper::client::conn::http1`) drives each connection from a task of its own, which costs
//! two task wake-ups and a channel hand-off per request and per body chunk, about a third of
//! a small proxied request's user-space work; hyper-util's legacy client adds one global
//! `Mutex` around all pools and has no per-host cap.
//!
//! Shape of a request's trip through the pool:
//!
//! 1. checkout: pop the most recently returned idle connection (LIFO keeps the warm set small),
//!    skipping expired ones and ones the upstream closed; else take a slot from the semaphore
//!    and connect; else wait, up to `queue_timeout`, for either.
//! 2. exchange: write the head (and the body, if any) and read the response head. If the
//!    socket of a reused connection refuses the very first write (the app reset it just as we
//!    picked it), nothing was sent: retry once on a fresh connection.
//! 3. the response body ([`PooledBody`]) owns the connection and puts it back in the idle list
//!    when its last byte has been read; dropping it early closes the connection instead. A
//!    response that is complete with its head (most small ones) gives the connection back at
//!    once.
//!
//! Each connection owns its semaphore permit, so the slot is freed exactly when the socket is
//! gone; an upgrade hands the socket to the tunnel and frees the slot.

mod body;
mod conn;
mod error;
mod wire;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, request};
use http_body::Body;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config;

pub use body::PooledBody;
pub use conn::Upgraded;
pub use error::{ErrorKind, SendError};

use body::Lease;
use conn::{Failed, Io, Upload};
use error::{BoxError, Failure};
use wire::{Decoder, ResponseFraming, ResponseHead};

/// The smallest response-head limit (the gateway's own request-head floor).
const MIN_MAX_HEAD: usize = 8192;

/// Longer idle timeouts are cut to this, which keeps deadline arithmetic far from overflow.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How a replica's pool behaves; built from the upstream's validated config.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most TCP connections open to the replica at once (idle, busy or connecting).
    pub max_connections: usize,
    /// How long a request waits for a connection when the cap is reached.
    pub queue_timeout: Duration,
    /// Idle connections are closed after this. Zero disables reuse; at most one day.
    pub idle_timeout: Duration,
    /// Limit on establishing the TCP connection; `None` waits for the OS.
    pub connect_timeout: Option<Duration>,
    /// Largest response head (and trailer section) accepted, in bytes; values below 8192 are
    /// raised to 8192.
    pub max_response_header: usize,
}

impl PoolSettings {
    /// Settings for each replica of `upstream`. The connect timeout is per route in the config
    /// (`timeouts.upstream_connect`), so the caller picks the one that applies.
    pub fn for_upstream(upstream: &config::Upstream, connect_timeout: Option<Duration>) -> Self {
        Self {
            max_connections: upstream.max_connections,
            queue_timeout: upstream.queue_timeout,
            idle_timeout: upstream.idle_timeout,
            connect_timeout,
            max_response_header: upstream.max_response_header,
        }
    }
}

/// A snapshot of a pool's counters, for metrics and the admin status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections holding a slot: connecting, busy or idle. Upgraded tunnels are not counted.
    pub open: usize,
    /// Connections waiting in the idle list.
    pub idle: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// One replica's pool of HTTP/1.1 connections to `addr`. Generic over the request body type so
/// the proxy can pass its own concrete body (no boxing).
pub struct Pool<B> {
    addr: SocketAddr,
    settings: PoolSettings,
    /// `max_response_header`, floored.
    max_head: usize,
    /// Handed to connections so a finished response body can find its way back.
    me: Weak<Pool<B>>,
    /// One permit per open connection; the permit lives in the connection's driver task.
    slots: Arc<Semaphore>,
    max_connections: usize,
    idle: Mutex<IdleList<B>>,
    /// Signalled when a connection goes idle while requests are waiting.
    returned: Notify,
    waiting: AtomicUsize,
    reaper_started: AtomicBool,
}

struct IdleList<B> {
    /// Oldest at the front, most recently returned at the back. Ordered by `idle_since`
    /// because the timestamp is taken under the lock.
    conns: VecDeque<Box<Conn<B>>>,
    /// Set by [`Pool::retire`]; checked under the same lock as the push so no connection can
    /// slip into the idle list after retirement.
    retired: bool,
}

/// A connection. Boxed once at connect and then moved between the idle list and the response
/// body, so a request allocates nothing here.
struct Conn<B> {
    pool: Weak<Pool<B>>,
    io: Io,
    /// A request body still on its way when the response head came.
    upload: Option<Upload<B>>,
    idle_since: Instant,
}

impl<B> Conn<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// No request body is left half-sent.
    fn upload_complete(&self) -> bool {
        self.upload.as_ref().is_none_or(Upload::is_complete)
    }
}

impl<B> fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<B> Pool<B>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// A pool for the replica at `addr`. Connects lazily, on the first request.
    pub fn new(addr: SocketAddr, mut settings: PoolSettings) -> Arc<Self> {
        settings.idle_timeout = settings.idle_timeout.min(MAX_IDLE_TIMEOUT);
        let max_connections = settings.max_connections.min(Semaphore::MAX_PERMITS);
        let max_head = settings.max_response_header.max(MIN_MAX_HEAD);
        Arc::new_cyclic(|me| Self {
            addr,
            settings,
            max_head,
            me: me.clone(),
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            idle: Mutex::new(IdleList {
                conns: VecDeque::new(),
                retired: false,
            }),
            returned: Notify::new(),
            waiting: AtomicUsize::new(0),
            reaper_started: AtomicBool::new(false),
        })
    }

    /// The replica's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Send one request (origin-form URI, headers already rewritten by the caller). The
    /// caller keeps the head (`parts`), so a request sent again, elsewhere or replayed, is not
    /// handed back and forth: only an unsent body comes back, in the error.
    ///
    /// Returns the response whose body, when read to the end, hands the connection back to the
    /// idle list. If the response is an upgrade (101, or a 2xx to CONNECT), the connection is
    /// not reused: [`PooledBody::take_upgraded`] hands over its socket.
    ///
    /// `header_timeout` (`upstream_header`) bounds the wait for the response head, counted from
    /// the moment the request, body included, has been written: a long upload is bounded by
    /// the body's own idle timeout, not by this.
    ///
    /// `now` is the caller's clock reading for this attempt, taken just before: an idle
    /// connection's age and, for a request written at once, the `upstream_header` clock are
    /// counted from it, so that a request does not read the clock at every step (under load
    /// the clock was about 1 % of the proxy's CPU).
    ///
    /// An `async` block rather than an `async fn`, for the reason given at `service::handle`.
    #[expect(clippy::manual_async_fn, reason = "no second copy of the arguments")]
    pub fn send(
        &self,
        parts: &request::Parts,
        mut body: B,
        added: &[(HeaderName, HeaderValue)],
        header_timeout: Option<Duration>,
        now: Instant,
    ) -> impl Future<Output = Result<Response<PooledBody>, SendError<B>>> {
        async move {
            let is_connect = parts.method == Method::CONNECT;
            let mut fresh = false;
            loop {
                let (mut conn, reused, begun) = match self.checkout(fresh, now).await {
                    Ok(checked_out) => checked_out,
                    Err(failure) => return Err(failure.with_body(body)),
                };
                let limits = conn::Limits {
                    max_head: self.max_head,
                    header_timeout,
                    begun,
                };
                let exchanged =
                    conn::exchange(&mut conn.io, &mut conn.upload, parts, body, added, limits)
                        .await;
                match exchanged {
                    Ok(head) => return Ok(self.lease(conn, head, is_connect)),
                    // The app closed a kept-alive connection just as we picked it and nothing was
                    // written: safe to retry whatever the method, but only once and only on a new
                    // connection, which cannot have that race.
                    Err(Failed::Unsent(back, error, _)) if reused && !fresh => {
                        tracing::debug!(addr = %self.addr, %error, "reused connection closed before sending; retrying on a new one");
                        body = back;
                        fresh = true;
                    }
                    Err(Failed::Unsent(back, error, kind)) => {
                        return Err(SendError {
                            kind,
                            body: Some(back),
                            source: Some(error),
                        });
                    }
                    Err(Failed::Lost(error, kind)) => {
                        return Err(SendError {
                            kind,
                            body: None,
                            source: Some(error),
                        });
                    }
                }
            }
        }
    }

    /// Close every idle connection now (replica left the pool or is not live). In-flight
    /// requests are unaffected and their connections may go idle again afterwards.
    pub fn close_idle(&self) {
        let closing = std::mem::take(&mut self.lock_idle().conns);
        drop(closing);
    }

    /// Stop reusing: close idle connections now and every other connection once its in-flight
    /// response ends (replica drained or removed). Later requests still work, one connection
    /// each.
    pub fn retire(&self) {
        let closing = {
            let mut idle = self.lock_idle();
            idle.retired = true;
            std::mem::take(&mut idle.conns)
        };
        drop(closing);
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            open: self
                .max_connections
                .saturating_sub(self.slots.available_permits()),
            idle: self.lock_idle().conns.len(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    fn lock_idle(&self) -> MutexGuard<'_, IdleList<B>> {
        // Nothing panics while the lock is held; if something did, the list is still valid.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection ready for one request, whether it has served one before, and when it was
    /// ready: `now` for an idle one, else the clock read again (making a connection or
    /// waiting for one takes time of its own). `fresh` skips idle connections (used for the
    /// transparent retry).
    async fn checkout(
        &self,
        fresh: bool,
        now: Instant,
    ) -> Result<(Box<Conn<B>>, bool, Instant), Failure> {
        if !fresh {
            if let Some(conn) = self.take_idle(now) {
                return Ok((conn, true, now));
            }
        }
        // Connecting and queueing are boxed: they are rare, and their futures (a TCP connect
        // under a timeout, a select over a semaphore, a notification and a timer) would otherwise
        // size every request's future, which hyper keeps a slot for in every connection.
        let (conn, reused) = if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            (Box::pin(self.connect(permit)).await?, false)
        } else {
            Box::pin(self.wait(fresh)).await?
        };
        Ok((conn, reused, Instant::now()))
    }

    /// Wait, up to `queue_timeout`, for a connection to come back idle or for a slot. Slots
    /// are handed out in FIFO order by the semaphore; idle connections by `Notify`, also FIFO.
    async fn wait(&self, fresh: bool) -> Result<(Box<Conn<B>>, bool), Failure> {
        let _waiting = Waiting::enter(&self.waiting);
        let mut expired = pin!(tokio::time::sleep(self.settings.queue_timeout));
        let mut returned = pin!(self.returned.notified());
        loop {
            // Registered before looking at the idle list so that a connection returned right
            // after the look still wakes us.
            returned.as_mut().enable();
            if !fresh {
                if let Some(conn) = self.take_idle(Instant::now()) {
                    return Ok((conn, true));
                }
            }
            tokio::select! {
                biased;
                permit = Arc::clone(&self.slots).acquire_owned() => {
                    let permit = permit.map_err(|e| Failure::new(ErrorKind::Other, e))?;
                    return Ok((self.connect(permit).await?, false));
                }
                () = &mut returned, if !fresh => returned.set(self.returned.notified()),
                () = &mut expired => {
                    return Err(Failure { kind: ErrorKind::QueueTimeout, source: None });
                }
            }
        }
    }

    /// Pop the most recently returned usable idle connection; stale ones (idle for
    /// `idle_timeout` at `now`) are dropped (closed).
    fn take_idle(&self, now: Instant) -> Option<Box<Conn<B>>> {
        loop {
            let mut conn = self.lock_idle().conns.pop_back()?;
            if now.saturating_duration_since(conn.idle_since) < self.settings.idle_timeout
                && !conn.io.is_closed()
            {
                return Some(conn);
            }
        }
    }

    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<Box<Conn<B>>, Failure> {
        self.start_reaper();
        let stream = connect_tcp(self.addr, self.settings.connect_timeout).await?;
        Ok(Box::new(Conn {
            pool: self.me.clone(),
            io: Io::new(stream, permit),
            upload: None,
            idle_since: Instant::now(),
        }))
    }

    /// Attach the connection to the response body, or put it back / drop it right away.
    fn lease(
        &self,
        mut conn: Box<Conn<B>>,
        head: ResponseHead,
        is_connect: bool,
    ) -> Response<PooledBody> {
        let ResponseHead {
            parts,
            framing,
            keep_alive,
        } = head;
        let status = parts.status;
        if status == StatusCode::SWITCHING_PROTOCOLS || (is_connect && status.is_success()) {
            // The socket leaves the pool, and with it the connection's slot.
            let Conn { io, .. } = *conn;
            return Response::from_parts(parts, PooledBody::upgraded(io.into_upgraded()));
        }
        let mut decoder = Decoder::new(framing);
        let ready = match framing {
            ResponseFraming::Length(len) if conn.io.buffered() as u64 >= len => {
                conn.io.take_body(&mut decoder)
            }
            _ => None,
        };
        let body = if decoder.is_done() {
            if keep_alive && conn.upload_complete() && conn.io.is_clean() {
                self.put_idle(conn);
            }
            PooledBody::ready(ready)
        } else {
            PooledBody::streaming(conn, decoder, keep_alive, self.max_head)
        };
        Response::from_parts(parts, body)
    }

    fn put_idle(&self, mut conn: Box<Conn<B>>) {
        if self.settings.idle_timeout.is_zero() {
            return;
        }
        conn.upload = None;
        {
            let mut idle = self.lock_idle();
            if idle.retired {
                return;
            }
            conn.idle_since = Instant::now();
            idle.conns.push_back(conn);
        }
        // The lock orders this load after a waiter's registration and idle-list check, so a
        // waiter that missed the connection is counted here.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.returned.notify_one();
        }
    }

    fn start_reaper(&self) {
        if self.settings.idle_timeout.is_zero()
            || self.reaper_started.load(Ordering::Relaxed)
            || self.reaper_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(reap(self.me.clone(), self.settings.idle_timeout));
    }

    /// Remove expired and closed idle connections; returns them (to be dropped outside the
    /// lock) and when the oldest remaining one expires.
    fn evict(&self, now: Instant) -> (VecDeque<Box<Conn<B>>>, Option<Instant>) {
        let ttl = self.settings.idle_timeout;
        let mut idle = self.lock_idle();
        let stale = idle
            .conns
            .partition_point(|c| now.duration_since(c.idle_since) >= ttl);
        let kept = idle.conns.split_off(stale);
        let mut evicted = std::mem::replace(&mut idle.conns, kept);
        // Closed ones (the app went away) sit anywhere in the list.
        let kept = std::mem::take(&mut idle.conns);
        for mut conn in kept {
            if conn.io.is_closed() {
                evicted.push_back(conn);
            } else {
                idle.conns.push_back(conn);
            }
        }
        let next = idle.conns.front().map(|c| c.idle_since + ttl);
        (evicted, next)
    }
}

/// The pool's one background task: closes idle connections as they expire, so the gateway
/// closes first (uvicorn's keep-alive is 5 s) and never writes to a socket being closed. It
/// holds only a `Weak`, so it ends at the first wake-up after the pool is dropped.
async fn reap<B>(pool: Weak<Pool<B>>, ttl: Duration)
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut wake = Instant::now() + ttl;
    loop {
        tokio::time::sleep_until(wake).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        let (evicted, next) = pool.evict(now);
        drop(pool);
        drop(evicted);
        wake = next.unwrap_or(now + ttl);
    }
}

/// Counts a waiting request for as long as it waits (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connect with `TCP_NODELAY` (requests and responses are written whole; Nagle only adds
/// latency to the last segment).
async fn connect_tcp(addr: SocketAddr, limit: Option<Duration>) -> Result<TcpStream, Failure> {
    let connecting = TcpStream::connect(addr);
    let connected = match limit {
        Some(limit) => tokio::time::timeout(limit, connecting)
            .await
            .map_err(|elapsed| Failure::new(ErrorKind::ConnectTimeout, elapsed))?,
        None => connecting.await,
    };
    let stream = connected.map_err(|e| {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
            _ => ErrorKind::Connect,
        };
        Failure::new(kind, e)
    })?;
    stream
        .set_nodelay(true)
        .map_err(|e| Failure::new(ErrorKind::Connect, e))?;
    Ok(stream)
}

impl<B> Lease for Conn<B>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    fn io(&mut self) -> &mut Io {
        &mut self.io
    }

    fn poll_upload(&mut self, cx: &mut Context<'_>) {
        if let Some(upload) = self.upload.as_mut().filter(|up| !up.is_done()) {
            if let std::task::Poll::Ready(Err(error)) = upload.poll(cx, self.io.stream_mut()) {
                let error = error.into_inner();
                tracing::debug!(%error, "request body upload ended early");
                upload.fail();
            }
        }
    }

    fn upload_complete(&self) -> bool {
        Conn::upload_complete(self)
    }

    fn give_back(self: Box<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put_idle(self);
        }
    }
}

#[cfg(test)]
mod tests;
