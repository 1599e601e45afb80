//! ACME over TLS-ALPN-01 with only the TLS port reachable, renewal served without a restart,
//! and CA errors that leave the served certificate in place and schedule a later attempt.

use std::time::Duration;

use crate::acme_http01::{Bed, ISSUE_WAIT, Site, local};
use crate::harness::*;
use crate::pebble::{self, served_leaf, wait_for_leaf};

#[tokio::test]
async fn tls_alpn01_issues_with_only_the_tls_port() {
    // Pebble's HTTP-01 port is one where nothing listens: only TLS-ALPN-01 can succeed.
    let Some(bed) = Bed::start(&[]).await else {
        return;
    };
    let pebble = &bed.pebble;
    let config = Site {
        plain: None,
        ..bed.site(&["alpn.test"], "challenge = \"tls-alpn-01\"")
    }
    .config();
    let root = pebble.issuing_root().await;
    let gw = Gateway::start(&config).await;
    let https = bed.https();
    wait_for_leaf(
        https,
        "alpn.test",
        &root,
        ISSUE_WAIT,
        |_| true,
        || format!("{}\n{}", gw.log(), pebble.logs()),
    )
    .await;
    let log = gw.log();
    assert!(
        log.contains("answered a TLS-ALPN-01 validation handshake"),
        "{log}"
    );
    assert!(!log.contains("served an ACME HTTP-01 challenge"), "{log}");

    // Once the order is done, an acme-tls/1 handshake for the name fails: no challenge is
    // pending any more.
    let pki = Pki::new();
    let cfg = pki.client_config(&[b"acme-tls/1"]);
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("alpn.test").unwrap();
    let result = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await;
    assert!(
        result.is_err(),
        "a name without a pending challenge must fail the handshake"
    );
    eventually("the refused validation handshake is logged", || {
        gw.log()
            .contains("TLS-ALPN-01 handshake for a name with no pending challenge")
    })
    .await;
    // Ordinary clients are unaffected.
    let got = served_leaf(https, "alpn.test", &root).await;
    assert!(got.is_ok(), "{got:?}");
}

#[tokio::test]
async fn renewal_is_served_without_restart_and_a_failed_one_keeps_the_certificate() {
    let Some(bed) = Bed::start(&[]).await else {
        return;
    };
    let (pebble, store) = (&bed.pebble, &bed.store);
    let site = |extra: &'static str| bed.site(&["renew.test"], extra).config();
    let root = pebble.issuing_root().await;
    let https = bed.https();
    let gw = Gateway::start(&site("")).await;
    let first = wait_for_leaf(
        https,
        "renew.test",
        &root,
        ISSUE_WAIT,
        |_| true,
        || gw.log(),
    )
    .await;
    drop(gw);

    // Pebble's certificates last years; renew_before = 1 makes the stored one due at once.
    let gw = Gateway::start(&site("renew_before = 1.0")).await;
    let renewed = wait_for_leaf(
        https,
        "renew.test",
        &root,
        ISSUE_WAIT,
        |leaf| *leaf != first,
        || gw.log(),
    )
    .await;
    let log = gw.log();
    assert!(
        log.contains("ACME certificate loaded from the store"),
        "{log}"
    );
    assert!(
        log.contains("ordering an ACME certificate") && log.contains("renewal=true"),
        "{log}"
    );

    // Now validation cannot reach the gateway: renewals fail, the certificate stays.
    pebble.set_a("renew.test", "127.0.0.9").await;
    eventually_long("a failed renewal with its next attempt", || {
        gw.log().contains("ACME order failed")
    })
    .await;
    let log = gw.log();
    let failure = log
        .lines()
        .find(|l| l.contains("ACME order failed"))
        .unwrap();
    assert!(failure.contains("next_attempt="), "{failure}");
    assert!(failure.contains("still_serving=true"), "{failure}");
    assert!(
        failure.contains("127.0.0.9"),
        "the CA's error message is logged: {failure}"
    );
    let retry = std::fs::read_to_string(
        pebble::files_under(store.path())
            .iter()
            .find(|f| f.ends_with("retry.json"))
            .map(|f| store.path().join(f))
            .expect("the next allowed attempt is stored"),
    )
    .unwrap();
    assert!(retry.contains("\"failures\":"), "{retry}");
    // Whatever was last issued is still served and verifies.
    let served = served_leaf(https, "renew.test", &root).await.unwrap();
    assert_ne!(served, first);
    assert!(served == renewed || gw.log().matches("ACME certificate issued").count() > 1);
}

#[tokio::test]
async fn a_refused_first_order_serves_the_fallback_and_a_restart_waits_for_the_retry_time() {
    let Some(bed) = Bed::start(&["blocked.test"]).await else {
        return;
    };
    let pebble = &bed.pebble;
    // A long first retry: the restart below must not order before it.
    let config = bed
        .site(&["blocked.test"], "")
        .config()
        .replace("retry_interval = \"1s\"", "retry_interval = \"1h\"");
    let root = pebble.issuing_root().await;
    let https = bed.https();

    // Gateway::start waits for readiness, which must not wait for a certificate.
    let gw = Gateway::start(&config).await;
    eventually_long("the CA's refusal is logged", || {
        gw.log().contains("ACME order failed")
    })
    .await;
    let log = gw.log();
    assert!(log.contains("ACME certificate pending"), "{log}");
    let failure = log
        .lines()
        .find(|l| l.contains("ACME order failed"))
        .unwrap();
    assert!(
        failure.contains("rejectedIdentifier") || failure.contains("blocked"),
        "{failure}"
    );
    assert!(failure.contains("still_serving=false"), "{failure}");
    // The gateway serves meanwhile, with the self-signed fallback for the name.
    let err = served_leaf(https, "blocked.test", &root).await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );
    let got = get(local(bed.http_port), "/", &[]).await.unwrap();
    assert_eq!(got.status, 200);
    // The per-certificate state shows the failure and when the next attempt is allowed.
    let state = get(gw.admin, "/admin/acme", &[]).await.unwrap();
    assert_eq!(state.status, 200);
    let state: serde_json::Value = serde_json::from_str(&state.text()).unwrap();
    let cert = &state["certificates"][0];
    assert_eq!(cert["names"], serde_json::json!(["blocked.test"]));
    assert_eq!(cert["status"], "failed");
    assert!(cert["serial"].is_null(), "{cert}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // retry_interval is 1h: the next attempt is about an hour away (with jitter).
    let next = cert["next_attempt_unix"].as_u64().unwrap();
    assert!(next > now + 3000 && next < now + 4000, "{cert}");
    assert!(
        cert["last_error"]
            .as_str()
            .unwrap()
            .contains("blocked.test"),
        "{cert}"
    );
    drop(gw);

    // A restart (a crash loop) reads the stored retry time and does not ask the CA again.
    let gw = Gateway::start(&config).await;
    eventually("the paused attempts are logged", || {
        gw.log().contains("ACME attempts paused after failures")
    })
    .await;
    assert!(
        !gw.log().contains("ordering an ACME certificate"),
        "{}",
        gw.log()
    );
}

/// [`eventually`] with room for an ACME round trip.
async fn eventually_long<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < ISSUE_WAIT,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
