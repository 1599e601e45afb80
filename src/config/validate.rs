//! Raw file types -> validated [`Config`]: defaults applied, every value checked, every problem
//! recorded (a bad value is replaced by its default so that checking can go on).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::fields::{Ctx, is_host_name};
use super::model::{
    Admin, CertificateFiles, ClientIpHeader, Config, Hsts, Http2, Listener, Log, LogFormat,
    Metrics, Probe, Reload, RouteTimeouts, Server, Shutdown, Timeouts, Tls,
};
use super::raw::{
    Named, RawAdmin, RawConfig, RawHsts, RawHttp2, RawListener, RawLog, RawMetrics, RawProbe,
    RawReload, RawServer, RawShutdown, RawTimeouts, RawTls,
};
use super::validate_acme::acme;
use super::validate_limits::{rate_limits, redis};
use super::validate_routes::{routes, upstreams};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Builds the validated config. Errors are recorded in `ctx`; the returned value is only
/// meaningful when none were.
pub(crate) fn validate(raw: RawConfig, ctx: &mut Ctx<'_, '_>) -> Config {
    let mut bound = Vec::new();
    let listeners: Vec<Listener> = raw
        .listeners
        .iter()
        .filter_map(|named| listener(named, ctx, &mut bound))
        .collect();
    if !raw.listeners_declared {
        ctx.diag.error(
            "listeners",
            None,
            "no listeners configured (add a [listeners.<name>] table)",
        );
    }
    let admin = admin(&raw.admin.unwrap_or_default(), ctx, &mut bound);
    let probe = raw.probe.and_then(|p| probe(&p, ctx, &mut bound));
    check_address_clashes(&bound, ctx);

    let server = server(&raw.server.unwrap_or_default(), ctx);
    let timeouts = timeouts(&raw.timeouts.unwrap_or_default(), ctx);
    let upstreams = upstreams(&raw.upstreams, ctx);
    let redis = raw.redis.as_ref().and_then(|r| redis(r, ctx));
    let rate_limits = rate_limits(&raw.rate_limits, redis.as_ref(), ctx);
    let declared_limits: Vec<String> = raw
        .rate_limits
        .iter()
        .map(|named| named.name.get_ref().clone())
        .collect();
    let routes = routes(
        &raw.routes,
        &upstreams,
        &declared_limits,
        &server,
        &timeouts.route,
        ctx,
    );
    let acme = acme(&raw.acme.unwrap_or_default(), &listeners, ctx);
    Config {
        listeners,
        admin,
        probe,
        http2: http2(&raw.http2.unwrap_or_default(), ctx),
        tls: tls(&raw.tls.unwrap_or_default(), ctx),
        acme,
        hsts: raw.hsts.map(|h| hsts(&h, ctx)),
        log: log(&raw.log.unwrap_or_default(), ctx),
        metrics: metrics(&raw.metrics.unwrap_or_default(), ctx),
        shutdown: shutdown(&raw.shutdown.unwrap_or_default(), ctx),
        startup: super::validate_upstream::startup(&raw.startup.unwrap_or_default(), ctx),
        reload: reload(&raw.reload.unwrap_or_default(), ctx),
        server,
        timeouts,
        upstreams,
        rate_limits,
        redis,
        routes,
    }
}

/// An address some listener binds, for the clash check.
struct Bound {
    addr: SocketAddr,
    key: String,
    span: Range<usize>,
}

