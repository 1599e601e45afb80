//! Large files streamed in chunks of about 128 KiB, optionally compressed on the way, with
//! memory that stays flat whatever the file's size: one chunk is read ahead of what hyper has
//! written.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, Take};

use super::conditional::Encoding;
use crate::body::BodyError;

/// Bytes read per chunk.
pub const CHUNK: usize = 128 * 1024;

/// Brotli quality for on-the-fly compression: about gzip's speed at a better ratio; the
/// high settings are kept for bodies compressed once into the cache.
const BROTLI_STREAM_QUALITY: i32 = 4;

/// A file body: a byte range of a file, or a whole file through an encoder.
pub struct FileBody {
    reader: Reader,
    buf: BytesMut,
    /// Bytes still to send when known (uncompressed bodies).
    remaining: Option<u64>,
    done: bool,
}

/// Closed set of readers, so the body is one concrete type. The encoders' state (kilobytes
/// for brotli) is boxed once per compressed response, which keeps every other response
/// body small.
enum Reader {
    Plain(Take<tokio::fs::File>),
    Gzip(Box<GzipEncoder<BufReader<tokio::fs::File>>>),
    Brotli(Box<BrotliEncoder<BufReader<tokio::fs::File>>>),
}

impl FileBody {
    /// `len` bytes of `file` from its current position, as they are.
    pub fn plain(file: std::fs::File, len: u64) -> Self {
        Self::with(
            Reader::Plain(tokio::fs::File::from_std(file).take(len)),
            Some(len),
        )
    }

    /// The whole of `file`, compressed with `encoding`.
    pub fn compressed(file: std::fs::File, encoding: Encoding) -> Self {
        let input = BufReader::with_capacity(CHUNK, tokio::fs::File::from_std(file));
        let reader = match encoding {
            Encoding::Gzip => {
                Reader::Gzip(Box::new(GzipEncoder::with_quality(input, Level::Default)))
            }
            Encoding::Brotli => Reader::Brotli(Box::new(BrotliEncoder::with_quality(
                input,
                Level::Precise(BROTLI_STREAM_QUALITY),
            ))),
        };
        Self::with(reader, None)
    }

    fn with(reader: Reader, remaining: Option<u64>) -> Self {
        FileBody {
            reader,
            buf: BytesMut::new(),
            remaining,
            done: remaining == Some(0),
        }
    }
}

impl Body for FileBody {
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
        if this.buf.capacity() < CHUNK {
            this.buf.reserve(CHUNK);
        }
        let polled = match &mut this.reader {
            Reader::Plain(r) => poll_read(r, cx, &mut this.buf),
            Reader::Gzip(r) => poll_read(r.as_mut(), cx, &mut this.buf),
            Reader::Brotli(r) => poll_read(r.as_mut(), cx, &mut this.buf),
        };
        match ready!(polled) {
            Ok(0) => {
                this.done = true;
                // A file cut short under us ends the response early; the client sees a
                // short body against its Content-Length rather than a wrong one.
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
            Err(_) => {
                this.done = true;
                Poll::Ready(Some(Err(BodyError::Aborted)))
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

fn poll_read<R: AsyncRead + Unpin>(
    reader: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf)
}
