//! HTTP/1.1 on the upstream wire (RFC 9112): the request head the pool writes, the response
//! head it reads, and how the response body is framed.
//!
//! The pool speaks to its own replicas only, always HTTP/1.1, one request at a time per
//! connection, so this is the client half of the protocol and nothing more. Parsing is
//! httparse's (the parser hyper uses); header values are slices of one shared buffer, as in
//! hyper, so a response head costs one allocation for its bytes and one for its map.

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, request, response};

use super::error::ErrorKind;
use crate::http1::framing::{
    Chunked, MAX_HEADERS, Malformed, Names, known_valid, parse_length, push_field,
};
pub(super) use crate::http1::framing::{Decoded, chunk_line};

/// Why a response could not be read. `kind` is the bounded label; `what` says more in logs.
#[derive(Debug)]
pub(super) struct WireError {
    pub(super) kind: ErrorKind,
    pub(super) what: &'static str,
}

impl WireError {
    pub(super) fn invalid(what: &'static str) -> Self {
        Self {
            kind: ErrorKind::Other,
            what,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }
}

impl std::error::Error for WireError {}

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Picks the request framing: the `Content-Length` the request carries, else the body's exact
/// size, else chunked. Returns whether the framing header still has to be written.
pub(super) fn request_framing(
    headers: &HeaderMap,
    empty: bool,
    exact: Option<u64>,
) -> Result<(RequestFraming, bool), WireError> {
    if let Some(value) = headers.get(CONTENT_LENGTH) {
        let len = parse_length(value.as_bytes())
            .ok_or(WireError::invalid("invalid content-length on the request"))?;
        let framing = if len == 0 {
            RequestFraming::Empty
        } else {
            RequestFraming::Length(len)
        };
        return Ok((framing, false));
    }
    Ok(match (empty, exact) {
        (true, _) => (RequestFraming::Empty, false),
        (false, Some(0)) => (RequestFraming::Empty, false),
        (false, Some(len)) => (RequestFraming::Length(len), true),
        (false, None) => (RequestFraming::Chunked, true),
    })
}

/// Writes the request head into `out` (cleared first): origin-form target, HTTP/1.1, the
/// headers as they are (names are lower case in a `HeaderMap`), then the `added` fields (the
/// gateway's, none of them in the map), and the framing header when `add_framing` says it is
/// missing.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    parts: &request::Parts,
    added: &[(HeaderName, HeaderValue)],
    framing: RequestFraming,
    add_framing: bool,
) {
    out.clear();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut size = parts.method.as_str().len() + target.len() + 16;
    for (name, value) in parts
        .headers
        .iter()
        .chain(added.iter().map(|(n, v)| (n, v)))
    {
        size += name.as_str().len() + value.len() + 4;
    }
    out.reserve(size + 32);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in parts
        .headers
        .iter()
        .chain(added.iter().map(|(n, v)| (n, v)))
    {
        push_field(out, name, value);
    }
    if add_framing {
        match framing {
            RequestFraming::Length(len) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(HeaderValue::from(len).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            RequestFraming::Empty => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseFraming {
    /// No body: a response to HEAD, 1xx, 204, 304, or a 2xx to CONNECT.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the upstream closes the connection.
    Close,
}

/// A parsed response head. The fields that concern only this connection and that the pool
/// acted on are left out: `Transfer-Encoding`, `Keep-Alive`, and a `Connection` that says
/// nothing but `close` or `keep-alive`.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) parts: response::Parts,
    pub(super) framing: ResponseFraming,
    /// The connection may carry another request once this response is read.
    pub(super) keep_alive: bool,
}

/// Parses the final response head at the front of `buf`, consuming it and any informational
/// (1xx other than 101) heads before it. `Ok(None)`: more bytes are needed. `max` bounds the
/// head's size.
pub(super) fn parse_head(
    buf: &mut BytesMut,
    names: &mut Names,
    method: &Method,
    max: usize,
) -> Result<Option<ResponseHead>, WireError> {
    loop {
        // Most heads have a handful of fields: a small table first, the full one if needed.
        let parsed = match parse_one::<FEW_HEADERS>(buf, names, method, max) {
            Err(WireError { what: TOO_MANY, .. }) => {
                parse_one::<MAX_HEADERS>(buf, names, method, max)
            }
            parsed => parsed,
        };
        match parsed? {
            Parsed::Partial => return Ok(None),
            Parsed::Informational => continue,
            Parsed::Final(head) => return Ok(Some(head)),
        }
    }
}

/// What one head at the front of the buffer turned out to be.
enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A 1xx other than 101, consumed and skipped.
    Informational,
    Final(ResponseHead),
}

/// One head, with room for `N` fields. Where the fields sit is noted in a table on the stack
/// while httparse borrows the buffer, then read from the head once it is split off.
fn parse_one<const N: usize>(
    buf: &mut BytesMut,
    names: &mut Names,
    method: &Method,
    max: usize,
) -> Result<Parsed, WireError> {
    let mut fields = [Field::default(); N];
    let Some(status) = parse_status(buf, max, &mut fields)? else {
        return Ok(Parsed::Partial);
    };
    let head = buf.split_to(status.len).freeze();
    if status.code.is_informational() && status.code != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Parsed::Informational);
    }
    let fields = &fields[..status.fields];
    build_head(&head, &status, fields, names, method).map(Parsed::Final)
}

