//! Pebble, Let's Encrypt's test CA, and its mock DNS server (pebble-challtestsrv) as child
//! processes on free loopback ports, killed by PID when dropped. Pebble's own HTTPS uses a
//! throwaway CA made here; the CA that issues certificates is fetched from its management API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::harness::{DEADLINE, Pki, collect, empty, free_port, full};

/// Whether the Debian package is installed; tests print a skip line and return when not.
pub fn installed() -> bool {
    let found = ["pebble", "pebble-challtestsrv"].iter().all(|bin| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(bin).is_file()))
    });
    if !found {
        println!("skipped: pebble not installed");
    }
    found
}

/// Where Pebble's validator connects, and which names it refuses.
pub struct PebbleSetup<'a> {
    pub http_port: u16,
    pub tls_port: u16,
    pub blocklist: &'a [&'a str],
}

/// A running Pebble and challtestsrv.
pub struct Pebble {
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// PEM of the CA that signed Pebble's own HTTPS certificate (for `acme.ca_roots`).
    pub tls_ca: PathBuf,
    mgmt: SocketAddr,
    cts_mgmt: SocketAddr,
    tls_client: Arc<rustls::ClientConfig>,
}

impl Pebble {
    pub async fn start(setup: PebbleSetup<'_>) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        let (cert, key) = pki.leaf(dir.path(), "pebble-tls", &["localhost", "127.0.0.1"]);
        let tls_ca = dir.path().join("pebble-tls-ca.pem");
        std::fs::write(&tls_ca, &pki.ca_pem).unwrap();
        let (acme_port, mgmt_port, dns_port, cts_port) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": setup.http_port,
                "tlsPort": setup.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": setup.blocklist,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let mut children = Vec::new();
        children.push(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-management", &format!("127.0.0.1:{cts_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdout(log("challtestsrv.log"))
                .stderr(log("challtestsrv.err"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        children.push(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_VA_ALWAYS_VALID", "0")
                .stdout(log("pebble.log"))
                .stderr(log("pebble.err"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pebble = Pebble {
            children,
            directory: format!("https://127.0.0.1:{acme_port}/dir"),
            tls_client: crate::clients::trusting(&tls_ca),
            dir,
            tls_ca,
            mgmt: SocketAddr::from(([127, 0, 0, 1], mgmt_port)),
            cts_mgmt: SocketAddr::from(([127, 0, 0, 1], cts_port)),
        };
        let acme = SocketAddr::from(([127, 0, 0, 1], acme_port));
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = pebble.https(acme, "GET", "/dir", None).await {
                if TcpStream::connect(pebble.cts_mgmt).await.is_ok() {
                    break;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "pebble did not start:\n{}",
                pebble.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pebble
    }

    /// Pebble's and challtestsrv's output, for failure messages.
    pub fn logs(&self) -> String {
        [
            "pebble.log",
            "pebble.err",
            "challtestsrv.log",
            "challtestsrv.err",
        ]
        .iter()
        .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The root that issues certificates (regenerated at every Pebble start).
    pub async fn issuing_root(&self) -> String {
        let (status, body) = self
            .https(self.mgmt, "GET", "/roots/0", None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Makes the mock DNS answer `host` with `ip`.
    /// The management port accepts connections a moment before it answers them, so a failed
    /// exchange is tried again (a bounded number of times).
    pub async fn set_a(&self, host: &str, ip: &str) {
        let body = serde_json::json!({ "host": host, "addresses": [ip] }).to_string();
        let mut last = String::new();
        for _ in 0..20 {
            match self.post_mgmt("/add-a", body.clone()).await {
                Ok(200) => return,
                Ok(status) => last = format!("status {status}"),
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("challtestsrv did not take the A record for {host}: {last}");
    }

    async fn post_mgmt(&self, path: &str, body: String) -> Result<u16, Box<dyn std::error::Error>> {
        let tcp = TcpStream::connect(self.cts_mgmt).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = Request::post(path)
            .header("host", "challtestsrv")
            .body(full(body))?;
        let got = collect(sender.send_request(req).await?).await?;
        Ok(got.status)
    }

    async fn https(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, String), String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls_client))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .body(body.map_or_else(empty, full))
            .unwrap();
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let got = collect(resp).await.map_err(|e| e.to_string())?;
        Ok((got.status, got.text()))
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The leaf certificate `addr` presents for `sni`, verified against `root_pem` only; `Err`
/// with the reason when the handshake or verification fails.
pub async fn served_leaf(
    addr: SocketAddr,
    sni: &str,
    root_pem: &str,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?[0]
        .clone();
    Ok(leaf.into_owned())
}

/// Polls until `addr` serves a certificate for `sni` that chains to `root_pem` and satisfies
/// `accept`; returns it.
pub async fn wait_for_leaf(
    addr: SocketAddr,
    sni: &str,
    root_pem: &str,
    wait: Duration,
    mut accept: impl FnMut(&CertificateDer<'static>) -> bool,
    context: impl Fn() -> String,
) -> CertificateDer<'static> {
    let start = Instant::now();
    loop {
        let last = match served_leaf(addr, sni, root_pem).await {
            Ok(leaf) if accept(&leaf) => return leaf,
            Ok(_) => "an earlier certificate".to_owned(),
            Err(err) => err,
        };
        assert!(
            start.elapsed() < wait,
            "no acceptable certificate for {sni} (last: {last}):\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Files under `dir` (relative paths), for assertions on the store's contents.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
