use std::collections::BTreeSet;
use std::path::Path;

use super::super::keys::{KEYS, Kind};
use super::super::reference_table;
use super::{FILE, fake_env, parse, parse_errors};

const BEGIN: &str = "<!-- BEGIN GENERATED -->\n";
const END: &str = "<!-- END GENERATED -->";

#[test]
fn docs_reference_table_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/configuration.md");
    let start = doc.find(BEGIN).expect("BEGIN marker") + BEGIN.len();
    let end = doc.find(END).expect("END marker");
    let table = reference_table();
    if doc[start..end] == table {
        return;
    }
    if std::env::var_os("EDGEWARD_BLESS").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).expect("write docs/configuration.md");
        return;
    }
    panic!(
        "the reference table in docs/configuration.md is out of date; regenerate it with:\n  \
         EDGEWARD_BLESS=1 cargo test --lib config::tests::reference"
    );
}

#[test]
fn reference_table_has_a_row_per_key() {
    let table = reference_table();
    assert_eq!(table.lines().count(), KEYS.len() + 2);
    assert!(table.contains(
        "| `listeners.<name>.listen` | `EDGEWARD_LISTENERS__<NAME>__LISTEN` | socket address |"
    ));
    assert!(table.contains("`EDGEWARD_LOG__FORMAT` or `EDGEWARD_LOG_FORMAT`"));
    for key in KEYS {
        assert!(
            !key.doc.contains('|') && !key.default.contains('|'),
            "{}",
            key.path
        );
    }
}

/// One listener (IPv6, so `v6_only` is valid), one upstream, one route, a probe listener and
/// an HSTS section that satisfies `preload`: every key in the list can be set on top of this.
const BASE: &str = r#"
[listeners.public]
listen = "[::1]:0"
trusted_proxies = ["127.0.0.1"]
[upstreams.app]
replicas = ["127.0.0.1:8000"]
[[routes]]
upstream = "app"
[rate_limits.app]
rate = "100/m"
[redis]
url = "redis://127.0.0.1:6379"
[hsts]
include_subdomains = true
[probe]
listen = "127.0.0.1:0"
"#;

/// Values to try for a key, in order; one of them differs from the default.
fn samples(kind: Kind) -> Vec<&'static str> {
    match kind {
        Kind::Bool => vec!["true", "false"],
        Kind::Int => vec!["3", "4"],
        Kind::Str => vec!["edgeward", "debug"],
        Kind::Duration => vec!["3s", "4s"],
        Kind::DurationOrOff => vec!["off", "3s"],
        Kind::Size => vec!["32KiB", "16KiB"],
        Kind::Addr => vec!["127.0.0.1:0", "[::1]:0"],
        Kind::Path => vec!["elsewhere"],
        Kind::Url => vec!["https://acme.test/directory"],
        Kind::Fraction => vec!["0.5", "1"],
        Kind::Choice(options) => options.to_vec(),
        Kind::Rate => vec!["10/s", "5/m"],
        Kind::LimitKey => vec!["route", "header:x-api-key"],
        Kind::RedisUrl => vec!["rediss://:secret@cache.internal:6380/2"],
    }
}

#[test]
fn every_listed_key_is_accepted_and_takes_effect() {
    let baseline = format!(
        "{:?}",
        parse(BASE, Path::new(FILE), &super::no_env).expect("base config")
    );
    for key in KEYS {
        let path = key.path.replace(
            "<name>",
            if key.path.starts_with("listeners") {
                "public"
            } else {
                "app"
            },
        );
        let segments: Vec<&str> = path.split('.').collect();
        let var = super::super::keys::env_var_for(&segments);
        let mut changed = false;
        let samples = if key.examples.is_empty() {
            samples(key.kind)
        } else {
            key.examples.to_vec()
        };
        for sample in samples {
            let env = fake_env(&[(&var, sample)]);
            let config = parse(BASE, Path::new(FILE), &env)
                .unwrap_or_else(|e| panic!("{var}={sample} was rejected:\n{e}"));
            changed |= format!("{config:?}") != baseline;
        }
        assert!(changed, "setting {} ({var}) changed nothing", key.path);
    }
}

/// Scalar fields of each section as serde reports them, minus arrays and tables.
fn section_fields(header: &str) -> Vec<String> {
    let text = if header.starts_with("listeners") {
        format!("[{header}]\nlisten = \"127.0.0.1:0\"\nzz_unknown = 1\n")
    } else {
        format!("[listeners.public]\nlisten = \"127.0.0.1:0\"\n[{header}]\nzz_unknown = 1\n")
    };
    let errors = parse_errors(&text);
    let message = &errors
        .iter()
        .find(|e| e.key.ends_with("zz_unknown"))
        .expect("unknown field error")
        .message;
    let expected = message.split_once("expected").expect("expected list").1;
    let not_scalar = [
        "trusted_proxies",
        "hosts",
        "certificates",
        "replicas",
        "health",
        "outlier",
        "eab",
    ];
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|field| !not_scalar.contains(field))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_scalar_field_of_the_raw_types_is_listed() {
    let listed: BTreeSet<&str> = KEYS.iter().map(|k| k.path).collect();
    for (header, prefix) in [
        ("listeners.public", "listeners.<name>"),
        ("admin", "admin"),
        ("probe", "probe"),
        ("server", "server"),
        ("timeouts", "timeouts"),
        ("http2", "http2"),
        ("tls", "tls"),
        ("acme", "acme"),
        ("hsts", "hsts"),
        ("log", "log"),
        ("shutdown", "shutdown"),
        ("reload", "reload"),
        ("upstreams.app", "upstreams.<name>"),
        ("rate_limits.app", "rate_limits.<name>"),
        ("redis", "redis"),
        ("upstreams.app.health", "upstreams.<name>.health"),
        ("upstreams.app.outlier", "upstreams.<name>.outlier"),
        ("startup", "startup"),
    ] {
        let fields = section_fields(header);
        assert!(!fields.is_empty(), "{header}");
        for field in fields {
            let path = format!("{prefix}.{field}");
            assert!(
                listed.contains(path.as_str()),
                "{path} is missing from keys::KEYS"
            );
        }
    }
}
