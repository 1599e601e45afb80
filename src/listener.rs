//! Data-plane listeners: bind, accept with connection budgets, optional PROXY protocol, TLS,
//! and the connection picked from ALPN: [`crate::http1`] for HTTP/1.1, hyper for HTTP/2.
//! Graceful shutdown is explicit: the drain token asks every connection to finish (HTTP/1.1
//! `Connection: close`, HTTP/2 GOAWAY).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::Inbound;
use crate::config::{self, Config};
use crate::forwarded::{Peer, PeerText, canonical_ip};
use crate::http1;
use crate::metrics::{self, ConnGauges};
use crate::proxy_protocol;
use crate::service::{self, Conn, Shared};
use crate::tls::HandshakeFailures;

mod accounting;

use accounting::SHED_BATCH;
pub use accounting::{Active, Budget, Lifecycle, OpenConns, Refusal, Slot};

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

/// What every accepted connection of one listener shares.
pub struct Listening {
    /// Position in the config's listener list (and the snapshot's policies).
    pub index: usize,
    /// Listener name for logs.
    pub name: Arc<str>,
    /// TLS acceptor when this listener terminates TLS.
    pub tls: Option<TlsAcceptor>,
    /// Require a PROXY header from the listener's trusted proxies (read from the snapshot,
    /// so a reload can change who they are).
    pub proxy_protocol: bool,
    /// Open-connection gauges of this listener, by protocol.
    pub gauges: ConnGauges,
}

/// Process-wide data-plane state the accept loops need.
pub struct DataPlane {
    /// Request-path state.
    pub shared: Arc<Shared>,
    /// Connection budget.
    pub budget: Arc<Budget>,
    /// Handshake failure accounting.
    pub handshakes: Arc<HandshakeFailures>,
    /// Connections past their handshake, for idle shedding.
    pub open: OpenConns,
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
            // At the global bound, idle keep-alive connections make room first.
            Err(Refusal::Global) if plane.open.shed_idle(SHED_BATCH) > 0 => {
                plane.budget.admit_over(remote.ip())
            }
            Err(refusal) => {
                tracing::debug!(listener = %this.name, peer = %remote, "connection refused: {} reached", refusal.as_str());
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
    if this.proxy_protocol {
        let trusted = &snap.listeners[this.index].trusted_proxies;
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
    let conn = |tls: bool, proto: &'static str| {
        let peer = Peer {
            ip: client.ip(),
            tls,
            local_port,
        };
        Arc::new(Conn {
            listener: this.index,
            peer,
            peer_text: PeerText::of(&peer),
            remote: client,
            proto,
            life: Lifecycle::new(settings.max_requests, &plane.drain),
            gauges: this.gauges.clone(),
        })
    };

    let Some(acceptor) = &this.tls else {
        serve_h1(&plane, conn(false, "h1"), &settings, stream).await;
        return;
    };

    let acme = plane
        .shared
        .acme
        .as_deref()
        .map(crate::acme::Acme::challenges);
    // The handshake and HTTP/2 states are boxed: the connection's task is sized for its
    // largest state for as long as it lives, and most connections idle in HTTP/1.1.
    let accepted = Box::pin(accept_tls(acceptor.config(), acme, stream));
    let tls = match tokio::time::timeout(handshake_timeout, accepted).await {
        Ok(Ok(Accepted::Stream(tls))) => tls,
        Ok(Ok(Accepted::Validation)) => {
            plane.handshakes.record_ok();
            return;
        }
        Ok(Err(failed)) => {
            plane
                .handshakes
                .record(remote, failed.sni.as_deref(), failed.reason);
            return;
        }
        Err(_) => {
            plane.handshakes.record(remote, None, "timeout");
            return;
        }
    };
    plane.handshakes.record_ok();
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(serve_h2(
            &plane,
            conn(true, "h2"),
            &settings,
            TokioIo::new(tls),
        ))
        .await;
    } else {
        serve_h1(&plane, conn(true, "h1"), &settings, tls).await;
    }
}

/// How a TLS handshake ended well.
enum Accepted {
    /// A client connection to serve.
    Stream(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A TLS-ALPN-01 validation handshake, answered and closed.
    Validation,
}

/// A failed handshake, with the SNI name when the ClientHello got that far.
struct HandshakeFailed {
    sni: Option<String>,
    reason: &'static str,
}

/// Reads the ClientHello, then completes the handshake with the normal configuration, or,
/// when ACME is on and the client offers `acme-tls/1`, with a validation configuration for
/// the name's pending TLS-ALPN-01 challenge (no pending challenge: the handshake fails).
async fn accept_tls(
    config: &Arc<rustls::ServerConfig>,
    acme: Option<&crate::acme::challenge::Challenges>,
    stream: TcpStream,
) -> Result<Accepted, HandshakeFailed> {
    let failed = |sni: Option<String>| {
        move |err: io::Error| HandshakeFailed {
            sni,
            reason: crate::tls::failure_reason(&err),
        }
    };
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
        .await
        .map_err(failed(None))?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_owned);
    let validation = acme.filter(|_| crate::tls::offers_acme_alpn(&hello));
    let Some(challenges) = validation else {
        let tls = start
            .into_stream(Arc::clone(config))
            .await
            .map_err(failed(sni))?;
        return Ok(Accepted::Stream(Box::new(tls)));
    };
    let name = sni.clone().unwrap_or_default();
    let Some(key) = challenges.tls_alpn01(&name).await else {
        tracing::info!(
            name,
            "TLS-ALPN-01 handshake for a name with no pending challenge"
        );
        return Err(HandshakeFailed {
            sni,
            reason: "no_certificate",
        });
    };
    let config = crate::tls::acme_validation_config(key).map_err(|err| {
        tracing::warn!(name, "cannot build the TLS-ALPN-01 configuration: {err}");
        HandshakeFailed {
            sni: sni.clone(),
            reason: "other",
        }
    })?;
    let mut tls = start.into_stream(config).await.map_err(failed(sni))?;
    tracing::info!(name, "answered a TLS-ALPN-01 validation handshake");
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    Ok(Accepted::Validation)
}

