//! Validation of `[upstreams.<name>]` and `[[routes]]`: replica addresses, route matching keys,
//! actions and header edits.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use http::{HeaderName, StatusCode};
use toml::Spanned;

use super::fields::{Ctx, is_host_name};
use super::model::{
    Action, HeaderEdits, HostMatch, ReplicaAddr, Route, RouteTimeouts, Server, Upstream,
};
use super::raw::{Named, RawHeaderEdits, RawRedirect, RawRoute, RawRouteTimeouts, RawUpstream};
use super::validate_limits::route_limits;
use super::validate_static::static_action;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Request headers the gateway writes itself (forwarding identity, framing, hop-by-hop): a
/// route editing them would either be overwritten or break the guarantees the gateway gives
/// upstreams about who the client is.
const REQUEST_CONTROLLED: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Response headers that carry framing or are hop-by-hop (RFC 9110 section 7.6.1): editing
/// them would corrupt the response stream.
const RESPONSE_CONTROLLED: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

pub(crate) fn upstreams(
    raw: &[Named<RawUpstream>],
    ctx: &mut Ctx<'_, '_>,
) -> BTreeMap<String, Upstream> {
    raw.iter()
        .map(|named| {
            let upstream = upstream(named, ctx);
            (upstream.name.clone(), upstream)
        })
        .collect()
}

