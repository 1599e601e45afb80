use std::collections::HashSet;
use std::net::IpAddr;

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, SET_COOKIE, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::names::{
    FORWARDED, KEEP_ALIVE, PROXY_CONNECTION, TRACEPARENT, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PORT, X_FORWARDED_PREFIX, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};
use super::*;
use crate::config::ClientIpHeader;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|text| ip(text)).collect()
}

fn peer(text: &str, tls: bool) -> Peer {
    Peer {
        ip: ip(text),
        tls,
        local_port: 8443,
    }
}

fn internal() -> Vec<IpNet> {
    vec!["10.0.0.0/8".parse().expect("test net")]
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test name"),
            HeaderValue::from_str(value).expect("test value"),
        );
    }
    map
}

fn values<'a>(map: &'a HeaderMap, name: &HeaderName) -> Vec<&'a str> {
    map.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect()
}

fn xff(peer_ip: &str, chain: &[&str]) -> Resolved {
    let lines: Vec<_> = chain
        .iter()
        .map(|line| ("x-forwarded-for", *line))
        .collect();
    resolve_client(
        &peer(peer_ip, true),
        &internal(),
        ClientIpHeader::XForwardedFor,
        &map(&lines),
    )
}

fn fwd(peer_ip: &str, lines: &[&str]) -> Resolved {
    let lines: Vec<_> = lines.iter().map(|line| ("forwarded", *line)).collect();
    resolve_client(
        &peer(peer_ip, true),
        &internal(),
        ClientIpHeader::Forwarded,
        &map(&lines),
    )
}

struct Opts {
    allow_underscore: bool,
    forwarded_header: bool,
    upgrade: bool,
    prefix: Option<&'static str>,
    replace_trace: bool,
}

const DEFAULT: Opts = Opts {
    allow_underscore: false,
    forwarded_header: false,
    upgrade: false,
    prefix: None,
    replace_trace: false,
};

/// Resolve with `X-Forwarded-For` and 10.0.0.0/8 trusted, then rewrite; returns the fields
/// the upstream gets, the request's own followed by the added ones.
fn rewrite(peer: &Peer, mut headers: HeaderMap, opts: &Opts) -> (Resolved, HeaderMap) {
    let resolved = resolve_client(peer, &internal(), ClientIpHeader::XForwardedFor, &headers);
    let ctx = ForwardCtx {
        peer,
        peer_text: &PeerText::of(peer),
        resolved: &resolved,
        authority: &HeaderValue::from_static("App.Example.com:8443"),
        request_id: &HeaderValue::from_static("req-1"),
        prefix: opts.prefix,
        allow_underscore: opts.allow_underscore,
        forwarded_header: opts.forwarded_header,
        upgrade: opts.upgrade,
        replace_trace: opts.replace_trace,
    };
    let mut added = Added::new();
    rewrite_request(&mut headers, &mut added, &ctx);
    for (name, value) in added.as_slice() {
        assert!(
            !headers.contains_key(name),
            "{name} would go upstream twice: kept and added"
        );
        headers.append(name.clone(), value.clone());
    }
    (resolved, headers)
}

#[test]
fn untrusted_peer_cannot_spoof_anything() {
    let spoofed = map(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x_forwarded_for", "2.2.2.2"),
        ("x-real-ip", "3.3.3.3"),
        ("forwarded", "for=4.4.4.4"),
        ("x-request-id", "evil"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.com"),
        ("x-forwarded-port", "1"),
        ("x-forwarded-prefix", "/evil"),
        ("x-forwarded-server", "evil"),
        ("accept", "*/*"),
    ]);
    let client = peer("198.51.100.7", false);
    let opts = Opts {
        allow_underscore: true,
        ..DEFAULT
    };
    let (resolved, out) = rewrite(&client, spoofed, &opts);
    assert_eq!(resolved.client.ip, ip("198.51.100.7"));
    assert!(!resolved.peer_trusted);
    assert_eq!(values(&out, &X_FORWARDED_FOR), ["198.51.100.7"]);
    assert_eq!(values(&out, &X_REAL_IP), ["198.51.100.7"]);
    assert_eq!(values(&out, &X_FORWARDED_PROTO), ["http"]);
    assert_eq!(values(&out, &X_FORWARDED_HOST), ["App.Example.com:8443"]);
    assert_eq!(values(&out, &X_FORWARDED_PORT), ["8443"]);
    assert_eq!(values(&out, &X_REQUEST_ID), ["req-1"]);
    assert!(!out.contains_key("x_forwarded_for"));
    assert!(!out.contains_key(FORWARDED));
    assert!(!out.contains_key(X_FORWARDED_PREFIX));
    assert!(!out.contains_key("x-forwarded-server"));
    assert_eq!(values(&out, &http::header::ACCEPT), ["*/*"]);
}

