//! Validators, preconditions, byte ranges and content-coding negotiation (RFC 9110 §8.8, §13,
//! §14, §12.5.3), as pure functions over request header values.

use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};

/// A content coding the gateway can serve. Closed: adding one means adding its sidecar suffix,
/// its header value and its encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `br`, sidecar `.br`.
    Brotli,
    /// `gzip`, sidecar `.gz`.
    Gzip,
}

impl Encoding {
    /// Both codings, in order of preference when the client weighs them equally.
    pub const ALL: [Encoding; 2] = [Encoding::Brotli, Encoding::Gzip];

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed sidecar file.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }

    /// Appended inside the quotes of the identity ETag, so each encoding has its own.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => "-br",
            Encoding::Gzip => "-gz",
        }
    }
}

/// What `Accept-Encoding` allows: a weight in thousandths per coding (0 = not acceptable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accept {
    br: u16,
    gzip: u16,
    identity: u16,
}

impl Accept {
    /// No `Accept-Encoding`: any coding is acceptable (RFC 9110 §12.5.3), but a client that
    /// sends none is usually a tool that would not decode, so only identity is chosen.
    pub const IDENTITY: Accept = Accept {
        br: 0,
        gzip: 0,
        identity: 1000,
    };

    /// Parses every `Accept-Encoding` line: `token[;q=x]` elements, `*` for the rest.
    pub fn from_headers(headers: &HeaderMap) -> Accept {
        let mut lines = headers.get_all(ACCEPT_ENCODING).iter().peekable();
        if lines.peek().is_none() {
            return Accept::IDENTITY;
        }
        let (mut br, mut gzip, mut identity, mut star) = (None, None, None, None);
        for line in lines {
            for element in line.as_bytes().split(|&b| b == b',') {
                let mut params = element.split(|&b| b == b';');
                let token = trim(params.next().unwrap_or_default());
                let q = params
                    .find_map(|p| {
                        let p = trim(p);
                        (p.len() > 2 && p[..2].eq_ignore_ascii_case(b"q="))
                            .then(|| parse_q(&p[2..]))
                    })
                    .unwrap_or(Some(1000));
                let Some(q) = q else { continue };
                let slot = if token.eq_ignore_ascii_case(b"br") {
                    &mut br
                } else if token.eq_ignore_ascii_case(b"gzip")
                    || token.eq_ignore_ascii_case(b"x-gzip")
                {
                    &mut gzip
                } else if token.eq_ignore_ascii_case(b"identity") {
                    &mut identity
                } else if token == b"*" {
                    &mut star
                } else {
                    continue;
                };
                *slot = Some(q);
            }
        }
        Accept {
            br: br.or(star).unwrap_or(0),
            gzip: gzip.or(star).unwrap_or(0),
            // Unlisted, identity is acceptable (RFC 9110 §12.5.3) but ranks below any coding
            // the client listed; listed, its weight counts like the others'.
            identity: identity.or(star).unwrap_or(1),
        }
    }

    /// Whether `encoding` is acceptable at all.
    pub fn allows(self, encoding: Encoding) -> bool {
        self.weight(encoding) > 0
    }

    fn weight(self, encoding: Encoding) -> u16 {
        match encoding {
            Encoding::Brotli => self.br,
            Encoding::Gzip => self.gzip,
        }
    }

    /// The best of the encodings `available` says exist, or `None` for identity. Highest
    /// weight wins; brotli before gzip before identity on a tie. Identity is the answer when
    /// nothing else is acceptable, even if the client excluded it (rather than a 406).
    pub fn choose(self, available: impl Fn(Encoding) -> bool) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for encoding in Encoding::ALL {
            let w = self.weight(encoding);
            if w > 0 && available(encoding) && best.is_none_or(|(_, b)| w > b) {
                best = Some((encoding, w));
            }
        }
        best.filter(|&(_, w)| w >= self.identity).map(|(e, _)| e)
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_q(text: &[u8]) -> Option<u16> {
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// One entity tag from a list: its opaque part with quotes, and whether it was weak.
struct Tag<'a> {
    opaque: &'a [u8],
    weak: bool,
}

/// Entity tags of an `If-None-Match` / `If-Match` value; `None` for `*`. Stops at the first
/// malformed element (the rest cannot be delimited reliably).
fn tags(value: &[u8]) -> impl Iterator<Item = Tag<'_>> {
    let mut rest = value;
    std::iter::from_fn(move || {
        rest = rest.trim_ascii_start();
        while let [b',', tail @ ..] = rest {
            rest = tail.trim_ascii_start();
        }
        let (weak, tail) = match rest {
            [b'W', b'/', tail @ ..] => (true, tail),
            _ => (false, rest),
        };
        let [b'"', inner @ ..] = tail else {
            return None;
        };
        // An opaque tag may hold commas but never a quote.
        let end = inner.iter().position(|&b| b == b'"')?;
        let opaque = &tail[..end + 2];
        rest = &inner[end + 1..];
        Some(Tag { opaque, weak })
    })
}

