//! The immutable compiled state a request reads: router, upstreams, per-listener policy and
//! pre-built header values. A request loads it once (`ArcSwap::load_full`), so a reload swaps
//! it atomically without touching listeners or in-flight requests.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ClientIpHeader, Config, HeaderEdits, RouteTimeouts};
use crate::metrics::RouteMetrics;
use crate::ratelimit::{self, Limiter};
use crate::router::Router;
use crate::static_files::StaticSite;
use crate::upstream::dns::{self, Entry};
use crate::upstream::group::Upstream;
use crate::upstream::registry::Registry;

/// One generation of compiled config.
pub struct Snapshot {
    /// Increases by one per applied config.
    pub generation: u64,
    /// The validated config it was built from.
    pub config: Arc<Config>,
    /// Host + prefix -> route.
    pub router: Router<Arc<Route>>,
    /// Upstreams by name.
    pub upstreams: HashMap<Arc<str>, Arc<Upstream>>,
    /// Per data-plane listener, in config order (a connection holds its listener's index).
    pub listeners: Vec<ListenerPolicy>,
    /// `Strict-Transport-Security` value for HTTPS responses, when configured.
    pub hsts: Option<HeaderValue>,
    /// Counters of requests no route answered (404, HTTPS redirects, bad targets); `None`
    /// when `metrics.enabled = false`.
    pub unrouted: Option<Arc<RouteMetrics>>,
    /// Each route's life across snapshots, by identity. Only upgrades look here: a tunnel
    /// keeps its route's token, not the snapshot.
    pub route_lives: HashMap<RouteId, RouteLife>,
}

/// A route's identity across reloads: its name, what it matches and where it sends traffic.
/// Editing anything else (headers, timeouts, allow lists) keeps the identity, so the route's
/// WebSockets stay open; changing the host, path or upstream makes it a new route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(u64);

impl RouteId {
    fn of(route: &config::Route) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        route.name.hash(&mut h);
        match &route.host {
            None => 0u8.hash(&mut h),
            Some(config::HostMatch::Exact(host)) => (1u8, host).hash(&mut h),
            Some(config::HostMatch::Wildcard(suffix)) => (2u8, suffix).hash(&mut h),
        }
        route.path.hash(&mut h);
        match &route.action {
            config::Action::Proxy { upstream } => (0u8, upstream).hash(&mut h),
            config::Action::Redirect { to, .. } => (1u8, to).hash(&mut h),
            config::Action::Static(site) => (2u8, &site.root).hash(&mut h),
        }
        Self(h.finish())
    }
}

/// What outlives one snapshot of a route: the token its tunnels watch, cancelled once a
/// reload has removed the route and the grace period has passed.
#[derive(Debug, Clone)]
pub struct RouteLife {
    /// Route name, for logs.
    pub name: Arc<str>,
    /// Cancelled when the route is gone for good.
    pub removed: CancellationToken,
}

/// What a request needs to know about the listener it came in on. Rebuilt per snapshot, so a
/// reload can change trusted proxies without touching the socket.
pub struct ListenerPolicy {
    /// Listener name.
    pub name: Arc<str>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which chain header trusted peers use.
    pub client_ip_header: ClientIpHeader,
    /// Redirect known hosts to HTTPS (plain listeners only).
    pub redirect_https: Option<RedirectHttps>,
}

/// Where HTTPS redirects point.
pub struct RedirectHttps {
    /// `None` when it is 443 (omitted from the URL).
    pub port: Option<u16>,
}

/// A compiled route.
pub struct Route {
    /// Identity across reloads; keys [`Snapshot::route_lives`].
    pub id: RouteId,
    /// Name for logs and metrics.
    pub name: Arc<str>,
    /// Normalised path prefix.
    pub prefix: Box<str>,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// What it does.
    pub action: Action,
    /// Applied to the upstream request.
    pub request_headers: HeaderEdits,
    /// Applied to every response of this route.
    pub response_headers: HeaderEdits,
    /// Allowed client networks (empty: all).
    pub allow: Vec<IpNet>,
    /// Denied client networks (checked first).
    pub deny: Vec<IpNet>,
    /// Effective timeouts.
    pub timeouts: RouteTimeouts,
    /// Request body cap.
    pub max_body: u64,
    /// `Host` sent upstream instead of the request's authority.
    pub upstream_host: Option<HeaderValue>,
    /// Log requests to this route.
    pub access_log: bool,
    /// Compress proxied responses on the fly.
    pub compress: bool,
    /// Rate limits checked after allow/deny, in config order (from the limiter registry, so
    /// a rebuilt snapshot keeps their buckets).
    pub limits: Vec<Arc<Limiter>>,
    /// The route's bucket key for limits keyed by route: [`ratelimit::stable_hash`] of its name.
    pub limit_key: u64,
    /// Methods retried after sending besides GET, HEAD, OPTIONS, PUT, DELETE.
    pub idempotent_methods: Vec<http::Method>,
    /// Request counters, resolved here so a request only touches atomics; carried across
    /// snapshots by name. `None` when `metrics.enabled = false`.
    pub metrics: Option<Arc<RouteMetrics>>,
}

