//! Integration tests: the real gateway binary against real upstreams on loopback.
//! One crate with a module per area (each file under `tests/` would be its own link).

#[allow(dead_code)]
mod harness;

mod core_forwarding;
mod core_limits;
mod core_proxying;
mod core_routing;
mod core_tls;
mod upstream_balance;
mod upstream_dns;
mod upstream_health;
mod upstream_outlier;
mod upstream_retry;
