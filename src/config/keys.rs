//! The list of every scalar setting that can be overridden from the environment.
//!
//! It drives three things: which `EDGEWARD_*` variables are recognised (and how their values
//! are typed), the reference table in `docs/configuration.md`, and a test that feeds every
//! entry through the parser. When adding a key to a raw type in `raw.rs`, add it here too; the
//! tests fail if the two disagree.

/// The type of a setting, as far as the environment and the docs care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    Str,
    Duration,
    /// A duration, or `"off"` / `"0s"` for none.
    DurationOrOff,
    /// Bytes as an integer, or a string with a unit.
    Size,
    Addr,
    Path,
    /// An `http://` or `https://` URL.
    Url,
    /// A number between 0 and 1.
    Fraction,
    Choice(&'static [&'static str]),
    /// Requests per window, e.g. `"100/m"`.
    Rate,
    /// What a rate limit keys on: `"client_ip"`, `"route"` or `"header:<name>"`.
    LimitKey,
    /// A `redis://` or `rediss://` URL.
    RedisUrl,
}

impl Kind {
    /// Short type description for the reference table.
    fn describe(self) -> String {
        match self {
            Kind::Bool => "bool".into(),
            Kind::Int => "integer".into(),
            Kind::Str => "string".into(),
            Kind::Duration => "duration".into(),
            Kind::DurationOrOff => "duration or \"off\"".into(),
            Kind::Size => "size".into(),
            Kind::Addr => "socket address".into(),
            Kind::Path => "path".into(),
            Kind::Rate => "rate (\"100/m\")".into(),
            Kind::LimitKey => "\"client_ip\", \"route\" or \"header:<name>\"".into(),
            Kind::RedisUrl => "URL (redis:// or rediss://)".into(),
            Kind::Url => "URL".into(),
            Kind::Fraction => "number (0 to 1]".into(),
            Kind::Choice(options) => options
                .iter()
                .map(|o| format!("\"{o}\""))
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

/// One overridable setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyInfo {
    /// Dotted path; `<name>` stands for a listener or upstream name from the file.
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
    /// As shown in the docs.
    pub(crate) default: &'static str,
    /// One line, no `|`.
    pub(crate) doc: &'static str,
    /// A second, shorter variable name accepted for the same key.
    pub(crate) alias: Option<&'static str>,
    /// Valid values for a `Str` key whose text has a format (tests feed them through the
    /// parser); empty for free text.
    // Only the key tests read it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) examples: &'static [&'static str],
}

const fn key(path: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> KeyInfo {
    KeyInfo {
        path,
        kind,
        default,
        doc,
        alias: None,
        examples: &[],
    }
}

const CLIENT_IP_HEADERS: &[&str] = &["x-forwarded-for", "forwarded"];
const LOG_FORMATS: &[&str] = &["text", "json"];
const LIMIT_BACKENDS: &[&str] = &["local", "redis"];
const REDIS_FAILURES: &[&str] = &["fail_open", "fail_closed"];
const POLICIES: &[&str] = &["p2c_ewma", "round_robin", "least_conn", "hash"];
const HEALTH_MODES: &[&str] = &["active", "off"];
const ACME_CHALLENGES: &[&str] = &["http-01", "tls-alpn-01"];
const ACME_KEY_TYPES: &[&str] = &["ecdsa-p256", "ecdsa-p384"];

use Kind::{
    Addr, Bool, Choice, Duration, DurationOrOff, Fraction, Int, LimitKey, Path, Rate, RedisUrl,
    Size, Str, Url,
};

/// Every overridable scalar key, grouped by section in the order of `config/edgeward.toml`.
// One key per line keeps this readable as a table.
#[rustfmt::skip]
pub(crate) const KEYS: &[KeyInfo] = &[
    key("listeners.<name>.listen", Addr, "(required)", "Address to bind, e.g. `0.0.0.0:8080` or `[::]:8443`."),
    key("listeners.<name>.tls", Bool, "false", "Terminate TLS (certificates from `[[tls.certificates]]`, else self-signed)."),
    key("listeners.<name>.v6_only", Bool, "OS default", "IPv6 addresses only: `true` v6-only, `false` dual-stack."),
    key("listeners.<name>.proxy_protocol", Bool, "false", "Require a PROXY protocol v1/v2 header from `trusted_proxies` peers."),
    key("listeners.<name>.client_ip_header", Choice(CLIENT_IP_HEADERS), "\"x-forwarded-for\"", "Header that trusted peers use to pass on the client chain."),
    key("listeners.<name>.redirect_https", Bool, "false", "Plain listeners only: answer with a 308 to HTTPS."),
    key("listeners.<name>.https_port", Int, "first TLS listener's port", "Port used in HTTPS redirect targets."),
    key("admin.listen", Addr, "\"127.0.0.1:9901\"", "Admin listener (metrics, health, status)."),
    key("admin.token", Str, "none", "Bearer token required on every admin request."),
    key("admin.max_connections", Int, "64", "Open connection budget of the admin listener."),
    key("probe.listen", Addr, "none", "Optional listener with only health endpoints, for orchestrator probes."),
    key("probe.metrics", Bool, "false", "Also serve `/metrics` on the probe listener."),
    key("probe.max_connections", Int, "64", "Open connection budget of the probe listener."),
    key("server.max_request_header", Size, "\"16KiB\"", "Largest request head (8KiB to 1MiB); larger gets 431."),
    key("server.max_headers", Int, "100", "Most request header fields (1 to 10000)."),
    key("server.max_uri", Size, "\"8KiB\"", "Longest request target; longer gets 414."),
    key("server.max_body", Size, "\"100MiB\"", "Default request body cap; routes may override."),
    key("server.max_connections", Int, "10000", "Open data-plane connections, all listeners together."),
    key("server.max_connections_per_ip", Int, "256", "Open connections per client address; 0 = unlimited."),
    key("server.workers", Int, "0", "Runtime worker threads; 0 = one per CPU, 1 = a single-threaded runtime."),
    key("server.max_requests_per_connection", Int, "0", "Requests served per connection; 0 = unlimited."),
    key("server.max_connection_age", DurationOrOff, "\"off\"", "Close connections older than this (plus up to 10% jitter)."),
    key("server.allow_underscore_headers", Bool, "false", "Forward request headers whose names contain `_`."),
    key("server.forwarded_header", Bool, "false", "Also send an RFC 7239 `Forwarded` header upstream."),
    key("server.server_header", Str, "none", "`Server` header on the gateway's own responses."),
    key("timeouts.tls_handshake", Duration, "\"10s\"", "TLS handshake."),
    key("timeouts.request_header", Duration, "\"10s\"", "From the first byte of a request head to its end."),
    key("timeouts.keepalive_idle", Duration, "\"60s\"", "Idle keep-alive connection."),
    key("timeouts.client_body_idle", DurationOrOff, "\"60s\"", "No request body byte for this long gets 408. Routes may override."),
    key("timeouts.upstream_connect", DurationOrOff, "\"5s\"", "Connecting to a replica. Routes may override."),
    key("timeouts.upstream_header", DurationOrOff, "\"60s\"", "Request sent to response head; gets 504. Routes may override."),
    key("timeouts.upstream_body_idle", DurationOrOff, "\"60s\"", "No response body byte for this long (never for event streams). Routes may override."),
    key("timeouts.tunnel_idle", DurationOrOff, "\"1h\"", "Upgraded connection (WebSocket) with no traffic. Routes may override."),
    key("http2.max_concurrent_streams", Int, "128", "Streams per HTTP/2 connection."),
    key("http2.max_header_list_size", Size, "\"16KiB\"", "Largest HTTP/2 header list."),
    key("http2.max_pending_accept_reset_streams", Int, "20", "Streams reset by the client before being accepted."),
    key("http2.max_local_error_reset_streams", Int, "1024", "Streams the server may reset for protocol errors."),
    key("http2.keepalive_interval", DurationOrOff, "\"30s\"", "Keep-alive PING interval."),
    key("http2.keepalive_timeout", Duration, "\"10s\"", "PING acknowledgement timeout."),
    key("tls.self_signed_dir", Path, "\"certs\"", "Where the self-signed fallback certificate is kept."),
    key("tls.session_cache_size", Int, "4096", "Server-side TLS session cache entries."),
    key("tls.tickets", Bool, "true", "Issue TLS 1.3 session tickets."),
    key("acme.directory", Url, "Let's Encrypt production", "ACME directory URL of the CA."),
    key("acme.staging", Bool, "false", "Use Let's Encrypt's staging directory (when `directory` is not set)."),
    key("acme.email", Str, "none", "Contact address for the ACME account."),
    key("acme.challenge", Choice(ACME_CHALLENGES), "\"http-01\"", "How control of the names is proven: port 80 or port 443."),
    key("acme.storage", Str, "\"dir:/var/lib/edgeward/acme\"", "`dir:<path>` (a shared volume for a cluster) or `redis://` / `rediss://` URL."),
    key("acme.redis_prefix", Str, "\"edgeward:acme:\"", "Prefix of every Redis key ACME uses."),
    key("acme.key_type", Choice(ACME_KEY_TYPES), "\"ecdsa-p256\"", "Key type of issued certificates."),
    key("acme.renew_before", Fraction, "0.333", "Renew when this fraction of the lifetime remains (unless the CA's renewal info says otherwise)."),
    key("acme.check_interval", Duration, "\"1h\"", "How often each certificate's state is checked again."),
    key("acme.retry_interval", Duration, "\"5m\"", "First wait after a failed order; doubles per failure up to 24h."),
    key("acme.ca_roots", Path, "system roots", "PEM roots trusted for the directory's HTTPS (a private CA)."),
    key("hsts.max_age", Duration, "\"365d\"", "`max-age` of `Strict-Transport-Security` (setting any hsts key enables it)."),
    key("hsts.include_subdomains", Bool, "false", "Add `includeSubDomains`."),
    key("hsts.preload", Bool, "false", "Add `preload` (needs include_subdomains and max_age of at least 365d)."),
    KeyInfo {
        alias: Some("EDGEWARD_LOG_FORMAT"),
        ..key("log.format", Choice(LOG_FORMATS), "\"text\"", "Log output format.")
    },
    KeyInfo {
        alias: Some("EDGEWARD_LOG_LEVEL"),
        ..key("log.level", Str, "\"info\"", "`EnvFilter` directives, e.g. `info,edgeward=debug`.")
    },
    key("log.access_log", Bool, "true", "Log one line per request."),
    key("log.log_query", Bool, "false", "Add the query string to access log lines (it may carry tokens)."),
    key("log.access_log_file", Path, "stdout", "Write access log lines to this file (reopened on SIGUSR1) instead of stdout."),
    key("metrics.enabled", Bool, "true", "Count requests for `/metrics` and the status page."),
    key("shutdown.propagation_delay", Duration, "\"5s\"", "After SIGTERM, keep serving this long while load balancers notice."),
    key("shutdown.drain_timeout", Duration, "\"30s\"", "Then wait this long for in-flight requests."),
    key("shutdown.stream_timeout", Duration, "\"10s\"", "Grace for long-lived streams (WebSocket, SSE) once draining."),
    key("reload.watch", Bool, "true", "Reload when the config file or a certificate file changes (SIGHUP and `POST /admin/reload` always work)."),
    key("reload.removed_route_grace", Duration, "\"30s\"", "WebSockets of a route that a reload removed are closed after this."),
    key("upstreams.<name>.max_connections", Int, "256", "Open connections per replica."),
    key("upstreams.<name>.queue_timeout", Duration, "\"1s\"", "Waiting for a free connection slot longer than this gets 503."),
    key("upstreams.<name>.idle_timeout", Duration, "\"4s\"", "Idle pooled connections close after this (below uvicorn's 5s)."),
    key("upstreams.<name>.max_response_header", Size, "\"64KiB\"", "Largest upstream response head (8KiB to 1MiB); larger gets 502."),
    key("rate_limits.<name>.rate", Rate, "(required)", "Requests per window: `\"100/m\"`, `\"10/s\"`, `\"500/10m\"`."),
    key("rate_limits.<name>.burst", Int, "the rate's request count", "Requests allowed at once from a full bucket."),
    key("rate_limits.<name>.key", LimitKey, "\"client_ip\"", "One bucket per client address, per header value, or per route."),
    KeyInfo {
        examples: &["48", "56"],
        ..key("rate_limits.<name>.ipv6_prefix", Int, "64", "IPv6 clients share a bucket per prefix of this length (48 to 128).")
    },
    key("rate_limits.<name>.max_keys", Int, "1000000", "Buckets tracked at most; past it new keys share one overflow bucket."),
    key("rate_limits.<name>.headers", Bool, "false", "Send `RateLimit-Policy` and `RateLimit` on allowed responses too."),
    key("rate_limits.<name>.backend", Choice(LIMIT_BACKENDS), "\"local\"", "Buckets in this process, or in Redis shared by every gateway."),
    key("redis.url", RedisUrl, "none", "Redis for shared limits; put the password in `${VAR}`, it is never logged."),
    key("redis.timeout", Duration, "\"50ms\"", "Per Redis call; slower counts as Redis being down."),
    key("redis.failure", Choice(REDIS_FAILURES), "\"fail_open\"", "While Redis is down: decide locally, or answer 429."),
    key("upstreams.<name>.policy", Choice(POLICIES), "\"p2c_ewma\"", "How a replica is picked among the live, ready, not ejected ones."),
    KeyInfo {
        examples: &["header:X-User", "cookie:session", "client_ip"],
        ..key("upstreams.<name>.hash_on", Str, "\"client_ip\"", "For `policy = \"hash\"` (implied when only this is set): `header:<name>`, `cookie:<name>` or `client_ip` (also the fallback when the header or cookie is absent).")
    },
    key("upstreams.<name>.slow_start", DurationOrOff, "\"off\"", "Ramp a newly ready replica's traffic up over this long."),
    key("upstreams.<name>.seed", Int, "random", "Seed for the balancer's randomness (reproducible tests)."),
    key("upstreams.<name>.retry_buffer", Size, "\"64KiB\"", "Bodies up to this size with a known length are buffered so they can be retried (0 to 16MiB)."),
    key("upstreams.<name>.retry_budget_percent", Int, "20", "Retries allowed as a share of requests (0 to 100)."),
    key("upstreams.<name>.retry_budget_min", Int, "3", "Retries allowed per second whatever the share."),
    key("upstreams.<name>.fail_open", Bool, "false", "When no replica is ready, use the live ones (or all) instead of answering 503."),
    key("upstreams.<name>.dns_refresh", Duration, "\"5s\"", "How often replica DNS names are resolved again."),
    key("upstreams.<name>.nameserver", Addr, "system resolver", "DNS server (UDP) asked for replica names."),
    key("upstreams.<name>.health.mode", Choice(HEALTH_MODES), "\"active\"", "`off`: no probes, replicas start ready, passive health only."),
    KeyInfo {
        examples: &["/live", "/healthz"],
        ..key("upstreams.<name>.health.live_path", Str, "\"/health/live\"", "Liveness probe path; failing it takes the replica out and closes its idle connections.")
    },
    KeyInfo {
        examples: &["/ready", "/readyz"],
        ..key("upstreams.<name>.health.ready_path", Str, "\"/health/ready\"", "Readiness probe path; failing it drains the replica.")
    },
    key("upstreams.<name>.health.interval", Duration, "\"5s\"", "Time between probes (each replica gets its own phase)."),
    key("upstreams.<name>.health.timeout", Duration, "\"1s\"", "A probe without an answer for this long fails."),
    KeyInfo {
        examples: &["200", "200-299"],
        ..key("upstreams.<name>.health.expected_status", Str, "\"200-399\"", "Statuses that pass a probe: `\"200\"` or a range `\"200-299\"`.")
    },
    key("upstreams.<name>.health.rise", Int, "2", "Passing probes in a row that bring a replica back."),
    key("upstreams.<name>.health.fall", Int, "2", "Failing probes in a row that take a replica out."),
    key("upstreams.<name>.health.host", Str, "replica address", "`Host` header sent with probes."),
    key("upstreams.<name>.health.start_ready", Bool, "false", "New replicas take traffic before their first readiness probe passed."),
    key("upstreams.<name>.outlier.consecutive_failures", Int, "5", "Failures in a row (connect, reset, header timeout, 502/503/504) that eject a replica."),
    key("upstreams.<name>.outlier.base_ejection", Duration, "\"10s\"", "First ejection; doubles on each repeat."),
    key("upstreams.<name>.outlier.max_ejection", Duration, "\"5m\"", "Longest ejection."),
    key("upstreams.<name>.outlier.max_ejected_percent", Int, "50", "Most of a pool ejected at once, percent (one replica always may be)."),
    key("upstreams.<name>.outlier.count_5xx", Bool, "false", "Also count 500 and other 5xx answers as failures."),
    key("startup.probe_timeout", Duration, "\"10s\"", "Longest wait for every upstream's first probe round before reporting ready."),
];

/// The variable that overrides a concrete key path: segments upper-cased, `-` as `_`, joined
/// by `__`.
pub(crate) fn env_var_for(segments: &[&str]) -> String {
    let joined: Vec<String> = segments
        .iter()
        .map(|s| s.to_ascii_uppercase().replace('-', "_"))
        .collect();
    format!("EDGEWARD_{}", joined.join("__"))
}

/// Markdown table of every overridable scalar key: key path, env var, type, default,
/// description.
pub fn reference_table() -> String {
    let mut out = String::from(
        "| Key | Environment variable | Type | Default | Description |\n|---|---|---|---|---|\n",
    );
    for key in KEYS {
        let segments: Vec<&str> = key.path.split('.').collect();
        let mut var = format!("`{}`", env_var_for(&segments));
        if let Some(alias) = key.alias {
            var.push_str(&format!(" or `{alias}`"));
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            key.path,
            var,
            key.kind.describe(),
            key.default,
            key.doc
        ));
    }
    out
}
