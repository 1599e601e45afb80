//! A body read from an [`AsyncRead`] in chunks: files and compressors.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;

use super::BodyError;

/// Reads `reader` into frames of up to `chunk` bytes, one chunk ahead of what hyper has
/// written, so memory stays flat whatever the length. With a known length, a reader that
/// ends early ends the body with an error (the client sees a short body against its
/// `Content-Length`, never a wrong one).
pub struct ReadBody<R> {
    reader: R,
    buf: BytesMut,
    chunk: usize,
    /// Bytes still to send, when known.
    remaining: Option<u64>,
    done: bool,
}

impl<R> ReadBody<R> {
    /// `remaining` is the exact length when known.
    pub fn new(reader: R, chunk: usize, remaining: Option<u64>) -> Self {
        Self {
            reader,
            buf: BytesMut::new(),
            chunk,
            remaining,
            done: remaining == Some(0),
        }
    }
}

impl<R: AsyncRead + Unpin> Body for ReadBody<R> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.buf.capacity() < this.chunk {
            this.buf.reserve(this.chunk);
        }
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut this.reader), cx, &mut this.buf);
        match ready!(read) {
            Ok(0) => {
                this.done = true;
                if this.remaining.is_some_and(|r| r > 0) {
                    return Poll::Ready(Some(Err(BodyError::Aborted)));
                }
                Poll::Ready(None)
            }
            Ok(n) => {
                if let Some(remaining) = &mut this.remaining {
                    *remaining = remaining.saturating_sub(n as u64);
                    this.done = *remaining == 0;
                }
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
            Err(err) => {
                this.done = true;
                Poll::Ready(Some(Err(cause(&err))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// The body error a reader passed through (a compressor reading a failing upstream body), or
/// `Aborted` for a plain I/O error.
fn cause(err: &io::Error) -> BodyError {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<BodyError>())
        .copied()
        .unwrap_or(BodyError::Aborted)
}
