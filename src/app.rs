//! Wiring: the first snapshot, certificates, listeners, background tasks, and the
//! container-style shutdown sequence.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::admin::{self, AdminState, Readiness, Surface};
use crate::config::Config;
use crate::listener::{self, Budget, DataPlane, Listening};
use crate::metrics::Metrics;
use crate::ratelimit;
use crate::reload::{self, CertSlot, Reloader, Source};
use crate::service::Shared;
use crate::snapshot::{BuildError, Snapshot};
use crate::status::StatusPage;
use crate::tls::{self, CertStore, HandshakeFailures, TlsError};
use crate::upstream::replica::Registry;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The snapshot could not be compiled.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Certificates could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// ACME storage or its client could not be set up.
    #[error(transparent)]
    Acme(#[from] crate::acme::AcmeError),
    /// A listener could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// Its address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    /// The access log file could not be opened.
    #[error("cannot open the access log {path}: {source}")]
    AccessLog {
        /// `log.access_log_file`.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Runs the gateway until a shutdown signal has been handled. `source` is where `config` was
/// read from: reloads read it again.
pub async fn run(config: Config, source: Source) -> Result<(), StartError> {
    let mut signals = Signals::new().map_err(StartError::Signals)?;
    // Installed first: SIGHUP's default action ends the process.
    let hangup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let readiness = Arc::new(Readiness::default());
    let admin_stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let admin_state = Arc::new(AdminState {
        readiness: Arc::clone(&readiness),
        shared: std::sync::OnceLock::new(),
        reloader: std::sync::OnceLock::new(),
        metrics: Arc::clone(&metrics),
        page: StatusPage::build(),
    });
    let access_log = AccessLog::start(config.log.access_log_file.clone(), config.log.format)
        .map_err(|source| StartError::AccessLog {
            path: config
                .log
                .access_log_file
                .as_ref()
                .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string()),
            source,
        })?;
    reopen_on_sigusr1(access_log.clone()).map_err(StartError::Signals)?;

    // The admin and probe listeners come up first, so their readiness reports 503 until the
    // data plane is bound.
    let admin = bind_plain("admin listener", config.admin.addr)?;
    tokio::spawn(admin::serve(
        admin,
        Surface::Admin {
            hosts: config.admin.hosts.clone().into(),
            token: config.admin.token.as_deref().map(Into::into),
        },
        Arc::clone(&admin_state),
        config.admin.max_connections,
        admin_stop.clone(),
    ));
    if let Some(probe) = &config.probe {
        let l = bind_plain("probe listener", probe.addr)?;
        tokio::spawn(admin::serve(
            l,
            Surface::Probe {
                metrics: probe.metrics,
            },
            Arc::clone(&admin_state),
            probe.max_connections,
            admin_stop.clone(),
        ));
    }

    let config = Arc::new(config);
    let registry = Registry::default();
    let limiters = ratelimit::Registry::default();
    let snapshot = Snapshot::build(Arc::clone(&config), &registry, &limiters, 1).await?;
    readiness.config_loaded();
    wait_for_probes(&snapshot, config.startup.probe_timeout, &readiness);

    let certs = CertStore::new();
    let mut cert_slots = Vec::new();
    let tls_config = if config.listeners.iter().any(|l| l.tls) {
        cert_slots = load_certificates(&config, &certs)?;
        Some(tls::server_config(Arc::clone(&certs), &config.tls)?)
    } else {
        None
    };
    // Readiness never waits for ACME: until its certificates are issued, the fallback serves.
    readiness.certificates_ready();
    let acme = crate::acme::start(&config.acme, Arc::clone(&certs))?;

    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        registry,
        limiters,
        certs,
        acme,
        tunnels: TaskTracker::new(),
        streams: TaskTracker::new(),
        stop_streams: CancellationToken::new(),
        metrics: Arc::clone(&metrics),
        access_log: access_log.clone(),
    });
    let _ = admin_state.shared.set(Arc::clone(&shared));
    let reloader = Reloader::new(source, Arc::clone(&config), cert_slots, Arc::clone(&shared));
    let _ = admin_state.reloader.set(Arc::clone(&reloader));
    tokio::spawn(reload::watch::run(
        Arc::clone(&reloader),
        admin_stop.clone(),
    ));
    tokio::spawn(reload::on_hangup(reloader, hangup, admin_stop.clone()));
    let handshakes = Arc::new(HandshakeFailures::new());
    metrics.attach(&shared, &handshakes);
    let plane = Arc::new(DataPlane {
        shared: Arc::clone(&shared),
        budget: Budget::new(
            config.server.max_connections,
            config.server.max_connections_per_ip,
        ),
        handshakes,
        open: listener::OpenConns::default(),
        conns: TaskTracker::new(),
        stop_accepting: CancellationToken::new(),
        drain: CancellationToken::new(),
    });

    // A signal while an address is still in use ends the wait: nothing was served yet.
    let sockets = tokio::select! {
        bound = bind_listeners(&config) => bound?,
        _ = signals.next() => {
            readiness.drain();
            tracing::info!("shutdown signal before every listener was bound: exiting");
            return Ok(());
        }
    };
    for ((index, l), socket) in config.listeners.iter().enumerate().zip(sockets) {
        let this = Arc::new(Listening {
            index,
            name: l.name.as_str().into(),
            tls: if l.tls {
                tls_config.clone().map(TlsAcceptor::from)
            } else {
                None
            },
            proxy_protocol: l.proxy_protocol,
            gauges: metrics.connection_gauges(&l.name),
        });
        tracing::info!(listener = %l.name, addr = %l.addr, tls = l.tls, "listening");
        tokio::spawn(listener::accept_loop(Arc::clone(&plane), socket, this));
    }
    readiness.listeners_bound();
    tracing::info!(admin = %config.admin.addr, "edgeward ready");

    shutdown(&mut signals, &readiness, &plane).await;
    admin_stop.cancel();
    access_log.close();
    Ok(())
}

