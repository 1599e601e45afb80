//! edgeward: an edge gateway.

pub mod config;
pub mod forwarded;
pub mod normalize;
pub mod tls;
pub mod upstream;
