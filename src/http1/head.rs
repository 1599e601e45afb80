//! Request heads in, response heads out (RFC 9112 §2-§6), strictly: a head that could be read
//! two ways is refused before the gateway acts on it.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use super::framing::{Names, known_valid, parse_length, push_field};

/// Header fields tried first; a head with more is parsed again with the configured maximum.
const FEW_HEADERS: usize = 24;

/// Fields the proxy may add to a request head (`X-Forwarded-*`, `Forwarded`, the request id,
/// trace context).
const REQUEST_HEADROOM: usize = 10;

/// Bounds on a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest head, request line included (`server.max_request_header`).
    pub max_head: usize,
    /// Most header fields (`server.max_headers`).
    pub max_headers: usize,
}

/// Why a request head was refused: answered with this status, then the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// 400, 431 or 501.
    pub status: StatusCode,
    /// For the debug log.
    pub what: &'static str,
}

fn refuse(status: StatusCode, what: &'static str) -> Refused {
    Refused { status, what }
}

fn bad(what: &'static str) -> Refused {
    refuse(StatusCode::BAD_REQUEST, what)
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the connection needs to know about a request besides the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// How its body is delimited.
    pub framing: Framing,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1 with a body: `100 Continue` is owed when the body is
    /// first read.
    pub expects_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field on HTTP/1.1.
    pub upgrade: bool,
    /// `TE: trailers`: a chunked response may end with trailer fields.
    pub trailers: bool,
    /// A `HEAD` request: the response has no body whatever it says.
    pub head: bool,
    /// HTTP/1.0: no chunked responses.
    pub http10: bool,
}

/// Where a header's name and value sit in the head's bytes.
#[derive(Clone, Copy)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// A parsed request line and where the fields are.
struct Line {
    len: usize,
    method: (u32, u32),
    target: (u32, u32),
    http10: bool,
    fields: Vec<Field>,
}

/// Parses the request head at the front of `buf`, consuming it. `Ok(None)`: more bytes are
/// needed.
pub fn parse(
    buf: &mut BytesMut,
    names: &mut Names,
    limits: Limits,
) -> Result<Option<(Request<()>, Facts)>, Refused> {
    // Most heads have a handful of fields: a small table first, the full one if needed.
    let line = match parse_line(buf, limits, &mut [httparse::EMPTY_HEADER; FEW_HEADERS]) {
        Err(httparse::Error::TooManyHeaders) if limits.max_headers > FEW_HEADERS => {
            let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
            parse_line(buf, limits, &mut fields)
        }
        line => line,
    };
    let line = match line {
        Ok(Some(line)) => line,
        Ok(None) if buf.len() >= limits.max_head => {
            return Err(too_large("request head larger than max_request_header"));
        }
        Ok(None) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(too_large("more header fields than max_headers"));
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    if line.len > limits.max_head {
        return Err(too_large("request head larger than max_request_header"));
    }
    let head = buf.split_to(line.len).freeze();
    build(&head, &line, names).map(Some)
}

fn too_large(what: &'static str) -> Refused {
    refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, what)
}

fn parse_line<'b>(
    buf: &'b BytesMut,
    limits: Limits,
    table: &mut [httparse::Header<'b>],
) -> Result<Option<Line>, httparse::Error> {
    let mut request = httparse::Request::new(table);
    let len = match request.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    if request.headers.len() > limits.max_headers {
        return Err(httparse::Error::TooManyHeaders);
    }
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Ok(None);
    };
    let fields = request
        .headers
        .iter()
        .map(|h| Field {
            name: span(h.name.as_bytes()),
            value: span(h.value),
        })
        .collect();
    Ok(Some(Line {
        len,
        method: span(method.as_bytes()),
        target: span(target.as_bytes()),
        http10: version == 0,
        fields,
    }))
}

