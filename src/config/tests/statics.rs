//! `static = { ... }` route actions.

use super::super::{Action, StaticConfig};
use super::{LISTENER, assert_error, one_error, parse_errors, parse_ok};

/// A listener, then one route at `/` whose static table is `table`, on line 4.
fn with_static(table: &str) -> String {
    format!("{LISTENER}[[routes]]\nstatic = {table}\n")
}

fn static_of(text: &str) -> StaticConfig {
    match &parse_ok(text).routes[0].action {
        Action::Static(files) => files.clone(),
        other => panic!("expected a static action, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let dir = tempfile::tempdir().unwrap();
    let files = static_of(&with_static(&format!("{{ root = {:?} }}", dir.path())));
    assert_eq!(files.root, dir.path());
    assert_eq!(files.index, "index.html");
    assert!(!files.spa_fallback && !files.serve_hidden && !files.follow_symlinks_outside);
    assert!(files.compress);
    assert!(files.immutable_patterns.is_empty());
    assert_eq!(
        files.cache_control_hashed,
        "public, max-age=31536000, immutable"
    );
    assert_eq!(files.cache_control_other, "no-cache");
}

#[test]
fn every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        r#"{{ root = {:?}, index = "home.htm", spa_fallback = true, serve_hidden = true, follow_symlinks_outside = true, immutable_patterns = ["/fonts/*", "*.woff2"], cache_control_hashed = "public, max-age=60", cache_control_other = "no-store", compress = false }}"#,
        dir.path()
    );
    let text = format!("{}access_log = false\n", with_static(&table));
    let config = parse_ok(&text);
    assert!(!config.routes[0].access_log);
    let files = static_of(&text);
    assert_eq!(files.index, "home.htm");
    assert!(files.spa_fallback && files.serve_hidden && files.follow_symlinks_outside);
    assert!(!files.compress);
    assert_eq!(files.immutable_patterns, ["fonts/*", "*.woff2"]);
    assert_eq!(files.cache_control_hashed, "public, max-age=60");
    assert_eq!(files.cache_control_other, "no-store");
}

#[test]
fn root_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dist")).unwrap();
    let path = dir.path().join("edgeward.toml");
    let text = with_static("{ root = \"dist\" }");
    let config = crate::config::parse(&text, &path, &|_| None).unwrap();
    let Action::Static(files) = &config.routes[0].action else {
        panic!("not static");
    };
    assert_eq!(files.root, dir.path().join("dist"));
}

#[test]
fn root_must_be_an_existing_directory() {
    let error = one_error(&with_static("{ spa_fallback = true }"));
    assert_error(&error, "routes[0].static", 4, "missing root");
    let error = one_error(&with_static("{ root = \"/nonexistent/edgeward/dist\" }"));
    assert_error(&error, "routes[0].static.root", 4, "cannot use");
    let file = tempfile::NamedTempFile::new().unwrap();
    let error = one_error(&with_static(&format!("{{ root = {:?} }}", file.path())));
    assert_error(&error, "routes[0].static.root", 4, "not a directory");
}

#[test]
fn bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("root = {:?}", dir.path());
    let cases = [
        (
            "index = \"a/b.html\"",
            "routes[0].static.index",
            "plain file name",
        ),
        (
            "index = \"..\"",
            "routes[0].static.index",
            "plain file name",
        ),
        (
            "immutable_patterns = [\"ok/*\", \"../x\"]",
            "routes[0].static.immutable_patterns[1]",
            "invalid pattern",
        ),
        (
            "immutable_patterns = [\"a//b\"]",
            "routes[0].static.immutable_patterns[0]",
            "invalid pattern",
        ),
        (
            "cache_control_other = \"a\\u0001\"",
            "routes[0].static.cache_control_other",
            "invalid header value",
        ),
        ("listing = true", "routes[0].static", "unknown field"),
    ];
    for (setting, key, needle) in cases {
        let errors = parse_errors(&with_static(&format!("{{ {root}, {setting} }}")));
        assert!(
            errors
                .iter()
                .any(|e| e.key.starts_with(key) && e.message.contains(needle)),
            "{setting}: {errors:#?}"
        );
    }
}

#[test]
fn only_one_action() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{LISTENER}[upstreams.app]\nreplicas = [\"127.0.0.1:8000\"]\n[[routes]]\nupstream = \"app\"\nstatic = {{ root = {:?} }}\n",
        dir.path()
    );
    let error = one_error(&text);
    assert_error(&error, "routes[0].static", 7, "only one of");
}

#[test]
fn compress_is_for_upstream_routes() {
    let text = format!(
        "{LISTENER}[upstreams.app]\nreplicas = [\"127.0.0.1:8000\"]\n[[routes]]\nupstream = \"app\"\ncompress = true\n"
    );
    assert!(parse_ok(&text).routes[0].compress);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}compress = true\n",
        with_static(&format!("{{ root = {:?} }}", dir.path()))
    );
    let error = one_error(&text);
    assert_error(&error, "routes[0].compress", 5, "static.compress");
}
