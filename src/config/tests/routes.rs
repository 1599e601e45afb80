use std::time::Duration;

use http::StatusCode;

use super::super::validate_routes::{host_match, normalize_path, parse_host_port};
use super::super::{Action, HostMatch, ReplicaAddr};
use super::{LISTENER, assert_error, one_error, parse_errors, parse_ok};

/// A listener and two upstreams, then `routes`. Routes start on line 7.
fn with_routes(routes: &str) -> String {
    format!(
        "{LISTENER}[upstreams.app]\nreplicas = [\"127.0.0.1:8000\"]\n[upstreams.static]\nreplicas = [\"127.0.0.1:8001\"]\n{routes}"
    )
}

#[test]
fn minimal_route_gets_defaults() {
    let config = parse_ok(&with_routes("[[routes]]\nupstream = \"app\"\n"));
    let route = &config.routes[0];
    assert_eq!(route.name, "*/");
    assert_eq!(route.host, None);
    assert_eq!(route.path, "/");
    assert!(!route.strip_prefix && route.access_log);
    assert!(matches!(&route.action, Action::Proxy { upstream } if upstream == "app"));
    assert!(route.request_headers.set.is_empty() && route.response_headers.remove.is_empty());
    assert!(route.allow.is_empty() && route.deny.is_empty());
    assert_eq!(route.timeouts, config.timeouts.route);
    assert_eq!(route.max_body, config.server.max_body);
    assert!(route.upstream_host.is_none());
}

#[test]
fn full_route() {
    let text = with_routes(
        r#"[server]
max_body = "1MiB"
[timeouts]
upstream_header = "30s"
[[routes]]
name = "api"
host = "App.Example.com"
path = "/api/"
strip_prefix = true
upstream = "app"
request_headers = { set = { "X-Env" = "prod", "X-Team" = "core" }, remove = ["X-Debug"] }
response_headers = { set = { "X-Frame-Options" = "DENY" }, remove = ["Server"] }
allow = ["10.0.0.0/8"]
deny = ["10.9.0.0/16"]
timeouts = { client_body_idle = "30s", upstream_body_idle = "off" }
max_body = "10MiB"
upstream_host = "internal.svc"
access_log = false
"#,
    );
    let config = parse_ok(&text);
    let route = &config.routes[0];
    assert_eq!(route.name, "api");
    assert_eq!(route.host, Some(HostMatch::Exact("app.example.com".into())));
    assert_eq!(route.path, "/api");
    assert!(route.strip_prefix && !route.access_log);
    let set: Vec<(&str, &[u8])> = route
        .request_headers
        .set
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(set, [("x-env", &b"prod"[..]), ("x-team", &b"core"[..])]);
    assert_eq!(route.request_headers.remove, ["x-debug"]);
    assert_eq!(route.response_headers.remove, ["server"]);
    assert_eq!(route.allow[0].to_string(), "10.0.0.0/8");
    assert_eq!(route.deny[0].to_string(), "10.9.0.0/16");
    assert_eq!(
        route.timeouts.client_body_idle,
        Some(Duration::from_secs(30))
    );
    assert_eq!(route.timeouts.upstream_body_idle, None);
    // Not set on the route: inherited from [timeouts], including the file's own value.
    assert_eq!(
        route.timeouts.upstream_header,
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        route.timeouts.upstream_connect,
        Some(Duration::from_secs(5))
    );
    assert_eq!(route.max_body, 10 * 1024 * 1024);
    assert_eq!(
        route.upstream_host.as_ref().map(|v| v.as_bytes()),
        Some(&b"internal.svc"[..])
    );
}

#[test]
fn route_max_body_inherits_server_max_body() {
    let config = parse_ok(&with_routes(
        "[server]\nmax_body = \"1MiB\"\n[[routes]]\nupstream = \"app\"\n",
    ));
    assert_eq!(config.routes[0].max_body, 1 << 20);
}

#[test]
fn unknown_upstream_lists_the_known_ones() {
    let text = with_routes(
        "[[routes]]\nupstream = \"app\"\n[[routes]]\npath = \"/x\"\nupstream = \"ap\"\n",
    );
    let error = one_error(&text);
    assert_error(
        &error,
        "routes[1].upstream",
        11,
        "unknown upstream \"ap\" (known: app, static)",
    );
}

