//! DNS discovery: replicas given as names are resolved again every `dns_refresh`, and each
//! address is a replica with its own health. Addresses that disappear are drained; a failed
//! lookup keeps the last known addresses.
//!
//! With `nameserver` set, names are asked of that server with a minimal A/AAAA client over
//! UDP written here: that is all discovery needs, where a full resolver crate would bring a
//! large dependency tree for features (DNSSEC, DoH, caches) a gateway re-resolving a few names
//! does not use. Without it, the system resolver (`getaddrinfo`) answers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::config;
use crate::upstream::group::{Members, Upstream};
use crate::upstream::registry::Registry;

/// How long one query waits for its answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Socket trouble or no answer in time.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an error code (3: the name does not exist).
    #[error("server answered rcode {0}")]
    Rcode(u8),
    /// The answer could not be parsed.
    #[error("malformed answer")]
    Malformed,
}

/// Every address of `host`, sorted; asks `nameserver` when given, else the system resolver.
pub async fn resolve(
    host: &str,
    port: u16,
    nameserver: Option<SocketAddr>,
) -> Result<Vec<SocketAddr>, DnsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let ips: BTreeSet<IpAddr> = match nameserver {
        None => tokio::net::lookup_host((host, port))
            .await?
            .map(|a| a.ip())
            .collect(),
        Some(server) => {
            let (a, aaaa) = tokio::join!(query(server, host, 1), query(server, host, 28));
            match (a, aaaa) {
                (Err(e), Err(_)) => return Err(e),
                (a, aaaa) => a
                    .unwrap_or_default()
                    .into_iter()
                    .chain(aaaa.unwrap_or_default())
                    .collect(),
            }
        }
    };
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// One query of `qtype` (1 = A, 28 = AAAA) for `name`.
async fn query(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<IpAddr>, DnsError> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let id = fastrand::u16(..);
    socket.send(&encode_query(id, name, qtype)).await?;
    let mut buf = [0u8; 1500];
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no DNS answer"))??;
        // A stray datagram with another id is not our answer: keep waiting.
        if let Some(ips) = decode_answer(id, &buf[..n])? {
            return Ok(ips);
        }
    }
}

/// A recursive query for one name.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// The A and AAAA records of an answer to query `id`; `None` if it answers another query.
pub fn decode_answer(id: u16, msg: &[u8]) -> Result<Option<Vec<IpAddr>>, DnsError> {
    let be16 = |at: usize| -> Result<u16, DnsError> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(DnsError::Malformed)
    };
    if msg.len() < 12 || be16(0)? != id || msg[2] & 0x80 == 0 {
        return Ok(None);
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(DnsError::Rcode(rcode));
    }
    let (questions, answers) = (be16(4)?, be16(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let (rtype, len) = (be16(at)?, usize::from(be16(at + 8)?));
        let data = msg.get(at + 10..at + 10 + len).ok_or(DnsError::Malformed)?;
        match (rtype, data.len()) {
            (1, 4) => ips.push(IpAddr::from([data[0], data[1], data[2], data[3]])),
            (28, 16) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(data);
                ips.push(IpAddr::from(octets));
            }
            _ => {}
        }
        at += 10 + len;
    }
    Ok(Some(ips))
}

/// The offset just past a (possibly compressed) name.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// One `replicas` entry: a literal address or a name to resolve.
#[derive(Debug, Clone)]
pub struct Entry {
    /// As validated: IP literal or lower-case name.
    pub addr: config::ReplicaAddr,
    /// Its current addresses.
    pub resolved: Vec<SocketAddr>,
}

impl Entry {
    /// Whether the entry is a DNS name (to be resolved again).
    pub fn is_name(&self) -> bool {
        self.addr.host.parse::<IpAddr>().is_err()
    }
}

