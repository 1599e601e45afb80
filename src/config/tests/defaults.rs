use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::{
    Action, ClientIpHeader, ConfigError, ConfigErrors, LogFormat, load, load_with_env, parse,
};
use super::{FILE, LISTENER, fake_env, no_env, parse_errors, parse_ok};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn defaults_apply_when_sections_are_missing() {
    let config = parse_ok(LISTENER);
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "public");
    assert!(!listener.tls && !listener.proxy_protocol && !listener.redirect_https);
    assert_eq!(listener.v6_only, None);
    assert_eq!(listener.https_port, None);
    assert!(listener.trusted_proxies.is_empty());
    assert_eq!(listener.client_ip_header, ClientIpHeader::XForwardedFor);

    assert_eq!(config.admin.addr, SocketAddr::from(([127, 0, 0, 1], 9901)));
    assert!(config.admin.hosts.is_empty() && config.admin.token.is_none());
    assert_eq!(config.admin.max_connections, 64);
    assert!(config.probe.is_none());

    let server = &config.server;
    assert_eq!(server.max_request_header, 16 * 1024);
    assert_eq!(server.max_headers, 100);
    assert_eq!(server.max_uri, 8 * 1024);
    assert_eq!(server.max_body, 100 * 1024 * 1024);
    assert_eq!(server.max_connections, 10_000);
    assert_eq!(server.max_connections_per_ip, 256);
    assert_eq!(server.max_requests_per_connection, 0);
    assert_eq!(server.max_connection_age, None);
    assert!(!server.allow_underscore_headers && !server.forwarded_header);
    assert!(server.server_header.is_none());

    let t = &config.timeouts;
    assert_eq!(
        (t.tls_handshake, t.request_header, t.keepalive_idle),
        (secs(10), secs(10), secs(60))
    );
    assert_eq!(t.route.client_body_idle, Some(secs(60)));
    assert_eq!(t.route.upstream_connect, Some(secs(5)));
    assert_eq!(t.route.upstream_header, Some(secs(60)));
    assert_eq!(t.route.upstream_body_idle, Some(secs(60)));
    assert_eq!(t.route.tunnel_idle, Some(secs(3600)));

    let h2 = &config.http2;
    assert_eq!(
        (h2.max_concurrent_streams, h2.max_header_list_size),
        (128, 16 * 1024)
    );
    assert_eq!(
        (
            h2.max_pending_accept_reset_streams,
            h2.max_local_error_reset_streams
        ),
        (20, 1024)
    );
    assert_eq!(
        (h2.keepalive_interval, h2.keepalive_timeout),
        (Some(secs(30)), secs(10))
    );

    assert!(config.tls.certificates.is_empty());
    assert_eq!(
        config.tls.self_signed_dir,
        PathBuf::from("/etc/edgeward/certs")
    );
    assert_eq!(config.tls.session_cache_size, 4096);
    assert!(config.tls.tickets);
    assert!(config.hsts.is_none());
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
    assert!(config.log.access_log);
    let s = &config.shutdown;
    assert_eq!(
        (s.propagation_delay, s.drain_timeout, s.stream_timeout),
        (secs(5), secs(30), secs(10))
    );
    assert!(config.upstreams.is_empty() && config.routes.is_empty());
}

#[test]
fn every_section_can_be_set() {
    let text = r#"
[listeners.edge]
listen = "[::]:8443"
tls = true
v6_only = false
proxy_protocol = true
trusted_proxies = ["10.1.2.3/16", "127.0.0.1", "fd00::1"]
client_ip_header = "forwarded"
https_port = 443
[admin]
listen = "127.0.0.1:9000"
hosts = ["Admin.Example.com"]
token = "s3cret"
max_connections = 8
[probe]
listen = "0.0.0.0:9902"
metrics = true
[server]
max_request_header = "32KiB"
server_header = "edgeward"
max_connection_age = "1h"
[hsts]
max_age = "2d"
include_subdomains = true
[log]
format = "json"
level = "info,edgeward=debug"
access_log = false
"#;
    let config = parse_ok(text);
    let listener = &config.listeners[0];
    assert_eq!(listener.addr, "[::]:8443".parse().expect("addr"));
    assert_eq!(listener.v6_only, Some(false));
    let nets: Vec<String> = listener
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.1.0.0/16", "127.0.0.1/32", "fd00::1/128"]);
    assert_eq!(listener.client_ip_header, ClientIpHeader::Forwarded);
    assert_eq!(listener.https_port, Some(443));
    assert_eq!(config.admin.hosts, ["admin.example.com"]);
    assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
    let probe = config.probe.expect("probe");
    assert!(probe.metrics);
    assert_eq!(probe.max_connections, 64);
    assert_eq!(config.server.max_request_header, 32 * 1024);
    assert_eq!(
        config.server.server_header.as_ref().map(|v| v.as_bytes()),
        Some(&b"edgeward"[..])
    );
    assert_eq!(config.server.max_connection_age, Some(secs(3600)));
    let hsts = config.hsts.expect("hsts");
    assert_eq!(hsts.max_age, secs(2 * 86_400));
    assert!(hsts.include_subdomains && !hsts.preload);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(!config.log.access_log);
}

#[test]
fn probe_without_listen_is_off() {
    assert!(
        parse_ok(&format!("{LISTENER}[probe]\nmetrics = true\n"))
            .probe
            .is_none()
    );
}