#[test]
fn unknown_upstream_when_none_exist() {
    let error = one_error(&format!("{LISTENER}[[routes]]\nupstream = \"app\"\n"));
    assert_error(
        &error,
        "routes[0].upstream",
        4,
        "no [upstreams.<name>] are defined",
    );
}

#[test]
fn redirect_route() {
    let text = with_routes(
        "[[routes]]\nhost = \"old.example.com\"\nredirect = { to = \"https://new.example.com\", preserve_path = true }\n",
    );
    let config = parse_ok(&text);
    match &config.routes[0].action {
        Action::Redirect {
            to,
            status,
            preserve_path,
        } => {
            assert_eq!(to, "https://new.example.com");
            assert_eq!(*status, StatusCode::PERMANENT_REDIRECT);
            assert!(*preserve_path);
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn redirect_status_must_be_a_redirect() {
    let error = one_error(&with_routes(
        "[[routes]]\nredirect = { to = \"/x\", status = 200 }\n",
    ));
    assert_error(
        &error,
        "routes[0].redirect.status",
        8,
        "301, 302, 303, 307 or 308, got 200",
    );
    let config = parse_ok(&with_routes(
        "[[routes]]\nredirect = { to = \"/x\", status = 302 }\n",
    ));
    assert!(matches!(
        config.routes[0].action,
        Action::Redirect {
            status: StatusCode::FOUND,
            ..
        }
    ));
}

#[test]
fn redirect_needs_a_usable_target() {
    let error = one_error(&with_routes("[[routes]]\nredirect = { status = 301 }\n"));
    assert_error(&error, "routes[0].redirect", 8, "missing to");
    let error = one_error(&with_routes(
        "[[routes]]\nredirect = { to = \"example.com\" }\n",
    ));
    assert_error(
        &error,
        "routes[0].redirect.to",
        8,
        "invalid redirect target",
    );
    let error = one_error(&with_routes("[[routes]]\nredirect = \"https://x\"\n"));
    assert_error(&error, "routes[0].redirect", 8, "a table like { to =");
}

#[test]
fn both_or_neither_action() {
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nredirect = { to = \"/x\" }\n",
    ));
    assert_error(
        &error,
        "routes[0].redirect",
        9,
        "only one of upstream, redirect and static",
    );
    let error = one_error(&with_routes("[[routes]]\npath = \"/x\"\n"));
    assert_error(&error, "routes[0]", 7, "needs an action");
}

#[test]
fn duplicate_route_names() {
    let text = with_routes(
        "[[routes]]\nname = \"a\"\nupstream = \"app\"\n[[routes]]\nname = \"a\"\npath = \"/b\"\nupstream = \"app\"\n",
    );
    let error = one_error(&text);
    assert_error(
        &error,
        "routes[1].name",
        11,
        "duplicate route name \"a\" (also routes[0])",
    );
}

#[test]
fn duplicate_host_and_path() {
    let text = with_routes(
        "[[routes]]\npath = \"/api\"\nupstream = \"app\"\n[[routes]]\npath = \"/api/\"\nupstream = \"static\"\n",
    );
    let error = one_error(&text);
    assert_error(
        &error,
        "routes[1]",
        10,
        "routes[0] already matches the same host and path",
    );
    let text = with_routes(
        "[[routes]]\nhost = \"a.example\"\nupstream = \"app\"\n[[routes]]\nhost = \"b.example\"\nupstream = \"app\"\n",
    );
    assert_eq!(parse_ok(&text).routes.len(), 2);
}

#[test]
fn hosts_are_normalised_or_rejected() {
    assert_eq!(
        host_match("App.Example.COM"),
        Ok(HostMatch::Exact("app.example.com".into()))
    );
    assert_eq!(
        host_match("*.example.com"),
        Ok(HostMatch::Wildcard(".example.com".into()))
    );
    for (bad, why) in [
        ("example.com.", "dot"),
        ("example.com:8080", "port"),
        ("*", "leave host out"),
        ("a.*.example.com", "invalid host"),
        ("exa mple.com", "invalid host"),
        ("", "invalid host"),
    ] {
        let message = host_match(bad).expect_err(bad);
        assert!(message.contains(why), "{bad:?}: {message}");
    }
    let error = one_error(&with_routes(
        "[[routes]]\nhost = \"example.com.\"\nupstream = \"app\"\n",
    ));
    assert_error(&error, "routes[0].host", 8, "must not end with a dot");
}

#[test]
fn paths_are_normalised_or_rejected() {
    assert_eq!(normalize_path("/"), Ok("/".into()));
    assert_eq!(normalize_path("/api/"), Ok("/api".into()));
    assert_eq!(normalize_path("/a/b"), Ok("/a/b".into()));
    for (bad, why) in [
        ("api", "start with"),
        ("/a//b", "//"),
        ("/a/../b", ".."),
        ("/a/./b", ".."),
        ("/a?b", "?"),
        ("/a b", "spaces"),
    ] {
        let message = normalize_path(bad).expect_err(bad);
        assert!(message.contains(why), "{bad:?}: {message}");
    }
    let error = one_error(&with_routes(
        "[[routes]]\npath = \"/a/../b\"\nupstream = \"app\"\n",
    ));
    assert_error(&error, "routes[0].path", 8, "\"..\"");
}

#[test]
fn default_name_uses_host_and_normalised_path() {
    let config = parse_ok(&with_routes(
        "[[routes]]\nhost = \"*.Example.com\"\npath = \"/api/\"\nupstream = \"app\"\n",
    ));
    assert_eq!(config.routes[0].name, "*.example.com/api");
}

#[test]
fn header_edits_reject_invalid_names_and_values() {
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nresponse_headers = { set = { \"Bad Name\" = \"x\" } }\n",
    ));
    assert_error(
        &error,
        "routes[0].response_headers.set[\"Bad Name\"]",
        9,
        "invalid header name",
    );
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nresponse_headers = { set = { \"X-A\" = \"a\\u0000b\" } }\n",
    ));
    assert_error(
        &error,
        "routes[0].response_headers.set[\"X-A\"]",
        9,
        "invalid header value",
    );
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nrequest_headers = { remove = [\"ok\", \"b@d\"] }\n",
    ));
    assert_error(
        &error,
        "routes[0].request_headers.remove[1]",
        9,
        "invalid header name",
    );
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nrequest_headers = { set = { \"X-A\" = \"1\", \"x-a\" = \"2\" } }\n",
    ));
    assert!(error.message.contains("set twice"), "{error:?}");
}

#[test]
fn gateway_controlled_request_headers_cannot_be_edited() {
    for name in [
        "X-Forwarded-For",
        "x-forwarded-proto",
        "X-Forwarded-Host",
        "Forwarded",
        "X-Real-IP",
        "X-Request-Id",
        "Host",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
    ] {
        for edit in [
            format!("set = {{ \"{name}\" = \"x\" }}"),
            format!("remove = [\"{name}\"]"),
        ] {
            let text = with_routes(&format!(
                "[[routes]]\nupstream = \"app\"\nrequest_headers = {{ {edit} }}\n"
            ));
            let error = one_error(&text);
            assert_eq!(error.line, Some(9), "{error:?}");
            assert!(
                error.message.contains("the gateway controls"),
                "{name}: {error:?}"
            );
        }
    }
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nrequest_headers = { set = { \"Host\" = \"x\" } }\n",
    ));
    assert!(error.message.contains("upstream_host"), "{error:?}");
}

#[test]
fn framing_response_headers_cannot_be_edited_but_others_can() {
    let error = one_error(&with_routes(
        "[[routes]]\nupstream = \"app\"\nresponse_headers = { remove = [\"Content-Length\"] }\n",
    ));
    assert!(error.message.contains("the gateway controls"), "{error:?}");
    let config = parse_ok(&with_routes(
        "[[routes]]\nupstream = \"app\"\nresponse_headers = { set = { \"X-Request-Id\" = \"x\" } }\n",
    ));
    assert_eq!(config.routes[0].response_headers.set.len(), 1);
}

#[test]
fn bad_route_cidr_and_timeout() {
    let text = with_routes(
        "[[routes]]\nupstream = \"app\"\nallow = [\"nope\"]\ntimeouts = { upstream_header = \"5 min\", bogus = \"1s\" }\n",
    );
    let errors = parse_errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_error(
        &errors[0],
        "routes[0].timeouts.bogus",
        10,
        "unknown field `bogus`",
    );
    let text = with_routes(
        "[[routes]]\nupstream = \"app\"\nallow = [\"nope\"]\ntimeouts = { upstream_header = \"5 min\" }\n",
    );
    let errors = parse_errors(&text);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["routes[0].allow[0]", "routes[0].timeouts.upstream_header"]
    );
}

#[test]
fn errors_in_several_routes_are_all_reported() {
    let text = with_routes(
        "[[routes]]\nupstream = \"nope\"\n[[routes]]\npath = \"/x\"\nupstrem = \"app\"\n[[routes]]\npath = \"y\"\nupstream = \"app\"\n",
    );
    let keys: Vec<String> = parse_errors(&text).into_iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        ["routes[0].upstream", "routes[1].upstrem", "routes[2].path"]
    );
}

