//! Connection accounting: the open-connection budget, each connection's lifecycle (request
//! count, close signal) and the registry of open connections used to shed idle ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::service::Conn;

/// Open connections, bounded globally and per peer address.
pub struct Budget {
    max: usize,
    per_ip: usize,
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` reached.
    Global,
    /// `server.max_connections_per_ip` reached for this address.
    PerIp,
}

impl Refusal {
    /// The config key that bounds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "max_connections",
            Self::PerIp => "max_connections_per_ip",
        }
    }
}

/// Releases a connection's budget when the connection ends.
pub struct Slot {
    budget: Arc<Budget>,
    ip: IpAddr,
}

impl Budget {
    /// `per_ip == 0` means no per-address bound.
    pub fn new(max: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_ip,
            open: AtomicUsize::new(0),
            by_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Global);
        }
        self.admit_ip(ip).inspect_err(|_| {
            self.open.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Takes a slot past the global bound, after idle connections were asked to make room;
    /// the per-address bound still holds.
    pub fn admit_over(self: &Arc<Self>, ip: IpAddr) -> Slot {
        self.open.fetch_add(1, Ordering::AcqRel);
        // The per-address count may exceed its bound by one here: the refusal that led to
        // shedding was the global one, so this address was under its own bound a moment ago.
        let mut by_ip = self.lock();
        if self.per_ip > 0 {
            *by_ip.entry(ip).or_insert(0) += 1;
        }
        Slot {
            budget: Arc::clone(self),
            ip,
        }
    }

    fn admit_ip(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        if self.per_ip > 0 {
            let mut by_ip = self.lock();
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip {
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        Ok(Slot {
            budget: Arc::clone(self),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.budget.per_ip > 0 {
            let mut by_ip = self.budget.lock();
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-connection bookkeeping shared by the service (which counts requests) and the driver
/// (which closes the connection when asked).
pub struct Lifecycle {
    active: AtomicUsize,
    served: AtomicU64,
    max_requests: u64,
    pub(super) close: CancellationToken,
}

/// Counts a request as active until dropped (the response head has been returned).
pub struct Active<'a>(&'a Lifecycle);

impl Lifecycle {
    /// `max_requests == 0` means unlimited. The close signal is a child of `drain`, so a
    /// connection waits on one token for both (fewer polls per wake-up).
    pub fn new(max_requests: u64, drain: &CancellationToken) -> Self {
        Self {
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            max_requests,
            close: drain.child_token(),
        }
    }

    /// A request starts. The request that reaches `max_requests` asks the connection to
    /// finish: HTTP/1.1 answers it with `Connection: close`, HTTP/2 sends GOAWAY.
    pub fn begin(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_requests > 0 && served >= self.max_requests {
            self.close.cancel();
        }
        Active(self)
    }

    /// No request is being handled (a streaming response body may still be flowing, which
    /// graceful shutdown lets finish).
    pub fn is_idle(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0
    }

    /// Requests started so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Asks the connection to finish after its in-flight requests.
    pub fn close(&self) {
        self.close.cancel();
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many idle connections one refused accept asks to close.
pub(super) const SHED_BATCH: usize = 8;

/// Open connections that have finished their handshakes, so idle ones can be asked to close
/// when the global bound is reached.
#[derive(Default)]
pub struct OpenConns {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, std::sync::Weak<Conn>>>,
}

/// Removes a connection from [`OpenConns`] when it ends.
pub(super) struct Registered<'a> {
    open: &'a OpenConns,
    id: u64,
}

impl OpenConns {
    pub(super) fn register(&self, conn: &Arc<Conn>) -> Registered<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::downgrade(conn));
        Registered { open: self, id }
    }

    /// Asks up to `n` idle connections to close; returns how many were asked.
    pub fn shed_idle(&self, n: usize) -> usize {
        let conns = self.lock();
        let mut asked = 0;
        for conn in conns.values().filter_map(std::sync::Weak::upgrade) {
            if asked == n {
                break;
            }
            if conn.life.is_idle() && !conn.life.close.is_cancelled() {
                conn.life.close();
                asked += 1;
            }
        }
        asked
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, std::sync::Weak<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::{Budget, Lifecycle, Refusal};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn budget_bounds_globally_and_per_address() {
        let budget = Budget::new(3, 2);
        let a1 = budget.admit(A).unwrap();
        let _a2 = budget.admit(A).unwrap();
        assert_eq!(budget.admit(A).err(), Some(Refusal::PerIp));
        let _b1 = budget.admit(B).unwrap();
        assert_eq!(budget.admit(B).err(), Some(Refusal::Global));
        assert_eq!(budget.open(), 3);
        drop(a1);
        assert_eq!(budget.open(), 2);
        let _b2 = budget.admit(B).unwrap();
        let over = budget.admit_over(B);
        assert_eq!(budget.open(), 4);
        drop(over);
        assert_eq!(budget.open(), 3);
    }

    #[test]
    fn request_limit_asks_the_connection_to_close() {
        let drain = tokio_util::sync::CancellationToken::new();
        let life = Lifecycle::new(2, &drain);
        drop(life.begin());
        assert!(!life.close.is_cancelled());
        let active = life.begin();
        assert!(life.close.is_cancelled());
        assert!(!life.is_idle());
        drop(active);
        assert!(life.is_idle());
        assert_eq!(life.served(), 2);
    }

    #[test]
    fn drain_asks_every_connection_to_close() {
        let drain = tokio_util::sync::CancellationToken::new();
        let life = Lifecycle::new(0, &drain);
        drop(life.begin());
        assert!(!life.close.is_cancelled());
        drain.cancel();
        assert!(life.close.is_cancelled());
    }
}
