use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::tls::tests::TempDir;

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn created_with_a_private_key_file_then_reused() {
    let dir = TempDir::new();
    let keep = dir.path().join("certs");
    let extra = hosts(&["App.Example.com", "*.example.com"]);

    let (first, origin) = self_signed(&keep, &extra).unwrap();
    assert_eq!(
        origin,
        SelfSignedOrigin::Created {
            path: keep.join(CERT_FILE)
        }
    );
    assert_eq!(first.source, CertSource::SelfSigned);
    let mut names = first.names.clone();
    names.sort();
    assert_eq!(
        names,
        [
            "*.example.com",
            "127.0.0.1",
            "::1",
            "app.example.com",
            "localhost"
        ]
    );
    let mode = fs::metadata(keep.join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let valid_for = first.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(valid_for > VALIDITY - Duration::from_secs(60) && valid_for <= VALIDITY);

    let (second, origin) = self_signed(&keep, &extra).unwrap();
    assert_eq!(
        origin,
        SelfSignedOrigin::Loaded {
            path: keep.join(CERT_FILE)
        }
    );
    assert_eq!(second.serial_hex, first.serial_hex);
    assert_eq!(second.source, CertSource::SelfSigned);
    // Same names in another order and spelling are the same set.
    let (third, _) = self_signed(&keep, &hosts(&["*.example.com", "app.example.com."])).unwrap();
    assert_eq!(third.serial_hex, first.serial_hex);
}

#[test]
fn regenerated_when_names_change() {
    let dir = TempDir::new();
    let (first, _) = self_signed(dir.path(), &hosts(&["a.example.com"])).unwrap();
    let (second, origin) = self_signed(dir.path(), &hosts(&["b.example.com"])).unwrap();
    assert!(
        matches!(origin, SelfSignedOrigin::Created { .. }),
        "{origin:?}"
    );
    assert_ne!(second.serial_hex, first.serial_hex);
    assert!(second.names.contains(&"b.example.com".to_owned()));
    assert!(!second.names.contains(&"a.example.com".to_owned()));
}

#[test]
fn regenerated_within_seven_days_of_expiry() {
    let dir = TempDir::new();
    let now = SystemTime::now();
    let (first, _) = self_signed_at(dir.path(), &[], now).unwrap();

    let still_fine = now + VALIDITY - MIN_REMAINING - Duration::from_secs(3600);
    let (same, origin) = self_signed_at(dir.path(), &[], still_fine).unwrap();
    assert!(
        matches!(origin, SelfSignedOrigin::Loaded { .. }),
        "{origin:?}"
    );
    assert_eq!(same.serial_hex, first.serial_hex);

    let too_late = now + VALIDITY - MIN_REMAINING + Duration::from_secs(3600);
    let (renewed, origin) = self_signed_at(dir.path(), &[], too_late).unwrap();
    assert!(
        matches!(origin, SelfSignedOrigin::Created { .. }),
        "{origin:?}"
    );
    assert_ne!(renewed.serial_hex, first.serial_hex);
}

#[test]
fn regenerated_when_the_kept_key_does_not_match() {
    let dir = TempDir::new();
    let (first, _) = self_signed(dir.path(), &[]).unwrap();
    let other_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    fs::write(dir.path().join(KEY_FILE), other_key.serialize_pem()).unwrap();

    let (second, origin) = self_signed(dir.path(), &[]).unwrap();
    assert!(
        matches!(origin, SelfSignedOrigin::Created { .. }),
        "{origin:?}"
    );
    assert_ne!(second.serial_hex, first.serial_hex);
    let (third, origin) = self_signed(dir.path(), &[]).unwrap();
    assert!(
        matches!(origin, SelfSignedOrigin::Loaded { .. }),
        "{origin:?}"
    );
    assert_eq!(third.serial_hex, second.serial_hex);
}

#[test]
fn kept_in_memory_when_the_directory_cannot_be_written() {
    let dir = TempDir::new();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let (cert, origin) = self_signed(&file.join("certs"), &[]).unwrap();
    let SelfSignedOrigin::InMemory { reason } = origin else {
        panic!("expected InMemory, got {origin:?}");
    };
    assert!(reason.contains("a-file"), "{reason}");
    assert!(cert.names.contains(&"localhost".to_owned()));
    cert.key.keys_match().unwrap();
}