/// Fields the gateway may add to a response head.
const RESPONSE_HEADROOM: usize = 6;

/// Header fields tried first; a head with more is parsed again with [`MAX_HEADERS`].
const FEW_HEADERS: usize = 24;

const TOO_MANY: &str = "too many header fields in the response";

/// Where a header's name and value sit in the head's bytes.
#[derive(Clone, Copy, Default)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// A status line, and how many fields the head has.
struct Status {
    len: usize,
    code: StatusCode,
    version: Version,
    fields: usize,
}

/// Parses the status line and notes where each field is in `fields`.
fn parse_status<const N: usize>(
    buf: &BytesMut,
    max: usize,
    fields: &mut [Field; N],
) -> Result<Option<Status>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; N];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::invalid(TOO_MANY)),
        Err(_) => return Err(WireError::invalid("malformed response head")),
    };
    if len > max {
        return Err(too_large());
    }
    let code = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(WireError::invalid("invalid response status"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    for (field, header) in fields.iter_mut().zip(response.headers.iter()) {
        let name = offset(header.name.as_bytes());
        let value = offset(header.value);
        *field = Field {
            name: (name, name + header.name.len() as u32),
            value: (value, value + header.value.len() as u32),
        };
    }
    Ok(Some(Status {
        len,
        code,
        version,
        fields: response.headers.len(),
    }))
}

fn too_large() -> WireError {
    WireError {
        kind: ErrorKind::ResponseHeadTooLarge,
        what: "response head larger than max_response_header",
    }
}

fn build_head(
    head: &Bytes,
    status: &Status,
    fields: &[Field],
    names: &mut Names,
    method: &Method,
) -> Result<ResponseHead, WireError> {
    let (status, version) = (status.code, status.version);
    // Room for what the gateway adds to every response (request id, `Server`, HSTS, rate
    // limit fields) without growing the map.
    let mut headers = HeaderMap::with_capacity(fields.len() + RESPONSE_HEADROOM);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for (i, field) in fields.iter().enumerate() {
        let name_bytes = &head[field.name.0 as usize..field.name.1 as usize];
        let name = names
            .name(i, name_bytes)
            .map_err(|_| WireError::invalid("invalid header name in the response"))?;
        let value_bytes = head.slice(field.value.0 as usize..field.value.1 as usize);
        if name == CONTENT_LENGTH {
            // Repeated lengths must agree (RFC 9110 §8.6); "5, 5" is one value written twice.
            for part in value_bytes.split(|&b| b == b',') {
                let len = parse_length(part.trim_ascii())
                    .ok_or(WireError::invalid("invalid content-length in the response"))?;
                if length.is_some_and(|seen| seen != len) {
                    return Err(WireError::invalid(
                        "conflicting content-length in the response",
                    ));
                }
                length = Some(len);
            }
        } else if name == TRANSFER_ENCODING {
            // Only the last coding matters: chunked last delimits, anything else reads to close.
            if let Some(last) = value_bytes.rsplit(|&b| b == b',').next() {
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            // Hop-by-hop, and consumed here.
            continue;
        } else if name == CONNECTION {
            let mut only_persistence = true;
            for token in value_bytes.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let is_close = token.eq_ignore_ascii_case(b"close");
                let is_keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                close |= is_close;
                keep_alive_token |= is_keep_alive;
                only_persistence &= is_close || is_keep_alive;
            }
            // `close` and `keep-alive` are for this connection only, and consumed here; a
            // field naming other headers stays for the proxy to act on.
            if only_persistence {
                continue;
            }
        } else if name.as_str() == "keep-alive" {
            continue;
        }
        headers.append(name, known_valid(value_bytes));
    }
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (*method == Method::CONNECT && status.is_success());
    let framing = if no_body {
        ResponseFraming::Empty
    } else if let Some(chunked) = chunked {
        // With a transfer coding a content-length is void (RFC 9112 §6.3): drop it so the
        // client is not told a length the decoded body may not have.
        headers.remove(CONTENT_LENGTH);
        if chunked {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::Close
        }
    } else {
        match length {
            Some(0) => ResponseFraming::Empty,
            Some(len) => ResponseFraming::Length(len),
            None => ResponseFraming::Close,
        }
    };
    let persistent = match version {
        Version::HTTP_10 => keep_alive_token && !close,
        _ => !close,
    };
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(ResponseHead {
        parts,
        framing,
        keep_alive: persistent && framing != ResponseFraming::Close,
    })
}

/// Decodes a response body from the connection's read buffer.
#[derive(Debug)]
pub(super) enum Decoder {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

impl Decoder {
    pub(super) fn new(framing: ResponseFraming) -> Self {
        match framing {
            ResponseFraming::Empty => Self::Done,
            ResponseFraming::Length(len) => Self::Length(len),
            ResponseFraming::Chunked => Self::Chunked(Chunked::default()),
            ResponseFraming::Close => Self::Close,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// Bytes still expected, when known.
    pub(super) fn remaining(&self) -> Option<u64> {
        match self {
            Self::Length(left) => Some(*left),
            Self::Done => Some(0),
            Self::Chunked(_) | Self::Close => None,
        }
    }

    /// Takes what it can from `buf`.
    pub(super) fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_trailers: usize,
    ) -> Result<Decoded, WireError> {
        match self {
            Self::Done => Ok(Decoded::End),
            Self::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let take = (*left).min(buf.len() as u64) as usize;
                *left -= take as u64;
                let data = buf.split_to(take).freeze();
                if *left == 0 {
                    *self = Self::Done;
                }
                Ok(Decoded::Data(data))
            }
            Self::Close => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                Ok(Decoded::Data(buf.split().freeze()))
            }
            Self::Chunked(chunked) => {
                let decoded = chunked
                    .decode(buf, max_trailers)
                    .map_err(|Malformed(what)| WireError::invalid(what))?;
                if matches!(decoded, Decoded::End | Decoded::Trailers(_)) {
                    *self = Self::Done;
                }
                Ok(decoded)
            }
        }
    }

    /// The upstream closed the connection: the end of a close-delimited body, else an error.
    pub(super) fn eof(&mut self) -> Result<(), WireError> {
        match self {
            Self::Close | Self::Done => {
                *self = Self::Done;
                Ok(())
            }
            Self::Length(_) | Self::Chunked(_) => Err(WireError {
                kind: ErrorKind::Closed,
                what: "the upstream closed the connection mid-body",
            }),
        }
    }
}

#[cfg(test)]
mod tests;
