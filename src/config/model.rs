//! The validated configuration: what `validate` produces from the raw file and what the
//! snapshot compiler consumes. Every value here has been checked; nothing on the request path
//! re-validates it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use ipnet::IpNet;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data-plane listeners, in file order. Names are unique.
    pub listeners: Vec<Listener>,
    pub admin: Admin,
    pub probe: Option<Probe>,
    pub server: Server,
    pub timeouts: Timeouts,
    pub http2: Http2,
    pub tls: Tls,
    pub hsts: Option<Hsts>,
    pub log: Log,
    pub shutdown: Shutdown,
    pub reload: Reload,
    /// Upstreams by name (sorted, so iteration order is stable).
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes in file order. `(host, path)` pairs are unique.
    pub routes: Vec<Route>,
}

/// `[listeners.<name>]`
#[derive(Debug, Clone)]
pub struct Listener {
    /// The table key; `[a-z0-9_]+`.
    pub name: String,
    pub addr: SocketAddr,
    /// `Some(true)` binds an IPv6 address v6-only; `Some(false)` dual-stack; `None` leaves the
    /// OS default (only meaningful for IPv6 addresses; validation rejects it on IPv4).
    pub v6_only: Option<bool>,
    /// Terminate TLS on this listener.
    pub tls: bool,
    /// Require a PROXY protocol v1/v2 header from `trusted_proxies` peers.
    pub proxy_protocol: bool,
    /// Peers whose forwarding headers are believed. Empty by default.
    pub trusted_proxies: Vec<IpNet>,
    /// Which incoming header carries the client chain from trusted peers.
    pub client_ip_header: ClientIpHeader,
    /// Plain listeners only: answer requests for known hosts with a 308 to HTTPS.
    pub redirect_https: bool,
    /// Port used in HTTPS redirect targets; `None` means the first TLS listener's port
    /// (omitted from the URL when it is 443).
    pub https_port: Option<u16>,
}

/// Which header a trusted peer uses to pass on the client chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpHeader {
    XForwardedFor,
    Forwarded,
}

/// `[admin]`
#[derive(Debug, Clone)]
pub struct Admin {
    /// Default `127.0.0.1:9901`.
    pub addr: SocketAddr,
    /// Extra `Host` values accepted besides loopback addresses (lower-case, no port).
    pub hosts: Vec<String>,
    /// Bearer token required on every admin request when set.
    pub token: Option<String>,
    /// Connection budget for the admin listener. Default 64.
    pub max_connections: usize,
}

/// `[probe]`, only present when `probe.listen` is set.
#[derive(Debug, Clone)]
pub struct Probe {
    pub addr: SocketAddr,
    /// Also serve `/metrics` here.
    pub metrics: bool,
    /// Default 64.
    pub max_connections: usize,
}

/// `[server]`: data-plane limits that apply to every listener.
#[derive(Debug, Clone)]
pub struct Server {
    /// Bytes; default 16 KiB; validated >= 8 KiB (hyper panics below).
    pub max_request_header: usize,
    /// Default 100.
    pub max_headers: usize,
    /// Bytes of request target; default 8 KiB; longer gets 414.
    pub max_uri: usize,
    /// Default request body cap, bytes; default 100 MiB. Routes may override.
    pub max_body: u64,
    /// Global open data-plane connection bound; default 10_000.
    pub max_connections: usize,
    /// Open connections per resolved peer address; default 256; 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// 0 = unlimited (default).
    pub max_requests_per_connection: u64,
    /// `None` = unlimited (default). A random jitter of up to 10% is added per connection.
    pub max_connection_age: Option<Duration>,
    /// Forward request headers whose names contain `_`. Default false.
    pub allow_underscore_headers: bool,
    /// Also send an RFC 7239 `Forwarded` header upstream. Default false.
    pub forwarded_header: bool,
    /// Value of the `Server` response header the gateway adds to its own responses; `None` to
    /// send none. Default `None`.
    pub server_header: Option<HeaderValue>,
}

/// `[timeouts]`: global defaults; routes override the per-route ones.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Default 10 s.
    pub tls_handshake: Duration,
    /// From the first byte of a request head to its end. Default 10 s.
    pub request_header: Duration,
    /// Idle keep-alive connection (h1: between requests; h2: no open stream). Default 60 s.
    pub keepalive_idle: Duration,
    /// Per-route defaults.
    pub route: RouteTimeouts,
}

