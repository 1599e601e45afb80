//! The client connection's socket and read buffer, shared by the connection (which reads
//! heads and writes responses) and the request body (which the proxy polls from the request's
//! future, in the same task). The lock is only ever taken inside one poll, so it is never
//! contended; it is what lets a body stream straight from the socket without a channel.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::framing::{Chunked, Decoded, Names, read_buffered};
use super::head::Framing;

/// Smallest read buffer.
const MIN_READ: usize = 8 * 1024;
/// Largest read buffer (large uploads move in chunks this big).
const MAX_READ: usize = 64 * 1024;

/// What a client connection runs over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The shared socket.
pub(super) type Shared = Arc<Mutex<Wire<dyn Io>>>;

/// Locks the socket; a poisoned lock (a panic mid-poll) still holds a usable buffer.
pub(super) fn lock(wire: &Shared) -> MutexGuard<'_, Wire<dyn Io>> {
    wire.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The socket, what was read from it and not consumed, and how far the current request's
/// body has been read.
pub(super) struct Wire<I: ?Sized> {
    /// Bytes read and not yet consumed.
    pub(super) read: BytesMut,
    read_size: usize,
    /// The current request's body.
    pub(super) body: BodyState,
    /// `100 Continue` is owed before the body's first read (`Some(written so far)`).
    pub(super) continue_owed: Option<usize>,
    /// The client closed its side.
    pub(super) eof: bool,
    /// Bytes of an incomplete request head already looked at (0: none is pending).
    pub(super) partial_head: usize,
    /// The previous request's header names.
    pub(super) names: Names,
    pub(super) io: I,
}

/// How far the current request's body has been read.
#[derive(Debug)]
pub(super) enum BodyState {
    /// `Content-Length` bytes left.
    Length(u64),
    /// A chunked body.
    Chunked(Chunked),
    /// Read to its end (or there was none).
    Done,
    /// Broken framing or a lost connection: the connection cannot carry another request.
    Failed,
}

/// The interim answer to `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl<I: Io> Wire<I> {
    pub(super) fn new(io: I) -> Self {
        Self {
            read: BytesMut::new(),
            read_size: MIN_READ,
            body: BodyState::Done,
            continue_owed: None,
            eof: false,
            partial_head: 0,
            names: Names::default(),
            io,
        }
    }
}

