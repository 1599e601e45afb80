//! `edgeward check` and `run` refuse bad config with the file, line, key or variable.

use std::process::Command;

fn edgeward(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeward"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const BROKEN: &str = r#"[listeners.public]
listen = "127.0.0.1:0"

[upstreams.app]
replicas = ["127.0.0.1:9"]

[[routes]]
path = "/"
upstream = "ap"
"#;

#[test]
fn check_names_the_line_and_key_of_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let p = path.to_str().unwrap();
    let (ok, out) = edgeward(&["check", "--config", p], &[]);
    assert!(!ok);
    assert!(
        out.contains(&format!("{p}:9:")),
        "names file and line 9: {out}"
    );
    assert!(out.contains("routes[0].upstream"), "names the key: {out}");
    assert!(out.contains("\"ap\""), "quotes the bad value: {out}");

    // `run` refuses with the same message.
    let (ok, run_out) = edgeward(&["run", "--config", p], &[]);
    assert!(!ok);
    assert!(run_out.contains(&format!("{p}:9:")), "{run_out}");
}

#[test]
fn check_names_the_variable_of_a_bad_override() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, BROKEN.replace("\"ap\"", "\"app\"")).unwrap();
    let p = path.to_str().unwrap();
    assert!(edgeward(&["check", "--config", p], &[]).0);
    let (ok, out) = edgeward(
        &["check", "--config", p],
        &[("EDGEWARD_LISTENERS__PUBLIC__LISTEN", "0.0.0.0:99999")],
    );
    assert!(!ok);
    assert!(out.contains("EDGEWARD_LISTENERS__PUBLIC__LISTEN"), "{out}");
    let (ok, out) = edgeward(
        &["check", "--config", p],
        &[("EDGEWARD_LOG__FROMAT", "json")],
    );
    assert!(!ok, "an unknown override is an error");
    assert!(out.contains("EDGEWARD_LOG__FROMAT"), "{out}");
}

#[test]
fn the_shipped_config_checks() {
    let (ok, out) = edgeward(
        &[
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/edgeward.toml"),
        ],
        &[],
    );
    assert!(ok, "{out}");
}
