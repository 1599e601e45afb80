//! On-the-fly compression of proxied responses, for routes with `compress = true`.
//!
//! A response is compressed only when that is safe and worth it: a `200` to a `GET` without
//! `Range`, not already encoded, a compressible type (the same list as static files) but
//! never `text/event-stream` (an encoder holds data back until its buffer fills), no
//! `Cache-Control: no-transform`, and a body of unknown length or at least 1 KiB. The body
//! streams through `async-compression`; nothing is collected.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use bytes::{Buf, Bytes};
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use crate::body::{ReadBody, ResponseBody};
use crate::static_files::conditional::{Accept, Encoding};
use crate::static_files::stream::CHUNK;

/// Smallest body worth compressing.
const MIN_BODY: u64 = 1024;

/// Brotli quality on the fly (proxied bodies and files without a sidecar): about gzip's
/// speed at a better ratio; the high settings are kept for bodies compressed once into a
/// cache.
const BROTLI_QUALITY: i32 = 4;

/// What the request allows, taken before the request is handed to the proxy.
#[derive(Debug, Clone, Copy)]
pub struct Wanted(Option<Encoding>);

impl Wanted {
    /// The encoding the client prefers for a `GET` without `Range`, if any.
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        if method != Method::GET || headers.contains_key(http::header::RANGE) {
            return Wanted(None);
        }
        Wanted(Accept::from_headers(headers).choose(|_| true))
    }
}

/// Compresses `resp` in place when it qualifies (see the module docs); otherwise leaves it.
pub fn response(resp: &mut Response<ResponseBody>, wanted: Wanted) {
    let Some(encoding) = wanted.0 else { return };
    if resp.status() != StatusCode::OK || !qualifies(resp.headers()) {
        return;
    }
    let headers = resp.headers_mut();
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
    headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    // The bytes differ from the app's, so a strong validator must not claim they are the same.
    if let Some(etag) = headers.get(ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = Vec::with_capacity(etag.len() + 2);
            weak.extend_from_slice(b"W/");
            weak.extend_from_slice(etag.as_bytes());
            match HeaderValue::from_bytes(&weak) {
                Ok(v) => headers.insert(ETAG, v),
                Err(_) => headers.remove(ETAG),
            };
        }
    }
    let body = std::mem::replace(resp.body_mut(), ResponseBody::Empty);
    let reader = BodyReader {
        body,
        chunk: Bytes::new(),
        ended: false,
    };
    *resp.body_mut() =
        ResponseBody::Compressed(ReadBody::new(Encoder::new(reader, encoding), CHUNK, None));
}

fn qualifies(headers: &HeaderMap) -> bool {
    if headers.contains_key(CONTENT_ENCODING) || headers.contains_key(CONTENT_RANGE) {
        return false;
    }
    let no_transform = headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    if no_transform {
        return false;
    }
    let small = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len < MIN_BODY);
    if small {
        return false;
    }
    let Some(mime) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = mime.split(';').next().unwrap_or_default().trim();
    !mime.eq_ignore_ascii_case("text/event-stream")
        && crate::static_files::is_compressible(&mime.to_ascii_lowercase())
}

/// A response body read through an encoder.
pub type CompressedBody = ReadBody<Encoder<BodyReader>>;

/// A compressor reading from `R`. Boxed once per compressed body: the encoders' state is
/// kilobytes, and every other body stays small.
pub enum Encoder<R> {
    /// gzip at the default level.
    Gzip(Box<GzipEncoder<R>>),
    /// brotli at quality 4.
    Brotli(Box<BrotliEncoder<R>>),
}

impl<R: AsyncBufRead> Encoder<R> {
    /// Compresses what `input` yields with `encoding`.
    pub fn new(input: R, encoding: Encoding) -> Self {
        match encoding {
            Encoding::Gzip => {
                Self::Gzip(Box::new(GzipEncoder::with_quality(input, Level::Default)))
            }
            Encoding::Brotli => Self::Brotli(Box::new(BrotliEncoder::with_quality(
                input,
                Level::Precise(BROTLI_QUALITY),
            ))),
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for Encoder<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Gzip(e) => Pin::new(e.as_mut()).poll_read(cx, out),
            Self::Brotli(e) => Pin::new(e.as_mut()).poll_read(cx, out),
        }
    }
}

/// The upstream body as a buffered reader for the encoder; trailers are dropped (the
/// compressed response is a plain chunked body).
pub struct BodyReader {
    body: ResponseBody,
    chunk: Bytes,
    ended: bool,
}

impl AsyncRead for BodyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let available = ready!(Pin::new(&mut *this).poll_fill_buf(cx))?;
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        Pin::new(this).consume(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.chunk.is_empty() && !this.ended {
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
                Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
                None => this.ended = true,
            }
        }
        Poll::Ready(Ok(&this.chunk[..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().chunk.advance(amt);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};

    use super::qualifies;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_compressible_unencoded_transformable_bodies_qualify() {
        let json = (CONTENT_TYPE, "application/json");
        assert!(qualifies(&headers(std::slice::from_ref(&json))));
        assert!(qualifies(&headers(&[
            json.clone(),
            (CONTENT_LENGTH, "1024")
        ])));
        assert!(qualifies(&headers(&[(
            CONTENT_TYPE,
            "Text/HTML; charset=utf-8"
        )])));
        let refused = [
            vec![json.clone(), (CONTENT_LENGTH, "1023")],
            vec![json.clone(), (CONTENT_ENCODING, "gzip")],
            vec![json.clone(), (CACHE_CONTROL, "private, No-Transform")],
            vec![(CONTENT_TYPE, "text/event-stream")],
            vec![(CONTENT_TYPE, "image/png")],
            vec![(CONTENT_TYPE, "application/zip")],
            vec![],
        ];
        for case in refused {
            assert!(!qualifies(&headers(&case)), "{case:?}");
        }
    }
}
