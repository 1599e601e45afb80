//! What can go wrong when sending through a pool, as a bounded set of kinds.

use std::error::Error as StdError;
use std::fmt;

/// Boxed error used as the `source` of pool failures.
pub(super) type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a request could not be sent or answered. Bounded, so usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The replica refused the TCP connection.
    ConnectRefused,
    /// The TCP connection was not established within `connect_timeout`.
    ConnectTimeout,
    /// Any other failure to connect.
    Connect,
    /// No connection became available within `queue_timeout`.
    QueueTimeout,
    /// The connection closed before a full response head arrived.
    Closed,
    /// The connection was reset.
    Reset,
    /// The response head was larger than `max_response_header`.
    ResponseHeadTooLarge,
    /// No response head within `upstream_header` of the request being sent in full.
    HeaderTimeout,
    /// Anything else (a malformed response, a failing request body, ...).
    Other,
}

impl ErrorKind {
    /// A stable snake_case label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Connect => "connect",
            Self::QueueTimeout => "queue_timeout",
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::ResponseHeadTooLarge => "response_head_too_large",
            Self::HeaderTimeout => "header_timeout",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed [`Pool::send`](super::Pool::send).
pub struct SendError<B> {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The request's body, when it is certain that no byte of the request reached the
    /// upstream (connect failure, queue timeout, or a reused connection refused its first
    /// byte) — so the caller may send it elsewhere, with the head it kept.
    pub body: Option<B>,
    /// The underlying error, if any.
    pub source: Option<BoxError>,
}

impl<B> fmt::Debug for SendError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("kind", &self.kind)
            .field("body_returned", &self.body.is_some())
            .field("source", &self.source)
            .finish()
    }
}

impl<B> fmt::Display for SendError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream request failed: {}", self.kind)
    }
}

impl<B> StdError for SendError<B> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A failure before the request was written; becomes a [`SendError`] with the request.
pub(super) struct Failure {
    pub(super) kind: ErrorKind,
    pub(super) source: Option<BoxError>,
}

impl Failure {
    pub(super) fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    pub(super) fn with_body<B>(self, body: B) -> SendError<B> {
        SendError {
            kind: self.kind,
            body: Some(body),
            source: self.source,
        }
    }
}
