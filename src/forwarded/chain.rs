//! Parsing the client chain headers: `X-Forwarded-For` entries and the `for=` nodes of RFC 7239
//! `Forwarded`. Everything works on the raw header bytes without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::normalize::parse_port;

pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// The address in one chain entry: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:80`. A port may be RFC 7239's obfuscated `_name`. Anything
/// else is `None`.
pub(super) fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let (ip, port) = if let Some(rest) = node.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        let ip = std::str::from_utf8(&rest[..end]).ok()?;
        (IpAddr::V6(ip.parse::<Ipv6Addr>().ok()?), &rest[end + 1..])
    } else {
        if let Ok(ip) = std::str::from_utf8(node).ok()?.parse::<IpAddr>() {
            return Some(ip);
        }
        let colon = node.iter().position(|&b| b == b':')?;
        let ip = std::str::from_utf8(&node[..colon]).ok()?;
        (IpAddr::V4(ip.parse::<Ipv4Addr>().ok()?), &node[colon..])
    };
    match port {
        [] => Some(ip),
        [b':', b'_', name @ ..]
            if !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
        {
            Some(ip)
        }
        [b':', digits @ ..] => parse_port(digits).map(|_| ip),
        _ => None,
    }
}

/// Call `f` with the `for=` node of each element of one `Forwarded` line, in order: `None`
/// when the element has no usable `for=` or is malformed. Parameter names are
/// case-insensitive; values are tokens or quoted strings. Unquoted values may also hold `:`,
/// `[` and `]`, which some proxies send for IPv6 although RFC 7239 asks for quotes.
pub(super) fn for_each_forwarded_for(line: &[u8], mut f: impl FnMut(Option<IpAddr>)) {
    let mut i = 0;
    while i < line.len() {
        let (element, next) = parse_element(line, i);
        match element {
            Element::Empty => {}
            Element::For(node) => f(node),
            Element::Malformed => f(None),
        }
        i = next;
    }
}

enum Element {
    /// Nothing between two commas.
    Empty,
    /// The parsed `for=` node (`None` when absent or not an address).
    For(Option<IpAddr>),
    Malformed,
}

/// Parse the element starting at `start`; returns it and the index just past its comma.
/// Empty pairs (`;;`) are allowed, as RFC 7239's grammar allows them.
fn parse_element(line: &[u8], start: usize) -> (Element, usize) {
    let mut node: Option<Option<IpAddr>> = None;
    let mut pairs = 0;
    let mut i = start;
    loop {
        i = skip_ows(line, i);
        match line.get(i) {
            None | Some(b',') => {
                let element = if pairs == 0 {
                    Element::Empty
                } else {
                    Element::For(node.flatten())
                };
                return (element, (i + 1).min(line.len()));
            }
            Some(b';') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_start = i;
        while line.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        let name = &line[name_start..i];
        if name.is_empty() || line.get(i) != Some(&b'=') {
            return (Element::Malformed, skip_element(line, i));
        }
        i += 1;
        let value = if line.get(i) == Some(&b'"') {
            let Some(close) = quoted_end(line, i + 1) else {
                return (Element::Malformed, line.len());
            };
            let value = &line[i + 1..close];
            i = close + 1;
            value
        } else {
            let value_start = i;
            while line
                .get(i)
                .is_some_and(|&b| is_tchar(b) || matches!(b, b':' | b'[' | b']'))
            {
                i += 1;
            }
            &line[value_start..i]
        };
        if name.eq_ignore_ascii_case(b"for") {
            // A parameter repeated in one element makes the element ambiguous (RFC 7239 §4).
            if node.is_some() || value.is_empty() {
                return (Element::Malformed, skip_element(line, i));
            }
            node = Some(parse_node(value));
        }
        pairs += 1;
        i = skip_ows(line, i);
        if !matches!(line.get(i), None | Some(b';' | b',')) {
            return (Element::Malformed, skip_element(line, i));
        }
    }
}

fn skip_ows(line: &[u8], mut i: usize) -> usize {
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Index of the closing quote of a quoted string whose content starts at `i`.
fn quoted_end(line: &[u8], mut i: usize) -> Option<usize> {
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Index just past the next comma outside a quoted string, for recovery after a malformed
/// element.
fn skip_element(line: &[u8], mut i: usize) -> usize {
    while i < line.len() {
        match line[i] {
            b',' => return i + 1,
            b'"' => i = quoted_end(line, i + 1).map_or(line.len(), |end| end + 1),
            _ => i += 1,
        }
    }
    i
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("test address"))
    }

    fn nodes(line: &str) -> Vec<Option<IpAddr>> {
        let mut out = Vec::new();
        for_each_forwarded_for(line.as_bytes(), |node| out.push(node));
        out
    }

    #[test]
    fn nodes_parse_in_every_accepted_form() {
        let table = [
            ("192.0.2.1", ip("192.0.2.1")),
            ("192.0.2.1:80", ip("192.0.2.1")),
            ("192.0.2.1:_port", ip("192.0.2.1")),
            ("2001:db8::1", ip("2001:db8::1")),
            ("[2001:db8::1]", ip("2001:db8::1")),
            ("[2001:db8::1]:8080", ip("2001:db8::1")),
            ("::ffff:192.0.2.1", ip("::ffff:192.0.2.1")),
            ("192.0.2.1:", None),
            ("192.0.2.1:0", None),
            ("192.0.2.1:_", None),
            ("192.0.2.1:80:80", None),
            ("[2001:db8::1]80", None),
            ("[192.0.2.1]", None),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
        ];
        for (node, want) in table {
            assert_eq!(parse_node(node.as_bytes()), want, "{node:?}");
        }
    }

    #[test]
    fn forwarded_elements_yield_their_for_nodes() {
        assert_eq!(
            nodes("for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\""),
            [ip("192.0.2.60"), ip("2001:db8:cafe::17")]
        );
        assert_eq!(nodes("proto=https;FOR=\"192.0.2.1:80\""), [ip("192.0.2.1")]);
    }

    #[test]
    fn quoted_commas_do_not_split_elements() {
        assert_eq!(
            nodes("for=198.51.100.1;host=\"a,b\", for=10.0.0.2"),
            [ip("198.51.100.1"), ip("10.0.0.2")]
        );
        assert_eq!(
            nodes("for=198.51.100.1;x=\"a\\\",b\", for=10.0.0.2"),
            [ip("198.51.100.1"), ip("10.0.0.2")]
        );
    }

    #[test]
    fn empty_pairs_and_elements_are_skipped_and_bare_ipv6_accepted() {
        assert_eq!(
            nodes(";for=198.51.100.1;; , ,for=[2001:db8::5]:1, for=10.0.0.2;"),
            [ip("198.51.100.1"), ip("2001:db8::5"), ip("10.0.0.2")]
        );
        assert_eq!(nodes(" , "), []);
    }

    #[test]
    fn bad_elements_yield_none_and_parsing_resumes() {
        for element in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=198.51.100.9;for=198.51.100.8",
            "for=",
            "for=\"\"",
            "for=1.2.3.4 junk",
            "for=1.2.3.4\"x\"",
            "=1.2.3.4",
            "for",
        ] {
            let line = format!("for=198.51.100.1, {element}, for=10.0.0.2");
            assert_eq!(
                nodes(&line),
                [ip("198.51.100.1"), None, ip("10.0.0.2")],
                "{element:?}"
            );
        }
        assert_eq!(
            nodes("for=198.51.100.1, for=\"10.0.0.2"),
            [ip("198.51.100.1"), None]
        );
    }
}
