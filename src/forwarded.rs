//! The client identity, resolved once per request, and the headers sent upstream.
//!
//! The client is found by walking the forwarding chain from the right, believing entries only
//! while they were added by trusted proxies (the same rule as uvicorn's
//! `--forwarded-allow-ips` with a list). The request is then rewritten in place: hop-by-hop
//! headers go, and every header the upstream uses to identify the client is written by the
//! gateway, never passed through from an untrusted peer.
//!
//! These functions run once per request: header names are constants, and addresses are
//! formatted into stack buffers, so a request allocates only the header values it adds. The
//! fields the gateway adds are not inserted into the request's map but collected in
//! [`Added`], which the pool writes after the request's own fields.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};

use http::header::{CONNECTION, EXPECT, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::config::ClientIpHeader;
use crate::normalize::{parse_port, split_authority};

use self::chain::{for_each_forwarded_for, parse_node, trim_ows};

use self::names::{
    FORWARDED, KEEP_ALIVE, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PREFIX,
    X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};

mod chain;

/// Names of the headers the gateway reads or writes, for use across the crate.
pub mod names {
    use http::HeaderName;

    /// `X-Forwarded-For`: the client chain, written by the gateway.
    pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// `X-Forwarded-Proto`: `http` or `https` as the client used it.
    pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// `X-Forwarded-Host`: the authority as the client sent it.
    pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
    /// `X-Forwarded-Port`: the port the client connected to.
    pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
    /// `X-Forwarded-Prefix`: the path prefix a route stripped.
    pub const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
    /// `X-Real-IP`: the resolved client address alone.
    pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    /// `X-Request-Id`: the request id, kept from a trusted peer or generated.
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    /// RFC 7239 `Forwarded`.
    pub const FORWARDED: HeaderName = http::header::FORWARDED;
    /// W3C trace context `traceparent`.
    pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    /// W3C trace context `tracestate`.
    pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
    /// `Keep-Alive` (hop-by-hop).
    pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    /// `Proxy-Connection` (hop-by-hop, non-standard but still sent).
    pub const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
}

/// The most trusted hops kept between the client and the peer. The client itself is always
/// found however long the chain is; past this many trusted hops, the ones nearest the client
/// are left out of the `X-Forwarded-For` sent upstream. Real deployments have one or two.
pub const MAX_HOPS: usize = 16;

/// The resolved client for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The address the walk stopped at.
    pub ip: IpAddr,
}

/// What the gateway knows about the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// TCP peer (or PROXY-protocol source), already passed through [`canonical_ip`].
    pub ip: IpAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// Local port the request arrived on.
    pub local_port: u16,
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports for an
/// IPv4 client) as plain IPv4; any other address unchanged. Trust lists and logs are written
/// with IPv4 addresses, so the mapped form must never reach them.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// A connection's peer address and local port as header values, rendered once when the
/// connection is accepted: for a client talking to the gateway directly (the common case)
/// `X-Forwarded-For`, `X-Real-IP` and `X-Forwarded-Port` are then reference-count bumps,
/// not formatting and allocation per request.
#[derive(Debug, Clone)]
pub struct PeerText {
    ip: IpAddr,
    ip_text: HeaderValue,
    port_text: HeaderValue,
}

impl PeerText {
    /// Renders `peer`'s address and port.
    pub fn of(peer: &Peer) -> Self {
        // Both fit their buffers, and digits, dots and colons are valid header values.
        let empty = || HeaderValue::from_static("");
        Self {
            ip: peer.ip,
            ip_text: display_value::<MAX_IP_TEXT>(peer.ip).unwrap_or_else(empty),
            port_text: display_value::<5>(peer.local_port).unwrap_or_else(empty),
        }
    }
}

/// The outcome of [`resolve_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The client the request is attributed to.
    pub client: ClientAddr,
    /// The TCP peer is a trusted proxy (its forwarding headers were believed).
    pub peer_trusted: bool,
    hops: Hops,
}