/// `If-None-Match` uses the weak comparison: opaque tags equal, `W/` ignored on both sides.
fn none_match_hits(headers: &HeaderMap, etag: &[u8]) -> Option<bool> {
    let mut lines = headers.get_all(IF_NONE_MATCH).iter().peekable();
    lines.peek()?;
    let etag = etag.strip_prefix(b"W/").unwrap_or(etag);
    Some(lines.any(|line| {
        line.as_bytes().trim_ascii() == b"*" || tags(line.as_bytes()).any(|t| t.opaque == etag)
    }))
}

/// Whether a GET or HEAD may be answered `304 Not Modified` (RFC 9110 §13.2.2):
/// `If-None-Match` when present, else `If-Modified-Since` against `modified` (seconds since
/// the epoch, the resolution of HTTP dates).
pub fn not_modified(headers: &HeaderMap, etag: &[u8], modified: u64) -> bool {
    if let Some(hit) = none_match_hits(headers, etag) {
        return hit;
    }
    headers
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| http_date_secs(v.as_bytes()))
        .is_some_and(|since| modified <= since)
}

/// An HTTP date as seconds since the epoch.
pub fn http_date_secs(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// What to send for a request's `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReply {
    /// No usable range: the whole representation with 200.
    Full,
    /// 206 with bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Whether the request asks for a range at all (such requests are served uncompressed).
pub fn has_range(headers: &HeaderMap) -> bool {
    headers.contains_key(RANGE)
}

/// The range reply for a representation of `len` bytes with validators `etag` and
/// `modified`. `If-Range` that does not match turns the request into a plain GET. Several
/// ranges are answered with the whole representation (allowed by RFC 9110 §14.2, and what
/// keeps a multipart encoder out of the gateway). A malformed `Range` is ignored.
pub fn range(headers: &HeaderMap, len: u64, etag: &[u8], modified: u64) -> RangeReply {
    let Some(spec) = headers.get(RANGE) else {
        return RangeReply::Full;
    };
    if let Some(if_range) = headers.get(IF_RANGE) {
        if !if_range_matches(if_range.as_bytes(), etag, modified) {
            return RangeReply::Full;
        }
    }
    parse_range(spec.as_bytes(), len)
}

/// `If-Range` needs the strong comparison for tags; a date must equal `Last-Modified`.
fn if_range_matches(value: &[u8], etag: &[u8], modified: u64) -> bool {
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return !etag.starts_with(b"W/")
            && tags(value)
                .next()
                .is_some_and(|t| !t.weak && t.opaque == etag);
    }
    http_date_secs(value) == Some(modified)
}

/// `bytes=first-last`, `bytes=first-` or `bytes=-suffix` against `len`.
pub fn parse_range(spec: &[u8], len: u64) -> RangeReply {
    let spec = spec.trim_ascii();
    let Some(set) = spec
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case(b"bytes="))
        .map(|_| &spec[6..])
    else {
        return RangeReply::Full;
    };
    if set.contains(&b',') {
        return RangeReply::Full;
    }
    let Some(dash) = set.iter().position(|&b| b == b'-') else {
        return RangeReply::Full;
    };
    let (first, last) = (set[..dash].trim_ascii(), set[dash + 1..].trim_ascii());
    match (number(first), number(last)) {
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                return RangeReply::Unsatisfiable;
            }
            RangeReply::Partial {
                start: len.saturating_sub(suffix),
                end: len - 1,
            }
        }
        (Some(start), None) if last.is_empty() => {
            if start >= len {
                return RangeReply::Unsatisfiable;
            }
            RangeReply::Partial {
                start,
                end: len - 1,
            }
        }
        (Some(start), Some(end)) if start <= end => {
            if start >= len {
                return RangeReply::Unsatisfiable;
            }
            RangeReply::Partial {
                start,
                end: end.min(len - 1),
            }
        }
        _ => RangeReply::Full,
    }
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
