//! edgeward: an edge gateway.

pub mod config;
pub mod upstream;
