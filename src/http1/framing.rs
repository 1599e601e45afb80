//! HTTP/1.1 message framing shared by both sides of the gateway (RFC 9112): the client
//! connections' server half and the pool's client half decode chunked bodies and lengths the
//! same strict way.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Most header fields in a trailer section (hyper's default for a head, too).
pub const MAX_HEADERS: usize = 100;

/// Longest chunk-size line, extensions included, before a body is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// The header names of the previous head on a connection, in order. The next head on a
/// keep-alive connection usually repeats them byte for byte, and a name found in its place
/// here is a comparison and a clone (a reference count for a custom name) instead of a parse,
/// a lower-casing pass and, for a custom name, an allocation: about 50 instructions instead
/// of 140 per field.
#[derive(Debug, Default)]
pub struct Names {
    seen: Vec<Seen>,
}

#[derive(Debug)]
struct Seen {
    name: HeaderName,
    /// How the peer spelled it, when that was not already lower case (`Content-Type`).
    spelled: Option<Box<[u8]>>,
}

impl Seen {
    fn is(&self, raw: &[u8]) -> bool {
        match &self.spelled {
            Some(spelled) => **spelled == *raw,
            None => self.name.as_str().as_bytes() == raw,
        }
    }
}

/// A header value whose bytes are already known to be valid, built without checking them again
/// byte by byte (about four instructions a byte, 370 per response of a typical app).
///
/// Two kinds of caller: values httparse let through, since it accepts in a value exactly what
/// `HeaderValue` does (tab, `0x20..=0x7e` and `0x80..=0xff`;
/// `tests::httparse_values_are_header_values` holds both to that, byte by byte), and the
/// gateway's own hex digits and dashes (`trace_context::hex_header`). Debug builds, the tests
/// among them, check anyway.
pub fn known_valid(value: Bytes) -> HeaderValue {
    // SAFETY: `from_maybe_shared_unchecked` asks only that the bytes be a valid field value,
    // which every caller knows (above). The library's one `unsafe`.
    #[allow(unsafe_code)]
    unsafe {
        HeaderValue::from_maybe_shared_unchecked(value)
    }
}

/// Fields remembered per connection; names past these are parsed every time.
const MAX_REMEMBERED: usize = 32;

impl Names {
    /// The name of the head's field number `index`, spelled `raw`.
    pub fn name(
        &mut self,
        index: usize,
        raw: &[u8],
    ) -> Result<HeaderName, http::header::InvalidHeaderName> {
        if let Some(seen) = self.seen.get(index) {
            if seen.is(raw) {
                return Ok(seen.name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw)?;
        if index <= self.seen.len() && index < MAX_REMEMBERED {
            let seen = Seen {
                spelled: (name.as_str().as_bytes() != raw).then(|| raw.into()),
                name: name.clone(),
            };
            if index == self.seen.len() {
                self.seen.push(seen);
            } else {
                self.seen[index] = seen;
            }
        }
        Ok(name)
    }
}

/// A body that breaks its framing: the connection cannot be used any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}

/// The chunk-size line for `len` bytes of data.
pub fn chunk_line(len: usize) -> Bytes {
    let mut line = Vec::with_capacity(18);
    push_chunk_line(&mut line, len);
    Bytes::from(line)
}

/// Appends the chunk-size line for `len` bytes of data (lower-case hex, no extensions).
pub fn push_chunk_line(out: &mut Vec<u8>, len: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends one header field line, `name: value` and CRLF.
pub fn push_field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Serves a read from bytes received past a head (an upgraded connection's first bytes),
/// if there are any; `false` means the socket is next.
pub fn read_buffered(buffered: &mut impl Buf, into: &mut tokio::io::ReadBuf<'_>) -> bool {
    if !buffered.has_remaining() {
        return false;
    }
    let chunk = buffered.chunk();
    let n = chunk.len().min(into.remaining());
    into.put_slice(&chunk[..n]);
    buffered.advance(n);
    true
}

/// A decimal length with no sign, no spaces and no overflow.
pub fn parse_length(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// What the body decoder found in the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section of a chunked body (the body then ends).
    Trailers(HeaderMap),
    /// The body ended.
    End,
    /// Nothing decodable yet: read more.
    More,
}

/// The chunked transfer coding (RFC 9112 §7.1), decoded strictly: hex sizes, CRLF line ends,
/// extensions skipped.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits.
    #[default]
    Size,
    /// After the digits: whitespace, or `;` and an extension, up to CR.
    SizeRest,
    /// Inside an extension, up to CR.
    Extension,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Chunk data: `size` bytes left.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// After the last chunk: the trailer section.
    Trailers,
}

impl Chunked {
    /// Takes what it can from `buf`: data, the trailer section, the end, or `More`.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_trailers: usize,
    ) -> Result<Decoded, Malformed> {
        let bad = || Malformed("malformed chunked body");
        loop {
            if self.state == ChunkState::Data {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let take = self.size.min(buf.len() as u64) as usize;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                return Ok(Decoded::Data(buf.split_to(take).freeze()));
            }
            if self.state == ChunkState::Trailers {
                return self.trailers(buf, max_trailers);
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::More);
            };
            buf.advance(1);
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(bad());
            }
            self.state = match (self.state, byte) {
                (ChunkState::Size, b) if b.is_ascii_hexdigit() => {
                    let digit = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or_else(bad)?;
                    ChunkState::Size
                }
                (ChunkState::Size, _) if self.line == 1 => return Err(bad()),
                (ChunkState::Size | ChunkState::SizeRest, b' ' | b'\t') => ChunkState::SizeRest,
                (ChunkState::Size | ChunkState::SizeRest, b';') => ChunkState::Extension,
                (ChunkState::Size | ChunkState::SizeRest | ChunkState::Extension, b'\r') => {
                    ChunkState::SizeLf
                }
                (ChunkState::Extension, b) if b != b'\n' => ChunkState::Extension,
                (ChunkState::SizeLf, b'\n') => {
                    self.line = 0;
                    if self.size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => {
                    self.line = 0;
                    ChunkState::Size
                }
                _ => return Err(bad()),
            };
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut, max: usize) -> Result<Decoded, Malformed> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            return Ok(Decoded::End);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (len, fields) = match httparse::parse_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(done)) => done,
            Ok(httparse::Status::Partial) if buf.len() < max => return Ok(Decoded::More),
            _ => {
                return Err(Malformed("malformed trailer section"));
            }
        };
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for field in fields {
            let name = HeaderName::from_bytes(field.name.as_bytes());
            let value = HeaderValue::from_bytes(field.value);
            if let (Ok(name), Ok(value)) = (name, value) {
                trailers.append(name, value);
            }
        }
        buf.advance(len);
        Ok(Decoded::Trailers(trailers))
    }
}

