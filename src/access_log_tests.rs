use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use super::*;

fn entry() -> Entry<'static> {
    Entry {
        time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        request_id: Some(b"abc123"),
        client: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        method: "GET",
        host: Some(b"api.example.com"),
        path: "/users/\x1b[31m\"x\"\\",
        query: None,
        protocol: "HTTP/1.1",
        status: 200,
        bytes_in: Some(0),
        bytes_out: None,
        duration: Duration::from_micros(12_345),
        route: Some("api"),
        replica: Some("127.0.0.1:8000"),
        upstream_duration: Some(Duration::from_micros(999)),
        retries: 1,
        rate_limit: None,
        trace_id: Some(*b"4bf92f3577b34da6a3ce929d0e0e4736"),
    }
}

#[test]
fn json_line_parses_with_escaped_controls() {
    let mut out = Vec::new();
    json_line(&mut out, &entry());
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(!out.contains(&0x1b), "raw escape byte in {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(v["target"], "edgeward::access");
    assert_eq!(v["request_id"], "abc123");
    assert_eq!(v["client"], "192.0.2.7");
    assert_eq!(v["path"], "/users/\x1b[31m\"x\"\\");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_in"], 0);
    assert!(v["bytes_out"].is_null());
    assert_eq!(v["duration_ms"], 12.345);
    assert_eq!(v["upstream_ms"], 0.999);
    assert_eq!(v["retries"], 1);
    assert!(v["rate_limit"].is_null());
    assert!(v.get("query").is_none());
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn invalid_utf8_is_escaped_not_passed_through() {
    let mut e = entry();
    e.host = Some(b"h\xffst\n");
    let mut out = Vec::new();
    json_line(&mut out, &e);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["host"], "h\u{ff}st\n");
    let mut out = Vec::new();
    text_line(&mut out, &e);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(" host=\"h\\xffst\\n\""), "{text}");
}

#[test]
fn text_line_quotes_strings_and_marks_absent_values() {
    let mut e = entry();
    e.rate_limit = Some("per_ip");
    e.query = Some("q=1");
    let mut out = Vec::new();
    text_line(&mut out, &e);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("2023-11-14T22:13:20.123456Z  INFO edgeward::access: "));
    assert!(
        text.contains(" path=\"/users/\\x1b[31m\\\"x\\\"\\\\\""),
        "{text}"
    );
    assert!(text.contains(" query=\"q=1\" protocol=HTTP/1.1 status=200 bytes_in=0 bytes_out=-"));
    assert!(text.contains(" rate_limit=\"per_ip\""));
    assert!(text.ends_with(" trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"\n"));
}

#[test]
fn numbers_and_addresses_are_written_as_display_would() {
    let mut out = Vec::new();
    for n in [0, 7, 10, 999, 1_000, u64::MAX] {
        out.clear();
        digits(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
    for ip_text in [
        "0.0.0.0",
        "192.0.2.7",
        "255.255.255.255",
        "2001:db8::1",
        "::ffff:1.2.3.4",
    ] {
        out.clear();
        let addr: IpAddr = ip_text.parse().unwrap();
        ip(&mut out, addr);
        assert_eq!(out, addr.to_string().as_bytes());
    }
    for (us, text) in [
        (0, "0.000"),
        (999, "0.999"),
        (12_345, "12.345"),
        (7_000_000, "7000.000"),
    ] {
        out.clear();
        millis(&mut out, Duration::from_micros(us));
        assert_eq!(out, text.as_bytes());
    }
}

#[test]
fn dates_convert_across_leap_years() {
    let at = |secs| {
        let mut out = Vec::new();
        rfc3339(&mut out, SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        String::from_utf8(out).unwrap()
    };
    assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        at(1),
        "1970-01-01T00:00:01.000000Z",
        "the cached second moves on"
    );
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000000Z");
    assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59.000000Z");
}

#[test]
fn file_target_gets_batches_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = AccessLog::start(Some(path.clone()), LogFormat::Json).unwrap();
    log.write(&entry());
    let moved = dir.path().join("access.log.1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read(&path).unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "line never written");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::rename(&path, &moved).unwrap();
    log.reopen();
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "file never reopened");
        std::thread::sleep(Duration::from_millis(10));
    }
    log.write(&entry());
    log.write(&entry());
    log.close();
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    assert_eq!((lines(&moved), lines(&path)), (1, 2));
    assert_eq!(log.dropped(), 0);
}