fn listener(
    named: &Named<RawListener>,
    ctx: &mut Ctx<'_, '_>,
    bound: &mut Vec<Bound>,
) -> Option<Listener> {
    let name = named.name.get_ref();
    let raw = &named.raw;
    let k = |field: &str| format!("listeners.{name}.{field}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
    {
        let message = "listener names use only a-z, 0-9 and _";
        ctx.diag.error(
            format!("listeners.{name}"),
            Some(named.name.span()),
            message,
        );
    }
    let Some(listen) = &raw.listen else {
        let message = "missing listen (the address to bind, e.g. \"0.0.0.0:8080\")";
        ctx.diag.error(
            format!("listeners.{name}"),
            Some(named.name.span()),
            message,
        );
        return None;
    };
    let addr = ctx.addr(&k("listen"), listen)?;
    bound.push(Bound {
        addr,
        key: k("listen"),
        span: listen.span(),
    });

    let tls = ctx.bool(&raw.tls, false);
    if let Some(v6_only) = &raw.v6_only {
        if addr.is_ipv4() {
            let message = "v6_only only applies to IPv6 addresses; remove it";
            ctx.diag.error(k("v6_only"), Some(v6_only.span()), message);
        }
    }
    let redirect_https = ctx.bool(&raw.redirect_https, false);
    if let (true, true, Some(field)) = (tls, redirect_https, &raw.redirect_https) {
        let message = "redirect_https only applies to plain listeners; this one has tls = true";
        ctx.diag
            .error(k("redirect_https"), Some(field.span()), message);
    }
    let trusted_proxies = ctx.nets(&k("trusted_proxies"), &raw.trusted_proxies);
    let proxy_protocol = ctx.bool(&raw.proxy_protocol, false);
    if let (true, true, Some(field)) = (
        proxy_protocol,
        trusted_proxies.is_empty(),
        &raw.proxy_protocol,
    ) {
        let message =
            "proxy_protocol needs trusted_proxies: the peers allowed to send the PROXY header";
        ctx.diag
            .error(k("proxy_protocol"), Some(field.span()), message);
    }
    let client_ip_header = match &raw.client_ip_header {
        None => ClientIpHeader::XForwardedFor,
        Some(v) => match v.get_ref().as_str() {
            "x-forwarded-for" => ClientIpHeader::XForwardedFor,
            "forwarded" => ClientIpHeader::Forwarded,
            other => {
                let message = format!(
                    "unknown header {other:?}; expected \"x-forwarded-for\" or \"forwarded\""
                );
                ctx.diag
                    .error(k("client_ip_header"), Some(v.span()), message);
                ClientIpHeader::XForwardedFor
            }
        },
    };
    let https_port = raw
        .https_port
        .as_ref()
        .map(|_| ctx.int(&k("https_port"), &raw.https_port, 443u16, 1..=65535));
    Some(Listener {
        name: name.clone(),
        addr,
        v6_only: raw.v6_only.as_ref().map(|v| *v.get_ref()),
        tls,
        proxy_protocol,
        trusted_proxies,
        client_ip_header,
        redirect_https,
        https_port,
    })
}

fn admin(raw: &RawAdmin, ctx: &mut Ctx<'_, '_>, bound: &mut Vec<Bound>) -> Admin {
    let default_addr = SocketAddr::from(([127, 0, 0, 1], 9901));
    let addr = match &raw.listen {
        Some(listen) => {
            let addr = ctx.addr("admin.listen", listen).unwrap_or(default_addr);
            bound.push(Bound {
                addr,
                key: "admin.listen".into(),
                span: listen.span(),
            });
            addr
        }
        None => default_addr,
    };
    let mut hosts = Vec::new();
    for (i, host) in raw.hosts.iter().flatten().enumerate() {
        let lower = host.get_ref().to_ascii_lowercase();
        if is_host_name(&lower) || lower.parse::<std::net::IpAddr>().is_ok() {
            hosts.push(lower);
        } else {
            let message = format!(
                "invalid host {:?}: expected a host name or IP address, without port",
                host.get_ref()
            );
            ctx.diag
                .error(format!("admin.hosts[{i}]"), Some(host.span()), message);
        }
    }
    let token = raw.token.as_ref().map(|token| {
        let value = token.get_ref();
        let printable = !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic());
        if !printable {
            let message = "token must be non-empty printable ASCII without spaces";
            ctx.diag.error("admin.token", Some(token.span()), message);
        }
        value.clone()
    });
    Admin {
        addr,
        hosts,
        token,
        max_connections: ctx.int(
            "admin.max_connections",
            &raw.max_connections,
            64,
            1..=1_000_000,
        ),
    }
}

fn probe(raw: &RawProbe, ctx: &mut Ctx<'_, '_>, bound: &mut Vec<Bound>) -> Option<Probe> {
    let listen = raw.listen.as_ref()?;
    let addr = ctx.addr("probe.listen", listen)?;
    bound.push(Bound {
        addr,
        key: "probe.listen".into(),
        span: listen.span(),
    });
    Some(Probe {
        addr,
        metrics: ctx.bool(&raw.metrics, false),
        max_connections: ctx.int(
            "probe.max_connections",
            &raw.max_connections,
            64,
            1..=1_000_000,
        ),
    })
}

/// Two sockets on one address cannot both bind. Port 0 (pick any) never clashes.
fn check_address_clashes(bound: &[Bound], ctx: &mut Ctx<'_, '_>) {
    for (i, later) in bound.iter().enumerate() {
        let earlier = bound[..i]
            .iter()
            .find(|b| b.addr == later.addr && b.addr.port() != 0);
        if let Some(earlier) = earlier {
            let message = format!("address {} is also used by {}", later.addr, earlier.key);
            ctx.diag
                .error(later.key.clone(), Some(later.span.clone()), message);
        }
    }
}