#[test]
fn trusted_chain_stops_at_first_untrusted_from_the_right() {
    let headers = map(&[("x-forwarded-for", "spoof, 203.0.113.9, 10.0.0.2")]);
    let (resolved, out) = rewrite(&peer("10.0.0.1", true), headers, &DEFAULT);
    assert_eq!(resolved.client.ip, ip("203.0.113.9"));
    assert!(resolved.peer_trusted);
    assert_eq!(resolved.hops(), ips(&["10.0.0.2", "10.0.0.1"]));
    assert_eq!(
        values(&out, &X_FORWARDED_FOR),
        ["203.0.113.9, 10.0.0.2, 10.0.0.1"]
    );
    assert_eq!(values(&out, &X_REAL_IP), ["203.0.113.9"]);
}

#[test]
fn untrusted_entry_in_the_middle_wins_over_entries_left_of_it() {
    let r = xff(
        "10.0.0.1",
        &["10.9.9.9, 198.51.100.1, 10.0.0.3, 198.51.100.2, 10.0.0.2"],
    );
    assert_eq!(r.client.ip, ip("198.51.100.2"));
    assert_eq!(r.hops(), ips(&["10.0.0.2", "10.0.0.1"]));
}

#[test]
fn non_address_entry_stops_the_walk_at_the_last_trusted_address() {
    for stopper in [
        "unknown",
        "_hidden",
        "1.2.3",
        "not an ip",
        "[::1",
        "1.2.3.4:99999",
    ] {
        let chain = format!("198.51.100.1, {stopper}, 10.0.0.2");
        let r = xff("10.0.0.1", &[&chain]);
        assert_eq!(r.client.ip, ip("10.0.0.2"), "{stopper:?}");
        assert_eq!(r.hops(), ips(&["10.0.0.1"]), "{stopper:?}");
    }
    let r = xff("10.0.0.1", &["198.51.100.1, unknown"]);
    assert_eq!(r.client.ip, ip("10.0.0.1"));
    assert!(r.hops().is_empty());
}

#[test]
fn all_trusted_chain_gives_the_leftmost_entry() {
    let r = xff("10.0.0.1", &["10.0.0.3, 10.0.0.2"]);
    assert_eq!(r.client.ip, ip("10.0.0.3"));
    assert_eq!(r.hops(), ips(&["10.0.0.2", "10.0.0.1"]));
}

#[test]
fn trusted_peer_without_chain_is_the_client() {
    let r = xff("10.0.0.1", &[]);
    assert_eq!(r.client.ip, ip("10.0.0.1"));
    assert!(r.peer_trusted);
    assert!(r.hops().is_empty());
}

#[test]
fn untrusted_peer_headers_are_not_read() {
    let headers = map(&[("x-forwarded-for", "203.0.113.9")]);
    let r = resolve_client(
        &peer("198.51.100.7", false),
        &internal(),
        ClientIpHeader::XForwardedFor,
        &headers,
    );
    assert_eq!(r.client.ip, ip("198.51.100.7"));
    assert!(!r.peer_trusted);
    let r = resolve_client(
        &peer("10.0.0.1", false),
        &[],
        ClientIpHeader::XForwardedFor,
        &headers,
    );
    assert_eq!(r.client.ip, ip("10.0.0.1"));
}