/// Connection settings read from the snapshot at accept time.
struct ConnSettings {
    h1_header_timeout: Duration,
    keepalive_idle: Duration,
    max_request_header: usize,
    max_headers: usize,
    max_requests: u64,
    max_age: Option<Duration>,
    h2: config::Http2,
}

impl From<&Config> for ConnSettings {
    fn from(c: &Config) -> Self {
        Self {
            h1_header_timeout: c.timeouts.request_header,
            keepalive_idle: c.timeouts.keepalive_idle,
            max_request_header: c.server.max_request_header,
            max_headers: c.server.max_headers,
            max_requests: c.server.max_requests_per_connection,
            max_age: c.server.max_connection_age,
            h2: c.http2.clone(),
        }
    }
}

async fn serve_h1(plane: &DataPlane, conn: Arc<Conn>, s: &ConnSettings, io: impl http1::Io) {
    let _registered = plane.open.register(&conn);
    let _open = conn.gauges.open(metrics::Protocol::H1);
    let close = conn.life.close.clone();
    let settings = http1::Settings {
        limits: http1::Limits {
            max_head: s.max_request_header,
            max_headers: s.max_headers,
        },
        // One timer for the idle gap before a request and the request head, so on
        // HTTP/1.1 `request_header` bounds both; `keepalive_idle` applies to HTTP/2.
        header_timeout: s.h1_header_timeout,
        max_age: s.max_age.map(with_jitter),
    };
    let shared = &plane.shared;
    http1::serve(io, &settings, &close, |req| {
        service::handle(Arc::clone(shared), Arc::clone(&conn), req.map(Inbound::H1))
    })
    .await;
}

async fn serve_h2<I>(plane: &DataPlane, conn: Arc<Conn>, s: &ConnSettings, io: TokioIo<I>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _registered = plane.open.register(&conn);
    let _open = conn.gauges.open(metrics::Protocol::H2);
    let close = conn.life.close.clone();
    let idle = (Arc::clone(&conn), s.keepalive_idle);
    let shared = Arc::clone(&plane.shared);
    let svc = service_fn(move |req: Request<Incoming>| {
        // hyper spawns each stream's future as a task, moving it by value through its
        // stream wrapper, the executor and tokio's spawn path, and tokio's task cell is
        // as large as the future: boxed, each of those moves copies a pointer instead of
        // the whole request-handling state machine (several KiB).
        let handled = Box::pin(service::handle(
            Arc::clone(&shared),
            Arc::clone(&conn),
            req.map(Inbound::H2),
        ));
        async move { Ok::<_, Infallible>(handled.await) }
    });
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
    drive(conn, close, s.max_age, idle).await;
}

/// Runs an HTTP/2 connection until it ends. It is asked to finish (in-flight streams
/// complete, GOAWAY) on its close signal (drain, request limit, idle shedding), once it
/// reaches its maximum age (with jitter), and after `keepalive_idle` without any request.
/// (HTTP/1.1 connections watch the same signals in [`http1::serve`].)
async fn drive<C: Graceful>(
    conn: C,
    close: CancellationToken,
    max_age: Option<Duration>,
    (watched, after): (Arc<Conn>, Duration),
) {
    let mut conn = pin!(conn);
    let age = async {
        match max_age {
            Some(age) => tokio::time::sleep(with_jitter(age)).await,
            None => std::future::pending().await,
        }
    };
    let idle = async {
        let mut seen = watched.life.served();
        loop {
            tokio::time::sleep(after).await;
            let now = watched.life.served();
            if now == seen && watched.life.is_idle() {
                return;
            }
            seen = now;
        }
    };
    // Every wake-up of the connection polls each branch; the connection goes first.
    let res = tokio::select! {
        biased;
        res = conn.as_mut() => res,
        () = close.cancelled() => finish(conn).await,
        () = age => finish(conn).await,
        () = idle => finish(conn).await,
    };
    if let Err(err) = res {
        tracing::debug!("connection ended: {err}");
    }
}

/// `max_connection_age` plus up to 10 % jitter, so a scale-out does not make every client
/// reconnect at once.
fn with_jitter(age: Duration) -> Duration {
    age + age.mul_f64(fastrand::f64() * 0.1)
}

async fn finish<C: Graceful>(mut conn: std::pin::Pin<&mut C>) -> Result<(), hyper::Error> {
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// A hyper server connection that can be asked to finish (hyper's HTTP/2 connection; a
/// trait so that `drive` and `finish` need not repeat hyper's bounds on its type).
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
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
