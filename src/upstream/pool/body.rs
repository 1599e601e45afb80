//! The response body that carries a pooled connection until its last byte.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A connection lent to a response body; erases the request body type so [`PooledBody`] is
/// one concrete type for every pool.
pub(super) trait Lease: Send + Sync {
    /// Put the connection back in its pool (or drop it if the pool is gone or retired).
    fn give_back(self: Box<Self>);
}

/// The upstream response body: wraps [`Incoming`] and returns the connection to the pool at end
/// of stream; dropping it early discards the connection (it may be mid-message).
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Box<dyn Lease>>,
}

impl PooledBody {
    /// `lease` is `None` when the connection must not be reused or is already back.
    pub(super) fn new(inner: Incoming, lease: Option<Box<dyn Lease>>) -> Self {
        Self { inner, lease }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.give_back();
        }
    }
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("inner", &self.inner)
            .field("leased", &self.lease.is_some())
            .finish()
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            // Released on the last data frame too: a consumer that trusts `is_end_stream` may
            // never poll again.
            None => this.release(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
            Some(Err(_)) => this.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
