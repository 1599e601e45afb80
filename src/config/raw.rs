//! Raw serde types mirroring the file, and the reader that fills them from the parsed tree.
//!
//! Every value is an `Option<Spanned<_>>` so that validation can apply defaults and name the
//! line of a bad value. Sections, listeners, upstreams and routes are deserialized one by one
//! so that a mistake in one does not hide mistakes in the others. When adding a scalar key,
//! also add it to `keys::KEYS`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::Diag;

/// An optional value with its position.
pub(crate) type Field<T> = Option<Spanned<T>>;

/// A list of strings, each with its position.
pub(crate) type List = Option<Vec<Spanned<String>>>;

/// The top-level sections, in the order the reader expects them.
const SECTIONS: &[&str] = &[
    "listeners",
    "admin",
    "probe",
    "server",
    "timeouts",
    "http2",
    "tls",
    "acme",
    "hsts",
    "log",
    "metrics",
    "shutdown",
    "startup",
    "reload",
    "upstreams",
    "rate_limits",
    "redis",
    "routes",
];

/// The whole file. Sections that are absent (or failed to deserialize) are `None` or empty.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub(crate) listeners: Vec<Named<RawListener>>,
    /// Whether the file declares any listener, even ones that failed to read.
    pub(crate) listeners_declared: bool,
    pub(crate) admin: Option<RawAdmin>,
    pub(crate) probe: Option<RawProbe>,
    pub(crate) server: Option<RawServer>,
    pub(crate) timeouts: Option<RawTimeouts>,
    pub(crate) http2: Option<RawHttp2>,
    pub(crate) tls: Option<RawTls>,
    pub(crate) acme: Option<RawAcme>,
    /// Present (even empty) means HSTS is on.
    pub(crate) hsts: Option<RawHsts>,
    pub(crate) log: Option<RawLog>,
    pub(crate) metrics: Option<RawMetrics>,
    pub(crate) shutdown: Option<RawShutdown>,
    pub(crate) startup: Option<RawStartup>,
    pub(crate) reload: Option<RawReload>,
    pub(crate) upstreams: Vec<Named<RawUpstream>>,
    pub(crate) rate_limits: Vec<Named<RawRateLimit>>,
    pub(crate) redis: Option<RawRedis>,
    /// With their index in the file, which stays right when an earlier route failed to read.
    pub(crate) routes: Vec<(usize, Spanned<RawRoute>)>,
}

