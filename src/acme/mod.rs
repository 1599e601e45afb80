//! ACME: certificates obtained and renewed automatically, safely for a cluster of gateways.
//!
//! [`start`] opens the store, then runs one task per `[[acme.certificates]]` entry
//! (`manage.rs`): load the stored certificate into the [`CertStore`], and when none is stored
//! or renewal is due, take the set's lock in the store and order one (`order.rs`), or, while
//! another replica holds the lock, wait and pick its result up from the store. Failures back
//! off (`renew.rs`) with the next allowed attempt kept in the store. Challenges are answered
//! from [`challenge::Challenges`]: HTTP-01 by the service before anything else, TLS-ALPN-01
//! by the listener from the ClientHello.
//!
//! The gateway never waits for ACME: until a certificate is issued, handshakes for its names
//! get the fallback certificate.

mod client;
mod manage;
mod order;
mod renew;

pub mod challenge;
pub mod store;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};

use crate::config;
use crate::tls::CertStore;
use challenge::Challenges;
use client::{AcmeHttp, ClientError, RetryAfter};
use store::{Backend, DirStore, Locked, RedisStore, Store, StoreError};

/// Why ACME could not start.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME storage: {0}")]
    Store(#[from] StoreError),
    #[error("ACME client: {0}")]
    Client(#[from] ClientError),
}

/// Where one certificate set stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No certificate yet; the fallback is served.
    Pending,
    /// A certificate is served and not yet due.
    Valid,
    /// An order is under way (a certificate may already be served).
    Renewing,
    /// The last attempt failed; `next_attempt` says when the next one is allowed.
    Failed,
}

impl Status {
    /// Bounded label for the status page and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Renewing => "renewing",
            Self::Failed => "failed",
        }
    }
}

/// What the status page and metrics show for one `[[acme.certificates]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertState {
    pub names: Vec<String>,
    pub status: Status,
    /// Of the certificate being served, if any.
    pub not_after: Option<SystemTime>,
    /// Lower-case hex serial of the certificate being served, if any.
    pub serial_hex: Option<String>,
    /// The next renewal, retry or check.
    pub next_attempt: Option<SystemTime>,
    /// The last failure's message (the CA's own words where it gave any).
    pub last_error: Option<String>,
}

/// The running ACME side: challenge answers for the data plane, states for observability.
pub struct Acme {
    challenges: Arc<Challenges>,
    states: Arc<Vec<Mutex<CertState>>>,
}

impl Acme {
    /// Pending challenge material, for the HTTP-01 hook and the TLS-ALPN-01 handshake.
    pub fn challenges(&self) -> &Challenges {
        &self.challenges
    }

    /// One entry per `[[acme.certificates]]`, in config order.
    pub fn list(&self) -> Vec<CertState> {
        self.states
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }
}

impl Acme {
    /// [`Acme::list`] as JSON for the admin listener's `/admin/acme`: times as Unix seconds,
    /// `null` where unknown.
    pub fn status_json(&self) -> String {
        let unix = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
        };
        let certificates: Vec<serde_json::Value> = self
            .list()
            .into_iter()
            .map(|s| {
                serde_json::json!({
                    "names": s.names,
                    "status": s.status.as_str(),
                    "serial": s.serial_hex,
                    "not_after_unix": unix(s.not_after),
                    "next_attempt_unix": unix(s.next_attempt),
                    "last_error": s.last_error,
                })
            })
            .collect();
        serde_json::json!({ "certificates": certificates }).to_string()
    }
}

/// What every certificate task shares.
pub(crate) struct Inner {
    pub(crate) config: config::Acme,
    pub(crate) store: Arc<Backend>,
    pub(crate) challenges: Arc<Challenges>,
    pub(crate) certs: Arc<CertStore>,
    pub(crate) states: Arc<Vec<Mutex<CertState>>>,
    pub(crate) retry_after: RetryAfter,
    account: tokio::sync::OnceCell<Account>,
}

