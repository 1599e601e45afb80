//! The validated `[acme]` section: which certificates to obtain, from which CA, how to prove
//! control of the names, and where the account, keys and certificates are kept.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory, chosen by `staging = true`.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[acme]`. Off unless `certificates` has an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Acme {
    /// The CA's directory URL.
    pub directory: String,
    /// Contact address for the account (without `mailto:`).
    pub email: Option<String>,
    /// External account binding, for CAs that require one.
    pub eab: Option<Eab>,
    /// How control of the names is proven.
    pub challenge: Challenge,
    /// Where the account, keys, certificates, challenge material and locks are kept.
    pub storage: Storage,
    /// Prefix of every Redis key ACME uses.
    pub redis_prefix: String,
    /// Key type of the certificates' keys.
    pub key_type: KeyType,
    /// Renew when this fraction of a certificate's lifetime remains (unless the CA's renewal
    /// information says otherwise). In (0, 1]; default 1/3. 1 renews at every check.
    pub renew_before: f64,
    /// How often each certificate's state is looked at again.
    pub check_interval: Duration,
    /// First wait after a failed attempt; doubles with each further failure, up to a day.
    pub retry_interval: Duration,
    /// PEM roots to trust for the directory's HTTPS instead of the system's (a private CA).
    pub ca_roots: Option<PathBuf>,
    /// `[[acme.certificates]]` in file order.
    pub certificates: Vec<AcmeCertificate>,
}

impl Acme {
    /// Whether any certificate is to be obtained.
    pub fn enabled(&self) -> bool {
        !self.certificates.is_empty()
    }
}

/// External account binding: the key id and MAC key the CA handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    /// Base64url-encoded HMAC key as the CA gives it.
    pub hmac_key: Secret,
}

/// The ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// A token fetched over plain HTTP on port 80.
    Http01,
    /// A validation certificate presented in a TLS handshake on port 443.
    TlsAlpn01,
}

impl Challenge {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// Where ACME state is kept; a shared one makes replicas cooperate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A directory (a shared volume for a cluster).
    Dir(PathBuf),
    /// A Redis server (`redis://` or `rediss://`).
    Redis(Secret),
}

/// Key type of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
}

/// One `[[acme.certificates]]` entry: the names one certificate covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeCertificate {
    /// Lower-case DNS names, in file order, no duplicates. The first is the certificate's
    /// name in logs and storage.
    pub names: Vec<String>,
}

/// A value that must never reach a log line: its `Debug` shows only whether it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}
