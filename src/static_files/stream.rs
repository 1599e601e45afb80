//! Large files streamed in chunks of about 128 KiB, optionally compressed on the way, with
//! memory that stays flat whatever the file's size: one chunk is read ahead of what hyper has
//! written.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf, Take};

use super::conditional::Encoding;
use crate::body::ReadBody;
use crate::compress::Encoder;

/// Bytes read per chunk.
pub const CHUNK: usize = 128 * 1024;

/// A file body: a byte range of a file, or a whole file through an encoder.
pub type FileBody = ReadBody<FileReader>;

/// Closed set of readers, so the body is one concrete type.
pub enum FileReader {
    /// A byte range, as it is.
    Plain(Take<tokio::fs::File>),
    /// A whole file, compressed on the way.
    Encoded(Encoder<BufReader<tokio::fs::File>>),
}

impl FileBody {
    /// `len` bytes of `file` from its current position, as they are.
    pub fn plain(file: std::fs::File, len: u64) -> Self {
        let reader = tokio::fs::File::from_std(file).take(len);
        ReadBody::new(FileReader::Plain(reader), CHUNK, Some(len))
    }

    /// The whole of `file`, compressed with `encoding`.
    pub fn compressed(file: std::fs::File, encoding: Encoding) -> Self {
        let input = BufReader::with_capacity(CHUNK, tokio::fs::File::from_std(file));
        ReadBody::new(
            FileReader::Encoded(Encoder::new(input, encoding)),
            CHUNK,
            None,
        )
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(r) => Pin::new(r).poll_read(cx, out),
            Self::Encoded(r) => Pin::new(r).poll_read(cx, out),
        }
    }
}