/// An entry of a table of tables (`[listeners.<name>]`), in file order.
#[derive(Debug)]
pub(crate) struct Named<T> {
    pub(crate) name: Spanned<String>,
    pub(crate) raw: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawListener {
    pub(crate) listen: Field<String>,
    pub(crate) tls: Field<bool>,
    pub(crate) v6_only: Field<bool>,
    pub(crate) proxy_protocol: Field<bool>,
    pub(crate) trusted_proxies: List,
    pub(crate) client_ip_header: Field<String>,
    pub(crate) redirect_https: Field<bool>,
    pub(crate) https_port: Field<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAdmin {
    pub(crate) listen: Field<String>,
    pub(crate) hosts: List,
    pub(crate) token: Field<String>,
    pub(crate) max_connections: Field<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawProbe {
    pub(crate) listen: Field<String>,
    pub(crate) metrics: Field<bool>,
    pub(crate) max_connections: Field<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawServer {
    pub(crate) workers: Field<i64>,
    pub(crate) max_request_header: Field<SizeValue>,
    pub(crate) max_headers: Field<i64>,
    pub(crate) max_uri: Field<SizeValue>,
    pub(crate) max_body: Field<SizeValue>,
    pub(crate) max_connections: Field<i64>,
    pub(crate) max_connections_per_ip: Field<i64>,
    pub(crate) max_requests_per_connection: Field<i64>,
    pub(crate) max_connection_age: Field<DurationText>,
    pub(crate) allow_underscore_headers: Field<bool>,
    pub(crate) forwarded_header: Field<bool>,
    pub(crate) server_header: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawTimeouts {
    pub(crate) tls_handshake: Field<DurationText>,
    pub(crate) request_header: Field<DurationText>,
    pub(crate) keepalive_idle: Field<DurationText>,
    pub(crate) client_body_idle: Field<DurationText>,
    pub(crate) upstream_connect: Field<DurationText>,
    pub(crate) upstream_header: Field<DurationText>,
    pub(crate) upstream_body_idle: Field<DurationText>,
    pub(crate) tunnel_idle: Field<DurationText>,
}

/// The timeouts a route may override (`timeouts = { ... }` in `[[routes]]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRouteTimeouts {
    pub(crate) client_body_idle: Field<DurationText>,
    pub(crate) upstream_connect: Field<DurationText>,
    pub(crate) upstream_header: Field<DurationText>,
    pub(crate) upstream_body_idle: Field<DurationText>,
    pub(crate) tunnel_idle: Field<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHttp2 {
    pub(crate) max_concurrent_streams: Field<i64>,
    pub(crate) max_header_list_size: Field<SizeValue>,
    pub(crate) max_pending_accept_reset_streams: Field<i64>,
    pub(crate) max_local_error_reset_streams: Field<i64>,
    pub(crate) keepalive_interval: Field<DurationText>,
    pub(crate) keepalive_timeout: Field<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawTls {
    pub(crate) self_signed_dir: Field<String>,
    pub(crate) session_cache_size: Field<i64>,
    pub(crate) tickets: Field<bool>,
    pub(crate) certificates: Option<Vec<Spanned<RawCertificate>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with cert and key")]
pub(crate) struct RawCertificate {
    pub(crate) cert: Field<String>,
    pub(crate) key: Field<String>,
    pub(crate) default: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawAcme {
    pub(crate) directory: Field<String>,
    pub(crate) staging: Field<bool>,
    pub(crate) email: Field<String>,
    pub(crate) eab: Option<Spanned<RawEab>>,
    pub(crate) challenge: Field<String>,
    pub(crate) storage: Field<String>,
    pub(crate) redis_prefix: Field<String>,
    pub(crate) key_type: Field<String>,
    pub(crate) renew_before: Field<Fraction>,
    pub(crate) check_interval: Field<DurationText>,
    pub(crate) retry_interval: Field<DurationText>,
    pub(crate) ca_roots: Field<String>,
    pub(crate) certificates: Option<Vec<Spanned<RawAcmeCertificate>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { kid = \"...\", hmac_key = \"${ACME_EAB_HMAC}\" }"
)]
pub(crate) struct RawEab {
    pub(crate) kid: Field<String>,
    pub(crate) hmac_key: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with names")]
pub(crate) struct RawAcmeCertificate {
    pub(crate) names: List,
}

/// A fraction as written: a number, or a string holding one (from the environment).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fraction(pub(crate) f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FractionVisitor;
        impl Visitor<'_> for FractionVisitor {
            type Value = Fraction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number between 0 and 1, e.g. 0.33")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Fraction, E> {
                Ok(Fraction(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Fraction, E> {
                Ok(Fraction(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Fraction, E> {
                Ok(Fraction(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fraction, E> {
                v.trim()
                    .parse::<f64>()
                    .map(Fraction)
                    .map_err(|_| E::custom(format!("expected a number, got {v:?}")))
            }
        }
        deserializer.deserialize_any(FractionVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHsts {
    pub(crate) max_age: Field<DurationText>,
    pub(crate) include_subdomains: Field<bool>,
    pub(crate) preload: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawLog {
    pub(crate) format: Field<String>,
    pub(crate) level: Field<String>,
    pub(crate) access_log: Field<bool>,
    pub(crate) log_query: Field<bool>,
    pub(crate) access_log_file: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawMetrics {
    pub(crate) enabled: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawShutdown {
    pub(crate) propagation_delay: Field<DurationText>,
    pub(crate) drain_timeout: Field<DurationText>,
    pub(crate) stream_timeout: Field<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawReload {
    pub(crate) watch: Field<bool>,
    pub(crate) removed_route_grace: Field<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawUpstream {
    pub(crate) replicas: Field<Vec<Spanned<RawReplica>>>,
    pub(crate) max_connections: Field<i64>,
    pub(crate) queue_timeout: Field<DurationText>,
    pub(crate) idle_timeout: Field<DurationText>,
    pub(crate) max_response_header: Field<SizeValue>,
    pub(crate) policy: Field<String>,
    pub(crate) hash_on: Field<String>,
    pub(crate) slow_start: Field<DurationText>,
    pub(crate) seed: Field<i64>,
    pub(crate) retry_buffer: Field<SizeValue>,
    pub(crate) retry_budget_percent: Field<i64>,
    pub(crate) retry_budget_min: Field<i64>,
    pub(crate) fail_open: Field<bool>,
    pub(crate) dns_refresh: Field<DurationText>,
    pub(crate) nameserver: Field<String>,
    pub(crate) health: Option<RawHealth>,
    pub(crate) outlier: Option<RawOutlier>,
}

/// `[upstreams.<name>.health]`: active probes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHealth {
    pub(crate) mode: Field<String>,
    pub(crate) live_path: Field<String>,
    pub(crate) ready_path: Field<String>,
    pub(crate) interval: Field<DurationText>,
    pub(crate) timeout: Field<DurationText>,
    pub(crate) expected_status: Field<String>,
    pub(crate) rise: Field<i64>,
    pub(crate) fall: Field<i64>,
    pub(crate) host: Field<String>,
    pub(crate) start_ready: Field<bool>,
}

/// `[upstreams.<name>.outlier]`: passive health.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawOutlier {
    pub(crate) consecutive_failures: Field<i64>,
    pub(crate) base_ejection: Field<DurationText>,
    pub(crate) max_ejection: Field<DurationText>,
    pub(crate) max_ejected_percent: Field<i64>,
    pub(crate) count_5xx: Field<bool>,
}

/// `[startup]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawStartup {
    pub(crate) probe_timeout: Field<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRateLimit {
    pub(crate) rate: Field<String>,
    pub(crate) burst: Field<i64>,
    pub(crate) key: Field<String>,
    pub(crate) ipv6_prefix: Field<i64>,
    pub(crate) max_keys: Field<i64>,
    pub(crate) headers: Field<bool>,
    pub(crate) backend: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRedis {
    pub(crate) url: Field<String>,
    pub(crate) timeout: Field<DurationText>,
    pub(crate) failure: Field<String>,
}

/// `"host:port"` or `{ addr = "host:port", weight = 2 }`.
#[derive(Debug)]
pub(crate) struct RawReplica {
    pub(crate) addr: String,
    pub(crate) weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplicaTable {
    addr: String,
    weight: Option<i64>,
}

impl<'de> Deserialize<'de> for RawReplica {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReplicaVisitor;
        impl<'de> Visitor<'de> for ReplicaVisitor {
            type Value = RawReplica;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host:port\" or { addr = \"host:port\", weight = 2 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawReplica, E> {
                Ok(RawReplica {
                    addr: v.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawReplica, A::Error> {
                let table = RawReplicaTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawReplica {
                    addr: table.addr,
                    weight: table.weight,
                })
            }
        }
        deserializer.deserialize_any(ReplicaVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRoute {
    pub(crate) name: Field<String>,
    pub(crate) host: Field<String>,
    pub(crate) path: Field<String>,
    pub(crate) strip_prefix: Field<bool>,
    pub(crate) upstream: Field<String>,
    pub(crate) redirect: Field<RawRedirect>,
    #[serde(rename = "static")]
    pub(crate) static_files: Field<RawStatic>,
    pub(crate) request_headers: Option<RawHeaderEdits>,
    pub(crate) response_headers: Option<RawHeaderEdits>,
    pub(crate) allow: List,
    pub(crate) deny: List,
    pub(crate) timeouts: Option<RawRouteTimeouts>,
    pub(crate) max_body: Field<SizeValue>,
    pub(crate) upstream_host: Field<String>,
    pub(crate) access_log: Field<bool>,
    pub(crate) compress: Field<bool>,
    pub(crate) rate_limits: List,
    pub(crate) idempotent_methods: List,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { to = \"https://example.com\", status = 308 }"
)]
pub(crate) struct RawRedirect {
    pub(crate) to: Field<String>,
    pub(crate) status: Field<i64>,
    pub(crate) preserve_path: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { root = \"dist\", spa_fallback = true }"
)]
pub(crate) struct RawStatic {
    pub(crate) root: Field<String>,
    pub(crate) index: Field<String>,
    pub(crate) spa_fallback: Field<bool>,
    pub(crate) serve_hidden: Field<bool>,
    pub(crate) follow_symlinks_outside: Field<bool>,
    pub(crate) immutable_patterns: List,
    pub(crate) cache_control_hashed: Field<String>,
    pub(crate) cache_control_other: Field<String>,
    pub(crate) compress: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table like { set = { \"name\" = \"value\" }, remove = [\"name\"] }"
)]
pub(crate) struct RawHeaderEdits {
    pub(crate) set: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub(crate) remove: List,
}

/// A duration as written (`"30s"`, `"off"`); parsed by validation, which knows whether
/// `"off"` is allowed.
#[derive(Debug, Clone)]
pub(crate) struct DurationText(pub(crate) String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration string with a unit, e.g. \"500ms\", \"30s\", \"2m\", \"1h\"",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A size as written: bytes as an integer, or a string with a unit.
#[derive(Debug, Clone)]
pub(crate) enum SizeValue {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string like \"16KiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                Ok(SizeValue::Bytes(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                i64::try_from(v)
                    .map(SizeValue::Bytes)
                    .map_err(|_| E::custom("size is too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                Ok(SizeValue::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Splits the parsed document into its sections and deserializes each one, reporting errors
/// by key path and line.
pub(crate) fn read(tree: DeTable<'_>, diag: &mut Diag<'_>) -> RawConfig {
    let mut raw = RawConfig::default();
    for (key, value) in in_file_order(tree) {
        let name = key.get_ref().as_ref();
        match name {
            "listeners" => {
                raw.listeners_declared = value.get_ref().as_table().is_some_and(|t| !t.is_empty());
                raw.listeners = named(name, value, diag);
            }
            "admin" => raw.admin = section(name, value, diag),
            "probe" => raw.probe = section(name, value, diag),
            "server" => raw.server = section(name, value, diag),
            "timeouts" => raw.timeouts = section(name, value, diag),
            "http2" => raw.http2 = section(name, value, diag),
            "tls" => raw.tls = section(name, value, diag),
            "acme" => raw.acme = section(name, value, diag),
            "hsts" => raw.hsts = section(name, value, diag),
            "log" => raw.log = section(name, value, diag),
            "metrics" => raw.metrics = section(name, value, diag),
            "shutdown" => raw.shutdown = section(name, value, diag),
            "startup" => raw.startup = section(name, value, diag),
            "reload" => raw.reload = section(name, value, diag),
            "upstreams" => raw.upstreams = named(name, value, diag),
            "rate_limits" => raw.rate_limits = named(name, value, diag),
            "redis" => raw.redis = section(name, value, diag),
            "routes" => raw.routes = routes(value, diag),
            _ => diag.error(
                name,
                Some(key.span()),
                format!("unknown section; expected one of: {}", SECTIONS.join(", ")),
            ),
        }
    }
    raw
}

/// Table entries sorted by position: without toml's `preserve_order` the map is sorted by key.
fn in_file_order<'i>(
    table: DeTable<'i>,
) -> Vec<(Spanned<toml::de::DeString<'i>>, Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Deserializes one table-valued section.
fn section<T: for<'de> Deserialize<'de>>(
    path: &str,
    value: Spanned<DeValue<'_>>,
    diag: &mut Diag<'_>,
) -> Option<T> {
    if !value.get_ref().is_table() {
        let header = format!("expected a table ([{path}])");
        diag.error(path, Some(value.span()), header);
        return None;
    }
    let copy = value.clone();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            let pos = error.span().map_or(copy.span().start, |s| s.start);
            let key = locate(&copy, path, pos).unwrap_or_else(|| path.to_owned());
            diag.error(
                key,
                Some(error.span().unwrap_or(copy.span())),
                error.message(),
            );
            None
        }
    }
}

/// `[section.<name>]` tables, in file order.
fn named<T: for<'de> Deserialize<'de>>(
    section_name: &str,
    value: Spanned<DeValue<'_>>,
    diag: &mut Diag<'_>,
) -> Vec<Named<T>> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        diag.error(
            section_name,
            Some(span),
            format!("expected tables like [{section_name}.name]"),
        );
        return Vec::new();
    };
    in_file_order(table)
        .into_iter()
        .filter_map(|(key, value)| {
            let path = format!("{section_name}.{}", key.get_ref());
            let raw = self::section(&path, value, diag)?;
            let name = Spanned::new(key.span(), key.into_inner().into_owned());
            Some(Named { name, raw })
        })
        .collect()
}

/// `[[routes]]`, each deserialized on its own.
fn routes(value: Spanned<DeValue<'_>>, diag: &mut Diag<'_>) -> Vec<(usize, Spanned<RawRoute>)> {
    let span = value.span();
    let DeValue::Array(array) = value.into_inner() else {
        diag.error(
            "routes",
            Some(span),
            "expected an array of tables ([[routes]])",
        );
        return Vec::new();
    };
    array
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            let item_span = item.span();
            let route = section(&format!("routes[{index}]"), item.clone(), diag)?;
            Some((index, Spanned::new(item_span, route)))
        })
        .collect()
}

/// The dotted path of the deepest key or value in `value` that covers byte `pos`.
pub(crate) fn locate(value: &Spanned<DeValue<'_>>, path: &str, pos: usize) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(table) => {
            for (key, child) in table {
                let child_path = format!("{path}.{}", key.get_ref());
                if covers(&key.span(), pos) {
                    return Some(child_path);
                }
                if let Some(found) = locate(child, &child_path, pos) {
                    return Some(found);
                }
            }
        }
        DeValue::Array(array) => {
            for (index, child) in array.iter().enumerate() {
                if let Some(found) = locate(child, &format!("{path}[{index}]"), pos) {
                    return Some(found);
                }
            }
        }
        _ => {}
    }
    covers(&value.span(), pos).then(|| path.to_owned())
}

/// Whether `span` contains `pos`; an empty span covers its start.
fn covers(span: &std::ops::Range<usize>, pos: usize) -> bool {
    span.start <= pos && pos < span.end.max(span.start + 1)
}