#[test]
fn empty_hsts_section_turns_it_on_with_a_year() {
    let hsts = parse_ok(&format!("{LISTENER}[hsts]\n")).hsts.expect("hsts");
    assert_eq!(hsts.max_age, secs(365 * 86_400));
}

#[test]
fn listeners_keep_file_order() {
    let text =
        "[listeners.zeta]\nlisten = \"127.0.0.1:0\"\n[listeners.alpha]\nlisten = \"127.0.0.1:0\"\n";
    let names: Vec<String> = parse_ok(text)
        .listeners
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["zeta", "alpha"]);
}

#[test]
fn empty_file_has_no_listeners() {
    let errors = parse_errors("");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "listeners");
    assert!(errors[0].message.contains("no listeners configured"));
    assert_eq!(errors[0].line, None);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let config = parse_ok(&format!(
        "{LISTENER}[tls]\nself_signed_dir = \"../certs\"\n"
    ));
    assert_eq!(
        config.tls.self_signed_dir,
        PathBuf::from("/etc/edgeward/../certs")
    );
    let config = parse_ok(&format!(
        "{LISTENER}[tls]\nself_signed_dir = \"/var/lib/edgeward\"\n"
    ));
    assert_eq!(
        config.tls.self_signed_dir,
        PathBuf::from("/var/lib/edgeward")
    );
}

#[test]
fn relative_config_path_still_gives_absolute_paths() {
    let config = parse(LISTENER, Path::new("edgeward.toml"), &no_env).expect("valid");
    assert!(
        config.tls.self_signed_dir.is_absolute(),
        "{:?}",
        config.tls.self_signed_dir
    );
}

#[test]
fn shipped_config_validates_and_matches_the_first_run_story() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/edgeward.toml");
    let config = load_with_env(&path, &no_env).unwrap_or_else(|e| panic!("{e}"));
    let listeners: Vec<(&str, String, bool, bool)> = config
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.addr.to_string(), l.tls, l.redirect_https))
        .collect();
    assert_eq!(
        listeners,
        [
            ("public", "0.0.0.0:8080".to_owned(), false, false),
            ("secure", "0.0.0.0:8443".to_owned(), true, false)
        ]
    );
    assert!(
        config.tls.certificates.is_empty(),
        "self-signed on a fresh machine"
    );
    assert!(config.tls.self_signed_dir.ends_with("config/../certs"));
    assert_eq!(config.admin.addr.to_string(), "127.0.0.1:9901");
    assert!(config.probe.is_none());
    let app = &config.upstreams["app"];
    assert_eq!(
        (app.replicas[0].host.as_str(), app.replicas[0].port),
        ("127.0.0.1", 8000)
    );
    let routes: Vec<(&str, bool)> = config
        .routes
        .iter()
        .map(|r| (r.path.as_str(), r.strip_prefix))
        .collect();
    assert_eq!(routes, [("/api", true), ("/", false)]);
    assert!(matches!(&config.routes[0].action, Action::Proxy { upstream } if upstream == "app"));
    let Action::Static(site) = &config.routes[1].action else {
        panic!("/ serves the demo site");
    };
    assert!(site.root.join("index.html").is_file());
    assert!(site.root.join(".vite/manifest.json").is_file());
    assert!(site.spa_fallback);
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("edgeward-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("edgeward.toml");
    std::fs::write(&path, "[listeners.public]\nlisten = \"${TEST_LISTEN}\"\n").expect("write");
    let config = load_with_env(&path, &fake_env(&[("TEST_LISTEN", "127.0.0.1:0")])).expect("valid");
    assert_eq!(config.listeners[0].addr.to_string(), "127.0.0.1:0");
    assert_eq!(config.tls.self_signed_dir, dir.join("certs"));
    std::fs::remove_dir_all(&dir).expect("cleanup");

    let errors = load(&dir.join("missing.toml")).expect_err("missing file");
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.0[0].message.contains("cannot read config file"),
        "{errors}"
    );
}

#[test]
fn display_formats() {
    let error = ConfigError {
        file: PathBuf::from("config/edgeward.toml"),
        line: Some(12),
        key: "routes[2].upstream".into(),
        env_var: None,
        message: "unknown upstream \"ap\" (known: app, static)".into(),
    };
    assert_eq!(
        error.to_string(),
        "config/edgeward.toml:12: routes[2].upstream: unknown upstream \"ap\" (known: app, static)"
    );
    let from_env = ConfigError {
        line: None,
        key: "listeners.public.listen".into(),
        env_var: Some("EDGEWARD_LISTENERS__PUBLIC__LISTEN".into()),
        message: "invalid socket address \"0.0.0.0:99999\"".into(),
        ..error.clone()
    };
    assert_eq!(
        from_env.to_string(),
        "EDGEWARD_LISTENERS__PUBLIC__LISTEN (overrides listeners.public.listen): invalid socket address \"0.0.0.0:99999\""
    );
    let global = ConfigError {
        line: None,
        key: "listeners".into(),
        message: "none".into(),
        ..error.clone()
    };
    assert_eq!(global.to_string(), "config/edgeward.toml: listeners: none");
    let both = ConfigErrors(vec![error, global]);
    assert_eq!(both.to_string().lines().count(), 2);
    let _: &dyn std::error::Error = &both;
}

#[test]
fn errors_name_the_file_given() {
    let errors = parse_errors("");
    assert_eq!(errors[0].file, PathBuf::from(FILE));
}
