use std::path::Path;

use super::super::{parse, parse_with_vars};
use super::{FILE, fake_env};

fn shipped() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/edgeward.toml");
    std::fs::read_to_string(path).expect("read shipped config")
}

/// Truncations, byte replacements and odd values must give errors, never a panic.
#[test]
fn mangled_input_never_panics() {
    let text = shipped();
    let env = fake_env(&[("EDGEWARD_LISTENERS__PUBLIC__LISTEN", "[::1]:99999")]);
    let boundaries: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    for &cut in boundaries.iter().step_by(3) {
        let _ = parse(&text[..cut], Path::new(FILE), &env);
    }
    let replacements = [
        "\"", "[", "]", "=", "\n", "${", "}", "0", "-1", "\u{0}", "é", "\"\"\"", "*",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..600 {
        let mut mangled = text.clone();
        for _ in 0..3 {
            let at = boundaries[rng.usize(..boundaries.len())].min(mangled.len());
            if mangled.is_char_boundary(at) {
                mangled.insert_str(at, replacements[rng.usize(..replacements.len())]);
            }
        }
        let _ = parse(&mangled, Path::new(FILE), &env);
    }
}

#[test]
fn extreme_values_are_errors() {
    let values = [
        "\"\"",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "1e400",
        "nan",
        "true",
        "[]",
        "{}",
        "\"${\"",
        "\"99999999999999999999d\"",
        "\"18446744073709551615GiB\"",
        "\"[::1]\"",
        "\":\"",
        "\"*.\"",
        "\"/..\"",
        "1979-05-27",
    ];
    let keys = [
        "listeners.public.listen",
        "listeners.public.https_port",
        "server.max_body",
        "server.max_connection_age",
        "timeouts.tls_handshake",
        "http2.max_header_list_size",
        "log.level",
        "tls.self_signed_dir",
        "hsts.max_age",
    ];
    for key in keys {
        let (table, field) = key.rsplit_once('.').expect("dotted");
        for value in values {
            let text = format!(
                "[listeners.public]\nlisten = \"127.0.0.1:0\"\n[{table}]\n{field} = {value}\n"
            );
            let _ = parse(&text, Path::new(FILE), &super::no_env);
        }
    }
    for value in values {
        let route = format!(
            "[listeners.public]\nlisten = \"127.0.0.1:0\"\n[upstreams.app]\nreplicas = [{value}]\n[[routes]]\nhost = {value}\npath = {value}\nupstream = {value}\nredirect = {{ to = {value}, status = {value} }}\nrequest_headers = {{ set = {{ \"x\" = {value} }} }}\n"
        );
        let _ = parse(&route, Path::new(FILE), &super::no_env);
    }
}

#[test]
fn odd_environment_never_panics() {
    let vars: Vec<(String, String)> = [
        ("EDGEWARD_", ""),
        ("EDGEWARD___", "x"),
        ("EDGEWARD_LISTENERS__", "x"),
        ("EDGEWARD_LISTENERS____LISTEN", "x"),
        ("EDGEWARD_ADMIN__MAX_CONNECTIONS", "99999999999999999999"),
        ("EDGEWARD_SERVER__MAX_BODY", "-5"),
        ("EDGEWARD_LOG_LEVEL", ""),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // Parsed where it lives, so that its relative static root exists.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/edgeward.toml");
    let errors = parse_with_vars(&shipped(), &path, &vars).expect_err("bad environment");
    assert!(errors.0.iter().all(|e| e.env_var.is_some()), "{errors}");
}
