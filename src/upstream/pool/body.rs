//! The response body that carries a pooled connection until its last byte.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::conn::{Io, Upgraded};
use super::wire::{Decoded, Decoder};

/// A connection lent to a response body; erases the request body type so [`PooledBody`] is
/// one concrete type for every pool.
pub(super) trait Lease: Send + Sync {
    /// The socket and its read buffer.
    fn io(&mut self) -> &mut Io;
    /// Moves along a request body that was still uploading when the response head came.
    fn poll_upload(&mut self, cx: &mut Context<'_>);
    /// No request body is left half-sent.
    fn upload_complete(&self) -> bool;
    /// Put the connection back in its pool (or drop it if the pool is gone or retired).
    fn give_back(self: Box<Self>);
}

/// The upstream response body. A body that came whole with its head is held as bytes (its
/// connection is already back in the pool); a longer one is read from the connection as the
/// client takes it, and the connection goes back to the pool at its last byte. Dropping it
/// early discards the connection (it may be mid-message).
pub struct PooledBody {
    /// The whole body, when it came with the head.
    ready: Option<Bytes>,
    /// The connection the rest of the body comes from.
    lease: Option<Box<dyn Lease>>,
    decoder: Decoder,
    /// The response allows another request on the connection.
    keep_alive: bool,
    /// Bound on a chunked body's trailer section.
    max_trailers: usize,
    /// The socket of an upgraded connection, until the tunnel takes it.
    upgraded: Option<Box<Upgraded>>,
}

impl PooledBody {
    /// No body (a 204, a response to HEAD, an upgrade).
    pub(super) fn empty() -> Self {
        Self::ready(None)
    }

    /// A body already read in full.
    pub(super) fn ready(data: Option<Bytes>) -> Self {
        Self {
            ready: data.filter(|d| !d.is_empty()),
            lease: None,
            decoder: Decoder::Done,
            keep_alive: false,
            max_trailers: 0,
            upgraded: None,
        }
    }

    /// The empty body of a `101`, holding the upgraded socket.
    pub(super) fn upgraded(io: Upgraded) -> Self {
        Self {
            upgraded: Some(Box::new(io)),
            ..Self::empty()
        }
    }

    /// The upstream's socket after a `101 Switching Protocols` (or a 2xx to CONNECT).
    pub fn take_upgraded(&mut self) -> Option<Upgraded> {
        self.upgraded.take().map(|io| *io)
    }

    /// A body still to be read from `lease`.
    pub(super) fn streaming(
        lease: Box<dyn Lease>,
        decoder: Decoder,
        keep_alive: bool,
        max_trailers: usize,
    ) -> Self {
        Self {
            ready: None,
            lease: Some(lease),
            decoder,
            keep_alive,
            max_trailers,
            upgraded: None,
        }
    }

    /// The last byte was read: the connection goes back if nothing about it is unfinished.
    fn release(&mut self) {
        if let Some(mut lease) = self.lease.take() {
            if self.keep_alive && lease.upload_complete() && lease.io().is_clean() {
                lease.give_back();
            }
        }
    }
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("ready", &self.ready.as_ref().map(Bytes::len))
            .field("leased", &self.lease.is_some())
            .field("decoder", &self.decoder)
            .finish()
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(lease) = this.lease.as_mut() else {
            return Poll::Ready(None);
        };
        lease.poll_upload(cx);
        let polled = ready!(
            lease
                .io()
                .poll_body(cx, &mut this.decoder, this.max_trailers)
        );
        let frame = match polled {
            // Released on the last data frame too: a consumer that trusts `is_end_stream` may
            // never poll again.
            Ok(Decoded::Data(data)) => Some(Ok(Frame::data(data))),
            Ok(Decoded::Trailers(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(Decoded::End | Decoded::More) => None,
            Err(error) => {
                this.lease = None;
                return Poll::Ready(Some(Err(io::Error::other(error))));
            }
        };
        if this.decoder.is_done() {
            this.release();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.lease.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(data) = &self.ready {
            return SizeHint::with_exact(data.len() as u64);
        }
        match self.decoder.remaining() {
            Some(left) if self.lease.is_some() => SizeHint::with_exact(left),
            Some(_) => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}
