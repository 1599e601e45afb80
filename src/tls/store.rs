//! The certificate store: every certificate the gateway can serve, and the SNI lookup table
//! rustls consults on each handshake.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::LoadedCert;

/// One swappable set of certificates.
///
/// Lookup for an SNI name: the exact name, then a one-label wildcard (`*.example.com` covers
/// `a.example.com`, not `example.com` nor `x.a.example.com`), then the default certificate.
/// When several sources cover a name, a file certificate wins over an ACME one, which wins over
/// the self-signed one; between file certificates the first in config order wins, between ACME
/// certificates the most recently set.
///
/// The default is the file certificate flagged `default` (else the first file one), else the
/// oldest ACME one, else the self-signed one.
///
/// Writers rebuild a whole lookup table and swap it in, so a handshake does one atomic load and
/// at most two hash lookups, and reload or ACME renewal never touches listeners.
pub struct CertStore {
    table: ArcSwap<Table>,
    /// What the table is built from. Only writers and [`CertStore::list`] lock it.
    sources: Mutex<Sources>,
}

/// What [`CertStore::list`] reports for each loaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub not_after: SystemTime,
    /// `"file"`, `"acme"` or `"self_signed"`.
    pub source: &'static str,
    pub serial_hex: String,
    /// Served to clients whose SNI matches nothing.
    pub default: bool,
}

#[derive(Default)]
struct Table {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`: `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// Exact name, then one-label wildcard.
fn lookup(table: &Table, name: &str) -> Option<Arc<CertifiedKey>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    // rustls lower-cases SNI already; the admin page and tests may not.
    let lowered;
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = name.to_ascii_lowercase();
        lowered.as_str()
    } else {
        name
    };
    if let Some(key) = table.exact.get(name) {
        return Some(Arc::clone(key));
    }
    name.split_once('.')
        .and_then(|(_, parent)| table.wildcard.get(parent))
        .map(Arc::clone)
}

#[derive(Default)]
struct Sources {
    files: Vec<LoadedCert>,
    default_file: usize,
    /// In the order they were set.
    acme: Vec<LoadedCert>,
    self_signed: Option<LoadedCert>,
}

impl CertStore {
    /// An empty store: every handshake fails until a certificate is set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            table: ArcSwap::from_pointee(Table::default()),
            sources: Mutex::new(Sources::default()),
        })
    }

    /// Replace all file-sourced certificates. The one flagged `true` is the default; if none
    /// is, the first is.
    pub fn set_files(&self, certs: Vec<(LoadedCert, bool)>) {
        let default_file = certs.iter().position(|(_, default)| *default).unwrap_or(0);
        self.update(|sources| {
            sources.files = certs.into_iter().map(|(cert, _)| cert).collect();
            sources.default_file = default_file;
        });
    }

    /// Insert an ACME-issued certificate, replacing any earlier ACME certificate for the same
    /// set of names (a renewal).
    pub fn set_acme(&self, cert: LoadedCert) {
        self.update(|sources| {
            let mut names = cert.names.clone();
            names.sort_unstable();
            sources.acme.retain(|old| {
                let mut old_names = old.names.clone();
                old_names.sort_unstable();
                old_names != names
            });
            sources.acme.push(cert);
        });
    }

    /// Set (or replace) the self-signed fallback.
    pub fn set_self_signed(&self, cert: LoadedCert) {
        self.update(|sources| sources.self_signed = Some(cert));
    }

    /// What is loaded now: file certificates in config order, then ACME ones, then the
    /// self-signed one.
    pub fn list(&self) -> Vec<CertInfo> {
        let default = self.table.load().default.clone();
        let sources = self.lock();
        sources
            .files
            .iter()
            .chain(&sources.acme)
            .chain(&sources.self_signed)
            .map(|cert| CertInfo {
                names: cert.names.clone(),
                not_after: cert.not_after,
                source: cert.source.label(),
                serial_hex: cert.serial_hex.clone(),
                default: default.as_ref().is_some_and(|d| Arc::ptr_eq(d, &cert.key)),
            })
            .collect()
    }

    /// True when no certificate at all is loaded (every handshake would fail).
    pub fn is_empty(&self) -> bool {
        self.table.load().default.is_none()
    }

    /// The certificate a handshake with this SNI would get.
    pub fn resolve_name(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        sni.and_then(|name| lookup(&table, name))
            .or_else(|| table.default.clone())
    }

    /// Whether some certificate names this host (exactly or by wildcard), not counting the
    /// default: decides which plain-HTTP hosts get an HTTPS redirect.
    pub fn covers(&self, host: &str) -> bool {
        lookup(&self.table.load(), host).is_some()
    }

    /// Change the sources and publish a table rebuilt from them. The lock is held across the
    /// rebuild so two writers cannot publish tables in the opposite order of their changes.
    fn update(&self, change: impl FnOnce(&mut Sources)) {
        let mut sources = self.lock();
        change(&mut sources);
        self.table.store(Arc::new(build(&sources)));
    }

    fn lock(&self) -> MutexGuard<'_, Sources> {
        // A panic while holding the lock cannot leave `Sources` half-updated in a way that
        // matters: each field is replaced whole.
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn build(sources: &Sources) -> Table {
    let mut table = Table::default();
    // Insert from lowest to highest precedence, so later inserts override earlier ones.
    let ordered = sources
        .self_signed
        .iter()
        .chain(&sources.acme)
        .chain(sources.files.iter().rev());
    for cert in ordered {
        for name in &cert.names {
            let key = Arc::clone(&cert.key);
            match name.strip_prefix("*.") {
                Some(parent) => table.wildcard.insert(parent.to_owned(), key),
                None => table.exact.insert(name.clone(), key),
            };
        }
    }
    table.default = sources
        .files
        .get(sources.default_file)
        .or(sources.files.first())
        .or(sources.acme.first())
        .or(sources.self_signed.as_ref())
        .map(|cert| Arc::clone(&cert.key));
    table
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.resolve_name(client_hello.server_name())
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        f.debug_struct("CertStore")
            .field("exact_names", &table.exact.len())
            .field("wildcard_names", &table.wildcard.len())
            .field("has_default", &table.default.is_some())
            .finish()
    }
}