fn server(raw: &RawServer, ctx: &mut Ctx<'_, '_>) -> Server {
    // Below 8 KiB, ordinary heads (cookies, long referrers) would be refused with 431.
    let max_request_header = ctx.size(
        "server.max_request_header",
        &raw.max_request_header,
        16 * KIB,
        8 * KIB..=MIB,
    );
    let server_header = raw
        .server_header
        .as_ref()
        .and_then(|v| ctx.header_value("server.server_header", v));
    Server {
        workers: ctx.int("server.workers", &raw.workers, 0, 0..=1024),
        max_request_header: to_usize(max_request_header),
        max_headers: ctx.int("server.max_headers", &raw.max_headers, 100, 1..=10_000),
        max_uri: to_usize(ctx.size("server.max_uri", &raw.max_uri, 8 * KIB, 1..=MIB)),
        max_body: ctx.size("server.max_body", &raw.max_body, 100 * MIB, 0..=u64::MAX),
        max_connections: ctx.int(
            "server.max_connections",
            &raw.max_connections,
            10_000,
            1..=10_000_000,
        ),
        max_connections_per_ip: ctx.int(
            "server.max_connections_per_ip",
            &raw.max_connections_per_ip,
            256,
            0..=10_000_000,
        ),
        max_requests_per_connection: ctx.int(
            "server.max_requests_per_connection",
            &raw.max_requests_per_connection,
            0,
            0..=i64::MAX,
        ),
        max_connection_age: ctx.duration_or_off(
            "server.max_connection_age",
            &raw.max_connection_age,
            None,
        ),
        allow_underscore_headers: ctx.bool(&raw.allow_underscore_headers, false),
        forwarded_header: ctx.bool(&raw.forwarded_header, false),
        server_header,
    }
}

fn timeouts(raw: &RawTimeouts, ctx: &mut Ctx<'_, '_>) -> Timeouts {
    let secs = Duration::from_secs;
    Timeouts {
        tls_handshake: ctx.duration(
            "timeouts.tls_handshake",
            &raw.tls_handshake,
            secs(10),
            false,
        ),
        request_header: ctx.duration(
            "timeouts.request_header",
            &raw.request_header,
            secs(10),
            false,
        ),
        keepalive_idle: ctx.duration(
            "timeouts.keepalive_idle",
            &raw.keepalive_idle,
            secs(60),
            false,
        ),
        route: RouteTimeouts {
            client_body_idle: ctx.duration_or_off(
                "timeouts.client_body_idle",
                &raw.client_body_idle,
                Some(secs(60)),
            ),
            upstream_connect: ctx.duration_or_off(
                "timeouts.upstream_connect",
                &raw.upstream_connect,
                Some(secs(5)),
            ),
            upstream_header: ctx.duration_or_off(
                "timeouts.upstream_header",
                &raw.upstream_header,
                Some(secs(60)),
            ),
            upstream_body_idle: ctx.duration_or_off(
                "timeouts.upstream_body_idle",
                &raw.upstream_body_idle,
                Some(secs(60)),
            ),
            tunnel_idle: ctx.duration_or_off(
                "timeouts.tunnel_idle",
                &raw.tunnel_idle,
                Some(secs(3600)),
            ),
        },
    }
}

fn http2(raw: &RawHttp2, ctx: &mut Ctx<'_, '_>) -> Http2 {
    let max_header_list_size = ctx.size(
        "http2.max_header_list_size",
        &raw.max_header_list_size,
        16 * KIB,
        1..=u64::from(u32::MAX),
    );
    Http2 {
        max_concurrent_streams: ctx.int(
            "http2.max_concurrent_streams",
            &raw.max_concurrent_streams,
            128,
            1..=i64::from(u32::MAX),
        ),
        max_header_list_size: u32::try_from(max_header_list_size).unwrap_or(u32::MAX),
        max_pending_accept_reset_streams: ctx.int(
            "http2.max_pending_accept_reset_streams",
            &raw.max_pending_accept_reset_streams,
            20,
            1..=1_000_000,
        ),
        max_local_error_reset_streams: ctx.int(
            "http2.max_local_error_reset_streams",
            &raw.max_local_error_reset_streams,
            1024,
            1..=1_000_000,
        ),
        keepalive_interval: ctx.duration_or_off(
            "http2.keepalive_interval",
            &raw.keepalive_interval,
            Some(Duration::from_secs(30)),
        ),
        keepalive_timeout: ctx.duration(
            "http2.keepalive_timeout",
            &raw.keepalive_timeout,
            Duration::from_secs(10),
            false,
        ),
    }
}

