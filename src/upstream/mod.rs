//! Upstreams: replicas with their connection pools and health, kept across snapshots, and the
//! balancing, probing, ejection, retry and discovery rules around them.
//!
//! - [`registry`]: replicas and per-upstream state by identity, across snapshots.
//! - [`replica`]: one replica's pool, counters and health flags; [`pool`]: its connections.
//! - [`group`]: an upstream in a snapshot: its (swappable) replicas and the pick.
//! - [`balancer`]: pure selection; [`latency`]: peak-EWMA estimate.
//! - [`health`]: rise/fall counter and probe task; [`outlier`]: passive ejection rules.
//! - [`retry`]: what may be retried and the retry budget; [`dns`]: discovery.

pub mod balancer;
pub mod dns;
pub mod group;
pub mod health;
pub mod latency;
pub mod outlier;
pub mod pool;
pub mod registry;
pub mod replica;
pub mod retry;