fn upstream(named: &Named<RawUpstream>, ctx: &mut Ctx<'_, '_>) -> Upstream {
    let name = named.name.get_ref();
    let raw = &named.raw;
    let k = |field: &str| format!("upstreams.{name}.{field}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
    {
        let message = "upstream names use only a-z, 0-9, _ and -";
        ctx.diag.error(
            format!("upstreams.{name}"),
            Some(named.name.span()),
            message,
        );
    }
    let mut replicas: Vec<ReplicaAddr> = Vec::new();
    match &raw.replicas {
        None => {
            let message = "missing replicas (e.g. replicas = [\"127.0.0.1:8000\"])";
            ctx.diag.error(
                format!("upstreams.{name}"),
                Some(named.name.span()),
                message,
            );
        }
        Some(list) if list.get_ref().is_empty() => {
            ctx.diag.error(
                k("replicas"),
                Some(list.span()),
                "needs at least one replica",
            );
        }
        Some(list) => {
            for (i, item) in list.get_ref().iter().enumerate() {
                let key = format!("{}[{i}]", k("replicas"));
                let Some(replica) = replica(&key, item, ctx) else {
                    continue;
                };
                if replicas
                    .iter()
                    .any(|r| r.host == replica.host && r.port == replica.port)
                {
                    let message = format!("duplicate replica {:?}", item.get_ref().addr);
                    ctx.diag.error(key, Some(item.span()), message);
                } else {
                    replicas.push(replica);
                }
            }
        }
    }
    let b = super::validate_upstream::balancing(name, raw, ctx);
    Upstream {
        name: name.clone(),
        replicas,
        policy: b.policy,
        slow_start: b.slow_start,
        seed: b.seed,
        health: b.health,
        outlier: b.outlier,
        retry_buffer: b.retry_buffer,
        retry_budget_percent: b.retry_budget_percent,
        retry_budget_min: b.retry_budget_min,
        fail_open: b.fail_open,
        dns_refresh: b.dns_refresh,
        nameserver: b.nameserver,
        max_connections: ctx.int(
            &k("max_connections"),
            &raw.max_connections,
            256,
            1..=1_000_000,
        ),
        queue_timeout: ctx.duration(
            &k("queue_timeout"),
            &raw.queue_timeout,
            Duration::from_secs(1),
            true,
        ),
        idle_timeout: ctx.duration(
            &k("idle_timeout"),
            &raw.idle_timeout,
            Duration::from_secs(4),
            false,
        ),
        // At least 8 KiB, as for request heads: below that, ordinary heads (cookies) fail.
        max_response_header: usize::try_from(ctx.size(
            &k("max_response_header"),
            &raw.max_response_header,
            64 * KIB,
            8 * KIB..=MIB,
        ))
        .unwrap_or(usize::MAX),
    }
}

fn replica(
    key: &str,
    item: &Spanned<super::raw::RawReplica>,
    ctx: &mut Ctx<'_, '_>,
) -> Option<ReplicaAddr> {
    let raw = item.get_ref();
    let weight = match raw.weight {
        None => 1,
        Some(w) if (1..=1000).contains(&w) => u32::try_from(w).unwrap_or(1),
        Some(w) => {
            let message = format!("weight must be between 1 and 1000, got {w}");
            ctx.diag
                .error(format!("{key}.weight"), Some(item.span()), message);
            1
        }
    };
    match parse_host_port(&raw.addr) {
        Ok((host, port)) => Some(ReplicaAddr { host, port, weight }),
        Err(message) => {
            ctx.diag.error(key, Some(item.span()), message);
            None
        }
    }
}

/// `host:port` where host is an IPv4 literal, a bracketed IPv6 literal or a DNS name. The host
/// is returned lower-case, IPv6 without brackets (ready for a resolver).
pub(crate) fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("invalid replica address {text:?}: {why}");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected [IPv6]:port"))?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad("invalid IPv6 address"))?;
        (ip.to_string(), port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        if host.contains(':') {
            return Err(bad("IPv6 addresses need brackets, e.g. \"[::1]:8000\""));
        }
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let host = host.to_ascii_lowercase();
        let looks_numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if looks_numeric && host.parse::<Ipv4Addr>().is_err() {
            return Err(bad("invalid IPv4 address"));
        }
        if !is_host_name(&host) {
            return Err(bad("invalid host name"));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok((host, port)),
        _ => Err(bad("port must be between 1 and 65535")),
    }
}

pub(crate) fn routes(
    raw: &[(usize, Spanned<RawRoute>)],
    upstreams: &BTreeMap<String, Upstream>,
    declared_limits: &[String],
    server: &Server,
    defaults: &RouteTimeouts,
    ctx: &mut Ctx<'_, '_>,
) -> Vec<Route> {
    let mut routes: Vec<(usize, Route)> = Vec::new();
    for (index, spanned) in raw {
        let base = format!("routes[{index}]");
        let Some(route) = route(
            &base,
            spanned,
            upstreams,
            declared_limits,
            server,
            defaults,
            ctx,
        ) else {
            continue;
        };
        let same_match = routes
            .iter()
            .find(|(_, r)| r.host == route.host && r.path == route.path);
        if let Some((other, _)) = same_match {
            let message = format!("routes[{other}] already matches the same host and path");
            ctx.diag.error(base, Some(spanned.span()), message);
            continue;
        }
        if let Some((other, _)) = routes.iter().find(|(_, r)| r.name == route.name) {
            let message = format!(
                "duplicate route name {:?} (also routes[{other}])",
                route.name
            );
            let span = spanned
                .get_ref()
                .name
                .as_ref()
                .map_or(spanned.span(), Spanned::span);
            ctx.diag.error(format!("{base}.name"), Some(span), message);
            continue;
        }
        routes.push((*index, route));
    }
    routes.into_iter().map(|(_, r)| r).collect()
}

fn route(
    base: &str,
    spanned: &Spanned<RawRoute>,
    upstreams: &BTreeMap<String, Upstream>,
    declared_limits: &[String],
    server: &Server,
    defaults: &RouteTimeouts,
    ctx: &mut Ctx<'_, '_>,
) -> Option<Route> {
    let raw = spanned.get_ref();
    let k = |field: &str| format!("{base}.{field}");
    let errors_before = ctx.diag.error_count();

    let host = raw.host.as_ref().and_then(|h| {
        host_match(h.get_ref())
            .map_err(|message| ctx.diag.error(k("host"), Some(h.span()), message))
            .ok()
    });
    let path = match &raw.path {
        None => "/".to_owned(),
        Some(p) => normalize_path(p.get_ref()).unwrap_or_else(|message| {
            ctx.diag.error(k("path"), Some(p.span()), message);
            p.get_ref().clone()
        }),
    };
    let action = match (&raw.upstream, &raw.redirect, &raw.static_files) {
        (None, None, None) => {
            let message = "needs an action: upstream = \"<name>\", redirect = { to = \"...\" } \
                           or static = { root = \"...\" }";
            ctx.diag.error(base, Some(spanned.span()), message);
            None
        }
        (Some(name), None, None) => proxy_action(&k("upstream"), name, upstreams, ctx),
        (None, Some(redirect), None) => redirect_action(&k("redirect"), redirect, ctx),
        (None, None, Some(files)) => static_action(&k("static"), files, ctx),
        (_, redirect, files) => {
            let (field, span) = match (redirect, files) {
                (Some(r), _) => ("redirect", r.span()),
                (None, Some(f)) => ("static", f.span()),
                (None, None) => ("upstream", spanned.span()),
            };
            let message = "set only one of upstream, redirect and static";
            ctx.diag.error(k(field), Some(span), message);
            None
        }
    };

    if let Some(compress) = raw.compress.as_ref().filter(|_| raw.upstream.is_none()) {
        let message = "compress applies to upstream routes (static routes use static.compress)";
        ctx.diag
            .error(k("compress"), Some(compress.span()), message);
    }

    let request_headers = header_edits(&k("request_headers"), &raw.request_headers, true, ctx);
    let response_headers = header_edits(&k("response_headers"), &raw.response_headers, false, ctx);
    let allow = ctx.nets(&k("allow"), &raw.allow);
    let deny = ctx.nets(&k("deny"), &raw.deny);
    let timeouts = route_timeouts(&k("timeouts"), raw.timeouts.as_ref(), defaults, ctx);
    let max_body = ctx.size(&k("max_body"), &raw.max_body, server.max_body, 0..=u64::MAX);
    let idempotent_methods = super::validate_upstream::idempotent_methods(
        &k("idempotent_methods"),
        &raw.idempotent_methods,
        ctx,
    );
    let upstream_host = raw
        .upstream_host
        .as_ref()
        .and_then(|v| ctx.header_value(&k("upstream_host"), v));
    let rate_limits = route_limits(&k("rate_limits"), &raw.rate_limits, declared_limits, ctx);
    let name = match &raw.name {
        Some(name) if name.get_ref().is_empty() => {
            ctx.diag
                .error(k("name"), Some(name.span()), "must not be empty");
            String::new()
        }
        Some(name) => name.get_ref().clone(),
        None => format!(
            "{}{path}",
            raw.host
                .as_ref()
                .map_or("*".to_owned(), |h| h.get_ref().to_ascii_lowercase())
        ),
    };
    if ctx.diag.error_count() != errors_before {
        return None;
    }
    Some(Route {
        name,
        host,
        path,
        strip_prefix: ctx.bool(&raw.strip_prefix, false),
        action: action?,
        request_headers,
        response_headers,
        allow,
        deny,
        timeouts,
        max_body,
        upstream_host,
        access_log: ctx.bool(&raw.access_log, true),
        compress: ctx.bool(&raw.compress, false),
        rate_limits,
        idempotent_methods,
    })
}

/// Exact host, or `*.example.com` stored as `Wildcard(".example.com")`.
pub(crate) fn host_match(host: &str) -> Result<HostMatch, String> {
    let lower = host.to_ascii_lowercase();
    if lower.ends_with('.') {
        return Err(format!("host {host:?} must not end with a dot"));
    }
    if lower.contains(':') {
        return Err(format!(
            "host {host:?} must not include a port (routes match any port)"
        ));
    }
    if lower == "*" {
        return Err("to match any host, leave host out".to_owned());
    }
    if let Some(suffix) = lower.strip_prefix("*.") {
        if is_host_name(suffix) {
            return Ok(HostMatch::Wildcard(format!(".{suffix}")));
        }
    } else if is_host_name(&lower) {
        return Ok(HostMatch::Exact(lower));
    }
    Err(format!(
        "invalid host {host:?}: expected a host name like \"app.example.com\" or \"*.example.com\""
    ))
}

/// Must start with `/`; no `//`, `.` or `..` segments, query or fragment; trailing `/` removed.
pub(crate) fn normalize_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with \"/\""));
    }
    if path.contains("//") {
        return Err(format!("path {path:?} must not contain \"//\""));
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "path {path:?} must not contain \".\" or \"..\" segments"
        ));
    }
    if path
        .chars()
        .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "path {path:?} must not contain spaces, control characters, \"?\" or \"#\""
        ));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

