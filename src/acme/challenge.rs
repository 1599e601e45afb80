//! Challenge material while an order is open: HTTP-01 key authorizations by token, and
//! TLS-ALPN-01 validation certificates by name.
//!
//! Material is written to the shared store before it is kept in memory and before the CA is
//! told the challenge is ready, because the CA may reach any replica: a replica that misses
//! in memory looks in the store. Tokens and names are checked before any lookup, so a request
//! can never steer a store read to another key (in a directory store, the account key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::sign::CertifiedKey;

use super::store::{Backend, Store, StoreError};

/// The longest token accepted; RFC 8555 tokens are 43 characters, CAs may use more.
const MAX_TOKEN: usize = 128;

/// Pending challenge material, in memory and in the store.
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    store: Arc<Backend>,
}

/// `^[A-Za-z0-9_-]{1,128}$`: the base64url alphabet of ACME tokens, nothing that could form
/// a path.
pub fn is_token(token: &str) -> bool {
    (1..=MAX_TOKEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A lower-case DNS name as the CA sends it in SNI: labels of a-z, 0-9 and `-`.
fn is_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn http_key(token: &str) -> String {
    format!("challenges/http-01/{token}")
}

fn alpn_key(name: &str) -> String {
    format!("challenges/tls-alpn-01/{name}")
}

impl Challenges {
    /// An empty set backed by `store`.
    pub fn new(store: Arc<Backend>) -> Self {
        Self {
            http: Mutex::new(HashMap::new()),
            alpn: Mutex::new(HashMap::new()),
            store,
        }
    }

    /// The key authorization to answer `GET /.well-known/acme-challenge/<token>` with. `None`
    /// for a malformed token (never looked up) or an unknown one.
    pub async fn http01(&self, token: &str) -> Option<String> {
        if !is_token(token) {
            return None;
        }
        if let Some(found) = lock(&self.http).get(token) {
            return Some(found.clone());
        }
        match self.store.get(&http_key(token)).await {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::debug!("ACME challenge lookup in the store failed: {err}");
                None
            }
        }
    }

    /// The validation certificate for a TLS-ALPN-01 handshake naming `name`.
    pub async fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if !is_name(name) {
            return None;
        }
        if let Some(found) = lock(&self.alpn).get(name) {
            return Some(Arc::clone(found));
        }
        // Another replica's challenge: made afresh for each handshake and not kept, so that it
        // stops being answered as soon as that replica withdraws it.
        let digest = match self.store.get(&alpn_key(name)).await {
            Ok(Some(digest)) => digest,
            Ok(None) => return None,
            Err(err) => {
                tracing::debug!("ACME challenge lookup in the store failed: {err}");
                return None;
            }
        };
        match crate::tls::acme_validation_cert(name, &digest) {
            Ok(key) => Some(Arc::new(key)),
            Err(err) => {
                tracing::warn!(
                    name,
                    "cannot make the TLS-ALPN-01 validation certificate: {err}"
                );
                None
            }
        }
    }

    /// Publishes an HTTP-01 answer: store first, then memory.
    pub async fn publish_http01(&self, token: &str, key_auth: &str) -> Result<(), StoreError> {
        if !is_token(token) {
            return Err(StoreError::BadKey(token.to_owned()));
        }
        self.store
            .put(&http_key(token), key_auth.as_bytes())
            .await?;
        lock(&self.http).insert(token.to_owned(), key_auth.to_owned());
        Ok(())
    }

    /// Publishes a TLS-ALPN-01 answer (the SHA-256 digest of the key authorization): store
    /// first, then memory.
    pub async fn publish_tls_alpn01(&self, name: &str, digest: &[u8]) -> Result<(), PublishError> {
        if !is_name(name) {
            return Err(StoreError::BadKey(name.to_owned()).into());
        }
        let key = crate::tls::acme_validation_cert(name, digest)?;
        self.store.put(&alpn_key(name), digest).await?;
        lock(&self.alpn).insert(name.to_owned(), Arc::new(key));
        Ok(())
    }

    /// Forgets an HTTP-01 answer once its order is done.
    pub async fn withdraw_http01(&self, token: &str) {
        lock(&self.http).remove(token);
        if let Err(err) = self.store.delete(&http_key(token)).await {
            tracing::debug!("cannot remove ACME challenge material: {err}");
        }
    }

    /// Forgets a TLS-ALPN-01 answer once its order is done.
    pub async fn withdraw_tls_alpn01(&self, name: &str) {
        lock(&self.alpn).remove(name);
        if let Err(err) = self.store.delete(&alpn_key(name)).await {
            tracing::debug!("cannot remove ACME challenge material: {err}");
        }
    }
}

