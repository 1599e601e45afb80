//! edgeward: an edge gateway.

pub mod config;
pub mod normalize;
pub mod tls;
