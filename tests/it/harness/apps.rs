//! Upstream-side helpers: apps with controllable health endpoints, the admin view of
//! upstreams, and a DNS server whose answers a test changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Gateway, Upstream, eventually_async, full, get, is_probe};

/// A test app with controllable health endpoints: `/health/live` and `/health/ready` answer
/// the status in `live` / `ready`; `/hold` waits until `release` is notified; every other
/// path answers `200` with the app's address after `delay_ms` (or `fail` when it is not 0). `hits` counts requests that are
/// not probes, `held` those waiting on `/hold`.
pub struct App {
    pub up: Upstream,
    pub addr: SocketAddr,
    pub live: Arc<AtomicU16>,
    pub ready: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
    pub fail: Arc<AtomicU16>,
    pub hits: Arc<AtomicUsize>,
    pub held: Arc<AtomicUsize>,
    pub release: Arc<tokio::sync::Semaphore>,
}

impl App {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let live = Arc::new(AtomicU16::new(200));
        let ready = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicU16::new(0));
        let hits = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let me = Arc::new(Mutex::new(String::new()));
        let (l, r, d, f, h, hd, rel, name) = (
            Arc::clone(&live),
            Arc::clone(&ready),
            Arc::clone(&delay_ms),
            Arc::clone(&fail),
            Arc::clone(&hits),
            Arc::clone(&held),
            Arc::clone(&release),
            Arc::clone(&me),
        );
        let up = Upstream::start_on(addr, move |req: Request<Incoming>| {
            let (l, r, d, f, h, hd, rel, name) = (
                Arc::clone(&l),
                Arc::clone(&r),
                Arc::clone(&d),
                Arc::clone(&f),
                Arc::clone(&h),
                Arc::clone(&hd),
                Arc::clone(&rel),
                Arc::clone(&name),
            );
            async move {
                let status = |s: u16| {
                    let mut resp = Response::new(full("health\n"));
                    *resp.status_mut() = http::StatusCode::from_u16(s).unwrap();
                    resp
                };
                let path = req.uri().path().to_owned();
                match path.as_str() {
                    "/health/live" => return status(l.load(Ordering::SeqCst)),
                    "/health/ready" => return status(r.load(Ordering::SeqCst)),
                    _ if is_probe(req.headers()) => return status(404),
                    _ => {}
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = req.into_body().collect().await;
                if path == "/hold" {
                    hd.fetch_add(1, Ordering::SeqCst);
                    rel.acquire().await.unwrap().forget();
                }
                let delay = d.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let failing = f.load(Ordering::SeqCst);
                if failing != 0 {
                    return status(failing);
                }
                let body = name.lock().unwrap().clone();
                Response::new(full(body))
            }
        })
        .await;
        *me.lock().unwrap() = up.addr.to_string();
        Self {
            addr: up.addr,
            up,
            live,
            ready,
            delay_ms,
            fail,
            hits,
            held,
            release,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self, status: u16) {
        self.ready.store(status, Ordering::SeqCst);
    }

    pub fn set_live(&self, status: u16) {
        self.live.store(status, Ordering::SeqCst);
    }
}

/// `GET /admin/upstreams` as JSON.
pub async fn admin_upstreams(gw: &Gateway) -> serde_json::Value {
    let r = get(gw.admin, "/admin/upstreams", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

/// The admin view of one replica of one upstream, if listed.
pub async fn replica_state(
    gw: &Gateway,
    upstream: &str,
    addr: SocketAddr,
) -> Option<serde_json::Value> {
    let all = admin_upstreams(gw).await;
    all["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["name"] == upstream)?["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["addr"] == addr.to_string())
        .cloned()
}

/// Waits until the admin view shows that replica of that upstream ready.
pub async fn until_ready(gw: &Gateway, upstream: &str, addr: SocketAddr, what: &str) {
    eventually_async(what, || async {
        replica_state(gw, upstream, addr)
            .await
            .is_some_and(|r| r["ready"] == true)
    })
    .await;
}

/// A gateway whose upstream `app` has the `apps` as replicas, probed every 100 ms, on a
/// route for every path: `upstream` adds keys to `[upstreams.app]`, `health` to its health
/// section, `more` whole sections.
pub fn app_pool_config(apps: &[SocketAddr], upstream: &str, health: &str, more: &str) -> String {
    let replicas: Vec<String> = apps.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = [{}]
{upstream}

[upstreams.app.health]
interval = "100ms"
{health}

{more}

[[routes]]
path = "/"
upstream = "app"
"#,
        replicas.join(", ")
    )
}

/// A gateway whose upstream `app` is the name `app.test:{port}` as `dns` resolves it
/// (re-resolved and probed every 100 ms), balanced by `policy` (a key of the upstream
/// section, e.g. `policy = "round_robin"`), on a route for every path.
pub fn dns_upstream_config(port: u16, dns: &DnsServer, policy: &str) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["app.test:{port}"]
{policy}
nameserver = "{}"
dns_refresh = "100ms"

[upstreams.app.health]
interval = "100ms"

[[routes]]
path = "/"
upstream = "app"
"#,
        dns.addr
    )
}

/// A DNS server on loopback answering A queries for any name with the addresses in
/// `records` (changeable while it runs) and AAAA queries with no records.
pub struct DnsServer {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<Vec<std::net::Ipv4Addr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start(records: &[std::net::Ipv4Addr]) -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let records = Arc::new(Mutex::new(records.to_vec()));
        let current = Arc::clone(&records);
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = &buf[..n];
                // Header (12 bytes), then the question name and type/class.
                let mut at = 12;
                while at < n && query[at] != 0 {
                    at += 1 + query[at] as usize;
                }
                if at + 5 > n {
                    continue;
                }
                let qtype = u16::from_be_bytes([query[at + 1], query[at + 2]]);
                let mut answer = query[..at + 5].to_vec();
                answer[2] = 0x81;
                answer[3] = 0x80;
                let ips = if qtype == 1 {
                    current.lock().unwrap().clone()
                } else {
                    Vec::new()
                };
                answer[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
                for ip in ips {
                    answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
                    answer.extend_from_slice(&ip.octets());
                }
                let _ = socket.send_to(&answer, from).await;
            }
        });
        Self {
            addr,
            records,
            task,
        }
    }

    pub fn set(&self, records: &[std::net::Ipv4Addr]) {
        *self.records.lock().unwrap() = records.to_vec();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
