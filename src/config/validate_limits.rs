//! Validation of `[rate_limits.<name>]`, `[redis]` and a route's `rate_limits` list.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::fields::Ctx;
use super::model::{LimitBackend, LimitKey, RateLimit, Redis, RedisFailure};
use super::raw::{List, Named, RawRateLimit, RawRedis};
use super::units::{DURATION_UNITS, parse_duration};
use crate::ratelimit::redact_url;

/// The smallest spacing between two requests a rate may ask for. Redis keeps time in
/// microseconds, and a faster rate is a misconfiguration rather than a limit.
const MIN_INTERVAL: Duration = Duration::from_micros(1);

pub(crate) fn rate_limits(
    raw: &[Named<RawRateLimit>],
    redis: Option<&Redis>,
    ctx: &mut Ctx<'_, '_>,
) -> BTreeMap<String, RateLimit> {
    raw.iter()
        .filter_map(|named| rate_limit(named, redis, ctx))
        .map(|limit| (limit.name.clone(), limit))
        .collect()
}

fn rate_limit(
    named: &Named<RawRateLimit>,
    redis: Option<&Redis>,
    ctx: &mut Ctx<'_, '_>,
) -> Option<RateLimit> {
    let name = named.name.get_ref();
    let raw = &named.raw;
    let k = |field: &str| format!("rate_limits.{name}.{field}");
    let errors_before = ctx.diag.error_count();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
    {
        let message = "rate limit names use only a-z, 0-9, _ and -";
        ctx.diag.error(
            format!("rate_limits.{name}"),
            Some(named.name.span()),
            message,
        );
    }
    let Some(rate_text) = &raw.rate else {
        let message = "missing rate (requests per window, e.g. rate = \"100/m\")";
        ctx.diag.error(
            format!("rate_limits.{name}"),
            Some(named.name.span()),
            message,
        );
        return None;
    };
    let (requests, window) = match parse_rate(rate_text.get_ref()) {
        Ok(rate) => rate,
        Err(message) => {
            ctx.diag.error(k("rate"), Some(rate_text.span()), message);
            (1, Duration::from_secs(1))
        }
    };
    let burst = ctx.int(&k("burst"), &raw.burst, requests, 1..=i64::from(u32::MAX));
    let key = raw.key.as_ref().map_or(Some(LimitKey::ClientIp), |v| {
        parse_key(v.get_ref())
            .map_err(|message| ctx.diag.error(k("key"), Some(v.span()), message))
            .ok()
    });
    let backend = match &raw.backend {
        None => LimitBackend::Local,
        Some(v) => match v.get_ref().as_str() {
            "local" => LimitBackend::Local,
            "redis" => {
                if redis.is_none() {
                    let message = "backend = \"redis\" needs a [redis] section with a url";
                    ctx.diag.error(k("backend"), Some(v.span()), message);
                }
                LimitBackend::Redis
            }
            other => {
                let message = format!("unknown backend {other:?}; expected \"local\" or \"redis\"");
                ctx.diag.error(k("backend"), Some(v.span()), message);
                LimitBackend::Local
            }
        },
    };
    let ipv6_prefix = ctx.int(&k("ipv6_prefix"), &raw.ipv6_prefix, 64, 48..=128);
    let max_keys = ctx.int(&k("max_keys"), &raw.max_keys, 1_000_000, 1..=100_000_000);
    let limit = RateLimit {
        name: name.clone(),
        requests,
        window,
        burst,
        key: key?,
        ipv6_prefix,
        max_keys,
        headers: ctx.bool(&raw.headers, false),
        backend,
    };
    (ctx.diag.error_count() == errors_before).then_some(limit)
}

