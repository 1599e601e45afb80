//! One issuance: new order, challenges published (store first) and marked ready, wait for
//! the CA to validate, finalize with a fresh key's CSR, download the chain. Challenge
//! material is withdrawn whatever the outcome.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};

use super::challenge::{Challenges, PublishError};
use super::store::StoreError;
use crate::config::{Challenge, KeyType};

/// How long the CA gets to validate, and then to issue.
const POLL_FOR: Duration = Duration::from_secs(120);

/// Why an issuance failed. The messages carry the CA's own words where it gave any.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the CA offers no {challenge} challenge for {name}")]
    NoChallenge {
        name: String,
        challenge: &'static str,
    },
    #[error("validation failed: {0}")]
    Invalid(String),
    #[error("cannot publish challenge material: {0}")]
    Publish(#[from] PublishError),
    #[error("cannot publish challenge material: {0}")]
    Store(#[from] StoreError),
    #[error("cannot make the key or CSR: {0}")]
    Key(#[from] rcgen::Error),
}

/// What was published for one authorization, to withdraw afterwards.
enum Published {
    Http(String),
    Alpn(String),
}

/// Orders a certificate for `names` (replacing `replaces`, when the CA's renewal information
/// named it); returns the chain PEM followed by the key PEM.
pub async fn issue(
    account: &Account,
    names: &[String],
    challenge: Challenge,
    key_type: KeyType,
    challenges: &Challenges,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<String, IssueError> {
    let identifiers: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(id) = replaces {
        // Tells an ARI-capable CA this is a renewal (Let's Encrypt exempts those from some
        // rate limits).
        new_order = new_order.replaces(id);
    }
    let mut order = account.new_order(&new_order).await?;
    tracing::info!(names = ?names, order = %order.url(), "ACME order created");
    let mut published = Vec::new();
    let result = validate_and_finalize(
        &mut order,
        names,
        challenge,
        key_type,
        challenges,
        &mut published,
    )
    .await;
    for item in published {
        match item {
            Published::Http(token) => challenges.withdraw_http01(&token).await,
            Published::Alpn(name) => challenges.withdraw_tls_alpn01(&name).await,
        }
    }
    result
}

async fn validate_and_finalize(
    order: &mut instant_acme::Order,
    names: &[String],
    challenge: Challenge,
    key_type: KeyType,
    challenges: &Challenges,
    published: &mut Vec<Published>,
) -> Result<String, IssueError> {
    let kind = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(IssueError::Invalid(format!(
                    "authorization for {name} is {other:?}"
                )));
            }
        }
        let Some(mut ch) = authz.challenge(kind.clone()) else {
            return Err(IssueError::NoChallenge {
                name,
                challenge: challenge.as_str(),
            });
        };
        let key_auth = ch.key_authorization();
        match challenge {
            Challenge::Http01 => {
                challenges
                    .publish_http01(&ch.token, key_auth.as_str())
                    .await?;
                published.push(Published::Http(ch.token.clone()));
            }
            Challenge::TlsAlpn01 => {
                challenges
                    .publish_tls_alpn01(&name, key_auth.digest().as_ref())
                    .await?;
                published.push(Published::Alpn(name.clone()));
            }
        }
        ch.set_ready().await?;
        tracing::info!(name, challenge = challenge.as_str(), "ACME challenge ready");
    }

    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(POLL_FOR);
    let status = order.poll_ready(&policy).await?;
    if status != OrderStatus::Ready {
        return Err(IssueError::Invalid(why_invalid(order).await));
    }
    let (csr, key_pem) = csr(names, key_type)?;
    order.finalize_csr(&csr).await?;
    let chain = order.poll_certificate(&policy).await?;
    Ok(format!("{}\n{key_pem}", chain.trim_end()))
}

/// The CA's error for the first failed challenge, as it worded it.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        for ch in &authz.challenges {
            if let Some(problem) = &ch.error {
                reasons.push(format!("{name}: {problem}"));
            }
        }
    }
    if reasons.is_empty() {
        "the order became invalid".to_owned()
    } else {
        reasons.join("; ")
    }
}

/// A fresh key of `key_type` and a CSR naming `names` (no subject: CAs take SANs only).
fn csr(names: &[String], key_type: KeyType) -> Result<(Vec<u8>, String), rcgen::Error> {
    let alg = match key_type {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key = KeyPair::generate_for(alg)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}