/// Which tokens a comma-separated field value lists, case-insensitively.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn build(head: &Bytes, line: &Line, names: &mut Names) -> Result<(Request<()>, Facts), Refused> {
    let slice = |(start, end): (u32, u32)| head.slice(start as usize..end as usize);
    let method = Method::from_bytes(&slice(line.method)).map_err(|_| bad("invalid method"))?;
    let uri = Uri::from_maybe_shared(slice(line.target)).map_err(|_| bad("invalid target"))?;

    // Room for the forwarding fields the proxy adds without growing the map.
    let mut headers = HeaderMap::with_capacity(line.fields.len() + REQUEST_HEADROOM);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let (mut close, mut keep_alive, mut upgrade_token, mut upgrade) = (false, false, false, false);
    let (mut expects_continue, mut trailers) = (false, false);
    for (i, field) in line.fields.iter().enumerate() {
        let (start, end) = field.name;
        let name = names
            .name(i, &head[start as usize..end as usize])
            .map_err(|_| bad("invalid header name"))?;
        let value = slice(field.value);
        if name == CONTENT_LENGTH {
            // Repeated lengths must agree (RFC 9110 §8.6); "5, 5" is one value written twice.
            for part in value.split(|&b| b == b',') {
                let len = parse_length(part.trim_ascii()).ok_or(bad("invalid content-length"))?;
                if length.is_some_and(|seen| seen != len) {
                    return Err(bad("conflicting content-length"));
                }
                length = Some(len);
            }
        } else if name == TRANSFER_ENCODING {
            // Only `chunked`, once, is understood; anything else could be read two ways.
            for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if coding.eq_ignore_ascii_case(b"chunked") && !chunked && !coded {
                    chunked = true;
                } else if coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(bad("chunked applied twice"));
                } else {
                    coded = true;
                }
            }
        } else if name == CONNECTION {
            close |= has_token(&value, b"close");
            keep_alive |= has_token(&value, b"keep-alive");
            upgrade_token |= has_token(&value, b"upgrade");
        } else if name == UPGRADE {
            upgrade = true;
        } else if name == EXPECT {
            expects_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name == TE {
            trailers |= has_token(&value, b"trailers");
        }
        headers.append(name, known_valid(value));
    }
    let framing = if chunked || coded {
        if line.http10 {
            return Err(bad("transfer-encoding on HTTP/1.0"));
        }
        if length.is_some() {
            return Err(bad("both transfer-encoding and content-length"));
        }
        if coded {
            return Err(refuse(
                StatusCode::NOT_IMPLEMENTED,
                "transfer coding other than chunked",
            ));
        }
        Framing::Chunked
    } else {
        match length {
            None | Some(0) => Framing::Empty,
            Some(len) => Framing::Length(len),
        }
    };
    let version = if line.http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let facts = Facts {
        framing,
        keep_alive: !close && (!line.http10 || keep_alive),
        expects_continue: expects_continue && !line.http10 && framing != Framing::Empty,
        upgrade: upgrade && upgrade_token && !line.http10,
        trailers,
        head: method == Method::HEAD,
        http10: line.http10,
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok((request, facts))
}

/// Whether the end of a head (an empty line, `\r\n\r\n` or a bare `\n\n`) is in `buf`
/// beyond its first `seen` bytes, which were looked at before.
pub fn ends_after(buf: &[u8], seen: usize) -> bool {
    let from = seen.saturating_sub(3).min(buf.len());
    let mut rest = &buf[from..];
    while let Some(at) = rest.iter().position(|&b| b == b'\n') {
        rest = &rest[at + 1..];
        if rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return true;
        }
    }
    false
}

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// No body is written (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the connection closes (HTTP/1.0 without a length).
    Close,
}

/// Writes the response head into `out` (cleared first) and says how its body is framed. The
/// head carries a `Date` unless it has one, the framing field the body needs unless it has a
/// `Content-Length`, and `Connection: close` (or `keep-alive` for HTTP/1.0) as `keep_alive`
/// says; `keep_alive` comes back false when the response itself asks to close or can only be
/// delimited by closing.
pub fn encode<B>(
    out: &mut Vec<u8>,
    response: &Response<B>,
    exact: Option<u64>,
    facts: &Facts,
    keep_alive: &mut bool,
) -> Out {
    let status = response.status();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // One pass over the fields, noting those that decide the framing and persistence.
    let (mut declared, mut has_date, mut has_connection) = (None, false, false);
    for (name, value) in response.headers() {
        if name == TRANSFER_ENCODING {
            // The framing is this connection's to choose.
            continue;
        } else if name == CONTENT_LENGTH {
            declared = declared.or_else(|| parse_length(value.as_bytes()));
        } else if name == DATE {
            has_date = true;
        } else if name == CONNECTION {
            has_connection = true;
            if has_token(value.as_bytes(), b"close") {
                *keep_alive = false;
            }
        }
        push_field(out, name, value);
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }

    let no_body = facts.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match declared.or(exact) {
        _ if no_body => Out::None,
        Some(len) => Out::Length(len),
        None if facts.http10 => Out::Close,
        None => Out::Chunked,
    };
    match framing {
        Out::Length(len) if declared.is_none() => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(HeaderValue::from(len).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Out::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Out::Close => *keep_alive = false,
        Out::Length(_) | Out::None => {}
    }
    if status != StatusCode::SWITCHING_PROTOCOLS && !has_connection {
        if !*keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if facts.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// A short answer to a request the gateway refused before routing it; the connection closes.
pub fn refusal(status: StatusCode) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    date(&mut out);
    out.extend_from_slice(b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    out
}

thread_local! {
    /// The `Date` value of the current second, made once per second per thread.
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cache.1.copy_from_slice(text.as_bytes());
                cache.0 = secs;
            }
        }
        out.extend_from_slice(&cache.1);
    });
}
