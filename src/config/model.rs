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
    /// `[acme]`; off unless it lists certificates.
    pub acme: super::model_acme::Acme,
    pub hsts: Option<Hsts>,
    pub log: Log,
    pub metrics: Metrics,
    pub shutdown: Shutdown,
    pub startup: Startup,
    pub reload: Reload,
    /// Upstreams by name (sorted, so iteration order is stable).
    pub upstreams: BTreeMap<String, Upstream>,
    /// Named rate limits by name (sorted).
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// `[redis]`: the store shared by limits with `backend = "redis"`.
    pub redis: Option<Redis>,
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
    /// Runtime worker threads; 0 (default) means one per CPU. With 1 the gateway runs a
    /// single-threaded runtime, the cheapest per request.
    pub workers: usize,
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
    /// Add the query string to access log lines (default false: it may carry tokens).
    pub log_query: bool,
    /// Access log file, reopened on SIGUSR1; `None` writes to stdout.
    pub access_log_file: Option<PathBuf>,
}

/// `[metrics]`
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Count requests per route and replica (default true). Off, `/metrics` still serves the
    /// state gauges (replicas, certificates, connections) but no request counts.
    pub enabled: bool,
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

/// `[startup]`
#[derive(Debug, Clone)]
pub struct Startup {
    /// Longest wait for every upstream's first probe round before reporting ready; default
    /// 10 s.
    pub probe_timeout: Duration,
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
    /// How a replica is chosen; default `p2c_ewma`.
    pub policy: Policy,
    /// Ramp a newly ready replica's share of traffic over this long; default none.
    pub slow_start: Option<Duration>,
    /// Seed for the balancer's randomness (tests); default random.
    pub seed: Option<u64>,
    /// Active probes.
    pub health: Health,
    /// Passive health (ejection on failures).
    pub outlier: Outlier,
    /// Request bodies up to this size with a known length are buffered so they can be
    /// retried; default 64 KiB; 0 disables buffering.
    pub retry_buffer: u64,
    /// Retries allowed as a share of requests, percent; default 20.
    pub retry_budget_percent: u32,
    /// Retries always allowed per second whatever the share; default 3.
    pub retry_budget_min: u32,
    /// When no replica is ready, use the live ones (or all) instead of answering 503.
    pub fail_open: bool,
    /// How often DNS names among the replicas are resolved again; default 5 s.
    pub dns_refresh: Duration,
    /// The DNS server asked for replica names; default the system resolver.
    pub nameserver: Option<SocketAddr>,
}

/// How an upstream picks a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Power of two random choices over peak-EWMA latency × in-flight requests.
    P2cEwma,
    /// Smooth weighted round-robin.
    RoundRobin,
    /// Fewest in-flight requests per unit of weight.
    LeastConn,
    /// Consistent (rendezvous) hashing on a request key.
    Hash(HashOn),
}

/// What `policy = "hash"` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A request header (`header:X-User`); absent -> falls back to the client address.
    Header(HeaderName),
    /// A cookie (`cookie:session`); absent -> falls back to the client address.
    Cookie(String),
    /// The resolved client address (`client_ip`).
    ClientIp,
}

/// Whether active probes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    /// Probe liveness and readiness.
    Active,
    /// No probes: replicas start ready; only passive health applies.
    Off,
}

/// `[upstreams.<name>.health]`
#[derive(Debug, Clone)]
pub struct Health {
    /// Default active.
    pub mode: HealthMode,
    /// Default `/health/live`.
    pub live_path: String,
    /// Default `/health/ready`.
    pub ready_path: String,
    /// Default 5 s (each replica gets its own phase).
    pub interval: Duration,
    /// Default 1 s.
    pub timeout: Duration,
    /// Statuses that pass, inclusive; default 200-399.
    pub expected_status: (u16, u16),
    /// Passing probes in a row to come back; default 2.
    pub rise: u32,
    /// Failing probes in a row to go out; default 2.
    pub fall: u32,
    /// `Host` sent with probes; default the replica's address.
    pub host: Option<HeaderValue>,
    /// New replicas take traffic before their first probe passed; default false.
    pub start_ready: bool,
}

