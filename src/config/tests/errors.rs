use super::{LISTENER, assert_error, one_error, parse_errors, parse_ok};

#[test]
fn syntax_error_names_the_line_and_stops() {
    let errors = parse_errors(
        "[listeners.public]\nlisten = \"127.0.0.1:0\"\ntls = \n[server]\nmax_headers = 0\n",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, Some(3));
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    let errors =
        parse_errors("[listeners.public]\nlisten = \"127.0.0.1:0\"\nlisten = \"127.0.0.1:1\"\n");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].line, Some(3));
}

#[test]
fn unknown_key_names_line_key_and_allowed_keys() {
    let error = one_error("[listeners.public]\nlisten = \"127.0.0.1:0\"\n\ntsl = true\n");
    assert_error(&error, "listeners.public.tsl", 4, "unknown field `tsl`");
    assert!(
        error.message.contains("`tls`") && error.message.contains("`redirect_https`"),
        "{error:?}"
    );
}

#[test]
fn unknown_key_in_a_section() {
    let error = one_error(&format!("{LISTENER}[server]\nmax_header = 10\n"));
    assert_error(&error, "server.max_header", 4, "expected one of");
}

#[test]
fn unknown_section_lists_the_sections() {
    let error = one_error(&format!(
        "{LISTENER}[listener.x]\nlisten = \"127.0.0.1:0\"\n"
    ));
    assert_error(&error, "listener", 3, "expected one of: listeners, admin");
}

#[test]
fn wrong_type_names_line_and_key() {
    let error = one_error("[listeners.public]\nlisten = \"127.0.0.1:0\"\ntls = \"yes\"\n");
    assert_error(&error, "listeners.public.tls", 3, "expected a boolean");
    let error = one_error(&format!("{LISTENER}[server]\nmax_headers = \"100\"\n"));
    assert_error(&error, "server.max_headers", 4, "expected i64");
}

#[test]
fn section_that_is_not_a_table() {
    let error = one_error(&format!("admin = 5\n{LISTENER}"));
    assert_error(&error, "admin", 1, "expected a table");
    let error = one_error(&format!("{LISTENER}[routes]\npath = \"/\"\n"));
    assert_error(&error, "routes", 3, "[[routes]]");
}

#[test]
fn bad_socket_address() {
    let error = one_error("[listeners.public]\nlisten = \"0.0.0.0:99999\"\n");
    assert_error(
        &error,
        "listeners.public.listen",
        2,
        "invalid socket address \"0.0.0.0:99999\"",
    );
    let error = one_error(&format!("{LISTENER}[admin]\nlisten = \"localhost:9901\"\n"));
    assert_error(&error, "admin.listen", 4, "invalid socket address");
}

#[test]
fn missing_listen() {
    let error = one_error("[listeners.public]\ntls = false\n");
    assert_error(&error, "listeners.public", 1, "missing listen");
}

#[test]
fn bad_listener_name() {
    let error = one_error("[listeners.Public]\nlisten = \"127.0.0.1:0\"\n");
    assert_error(&error, "listeners.Public", 1, "a-z, 0-9 and _");
}

#[test]
fn duplicate_listener_addresses() {
    let text =
        "[listeners.a]\nlisten = \"0.0.0.0:8080\"\n[listeners.b]\nlisten = \"0.0.0.0:8080\"\n";
    let error = one_error(text);
    assert_error(
        &error,
        "listeners.b.listen",
        4,
        "also used by listeners.a.listen",
    );
}

#[test]
fn port_zero_never_clashes() {
    let text = "[listeners.a]\nlisten = \"127.0.0.1:0\"\n[listeners.b]\nlisten = \"127.0.0.1:0\"\n";
    assert_eq!(parse_ok(text).listeners.len(), 2);
}

#[test]
fn admin_clashing_with_a_listener() {
    let error = one_error(
        "[listeners.a]\nlisten = \"127.0.0.1:9901\"\n[admin]\nlisten = \"127.0.0.1:9901\"\n",
    );
    assert_error(&error, "admin.listen", 4, "also used by listeners.a.listen");
}

#[test]
fn v6_only_on_ipv4() {
    let error = one_error("[listeners.public]\nlisten = \"0.0.0.0:80\"\nv6_only = true\n");
    assert_error(
        &error,
        "listeners.public.v6_only",
        3,
        "only applies to IPv6",
    );
}