impl Resolved {
    /// The trusted hops between the client and the peer, left to right, ending with the peer
    /// itself when the peer is trusted and is not the client. Empty when the peer is the
    /// client. `<client>, <hops>...` is the `X-Forwarded-For` sent upstream.
    pub fn hops(&self) -> &[IpAddr] {
        self.hops.as_slice()
    }
}

/// Up to [`MAX_HOPS`] addresses inline, keeping the most recent pushes.
#[derive(Debug, Clone)]
struct Hops {
    buf: [IpAddr; MAX_HOPS],
    len: usize,
}

impl Hops {
    const fn new() -> Self {
        Hops {
            buf: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); MAX_HOPS],
            len: 0,
        }
    }

    fn push(&mut self, ip: IpAddr) {
        if self.len == MAX_HOPS {
            // Keep the hops nearest the peer: they are the ones this deployment controls.
            self.buf.copy_within(1.., 0);
            self.buf[MAX_HOPS - 1] = ip;
        } else {
            self.buf[self.len] = ip;
            self.len += 1;
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn as_slice(&self) -> &[IpAddr] {
        &self.buf[..self.len]
    }
}

impl PartialEq for Hops {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Hops {}

/// Resolve the client of one request.
///
/// The walk starts at `peer.ip`; only when that is in `trusted` is the chain header read
/// (`X-Forwarded-For` or the `for=` parameters of RFC 7239 `Forwarded`, by `which`, never
/// both). The chain, all header lines read as one list in order, is walked from the right
/// skipping trusted entries: the first untrusted entry is the client. An entry that is not an
/// address (`unknown`, an obfuscated `_x`, garbage, a `Forwarded` element without `for=`)
/// stops the walk at the last trusted address seen. If every entry is trusted, the leftmost
/// is the client. Entries may carry ports; IPv4-mapped entries count as IPv4.
pub fn resolve_client(
    peer: &Peer,
    trusted: &[IpNet],
    which: ClientIpHeader,
    headers: &HeaderMap,
) -> Resolved {
    let peer_ip = canonical_ip(peer.ip);
    if !is_trusted(trusted, peer_ip) {
        return Resolved {
            client: ClientAddr { ip: peer_ip },
            peer_trusted: false,
            hops: Hops::new(),
        };
    }
    // The walk runs left to right so that `Forwarded`'s quoted strings can be parsed forwards
    // without buffering; it keeps only what a right-to-left walk would end with.
    let mut walk = Walk {
        trusted,
        client: None,
        hops: Hops::new(),
    };
    match which {
        ClientIpHeader::XForwardedFor => {
            for line in headers.get_all(X_FORWARDED_FOR) {
                for entry in line.as_bytes().split(|&b| b == b',') {
                    let entry = trim_ows(entry);
                    // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
                    if !entry.is_empty() {
                        walk.entry(parse_node(entry));
                    }
                }
            }
        }
        ClientIpHeader::Forwarded => {
            for line in headers.get_all(FORWARDED) {
                for_each_forwarded_for(line.as_bytes(), |node| walk.entry(node));
            }
        }
    }
    walk.entry(Some(peer_ip));
    Resolved {
        client: ClientAddr {
            ip: walk.client.unwrap_or(peer_ip),
        },
        peer_trusted: true,
        hops: walk.hops,
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// State of a left-to-right walk: the entry a right-to-left walk would stop at so far, and the
/// trusted entries to its right.
struct Walk<'a> {
    trusted: &'a [IpNet],
    /// `None` after an entry that is not an address: the next trusted entry becomes the client.
    client: Option<IpAddr>,
    hops: Hops,
}

impl Walk<'_> {
    fn entry(&mut self, node: Option<IpAddr>) {
        match node.map(canonical_ip) {
            Some(ip) if is_trusted(self.trusted, ip) => match self.client {
                None => self.client = Some(ip),
                Some(_) => self.hops.push(ip),
            },
            untrusted => {
                self.client = untrusted;
                self.hops.clear();
            }
        }
    }
}

/// Fields the gateway adds to a request on its way upstream. They are written into the
/// upstream head after the request's own fields instead of being inserted into its map: an
/// insert hashes the name and probes the map, some 230 instructions each and eight of them
/// per proxied request. Whoever pushes a name makes sure the request's map no longer has it,
/// so no field goes out twice.
#[derive(Debug, Default)]
pub struct Added(Vec<(HeaderName, HeaderValue)>);

impl Added {
    /// Room for what a proxied request usually gets: the forwarding fields, the request id,
    /// `traceparent` and `Host`.
    pub fn new() -> Self {
        Added(Vec::with_capacity(10))
    }

    /// Adds a field.
    pub fn push(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.push((name, value));
    }

    /// The value added under `name`, if any.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Drops the field named `name`: a route's own edit of that name wins.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|(n, _)| n != name);
    }

    /// The fields, in the order they were added.
    pub fn as_slice(&self) -> &[(HeaderName, HeaderValue)] {
        &self.0
    }
}

/// Inputs to [`rewrite_request`] beyond the headers themselves.
#[derive(Debug, Clone, Copy)]
pub struct ForwardCtx<'a> {
    /// The connection the request arrived on.
    pub peer: &'a Peer,
    /// Its address and port as header values, rendered once per connection.
    pub peer_text: &'a PeerText,
    /// From [`resolve_client`] for this request.
    pub resolved: &'a Resolved,
    /// The effective authority as received (`Authority::header`).
    pub authority: &'a HeaderValue,
    /// From [`request_id`].
    pub request_id: &'a HeaderValue,
    /// The prefix the route stripped, sent as `X-Forwarded-Prefix`.
    pub prefix: Option<&'a str>,
    /// Forward header names holding `_` (`server.allow_underscore_headers`).
    pub allow_underscore: bool,
    /// Also send RFC 7239 `Forwarded` (`server.forwarded_header`).
    pub forwarded_header: bool,
    /// The request is a protocol upgrade (WebSocket): keep `Upgrade` and `Connection: upgrade`.
    pub upgrade: bool,
    /// The gateway sends its own `traceparent` (`TraceContext::kept` is false): the client's
    /// `traceparent` and `tracestate` go in the same pass as the hop-by-hop headers.
    pub replace_trace: bool,
}

