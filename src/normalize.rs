//! One effective authority and one normalised path per request.
//!
//! Routing, access control and the headers sent upstream all read the values computed here, so
//! that no two parts of the gateway can disagree about which host or which path a request is
//! for (the classic source of route and ACL bypasses: `/admin` vs `/%61dmin` vs `/x/../admin`).
//! Everything here is a pure function, called once per request on the hot path: the common
//! case (an already-normal path) does not allocate.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri, Version};

/// Why a request's target (authority or path) was refused. Every variant is a client error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `Host` header and no authority in the request target.
    #[error("missing host")]
    MissingHost,
    /// More than one `Host` header line.
    #[error("duplicate host")]
    DuplicateHost,
    /// The authority is not `host[:port]` with a sane host and port.
    #[error("malformed host")]
    MalformedHost,
    /// `Host` disagrees with `:authority` or with the absolute-form target.
    #[error("host does not match request target authority")]
    AuthorityMismatch,
    /// The path climbs above `/` with `..` segments.
    #[error("path climbs above root")]
    PathAboveRoot,
    /// The path does not start with `/`, holds a raw backslash, control byte or space, or has a
    /// broken percent escape.
    #[error("malformed path")]
    MalformedPath,
    /// The request target is longer than the configured limit (checked by the caller).
    #[error("request target too long")]
    UriTooLong,
}

/// The request's one effective authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The explicit port, if the authority carried one.
    pub port: Option<u16>,
    /// Exactly what should be sent upstream as `Host` / `X-Forwarded-Host`: the authority as
    /// received (e.g. `App.Example.com:8443`).
    pub header: HeaderValue,
    /// The host's length at the front of `header`, trailing dot left out.
    host_len: usize,
    /// The host lower-cased, only when `header` spells it with capitals: the common request
    /// reads its host from `header` without a copy.
    lowered: Option<Box<str>>,
}

impl Authority {
    /// Lower-cased host without port or trailing dot; IPv6 keeps its brackets (`[::1]`).
    pub fn host(&self) -> &str {
        match &self.lowered {
            Some(lowered) => lowered,
            // `split_authority` accepted only ASCII, so this never falls back.
            None => std::str::from_utf8(&self.header.as_bytes()[..self.host_len]).unwrap_or(""),
        }
    }
}

/// The request's one effective authority: the URI's authority (HTTP/2 `:authority`, or an
/// HTTP/1.x absolute-form target), else the single `Host` header.
///
/// A missing authority is an error for every version, HTTP/1.0 included, because the gateway
/// routes on host. HTTP/1.1 must also carry `Host` even with an absolute-form target
/// (RFC 9112 §3.2). A repeated or malformed `Host`, or one that differs from the URI's
/// authority (compared case-insensitively, port included), is an error.
pub fn effective_authority(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Authority, TargetError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(TargetError::DuplicateHost);
    }
    match (uri.authority(), host) {
        (Some(target), Some(host)) => {
            let target = target.as_str().as_bytes();
            if !target.eq_ignore_ascii_case(host.as_bytes()) {
                return Err(TargetError::AuthorityMismatch);
            }
            // Prefer the URI's spelling; reuse the header's buffer when the bytes are the same.
            if target == host.as_bytes() {
                build_authority(host.clone())
            } else {
                build_authority(header_from(target)?)
            }
        }
        (Some(_), None) if version == Version::HTTP_11 => Err(TargetError::MissingHost),
        (Some(target), None) => build_authority(header_from(target.as_str().as_bytes())?),
        (None, Some(host)) => build_authority(host.clone()),
        (None, None) => Err(TargetError::MissingHost),
    }
}

fn header_from(raw: &[u8]) -> Result<HeaderValue, TargetError> {
    HeaderValue::from_bytes(raw).map_err(|_| TargetError::MalformedHost)
}

fn build_authority(header: HeaderValue) -> Result<Authority, TargetError> {
    let (host, port) = split_authority(header.as_bytes()).ok_or(TargetError::MalformedHost)?;
    let host = host.strip_suffix(b".").unwrap_or(host);
    let lowered = if host.iter().any(u8::is_ascii_uppercase) {
        // `split_authority` only accepts ASCII, so this cannot fail; map it anyway rather
        // than unwrap.
        let host = std::str::from_utf8(host).map_err(|_| TargetError::MalformedHost)?;
        Some(host.to_ascii_lowercase().into_boxed_str())
    } else {
        None
    };
    Ok(Authority {
        port,
        host_len: host.len(),
        lowered,
        header,
    })
}

/// Split `host[:port]` into its host (as written, trailing dot kept) and port, or `None` when
/// it is not a sane authority: a bracketed IPv6 literal or a DNS-style name (labels of
/// letters, digits, `-`, `_`), then an optional port `1..=65535`. No userinfo, no empty port.
pub(crate) fn split_authority(raw: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, rest) = match raw {
        [b'[', ..] => {
            let end = raw.iter().position(|&b| b == b']')?;
            let literal = std::str::from_utf8(raw.get(1..end)?).ok()?;
            literal.parse::<Ipv6Addr>().ok()?;
            raw.split_at(end + 1)
        }
        _ => {
            let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
            let (host, rest) = raw.split_at(colon);
            if !is_reg_name(host) {
                return None;
            }
            (host, rest)
        }
    };
    let port = match rest {
        [] => None,
        [b':', digits @ ..] => Some(parse_port(digits)?),
        _ => return None,
    };
    Some((host, port))
}