fn tls(raw: &RawTls, ctx: &mut Ctx<'_, '_>) -> Tls {
    let self_signed_dir = match &raw.self_signed_dir {
        Some(dir) if dir.get_ref().is_empty() => {
            ctx.diag
                .error("tls.self_signed_dir", Some(dir.span()), "must not be empty");
            ctx.base_dir.join("certs")
        }
        Some(dir) => ctx.base_dir.join(dir.get_ref()),
        None => ctx.base_dir.join("certs"),
    };
    let mut certificates = Vec::new();
    let mut default_seen: Option<usize> = None;
    for (i, entry) in raw.certificates.iter().flatten().enumerate() {
        let base = format!("tls.certificates[{i}]");
        let cert = ctx.pem_file(&base, "cert", &entry.get_ref().cert, entry.span());
        let key = ctx.pem_file(&base, "key", &entry.get_ref().key, entry.span());
        let default = ctx.bool(&entry.get_ref().default, false);
        if default {
            if let (Some(first), Some(field)) = (default_seen, &entry.get_ref().default) {
                let message = format!(
                    "only one certificate can be the default; tls.certificates[{first}] already is"
                );
                ctx.diag
                    .error(format!("{base}.default"), Some(field.span()), message);
            }
            default_seen.get_or_insert(i);
        }
        if let (Some(cert), Some(key)) = (cert, key) {
            certificates.push(CertificateFiles { cert, key, default });
        }
    }
    Tls {
        certificates,
        self_signed_dir,
        session_cache_size: ctx.int(
            "tls.session_cache_size",
            &raw.session_cache_size,
            4096,
            1..=10_000_000,
        ),
        tickets: ctx.bool(&raw.tickets, true),
    }
}

fn hsts(raw: &RawHsts, ctx: &mut Ctx<'_, '_>) -> Hsts {
    let year = Duration::from_secs(365 * 86_400);
    let max_age = ctx.duration("hsts.max_age", &raw.max_age, year, true);
    let include_subdomains = ctx.bool(&raw.include_subdomains, false);
    let preload = ctx.bool(&raw.preload, false);
    if let (true, Some(field)) = (preload, &raw.preload) {
        if !include_subdomains || max_age < year {
            // The preload list rejects the domain otherwise (hstspreload.org requirements).
            let message =
                "preload needs include_subdomains = true and max_age of at least \"365d\"";
            ctx.diag.error("hsts.preload", Some(field.span()), message);
        }
    }
    Hsts {
        max_age,
        include_subdomains,
        preload,
    }
}

fn log(raw: &RawLog, ctx: &mut Ctx<'_, '_>) -> Log {
    let format = match &raw.format {
        None => LogFormat::Text,
        Some(v) => match v.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                let message = format!("unknown format {other:?}; expected \"text\" or \"json\"");
                ctx.diag.error("log.format", Some(v.span()), message);
                LogFormat::Text
            }
        },
    };
    let level = match &raw.level {
        None => "info".to_owned(),
        Some(v) => {
            let level = v.get_ref().trim();
            if level.is_empty() {
                ctx.diag.error(
                    "log.level",
                    Some(v.span()),
                    "must not be empty (e.g. \"info\")",
                );
            } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                let message = format!("invalid filter {level:?}: {e}");
                ctx.diag.error("log.level", Some(v.span()), message);
            }
            level.to_owned()
        }
    };
    Log {
        format,
        level,
        access_log: ctx.bool(&raw.access_log, true),
        log_query: ctx.bool(&raw.log_query, false),
        access_log_file: match &raw.access_log_file {
            Some(file) if file.get_ref().is_empty() => {
                ctx.diag.error(
                    "log.access_log_file",
                    Some(file.span()),
                    "must not be empty",
                );
                None
            }
            Some(file) => Some(ctx.base_dir.join(file.get_ref())),
            None => None,
        },
    }
}

fn metrics(raw: &RawMetrics, ctx: &mut Ctx<'_, '_>) -> Metrics {
    Metrics {
        enabled: ctx.bool(&raw.enabled, true),
    }
}

fn shutdown(raw: &RawShutdown, ctx: &mut Ctx<'_, '_>) -> Shutdown {
    let secs = Duration::from_secs;
    // Zero is legitimate for all three: no load balancer to wait for, or nothing to drain.
    Shutdown {
        propagation_delay: ctx.duration(
            "shutdown.propagation_delay",
            &raw.propagation_delay,
            secs(5),
            true,
        ),
        drain_timeout: ctx.duration("shutdown.drain_timeout", &raw.drain_timeout, secs(30), true),
        stream_timeout: ctx.duration(
            "shutdown.stream_timeout",
            &raw.stream_timeout,
            secs(10),
            true,
        ),
    }
}

fn reload(raw: &RawReload, ctx: &mut Ctx<'_, '_>) -> Reload {
    Reload {
        watch: ctx.bool(&raw.watch, true),
        // Zero is legitimate: close a removed route's WebSockets at once.
        removed_route_grace: ctx.duration(
            "reload.removed_route_grace",
            &raw.removed_route_grace,
            Duration::from_secs(30),
            true,
        ),
    }
}

fn to_usize(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
