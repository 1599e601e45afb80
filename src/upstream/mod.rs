//! Upstreams: replicas with their connection pools, kept across snapshots.

pub mod pool;
pub mod replica;