#[test]
fn replicas_as_strings_or_tables() {
    let text = format!(
        "{LISTENER}[upstreams.app]\nreplicas = [\"127.0.0.1:8000\", {{ addr = \"App-1:8001\", weight = 2 }}, \"[::1]:8002\"]\n"
    );
    let config = parse_ok(&text);
    let replicas = &config.upstreams["app"].replicas;
    assert_eq!(
        replicas,
        &[
            ReplicaAddr {
                host: "127.0.0.1".into(),
                port: 8000,
                weight: 1
            },
            ReplicaAddr {
                host: "app-1".into(),
                port: 8001,
                weight: 2
            },
            ReplicaAddr {
                host: "::1".into(),
                port: 8002,
                weight: 1
            },
        ]
    );
    let upstream = &config.upstreams["app"];
    assert_eq!(upstream.max_connections, 256);
    assert_eq!(upstream.queue_timeout, Duration::from_secs(1));
    assert_eq!(upstream.idle_timeout, Duration::from_secs(4));
    assert_eq!(upstream.max_response_header, 64 * 1024);
}

#[test]
fn replica_address_forms() {
    assert_eq!(parse_host_port("my_app:80"), Ok(("my_app".into(), 80)));
    for (bad, why) in [
        ("127.0.0.1", "host:port"),
        ("::1:80", "brackets"),
        ("[::1]80", "[IPv6]:port"),
        ("[zz]:80", "IPv6"),
        ("300.1.1.1:80", "IPv4"),
        ("app:0", "port"),
        ("app:http", "port"),
        ("-app:80", "host name"),
        (":80", "missing host"),
    ] {
        let message = parse_host_port(bad).expect_err(bad);
        assert!(message.contains(why), "{bad:?}: {message}");
    }
}

