//! ACME over HTTP-01 against Pebble: the certificate is issued and served, a restart reuses it,
//! and the challenge path rejects malformed tokens before any lookup.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::pebble::{self, Pebble, PebbleSetup, wait_for_leaf};

/// How long an issuance may take (Pebble validates at once with PEBBLE_VA_NOSLEEP).
pub const ISSUE_WAIT: Duration = Duration::from_secs(60);

/// A gateway with ACME on: listeners on pre-chosen addresses (Pebble's validator is told
/// the ports before the gateway starts), state in `storage`.
pub struct Site<'a> {
    /// The plain listener, if any (HTTP-01 needs one).
    pub plain: Option<std::net::SocketAddr>,
    pub tls: std::net::SocketAddr,
    pub directory: &'a str,
    pub ca_roots: &'a Path,
    /// `dir:<path>` or a Redis URL.
    pub storage: &'a str,
    /// Appended to `[acme]`.
    pub acme_extra: &'a str,
    pub names: &'a [&'a str],
    pub upstream: std::net::SocketAddr,
}

impl Site<'_> {
    pub fn config(&self) -> String {
        let plain = self.plain.map_or(String::new(), |addr| {
            format!("[listeners.http]\nlisten = \"{addr}\"\n")
        });
        let names: Vec<String> = self.names.iter().map(|n| format!("\"{n}\"")).collect();
        format!(
            r#"{plain}
[listeners.https]
listen = "{}"
tls = true

[tls]
self_signed_dir = "{{dir}}/self-signed"

[acme]
directory = "{}"
ca_roots = "{}"
storage = "{}"
email = "ops@app.test"
check_interval = "1s"
retry_interval = "1s"
{}

[[acme.certificates]]
names = [{}]

[upstreams.app]
replicas = ["{}"]

[[routes]]
path = "/"
upstream = "app"
"#,
            self.tls,
            self.directory,
            self.ca_roots.display(),
            self.storage,
            self.acme_extra,
            names.join(", "),
            self.upstream
        )
    }
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// What the Pebble tests start from: Pebble told two fresh ports (refusing the `blocklist`
/// names), an upstream, and an empty directory store.
pub struct Bed {
    pub pebble: Pebble,
    pub up: Upstream,
    pub http_port: u16,
    pub tls_port: u16,
    pub store: tempfile::TempDir,
    pub storage: String,
}

impl Bed {
    /// `None` (the test then passes vacuously) when Pebble is not installed; CI installs it.
    pub async fn start(blocklist: &[&str]) -> Option<Self> {
        if !pebble::installed() {
            return None;
        }
        let (http_port, tls_port) = (free_port(), free_port());
        let pebble = Pebble::start(PebbleSetup {
            http_port,
            tls_port,
            blocklist,
        })
        .await;
        let store = tempfile::tempdir().unwrap();
        let storage = format!("dir:{}", store.path().display());
        Some(Self {
            pebble,
            up: Upstream::ok().await,
            http_port,
            tls_port,
            store,
            storage,
        })
    }

    /// A site for `names` on this bed's two ports, with `acme_extra` in `[acme]`.
    pub fn site<'a>(&'a self, names: &'a [&'a str], acme_extra: &'a str) -> Site<'a> {
        Site {
            plain: Some(local(self.http_port)),
            tls: local(self.tls_port),
            directory: &self.pebble.directory,
            ca_roots: &self.pebble.tls_ca,
            storage: &self.storage,
            acme_extra,
            names,
            upstream: self.up.addr,
        }
    }

    /// The TLS listener's address.
    pub fn https(&self) -> std::net::SocketAddr {
        local(self.tls_port)
    }
}