/// logrotate moves the file, then sends SIGUSR1: the writer reopens the path.
fn reopen_on_sigusr1(log: AccessLog) -> io::Result<()> {
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            log.reopen();
        }
    });
    Ok(())
}

/// How long a data-plane address that is still in use is retried before giving up. nginx
/// retries for 2.5 s; a little longer here lets a server that is stopping on the same address
/// (another gateway, the previous process under a supervisor) let go of it. Meanwhile the
/// admin listener is up and `/health/ready` answers 503.
const BIND_RETRY_FOR: Duration = Duration::from_secs(10);
const BIND_RETRY_EVERY: Duration = Duration::from_millis(100);

/// Binds every data-plane listener, in config order, retrying addresses still in use for up
/// to [`BIND_RETRY_FOR`]. Any other error fails at once.
async fn bind_listeners(config: &Config) -> Result<Vec<tokio::net::TcpListener>, StartError> {
    let give_up = Instant::now() + BIND_RETRY_FOR;
    let mut sockets = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let mut warned = false;
        let socket = loop {
            match listener::bind(l) {
                Ok(socket) => break socket,
                Err(err) if err.kind() == io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                    if !warned {
                        tracing::warn!(
                            listener = %l.name,
                            addr = %l.addr,
                            retry_s = BIND_RETRY_FOR.as_secs(),
                            "address in use; not ready, retrying"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(BIND_RETRY_EVERY).await;
                }
                Err(source) => {
                    return Err(StartError::Bind {
                        what: format!("listener {}", l.name),
                        addr: l.addr,
                        source,
                    });
                }
            }
        };
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Releases the readiness latch's probe condition once every replica of the first snapshot
/// has finished its first probe round, or after `limit`, so a dead upstream cannot keep the
/// gateway unready forever.
fn wait_for_probes(snapshot: &Snapshot, limit: Duration, readiness: &Arc<Readiness>) {
    let replicas: Vec<_> = snapshot
        .upstreams
        .values()
        .flat_map(|up| up.members().replicas.clone())
        .collect();
    let readiness = Arc::clone(readiness);
    tokio::spawn(async move {
        let all = async {
            for replica in &replicas {
                replica.first_round().await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "first probe round not complete in startup.probe_timeout; reporting ready anyway"
            );
        }
        readiness.probes_done();
    });
}

/// File certificates, or the self-signed fallback when none are configured. Returns the file
/// certificates, which reloads compare against.
fn load_certificates(config: &Config, certs: &CertStore) -> Result<Vec<CertSlot>, StartError> {
    if config.tls.certificates.is_empty() {
        let names: Vec<String> = config
            .routes
            .iter()
            .filter_map(|r| match &r.host {
                Some(crate::config::HostMatch::Exact(h)) => Some(h.clone()),
                _ => None,
            })
            .collect();
        // `self_signed` logs where the certificate is kept (or that it is only in memory).
        let (cert, _origin) = tls::self_signed(&config.tls.self_signed_dir, &names)?;
        certs.set_self_signed(cert);
        return Ok(Vec::new());
    }
    let slots = reload::load_certificates(&config.tls.certificates).map_err(|(_, e)| e)?;
    reload::publish_certificates(certs, &slots);
    Ok(slots)
}

fn bind_plain(
    what: &str,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpListener, StartError> {
    let std = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| StartError::Bind {
            what: what.to_owned(),
            addr,
            source,
        })?;
    tokio::net::TcpListener::from_std(std).map_err(|source| StartError::Bind {
        what: what.to_owned(),
        addr,
        source,
    })
}

struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM (`true`) or SIGINT (`false`).
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.term.recv() => true,
            _ = self.int.recv() => false,
        }
    }
}