/// A decimal port `1..=65535`, at most five digits (so `08080` is refused, `8080` accepted).
pub(crate) fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let port = digits
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// A DNS-style host name: at most 253 bytes (one trailing dot allowed), labels of 1..=63
/// letters, digits, `-` or `_` (underscores appear in container service names).
fn is_reg_name(host: &[u8]) -> bool {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    // One pass, counting the current label's length.
    let mut label = 0;
    for &b in host {
        if b == b'.' {
            if label == 0 {
                return false;
            }
            label = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label += 1;
            if label > 63 {
                return false;
            }
        } else {
            return false;
        }
    }
    label > 0
}

/// Normalise a request path once (RFC 3986 §6.2.2).
///
/// Percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, the hex of every
/// other escape is upper-cased, and dot-segments are removed, percent-encoded dots included
/// (`/%2e%2e/` is `..`). A path that climbs above `/` is [`TargetError::PathAboveRoot`].
/// `%2F`, `%5C` and `%00` are never decoded: a decoded slash would change which segments the
/// router and the upstream see. Duplicate slashes are kept. An empty path is `/`.
///
/// A raw backslash, space, NUL or other control byte, a broken escape, or a path not starting
/// with `/` is [`TargetError::MalformedPath`] (`*` for `OPTIONS` is for the caller to handle).
///
/// Returns [`Cow::Borrowed`] without allocating when the path is already normal.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    match path.as_bytes() {
        [] => return Ok(Cow::Borrowed("/")),
        [b'/', ..] => {}
        _ => return Err(TargetError::MalformedPath),
    }
    if is_normal(path.as_bytes())? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path.as_bytes());
    let normal = remove_dot_segments(&decoded)?;
    // Only ASCII sequences were replaced by ASCII, so the bytes are still UTF-8.
    String::from_utf8(normal)
        .map(Cow::Owned)
        .map_err(|_| TargetError::MalformedPath)
}

/// Validate `path` (which starts with `/`) and report whether it is already normal.
fn is_normal(path: &[u8]) -> Result<bool, TargetError> {
    let mut normal = true;
    // path[0] is the leading "/", checked by the caller.
    let mut segment_start = 1;
    let mut i = 1;
    while i < path.len() {
        match path[i] {
            b'/' => {
                normal &= !is_dot_segment(&path[segment_start..i]);
                segment_start = i + 1;
            }
            b'%' => {
                let (hi, lo) = match path.get(i + 1..i + 3) {
                    Some(&[hi, lo]) => (hi, lo),
                    _ => return Err(TargetError::MalformedPath),
                };
                let byte = (hex_value(hi)? << 4) | hex_value(lo)?;
                normal &=
                    !is_unreserved(byte) && !hi.is_ascii_lowercase() && !lo.is_ascii_lowercase();
                i += 2;
            }
            b'\\' | 0..=0x20 | 0x7f => return Err(TargetError::MalformedPath),
            _ => {}
        }
        i += 1;
    }
    normal &= !is_dot_segment(&path[segment_start..]);
    Ok(normal)
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

fn hex_value(digit: u8) -> Result<u8, TargetError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(TargetError::MalformedPath),
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decode unreserved escapes and upper-case the others. `path` was validated by `is_normal`.
fn decode_unreserved(path: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if let (b'%', Some(&[hi, lo])) = (path[i], path.get(i + 1..i + 3)) {
            if let (Ok(hi), Ok(lo)) = (hex_value(hi), hex_value(lo)) {
                let byte = (hi << 4) | lo;
                if is_unreserved(byte) {
                    out.push(byte);
                } else {
                    out.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
                }
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 over a path starting with `/`, except that climbing above the root is an
/// error instead of being silently clamped: a request for `/../etc` is an attack or a bug, and
/// answering it as `/etc` hides both.
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(path.len());
    let mut ends_in_dot = false;
    for segment in path.get(1..).unwrap_or_default().split(|&b| b == b'/') {
        ends_in_dot = is_dot_segment(segment);
        if segment == b".." {
            // Each kept segment was written as "/" + segment, and segments hold no "/", so the
            // last "/" starts the last segment.
            let start = out
                .iter()
                .rposition(|&b| b == b'/')
                .ok_or(TargetError::PathAboveRoot)?;
            out.truncate(start);
        } else if segment != b"." {
            out.push(b'/');
            out.extend_from_slice(segment);
        }
    }
    if ends_in_dot || out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Does the normalised `path` fall under the route prefix `prefix` (normalised, no trailing
/// slash unless it is `/`) on a segment boundary? `/api` matches `/api`, `/api/` and `/api/x`
/// but not `/apix`; `/` matches everything.
pub fn prefix_matches(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `path` with `prefix` removed, always starting with `/`: `("/api/x", "/api")` gives `/x`,
/// `("/api", "/api")` gives `/`. The caller has checked [`prefix_matches`]; a path that does
/// not start with `prefix` is returned unchanged.
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) => rest,
        None => path,
    }
}

/// Does `host` match the wildcard `suffix` (`*.example.com` stored as `.example.com`) with
/// exactly one more label? `a.example.com` does; `a.b.example.com` and `example.com` do not.
/// ASCII case is ignored.
pub fn host_matches_wildcard(host: &str, suffix: &str) -> bool {
    let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
    let Some(split) = host.len().checked_sub(suffix.len()) else {
        return false;
    };
    let (label, tail) = host.split_at(split);
    !label.is_empty() && !label.contains(&b'.') && tail.eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests;
