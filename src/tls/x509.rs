//! Reads the three facts the gateway needs from an X.509 certificate: its serial number, the
//! end of its validity and its subject alternative names.
//!
//! rustls never parses the certificates it serves, and the only X.509 parser in the dependency
//! tree is behind an rcgen feature that would pull in a dozen crates for three fields. So this
//! is a small, bounds-checked DER walk over the fixed prefix of `TBSCertificate` (RFC 5280
//! §4.1). It never panics: every malformed input is an [`X509Error`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

/// What is wrong with a certificate's DER encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("truncated or malformed DER")]
    Malformed,
    #[error("expected {expected}, found DER tag {found:#04x}")]
    UnexpectedTag { expected: &'static str, found: u8 },
    #[error("invalid validity time")]
    BadTime,
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
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names lower-cased and IP addresses as text, in certificate order, no duplicates.
    pub names: Vec<String>,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const SAN_DNS: u8 = 0x82;
const SAN_IP: u8 = 0x87;
/// id-ce-subjectAltName, 2.5.29.17, as encoded content bytes.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// id-ce-authorityKeyIdentifier, 2.5.29.35.
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
/// `keyIdentifier [0] IMPLICIT OCTET STRING` inside AuthorityKeyIdentifier.
const AKI_KEY_ID: u8 = 0x80;

/// Parse `der` (one certificate) into [`CertFacts`].
pub fn parse(der: &[u8]) -> Result<CertFacts, X509Error> {
    let cert = Der::new(der).expect(SEQUENCE, "Certificate")?;
    let mut tbs = Der::new(Der::new(cert).expect(SEQUENCE, "TBSCertificate")?);
    if tbs.peek() == Some(VERSION) {
        tbs.read()?;
    }
    let serial = tbs.expect(INTEGER, "serialNumber")?;
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut validity = Der::new(tbs.expect(SEQUENCE, "validity")?);
    let (tag, not_before) = validity.read()?;
    let not_before = parse_time(tag, not_before)?;
    let (tag, not_after) = validity.read()?;
    let not_after = parse_time(tag, not_after)?;
    tbs.expect(SEQUENCE, "subject")?;
    tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;

    let mut names = Vec::new();
    let mut authority_key_id = None;
    // What follows is optional: issuerUniqueID [1], subjectUniqueID [2], extensions [3].
    while !tbs.is_empty() {
        let (tag, content) = tbs.read()?;
        if tag == EXTENSIONS {
            let mut exts = Der::new(Der::new(content).expect(SEQUENCE, "Extensions")?);
            while !exts.is_empty() {
                let mut ext = Der::new(exts.expect(SEQUENCE, "Extension")?);
                let oid = ext.expect(OID, "extnID")?;
                if ext.peek() == Some(BOOLEAN) {
                    ext.read()?;
                }
                let value = ext.expect(OCTET_STRING, "extnValue")?;
                if oid == OID_SUBJECT_ALT_NAME {
                    read_alt_names(value, &mut names)?;
                } else if oid == OID_AUTHORITY_KEY_ID {
                    let mut aki =
                        Der::new(Der::new(value).expect(SEQUENCE, "AuthorityKeyIdentifier")?);
                    if aki.peek() == Some(AKI_KEY_ID) {
                        authority_key_id = Some(aki.read()?.1.to_vec());
                    }
                }
            }
        }
    }
    Ok(CertFacts {
        serial_hex: hex(serial),
        serial_der: serial.to_vec(),
        authority_key_id,
        not_before,
        not_after,
        names,
    })
}

fn read_alt_names(value: &[u8], names: &mut Vec<String>) -> Result<(), X509Error> {
    let mut general_names = Der::new(Der::new(value).expect(SEQUENCE, "GeneralNames")?);
    while !general_names.is_empty() {
        let (tag, content) = general_names.read()?;
        let name = match tag {
            SAN_DNS => match std::str::from_utf8(content) {
                Ok(dns) if dns.is_ascii() => dns.to_ascii_lowercase(),
                _ => return Err(X509Error::Malformed),
            },
            SAN_IP => match <[u8; 4]>::try_from(content) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)).to_string(),
                Err(_) => match <[u8; 16]>::try_from(content) {
                    Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)).to_string(),
                    Err(_) => return Err(X509Error::Malformed),
                },
            },
            // Email, URI, directory names and the rest do not name a host.
            _ => continue,
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    // DER pads a positive INTEGER with a leading zero byte when its top bit is set; that byte is
    // encoding, not part of the serial as tools like openssl print it.
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    let mut out = String::with_capacity(2 * (bytes.len() - start));
    for b in &bytes[start..] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`, the only forms RFC 5280 allows.
fn parse_time(tag: u8, content: &[u8]) -> Result<SystemTime, X509Error> {
    let (year, rest) = match (tag, content.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&content[..2])?;
            // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &content[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&content[..4])?, &content[4..]),
        (UTC_TIME | GENERALIZED_TIME, _) => return Err(X509Error::BadTime),
        (found, _) => {
            return Err(X509Error::UnexpectedTag {
                expected: "Time",
                found,
            });
        }
    };
    if rest[10] != b'Z' {
        return Err(X509Error::BadTime);
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(X509Error::BadTime);
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    };
    time.ok_or(X509Error::BadTime)
}

fn digits(ascii: &[u8]) -> Result<u32, X509Error> {
    ascii.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(X509Error::BadTime)
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A cursor over concatenated DER TLVs.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element's tag and content.
    fn read(&mut self) -> Result<(u8, &'a [u8]), X509Error> {
        let (&tag, rest) = self.rest.split_first().ok_or(X509Error::Malformed)?;
        // Multi-byte tags (low bits all set) never occur in the fields read here.
        if tag & 0x1f == 0x1f {
            return Err(X509Error::Malformed);
        }
        let (&first, mut rest) = rest.split_first().ok_or(X509Error::Malformed)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // DER forbids the indefinite form (0x80); four length bytes cover any certificate.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return Err(X509Error::Malformed);
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(X509Error::Malformed);
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, content))
    }

    /// The next element's content, which must carry `tag`.
    fn expect(&mut self, tag: u8, expected: &'static str) -> Result<&'a [u8], X509Error> {
        match self.read()? {
            (found, content) if found == tag => Ok(content),
            (found, _) => Err(X509Error::UnexpectedTag { expected, found }),
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn times_in_both_encodings() {
        assert_eq!(
            parse_time(UTC_TIME, b"700101000000Z").unwrap(),
            SystemTime::UNIX_EPOCH
        );
        assert_eq!(
            parse_time(UTC_TIME, b"491231235959Z").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_607_999)
        );
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20500101000000Z").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_608_000)
        );
        assert_eq!(
            parse_time(UTC_TIME, b"691231235959Z").unwrap(),
            SystemTime::UNIX_EPOCH - Duration::from_secs(1)
        );
        assert_eq!(
            parse_time(UTC_TIME, b"701301000000Z"),
            Err(X509Error::BadTime)
        );
        assert_eq!(
            parse_time(UTC_TIME, b"7001010000Z"),
            Err(X509Error::BadTime)
        );
        assert_eq!(
            parse_time(UTC_TIME, b"700101000000+"),
            Err(X509Error::BadTime)
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
