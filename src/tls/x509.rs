//! Reads the three facts the gateway needs from an X.509 certificate: its serial number, the
//! end of its validity and its subject alternative names. rustls never parses the
//! certificates it serves, so this is done once per loaded certificate with `x509-cert`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectAltName};

/// What is wrong with a certificate's encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    /// The DER does not decode as a certificate.
    #[error("malformed certificate: {0}")]
    Malformed(String),
}

impl From<x509_cert::der::Error> for X509Error {
    fn from(err: x509_cert::der::Error) -> Self {
        Self::Malformed(err.to_string())
    }
}

/// The parts of a certificate the store and the status page use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Lower-case hex of the serial number, without sign padding.
    pub serial_hex: String,
    /// The serial's DER content bytes as encoded (with any sign padding), for ACME renewal
    /// information, which names a certificate by issuer key id and encoded serial.
    pub serial_der: Vec<u8>,
    /// The authority key identifier's `keyIdentifier`, if the certificate has one.
    pub authority_key_id: Option<Vec<u8>>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// DNS names lower-cased and IP addresses as text, in certificate order, no duplicates.
    pub names: Vec<String>,
}

/// Parse `der` (one certificate) into [`CertFacts`].
pub fn parse(der: &[u8]) -> Result<CertFacts, X509Error> {
    let cert = Certificate::from_der(der)?;
    let tbs = cert.tbs_certificate();
    let mut names = Vec::new();
    let mut authority_key_id = None;
    for ext in tbs.extensions().into_iter().flatten() {
        if ext.extn_id == AuthorityKeyIdentifier::OID {
            let aki = AuthorityKeyIdentifier::from_der(ext.extn_value.as_bytes())?;
            authority_key_id = aki.key_identifier.map(|id| id.as_bytes().to_vec());
            continue;
        }
        if ext.extn_id != SubjectAltName::OID {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes())?;
        for name in san.0 {
            let text = match name {
                GeneralName::DnsName(dns) => dns.as_str().to_ascii_lowercase(),
                GeneralName::IpAddress(ip) => match ip_text(ip.as_bytes()) {
                    Some(text) => text,
                    None => continue,
                },
                _ => continue,
            };
            if !names.contains(&text) {
                names.push(text);
            }
        }
    }
    Ok(CertFacts {
        serial_hex: hex(tbs.serial_number().as_bytes()),
        serial_der: tbs.serial_number().as_bytes().to_vec(),
        authority_key_id,
        not_before: tbs.validity().not_before.to_system_time(),
        not_after: tbs.validity().not_after.to_system_time(),
        names,
    })
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(ip.to_string())
}

/// Lower-case hex without the sign-padding zero byte DER adds to positive serials.
fn hex(bytes: &[u8]) -> String {
    let trimmed = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    };
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cert(names: &[&str], serial: &[u8]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        params.not_after = rcgen::date_time_ymd(2031, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_validity_start_encoded_serial_and_authority_key_id() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x8f, 0x01]));
        params.not_before = rcgen::date_time_ymd(2030, 1, 2);
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let facts = parse(&der).unwrap();
        // 2030-01-02T00:00:00Z
        assert_eq!(
            facts.not_before,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_542_400)
        );
        // The sign-padding byte is part of the encoding ARI asks for.
        assert_eq!(facts.serial_der, [0x00, 0x8f, 0x01]);
        let aki = facts.authority_key_id.expect("authority key id");
        assert_eq!(aki.len(), 20);

        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.use_authority_key_identifier_extension = false;
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(parse(&der).unwrap().authority_key_id, None);
    }

    #[test]
    fn reads_names_serial_and_expiry() {
        let der = cert(
            &["A.Example.com", "*.example.com", "127.0.0.1", "::1"],
            &[0x8f, 0x01],
        );
        let facts = parse(&der).unwrap();
        assert_eq!(
            facts.names,
            ["a.example.com", "*.example.com", "127.0.0.1", "::1"]
        );
        assert_eq!(facts.serial_hex, "8f01");
        // 2031-03-04T00:00:00Z
        assert_eq!(
            facts.not_after,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_930_348_800)
        );
    }

    #[test]
    fn never_panics_on_truncated_or_corrupted_input() {
        let der = cert(&["a.example.com"], &[1]);
        for len in 0..der.len() {
            assert!(parse(&der[..len]).is_err(), "prefix of {len} bytes parsed");
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = parse(&bad);
        }
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn serial_sign_padding_is_dropped() {
        assert_eq!(hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(hex(&[0x00]), "00");
        assert_eq!(hex(&[0x7f]), "7f");
    }
}