/// Rewrite request headers in place for the upstream; the fields the gateway writes go into
/// `added`.
///
/// 1. Headers named in `Connection` go (RFC 9110 §7.6.1), except `Host`, `Content-Length`,
///    `Authorization`, `Cookie` and the gateway's own headers, which a client could otherwise
///    strip to change framing or dodge the gateway's values. Then the hop-by-hop headers:
///    `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` (kept with a
///    fresh `Connection: upgrade` when `ctx.upgrade`), every `Proxy-*`, and `Expect` (the
///    gateway answers `100-continue` itself).
/// 2. Names holding `_` go unless `ctx.allow_underscore`, and always when, reading `_` as `-`,
///    they name a gateway header (`X_Forwarded_For`, `X_Real_IP`, `X_Request_Id`...) or a
///    framing or hop-by-hop one (`Content_Length`, `Transfer_Encoding`, `Keep_Alive`,
///    `Proxy_*`): servers that fold `_` into `-` would otherwise read them as the real ones.
/// 3. From an untrusted peer every `X-Forwarded-*`, `X-Real-IP`, `Forwarded` and
///    `X-Request-Id` goes. From a trusted peer `X-Forwarded-Proto` is kept only if it is
///    exactly `http` or `https`, and `X-Forwarded-Host` / `-Port` only if single and sane;
///    other `X-Forwarded-*` are kept, and `Forwarded` always goes (the gateway's own replaces
///    it when enabled). With `ctx.replace_trace`, `traceparent` and `tracestate` go.
/// 4. The gateway writes `X-Forwarded-For` (`<client>, <hops>...`), `X-Real-IP`,
///    `X-Forwarded-Proto`, `-Host` and `-Port` (unless kept), `X-Forwarded-Prefix` when
///    `ctx.prefix` is set, `Forwarded` when `ctx.forwarded_header`, and `X-Request-Id`.
pub fn rewrite_request(headers: &mut HeaderMap, added: &mut Added, ctx: &ForwardCtx<'_>) {
    let trusted = ctx.resolved.peer_trusted;
    remove_connection_listed(headers, |name| {
        is_protected_request_header(name) || (ctx.upgrade && name.eq_ignore_ascii_case("upgrade"))
    });
    // One pass over the names; the common request has nothing to remove.
    remove_where(headers, |name| {
        if is_hop_by_hop(name, ctx.upgrade) || name == FORWARDED || name == EXPECT {
            return true;
        }
        let name = name.as_str().as_bytes();
        name.starts_with(b"proxy-")
            || (name.contains(&b'_') && (!ctx.allow_underscore || is_aliased_underscore(name)))
            || (!trusted && is_gateway_header(name))
            || (ctx.replace_trace && (name == b"traceparent" || name == b"tracestate"))
    });
    // What an untrusted peer sent under these names is gone already; a trusted peer's value
    // goes only where the gateway writes its own.
    let mut set = |headers: &mut HeaderMap, name: HeaderName, value: HeaderValue| {
        if trusted {
            headers.remove(&name);
        }
        added.push(name, value);
    };

    if !(trusted
        && single_value_is(headers, &X_FORWARDED_PROTO, |v| {
            v == b"http" || v == b"https"
        }))
    {
        let proto = if ctx.peer.tls { "https" } else { "http" };
        set(headers, X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trusted && single_value_is(headers, &X_FORWARDED_HOST, |v| split_authority(v).is_some())) {
        set(headers, X_FORWARDED_HOST, ctx.authority.clone());
    }
    if !(trusted && single_value_is(headers, &X_FORWARDED_PORT, |v| parse_port(v).is_some())) {
        set(headers, X_FORWARDED_PORT, ctx.peer_text.port_text.clone());
    }

    let client = ctx.resolved.client.ip;
    let hops = ctx.resolved.hops();
    // A direct client (the common case) is the connection's peer, rendered once.
    let client_text = if client == ctx.peer_text.ip {
        Some(ctx.peer_text.ip_text.clone())
    } else {
        display_value::<MAX_IP_TEXT>(client)
    };
    if hops.is_empty() {
        // The chain is the client alone.
        if let Some(text) = &client_text {
            set(headers, X_FORWARDED_FOR, text.clone());
        }
    } else {
        let mut xff = StackWriter::<{ (MAX_HOPS + 1) * (MAX_IP_TEXT + 2) }>::new();
        if let Some(value) = write_chain(&mut xff, client, hops)
            .ok()
            .and_then(|()| xff.value())
        {
            set(headers, X_FORWARDED_FOR, value);
        }
    }
    if let Some(text) = client_text {
        set(headers, X_REAL_IP, text);
    }
    if let Some(prefix) = ctx.prefix {
        if let Ok(value) = HeaderValue::from_str(prefix) {
            set(headers, X_FORWARDED_PREFIX, value);
        }
    }
    set(headers, X_REQUEST_ID, ctx.request_id.clone());
    if ctx.forwarded_header {
        // Proto and host as settled above, kept or written, so both header families agree.
        let settled = |name: &HeaderName| {
            added
                .get(name)
                .or_else(|| headers.get(name))
                .map(HeaderValue::as_bytes)
        };
        let mut forwarded = StackWriter::<FORWARDED_CAPACITY>::new();
        let written = write_forwarded(
            &mut forwarded,
            settled(&X_FORWARDED_PROTO),
            settled(&X_FORWARDED_HOST),
            client,
            hops,
        );
        if let Some(value) = written.ok().and_then(|()| forwarded.value()) {
            added.push(FORWARDED, value);
        }
    }
    if ctx.upgrade && headers.contains_key(UPGRADE) {
        added.push(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Remove hop-by-hop headers from a response from upstream: names listed in `Connection`,
/// `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` (kept with a
/// fresh `Connection: upgrade` when `upgrade`) and every `Proxy-*`. End-to-end headers,
/// `Set-Cookie` included, are untouched.
pub fn rewrite_response(headers: &mut HeaderMap, upgrade: bool) {
    let doomed =
        |name: &HeaderName| is_hop_by_hop(name, upgrade) || name.as_str().starts_with("proxy-");
    // The common answer has none (the pool already took `Connection: keep-alive` and the
    // framing fields): one pass over the names and no lookups.
    if !upgrade && !headers.keys().any(doomed) {
        return;
    }
    remove_connection_listed(headers, |name| {
        upgrade && name.eq_ignore_ascii_case("upgrade")
    });
    remove_where(headers, doomed);
    if upgrade && headers.contains_key(UPGRADE) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The request id: the incoming `X-Request-Id` from a trusted peer when it is a single value
/// of 1 to 128 bytes from `A-Z a-z 0-9 . _ : -`, else a fresh one of 32 lowercase hex digits
/// (128 bits from the thread-local `fastrand` generator: no syscall per request).
pub fn request_id(headers: &HeaderMap, peer_trusted: bool) -> HeaderValue {
    if peer_trusted {
        let mut values = headers.get_all(X_REQUEST_ID).iter();
        if let (Some(value), None) = (values.next(), values.next()) {
            if is_valid_request_id(value.as_bytes()) {
                return value.clone();
            }
        }
    }
    let mut id = [0u8; 32];
    crate::trace_context::hex(fastrand::u128(..), &mut id);
    crate::trace_context::hex_header(id)
}

fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Longest text of an address: an IPv6 address with an embedded IPv4 part.
const MAX_IP_TEXT: usize = 45;
/// Room for `for=`, quotes and brackets per node, the separators, `proto=`, and a `host=` of a
/// validated authority (at most 253 + 1 + 2 + 6 bytes).
const FORWARDED_CAPACITY: usize = (MAX_HOPS + 1) * (MAX_IP_TEXT + 10) + 320;

fn is_protected_request_header(name: &str) -> bool {
    const PROTECTED: [&str; 9] = [
        "host",
        "content-length",
        "authorization",
        "cookie",
        "forwarded",
        "x-real-ip",
        "x-request-id",
        "traceparent",
        "tracestate",
    ];
    PROTECTED.iter().any(|p| p.eq_ignore_ascii_case(name))
        || name
            .as_bytes()
            .get(..b"x-forwarded-".len())
            .is_some_and(|head| head.eq_ignore_ascii_case(b"x-forwarded-"))
}

/// A header only the gateway may set: any `x-forwarded-*`, `forwarded`, `x-real-ip`,
/// `x-request-id` (lower-case `name`).
fn is_gateway_header(name: &[u8]) -> bool {
    name.starts_with(b"x-forwarded-")
        || name == b"forwarded"
        || name == b"x-real-ip"
        || name == b"x-request-id"
}

/// Does `name` (lower-case, holding `_`) read, with `_` as `-`, as a gateway, framing or
/// hop-by-hop header?
fn is_aliased_underscore(name: &[u8]) -> bool {
    const EXACT: [&[u8]; 5] = [
        b"x-real-ip",
        b"x-request-id",
        b"content-length",
        b"transfer-encoding",
        b"keep-alive",
    ];
    const PREFIXES: [&[u8]; 2] = [b"x-forwarded-", b"proxy-"];
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
    };
    EXACT.iter().any(|exact| same(name, exact))
        || PREFIXES.iter().any(|prefix| {
            name.get(..prefix.len())
                .is_some_and(|head| same(head, prefix))
        })
}

/// Remove every header named in a `Connection` line, except those `keep` accepts.
fn remove_connection_listed(headers: &mut HeaderMap, keep: impl Fn(&str) -> bool) {
    // Each line is cloned (a reference-count bump) so the map can be changed while its tokens
    // are read; removing `connection` itself is left to the hop-by-hop pass, so the lines stay
    // put while they are walked.
    let mut line = 0;
    while let Some(value) = headers.get_all(CONNECTION).iter().nth(line).cloned() {
        line += 1;
        for token in value.as_bytes().split(|&b| b == b',') {
            let Ok(name) = std::str::from_utf8(trim_ows(token)) else {
                continue;
            };
            if !name.is_empty() && !name.eq_ignore_ascii_case("connection") && !keep(name) {
                headers.remove(name);
            }
        }
    }
}

/// `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, and `Upgrade` unless the
/// exchange is an upgrade. Compared as names, so a request without any costs no lookups.
fn is_hop_by_hop(name: &HeaderName, upgrade: bool) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || (!upgrade && name == UPGRADE)
        || name.as_str() == KEEP_ALIVE.as_str()
}

/// Remove every header whose name `doomed` accepts. Rescanning after each removal keeps the
/// common case (nothing to remove) to one pass with no allocation.
fn remove_where(headers: &mut HeaderMap, mut doomed: impl FnMut(&HeaderName) -> bool) {
    while let Some(name) = headers.keys().find(|name| doomed(name)).cloned() {
        headers.remove(&name);
    }
}

fn single_value_is(headers: &HeaderMap, name: &HeaderName, ok: impl Fn(&[u8]) -> bool) -> bool {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => ok(value.as_bytes()),
        _ => false,
    }
}

/// `<client>, <hop>, ...`
fn write_chain(out: &mut impl fmt::Write, client: IpAddr, hops: &[IpAddr]) -> fmt::Result {
    write!(out, "{client}")?;
    for hop in hops {
        write!(out, ", {hop}")?;
    }
    Ok(())
}

/// `for=<client>;proto=<proto>;host="<host>", for=<hop>, ...`. Proto and host go on the first
/// element, describing the request as the client made it, which is where readers of
/// `Forwarded` look for them.
fn write_forwarded(
    out: &mut impl fmt::Write,
    proto: Option<&[u8]>,
    host: Option<&[u8]>,
    client: IpAddr,
    hops: &[IpAddr],
) -> fmt::Result {
    write_forwarded_node(out, client)?;
    if let Some(proto) = proto.and_then(|v| std::str::from_utf8(v).ok()) {
        write!(out, ";proto={proto}")?;
    }
    // Only a value that needs no escaping inside a quoted string is sent.
    if let Some(host) = host.filter(|h| {
        h.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        let host = std::str::from_utf8(host).map_err(|_| fmt::Error)?;
        write!(out, ";host=\"{host}\"")?;
    }
    for &hop in hops {
        out.write_str(", ")?;
        write_forwarded_node(out, hop)?;
    }
    Ok(())
}

fn write_forwarded_node(out: &mut impl fmt::Write, ip: IpAddr) -> fmt::Result {
    match ip {
        IpAddr::V4(v4) => write!(out, "for={v4}"),
        IpAddr::V6(v6) => write!(out, "for=\"[{v6}]\""),
    }
}

/// `value` as it displays, as a header value; `None` when it does not fit `N` bytes.
fn display_value<const N: usize>(value: impl fmt::Display) -> Option<HeaderValue> {
    let mut text = StackWriter::<N>::new();
    write!(text, "{value}").ok()?;
    text.value()
}

/// A fixed-size text buffer on the stack; writing past its end is an error, not a panic.
struct StackWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackWriter<N> {
    fn new() -> Self {
        StackWriter {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// What was written, as a header value; `None` if it is not a valid one.
    fn value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.as_bytes()).ok()
    }
}

impl<const N: usize> fmt::Write for StackWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
