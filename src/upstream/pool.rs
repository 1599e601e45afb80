//! One replica's pool of HTTP/1.1 connections.
//!
//! Built on `hyper::client::conn::http1` rather than hyper-util's legacy client, which keeps
//! one global `Mutex` around all pools, has no per-host cap and costs ~10% more CPU.
//!
//! Shape of a request's trip through the pool:
//!
//! 1. checkout: pop the most recently returned idle connection (LIFO keeps the warm set small),
//!    skipping expired or closed ones; else take a slot from the semaphore and connect; else
//!    wait, up to `queue_timeout`, for either.
//! 2. send: `try_send_request`; if a reused connection gives the request back untouched (the
//!    app closed it just as we picked it), retry once on a fresh connection.
//! 3. the response body ([`PooledBody`]) owns the connection and puts it back in the idle list
//!    when its last byte has been read; dropping it early closes the connection instead.
//!
//! Each open connection is driven by one task that also owns its semaphore permit, so the slot
//! is freed exactly when the socket is gone. There is no task per request.

mod body;
mod error;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config;

pub use body::PooledBody;
pub use error::{ErrorKind, SendError};

use body::Lease;
use error::{BoxError, Failure, classify};

/// hyper panics when `max_buf_size` is below this.
const MIN_MAX_BUF_SIZE: usize = 8192;

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
    /// Largest response head accepted, in bytes; values below 8192 are raised to 8192.
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
    builder: http1::Builder,
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

/// A connection handle. Boxed once at connect and then moved between the idle list and the
/// response body, so a request allocates nothing here.
struct Conn<B> {
    pool: Weak<Pool<B>>,
    sender: SendRequest<B>,
    idle_since: Instant,
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
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// A pool for the replica at `addr`. Connects lazily, on the first request.
    pub fn new(addr: SocketAddr, mut settings: PoolSettings) -> Arc<Self> {
        settings.idle_timeout = settings.idle_timeout.min(MAX_IDLE_TIMEOUT);
        let max_connections = settings.max_connections.min(Semaphore::MAX_PERMITS);
        let mut builder = http1::Builder::new();
        // hyper reports a head that overflows its read buffer as a "too large" parse error,
        // but a head that arrives in one large read can fit a buffer that grew past the cap,
        // so the head size is also checked when it is parsed.
        let cap = settings.max_response_header.max(MIN_MAX_BUF_SIZE);
        builder.max_buf_size(cap).max_header_size(cap);
        Arc::new_cyclic(|me| Self {
            addr,
            settings,
            builder,
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

    /// Send one request (origin-form URI, headers already rewritten by the caller).
    ///
    /// Returns the response whose body, when read to the end, hands the connection back to the
    /// idle list. If the response is an upgrade (101), the connection is not reused and
    /// `hyper::upgrade::on(&mut response)` yields the upgraded IO.
    pub async fn send(
        &self,
        mut request: Request<B>,
    ) -> Result<Response<PooledBody>, SendError<B>> {
        let is_connect = request.method() == Method::CONNECT;
        let mut fresh = false;
        loop {
            let (mut conn, reused) = match self.checkout(fresh).await {
                Ok(checked_out) => checked_out,
                Err(failure) => return Err(failure.with_request(request)),
            };
            match conn.sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(conn, response, is_connect)),
                Err(mut err) => {
                    let unsent = err.take_message();
                    let error = err.into_error();
                    match unsent {
                        // The app closed a kept-alive connection just as we picked it and hyper
                        // wrote nothing: safe to retry whatever the method, but only once and
                        // only on a new connection, which cannot have that race.
                        Some(back) if reused => {
                            tracing::debug!(addr = %self.addr, %error, "reused connection closed before sending; retrying on a new one");
                            request = back;
                            fresh = true;
                        }
                        request => {
                            return Err(SendError {
                                kind: classify(&error),
                                request,
                                source: Some(error.into()),
                            });
                        }
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

    /// A connection ready for one request, and whether it has served one before. `fresh`
    /// skips idle connections (used for the transparent retry).
    async fn checkout(&self, fresh: bool) -> Result<(Box<Conn<B>>, bool), Failure> {
        if !fresh {
            if let Some(conn) = self.take_idle().await {
                return Ok((conn, true));
            }
        }
        // Connecting and queueing are boxed: they are rare, and their futures (a hyper
        // handshake, a select over a semaphore, a notification and a timer) would otherwise
        // size every request's future, which hyper keeps a slot for in every connection.
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok((Box::pin(self.connect(permit)).await?, false));
        }
        if fresh {
            // A retry needs a new connection: free a slot held by the oldest idle one rather
            // than wait for a busy one to close.
            let oldest = self.lock_idle().conns.pop_front();
            drop(oldest);
        }
        Box::pin(self.wait(fresh)).await
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
                if let Some(conn) = self.take_idle().await {
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

    /// Pop the most recently returned usable idle connection; stale ones are dropped (closed).
    async fn take_idle(&self) -> Option<Box<Conn<B>>> {
        loop {
            let mut conn = self.lock_idle().conns.pop_back()?;
            if conn.idle_since.elapsed() >= self.settings.idle_timeout || conn.sender.is_closed() {
                continue;
            }
            if conn.sender.is_ready() {
                return Some(conn);
            }
            // A body hands its connection back as soon as it has seen the last byte, which can
            // be a moment before hyper's dispatcher asks for the next request: wait for that
            // moment or learn that the connection died. Bounded in case it never comes.
            let ready = tokio::time::timeout(self.settings.queue_timeout, conn.sender.ready());
            if let Ok(Ok(())) = ready.await {
                return Some(conn);
            }
        }
    }

    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<Box<Conn<B>>, Failure> {
        self.start_reaper();
        let stream = connect_tcp(self.addr, self.settings.connect_timeout).await?;
        let (sender, connection) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(ErrorKind::Connect, e))?;
        let addr = self.addr;
        tokio::spawn(async move {
            // The slot is held for exactly as long as hyper owns the socket. An upgrade moves
            // the socket out, so tunnels stop counting against the cap.
            let _slot = permit;
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%addr, %error, "upstream connection ended with an error");
            }
        });
        Ok(Box::new(Conn {
            pool: self.me.clone(),
            sender,
            idle_since: Instant::now(),
        }))
    }

    /// Attach the connection to the response body, or put it back / drop it right away.
    fn lease(
        &self,
        conn: Box<Conn<B>>,
        response: Response<Incoming>,
        is_connect: bool,
    ) -> Response<PooledBody> {
        let status = response.status();
        let upgraded =
            status == StatusCode::SWITCHING_PROTOCOLS || (is_connect && status.is_success());
        response.map(|inner| {
            let lease: Option<Box<dyn Lease>> = if upgraded {
                None
            } else if inner.is_end_stream() {
                self.put_idle(conn);
                None
            } else {
                Some(conn)
            };
            PooledBody::new(inner, lease)
        })
    }

    fn put_idle(&self, mut conn: Box<Conn<B>>) {
        if self.settings.idle_timeout.is_zero() || conn.sender.is_closed() {
            return;
        }
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
        // Closed ones (the app went away) sit anywhere in the list; rare, so a second pass.
        if idle.conns.iter().any(|c| c.sender.is_closed()) {
            let (open, closed): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut idle.conns)
                .into_iter()
                .partition(|c| !c.sender.is_closed());
            idle.conns = open;
            evicted.extend(closed);
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
    B: Body<Data = Bytes> + Send + Unpin + 'static,
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
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    fn give_back(self: Box<Self>) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put_idle(self);
        }
    }
}

#[cfg(test)]
mod tests;
