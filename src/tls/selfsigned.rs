//! The self-signed fallback certificate, so TLS listeners work before any real certificate is
//! configured or issued.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::{CertSource, LoadedCert, TlsError, load_pem};

/// File name of the kept certificate inside the self-signed directory.
pub const CERT_FILE: &str = "self-signed.pem";
/// File name of the kept private key (mode 0600) inside the self-signed directory.
pub const KEY_FILE: &str = "self-signed.key";

/// Names every fallback certificate covers, besides the route hosts.
const BASE_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A kept certificate closer than this to expiry is replaced at start.
const MIN_REMAINING: Duration = Duration::from_secs(7 * 24 * 3600);
/// `notBefore` is set this far in the past so clients with a slow clock accept it.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Where the self-signed certificate returned by [`self_signed`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfSignedOrigin {
    /// Reused from the certificate file at `path`.
    Loaded { path: PathBuf },
    /// Generated now and written to `path`.
    Created { path: PathBuf },
    /// Generated now and kept only in memory: the directory was not writable. A new one
    /// (with a new key) will be generated on every start.
    InMemory { reason: String },
}

/// The self-signed fallback: ECDSA P-256, valid for one year, for `localhost`, `127.0.0.1`,
/// `::1` and `extra_names` (the route hosts; wildcard hosts are included as wildcard DNS names,
/// which the store serves for one label like any wildcard certificate).
///
/// It is kept in `dir` as `self-signed.pem` and `self-signed.key` (the key mode 0600, both written to a
/// temporary file and renamed) and reused on the next start if it still matches its key, is
/// valid for more than 7 more days and covers exactly the same names; otherwise a new one
/// replaces it. If `dir` cannot be written the certificate is kept in memory and the origin
/// says why. This function logs which certificate is in use and where (a warning for the
/// in-memory case), so the caller need not.
pub fn self_signed(
    dir: &Path,
    extra_names: &[String],
) -> Result<(LoadedCert, SelfSignedOrigin), TlsError> {
    self_signed_at(dir, extra_names, SystemTime::now())
}

fn self_signed_at(
    dir: &Path,
    extra_names: &[String],
    now: SystemTime,
) -> Result<(LoadedCert, SelfSignedOrigin), TlsError> {
    let names = wanted_names(extra_names);
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);

    match reuse(&cert_path, &key_path, &names, now) {
        Ok(cert) => {
            tracing::info!(
                path = %cert_path.display(),
                serial = %cert.serial_hex,
                "using the kept self-signed certificate; clients will not trust it"
            );
            return Ok((cert, SelfSignedOrigin::Loaded { path: cert_path }));
        }
        Err(Stale::Absent) => {}
        Err(Stale::Unusable(why)) => {
            tracing::info!(path = %cert_path.display(), %why, "replacing the self-signed certificate");
        }
    }

    let (cert_pem, key_pem) = generate(&names, now)?;
    let cert = load_pem(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        CertSource::SelfSigned,
    )?;
    match keep(dir, &cert_path, &key_path, &cert_pem, &key_pem) {
        Ok(()) => {
            tracing::info!(
                path = %cert_path.display(),
                serial = %cert.serial_hex,
                "created a self-signed certificate; clients will not trust it"
            );
            Ok((cert, SelfSignedOrigin::Created { path: cert_path }))
        }
        Err(err) => {
            let reason = format!("cannot write to {}: {err}", dir.display());
            tracing::warn!(
                %reason,
                serial = %cert.serial_hex,
                "using a self-signed certificate kept only in memory; it changes on every start"
            );
            Ok((cert, SelfSignedOrigin::InMemory { reason }))
        }
    }
}

/// The names to cover, normalised the way certificate parsing reports them so the reuse check
/// compares like with like.
fn wanted_names(extra_names: &[String]) -> BTreeSet<String> {
    BASE_NAMES
        .iter()
        .copied()
        .chain(extra_names.iter().map(String::as_str))
        .map(|name| {
            let name = name.strip_suffix('.').unwrap_or(name);
            match name.parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => name.to_ascii_lowercase(),
            }
        })
        .collect()
}

/// Why a kept certificate is not reused.
enum Stale {
    /// Nothing kept yet.
    Absent,
    Unusable(String),
}

fn reuse(
    cert_path: &Path,
    key_path: &Path,
    names: &BTreeSet<String>,
    now: SystemTime,
) -> Result<LoadedCert, Stale> {
    let read = |path: &Path| match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(Stale::Absent),
        Err(err) => Err(Stale::Unusable(format!(
            "cannot read {}: {err}",
            path.display()
        ))),
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    // Named as the files they are, so a mismatch after an interrupted write reads clearly.
    let source = CertSource::File {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
    };
    let mut cert =
        load_pem(&cert_pem, &key_pem, source).map_err(|err| Stale::Unusable(err.to_string()))?;
    if cert.not_after < now + MIN_REMAINING {
        return Err(Stale::Unusable("it expires within 7 days".to_owned()));
    }
    let covered: BTreeSet<String> = cert.names.iter().cloned().collect();
    if &covered != names {
        return Err(Stale::Unusable("the route hosts changed".to_owned()));
    }
    cert.source = CertSource::SelfSigned;
    Ok(cert)
}

/// A new key and certificate, as PEM.
fn generate(names: &BTreeSet<String>, now: SystemTime) -> Result<(String, String), TlsError> {
    let mut params = CertificateParams::new(names.iter().cloned().collect::<Vec<_>>())?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "edgeward self-signed");
    params.distinguished_name = subject;
    let now = whole_seconds(now);
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + VALIDITY).into();
    // The serial is left to rcgen, which derives it from the new public key: unique per key.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Certificates carry whole seconds; truncating first keeps `not_after` exactly as parsed back.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => time,
    }
}

fn keep(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &str,
    key_pem: &str,
) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Key first: if the process dies between the two renames, the next start finds a key
    // that does not match the old certificate and regenerates both.
    write_atomically(key_path, key_pem.as_bytes(), 0o600)?;
    write_atomically(cert_path, cert_pem.as_bytes(), 0o644)
}

/// Write `contents` to a temporary file created with `mode`, then rename it over `path`, so a
/// reader never sees a partial file and the key is never readable by others, even briefly.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    // A leftover from a crashed run with the same pid would make `create_new` fail.
    let _ = fs::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
#[path = "selfsigned_tests.rs"]
mod tests;
