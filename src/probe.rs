//! `edgeward probe URL`: a tiny HTTP GET for container health checks.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a probe could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host:port/path`.
    #[error("expected an http:// URL with a host")]
    BadUrl,
    /// Connecting or exchanging failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// HTTP failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

/// GETs `url` (plain HTTP only: probes target the probe or admin listener) and returns the
/// status.
pub async fn get(url: &str, timeout: Duration) -> Result<StatusCode, ProbeError> {
    let uri: Uri = url.parse().map_err(|_| ProbeError::BadUrl)?;
    if uri.scheme_str() != Some("http") {
        return Err(ProbeError::BadUrl);
    }
    let authority = uri.authority().ok_or(ProbeError::BadUrl)?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let exchange = async move {
        let stream = TcpStream::connect((host.as_str(), port)).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(http::header::HOST, authority.as_str())
            .header(http::header::USER_AGENT, "edgeward-probe")
            .body(Empty::<Bytes>::new())
            .map_err(|_| ProbeError::BadUrl)?;
        Ok::<_, ProbeError>(sender.send_request(req).await?.status())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ProbeError::Timeout)?
}