#[test]
fn redirect_https_on_a_tls_listener() {
    let error = one_error(
        "[listeners.public]\nlisten = \"0.0.0.0:443\"\ntls = true\nredirect_https = true\n",
    );
    assert_error(
        &error,
        "listeners.public.redirect_https",
        4,
        "plain listeners",
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let error = one_error("[listeners.public]\nlisten = \"0.0.0.0:80\"\nproxy_protocol = true\n");
    assert_error(
        &error,
        "listeners.public.proxy_protocol",
        3,
        "trusted_proxies",
    );
}

#[test]
fn client_ip_header_choices() {
    let error = one_error(
        "[listeners.public]\nlisten = \"0.0.0.0:80\"\nclient_ip_header = \"x-real-ip\"\n",
    );
    assert_error(
        &error,
        "listeners.public.client_ip_header",
        3,
        "\"forwarded\"",
    );
}

#[test]
fn https_port_range() {
    let error = one_error("[listeners.public]\nlisten = \"0.0.0.0:80\"\nhttps_port = 0\n");
    assert_error(
        &error,
        "listeners.public.https_port",
        3,
        "between 1 and 65535",
    );
}

#[test]
fn bad_cidr_names_its_index() {
    let error = one_error(
        "[listeners.public]\nlisten = \"0.0.0.0:80\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
    );
    assert_error(
        &error,
        "listeners.public.trusted_proxies[1]",
        3,
        "invalid CIDR \"10.0.0.0/33\"",
    );
}

#[test]
fn max_request_header_bounds() {
    let error = one_error(&format!(
        "{LISTENER}[server]\nmax_request_header = \"4KiB\"\n"
    ));
    assert_error(
        &error,
        "server.max_request_header",
        4,
        "between 8KiB and 1MiB",
    );
    let error = one_error(&format!(
        "{LISTENER}[server]\nmax_request_header = \"2MiB\"\n"
    ));
    assert_error(
        &error,
        "server.max_request_header",
        4,
        "between 8KiB and 1MiB",
    );
    assert_eq!(
        parse_ok(&format!("{LISTENER}[server]\nmax_request_header = 8192\n"))
            .server
            .max_request_header,
        8192
    );
}

#[test]
fn zero_where_impossible() {
    for (section, key) in [
        ("server", "max_connections"),
        ("server", "max_headers"),
        ("admin", "max_connections"),
        ("http2", "max_concurrent_streams"),
        ("tls", "session_cache_size"),
    ] {
        let error = one_error(&format!("{LISTENER}[{section}]\n{key} = 0\n"));
        assert_error(
            &error,
            &format!("{section}.{key}"),
            4,
            "must be between 1 and",
        );
    }
    let error = one_error(&format!("{LISTENER}[server]\nmax_uri = 0\n"));
    assert_error(&error, "server.max_uri", 4, "between");
}

#[test]
fn zero_means_unlimited_where_documented() {
    let config = parse_ok(&format!(
        "{LISTENER}[server]\nmax_connections_per_ip = 0\nmax_requests_per_connection = 0\n"
    ));
    assert_eq!(config.server.max_connections_per_ip, 0);
}

#[test]
fn max_headers_upper_bound() {
    let error = one_error(&format!("{LISTENER}[server]\nmax_headers = 10001\n"));
    assert_error(
        &error,
        "server.max_headers",
        4,
        "between 1 and 10000, got 10001",
    );
}

#[test]
fn bad_server_header_value() {
    let error = one_error(&format!("{LISTENER}[server]\nserver_header = \"a\\nb\"\n"));
    assert_error(&error, "server.server_header", 4, "invalid header value");
}

#[test]
fn admin_token_and_hosts() {
    let error = one_error(&format!("{LISTENER}[admin]\ntoken = \"\"\n"));
    assert_error(&error, "admin.token", 4, "non-empty");
    let error = one_error(&format!(
        "{LISTENER}[admin]\nhosts = [\"ok.example\", \"bad host:80\"]\n"
    ));
    assert_error(&error, "admin.hosts[1]", 4, "without port");
}

#[test]
fn log_format_and_level() {
    let error = one_error(&format!("{LISTENER}[log]\nformat = \"xml\"\n"));
    assert_error(&error, "log.format", 4, "\"text\" or \"json\"");
    let error = one_error(&format!("{LISTENER}[log]\nlevel = \"\"\n"));
    assert_error(&error, "log.level", 4, "must not be empty");
    let error = one_error(&format!("{LISTENER}[log]\nlevel = \"info,[=\"\n"));
    assert_error(&error, "log.level", 4, "invalid filter");
}

#[test]
fn hsts_preload_requirements() {
    let error = one_error(&format!("{LISTENER}[hsts]\npreload = true\n"));
    assert_error(&error, "hsts.preload", 4, "include_subdomains");
    let ok = format!(
        "{LISTENER}[hsts]\npreload = true\ninclude_subdomains = true\nmax_age = \"730d\"\n"
    );
    assert!(parse_ok(&ok).hsts.expect("hsts").preload);
}

#[test]
fn every_independent_problem_is_reported_in_file_order() {
    let text = r#"
[listeners.public]
listen = "0.0.0.0:99999"
[server]
max_headers = 0
[log]
format = "yaml"
"#;
    let errors = parse_errors(text);
    let found: Vec<(Option<usize>, &str)> =
        errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        found,
        [
            (Some(3), "listeners.public.listen"),
            (Some(5), "server.max_headers"),
            (Some(7), "log.format")
        ]
    );
}

