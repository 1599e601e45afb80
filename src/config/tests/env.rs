use std::path::Path;
use std::time::Duration;

use super::super::env::expand_str;
use super::super::{LogFormat, parse_with_vars};
use super::{FILE, LISTENER, assert_error, fake_env, no_env, parse_errors_env, parse_ok_env};

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn expansion_forms() {
    let env = fake_env(&[("HOST", "db"), ("EMPTY", "")]);
    assert_eq!(expand_str("${HOST}:5432", &env), Ok("db:5432".into()));
    assert_eq!(expand_str("${PORT:-8000}", &env), Ok("8000".into()));
    assert_eq!(expand_str("${HOST:-x}", &env), Ok("db".into()));
    assert_eq!(
        expand_str("${EMPTY:-fallback}", &env),
        Ok("fallback".into())
    );
    assert_eq!(expand_str("${EMPTY}", &env), Ok(String::new()));
    assert_eq!(expand_str("${UNSET:-}", &env), Ok(String::new()));
    assert_eq!(
        expand_str("a$b $ ${HOST}${HOST}", &env),
        Ok("a$b $ dbdb".into())
    );
    assert_eq!(expand_str("no vars", &env), Ok("no vars".into()));
}

#[test]
fn expansion_errors() {
    let message = expand_str("${MISSING}", &no_env).expect_err("unset");
    assert!(message.contains("MISSING is not set"), "{message}");
    assert!(
        expand_str("${OPEN", &no_env)
            .expect_err("open")
            .contains("unterminated")
    );
    assert!(
        expand_str("${1X}", &no_env)
            .expect_err("name")
            .contains("invalid variable name")
    );
    assert!(
        expand_str("${}", &no_env)
            .expect_err("empty")
            .contains("invalid variable name")
    );
}

#[test]
fn expansion_applies_to_every_string_in_the_file() {
    let text = "[listeners.public]\nlisten = \"${ADDR}\"\ntrusted_proxies = [\"${LB:-10.0.0.0/8}\"]\n[admin]\ntoken = \"${TOKEN}\"\n";
    let env = fake_env(&[("ADDR", "127.0.0.1:0"), ("TOKEN", "t0k")]);
    let config = parse_ok_env(text, &env);
    assert_eq!(config.listeners[0].addr.to_string(), "127.0.0.1:0");
    assert_eq!(
        config.listeners[0].trusted_proxies[0].to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(config.admin.token.as_deref(), Some("t0k"));
}

#[test]
fn unset_variable_names_variable_key_and_line() {
    let text = "[listeners.public]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.1\", \"${LB}\"]\n";
    let errors = parse_errors_env(text, &no_env);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_error(
        &errors[0],
        "listeners.public.trusted_proxies[1]",
        3,
        "LB is not set",
    );
}

#[test]
fn expanded_value_is_validated_at_its_line() {
    let text = "[listeners.public]\nlisten = \"${ADDR}\"\n";
    let errors = parse_errors_env(text, &fake_env(&[("ADDR", "nope")]));
    assert_error(
        &errors[0],
        "listeners.public.listen",
        2,
        "invalid socket address \"nope\"",
    );
}

#[test]
fn override_replaces_a_value_from_the_file() {
    let env = fake_env(&[
        ("EDGEWARD_LISTENERS__PUBLIC__LISTEN", "127.0.0.1:9000"),
        ("EDGEWARD_TIMEOUTS__UPSTREAM_HEADER", "off"),
        ("EDGEWARD_SERVER__MAX_HEADERS", "50"),
        ("EDGEWARD_SERVER__MAX_BODY", "1MiB"),
        ("EDGEWARD_SERVER__MAX_URI", "4096"),
        ("EDGEWARD_LISTENERS__PUBLIC__TLS", "true"),
    ]);
    let config = parse_ok_env(&format!("{LISTENER}[server]\nmax_headers = 10\n"), &env);
    assert_eq!(config.listeners[0].addr.to_string(), "127.0.0.1:9000");
    assert!(config.listeners[0].tls);
    assert_eq!(config.timeouts.route.upstream_header, None);
    assert_eq!(config.server.max_headers, 50);
    assert_eq!(config.server.max_body, 1 << 20);
    assert_eq!(config.server.max_uri, 4096);
}

#[test]
fn override_creates_keys_and_sections_absent_from_the_file() {
    let env = fake_env(&[
        ("EDGEWARD_ADMIN__TOKEN", "secret"),
        ("EDGEWARD_PROBE__LISTEN", "127.0.0.1:0"),
        ("EDGEWARD_HSTS__MAX_AGE", "1d"),
    ]);
    let config = parse_ok_env(LISTENER, &env);
    assert_eq!(config.admin.token.as_deref(), Some("secret"));
    assert_eq!(config.admin.addr.to_string(), "127.0.0.1:9901");
    assert_eq!(config.probe.expect("probe").addr.to_string(), "127.0.0.1:0");
    assert_eq!(
        config.hsts.expect("hsts").max_age,
        Duration::from_secs(86_400)
    );
}

#[test]
fn override_targets_upstreams_by_name_including_dashes() {
    let text = format!("{LISTENER}[upstreams.my-app]\nreplicas = [\"a:1\"]\n");
    let env = fake_env(&[("EDGEWARD_UPSTREAMS__MY_APP__IDLE_TIMEOUT", "2s")]);
    let config = parse_ok_env(&text, &env);
    assert_eq!(
        config.upstreams["my-app"].idle_timeout,
        Duration::from_secs(2)
    );
}

#[test]
fn log_shorthands() {
    let env = fake_env(&[
        ("EDGEWARD_LOG_FORMAT", "json"),
        ("EDGEWARD_LOG_LEVEL", "debug"),
    ]);
    let config = parse_ok_env(LISTENER, &env);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "debug");
    let env = fake_env(&[("EDGEWARD_LOG__FORMAT", "json")]);
    assert_eq!(parse_ok_env(LISTENER, &env).log.format, LogFormat::Json);
}

