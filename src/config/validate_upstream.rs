//! Validation of an upstream's balancing settings: policy, probes, passive health, retries and
//! DNS discovery; and of a route's extra idempotent methods.

use std::time::Duration;

use http::{HeaderName, Method};

use super::fields::Ctx;
use super::model::{HashOn, Health, HealthMode, Outlier, Policy, Startup};
use super::raw::{List, RawHealth, RawOutlier, RawStartup, RawUpstream};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// An upstream's balancing settings, validated; copied into [`super::model::Upstream`].
pub(crate) struct Balancing {
    pub(crate) policy: Policy,
    pub(crate) slow_start: Option<Duration>,
    pub(crate) seed: Option<u64>,
    pub(crate) health: Health,
    pub(crate) outlier: Outlier,
    pub(crate) retry_buffer: u64,
    pub(crate) retry_budget_percent: u32,
    pub(crate) retry_budget_min: u32,
    pub(crate) fail_open: bool,
    pub(crate) dns_refresh: Duration,
    pub(crate) nameserver: Option<std::net::SocketAddr>,
}

/// Checks the balancing keys of `[upstreams.<name>]`.
pub(crate) fn balancing(name: &str, raw: &RawUpstream, ctx: &mut Ctx<'_, '_>) -> Balancing {
    let k = |field: &str| format!("upstreams.{name}.{field}");
    let hash_on = raw.hash_on.as_ref().and_then(|v| {
        let parsed = parse_hash_on(v.get_ref());
        if let Err(message) = &parsed {
            ctx.diag
                .error(k("hash_on"), Some(v.span()), message.clone());
        }
        parsed.ok()
    });
    let policy = match raw
        .policy
        .as_ref()
        .map(|p| (p.get_ref().as_str(), p.span()))
    {
        // hash_on alone says what is meant.
        None if hash_on.is_some() => Policy::Hash(hash_on.clone().unwrap_or(HashOn::ClientIp)),
        None | Some(("p2c_ewma", _)) => Policy::P2cEwma,
        Some(("round_robin", _)) => Policy::RoundRobin,
        Some(("least_conn", _)) => Policy::LeastConn,
        // Without hash_on, requests stick by client address.
        Some(("hash", _)) => Policy::Hash(hash_on.clone().unwrap_or(HashOn::ClientIp)),
        Some((other, span)) => {
            let message = format!(
                "unknown policy {other:?}; expected \"p2c_ewma\", \"round_robin\", \"least_conn\" or \"hash\""
            );
            ctx.diag.error(k("policy"), Some(span), message);
            Policy::P2cEwma
        }
    };
    let nameserver = raw
        .nameserver
        .as_ref()
        .and_then(|v| ctx.addr(&k("nameserver"), v));
    Balancing {
        policy,
        slow_start: ctx.duration_or_off(&k("slow_start"), &raw.slow_start, None),
        seed: raw
            .seed
            .as_ref()
            .map(|_| ctx.int(&k("seed"), &raw.seed, 0u64, 0..=i64::MAX)),
        health: health(name, raw.health.as_ref(), ctx),
        outlier: outlier(name, raw.outlier.as_ref(), ctx),
        retry_buffer: ctx.size(
            &k("retry_buffer"),
            &raw.retry_buffer,
            64 * KIB,
            0..=16 * MIB,
        ),
        retry_budget_percent: ctx.int(
            &k("retry_budget_percent"),
            &raw.retry_budget_percent,
            20,
            0..=100,
        ),
        retry_budget_min: ctx.int(&k("retry_budget_min"), &raw.retry_budget_min, 3, 0..=10_000),
        fail_open: ctx.bool(&raw.fail_open, false),
        dns_refresh: ctx.duration(
            &k("dns_refresh"),
            &raw.dns_refresh,
            Duration::from_secs(5),
            false,
        ),
        nameserver,
    }
}

/// `header:<name>`, `cookie:<name>` or `client_ip`.
fn parse_hash_on(text: &str) -> Result<HashOn, String> {
    if text == "client_ip" {
        return Ok(HashOn::ClientIp);
    }
    if let Some(header) = text.strip_prefix("header:") {
        return HeaderName::try_from(header)
            .map(HashOn::Header)
            .map_err(|_| format!("invalid header name {header:?} in hash_on"));
    }
    if let Some(cookie) = text.strip_prefix("cookie:") {
        if !cookie.is_empty() && cookie.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
            return Ok(HashOn::Cookie(cookie.to_owned()));
        }
        return Err(format!("invalid cookie name {cookie:?} in hash_on"));
    }
    Err(format!(
        "invalid hash_on {text:?}; expected \"header:<name>\", \"cookie:<name>\" or \"client_ip\""
    ))
}