/// `"<requests>/<window>"`: the window is a unit (`s`, `m`, `h`, `d`: one of it) or a
/// duration (`"10/30s"`).
pub(crate) fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let invalid = || {
        format!(
            "invalid rate {text:?}: write requests per window, e.g. \"100/m\", \"10/s\" or \"500/10m\" (units {DURATION_UNITS})"
        )
    };
    let (count, window) = text.trim().split_once('/').ok_or_else(invalid)?;
    let requests: u32 = count.trim().parse().map_err(|_| invalid())?;
    if requests == 0 {
        return Err(format!(
            "invalid rate {text:?}: requests must be at least 1"
        ));
    }
    let window = window.trim();
    let window = if window.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(window).map_err(|_| invalid())?
    } else {
        parse_duration(&format!("1{window}")).map_err(|_| invalid())?
    };
    if window.is_zero() {
        return Err(format!(
            "invalid rate {text:?}: the window must not be zero"
        ));
    }
    if window / requests < MIN_INTERVAL {
        return Err(format!(
            "rate {text:?} is too high: at most one request per microsecond"
        ));
    }
    Ok((requests, window))
}

/// `"client_ip"`, `"route"` or `"header:<name>"`.
pub(crate) fn parse_key(text: &str) -> Result<LimitKey, String> {
    match text {
        "client_ip" => Ok(LimitKey::ClientIp),
        "route" => Ok(LimitKey::Route),
        _ => match text.strip_prefix("header:") {
            Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                .map(LimitKey::Header)
                .map_err(|_| format!("invalid header name {name:?} in key {text:?}")),
            None => Err(format!(
                "unknown key {text:?}; expected \"client_ip\", \"route\" or \"header:<name>\" (e.g. \"header:X-Api-Key\")"
            )),
        },
    }
}

pub(crate) fn redis(raw: &RawRedis, ctx: &mut Ctx<'_, '_>) -> Option<Redis> {
    let Some(url) = &raw.url else {
        let message = "missing url (e.g. url = \"${REDIS_URL}\")";
        ctx.diag.error("redis", None, message);
        return None;
    };
    let text = url.get_ref();
    let scheme_ok = text.starts_with("redis://") || text.starts_with("rediss://");
    if !scheme_ok || redis::Client::open(text.as_str()).is_err() {
        let message = format!(
            "invalid Redis URL {:?}: expected redis://[user:password@]host[:port][/db] or rediss://...",
            redact_url(text)
        );
        ctx.diag.error("redis.url", Some(url.span()), message);
    }
    let failure = match &raw.failure {
        None => RedisFailure::FailOpen,
        Some(v) => match v.get_ref().as_str() {
            "fail_open" => RedisFailure::FailOpen,
            "fail_closed" => RedisFailure::FailClosed,
            other => {
                let message =
                    format!("unknown policy {other:?}; expected \"fail_open\" or \"fail_closed\"");
                ctx.diag.error("redis.failure", Some(v.span()), message);
                RedisFailure::FailOpen
            }
        },
    };
    Some(Redis {
        url: text.clone(),
        timeout: ctx.duration(
            "redis.timeout",
            &raw.timeout,
            Duration::from_millis(50),
            false,
        ),
        failure,
    })
}

/// A route's `rate_limits = ["per_ip", "global"]`: each name must be declared, once.
/// `declared` holds every `[rate_limits.<name>]` in the file, valid or not, so that a bad
/// definition is reported once, not again by every route using it.
pub(crate) fn route_limits(
    key: &str,
    list: &List,
    declared: &[String],
    ctx: &mut Ctx<'_, '_>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, item) in list.iter().flatten().enumerate() {
        let item_key = format!("{key}[{i}]");
        let name = item.get_ref();
        if names.contains(name) {
            let message = format!("rate limit {name:?} is listed twice");
            ctx.diag.error(item_key, Some(item.span()), message);
        } else if declared.contains(name) {
            names.push(name.clone());
        } else {
            unknown_limit(&item_key, item, declared, ctx);
        }
    }
    names
}

fn unknown_limit(key: &str, item: &Spanned<String>, declared: &[String], ctx: &mut Ctx<'_, '_>) {
    let mut known: Vec<&str> = declared.iter().map(String::as_str).collect();
    known.sort_unstable();
    let hint = if known.is_empty() {
        "no [rate_limits.<name>] are defined".to_owned()
    } else {
        format!("known: {}", known.join(", "))
    };
    let message = format!("unknown rate limit {:?} ({hint})", item.get_ref());
    ctx.diag.error(key, Some(item.span()), message);
}
