//! The HTTPS client instant-acme talks to the CA through: system roots, or only the PEM roots
//! of `acme.ca_roots` (a private CA such as a test one), and a note of the last `Retry-After`
//! the CA sent with an error, which instant-acme does not pass on with its errors.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The longest a CA's `Retry-After` is believed; a larger value is clamped to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// The last `Retry-After` an error response carried.
#[derive(Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// Takes the recorded time, leaving none.
    pub fn take(&self) -> Option<SystemTime> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read CA roots {path}: {message}")]
    Roots { path: String, message: String },
    #[error("cannot set up the platform's certificate verifier: {0}")]
    Platform(rustls::Error),
}

/// The HTTPS client for one CA.
pub struct AcmeHttp {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfter,
}

impl AcmeHttp {
    /// A client trusting the system's roots, or only those in `ca_roots`.
    pub fn new(ca_roots: Option<&Path>, retry_after: RetryAfter) -> Result<Self, ClientError> {
        let builder = match ca_roots {
            Some(path) => {
                let roots_err = |message: String| ClientError::Roots {
                    path: path.display().to_string(),
                    message,
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| roots_err(e.to_string()))?;
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(roots_err("no usable certificate".to_owned()));
                }
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| roots_err(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
            None => HttpsConnectorBuilder::new()
                .try_with_platform_verifier()
                .map_err(ClientError::Platform)?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry_after,
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.client.request(req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let rsp = fut
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if rsp.status().is_client_error() || rsp.status().is_server_error() {
                if let Some(at) = parse_retry_after(rsp.headers(), SystemTime::now()) {
                    retry_after.set(at);
                }
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// `Retry-After` as seconds or an HTTP date, clamped to [`MAX_RETRY_AFTER`] from `now`.
fn parse_retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<SystemTime> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let at = match value.parse::<u64>() {
        Ok(secs) => now + Duration::from_secs(secs).min(MAX_RETRY_AFTER),
        Err(_) => httpdate::parse_http_date(value).ok()?,
    };
    Some(at.min(now + MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::parse_retry_after;

    #[test]
    fn retry_after_as_seconds_or_date_and_clamped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = http::HeaderMap::new();
        assert_eq!(parse_retry_after(&headers, now), None);
        headers.insert("retry-after", "120".parse().unwrap());
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(now + Duration::from_secs(120))
        );
        headers.insert("retry-after", "99999999999".parse().unwrap());
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(now + Duration::from_secs(7 * 86_400))
        );
        headers.insert(
            "retry-after",
            "Tue, 14 Nov 2023 22:15:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100))
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&headers, now), None);
    }
}