fn health(name: &str, raw: Option<&RawHealth>, ctx: &mut Ctx<'_, '_>) -> Health {
    let default = RawHealth::default();
    let raw = raw.unwrap_or(&default);
    let k = |field: &str| format!("upstreams.{name}.health.{field}");
    let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("active", _)) => HealthMode::Active,
        Some(("off", _)) => HealthMode::Off,
        Some((other, span)) => {
            let message = format!("unknown mode {other:?}; expected \"active\" or \"off\"");
            ctx.diag.error(k("mode"), Some(span), message);
            HealthMode::Active
        }
    };
    let mut path = |field: &str, value: &super::raw::Field<String>, default: &str| {
        let Some(v) = value else {
            return default.to_owned();
        };
        let p = v.get_ref();
        if !p.starts_with('/') || p.bytes().any(|b| !b.is_ascii_graphic()) {
            let message = format!("probe path must start with / and hold no spaces, got {p:?}");
            ctx.diag.error(k(field), Some(v.span()), message);
            return default.to_owned();
        }
        p.clone()
    };
    let live_path = path("live_path", &raw.live_path, "/health/live");
    let ready_path = path("ready_path", &raw.ready_path, "/health/ready");
    let expected_status = match &raw.expected_status {
        None => (200, 399),
        Some(v) => parse_status_range(v.get_ref()).unwrap_or_else(|message| {
            ctx.diag
                .error(k("expected_status"), Some(v.span()), message);
            (200, 399)
        }),
    };
    let host = raw
        .host
        .as_ref()
        .and_then(|v| ctx.header_value(&k("host"), v));
    Health {
        mode,
        live_path,
        ready_path,
        interval: ctx.duration(&k("interval"), &raw.interval, Duration::from_secs(5), false),
        timeout: ctx.duration(&k("timeout"), &raw.timeout, Duration::from_secs(1), false),
        expected_status,
        rise: ctx.int(&k("rise"), &raw.rise, 2, 1..=100),
        fall: ctx.int(&k("fall"), &raw.fall, 2, 1..=100),
        host,
        start_ready: ctx.bool(&raw.start_ready, false),
    }
}

/// `"200"` or `"200-399"`, statuses 100 to 599.
fn parse_status_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expected a status or a range like \"200-399\", got {text:?}");
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn outlier(name: &str, raw: Option<&RawOutlier>, ctx: &mut Ctx<'_, '_>) -> Outlier {
    let default = RawOutlier::default();
    let raw = raw.unwrap_or(&default);
    let k = |field: &str| format!("upstreams.{name}.outlier.{field}");
    let base_ejection = ctx.duration(
        &k("base_ejection"),
        &raw.base_ejection,
        Duration::from_secs(10),
        false,
    );
    let max_ejection = ctx.duration(
        &k("max_ejection"),
        &raw.max_ejection,
        Duration::from_secs(300),
        false,
    );
    Outlier {
        consecutive_failures: ctx.int(
            &k("consecutive_failures"),
            &raw.consecutive_failures,
            5,
            1..=10_000,
        ),
        base_ejection,
        // A cap below the first ejection would make the backoff shrink; use the base instead.
        max_ejection: max_ejection.max(base_ejection),
        max_ejected_percent: ctx.int(
            &k("max_ejected_percent"),
            &raw.max_ejected_percent,
            50,
            0..=100,
        ),
        count_5xx: ctx.bool(&raw.count_5xx, false),
    }
}

/// `[startup]`
pub(crate) fn startup(raw: &RawStartup, ctx: &mut Ctx<'_, '_>) -> Startup {
    Startup {
        probe_timeout: ctx.duration(
            "startup.probe_timeout",
            &raw.probe_timeout,
            Duration::from_secs(10),
            true,
        ),
    }
}

/// A route's `idempotent_methods`: method tokens, upper-cased.
pub(crate) fn idempotent_methods(key: &str, list: &List, ctx: &mut Ctx<'_, '_>) -> Vec<Method> {
    let mut methods = Vec::new();
    for (i, item) in list.iter().flatten().enumerate() {
        match Method::from_bytes(item.get_ref().to_ascii_uppercase().as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => {
                let message = format!("invalid method {:?}", item.get_ref());
                ctx.diag
                    .error(format!("{key}[{i}]"), Some(item.span()), message);
            }
        }
    }
    methods
}

#[cfg(test)]
mod tests {
    use super::{parse_hash_on, parse_status_range};
    use crate::config::HashOn;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200-399"), Ok((200, 399)));
        assert_eq!(parse_status_range("204"), Ok((204, 204)));
        assert!(parse_status_range("399-200").is_err());
        assert!(parse_status_range("2xx").is_err());
        assert!(parse_status_range("600").is_err());
    }

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_on("client_ip"), Ok(HashOn::ClientIp));
        assert_eq!(
            parse_hash_on("header:X-User"),
            Ok(HashOn::Header(http::HeaderName::from_static("x-user")))
        );
        assert_eq!(
            parse_hash_on("cookie:session"),
            Ok(HashOn::Cookie("session".into()))
        );
        assert!(parse_hash_on("cookie:").is_err());
        assert!(parse_hash_on("header:bad name").is_err());
        assert!(parse_hash_on("ip").is_err());
    }
}
