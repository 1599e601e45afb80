use std::time::Duration;

use http::HeaderName;

use super::super::validate_limits::{parse_key, parse_rate};
use super::super::{LimitBackend, LimitKey, RedisFailure};
use super::{
    LISTENER, assert_error, fake_env, one_error, parse_errors, parse_errors_env, parse_ok,
    parse_ok_env,
};

/// A listener and an upstream (lines 1-4), then `rest`, which starts on line 5.
fn with(rest: &str) -> String {
    format!("{LISTENER}[upstreams.app]\nreplicas = [\"127.0.0.1:8000\"]\n{rest}")
}

#[test]
fn named_limits_with_defaults_and_every_setting() {
    let config = parse_ok(&with(
        r#"[rate_limits.per_ip]
rate = "100/m"
[rate_limits.api]
rate = "500/10m"
burst = 50
key = "header:X-Api-Key"
ipv6_prefix = 56
max_keys = 5000
headers = true
[rate_limits.global]
rate = "1000/s"
key = "route"
[[routes]]
upstream = "app"
rate_limits = ["per_ip", "global"]
"#,
    ));
    let per_ip = &config.rate_limits["per_ip"];
    assert_eq!(
        (per_ip.requests, per_ip.window, per_ip.burst),
        (100, Duration::from_secs(60), 100)
    );
    assert_eq!(per_ip.key, LimitKey::ClientIp);
    assert_eq!((per_ip.ipv6_prefix, per_ip.max_keys), (64, 1_000_000));
    assert!(!per_ip.headers);
    assert_eq!(per_ip.backend, LimitBackend::Local);

    let api = &config.rate_limits["api"];
    assert_eq!(
        (api.requests, api.window, api.burst),
        (500, Duration::from_secs(600), 50)
    );
    assert_eq!(
        api.key,
        LimitKey::Header(HeaderName::from_static("x-api-key"))
    );
    assert_eq!(
        (api.ipv6_prefix, api.max_keys, api.headers),
        (56, 5000, true)
    );
    assert_eq!(config.rate_limits["global"].key, LimitKey::Route);
    assert_eq!(config.routes[0].rate_limits, ["per_ip", "global"]);
    assert!(config.redis.is_none());
}

#[test]
fn rates() {
    let secs = Duration::from_secs;
    assert_eq!(parse_rate("10/s"), Ok((10, secs(1))));
    assert_eq!(parse_rate("100/m"), Ok((100, secs(60))));
    assert_eq!(parse_rate("5/h"), Ok((5, secs(3600))));
    assert_eq!(parse_rate("1/d"), Ok((1, secs(86_400))));
    assert_eq!(parse_rate(" 30 / 10s "), Ok((30, secs(10))));
    assert_eq!(parse_rate("10/500ms"), Ok((10, Duration::from_millis(500))));
    for bad in [
        "", "10", "/s", "0/s", "-1/s", "10/", "10/x", "10/0s", "x/s", "10/s/s",
    ] {
        assert!(parse_rate(bad).is_err(), "{bad:?} should be rejected");
    }
    assert!(parse_rate("2000000/s").unwrap_err().contains("too high"));
}