#[test]
fn header_lines_are_one_list_in_order() {
    let r = xff(
        "10.0.0.1",
        &["198.51.100.1, 203.0.113.9", "10.0.0.3", "10.0.0.2"],
    );
    assert_eq!(r.client.ip, ip("203.0.113.9"));
    assert_eq!(r.hops(), ips(&["10.0.0.3", "10.0.0.2", "10.0.0.1"]));
}

#[test]
fn empty_list_elements_are_ignored() {
    let r = xff("10.0.0.1", &["203.0.113.9, ,10.0.0.2,"]);
    assert_eq!(r.client.ip, ip("203.0.113.9"));
}

#[test]
fn xff_entries_may_carry_ports_and_brackets() {
    let r = xff("10.0.0.1", &["[2001:db8::1]:443, 10.0.0.2:5678"]);
    assert_eq!(r.client.ip, ip("2001:db8::1"));
    assert_eq!(r.hops(), ips(&["10.0.0.2", "10.0.0.1"]));
    let r = xff("10.0.0.1", &["198.51.100.1:80"]);
    assert_eq!(r.client.ip, ip("198.51.100.1"));
    let r = xff("10.0.0.1", &["2001:db8::2"]);
    assert_eq!(r.client.ip, ip("2001:db8::2"));
}

