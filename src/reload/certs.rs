//! Certificate files across reloads: each `[[tls.certificates]]` entry keeps the certificate
//! it serves and a hash of the bytes it came from, so a change to the files reloads exactly
//! the pairs that changed and a broken pair keeps serving its previous certificate.

use std::hash::Hasher;
use std::path::Path;

use crate::config::{CertificateFiles, Config, HostMatch};
use crate::tls::{self, CertSource, CertStore, LoadedCert, TlsError};

/// One configured certificate pair and what it serves now.
#[derive(Clone)]
pub struct CertSlot {
    /// The entry as configured.
    pub files: CertificateFiles,
    /// Hash of the certificate and key bytes `cert` was loaded from.
    hash: u64,
    /// What handshakes get.
    pub cert: LoadedCert,
}

/// Reads both files of a pair once, so the hash and the certificate come from the same bytes.
fn read_pair(files: &CertificateFiles) -> Result<(u64, Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert = read(&files.cert)?;
    let key = read(&files.key)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(&cert);
    h.write_u8(0);
    h.write(&key);
    Ok((h.finish(), cert, key))
}

fn load(files: &CertificateFiles) -> Result<CertSlot, TlsError> {
    let (hash, cert_pem, key_pem) = read_pair(files)?;
    let source = CertSource::File {
        cert: files.cert.clone(),
        key: files.key.clone(),
    };
    Ok(CertSlot {
        files: files.clone(),
        hash,
        cert: tls::load_pem(&cert_pem, &key_pem, source)?,
    })
}

/// Loads every configured pair; the first failure names its index in the list.
pub fn load_all(files: &[CertificateFiles]) -> Result<Vec<CertSlot>, (usize, TlsError)> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| load(f).map_err(|e| (i, e)))
        .collect()
}

/// Publishes the slots' certificates as the store's file certificates.
pub fn publish(store: &CertStore, slots: &[CertSlot]) {
    store.set_files(
        slots
            .iter()
            .map(|s| (s.cert.clone(), s.files.default))
            .collect(),
    );
}

/// Whether two certificate lists name the same files with the same default.
pub fn same_list(a: &[CertificateFiles], b: &[CertificateFiles]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.cert == y.cert && x.key == y.key && x.default == y.default)
}

/// What re-reading the files of the current slots found.
pub struct Refresh {
    /// The slots to serve: changed pairs replaced, broken ones kept as they were.
    pub slots: Vec<CertSlot>,
    /// Whether any pair was replaced.
    pub changed: bool,
    /// Broken pairs, by index, with why; each keeps its previous certificate.
    pub broken: Vec<(usize, TlsError)>,
}

/// Re-reads every pair; a pair whose bytes did not change is not parsed again.
pub fn refresh(current: &[CertSlot]) -> Refresh {
    let mut out = Refresh {
        slots: current.to_vec(),
        changed: false,
        broken: Vec::new(),
    };
    for (i, slot) in out.slots.iter_mut().enumerate() {
        let loaded = read_pair(&slot.files).and_then(|(hash, cert_pem, key_pem)| {
            if hash == slot.hash {
                return Ok(None);
            }
            let source = CertSource::File {
                cert: slot.files.cert.clone(),
                key: slot.files.key.clone(),
            };
            tls::load_pem(&cert_pem, &key_pem, source).map(|cert| Some((hash, cert)))
        });
        match loaded {
            Ok(None) => {}
            Ok(Some((hash, cert))) => {
                tracing::info!(
                    cert = %slot.files.cert.display(),
                    serial = %cert.serial_hex,
                    "certificate reloaded"
                );
                slot.hash = hash;
                slot.cert = cert;
                out.changed = true;
            }
            Err(err) => out.broken.push((i, err)),
        }
    }
    out
}

/// The self-signed fallback for a config that lists no certificate files, as at startup.
pub fn self_signed(config: &Config) -> Result<LoadedCert, TlsError> {
    let names: Vec<String> = config
        .routes
        .iter()
        .filter_map(|r| match &r.host {
            Some(HostMatch::Exact(h)) => Some(h.clone()),
            _ => None,
        })
        .collect();
    tls::self_signed(&config.tls.self_signed_dir, &names).map(|(cert, _origin)| cert)
}
