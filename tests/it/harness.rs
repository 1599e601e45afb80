//! Test harness: the real `edgeward` binary on free loopback ports, real upstream servers,
//! and clients that trust a test CA.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// Every wait in the suite polls to at least this deadline.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `cond` until it holds or the deadline passes.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Async version of [`eventually`].
pub async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Raises the open-file limit once per test process (some tests hold hundreds of sockets).
pub fn raise_nofile() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(lim) = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .ok_or(())
        {
            let _ = rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(lim),
                    maximum: Some(lim),
                },
            );
        }
    });
}

/// A free TCP port on 127.0.0.1 (bound and released; the gateway binds it later). It is
/// taken below the kernel's ephemeral range: a port from that range can become the local end
/// of any test's outgoing connection between this check and the gateway's bind, which then
/// fails with "address in use". Each port is handed out once per test process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..1000 {
        let port = fastrand::u16(10_000..ephemeral_low.max(10_001));
        if !given.contains(&port) && StdListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port below {ephemeral_low}");
}

/// Test PKI: a CA and leaf certificates it signs.
pub struct Pki {
    pub ca_pem: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgeward test CA");
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        Self {
            ca_pem,
            ca: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes `<name>.pem` and `<name>.key` for `names` into `dir`; returns the paths.
    pub fn leaf(&self, dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let cert_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

use rustls::pki_types::pem::PemObject;

mod apps;
mod redis;
pub use apps::{
    App, DnsServer, admin_upstreams, app_pool_config, dns_upstream_config, replica_state,
    until_ready,
};
pub use redis::RedisServer;

/// A running gateway process.
pub struct Gateway {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub ports: HashMap<&'static str, u16>,
    pub admin: SocketAddr,
    pub log_path: PathBuf,
}

/// Placeholders `{http}`, `{https}`, `{admin}`, `{probe}` and `{dir}` in a config template are
/// filled with free ports and the gateway's temp dir.
pub struct GatewayBuilder {
    template: String,
    env: Vec<(String, String)>,
    wait_ready: bool,
    subcommand: &'static str,
    layout: Option<fn(&Path, &str) -> PathBuf>,
}

impl GatewayBuilder {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// Writes the filled-in config with `layout(dir, text)`, which returns the path to pass
    /// as `--config` (e.g. a symlink into a ConfigMap-style directory), instead of
    /// `<dir>/edgeward.toml`.
    pub fn layout(mut self, layout: fn(&Path, &str) -> PathBuf) -> Self {
        self.layout = Some(layout);
        self
    }

    /// Runs `edgeward <subcommand> --config ...` instead of `run` (e.g. `demo`).
    pub fn subcommand(mut self, subcommand: &'static str) -> Self {
        self.subcommand = subcommand;
        self
    }

    pub async fn start(self) -> Gateway {
        raise_nofile();
        let dir = tempfile::tempdir().unwrap();
        let mut ports = HashMap::new();
        let mut text = self.template.clone();
        for name in ["http", "https", "admin", "probe", "http2", "https2"] {
            let port = free_port();
            ports.insert(name, port);
            text = text.replace(&format!("{{{name}}}"), &port.to_string());
        }
        text = text.replace("{dir}", dir.path().to_str().unwrap());
        if !text.contains("[admin]") {
            text.push_str(&format!(
                "\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
                ports["admin"]
            ));
        }
        let config_path = match self.layout {
            Some(layout) => layout(dir.path(), &text),
            None => {
                let path = dir.path().join("edgeward.toml");
                std::fs::write(&path, &text).unwrap();
                path
            }
        };
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeward"));
        cmd.arg(self.subcommand)
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd.env("EDGEWARD_LOG_LEVEL", "debug");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let admin = SocketAddr::from(([127, 0, 0, 1], ports["admin"]));
        let mut gw = Gateway {
            child,
            dir,
            config_path,
            ports,
            admin,
            log_path,
        };
        if self.wait_ready {
            gw.wait_ready().await;
        }
        gw
    }
}

impl Gateway {
    pub fn builder(template: &str) -> GatewayBuilder {
        GatewayBuilder {
            template: template.to_owned(),
            env: Vec::new(),
            wait_ready: true,
            subcommand: "run",
            layout: None,
        }
    }

    pub async fn start(template: &str) -> Gateway {
        Self::builder(template).start().await
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[name]))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn wait_ready(&mut self) {
        let admin = self.admin;
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited early with {status}:\n{}", self.log());
            }
            if TcpStream::connect(admin).await.is_ok() {
                if let Ok(resp) = get(admin, "/health/ready", &[]).await {
                    if resp.status == 200 {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "gateway not ready in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "gateway did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The gateway's peak resident memory (`VmHWM`) in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an upstream saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Boxes a body for a test upstream response.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Whether a request is one of the gateway's health probes.
pub fn is_probe(headers: &HeaderMap) -> bool {
    headers
        .get("user-agent")
        .is_some_and(|v| v.as_bytes() == b"edgeward-health-check")
}

/// A real HTTP/1.1 upstream on loopback, recording what it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Answers every request `200 ok` after reading the whole body.
    pub async fn ok() -> Self {
        Self::start(|_seen| async { Response::new(full("ok")) }).await
    }

    /// Calls `handler` with each request after its body was read in full, and records it.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let mut up = Self::start_raw(move |req: Request<Incoming>| {
            let handler = Arc::clone(&handler);
            let record = Arc::clone(&record);
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let s = Seen {
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                };
                // Health probes are the gateway's own traffic, not the requests under test.
                if !is_probe(&s.headers) {
                    record.lock().unwrap().push(s.clone());
                }
                handler(s).await
            }
        })
        .await;
        up.seen = seen;
        up
    }

    /// Calls `handler` with each raw request (nothing recorded, body not read).
    pub async fn start_raw<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// Like [`start_raw`] on a given address (e.g. a specific loopback address).
    pub async fn start_on<F, Fut>(addr: SocketAddr, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let fut = handler(req);
                        async move { Ok::<_, std::convert::Infallible>(fut.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            seen: Arc::new(Mutex::new(Vec::new())),
            connections,
            task,
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops accepting (open connections stay until their tasks end).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a fresh plain connection.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Got, hyper::Error> {
    let mut b = Request::get(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "localhost");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send_h1(addr, b.body(full(Bytes::new())).unwrap()).await
}

/// Sends one request over a fresh plain HTTP/1.1 connection.
pub async fn send_h1(addr: SocketAddr, req: Request<TestBody>) -> Result<Got, hyper::Error> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Result<Got, hyper::Error> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Got {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// A TLS connection to `addr` with `sni` (None: no SNI) offering `alpn`.
pub async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut cfg = (*pki.client_config(alpn)).clone();
    let name = match sni {
        Some(name) => rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
        None => {
            cfg.enable_sni = false;
            rustls::pki_types::ServerName::try_from("localhost").unwrap()
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// An HTTP/2 client over TLS (ALPN h2).
pub async fn h2_client(
    pki: &Pki,
    addr: SocketAddr,
    sni: &str,
) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let tls = tls_connect(pki, addr, Some(sni), &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Writes raw bytes on a plain connection from `from` (a 127.0.0.x source) and reads
/// until the server closes or `DEADLINE`; blocking std I/O, run on a blocking thread.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut s = StdStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&bytes).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

/// A TCP connection from a chosen loopback source address.
pub async fn connect_from(src: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((src, 0)))?;
    socket.connect(addr).await
}

/// A body fed from a channel, for streaming tests (SSE, generated uploads).
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub fn channel(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, TestBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        (tx, ChannelBody { rx }.boxed())
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A free loopback address with nothing listening on it.
pub fn dead_addr() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// `config` with active probes off for upstream `app`: for tests whose upstream is not an
/// app with health endpoints (raw sockets, WebSocket-only servers, counted connections).
pub fn without_probes(config: String) -> String {
    config + "\n[upstreams.app.health]\nmode = \"off\"\n"
}

/// Minimal single-route config over one upstream; `route_extra` goes into the route table.
pub fn simple_config(up: SocketAddr, route_extra: &str) -> String {
    format!(
        "[listeners.public]\nlisten = \"127.0.0.1:{{http}}\"\n\n[upstreams.app]\nreplicas = [\"{up}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n{route_extra}\n"
    )
}

/// A directory of files for static routes: `(path, contents)` pairs, parents created.
pub fn write_site(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, contents).unwrap();
    }
    dir
}

/// One plain listener and one static route at `path` serving `root`; `extra` goes inside
/// the `static = { ... }` table, e.g. `spa_fallback = true`.
pub fn static_config(path: &str, root: &Path, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "[listeners.public]\nlisten = \"127.0.0.1:{{http}}\"\n\n[[routes]]\npath = \"{path}\"\nstatic = {{ root = \"{}\"{extra} }}\n",
        root.display()
    )
}

/// One request with `method` over a fresh plain HTTP/1.1 connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send_h1(addr, b.body(full(Bytes::new())).unwrap())
        .await
        .unwrap()
}

/// One HTTP/1.1 GET over a fresh connection from a chosen 127.0.0.x source address.
pub async fn get_from(
    src: [u8; 4],
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Got, hyper::Error> {
    let stream = connect_from(src, addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut b = Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(full(Bytes::new())).unwrap())
        .await?;
    collect(resp).await
}

/// A TLS listener (`{https}`) with a certificate for `name` from `pki` (written to `dir`), one
/// upstream and a catch-all route to it; `extra` is appended (more sections).
pub fn tls_config(pki: &Pki, dir: &Path, name: &str, up: SocketAddr, extra: &str) -> String {
    let (cert, key) = pki.leaf(dir, "leaf", &[name]);
    format!(
        "[listeners.secure]\nlisten = \"127.0.0.1:{{https}}\"\ntls = true\n\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\n[upstreams.app]\nreplicas = [\"{up}\"]\n\n[[routes]]\npath = \"/\"\nupstream = \"app\"\n\n{extra}\n",
        cert.display(),
        key.display(),
    )
}

/// `GET /metrics` on `addr` as a map from series (name and labels, as printed) to value.
pub async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let r = get(addr, "/metrics", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is not installed.
pub fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), report))
}

/// GETs `path` (Host `a.test`) over a fresh plain HTTP/1.1 connection and returns the response
/// as soon as its head arrives, so the test can read the body frame by frame.
pub async fn get_streaming(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "a.test")
        .body(empty())
        .unwrap();
    sender.send_request(req).await.unwrap()
}