#[cfg(test)]
mod tests {
    use http::header::CONTENT_TYPE;

    use super::*;

    #[test]
    fn httparse_values_are_header_values() {
        // `known_valid` skips `HeaderValue`'s check because httparse's is the same: every
        // byte in the middle of a value is accepted by both or refused by both.
        for byte in 0..=u8::MAX {
            let head = [b"x: a".as_slice(), &[byte], b"b\r\n\r\n"].concat();
            let mut fields = [httparse::EMPTY_HEADER; 4];
            let parsed = match httparse::parse_headers(&head, &mut fields) {
                Ok(httparse::Status::Complete((_, [field]))) => Some(field.value.to_vec()),
                _ => None,
            };
            let value = [b'a', byte, b'b'];
            let accepted = HeaderValue::from_bytes(&value).is_ok();
            assert_eq!(
                parsed.as_deref() == Some(value.as_slice()),
                accepted,
                "byte {byte:#04x}"
            );
            if accepted {
                assert_eq!(known_valid(Bytes::copy_from_slice(&value)), &value[..]);
            }
        }
    }

    #[test]
    fn remembered_names_come_back_only_for_the_same_spelling() {
        let mut names = Names::default();
        for (i, raw) in ["Host", "X-Backend", "Content-Type"].iter().enumerate() {
            assert_eq!(
                names.name(i, raw.as_bytes()).unwrap(),
                *raw.to_ascii_lowercase()
            );
        }
        // Same spellings in the same places: the remembered names come back.
        assert_eq!(names.name(1, b"X-Backend").unwrap(), "x-backend");
        assert_eq!(names.name(2, b"Content-Type").unwrap(), CONTENT_TYPE);
        // Another spelling of the name, or another name, in that place is parsed and
        // remembered instead.
        assert_eq!(names.name(1, b"x-BACKEND").unwrap(), "x-backend");
        assert_eq!(names.name(1, b"Server").unwrap(), "server");
        assert_eq!(names.name(1, b"server").unwrap(), http::header::SERVER);
        assert_eq!(names.name(1, b"server").unwrap(), http::header::SERVER);
        // An invalid name is refused wherever it appears.
        assert!(names.name(1, b"serve r").is_err());
        assert!(names.name(1, b"Server").is_ok());
        assert!(names.name(2, b"content_type").unwrap() != CONTENT_TYPE);
        // Past what is remembered, names are still parsed.
        assert_eq!(names.name(500, b"Accept").unwrap(), http::header::ACCEPT);
    }
}
