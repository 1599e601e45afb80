//! The request-path error enum: one exhaustive table from cause to status, log level and
//! metric label, classified by which side caused it.

use http::StatusCode;

use crate::normalize::TargetError;
use crate::upstream::pool::ErrorKind;

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something the gateway will not forward.
    Client,
    /// The upstream could not be reached or misbehaved.
    Upstream,
    /// The gateway itself.
    Internal,
}

/// Why a request did not get a response from an app (or a redirect).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Bad `Host`/`:authority` or path.
    #[error("bad request target: {0}")]
    Target(#[from] TargetError),
    /// The request target is longer than `server.max_uri`.
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    /// No route matches host and path.
    #[error("no route")]
    NoRoute,
    /// The resolved client is denied by the route's allow/deny lists.
    #[error("client address not allowed")]
    Forbidden,
    /// `Content-Length` above the route's `max_body`, or a chunked body that grew past it.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client stopped sending its body for `client_body_idle`.
    #[error("request body idle timeout")]
    BodyTimeout,
    /// The client's body stream broke.
    #[error("client request body aborted")]
    BodyAborted,
    /// An `Expect` other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// A method the route cannot serve (static files, redirects are fine with any).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A static route could not serve the path.
    #[error("static file: {0}")]
    File(FileError),
    /// Over one of the route's rate limits; the denial carries the 429's headers.
    #[error("rate limit {} exceeded", .0.limit)]
    RateLimited(Box<crate::ratelimit::Denial>),
    /// No replica can take the request.
    #[error("no replica available for upstream {0}")]
    NoReplica(std::sync::Arc<str>),
    /// The upstream connection failed or the upstream sent something unusable.
    #[error("upstream {upstream} ({replica}): {kind}")]
    Upstream {
        /// Upstream name.
        upstream: std::sync::Arc<str>,
        /// Replica address.
        replica: std::sync::Arc<str>,
        /// What failed.
        kind: UpstreamFailure,
    },
}

/// Why a static route did not serve a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Nothing servable at the path, a hidden name, or a symlink leading out of the root.
    #[error("not found")]
    NotFound,
    /// An escape in the path decodes to `/`, `\`, NUL or a control byte.
    #[error("bad path")]
    BadPath,
    /// Reading the file failed (permissions, I/O).
    #[error("read failed")]
    Io,
}

/// How an upstream exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    /// A pool-level failure (`upstream_header` included: the pool runs that clock).
    #[error("{}", .0.as_str())]
    Pool(ErrorKind),
}

impl RequestError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Target(TargetError::UriTooLong) | Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::Target(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyAborted => StatusCode::BAD_REQUEST,
            Self::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::File(FileError::NotFound) => StatusCode::NOT_FOUND,
            Self::File(FileError::BadPath) => StatusCode::BAD_REQUEST,
            Self::File(FileError::Io) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NoReplica(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { kind, .. } => match kind {
                UpstreamFailure::Pool(ErrorKind::HeaderTimeout | ErrorKind::ConnectTimeout) => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                UpstreamFailure::Pool(ErrorKind::QueueTimeout) => StatusCode::SERVICE_UNAVAILABLE,
                UpstreamFailure::Pool(
                    ErrorKind::ConnectRefused
                    | ErrorKind::Connect
                    | ErrorKind::Closed
                    | ErrorKind::Reset
                    | ErrorKind::ResponseHeadTooLarge
                    | ErrorKind::Other,
                ) => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// Which side caused it; client errors are logged at debug, upstream ones at warn.
    pub fn side(&self) -> Side {
        match self {
            Self::Target(_)
            | Self::UriTooLong(_)
            | Self::NoRoute
            | Self::Forbidden
            | Self::BodyTooLarge(_)
            | Self::BodyTimeout
            | Self::BodyAborted
            | Self::ExpectationFailed
            | Self::MethodNotAllowed
            | Self::File(FileError::NotFound | FileError::BadPath) => Side::Client,
            Self::RateLimited(_) => Side::Client,
            Self::NoReplica(_) | Self::Upstream { .. } => Side::Upstream,
            Self::File(FileError::Io) => Side::Internal,
        }
    }

    /// The short plain-text body the client gets.
    pub fn body(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "bad request\n",
            StatusCode::NOT_FOUND => "not found\n",
            StatusCode::FORBIDDEN => "forbidden\n",
            StatusCode::PAYLOAD_TOO_LARGE => "request body too large\n",
            StatusCode::REQUEST_TIMEOUT => "request timeout\n",
            StatusCode::URI_TOO_LONG => "request target too long\n",
            StatusCode::EXPECTATION_FAILED => "expectation failed\n",
            StatusCode::METHOD_NOT_ALLOWED => "method not allowed\n",
            StatusCode::TOO_MANY_REQUESTS => "too many requests\n",
            StatusCode::SERVICE_UNAVAILABLE => "service unavailable\n",
            StatusCode::GATEWAY_TIMEOUT => "upstream timed out\n",
            StatusCode::INTERNAL_SERVER_ERROR => "internal error\n",
            _ => "bad gateway\n",
        }
    }
}