/// Opens the store and starts one task per certificate set. Returns `None` when ACME is off.
pub fn start(config: &config::Acme, certs: Arc<CertStore>) -> Result<Option<Arc<Acme>>, AcmeError> {
    if !config.enabled() {
        return Ok(None);
    }
    // instant-acme's and the Redis client's rustls users may consult the process default.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let store = Arc::new(match &config.storage {
        config::Storage::Dir(path) => Backend::Dir(DirStore::open(path)?),
        config::Storage::Redis(url) => {
            Backend::Redis(RedisStore::open(url.expose(), &config.redis_prefix)?)
        }
    });
    // Built once here so that a bad `ca_roots` stops the start rather than every attempt.
    AcmeHttp::new(config.ca_roots.as_deref(), RetryAfter::default())?;
    let challenges = Arc::new(Challenges::new(Arc::clone(&store)));
    let states: Vec<Mutex<CertState>> = config
        .certificates
        .iter()
        .map(|c| {
            Mutex::new(CertState {
                names: c.names.clone(),
                status: Status::Pending,
                not_after: None,
                serial_hex: None,
                next_attempt: None,
                last_error: None,
            })
        })
        .collect();
    let states = Arc::new(states);
    tracing::info!(
        directory = %config.directory,
        challenge = config.challenge.as_str(),
        storage = %store.describe(),
        certificates = config.certificates.len(),
        "ACME on"
    );
    let inner = Arc::new(Inner {
        config: config.clone(),
        store,
        challenges: Arc::clone(&challenges),
        certs,
        states: Arc::clone(&states),
        retry_after: RetryAfter::default(),
        account: tokio::sync::OnceCell::new(),
    });
    for index in 0..config.certificates.len() {
        tokio::spawn(manage::run(Arc::clone(&inner), index));
    }
    Ok(Some(Arc::new(Acme { challenges, states })))
}

impl Inner {
    /// The HTTP client for the CA.
    fn http(&self) -> Result<Box<AcmeHttp>, ClientError> {
        AcmeHttp::new(self.config.ca_roots.as_deref(), self.retry_after.clone()).map(Box::new)
    }

    /// The ACME account: from the store, or created once for the whole cluster (under the
    /// account lock) and stored.
    pub(crate) async fn account(&self) -> Result<Account, String> {
        self.account
            .get_or_try_init(|| self.load_or_create_account())
            .await
            .cloned()
    }

    async fn load_or_create_account(&self) -> Result<Account, String> {
        let id = short_hash(self.config.directory.as_bytes());
        let key = format!("accounts/{id}.json");
        let mut waited = false;
        loop {
            if let Some(bytes) = self.store.get(&key).await.map_err(|e| e.to_string())? {
                let creds: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("stored ACME account {key} is unreadable: {e}"))?;
                let http = self.http().map_err(|e| e.to_string())?;
                let account = Account::builder_with_http(http)
                    .from_credentials(creds)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(account = account.id(), "using the stored ACME account");
                return Ok(account);
            }
            let lease = match self
                .store
                .lock(&format!("account-{id}"), manage::LEASE)
                .await
            {
                Ok(Locked::Acquired(lease)) => lease,
                Ok(Locked::Held { holder }) => {
                    if !waited {
                        tracing::info!(
                            holder,
                            "another replica is creating the ACME account; waiting"
                        );
                        waited = true;
                    }
                    tokio::time::sleep(manage::wait_poll(&self.config)).await;
                    continue;
                }
                Err(err) => return Err(err.to_string()),
            };
            let created = self.create_account(&key).await;
            if let Err(err) = self.store.release(&lease).await {
                tracing::debug!("cannot release the ACME account lock: {err}");
            }
            return created;
        }
    }

    async fn create_account(&self, key: &str) -> Result<Account, String> {
        // Another replica may have finished between our miss and our lock.
        if let Some(bytes) = self.store.get(key).await.map_err(|e| e.to_string())? {
            let creds: AccountCredentials =
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            let http = self.http().map_err(|e| e.to_string())?;
            return Account::builder_with_http(http)
                .from_credentials(creds)
                .await
                .map_err(|e| e.to_string());
        }
        let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let eab = match &self.config.eab {
            Some(eab) => {
                use base64::Engine;
                let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let hmac = engine
                    .decode(eab.hmac_key.expose().trim_end_matches('='))
                    .map_err(|_| "acme.eab.hmac_key is not valid base64url".to_owned())?;
                Some(ExternalAccountKey::new(eab.kid.clone(), &hmac))
            }
            None => None,
        };
        let http = self.http().map_err(|e| e.to_string())?;
        let (account, creds) = Account::builder_with_http(http)
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(|e| format!("cannot create the ACME account: {e}"))?;
        let json = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
        self.store
            .put(key, &json)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            account = account.id(),
            "created and stored the ACME account"
        );
        Ok(account)
    }
}

/// 64-bit FNV-1a as 16 hex digits: a stable name for storage keys (std's hasher may change
/// between releases, and stored names must not).
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