/// Re-resolves an upstream's names every `dns_refresh` until the upstream is dropped.
pub fn spawn_refresh(
    upstream: &Arc<Upstream>,
    registry: Registry,
    mut entries: Vec<Entry>,
    connect_timeout: Option<Duration>,
) {
    if !entries.iter().any(Entry::is_name) {
        return;
    }
    let weak: Weak<Upstream> = Arc::downgrade(upstream);
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let Some(settings) = weak.upgrade().map(|u| u.state.settings()) else {
                return;
            };
            tokio::time::sleep(settings.dns_refresh).await;
            let mut failed = None;
            for entry in entries.iter_mut().filter(|e| e.is_name()) {
                match resolve(&entry.addr.host, entry.addr.port, settings.nameserver).await {
                    Ok(addrs) => entry.resolved = addrs,
                    Err(error) => failed = Some((entry.addr.host.clone(), error)),
                }
            }
            match failed {
                Some((host, error)) if !failing => {
                    tracing::warn!(upstream = %settings.name, %host, %error, "DNS lookup failed; keeping the last known addresses");
                    failing = true;
                }
                Some(_) => {}
                None => failing = false,
            }
            let Some(upstream) = weak.upgrade() else {
                return;
            };
            apply(&upstream, &registry, &entries, connect_timeout);
        }
    });
}

/// Swaps in the resolved addresses if they changed; drains replicas that are gone.
fn apply(
    upstream: &Upstream,
    registry: &Registry,
    entries: &[Entry],
    connect_timeout: Option<Duration>,
) {
    let old = upstream.members();
    let wanted: Vec<(SocketAddr, u32)> = entries
        .iter()
        .flat_map(|e| e.resolved.iter().map(|a| (*a, e.addr.weight)))
        .collect();
    let unchanged = old.replicas.len() == wanted.len()
        && old
            .replicas
            .iter()
            .zip(&wanted)
            .all(|(r, (a, _))| r.addr == *a);
    if unchanged {
        return;
    }
    let list: Vec<_> = wanted
        .iter()
        .map(|(addr, w)| {
            (
                registry.replica(&upstream.state, *addr, connect_timeout),
                *w,
            )
        })
        .collect();
    let gone: Vec<_> = old
        .replicas
        .iter()
        .filter(|r| !wanted.iter().any(|(a, _)| *a == r.addr))
        .cloned()
        .collect();
    let added: Vec<String> = wanted
        .iter()
        .filter(|(a, _)| !old.replicas.iter().any(|r| r.addr == *a))
        .map(|(a, _)| a.to_string())
        .collect();
    drop(old);
    upstream.set_members(Members::new(list));
    for replica in &gone {
        replica.drain();
    }
    let removed: Vec<&str> = gone.iter().map(|r| &*r.label).collect();
    tracing::info!(upstream = %upstream.name, ?added, ?removed, "replicas changed by DNS");
}

#[cfg(test)]
mod tests {
    use super::{decode_answer, encode_query};
    use std::net::IpAddr;

    /// An answer to `query` with A records, the way servers write it (name as a pointer).
    fn answer(query: &[u8], ips: &[[u8; 4]]) -> Vec<u8> {
        let mut a = query.to_vec();
        a[2] |= 0x80;
        a[7] = ips.len() as u8;
        for ip in ips {
            a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            a.extend_from_slice(ip);
        }
        a
    }

    #[test]
    fn answers_are_read_through_compression() {
        let q = encode_query(7, "app.svc.local", 1);
        assert_eq!(&q[12..17], b"\x03app\x03");
        let a = answer(&q, &[[127, 0, 0, 2], [127, 0, 0, 3]]);
        let ips = decode_answer(7, &a).unwrap().unwrap();
        assert_eq!(
            ips,
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "127.0.0.3".parse().unwrap()
            ]
        );
        assert!(
            decode_answer(8, &a).unwrap().is_none(),
            "another query's id"
        );
    }

    #[test]
    fn errors_and_garbage_are_reported() {
        let q = encode_query(1, "x", 1);
        let mut nx = answer(&q, &[]);
        nx[3] |= 3;
        assert!(decode_answer(1, &nx).is_err());
        let mut cut = answer(&q, &[[1, 2, 3, 4]]);
        cut.truncate(cut.len() - 2);
        assert!(decode_answer(1, &cut).is_err());
    }
}