fn proxy_action(
    key: &str,
    name: &Spanned<String>,
    upstreams: &BTreeMap<String, Upstream>,
    ctx: &mut Ctx<'_, '_>,
) -> Option<Action> {
    if upstreams.contains_key(name.get_ref()) {
        return Some(Action::Proxy {
            upstream: name.get_ref().clone(),
        });
    }
    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    let hint = if known.is_empty() {
        "no [upstreams.<name>] are defined".to_owned()
    } else {
        format!("known: {}", known.join(", "))
    };
    let message = format!("unknown upstream {:?} ({hint})", name.get_ref());
    ctx.diag.error(key, Some(name.span()), message);
    None
}

fn redirect_action(
    key: &str,
    redirect: &Spanned<RawRedirect>,
    ctx: &mut Ctx<'_, '_>,
) -> Option<Action> {
    let raw = redirect.get_ref();
    let Some(to) = &raw.to else {
        let message = "missing to (the target, e.g. \"https://example.com\")";
        ctx.diag.error(key, Some(redirect.span()), message);
        return None;
    };
    let target = to.get_ref();
    let absolute = ["https://", "http://", "/"]
        .iter()
        .any(|p| target.starts_with(p));
    if !absolute || http::HeaderValue::from_str(target).is_err() {
        let message = format!(
            "invalid redirect target {target:?}: expected \"https://...\", \"http://...\" or \"/path\""
        );
        ctx.diag
            .error(format!("{key}.to"), Some(to.span()), message);
        return None;
    }
    let status = match &raw.status {
        None => StatusCode::PERMANENT_REDIRECT,
        Some(s) => match *s.get_ref() {
            code @ (301 | 302 | 303 | 307 | 308) => u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::PERMANENT_REDIRECT),
            other => {
                let message = format!("status must be 301, 302, 303, 307 or 308, got {other}");
                ctx.diag
                    .error(format!("{key}.status"), Some(s.span()), message);
                return None;
            }
        },
    };
    Some(Action::Redirect {
        to: target.clone(),
        status,
        preserve_path: ctx.bool(&raw.preserve_path, false),
    })
}