/// SIGTERM: not ready at once, keep serving for the propagation delay (0 on SIGINT), stop
/// accepting, ask connections to finish, wait for requests up to `drain_timeout` and for
/// streams and tunnels up to `stream_timeout`, then end what is left cleanly. A second signal
/// at any point exits at once.
async fn shutdown(signals: &mut Signals, readiness: &Readiness, plane: &DataPlane) {
    let term = signals.next().await;
    readiness.drain();
    // The shutdown settings of the config running now: reloads may have changed them.
    let config = Arc::clone(&plane.shared.snapshot.load().config);
    let delay = if term {
        config.shutdown.propagation_delay
    } else {
        Duration::ZERO
    };
    tracing::info!(
        signal = if term { "SIGTERM" } else { "SIGINT" },
        delay_ms = delay.as_millis() as u64,
        "shutting down: not ready, still serving during the propagation delay"
    );

    let exit_now = || {
        tracing::warn!("second signal: exiting now");
        std::process::exit(0);
    };
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = signals.next() => exit_now(),
    }

    plane.stop_accepting.cancel();
    plane.drain.cancel();
    plane.conns.close();
    let shared = &plane.shared;
    shared.tunnels.close();
    shared.streams.close();
    let start = Instant::now();
    tracing::info!(
        connections = plane.conns.len(),
        streams = shared.streams.len(),
        tunnels = shared.tunnels.len(),
        "stopped accepting; draining"
    );

    let streams_deadline = start + config.shutdown.stream_timeout;
    let requests_deadline = start + config.shutdown.drain_timeout;
    let all_done = async {
        plane.conns.wait().await;
        shared.streams.wait().await;
        shared.tunnels.wait().await;
    };
    tokio::pin!(all_done);
    let stream_cut = tokio::time::sleep_until(streams_deadline);
    tokio::pin!(stream_cut);
    // Past both deadlines, a short grace lets the clean endings (last chunks, FINs) go out.
    let final_deadline =
        tokio::time::sleep_until(requests_deadline.max(streams_deadline) + Duration::from_secs(1));
    tokio::pin!(final_deadline);
    let (mut streams_cut, mut tunnels_cut) = (0, 0);
    loop {
        tokio::select! {
            () = &mut all_done => break,
            () = &mut stream_cut, if !shared.stop_streams.is_cancelled() => {
                streams_cut = shared.streams.len();
                tunnels_cut = shared.tunnels.len();
                shared.stop_streams.cancel();
            }
            () = &mut final_deadline => break,
            _ = signals.next() => exit_now(),
        }
    }
    // Streams and tunnels have ended by now; a connection still open has a request whose
    // response is unfinished (an HTTP/2 connection counts once), and is cut on exit.
    tracing::info!(
        requests_cut = plane.conns.len(),
        streams_cut,
        tunnels_cut,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "shutdown complete"
    );
}