impl Wire<dyn Io> {
    /// Reads more into the buffer. `Ok(0)` is EOF.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < self.read_size / 2 {
            self.read.reserve(self.read_size);
        }
        let spare = self.read.capacity() - self.read.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))?;
        if n == 0 {
            self.eof = true;
        } else if n == spare {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(MIN_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Starts reading a new request's body.
    pub(super) fn start_body(&mut self, framing: Framing, expects_continue: bool) {
        self.body = match framing {
            Framing::Empty => BodyState::Done,
            Framing::Length(len) => BodyState::Length(len),
            Framing::Chunked => BodyState::Chunked(Chunked::default()),
        };
        self.continue_owed = expects_continue.then_some(0);
    }

    pub(super) fn body_done(&self) -> bool {
        matches!(self.body, BodyState::Done)
    }

    /// Decodes what the buffer holds of the body without reading: the body is whole once
    /// this returns true. Used before a response that came before the body was read, so a
    /// small body already received does not cost the connection.
    pub(super) fn skip_buffered_body(&mut self, max_trailers: usize) -> bool {
        while !self.read.is_empty() {
            match self.decode(max_trailers) {
                Some(Ok(Decoded::Data(_) | Decoded::Trailers(_))) => {}
                Some(Ok(Decoded::End | Decoded::More)) | None => break,
                Some(Err(_)) => return false,
            }
        }
        self.body_done()
    }

    /// One step of the body decoder over the buffer; `None` once the body is done.
    fn decode(&mut self, max_trailers: usize) -> Option<Result<Decoded, ()>> {
        let decoded = match &mut self.body {
            BodyState::Done => return None,
            BodyState::Failed => return Some(Err(())),
            BodyState::Length(left) => {
                if self.read.is_empty() {
                    return Some(Ok(Decoded::More));
                }
                let take = (*left).min(self.read.len() as u64) as usize;
                *left -= take as u64;
                if *left == 0 {
                    self.body = BodyState::Done;
                }
                Decoded::Data(self.read.split_to(take).freeze())
            }
            BodyState::Chunked(chunked) => match chunked.decode(&mut self.read, max_trailers) {
                Ok(decoded) => {
                    if matches!(decoded, Decoded::End | Decoded::Trailers(_)) {
                        self.body = BodyState::Done;
                    }
                    decoded
                }
                Err(_) => {
                    self.body = BodyState::Failed;
                    return Some(Err(()));
                }
            },
        };
        Some(Ok(decoded))
    }

    /// Writes what is owed of `100 Continue`.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(written) = self.continue_owed {
            if written == CONTINUE.len() {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                self.continue_owed = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_owed = Some(written + n);
        }
        Poll::Ready(Ok(()))
    }

    /// The next piece of the request body.
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        max_trailers: usize,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Err(err) = ready!(self.poll_continue(cx)) {
            self.body = BodyState::Failed;
            return Poll::Ready(Some(Err(err)));
        }
        loop {
            match self.decode(max_trailers) {
                None => return Poll::Ready(None),
                Some(Ok(Decoded::Data(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Ok(Decoded::Trailers(trailers))) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Some(Ok(Decoded::End)) => return Poll::Ready(None),
                Some(Ok(Decoded::More)) => {}
                Some(Err(())) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed request body",
                    ))));
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                }
                Ok(_) => {}
                Err(err) => {
                    self.body = BodyState::Failed;
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

/// A request body read straight from the client connection.
pub struct RecvBody {
    wire: Option<Shared>,
    max_trailers: usize,
}

impl RecvBody {
    pub(super) fn empty() -> Self {
        Self {
            wire: None,
            max_trailers: 0,
        }
    }

    pub(super) fn streaming(wire: Shared, max_trailers: usize) -> Self {
        Self {
            wire: Some(wire),
            max_trailers,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &self.wire {
            None => Poll::Ready(None),
            Some(wire) => lock(wire).poll_body(cx, self.max_trailers),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.wire.as_ref().is_none_or(|wire| lock(wire).body_done())
    }

    fn size_hint(&self) -> SizeHint {
        let Some(wire) = &self.wire else {
            return SizeHint::with_exact(0);
        };
        match lock(wire).body {
            BodyState::Length(left) => SizeHint::with_exact(left),
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Chunked(_) | BodyState::Failed => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody").finish_non_exhaustive()
    }
}

/// The client connection after a `101 Switching Protocols`, with whatever the client sent
/// after its request head.
pub struct Upgraded {
    wire: Shared,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut wire = lock(&self.wire);
        if read_buffered(&mut wire.read, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut wire.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.wire).io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.wire).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.wire).io).poll_shutdown(cx)
    }
}

/// Resolves to the client connection once the response to an upgrade request has been
/// written with `101 Switching Protocols`; found in the request's extensions (which need it
/// to be `Clone`: the first clone awaited gets the connection).
#[derive(Clone)]
pub struct OnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The connection was not upgraded (the response was not a 101, or the client left).
#[derive(Debug, thiserror::Error)]
#[error("the client connection was not upgraded")]
pub struct NotUpgraded;

impl Future for OnUpgrade {
    type Output = Result<Upgraded, NotUpgraded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(rx) = slot.as_mut() else {
            return Poll::Ready(Err(NotUpgraded));
        };
        let upgraded = ready!(Pin::new(rx).poll(cx));
        *slot = None;
        Poll::Ready(upgraded.map_err(|_| NotUpgraded))
    }
}

/// The connection's half of an [`OnUpgrade`].
pub(super) struct Upgrade(oneshot::Sender<Upgraded>);

impl Upgrade {
    pub(super) fn pair() -> (Self, OnUpgrade) {
        let (tx, rx) = oneshot::channel();
        (Self(tx), OnUpgrade(Arc::new(Mutex::new(Some(rx)))))
    }

    /// Hands the connection over.
    pub(super) fn complete(self, wire: Shared) {
        let _ = self.0.send(Upgraded { wire });
    }
}