#[test]
fn replica_problems_name_the_replica() {
    let upstream = |replicas: &str| format!("{LISTENER}[upstreams.app]\nreplicas = {replicas}\n");
    let error = one_error(&upstream("[]"));
    assert_error(&error, "upstreams.app.replicas", 4, "at least one");
    let error = one_error(&upstream("[\"a:1\", \"a:1\"]"));
    assert_error(&error, "upstreams.app.replicas[1]", 4, "duplicate replica");
    let error = one_error(&upstream("[{ addr = \"a:1\", weight = 0 }]"));
    assert_error(
        &error,
        "upstreams.app.replicas[0].weight",
        4,
        "between 1 and 1000",
    );
    let error = one_error(&upstream("[{ addr = \"a:1\", wieght = 2 }]"));
    assert_error(
        &error,
        "upstreams.app.replicas[0].wieght",
        4,
        "unknown field `wieght`",
    );
    let error = one_error(&upstream("[5]"));
    assert_error(&error, "upstreams.app.replicas[0]", 4, "\"host:port\" or");
    let error = one_error(&format!("{LISTENER}[upstreams.app]\nmax_connections = 1\n"));
    assert_error(&error, "upstreams.app", 3, "missing replicas");
}

#[test]
fn upstream_names_and_limits() {
    let error = one_error(&format!(
        "{LISTENER}[upstreams.\"App\"]\nreplicas = [\"a:1\"]\n"
    ));
    assert_error(&error, "upstreams.App", 3, "a-z, 0-9, _ and -");
    let text = format!(
        "{LISTENER}[upstreams.app]\nreplicas = [\"a:1\"]\nmax_response_header = \"1KiB\"\nmax_connections = 0\n"
    );
    let keys: Vec<String> = parse_errors(&text).into_iter().map(|e| e.key).collect();
    assert_eq!(
        keys,
        [
            "upstreams.app.max_response_header",
            "upstreams.app.max_connections"
        ]
    );
}