fn header_edits(
    key: &str,
    raw: &Option<RawHeaderEdits>,
    request: bool,
    ctx: &mut Ctx<'_, '_>,
) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    let Some(raw) = raw else { return edits };
    let mut set: Vec<_> = raw.set.iter().flatten().collect();
    set.sort_by_key(|(name, _)| name.span().start);
    for (name, value) in set {
        let item_key = format!("{key}.set[{:?}]", name.get_ref());
        let Some(header) = header_name(&item_key, name, request, ctx) else {
            continue;
        };
        if edits.set.iter().any(|(existing, _)| *existing == header) {
            let message = format!(
                "{:?} is set twice (header names ignore case)",
                name.get_ref()
            );
            ctx.diag.error(item_key, Some(name.span()), message);
            continue;
        }
        if let Some(value) = ctx.header_value(&item_key, value) {
            edits.set.push((header, value));
        }
    }
    for (i, name) in raw.remove.iter().flatten().enumerate() {
        let item_key = format!("{key}.remove[{i}]");
        if let Some(header) = header_name(&item_key, name, request, ctx) {
            edits.remove.push(header);
        }
    }
    edits
}

fn header_name(
    key: &str,
    name: &Spanned<String>,
    request: bool,
    ctx: &mut Ctx<'_, '_>,
) -> Option<HeaderName> {
    let Ok(header) = HeaderName::from_bytes(name.get_ref().as_bytes()) else {
        let message = format!("invalid header name {:?}", name.get_ref());
        ctx.diag.error(key, Some(name.span()), message);
        return None;
    };
    let lower = header.as_str();
    let controlled = if request {
        REQUEST_CONTROLLED.contains(&lower) || lower.starts_with("x-forwarded-")
    } else {
        RESPONSE_CONTROLLED.contains(&lower)
    };
    if controlled {
        let mut message =
            format!("the gateway controls {lower:?}; it cannot be set or removed here");
        if lower == "host" {
            message.push_str(" (use upstream_host to change the Host sent upstream)");
        }
        ctx.diag.error(key, Some(name.span()), message);
        return None;
    }
    Some(header)
}

fn route_timeouts(
    key: &str,
    raw: Option<&RawRouteTimeouts>,
    defaults: &RouteTimeouts,
    ctx: &mut Ctx<'_, '_>,
) -> RouteTimeouts {
    let Some(raw) = raw else { return *defaults };
    let k = |field: &str| format!("{key}.{field}");
    RouteTimeouts {
        client_body_idle: ctx.duration_or_off(
            &k("client_body_idle"),
            &raw.client_body_idle,
            defaults.client_body_idle,
        ),
        upstream_connect: ctx.duration_or_off(
            &k("upstream_connect"),
            &raw.upstream_connect,
            defaults.upstream_connect,
        ),
        upstream_header: ctx.duration_or_off(
            &k("upstream_header"),
            &raw.upstream_header,
            defaults.upstream_header,
        ),
        upstream_body_idle: ctx.duration_or_off(
            &k("upstream_body_idle"),
            &raw.upstream_body_idle,
            defaults.upstream_body_idle,
        ),
        tunnel_idle: ctx.duration_or_off(&k("tunnel_idle"), &raw.tunnel_idle, defaults.tunnel_idle),
    }
}
