//! Data-plane listeners: bind, accept with connection budgets, optional PROXY protocol, TLS,
//! and the hyper connection picked from ALPN. Graceful shutdown is explicit: the drain token
//! asks every connection to finish (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::forwarded::{Peer, canonical_ip};
use crate::proxy_protocol;
use crate::service::{self, Conn, Shared};
use crate::tls::HandshakeFailures;

/// Binds a listener socket: `SO_REUSEADDR`, the configured v6-only choice, backlog 1024.
pub fn bind(l: &config::Listener) -> io::Result<TcpListener> {
    let domain = if l.addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if let (true, Some(v6_only)) = (l.addr.is_ipv6(), l.v6_only) {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(l.addr))?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Open connections, bounded globally and per peer address.
pub struct Budget {
    max: usize,
    per_ip: usize,
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases a connection's budget when the connection ends.
pub struct Slot {
    budget: Arc<Budget>,
    ip: IpAddr,
}

impl Budget {
    /// `per_ip == 0` means no per-address bound.
    pub fn new(max: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_ip,
            open: AtomicUsize::new(0),
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("max_connections");
        }
        if self.per_ip > 0 {
            let mut by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip {
                drop(by_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err("max_connections_per_ip");
            }
            *n += 1;
        }
        Ok(Slot {
            budget: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.budget.per_ip > 0 {
            let mut by_ip = self.budget.by_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every accepted connection of one listener shares.
pub struct Listening {
    /// Position in the config's listener list (and the snapshot's policies).
    pub index: usize,
    /// Listener name for logs.
    pub name: Arc<str>,
    /// TLS acceptor when this listener terminates TLS.
    pub tls: Option<TlsAcceptor>,
    /// Peers allowed to send a PROXY header, when the listener requires one.
    pub proxy_protocol: Option<Vec<IpNet>>,
}

/// Process-wide data-plane state the accept loops need.
pub struct DataPlane {
    /// Request-path state.
    pub shared: Arc<Shared>,
    /// Connection budget.
    pub budget: Arc<Budget>,
    /// Handshake failure accounting.
    pub handshakes: Arc<HandshakeFailures>,
    /// Every connection task, for draining.
    pub conns: TaskTracker,
    /// Cancelled to stop accepting.
    pub stop_accepting: CancellationToken,
    /// Cancelled to ask open connections to finish.
    pub drain: CancellationToken,
}

/// Accepts until `stop_accepting`, then drops the socket so new connections are refused.
pub async fn accept_loop(plane: Arc<DataPlane>, listener: TcpListener, this: Arc<Listening>) {
    loop {
        let (stream, remote) = tokio::select! {
            () = plane.stop_accepting.cancelled() => break,
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %this.name, "accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match plane.budget.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::debug!(listener = %this.name, peer = %remote, "connection refused: {limit} reached");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let plane2 = Arc::clone(&plane);
        let this = Arc::clone(&this);
        plane.conns.spawn(async move {
            serve(plane2, this, stream, remote).await;
            drop(slot);
        });
    }
}

async fn serve(
    plane: Arc<DataPlane>,
    this: Arc<Listening>,
    mut stream: TcpStream,
    remote: SocketAddr,
) {
    let snap = plane.shared.snapshot.load_full();
    let config: &Config = &snap.config;
    let handshake_timeout = config.timeouts.tls_handshake;
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);

    let mut client = SocketAddr::new(canonical_ip(remote.ip()), remote.port());
    if let Some(trusted) = &this.proxy_protocol {
        if !trusted.iter().any(|net| net.contains(&client.ip())) {
            tracing::debug!(listener = %this.name, peer = %remote, "PROXY header required from a trusted proxy; closing");
            return;
        }
        match tokio::time::timeout(handshake_timeout, proxy_protocol::read_header(&mut stream))
            .await
        {
            Ok(Ok(Some(src))) => client = SocketAddr::new(canonical_ip(src.ip()), src.port()),
            Ok(Ok(None)) => {}
            Ok(Err(err)) => {
                tracing::debug!(listener = %this.name, peer = %remote, "bad PROXY header: {err}");
                return;
            }
            Err(_) => {
                tracing::debug!(listener = %this.name, peer = %remote, "no PROXY header in time");
                return;
            }
        }
    }

    let settings = ConnSettings::from(config);
    drop(snap);

    let Some(acceptor) = &this.tls else {
        let conn = Conn {
            listener: this.index,
            peer: Peer {
                ip: client.ip(),
                tls: false,
                local_port,
            },
            remote: client,
            proto: "h1",
        };
        serve_h1(&plane, conn, &settings, TokioIo::new(stream)).await;
        return;
    };

    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            plane
                .handshakes
                .record(remote, None, crate::tls::failure_reason(&err));
            return;
        }
        Err(_) => {
            plane.handshakes.record(remote, None, "timeout");
            return;
        }
    };
    plane.handshakes.record_ok();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let peer = Peer {
        ip: client.ip(),
        tls: true,
        local_port,
    };
    if h2 {
        serve_h2(
            &plane,
            Conn {
                listener: this.index,
                peer,
                remote: client,
                proto: "h2",
            },
            &settings,
            TokioIo::new(tls),
        )
        .await;
    } else {
        serve_h1(
            &plane,
            Conn {
                listener: this.index,
                peer,
                remote: client,
                proto: "h1",
            },
            &settings,
            TokioIo::new(tls),
        )
        .await;
    }
}

/// Connection settings read from the snapshot at accept time.
struct ConnSettings {
    h1_header_timeout: Duration,
    max_request_header: usize,
    max_headers: usize,
    max_age: Option<Duration>,
    h2: config::Http2,
}

impl From<&Config> for ConnSettings {
    fn from(c: &Config) -> Self {
        Self {
            h1_header_timeout: c.timeouts.request_header,
            max_request_header: c.server.max_request_header,
            max_headers: c.server.max_headers,
            max_age: c.server.max_connection_age,
            h2: c.http2.clone(),
        }
    }
}

async fn serve_h1<I>(plane: &DataPlane, conn: Conn, s: &ConnSettings, io: TokioIo<I>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::clone(&plane.shared);
    let conn = Arc::new(conn);
    let svc = service_fn(move |req| service::handle(Arc::clone(&shared), Arc::clone(&conn), req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper measures the idle gap before a request and the request head with one timer.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(s.h1_header_timeout)
        .max_buf_size(s.max_request_header)
        .max_headers(s.max_headers);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    drive(conn, plane.drain.clone(), s.max_age).await;
}

async fn serve_h2<I>(plane: &DataPlane, conn: Conn, s: &ConnSettings, io: TokioIo<I>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::clone(&plane.shared);
    let conn = Arc::new(conn);
    let svc = service_fn(move |req| service::handle(Arc::clone(&shared), Arc::clone(&conn), req));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2.max_concurrent_streams)
        .max_header_list_size(s.h2.max_header_list_size)
        .max_pending_accept_reset_streams(s.h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(s.h2.max_local_error_reset_streams)
        .keep_alive_interval(s.h2.keepalive_interval)
        .keep_alive_timeout(s.h2.keepalive_timeout);
    let conn = builder.serve_connection(io, svc);
    drive(conn, plane.drain.clone(), s.max_age).await;
}

/// Runs a connection until it ends; on drain, or once it reaches its maximum age (plus up to
/// 10% jitter so a scale-out does not make every client reconnect at once), asks it to finish.
async fn drive<C: Graceful>(conn: C, drain: CancellationToken, max_age: Option<Duration>) {
    let mut conn = pin!(conn);
    let age = async {
        match max_age {
            Some(age) => {
                let jitter = age.mul_f64(fastrand::f64() * 0.1);
                tokio::time::sleep(age + jitter).await;
            }
            None => std::future::pending().await,
        }
    };
    let res = tokio::select! {
        res = conn.as_mut() => res,
        () = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = age => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = res {
        tracing::debug!("connection ended: {err}");
    }
}

/// A hyper server connection that can be asked to finish. hyper-util's `GracefulConnection`
/// does not cover HTTP/1.1 connections with upgrades, which the data plane needs.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// Resolves when `fut` is done or the token fires.
pub async fn until<F: Future>(token: &CancellationToken, fut: F) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        () = token.cancelled() => None,
    }
}