/// Why a TLS-ALPN-01 answer could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cert(#[from] crate::tls::TlsError),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each map operation is a single insert/remove/get: a panic cannot leave one half-done.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Challenges, is_name, is_token};
    use crate::acme::store::{Backend, DirStore, Store};

    fn challenges(dir: &std::path::Path) -> (Challenges, Arc<Backend>) {
        let store = Arc::new(Backend::Dir(DirStore::open(dir).unwrap()));
        (Challenges::new(Arc::clone(&store)), store)
    }

    #[tokio::test]
    async fn http01_is_stored_before_memory_and_found_by_other_replicas() {
        let tmp = tempfile::tempdir().unwrap();
        let (ours, store) = challenges(tmp.path());
        let (theirs, _) = challenges(tmp.path());
        ours.publish_http01("tok-1", "tok-1.thumb").await.unwrap();
        assert_eq!(
            store
                .get("challenges/http-01/tok-1")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"tok-1.thumb"[..])
        );
        assert_eq!(ours.http01("tok-1").await.as_deref(), Some("tok-1.thumb"));
        // Another replica has nothing in memory and finds it in the store.
        assert_eq!(theirs.http01("tok-1").await.as_deref(), Some("tok-1.thumb"));
        ours.withdraw_http01("tok-1").await;
        assert_eq!(ours.http01("tok-1").await, None);
        assert_eq!(theirs.http01("tok-1").await, None);
    }

    #[tokio::test]
    async fn a_malformed_token_is_never_looked_up() {
        let tmp = tempfile::tempdir().unwrap();
        let (challenges, store) = challenges(tmp.path());
        // "a.b" is a valid store key but not a token: if it were looked up, it would be found.
        store
            .put("challenges/http-01/a.b", b"secret")
            .await
            .unwrap();
        assert_eq!(challenges.http01("a.b").await, None);
        assert_eq!(challenges.http01("..").await, None);
    }

    #[tokio::test]
    async fn tls_alpn01_copies_from_the_store_end_with_the_challenge() {
        let tmp = tempfile::tempdir().unwrap();
        let (ours, _) = challenges(tmp.path());
        let (theirs, _) = challenges(tmp.path());
        let digest = [7u8; 32];
        ours.publish_tls_alpn01("app.test", &digest).await.unwrap();
        assert!(ours.tls_alpn01("app.test").await.is_some());
        assert!(theirs.tls_alpn01("app.test").await.is_some());
        assert!(theirs.tls_alpn01("other.test").await.is_none());
        assert!(theirs.tls_alpn01("App.Test").await.is_none());
        ours.withdraw_tls_alpn01("app.test").await;
        assert!(ours.tls_alpn01("app.test").await.is_none());
        assert!(theirs.tls_alpn01("app.test").await.is_none());
    }

    #[test]
    fn tokens_are_base64url_only() {
        assert!(is_token("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"));
        assert!(is_token(&"a".repeat(128)));
        for bad in [
            "",
            "..",
            "a/b",
            "a%2Fb",
            "a.b",
            "a b",
            "ä",
            "../account",
            &"a".repeat(129),
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_are_lower_case_dns() {
        assert!(is_name("app.test"));
        assert!(is_name("www.app-1.test"));
        for bad in ["", "App.test", "a..b", "../x", "a/b", "a_b.test"] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
