//! edgeward: an edge gateway.
#![warn(missing_docs)]

pub mod config;