/// `[upstreams.<name>.outlier]`
#[derive(Debug, Clone)]
pub struct Outlier {
    /// Failures in a row that eject a replica; default 5.
    pub consecutive_failures: u32,
    /// First ejection; doubles on each repeat; default 10 s.
    pub base_ejection: Duration,
    /// Cap on an ejection; default 5 min (never below `base_ejection`).
    pub max_ejection: Duration,
    /// Most of the pool ejected at once, percent; default 50 (one replica always may be).
    pub max_ejected_percent: u32,
    /// Count 500 and other 5xx besides 502/503/504; default false.
    pub count_5xx: bool,
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
    /// Compress proxied responses on the fly when the client accepts it (default false;
    /// upstream routes only: static routes have `static.compress`).
    pub compress: bool,
    /// Names of the `[rate_limits.<name>]` checked for this route, in order (validated to
    /// exist, no duplicates).
    pub rate_limits: Vec<String>,
    /// Methods besides GET, HEAD, OPTIONS, PUT and DELETE that may be retried after the
    /// request was sent.
    pub idempotent_methods: Vec<http::Method>,
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
    /// Serve files from a directory.
    Static(StaticConfig),
}

/// `static = { root = "dist", ... }`: files served from a directory. The request path below
/// the route's prefix is looked up under `root` (the prefix is always removed).
#[derive(Debug, Clone)]
pub struct StaticConfig {
    /// Absolute (resolved relative to the config file's directory); checked to be a directory
    /// when the config was validated.
    pub root: PathBuf,
    /// File served for a directory request; a plain file name. Default `index.html`.
    pub index: String,
    /// A missing path without a file extension serves the root's index (single-page apps).
    pub spa_fallback: bool,
    /// Serve dot-files and dot-directories (`.well-known/` is always served).
    pub serve_hidden: bool,
    /// Follow symlinks that point outside `root`.
    pub follow_symlinks_outside: bool,
    /// Extra patterns naming immutable files: `*` matches any run of characters except `/`;
    /// a pattern without `/` is matched against the file name, one with `/` against the path
    /// below `root`.
    pub immutable_patterns: Vec<String>,
    /// `Cache-Control` for hashed names; default `public, max-age=31536000, immutable`.
    pub cache_control_hashed: HeaderValue,
    /// `Cache-Control` for everything else; default `no-cache`.
    pub cache_control_other: HeaderValue,
    /// Compress compressible types on the fly when no precompressed sidecar exists.
    pub compress: bool,
}

/// Header edits applied in order: remove, then set.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// `[rate_limits.<name>]`: a GCRA limit of `requests` per `window`, allowing bursts of up to
/// `burst` requests. Compared whole to decide whether a reload keeps a limiter's buckets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// The table key; `[a-z0-9_-]+`, so it can be quoted in `RateLimit` headers as is.
    pub name: String,
    /// Requests per window (`rate = "100/m"` gives 100).
    pub requests: u32,
    /// The window (`rate = "100/m"` gives 60 s).
    pub window: Duration,
    /// Requests allowed at once from a full bucket; default `requests`.
    pub burst: u32,
    /// What one bucket is for.
    pub key: LimitKey,
    /// IPv6 clients share a bucket per prefix of this length (48 to 128); default 64.
    pub ipv6_prefix: u8,
    /// Buckets tracked at most; past it, new keys share one overflow bucket. Default 1,000,000.
    pub max_keys: usize,
    /// Send `RateLimit-Policy` and `RateLimit` on allowed responses too (always on 429).
    pub headers: bool,
    /// Where the buckets live.
    pub backend: LimitBackend,
}

/// What a rate limit keys its buckets on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// The resolved client address (IPv6 by `ipv6_prefix`).
    ClientIp,
    /// A request header's value (e.g. an API key); requests without it are keyed by client.
    Header(HeaderName),
    /// One bucket per route that uses the limit.
    Route,
}

/// Where a rate limit's buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitBackend {
    /// In this process.
    Local,
    /// In Redis, shared by every gateway using it (`[redis]` must be set).
    Redis,
}

/// `[redis]`
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Redis {
    /// `redis://` or `rediss://` URL; may hold a password, so never log it: use
    /// [`crate::ratelimit::redact_url`].
    pub url: String,
    /// Per call; default 50 ms.
    pub timeout: Duration,
    /// What to do when Redis is slow or down.
    pub failure: RedisFailure,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &crate::ratelimit::redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("failure", &self.failure)
            .finish()
    }
}

/// The policy while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedisFailure {
    /// Decide with the local limiter (N gateways then allow up to N times the limit).
    FailOpen,
    /// Answer 429.
    FailClosed,
}
