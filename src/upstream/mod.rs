//! Everything between the proxy and the application replicas.
//!
//! - [`pool`]: one replica's HTTP/1.1 connections (checkout, reuse, cap, idle expiry).

pub mod pool;