#[test]
fn shorthand_and_full_name_together_is_an_error() {
    let env = fake_env(&[
        ("EDGEWARD_LOG_FORMAT", "json"),
        ("EDGEWARD_LOG__FORMAT", "text"),
    ]);
    let errors = parse_errors_env(LISTENER, &env);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].env_var.as_deref(), Some("EDGEWARD_LOG__FORMAT"));
    assert!(
        errors[0].message.contains("EDGEWARD_LOG_FORMAT"),
        "{:?}",
        errors[0]
    );
}

#[test]
fn bad_override_value_names_the_variable() {
    let env = fake_env(&[("EDGEWARD_LISTENERS__PUBLIC__LISTEN", "0.0.0.0:99999")]);
    let errors = parse_errors_env(LISTENER, &env);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, None);
    assert_eq!(
        errors[0].to_string(),
        "EDGEWARD_LISTENERS__PUBLIC__LISTEN (overrides listeners.public.listen): invalid socket address \"0.0.0.0:99999\": expected IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8443\""
    );
}

#[test]
fn override_values_are_typed_by_their_key() {
    let cases = [
        (
            "EDGEWARD_LISTENERS__PUBLIC__TLS",
            "yes",
            "listeners.public.tls",
            "expected true or false",
        ),
        (
            "EDGEWARD_SERVER__MAX_HEADERS",
            "lots",
            "server.max_headers",
            "expected an integer",
        ),
        (
            "EDGEWARD_SERVER__MAX_BODY",
            "big",
            "server.max_body",
            "invalid size",
        ),
        (
            "EDGEWARD_SERVER__MAX_HEADERS",
            "0",
            "server.max_headers",
            "between 1 and 10000",
        ),
        (
            "EDGEWARD_LOG__FORMAT",
            "xml",
            "log.format",
            "\"text\" or \"json\"",
        ),
        (
            "EDGEWARD_TIMEOUTS__TLS_HANDSHAKE",
            "off",
            "timeouts.tls_handshake",
            "cannot be \"off\"",
        ),
    ];
    for (var, value, key, needle) in cases {
        let errors = parse_errors_env(LISTENER, &fake_env(&[(var, value)]));
        assert_eq!(errors.len(), 1, "{var}={value}: {errors:#?}");
        assert_eq!(errors[0].env_var.as_deref(), Some(var), "{errors:#?}");
        assert_eq!(errors[0].key, key);
        assert!(
            errors[0].message.contains(needle),
            "{var}={value}: {:?}",
            errors[0]
        );
    }
}

#[test]
fn override_into_a_section_of_the_wrong_type_reports_the_section() {
    let errors = parse_errors_env(
        &format!("admin = 1\n{LISTENER}"),
        &fake_env(&[("EDGEWARD_ADMIN__TOKEN", "x")]),
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key, "admin");
}

#[test]
fn override_variables_are_not_expanded() {
    let env = fake_env(&[("EDGEWARD_ADMIN__TOKEN", "${NOT_EXPANDED}")]);
    let config = parse_ok_env(LISTENER, &env);
    assert_eq!(config.admin.token.as_deref(), Some("${NOT_EXPANDED}"));
}

#[test]
fn unknown_override_variables_are_reported_when_the_environment_is_listed() {
    let listed = vars(&[
        ("EDGEWARD_SERVER__MAX_HEDERS", "5"),
        ("EDGEWARD_LISTENERS__PUBLC__LISTEN", "127.0.0.1:1"),
        ("EDGEWARD_CONFIG", "/etc/edgeward/edgeward.toml"),
        ("EDGEWARD_LOG_LEVEL", "debug"),
        ("EDGEWARD_ADMIN__TOKEN", "t"),
        ("HOME", "/root"),
    ]);
    let errors = parse_with_vars(LISTENER, Path::new(FILE), &listed)
        .expect_err("unknown vars")
        .0;
    let found: Vec<(Option<&str>, &str)> = errors
        .iter()
        .map(|e| (e.env_var.as_deref(), e.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (Some("EDGEWARD_SERVER__MAX_HEDERS"), "server.max_heders"),
            (
                Some("EDGEWARD_LISTENERS__PUBLC__LISTEN"),
                "listeners.publc.listen"
            ),
        ]
    );
    assert!(
        errors[0].message.contains("no such setting"),
        "{:?}",
        errors[0]
    );
    assert!(
        errors[1].message.contains("no [listeners.publc]"),
        "{:?}",
        errors[1]
    );
}

#[test]
fn listed_environment_also_feeds_expansion_and_overrides() {
    let listed = vars(&[
        ("ADDR", "127.0.0.1:0"),
        ("EDGEWARD_ADMIN__MAX_CONNECTIONS", "3"),
    ]);
    let text = "[listeners.public]\nlisten = \"${ADDR}\"\n";
    let config = parse_with_vars(text, Path::new(FILE), &listed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.admin.max_connections, 3);
}

#[test]
fn ambiguous_upstream_override_is_an_error() {
    let text = format!(
        "{LISTENER}[upstreams.a-b]\nreplicas = [\"a:1\"]\n[upstreams.a_b]\nreplicas = [\"a:2\"]\n"
    );
    let errors = parse_errors_env(
        &text,
        &fake_env(&[("EDGEWARD_UPSTREAMS__A_B__MAX_CONNECTIONS", "3")]),
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].message.contains("ambiguous"), "{:?}", errors[0]);
}
