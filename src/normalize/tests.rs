use std::borrow::Cow;

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri, Version};

use super::*;

#[test]
fn normal_paths_are_borrowed() {
    for path in [
        "/",
        "/a",
        "/a/b/",
        "//x",
        "/a//b",
        "/a.b/..c/...",
        "/%2F",
        "/a/%2F/b",
        "/%5C%00%20%25",
        "/caf\u{e9}",
        "/a;b=c",
    ] {
        match normalize_path(path) {
            Ok(Cow::Borrowed(out)) => assert_eq!(out, path),
            other => panic!("{path:?} gave {other:?}"),
        }
    }
}

#[test]
fn paths_are_normalised() {
    let table = [
        ("", "/"),
        ("/%41", "/A"),
        ("/%7e%2D%5f%2E", "/~-_."),
        ("/a/../b", "/b"),
        ("/a/./b", "/a/b"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/.", "/"),
        ("/./a", "/a"),
        ("/a/%2e%2E/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e/b", "/a/b"),
        ("/a/%2f/b", "/a/%2F/b"),
        ("/%5c", "/%5C"),
        ("/%3a%ff", "/%3A%FF"),
        ("/a//../b", "/a/b"),
        ("/%61dmin/../%61", "/a"),
    ];
    for (path, want) in table {
        match normalize_path(path) {
            Ok(out) => assert_eq!(out, want, "{path:?}"),
            Err(e) => panic!("{path:?} gave {e}"),
        }
    }
}

#[test]
fn changed_paths_are_owned() {
    assert!(matches!(normalize_path("/%41"), Ok(Cow::Owned(_))));
    assert!(matches!(normalize_path("/a/./b"), Ok(Cow::Owned(_))));
}

#[test]
fn climbing_above_root_is_refused() {
    for path in [
        "/..",
        "/../a",
        "/a/../..",
        "/%2e%2e",
        "/%2E%2e/etc/passwd",
        "/a/./../../b",
    ] {
        assert_eq!(
            normalize_path(path),
            Err(TargetError::PathAboveRoot),
            "{path:?}"
        );
    }
}

#[test]
fn malformed_paths_are_refused() {
    for path in [
        "a",
        "*",
        "http://x/",
        "/a\\b",
        "/a\0b",
        "/a\tb",
        "/a b",
        "/a\x7fb",
        "/%",
        "/%4",
        "/%zz",
        "/%4g",
    ] {
        assert_eq!(
            normalize_path(path),
            Err(TargetError::MalformedPath),
            "{path:?}"
        );
    }
}

#[test]
fn encoded_separators_and_nul_are_never_decoded() {
    assert_eq!(normalize_path("/a%2fb").as_deref(), Ok("/a%2Fb"));
    assert_eq!(normalize_path("/a%5cb").as_deref(), Ok("/a%5Cb"));
    assert_eq!(normalize_path("/a%00b").as_deref(), Ok("/a%00b"));
    // A decoded "%2F" would not make ".." climb over it either.
    assert_eq!(normalize_path("/a%2F..").as_deref(), Ok("/a%2F.."));
}

fn headers(hosts: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for host in hosts {
        map.append(HOST, HeaderValue::from_str(host).expect("test host"));
    }
    map
}

fn authority(version: Version, uri: &str, hosts: &[&str]) -> Result<Authority, TargetError> {
    let uri: Uri = uri.parse().expect("test uri");
    effective_authority(version, &uri, &headers(hosts))
}

#[test]
fn host_header_gives_the_authority() {
    let a = authority(Version::HTTP_11, "/x", &["App.Example.com:8443"]).expect("valid");
    assert_eq!(a.host(), "app.example.com");
    assert_eq!(a.port, Some(8443));
    assert_eq!(a.header, "App.Example.com:8443");

    let a = authority(Version::HTTP_10, "/", &["example.com"]).expect("valid");
    assert_eq!((a.host(), a.port), ("example.com", None));
}

#[test]
fn trailing_dot_is_dropped_from_host_but_kept_in_header() {
    let a = authority(Version::HTTP_11, "/", &["Example.COM.:80"]).expect("valid");
    assert_eq!(a.host(), "example.com");
    assert_eq!(a.port, Some(80));
    assert_eq!(a.header, "Example.COM.:80");
}

#[test]
fn ipv6_keeps_brackets() {
    let a = authority(Version::HTTP_11, "/", &["[::1]:8080"]).expect("valid");
    assert_eq!((a.host(), a.port), ("[::1]", Some(8080)));
    let a = authority(Version::HTTP_11, "/", &["[2001:DB8::1]"]).expect("valid");
    assert_eq!((a.host(), a.port), ("[2001:db8::1]", None));
}

#[test]
fn absolute_form_target_gives_the_authority() {
    let a = authority(
        Version::HTTP_11,
        "http://example.com:8080/x",
        &["EXAMPLE.com:8080"],
    )
    .expect("valid");
    assert_eq!((a.host(), a.port), ("example.com", Some(8080)));
    assert_eq!(a.header, "example.com:8080");

    let a = authority(Version::HTTP_10, "http://example.com/x", &[]).expect("valid");
    assert_eq!(a.host(), "example.com");
}

#[test]
fn http11_absolute_form_still_needs_host() {
    assert_eq!(
        authority(Version::HTTP_11, "http://example.com/x", &[]),
        Err(TargetError::MissingHost)
    );
}

#[test]
fn h2_authority_is_used_and_checked_against_host() {
    let a = authority(Version::HTTP_2, "https://Example.com/x", &[]).expect("valid");
    assert_eq!(a.host(), "example.com");
    assert_eq!(a.header, "Example.com");

    let a = authority(Version::HTTP_2, "https://example.com/x", &["example.com"]).expect("valid");
    assert_eq!(a.header, "example.com");

    assert_eq!(
        authority(Version::HTTP_2, "https://example.com/x", &["other.com"]),
        Err(TargetError::AuthorityMismatch)
    );
    // Without `:authority`, HTTP/2 falls back to `Host`.
    let a = authority(Version::HTTP_2, "/x", &["example.com"]).expect("valid");
    assert_eq!(a.host(), "example.com");
}

#[test]
fn mismatch_includes_the_port() {
    assert_eq!(
        authority(
            Version::HTTP_11,
            "http://example.com/x",
            &["example.com:80"]
        ),
        Err(TargetError::AuthorityMismatch)
    );
    assert_eq!(
        authority(
            Version::HTTP_11,
            "http://example.com:81/x",
            &["example.com:80"]
        ),
        Err(TargetError::AuthorityMismatch)
    );
}

#[test]
fn missing_and_duplicate_host() {
    assert_eq!(
        authority(Version::HTTP_11, "/", &[]),
        Err(TargetError::MissingHost)
    );
    assert_eq!(
        authority(Version::HTTP_10, "/", &[]),
        Err(TargetError::MissingHost)
    );
    assert_eq!(
        authority(Version::HTTP_11, "/", &["a.com", "a.com"]),
        Err(TargetError::DuplicateHost)
    );
    assert_eq!(
        authority(Version::HTTP_2, "https://a.com/", &["a.com", "a.com"]),
        Err(TargetError::DuplicateHost)
    );
}

#[test]
fn malformed_hosts_are_refused() {
    for host in [
        "",
        " ",
        "a b.com",
        "user@a.com",
        "a.com:",
        "a.com:0",
        "a.com:65536",
        "a.com:123456",
        "a.com:8x",
        "a.com:80:80",
        "a..com",
        ".a.com",
        ".",
        "a.com..",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[not-v6]",
        "::1",
        "a/b",
        "a%2eb",
        "caf\u{e9}.com",
    ] {
        let mut map = HeaderMap::new();
        map.insert(
            HOST,
            HeaderValue::from_bytes(host.as_bytes()).expect("test host"),
        );
        assert_eq!(
            effective_authority(Version::HTTP_11, &Uri::from_static("/"), &map),
            Err(TargetError::MalformedHost),
            "{host:?}"
        );
    }
    let long_label = format!("{}.com", "a".repeat(64));
    assert_eq!(
        authority(Version::HTTP_11, "/", &[&long_label]),
        Err(TargetError::MalformedHost)
    );
}

#[test]
fn userinfo_in_target_is_refused() {
    assert_eq!(
        authority(Version::HTTP_10, "http://user@a.com/", &[]),
        Err(TargetError::MalformedHost)
    );
}

#[test]
fn prefix_matching_is_on_segment_boundaries() {
    assert!(prefix_matches("/api", "/api"));
    assert!(prefix_matches("/api/", "/api"));
    assert!(prefix_matches("/api/x", "/api"));
    assert!(!prefix_matches("/apix", "/api"));
    assert!(!prefix_matches("/ap", "/api"));
    assert!(!prefix_matches("/API", "/api"));
    assert!(prefix_matches("/", "/"));
    assert!(prefix_matches("/anything/at/all", "/"));
    assert!(prefix_matches("/a/b/c", "/a/b"));
    assert!(!prefix_matches("/a/bc", "/a/b"));
}

#[test]
fn stripping_keeps_a_leading_slash() {
    assert_eq!(strip_prefix("/api/x", "/api"), "/x");
    assert_eq!(strip_prefix("/api/", "/api"), "/");
    assert_eq!(strip_prefix("/api", "/api"), "/");
    assert_eq!(strip_prefix("/api//x", "/api"), "//x");
    assert_eq!(strip_prefix("/x/y", "/"), "/x/y");
    assert_eq!(strip_prefix("/other", "/api"), "/other");
}

#[test]
fn wildcard_needs_exactly_one_more_label() {
    assert!(host_matches_wildcard("a.example.com", ".example.com"));
    assert!(host_matches_wildcard("A.Example.com", ".example.com"));
    assert!(!host_matches_wildcard("a.b.example.com", ".example.com"));
    assert!(!host_matches_wildcard("example.com", ".example.com"));
    assert!(!host_matches_wildcard(".example.com", ".example.com"));
    assert!(!host_matches_wildcard("aexample.com", ".example.com"));
    assert!(!host_matches_wildcard("com", ".example.com"));
}

#[test]
fn errors_read_as_short_reasons() {
    assert_eq!(
        TargetError::PathAboveRoot.to_string(),
        "path climbs above root"
    );
    assert_eq!(TargetError::DuplicateHost.to_string(), "duplicate host");
}
