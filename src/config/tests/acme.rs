use std::path::PathBuf;
use std::time::Duration;

use super::super::{Challenge, KeyType, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING, Storage};
use super::{LISTENER, assert_error, fake_env, one_error, parse_errors, parse_ok, parse_ok_env};

/// A plain and a TLS listener, so either challenge type has somewhere to be answered.
const BOTH: &str = "[listeners.http]\nlisten = \"127.0.0.1:0\"\n[listeners.https]\nlisten = \"127.0.0.1:0\"\ntls = true\n";

#[test]
fn off_by_default_with_lets_encrypt_defaults() {
    let config = parse_ok(LISTENER);
    let acme = &config.acme;
    assert!(!acme.enabled());
    assert_eq!(acme.directory, LETS_ENCRYPT_PRODUCTION);
    assert_eq!(acme.challenge, Challenge::Http01);
    assert_eq!(acme.key_type, KeyType::EcdsaP256);
    assert!((acme.renew_before - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(acme.check_interval, Duration::from_secs(3600));
    assert_eq!(acme.retry_interval, Duration::from_secs(300));
    assert!(
        matches!(&acme.storage, Storage::Dir(p) if p == &PathBuf::from("/var/lib/edgeward/acme"))
    );
}

#[test]
fn a_full_section_is_read() {
    let text = format!(
        "{BOTH}[acme]\nstaging = true\nemail = \"ops@example.com\"\nchallenge = \"tls-alpn-01\"\n\
         storage = \"dir:state/acme\"\nkey_type = \"ecdsa-p384\"\nrenew_before = 0.5\n\
         check_interval = \"1s\"\nretry_interval = \"2s\"\n\
         eab = {{ kid = \"kid-1\", hmac_key = \"${{EAB}}\" }}\n\
         [[acme.certificates]]\nnames = [\"App.Test\", \"www.app.test\"]\n\
         [[acme.certificates]]\nnames = [\"api.test\"]\n"
    );
    let config = parse_ok_env(&text, &fake_env(&[("EAB", "c2VjcmV0")]));
    let acme = &config.acme;
    assert!(acme.enabled());
    assert_eq!(acme.directory, LETS_ENCRYPT_STAGING);
    assert_eq!(acme.email.as_deref(), Some("ops@example.com"));
    assert_eq!(acme.challenge, Challenge::TlsAlpn01);
    assert_eq!(acme.key_type, KeyType::EcdsaP384);
    assert_eq!(acme.renew_before, 0.5);
    assert_eq!(acme.check_interval, Duration::from_secs(1));
    assert!(
        matches!(&acme.storage, Storage::Dir(p) if p == &PathBuf::from("/etc/edgeward/state/acme"))
    );
    let eab = acme.eab.as_ref().expect("eab");
    assert_eq!(eab.kid, "kid-1");
    assert_eq!(eab.hmac_key.expose(), "c2VjcmV0");
    assert_eq!(acme.certificates[0].names, ["app.test", "www.app.test"]);
    assert_eq!(acme.certificates[1].names, ["api.test"]);
    // Neither the EAB key nor anything else secret reaches a Debug dump (which logs may show).
    assert!(!format!("{config:?}").contains("c2VjcmV0"));
}

#[test]
fn redis_storage_keeps_its_url_out_of_debug() {
    let text = format!(
        "{BOTH}[acme]\nstorage = \"rediss://:hunter2@redis.internal:6380/0\"\nredis_prefix = \"gw:\"\n\
         [[acme.certificates]]\nnames = [\"app.test\"]\n"
    );
    let config = parse_ok(&text);
    match &config.acme.storage {
        Storage::Redis(url) => {
            assert_eq!(url.expose(), "rediss://:hunter2@redis.internal:6380/0");
            assert_eq!(config.acme.redis_prefix, "gw:");
        }
        other => panic!("expected redis storage, got {other:?}"),
    }
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn names_are_checked() {
    let text = format!(
        "{BOTH}[acme]\n[[acme.certificates]]\nnames = [\"*.app.test\", \"10.0.0.1\", \"bad name\", \"ok.test\"]\n\
         [[acme.certificates]]\nnames = [\"OK.test\"]\n"
    );
    let errors = parse_errors(&text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_error(&errors[0], "acme.certificates[0].names[0]", 8, "DNS-01");
    assert_error(
        &errors[1],
        "acme.certificates[0].names[1]",
        8,
        "not a DNS name",
    );
    assert_error(
        &errors[2],
        "acme.certificates[0].names[2]",
        8,
        "not a DNS name",
    );
    assert_error(
        &errors[3],
        "acme.certificates[1].names[0]",
        10,
        "already in acme.certificates[0]",
    );
}

#[test]
fn the_challenge_needs_a_listener() {
    let error = one_error(
        "[listeners.https]\nlisten = \"127.0.0.1:0\"\ntls = true\n[acme]\n[[acme.certificates]]\nnames = [\"a.test\"]\n",
    );
    assert_error(
        &error,
        "acme.challenge",
        5,
        "http-01 challenge needs a plain listener",
    );
    let error = one_error(&format!(
        "{LISTENER}[acme]\nchallenge = \"tls-alpn-01\"\n[[acme.certificates]]\nnames = [\"a.test\"]\n"
    ));
    assert_error(&error, "acme.certificates", 5, "tls = true");
}

#[test]
fn bad_values_name_their_key() {
    let text = format!(
        "{BOTH}[acme]\ndirectory = \"ftp://ca\"\nrenew_before = 1.5\nchallenge = \"dns-01\"\n\
         key_type = \"rsa\"\neab = {{ kid = \"k\" }}\n[[acme.certificates]]\nnames = [\"a.test\"]\n"
    );
    let errors = parse_errors(&text);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "acme.directory",
            "acme.renew_before",
            "acme.challenge",
            "acme.key_type",
            "acme.eab"
        ],
        "{errors:#?}"
    );
}

#[test]
fn an_unreadable_ca_roots_file_is_reported_only_when_acme_is_on() {
    let off = format!("{BOTH}[acme]\nca_roots = \"/nonexistent/roots.pem\"\n");
    assert!(parse_ok(&off).acme.ca_roots.is_some());
    let on = format!("{off}[[acme.certificates]]\nnames = [\"a.test\"]\n");
    let error = one_error(&on);
    assert_error(&error, "acme.ca_roots", 7, "cannot read");
}
