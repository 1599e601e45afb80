use std::time::Duration;

use super::super::units::{format_size, parse_duration, parse_size};
use super::{LISTENER, assert_error, one_error, parse_ok};

#[test]
fn durations_in_every_unit() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(
        parse_duration("365d"),
        Ok(Duration::from_secs(365 * 86_400))
    );
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
}

#[test]
fn bad_durations_name_the_units() {
    for bad in ["", "5", "s", "1.5s", "5 sec", "-1s", "10S", "1w"] {
        let message = parse_duration(bad).expect_err(bad);
        assert!(message.contains("ms, s, m, h, d"), "{bad:?}: {message}");
    }
    let message = parse_duration("99999999999999999d").expect_err("overflow");
    assert!(message.contains("too large"), "{message}");
}

#[test]
fn sizes_in_binary_and_decimal_units() {
    assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
    assert_eq!(parse_size("100MiB"), Ok(100 * 1024 * 1024));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("8KB"), Ok(8000));
    assert_eq!(parse_size("10MB"), Ok(10_000_000));
    assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
    assert_eq!(parse_size("512"), Ok(512));
    assert_eq!(parse_size("512B"), Ok(512));
    assert_eq!(parse_size("16 kib"), Ok(16 * 1024));
}

#[test]
fn bad_sizes_name_the_units() {
    for bad in ["", "KiB", "16XB", "1.5MiB", "-5"] {
        let message = parse_size(bad).expect_err(bad);
        assert!(message.contains("KiB, MiB, GiB"), "{bad:?}: {message}");
    }
    assert!(
        parse_size("99999999999GiB")
            .expect_err("overflow")
            .contains("too large")
    );
}

#[test]
fn sizes_format_like_the_defaults() {
    assert_eq!(format_size(16 * 1024), "16KiB");
    assert_eq!(format_size(1 << 20), "1MiB");
    assert_eq!(format_size(1000), "1000 bytes");
}

#[test]
fn sizes_may_be_integers_in_the_file() {
    let config = parse_ok(&format!(
        "{LISTENER}[server]\nmax_body = 1234\nmax_uri = \"2KB\"\n"
    ));
    assert_eq!(config.server.max_body, 1234);
    assert_eq!(config.server.max_uri, 2000);
}

#[test]
fn bad_duration_in_the_file_names_key_line_and_units() {
    let error = one_error(&format!(
        "{LISTENER}[timeouts]\nrequest_header = \"10 seconds\"\n"
    ));
    assert_error(&error, "timeouts.request_header", 4, "ms, s, m, h, d");
}

#[test]
fn integer_duration_is_a_type_error_that_explains_the_format() {
    let error = one_error(&format!("{LISTENER}[timeouts]\nrequest_header = 10\n"));
    assert_error(
        &error,
        "timeouts.request_header",
        4,
        "a duration string with a unit",
    );
}

#[test]
fn bad_size_in_the_file_names_key_line_and_units() {
    let error = one_error(&format!("{LISTENER}[server]\nmax_body = \"10 megs\"\n"));
    assert_error(&error, "server.max_body", 4, "KiB, MiB, GiB");
    let error = one_error(&format!("{LISTENER}[server]\nmax_body = -1\n"));
    assert_error(&error, "server.max_body", 4, "negative");
}

#[test]
fn off_durations() {
    let text = format!(
        "{LISTENER}[timeouts]\nupstream_header = \"off\"\ntunnel_idle = \"0s\"\n[http2]\nkeepalive_interval = \"off\"\n"
    );
    let config = parse_ok(&text);
    assert_eq!(config.timeouts.route.upstream_header, None);
    assert_eq!(config.timeouts.route.tunnel_idle, None);
    assert_eq!(config.http2.keepalive_interval, None);
}

#[test]
fn off_where_not_allowed_is_an_error() {
    let error = one_error(&format!("{LISTENER}[timeouts]\nkeepalive_idle = \"off\"\n"));
    assert_error(&error, "timeouts.keepalive_idle", 4, "cannot be \"off\"");
    let error = one_error(&format!("{LISTENER}[timeouts]\ntls_handshake = \"0s\"\n"));
    assert_error(&error, "timeouts.tls_handshake", 4, "greater than zero");
}

#[test]
fn zero_shutdown_delays_are_allowed() {
    let config = parse_ok(&format!(
        "{LISTENER}[shutdown]\npropagation_delay = \"0s\"\n"
    ));
    assert_eq!(config.shutdown.propagation_delay, Duration::ZERO);
}