impl Route {
    /// Deny list first, then the allow list (empty allows everyone).
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// What a route does, with names resolved.
pub enum Action {
    /// Proxy to an upstream.
    Proxy(Arc<Upstream>),
    /// Redirect.
    Redirect {
        /// Target URL (prefix when `preserve_path`).
        to: Box<str>,
        /// 301, 302, 303, 307 or 308.
        status: StatusCode,
        /// Append the request's path and query.
        preserve_path: bool,
    },
    /// Serve files beneath a root (the path below the route's prefix).
    Static(Arc<StaticSite>),
}

/// Why a snapshot could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A replica's host name did not resolve.
    #[error("upstreams.{upstream}: cannot resolve {host}:{port}: {source}")]
    Resolve {
        /// Upstream name.
        upstream: String,
        /// Host as written.
        host: String,
        /// Port.
        port: u16,
        /// Resolver error.
        #[source]
        source: std::io::Error,
    },
    /// A static route's root could not be opened.
    #[error("{route}: cannot open static root {root}: {source}")]
    StaticRoot {
        /// Route name.
        route: String,
        /// The root directory.
        root: std::path::PathBuf,
        /// Open error.
        #[source]
        source: std::io::Error,
    },
}

impl Snapshot {
    /// Drains the replicas of `previous` that this snapshot no longer uses: no new requests,
    /// no connection reuse, in-flight requests finish. Call after storing this snapshot.
    pub fn retire_replaced(&self, previous: &Snapshot) {
        for old in previous.upstreams.values() {
            let kept = self.upstreams.get(&old.name);
            for replica in &old.members().replicas {
                let still_used = kept.is_some_and(|up| {
                    up.members()
                        .replicas
                        .iter()
                        .any(|r| Arc::ptr_eq(r, replica))
                });
                if !still_used {
                    replica.drain();
                }
            }
        }
    }
}

