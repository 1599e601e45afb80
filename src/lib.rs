//! edgeward: an edge gateway.

pub mod config;
