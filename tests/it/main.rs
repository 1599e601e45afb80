//! Integration tests: the real gateway binary against real upstreams on loopback.
//! One crate with a module per area (each file under `tests/` would be its own link).

#[allow(dead_code)]
mod harness;

#[allow(dead_code)]
mod clients;

#[allow(dead_code)]
mod pebble;

mod acme_cluster;
mod acme_http01;
mod acme_renewal;
mod core_check;
mod core_connections;
mod core_forwarding;
mod core_h2_framing;
mod core_limits;
mod core_proxying;
mod core_route_options;
mod core_routing;
mod core_tls;
mod obs_access_log;
mod obs_metrics;
mod obs_status_page;
mod obs_trace;
mod ops_admin;
mod ops_demo;
mod ops_deploy;
mod ops_fastapi;
mod ops_probe;
mod ops_shutdown;
mod ratelimit_local;
mod ratelimit_redis;
#[allow(dead_code)]
mod reload_helpers;
mod reload_safety;
mod reload_streams;
mod reload_triggers;
mod static_caching;
mod static_compression;
mod static_serving;
mod upstream_balance;
mod upstream_dns;
mod upstream_health;
mod upstream_outlier;
mod upstream_retry;