impl Snapshot {
    /// Compiles `config`, reusing replicas (pools, counters, health) from `registry` by
    /// identity and rate limiters from `limiters` by definition. Replica names are resolved
    /// now and then every `dns_refresh`; a name that does not resolve yet leaves its upstream
    /// without those replicas until it does.
    pub async fn build(
        config: Arc<Config>,
        registry: &Registry,
        limiters: &ratelimit::Registry,
        generation: u64,
    ) -> Result<Self, BuildError> {
        let connect = config.timeouts.route.upstream_connect;
        let mut upstreams = HashMap::new();
        for (name, up) in &config.upstreams {
            let state = registry.upstream(up);
            let mut entries = Vec::new();
            let mut replicas = Vec::new();
            for r in &up.replicas {
                let resolved = match dns::resolve(&r.host, r.port, up.nameserver).await {
                    Ok(addrs) => addrs,
                    Err(error) => {
                        tracing::warn!(upstream = %name, host = %r.host, %error, "cannot resolve replica; retrying every dns_refresh");
                        Vec::new()
                    }
                };
                for addr in &resolved {
                    replicas.push((registry.replica(&state, *addr, connect), r.weight));
                }
                entries.push(Entry {
                    addr: r.clone(),
                    resolved,
                });
            }
            let upstream = Arc::new(Upstream::new(state, replicas));
            dns::spawn_refresh(&upstream, registry.clone(), entries, connect);
            upstreams.insert(Arc::from(name.as_str()), upstream);
        }

        let mut router = Router::default();
        let mut route_lives = HashMap::with_capacity(config.routes.len());
        for r in &config.routes {
            let action = match &r.action {
                config::Action::Proxy { upstream } => {
                    // Validation guarantees the name exists.
                    let Some(up) = upstreams.get(upstream.as_str()) else {
                        continue;
                    };
                    Action::Proxy(Arc::clone(up))
                }
                config::Action::Redirect {
                    to,
                    status,
                    preserve_path,
                } => Action::Redirect {
                    to: to.as_str().into(),
                    status: *status,
                    preserve_path: *preserve_path,
                },
                config::Action::Static(files) => {
                    // Opening the root and reading its manifest touch the disk.
                    let files = files.clone();
                    let opened = tokio::task::spawn_blocking(move || {
                        let site = StaticSite::open(&files);
                        (site, files.root)
                    })
                    .await;
                    match opened {
                        Ok((Ok(site), _)) => Action::Static(Arc::new(site)),
                        Ok((Err(source), root)) => {
                            return Err(BuildError::StaticRoot {
                                route: r.name.clone(),
                                root,
                                source,
                            });
                        }
                        Err(join) => {
                            return Err(BuildError::StaticRoot {
                                route: r.name.clone(),
                                root: std::path::PathBuf::new(),
                                source: std::io::Error::other(join),
                            });
                        }
                    }
                }
            };
            let id = RouteId::of(r);
            let name: Arc<str> = r.name.as_str().into();
            route_lives.insert(
                id,
                RouteLife {
                    name: Arc::clone(&name),
                    removed: CancellationToken::new(),
                },
            );
            let route = Route {
                id,
                name,
                prefix: r.path.as_str().into(),
                strip_prefix: r.strip_prefix && r.path != "/",
                action,
                request_headers: r.request_headers.clone(),
                response_headers: r.response_headers.clone(),
                allow: r.allow.clone(),
                deny: r.deny.clone(),
                timeouts: r.timeouts,
                max_body: r.max_body,
                upstream_host: r.upstream_host.clone(),
                access_log: r.access_log,
                compress: r.compress,
                limits: r
                    .rate_limits
                    .iter()
                    // Validation guarantees the names exist.
                    .filter_map(|name| config.rate_limits.get(name))
                    .map(|def| limiters.limiter(def, config.redis.as_ref()))
                    .collect(),
                limit_key: ratelimit::stable_hash(r.name.as_bytes()),
                idempotent_methods: r.idempotent_methods.clone(),
                metrics: config
                    .metrics
                    .enabled
                    .then(|| registry.routes.route(&r.name)),
            };
            router.insert(r.host.as_ref(), &r.path, Arc::new(route));
        }

        let first_tls_port = config
            .listeners
            .iter()
            .find(|l| l.tls)
            .map(|l| l.addr.port());
        let listeners = config
            .listeners
            .iter()
            .map(|l| ListenerPolicy {
                name: l.name.as_str().into(),
                trusted_proxies: l.trusted_proxies.clone(),
                client_ip_header: l.client_ip_header,
                redirect_https: (l.redirect_https && !l.tls).then(|| {
                    let port = l.https_port.or(first_tls_port).unwrap_or(443);
                    RedirectHttps {
                        port: (port != 443).then_some(port),
                    }
                }),
            })
            .collect();

        let hsts = config.hsts.as_ref().map(|h| {
            let mut v = format!("max-age={}", h.max_age.as_secs());
            if h.include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if h.preload {
                v.push_str("; preload");
            }
            HeaderValue::try_from(v).expect("digits and ASCII words are a valid header value")
        });

        let unrouted = config.metrics.enabled.then(|| registry.routes.unrouted());
        Ok(Self {
            generation,
            config,
            router,
            upstreams,
            listeners,
            hsts,
            route_lives,
            unrouted,
        })
    }

    /// Takes over the lives of routes that an earlier snapshot had (`earlier` looks one up
    /// by identity), so tunnels opened under the earlier snapshot stay tied to the route.
    /// Call before the snapshot is shared.
    pub fn adopt_route_lives(&mut self, earlier: impl Fn(RouteId) -> Option<RouteLife>) {
        for (id, life) in &mut self.route_lives {
            if let Some(old) = earlier(*id) {
                *life = old;
            }
        }
    }

    /// The routes of `previous` that this snapshot no longer has.
    pub fn routes_gone(&self, previous: &Snapshot) -> Vec<(RouteId, RouteLife)> {
        previous
            .route_lives
            .iter()
            .filter(|(id, _)| !self.route_lives.contains_key(id))
            .map(|(id, life)| (*id, life.clone()))
            .collect()
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