#[test]
fn deserialize_errors_in_separate_sections_are_all_reported() {
    let text = "[listeners.a]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n[listeners.b]\nlisten = 5\n[server]\nmax_uri = true\n";
    let errors = parse_errors(text);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    // Both listeners failed to read; that is not "no listeners configured".
    assert_eq!(
        keys,
        ["listeners.a.bogus", "listeners.b.listen", "server.max_uri"]
    );
}

/// A scratch directory holding a config's certificate files, removed on drop.
struct CertDir(std::path::PathBuf);

impl CertDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("edgeward-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("cert.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write cert");
        std::fs::write(
            dir.join("key.pem"),
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        )
        .expect("write key");
        std::fs::write(dir.join("empty.pem"), "not pem\n").expect("write empty");
        Self(dir)
    }

    fn parse(&self, text: &str) -> Result<super::super::Config, super::super::ConfigErrors> {
        super::super::parse(text, &self.0.join("edgeward.toml"), &super::no_env)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn certificate_files_resolve_relative_to_the_config() {
    let dir = CertDir::new("certs-ok");
    let text = format!("{LISTENER}[[tls.certificates]]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
    let config = dir.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let cert = &config.tls.certificates[0];
    assert_eq!(cert.cert, dir.0.join("cert.pem"));
    assert_eq!(cert.key, dir.0.join("key.pem"));
    assert!(!cert.default);
}

#[test]
fn certificate_files_missing_or_not_pem() {
    let dir = CertDir::new("certs-bad");
    let text = format!(
        "{LISTENER}[[tls.certificates]]\ncert = \"missing.pem\"\nkey = \"empty.pem\"\n[[tls.certificates]]\nkey = \"key.pem\"\n"
    );
    let errors = dir.parse(&text).expect_err("bad certificates").0;
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(&errors[0], "tls.certificates[0].cert", 4, "cannot read");
    assert!(errors[0].message.contains("missing.pem"), "{:?}", errors[0]);
    assert_error(&errors[1], "tls.certificates[0].key", 5, "no PEM block");
    assert_eq!(errors[2].key, "tls.certificates[1].cert");
    assert!(
        errors[2].message.contains("missing cert"),
        "{:?}",
        errors[2]
    );
}

#[test]
fn only_one_default_certificate() {
    let dir = CertDir::new("certs-default");
    let entry = "[[tls.certificates]]\ncert = \"cert.pem\"\nkey = \"key.pem\"\ndefault = true\n";
    let errors = dir
        .parse(&format!("{LISTENER}{entry}{entry}"))
        .expect_err("two defaults")
        .0;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_error(&errors[0], "tls.certificates[1].default", 10, "already is");
}

#[test]
fn tls_listener_without_certificates_is_fine() {
    let config = parse_ok("[listeners.secure]\nlisten = \"127.0.0.1:0\"\ntls = true\n");
    assert!(config.listeners[0].tls);
}
