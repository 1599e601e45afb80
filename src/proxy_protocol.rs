//! PROXY protocol v1/v2: how an L4 load balancer passes the client address. Read only from
//! a listener's trusted proxies, and never more bytes than the header itself.

use std::io;
use std::net::SocketAddr;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header accepted: v1 is at most 107 bytes; v2 allows TLVs, bounded here.
const MAX_HEADER: usize = 512;

/// Reads one PROXY header. `Ok(None)` for a header without a source address (`UNKNOWN`,
/// `LOCAL`): the connection's own peer stands. The caller bounds this with a timeout.
pub async fn read_header(stream: &mut TcpStream) -> io::Result<Option<SocketAddr>> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        // Peek so the bytes after the header stay in the socket for the HTTP parser.
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before PROXY header",
            ));
        }
        let parsed = HeaderResult::parse(&buf[..n]);
        if parsed.is_incomplete() {
            if n == MAX_HEADER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "PROXY header too long",
                ));
            }
            // A peek leaves the socket readable, so waiting for readiness would spin; the
            // rest of a header split across segments arrives within milliseconds.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        }
        let (len, addr) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.header.len(), v2_source(&h.addresses)),
            HeaderResult::V1(Err(e)) => return Err(invalid(e)),
            HeaderResult::V2(Err(e)) => return Err(invalid(e)),
        };
        let mut consumed = vec![0u8; len];
        stream.read_exact(&mut consumed).await?;
        return Ok(addr);
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn v1_source(a: &v1::Addresses) -> Option<SocketAddr> {
    match a {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(a: &v2::Addresses) -> Option<SocketAddr> {
    match a {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::Unix(_) | v2::Addresses::Unspecified => None,
    }
}