#[test]
fn ipv4_mapped_addresses_are_canonicalised() {
    assert_eq!(canonical_ip(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
    assert_eq!(canonical_ip(ip("::1")), ip("::1"));
    assert_eq!(canonical_ip(ip("192.0.2.1")), ip("192.0.2.1"));

    let r = xff(
        "::ffff:10.0.0.1",
        &["::ffff:203.0.113.9, [::ffff:10.0.0.2]"],
    );
    assert!(r.peer_trusted);
    assert_eq!(r.client.ip, ip("203.0.113.9"));
    assert_eq!(r.hops(), ips(&["10.0.0.2", "10.0.0.1"]));
}

#[test]
fn forwarded_for_params_are_walked() {
    let r = fwd(
        "10.0.0.1",
        &[
            "for=198.51.100.1;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\"",
            "for=\"10.0.0.2:80\";proto=https",
        ],
    );
    assert_eq!(r.client.ip, ip("2001:db8:cafe::17"));
    assert_eq!(r.hops(), ips(&["10.0.0.2", "10.0.0.1"]));

    let r = fwd("10.0.0.1", &["for=198.51.100.1, for=_hidden, for=10.0.0.2"]);
    assert_eq!(r.client.ip, ip("10.0.0.2"));
    let r = fwd("10.0.0.1", &["for=198.51.100.1, proto=https, for=10.0.0.2"]);
    assert_eq!(r.client.ip, ip("10.0.0.2"));
}

#[test]
fn only_the_configured_chain_header_is_read() {
    let headers = map(&[
        ("x-forwarded-for", "198.51.100.1"),
        ("forwarded", "for=198.51.100.2"),
    ]);
    let trusted_peer = peer("10.0.0.1", true);
    let by_xff = resolve_client(
        &trusted_peer,
        &internal(),
        ClientIpHeader::XForwardedFor,
        &headers,
    );
    let by_fwd = resolve_client(
        &trusted_peer,
        &internal(),
        ClientIpHeader::Forwarded,
        &headers,
    );
    assert_eq!(by_xff.client.ip, ip("198.51.100.1"));
    assert_eq!(by_fwd.client.ip, ip("198.51.100.2"));
}

#[test]
fn long_chains_keep_the_client_and_the_hops_nearest_the_peer() {
    let trusted: Vec<String> = (1..=20).map(|n| format!("10.0.1.{n}")).collect();
    let chain = format!("198.51.100.1, {}", trusted.join(", "));
    let r = xff("10.0.0.1", &[&chain]);
    assert_eq!(r.client.ip, ip("198.51.100.1"));
    assert_eq!(r.hops().len(), MAX_HOPS);
    assert_eq!(r.hops().last(), Some(&ip("10.0.0.1")));
    assert_eq!(r.hops().first(), Some(&ip("10.0.1.6")));

    let r = xff("10.0.0.1", &[&trusted.join(", ")]);
    assert_eq!(r.client.ip, ip("10.0.1.1"));
}

#[test]
fn connection_cannot_strip_gateway_headers_but_strips_others() {
    let headers = map(&[
        ("connection", "X-Forwarded-For, Keep-Alive, foo"),
        ("keep-alive", "timeout=5"),
        ("foo", "1"),
        ("bar", "2"),
    ]);
    let (_, out) = rewrite(&peer("198.51.100.7", true), headers, &DEFAULT);
    assert_eq!(values(&out, &X_FORWARDED_FOR), ["198.51.100.7"]);
    assert!(!out.contains_key("foo"));
    assert!(!out.contains_key(KEEP_ALIVE));
    assert!(!out.contains_key(CONNECTION));
    assert_eq!(values(&out, &HeaderName::from_static("bar")), ["2"]);

    // A trusted peer's X-Forwarded-Proto survives being listed, where it would otherwise be
    // replaced by the gateway's view of the hop (plain HTTP here).
    let headers = map(&[
        ("connection", "x-forwarded-proto"),
        ("x-forwarded-proto", "https"),
    ]);
    let (_, out) = rewrite(&peer("10.0.0.1", false), headers, &DEFAULT);
    assert_eq!(values(&out, &X_FORWARDED_PROTO), ["https"]);
}

#[test]
fn connection_cannot_strip_framing_credentials_or_trace_headers() {
    let headers = map(&[
        ("connection", "host, Authorization"),
        (
            "connection",
            "COOKIE, content-length, traceparent, x-request-id, baz",
        ),
        ("host", "app.example.com"),
        ("authorization", "Bearer t"),
        ("cookie", "a=1"),
        ("content-length", "3"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("baz", "gone"),
    ]);
    let (_, out) = rewrite(&peer("198.51.100.7", true), headers, &DEFAULT);
    for name in [HOST, AUTHORIZATION, COOKIE, CONTENT_LENGTH, TRACEPARENT] {
        assert!(out.contains_key(&name), "{name}");
    }
    assert_eq!(values(&out, &X_REQUEST_ID), ["req-1"]);
    assert!(!out.contains_key("baz"));
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let headers = map(&[
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic x"),
        ("proxy-connection", "keep-alive"),
        ("proxy-anything", "x"),
        ("expect", "100-continue"),
        ("accept", "text/html"),
        ("accept", "application/json"),
    ]);
    let (_, out) = rewrite(&peer("198.51.100.7", true), headers, &DEFAULT);
    for name in [
        http::header::EXPECT,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        KEEP_ALIVE,
        UPGRADE,
        PROXY_CONNECTION,
    ] {
        assert!(!out.contains_key(&name), "{name}");
    }
    assert!(!out.contains_key("proxy-authorization"));
    assert!(!out.contains_key("proxy-anything"));
    assert!(!out.contains_key(CONNECTION));
    assert_eq!(
        values(&out, &http::header::ACCEPT),
        ["text/html", "application/json"]
    );
}

#[test]
fn trace_headers_go_only_when_the_gateway_replaces_them() {
    let headers = || {
        map(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=abc"),
        ])
    };
    let replace = Opts {
        replace_trace: true,
        ..DEFAULT
    };
    let (_, out) = rewrite(&peer("10.0.0.1", true), headers(), &replace);
    assert!(!out.contains_key(TRACEPARENT));
    assert!(!out.contains_key("tracestate"));
    let (_, out) = rewrite(&peer("10.0.0.1", true), headers(), &DEFAULT);
    assert_eq!(values(&out, &TRACEPARENT).len(), 1);
    assert_eq!(
        values(&out, &HeaderName::from_static("tracestate")),
        ["vendor=abc"]
    );
}

#[test]
fn trusted_peers_own_values_are_replaced_not_doubled() {
    let headers = map(&[
        ("x-forwarded-proto", "gopher"),
        ("x-real-ip", "10.9.9.9"),
        ("x-request-id", "theirs"),
        ("x-forwarded-prefix", "/theirs"),
    ]);
    let opts = Opts {
        prefix: Some("/api"),
        ..DEFAULT
    };
    // `rewrite` itself fails on a field both kept and added.
    let (_, out) = rewrite(&peer("10.0.0.1", true), headers, &opts);
    assert_eq!(values(&out, &X_FORWARDED_PROTO), ["https"]);
    assert_eq!(values(&out, &X_REAL_IP), ["10.0.0.1"]);
    assert_eq!(values(&out, &X_REQUEST_ID), ["req-1"]);
    assert_eq!(values(&out, &X_FORWARDED_PREFIX), ["/api"]);
}

#[test]
fn upgrade_keeps_upgrade_and_a_fresh_connection_upgrade() {
    let headers = map(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]);
    let opts = Opts {
        upgrade: true,
        ..DEFAULT
    };
    let (_, out) = rewrite(&peer("198.51.100.7", true), headers, &opts);
    assert_eq!(values(&out, &UPGRADE), ["websocket"]);
    assert_eq!(values(&out, &CONNECTION), ["upgrade"]);
    assert!(out.contains_key("sec-websocket-key"));
}

#[test]
fn underscore_names_are_dropped_unless_allowed() {
    let headers = || {
        map(&[
            ("my_header", "1"),
            ("x_real_ip", "1.1.1.1"),
            ("X_Request_Id", "evil"),
            ("content_length", "5"),
            ("transfer_encoding", "chunked"),
            ("proxy_authorization", "x"),
            ("x_forwarded_proto", "https"),
        ])
    };
    let (_, out) = rewrite(&peer("10.0.0.1", true), headers(), &DEFAULT);
    assert!(!out.keys().any(|name| name.as_str().contains('_')));

    let allow = Opts {
        allow_underscore: true,
        ..DEFAULT
    };
    let (_, out) = rewrite(&peer("10.0.0.1", true), headers(), &allow);
    let kept: Vec<_> = out
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .collect();
    assert_eq!(kept, ["my_header"]);
}

#[test]
fn forwarded_proto_from_trusted_peer_kept_only_if_exact() {
    for (sent, want) in [
        ("https", "https"),
        ("http", "http"),
        ("HTTPS", "http"),
        ("ftp", "http"),
        ("http, https", "http"),
        (" https", "http"),
    ] {
        let headers = map(&[("x-forwarded-proto", sent)]);
        let (_, out) = rewrite(&peer("10.0.0.1", false), headers, &DEFAULT);
        assert_eq!(values(&out, &X_FORWARDED_PROTO), [want], "{sent:?}");
    }
    let headers = map(&[
        ("x-forwarded-proto", "https"),
        ("x-forwarded-proto", "https"),
    ]);
    let (_, out) = rewrite(&peer("10.0.0.1", false), headers, &DEFAULT);
    assert_eq!(values(&out, &X_FORWARDED_PROTO), ["http"]);
}

#[test]
fn forwarded_host_and_port_from_trusted_peer_kept_if_sane() {
    let headers = map(&[
        ("x-forwarded-host", "public.example.com"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/outer"),
    ]);
    let (_, out) = rewrite(&peer("10.0.0.1", false), headers, &DEFAULT);
    assert_eq!(values(&out, &X_FORWARDED_HOST), ["public.example.com"]);
    assert_eq!(values(&out, &X_FORWARDED_PORT), ["443"]);
    assert_eq!(values(&out, &X_FORWARDED_PREFIX), ["/outer"]);

    let headers = map(&[
        ("x-forwarded-host", "evil.com, other.com"),
        ("x-forwarded-port", "99999"),
    ]);
    let (_, out) = rewrite(&peer("10.0.0.1", false), headers, &DEFAULT);
    assert_eq!(values(&out, &X_FORWARDED_HOST), ["App.Example.com:8443"]);
    assert_eq!(values(&out, &X_FORWARDED_PORT), ["8443"]);
}

#[test]
fn prefix_is_sent_when_stripped() {
    let opts = Opts {
        prefix: Some("/api"),
        ..DEFAULT
    };
    let (_, out) = rewrite(&peer("198.51.100.7", true), HeaderMap::new(), &opts);
    assert_eq!(values(&out, &X_FORWARDED_PREFIX), ["/api"]);
}

#[test]
fn forwarded_header_is_written_when_enabled() {
    let opts = Opts {
        forwarded_header: true,
        ..DEFAULT
    };
    let (_, out) = rewrite(&peer("198.51.100.7", true), HeaderMap::new(), &opts);
    assert_eq!(
        values(&out, &FORWARDED),
        ["for=198.51.100.7;proto=https;host=\"App.Example.com:8443\""]
    );

    let headers = map(&[
        ("x-forwarded-for", "[2001:db8::1]:5000, 10.0.0.2"),
        ("forwarded", "for=1.1.1.1"),
    ]);
    let (_, out) = rewrite(&peer("10.0.0.1", false), headers, &opts);
    assert_eq!(
        values(&out, &FORWARDED),
        [
            "for=\"[2001:db8::1]\";proto=http;host=\"App.Example.com:8443\", for=10.0.0.2, for=10.0.0.1"
        ]
    );
    assert_eq!(
        values(&out, &X_FORWARDED_FOR),
        ["2001:db8::1, 10.0.0.2, 10.0.0.1"]
    );
}

#[test]
fn trusted_peers_forwarded_is_dropped_when_not_enabled() {
    let headers = map(&[("forwarded", "for=1.1.1.1")]);
    let (_, out) = rewrite(&peer("10.0.0.1", true), headers, &DEFAULT);
    assert!(!out.contains_key(FORWARDED));
}

#[test]
fn request_id_from_trusted_peer_is_kept_when_valid() {
    let valid = "a".repeat(128);
    for id in ["abc-123", "A.b_c:d-9", valid.as_str()] {
        let headers = map(&[("x-request-id", id)]);
        assert_eq!(request_id(&headers, true), id);
        assert_ne!(request_id(&headers, false), id);
    }
    let too_long = "a".repeat(129);
    for id in ["", "a b", "a/b", "a\"b", too_long.as_str()] {
        let headers = map(&[("x-request-id", id)]);
        assert_ne!(request_id(&headers, true), id, "{id:?}");
    }
    let twice = map(&[("x-request-id", "one"), ("x-request-id", "two")]);
    let id = request_id(&twice, true);
    assert!(id != "one" && id != "two");
}

#[test]
fn generated_request_ids_are_128_bit_hex_and_unique() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let id = request_id(&HeaderMap::new(), true);
        let text = id.to_str().expect("ascii").to_owned();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{text}"
        );
        assert!(seen.insert(text));
    }
}

#[test]
fn response_hop_by_hop_removed_and_set_cookie_kept() {
    let mut headers = map(&[
        ("connection", "close, X-Internal"),
        ("x-internal", "secret"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("upgrade", "h2c"),
        ("proxy-authenticate", "Basic"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Path=/"),
        ("cache-control", "no-store"),
    ]);
    rewrite_response(&mut headers, false);
    assert_eq!(
        values(&headers, &SET_COOKIE),
        ["a=1; Path=/", "b=2; Path=/"]
    );
    assert_eq!(values(&headers, &http::header::CACHE_CONTROL), ["no-store"]);
    assert_eq!(headers.len(), 3);
}

#[test]
fn response_upgrade_is_kept_when_upgrading() {
    let mut headers = map(&[
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ]);
    rewrite_response(&mut headers, true);
    assert_eq!(values(&headers, &UPGRADE), ["websocket"]);
    assert_eq!(values(&headers, &CONNECTION), ["upgrade"]);
    assert!(headers.contains_key("sec-websocket-accept"));
}
