//! edgeward: an edge gateway for app containers.
//!
//! # Layout
//!
//! The module list reads like the path a request takes:
//!
//! - [`listener`]: bind, accept within connection budgets, optional PROXY protocol
//!   ([`proxy_protocol`]), TLS ([`tls`]: certificate store, SNI resolver, self-signed
//!   fallback), and the connection chosen from ALPN: HTTP/1.1 served by [`http1`] (the
//!   gateway's own, strict, channel-free server half), HTTP/2 by hyper.
//! - [`service`]: per request, load the [`snapshot`] once, resolve the client
//!   ([`forwarded`]), normalise authority and path ([`normalize`]), redirect to HTTPS, route
//!   ([`router`]), apply the route's rate limits ([`ratelimit`]), act.
//! - [`static_files`]: a route's directory served from beneath its root, hashed names cached
//!   for a year, the rest revalidated; small files from memory, large ones streamed.
//! - [`proxy`]: rewrite the request in place, pick a replica ([`upstream`]: balancer over the
//!   live, ready, not ejected replicas; probes, outlier ejection, retry budget, DNS refresh),
//!   send it over the replica's pool, rewrite the response; upgrades become tracked tunnels
//!   ([`tunnel`]).
//! - [`body`]: the concrete body types both ways; [`error`]: the request-path error table;
//!   [`compress`]: optional on-the-fly compression of proxied responses.
//! - [`acme`]: certificates obtained and renewed from an ACME CA, shared by replicas through
//!   a store; HTTP-01 is answered at the top of [`service`], TLS-ALPN-01 by the listener.
//! - Beside the request path: [`config`] (raw file, validation, the validated model),
//!   [`reload`] (file watcher, SIGHUP and `POST /admin/reload`: validate, build, swap),
//!   [`admin`] (admin and probe listeners, readiness), [`app`] (wiring and shutdown),
//!   [`demo`] (the first-run demo app) and [`probe`] (`edgeward probe`).
//! - Observability: [`metrics`] (atomics resolved per route and replica, labelled at scrape
//!   time), [`access_log`] (one line per request, written in batches by its own thread),
//!   [`trace_context`] (W3C `traceparent` kept or started), [`status`] (the admin status
//!   page and its JSON).
//!
//! # Request flow
//!
//! ```text
//! listener ─► [PROXY header] ─► [TLS, ALPN; acme-tls/1 answered here] ─► http1 / hyper h2
//!   service: snapshot.load_full() ─► ACME HTTP-01? ─► client identity + request id
//!          ─► normalise authority/path ─► https redirect? ─► router ─► allow/deny ─► rate limits
//!          ─┬─► static files (cache / disk)
//!           ├─► redirect
//!           └─► proxy: pick replica ─► pool ─► app
//! side: config (+ reload) ─► Snapshot (ArcSwap) · replica and limiter registries (state kept
//!       across snapshots) · health probes and DNS refresh per replica · Redis for shared limits
//!       · acme tasks (order, renew, store locks) ─► CertStore
//!       · admin/probe listeners (health, /metrics, status page) · access log writer thread
//!       · shutdown (drain, then end streams and tunnels cleanly)
//! ```
//!
//! A request holds its snapshot until the response head is returned; a streaming response
//! keeps only its replica's in-flight guard, and a tunnel that guard and its route's removal
//! token, so a reload never waits on or pins a long stream.

pub mod access_log;
pub mod acme;
pub mod admin;
pub mod app;
pub mod body;
pub mod compress;
pub mod config;
pub mod demo;
pub mod error;
pub mod forwarded;
pub mod http1;
pub mod listener;
pub mod metrics;
pub mod normalize;
pub mod probe;
pub mod proxy;
pub mod proxy_protocol;
pub mod ratelimit;
pub mod reload;
pub mod router;
pub mod service;
pub mod snapshot;
pub mod static_files;
pub mod status;
pub mod tls;
pub mod trace_context;
pub mod tunnel;
pub mod upstream;