/// Timeouts a route may override. `None` means off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTimeouts {
    /// Default 60 s: no request body byte for this long -> 408.
    pub client_body_idle: Option<Duration>,
    /// Default 5 s.
    pub upstream_connect: Option<Duration>,
    /// Request sent -> response head. Default 60 s -> 504.
    pub upstream_header: Option<Duration>,
    /// No response body byte for this long. Default 60 s; never applied to
    /// `text/event-stream`.
    pub upstream_body_idle: Option<Duration>,
    /// Upgraded tunnel with no traffic either way. Default 1 h.
    pub tunnel_idle: Option<Duration>,
}

/// `[http2]`: server-side HTTP/2 limits, all set explicitly on hyper.
#[derive(Debug, Clone)]
pub struct Http2 {
    /// Default 128.
    pub max_concurrent_streams: u32,
    /// Default 16 KiB (same as `server.max_request_header`'s default).
    pub max_header_list_size: u32,
    /// Default 20.
    pub max_pending_accept_reset_streams: usize,
    /// Default 1024.
    pub max_local_error_reset_streams: usize,
    /// Keep-alive PING interval; default 30 s; `None` off.
    pub keepalive_interval: Option<Duration>,
    /// PING ack timeout; default 10 s.
    pub keepalive_timeout: Duration,
}

/// `[tls]`
#[derive(Debug, Clone)]
pub struct Tls {
    /// `[[tls.certificates]]` in file order.
    pub certificates: Vec<CertificateFiles>,
    /// Where the self-signed fallback is kept; default `certs` in the config file's directory.
    /// Relative paths in the file are joined with that directory, so this is absolute.
    pub self_signed_dir: PathBuf,
    /// Server-side session cache entries; default 4096.
    pub session_cache_size: usize,
    /// Issue TLS 1.3 session tickets (keys rotate every 6 h). Default true.
    pub tickets: bool,
}

/// One `[[tls.certificates]]` entry: a PEM chain and key from files.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// Absolute (resolved relative to the config file's directory).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Serve this one when SNI matches nothing (or is absent). At most one entry sets it; if
    /// none does, the first entry is the default.
    pub default: bool,
}

/// `[hsts]`: sent only on HTTPS responses, only when this section exists.
#[derive(Debug, Clone)]
pub struct Hsts {
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    /// An `EnvFilter` directive string; default `"info"`.
    pub level: String,
    /// Access log on (default true).
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[shutdown]`
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Default 5 s.
    pub propagation_delay: Duration,
    /// Default 30 s.
    pub drain_timeout: Duration,
    /// Default 10 s.
    pub stream_timeout: Duration,
}

/// `[reload]`
#[derive(Debug, Clone)]
pub struct Reload {
    /// Reload on changes to the config file and certificate files. Default true.
    pub watch: bool,
    /// WebSockets of a route removed by a reload are closed after this. Default 30 s.
    pub removed_route_grace: Duration,
}

/// `[upstreams.<name>]`
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// At least one.
    pub replicas: Vec<ReplicaAddr>,
    /// Per replica; default 256.
    pub max_connections: usize,
    /// Waiting for a free connection slot beyond this -> 503. Default 1 s.
    pub queue_timeout: Duration,
    /// Idle pooled connections close after this; default 4 s (uvicorn closes at 5 s).
    pub idle_timeout: Duration,
    /// Largest upstream response head, bytes; default 64 KiB; larger -> 502.
    pub max_response_header: usize,
}

/// One replica: `host:port` and a weight (default 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAddr {
    /// An IPv4 literal, an IPv6 literal without brackets (`::1`), or a lower-case DNS name
    /// (`app`); `(host.as_str(), port)` can be handed to a resolver as is.
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

/// `[[routes]]`
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique; default `"<host><path>"` (host `*` when absent).
    pub name: String,
    /// `None` matches any host.
    pub host: Option<HostMatch>,
    /// Normalised, starts with `/`, no trailing `/` unless it is `/`.
    pub path: String,
    /// Remove `path` from the forwarded path and send `X-Forwarded-Prefix`.
    pub strip_prefix: bool,
    pub action: Action,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// Checked against the resolved client; deny wins; an empty allow list allows all.
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub timeouts: RouteTimeouts,
    pub max_body: u64,
    /// `Host` sent upstream instead of the effective authority.
    pub upstream_host: Option<HeaderValue>,
    /// Log requests to this route (default true).
    pub access_log: bool,
}

/// How a route matches the host, lower-cased, without port or trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com` is stored as `Suffix(".example.com")`; matches exactly one more label.
    Wildcard(String),
}

/// What a route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Proxy to the named upstream (validated to exist).
    Proxy { upstream: String },
    /// Redirect: status is 301, 302, 303, 307 or 308 (default 308). The target is used as is;
    /// `preserve_path` appends the request path and query.
    Redirect {
        to: String,
        status: StatusCode,
        preserve_path: bool,
    },
}

/// Header edits applied in order: remove, then set.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}
