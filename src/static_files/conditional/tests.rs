use http::{HeaderMap, HeaderValue};

use super::{Accept, Encoding, RangeReply, not_modified, parse_range, range};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn chosen(accept: &str, available: &[Encoding]) -> Option<Encoding> {
    Accept::from_headers(&headers(&[("accept-encoding", accept)]))
        .choose(|e| available.contains(&e))
}

#[test]
fn accept_encoding_picks_the_best_available() {
    use Encoding::{Brotli, Gzip};
    let both = [Brotli, Gzip];
    let cases: &[(&str, &[Encoding], Option<Encoding>)] = &[
        ("gzip, deflate, br, zstd", &both, Some(Brotli)),
        ("gzip, deflate, br", &[Gzip], Some(Gzip)),
        ("gzip", &both, Some(Gzip)),
        ("br", &[Gzip], None),
        ("br;q=0.5, gzip;q=0.9", &both, Some(Gzip)),
        ("br;q=1.0, gzip;q=1", &both, Some(Brotli)),
        ("br;q=0, gzip", &both, Some(Gzip)),
        ("br;q=0, gzip;q=0", &both, None),
        ("*", &both, Some(Brotli)),
        ("*;q=0.5, br;q=0", &both, Some(Gzip)),
        ("identity", &both, None),
        ("gzip;q=0.5, identity;q=1", &both, None),
        ("gzip;q=0.5, identity;q=0.5", &both, Some(Gzip)),
        ("GZIP", &both, Some(Gzip)),
        ("x-gzip", &both, Some(Gzip)),
        ("gzip;q=2", &both, None),
        ("gzip;q=0.1234", &both, None),
        ("gzip ; q=0.001", &both, Some(Gzip)),
        ("", &both, None),
        ("deflate, zstd", &both, None),
    ];
    for (accept, available, expected) in cases {
        assert_eq!(chosen(accept, available), *expected, "{accept:?}");
    }
    assert_eq!(Accept::from_headers(&HeaderMap::new()), Accept::IDENTITY);
    let two_lines = headers(&[("accept-encoding", "br;q=0.1"), ("accept-encoding", "gzip")]);
    assert_eq!(
        Accept::from_headers(&two_lines).choose(|_| true),
        Some(Gzip)
    );
}

const ETAG: &[u8] = b"\"5f.0-1a\"";

#[test]
fn if_none_match_uses_the_weak_comparison() {
    let hits = [
        "\"5f.0-1a\"",
        "W/\"5f.0-1a\"",
        "\"x\", \"5f.0-1a\"",
        "\"a,b\" , W/\"5f.0-1a\"",
        "*",
    ];
    for value in hits {
        assert!(
            not_modified(&headers(&[("if-none-match", value)]), ETAG, 0),
            "{value}"
        );
    }
    let misses = [
        "\"5f.0-1b\"",
        "5f.0-1a",
        "\"5f.0-1a",
        "W/ \"5f.0-1a\"",
        "\"5f.0-1a-br\"",
    ];
    for value in misses {
        assert!(
            !not_modified(&headers(&[("if-none-match", value)]), ETAG, 0),
            "{value}"
        );
    }
    let lines = headers(&[("if-none-match", "\"x\""), ("if-none-match", "\"5f.0-1a\"")]);
    assert!(not_modified(&lines, ETAG, 0));
}

#[test]
fn if_modified_since_compares_seconds_and_yields_to_if_none_match() {
    // Sun, 06 Nov 1994 08:49:37 GMT
    let t = 784_111_777;
    let ims = |v: &str| headers(&[("if-modified-since", v)]);
    assert!(not_modified(&ims("Sun, 06 Nov 1994 08:49:37 GMT"), ETAG, t));
    assert!(not_modified(&ims("Sun, 06 Nov 1994 08:49:38 GMT"), ETAG, t));
    assert!(!not_modified(
        &ims("Sun, 06 Nov 1994 08:49:36 GMT"),
        ETAG,
        t
    ));
    assert!(!not_modified(&ims("yesterday"), ETAG, t));
    let both = headers(&[
        ("if-none-match", "\"other\""),
        ("if-modified-since", "Sun, 06 Nov 1994 08:49:38 GMT"),
    ]);
    assert!(!not_modified(&both, ETAG, t));
}

#[test]
fn range_specs() {
    use RangeReply::{Full, Partial, Unsatisfiable};
    let cases: &[(&str, u64, RangeReply)] = &[
        ("bytes=0-9", 100, Partial { start: 0, end: 9 }),
        ("bytes=10-", 100, Partial { start: 10, end: 99 }),
        ("bytes=-10", 100, Partial { start: 90, end: 99 }),
        ("bytes=-1000", 100, Partial { start: 0, end: 99 }),
        ("bytes=90-1000", 100, Partial { start: 90, end: 99 }),
        ("bytes=99-99", 100, Partial { start: 99, end: 99 }),
        ("BYTES= 5 - 6 ", 100, Partial { start: 5, end: 6 }),
        ("bytes=100-", 100, Unsatisfiable),
        ("bytes=100-200", 100, Unsatisfiable),
        ("bytes=-0", 100, Unsatisfiable),
        ("bytes=0-", 0, Unsatisfiable),
        ("bytes=-5", 0, Unsatisfiable),
        ("bytes=0-1,5-6", 100, Full),
        ("bytes=9-0", 100, Full),
        ("bytes=a-b", 100, Full),
        ("bytes=-", 100, Full),
        ("bytes=5", 100, Full),
        ("items=0-9", 100, Full),
        ("bytes=99999999999999999999-", 100, Full),
    ];
    for (spec, len, expected) in cases {
        assert_eq!(
            parse_range(spec.as_bytes(), *len),
            *expected,
            "{spec} of {len}"
        );
    }
}

#[test]
fn if_range_needs_a_strong_match_or_the_exact_date() {
    let t = 784_111_777;
    let date = "Sun, 06 Nov 1994 08:49:37 GMT";
    let partial = RangeReply::Partial { start: 0, end: 0 };
    let with = |if_range: &str| headers(&[("range", "bytes=0-0"), ("if-range", if_range)]);
    assert_eq!(range(&with("\"5f.0-1a\""), 10, ETAG, t), partial);
    assert_eq!(range(&with(date), 10, ETAG, t), partial);
    assert_eq!(range(&with("W/\"5f.0-1a\""), 10, ETAG, t), RangeReply::Full);
    assert_eq!(range(&with("\"old\""), 10, ETAG, t), RangeReply::Full);
    assert_eq!(
        range(&with("Sun, 06 Nov 1994 08:49:38 GMT"), 10, ETAG, t),
        RangeReply::Full
    );
    assert_eq!(range(&headers(&[]), 10, ETAG, t), RangeReply::Full);
}