#[test]
fn keys() {
    assert_eq!(parse_key("client_ip"), Ok(LimitKey::ClientIp));
    assert_eq!(parse_key("route"), Ok(LimitKey::Route));
    assert_eq!(
        parse_key("header:Authorization"),
        Ok(LimitKey::Header(HeaderName::from_static("authorization")))
    );
    for bad in ["ip", "header:", "header:bad name", "Client_IP"] {
        assert!(parse_key(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn bad_values_name_their_key_and_line() {
    let errors = parse_errors(&with(
        r#"[rate_limits.a]
rate = "100 per minute"
[rate_limits.b]
rate = "1/s"
key = "ip"
ipv6_prefix = 32
burst = 0
backend = "memcached"
[rate_limits.c]
burst = 3
"#,
    ));
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert_error(&errors[0], "rate_limits.a.rate", 6, "invalid rate");
    assert_error(&errors[1], "rate_limits.b.key", 9, "\"header:<name>\"");
    assert_error(
        &errors[2],
        "rate_limits.b.ipv6_prefix",
        10,
        "between 48 and 128",
    );
    assert_error(&errors[3], "rate_limits.b.burst", 11, "between 1 and");
    assert_error(
        &errors[4],
        "rate_limits.b.backend",
        12,
        "\"local\" or \"redis\"",
    );
    assert_error(&errors[5], "rate_limits.c", 13, "missing rate");
}

#[test]
fn unknown_limit_names_list_the_known_ones() {
    let error = one_error(&with(
        r#"[rate_limits.per_ip]
rate = "1/s"
[rate_limits.global]
rate = "10/s"
[[routes]]
upstream = "app"
rate_limits = ["per_ip", "per_ipp"]
"#,
    ));
    assert_error(
        &error,
        "routes[0].rate_limits[1]",
        11,
        "unknown rate limit \"per_ipp\" (known: global, per_ip)",
    );

    let error = one_error(&with(
        "[[routes]]\nupstream = \"app\"\nrate_limits = [\"x\"]\n",
    ));
    assert!(
        error
            .message
            .contains("no [rate_limits.<name>] are defined")
    );
}

#[test]
fn a_limit_listed_twice_is_an_error() {
    let error = one_error(&with(
        "[rate_limits.a]\nrate = \"1/s\"\n[[routes]]\nupstream = \"app\"\nrate_limits = [\"a\", \"a\"]\n",
    ));
    assert_error(&error, "routes[0].rate_limits[1]", 9, "listed twice");
}

#[test]
fn a_bad_definition_is_reported_once_not_by_every_route() {
    let errors = parse_errors(&with(
        "[rate_limits.a]\nrate = \"fast\"\n[[routes]]\nupstream = \"app\"\nrate_limits = [\"a\"]\n",
    ));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key, "rate_limits.a.rate");
}

#[test]
fn limit_names_are_safe_to_quote_in_headers() {
    let errors = parse_errors(&with("[rate_limits.\"Per IP\"]\nrate = \"1/s\"\n"));
    assert!(
        errors[0].message.contains("a-z, 0-9, _ and -"),
        "{errors:#?}"
    );
}

#[test]
fn redis_section() {
    let config = parse_ok_env(
        &with(
            r#"[redis]
url = "${REDIS_URL}"
timeout = "20ms"
failure = "fail_closed"
[rate_limits.shared]
rate = "10/s"
backend = "redis"
"#,
        ),
        &fake_env(&[("REDIS_URL", "rediss://edge:s3cret@cache.internal:6380/1")]),
    );
    let redis = config.redis.as_ref().expect("[redis]");
    assert_eq!(redis.url, "rediss://edge:s3cret@cache.internal:6380/1");
    assert_eq!(redis.timeout, Duration::from_millis(20));
    assert_eq!(redis.failure, RedisFailure::FailClosed);
    assert_eq!(config.rate_limits["shared"].backend, LimitBackend::Redis);
    // The validated config is printed in places (`edgeward check`, debug logs).
    let printed = format!("{config:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(printed.contains("rediss://edge:***@cache.internal:6380/1"));

    let defaults = parse_ok(&with("[redis]\nurl = \"redis://127.0.0.1:6379\"\n"));
    let redis = defaults.redis.expect("[redis]");
    assert_eq!(redis.timeout, Duration::from_millis(50));
    assert_eq!(redis.failure, RedisFailure::FailOpen);
}

#[test]
fn redis_backend_needs_a_redis_section() {
    let error = one_error(&with(
        "[rate_limits.shared]\nrate = \"10/s\"\nbackend = \"redis\"\n",
    ));
    assert_error(
        &error,
        "rate_limits.shared.backend",
        7,
        "needs a [redis] section",
    );
}

#[test]
fn bad_redis_urls_are_reported_without_the_password() {
    let errors = parse_errors_env(
        &with("[redis]\nurl = \"${REDIS_URL}\"\nfailure = \"retry\"\n"),
        &fake_env(&[("REDIS_URL", "http://admin:s3cret@cache:6379")]),
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(&errors[0], "redis.url", 6, "invalid Redis URL");
    assert!(errors[0].message.contains("http://admin:***@cache:6379"));
    assert!(!errors[0].message.contains("s3cret"));
    assert_error(
        &errors[1],
        "redis.failure",
        7,
        "\"fail_open\" or \"fail_closed\"",
    );

    let errors = parse_errors(&with("[redis]\ntimeout = \"1s\"\n"));
    assert_eq!(errors[0].key, "redis");
    assert!(errors[0].message.contains("missing url"));
}