#[tokio::test]
async fn http01_certificate_is_served_and_a_restart_orders_nothing() {
    let Some(bed) = Bed::start(&[]).await else {
        return;
    };
    let (pebble, store) = (&bed.pebble, &bed.store);
    let config = bed.site(&["app.test", "www.app.test"], "").config();
    let https = bed.https();
    let root = pebble.issuing_root().await;

    let gw = Gateway::start(&config).await;
    // Ready before any certificate: the self-signed fallback serves meanwhile.
    let first = wait_for_leaf(
        https,
        "app.test",
        &root,
        ISSUE_WAIT,
        |_| true,
        || format!("{}\n{}", gw.log(), pebble.logs()),
    )
    .await;
    // One certificate covers both names.
    let www = pebble::served_leaf(https, "www.app.test", &root)
        .await
        .unwrap();
    assert_eq!(www, first);
    let log = gw.log();
    assert!(log.contains("ACME order created"), "{log}");
    assert!(log.contains("served an ACME HTTP-01 challenge"), "{log}");
    assert!(log.contains("ACME certificate issued"), "{log}");
    let state = get(gw.admin, "/admin/acme", &[]).await.unwrap();
    let state: serde_json::Value = serde_json::from_str(&state.text()).unwrap();
    let cert = &state["certificates"][0];
    assert_eq!(cert["status"], "valid", "{state}");
    assert_eq!(
        cert["names"],
        serde_json::json!(["app.test", "www.app.test"])
    );
    assert!(
        cert["serial"].as_str().is_some_and(|s| !s.is_empty()),
        "{cert}"
    );
    assert!(cert["not_after_unix"].as_u64().is_some(), "{cert}");
    assert!(cert["last_error"].is_null(), "{cert}");
    let files = pebble::files_under(store.path());
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("accounts/") && f.ends_with(".json")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("/bundle.pem")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.starts_with("challenges/")),
        "challenge material left: {files:?}"
    );
    drop(gw);

    // A restart serves the stored certificate and orders nothing.
    let gw = Gateway::start(&config).await;
    let again = wait_for_leaf(https, "app.test", &root, ISSUE_WAIT, |_| true, || gw.log()).await;
    assert_eq!(again, first, "a restart must reuse the stored certificate");
    eventually("the stored certificate is logged as loaded", || {
        gw.log().contains("ACME certificate loaded from the store")
    })
    .await;
    // Pebble 2.4 has no renewal information (ARI): renewal falls back to the fraction.
    eventually("the missing ARI support is noticed", || {
        gw.log().contains("the CA offers no renewal information")
    })
    .await;
    let log = gw.log();
    assert!(!log.contains("ordering an ACME certificate"), "{log}");
    assert!(
        log.contains("using the stored ACME account")
            || !log.contains("created and stored the ACME account"),
        "{log}"
    );
}

#[tokio::test]
async fn http01_tokens_are_checked_and_served_from_the_shared_store() {
    // No CA is needed: the directory points at a closed port, so orders fail and back off,
    // while the challenge path is served from what another replica put in the store.
    let up = Upstream::ok().await;
    let store = tempfile::tempdir().unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let roots = pki_dir.path().join("roots.pem");
    std::fs::write(&roots, Pki::new().ca_pem).unwrap();
    let (http_port, tls_port) = (free_port(), free_port());
    let directory = format!("https://{}/dir", dead_addr());
    let storage = format!("dir:{}", store.path().display());
    let mut config = Site {
        plain: Some(local(http_port)),
        tls: local(tls_port),
        directory: &directory,
        ca_roots: &roots,
        storage: &storage,
        acme_extra: "",
        names: &["app.test"],
        upstream: up.addr,
    }
    .config();
    // HTTPS redirects for every known host must not catch validation requests.
    config = config.replace(
        &format!("listen = \"127.0.0.1:{http_port}\"\n"),
        &format!("listen = \"127.0.0.1:{http_port}\"\nredirect_https = true\n"),
    );
    config = config.replace("path = \"/\"", "host = \"app.test\"\npath = \"/\"");
    let gw = Gateway::start(&config).await;
    let http = local(http_port);

    let token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    std::fs::create_dir_all(store.path().join("challenges/http-01")).unwrap();
    std::fs::write(
        store.path().join(format!("challenges/http-01/{token}")),
        "token.thumbprint",
    )
    .unwrap();
    // A secret next to the challenge material, which no token may reach.
    std::fs::write(store.path().join("challenges/secret"), "account key").unwrap();
    std::fs::write(store.path().join("secret"), "account key").unwrap();

    let host = [("host", "app.test:80")];
    let ok = get(http, &format!("/.well-known/acme-challenge/{token}"), &host)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "token.thumbprint");
    // Served again: validators fetch a token several times.
    let again = get(http, &format!("/.well-known/acme-challenge/{token}"), &host)
        .await
        .unwrap();
    assert_eq!(again.status, 200);

    for bad in [
        "..",
        "..%2Fsecret",
        "..%2F..%2Fsecret",
        "%2E%2E%2Fsecret",
        "x%2F..%2F..%2Fsecret",
        "a.b",
        "../secret",
        "../../secret",
        "tok%00en",
        "",
    ] {
        let raw_path = format!("/.well-known/acme-challenge/{bad}");
        let resp = raw(
            http,
            format!("GET {raw_path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 404"), "{raw_path}: {resp}");
        assert!(!resp.contains("account key"), "{raw_path}: {resp}");
    }
    let long = "a".repeat(129);
    let resp = get(http, &format!("/.well-known/acme-challenge/{long}"), &host)
        .await
        .unwrap();
    assert_eq!(resp.status, 404);
    let unknown = get(http, "/.well-known/acme-challenge/unknownToken", &host)
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);

    // Everything else still redirects, and the gateway keeps serving while orders fail.
    let other = get(http, "/", &host).await.unwrap();
    assert_eq!(other.status, 308);
    eventually("a failed order is logged with its next attempt", || {
        gw.log().contains("ACME order failed")
    })
    .await;
}
