//! Tests for config loading: units, defaults, error reporting, routes, the environment, and
//! the reference table.

use std::path::Path;

use super::{Config, ConfigError, parse};

mod acme;
mod defaults;
mod env;
mod errors;
mod limits;
mod reference;
mod robust;
mod routes;
mod statics;
mod units;

/// Where test configs pretend to live; relative paths resolve against `/etc/edgeward`.
const FILE: &str = "/etc/edgeward/edgeward.toml";

/// One listener: the smallest valid file.
const LISTENER: &str = "[listeners.public]\nlisten = \"127.0.0.1:0\"\n";

fn no_env(_: &str) -> Option<String> {
    None
}

/// An environment lookup over fixed pairs.
fn fake_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn parse_ok(text: &str) -> Config {
    parse_ok_env(text, &no_env)
}

fn parse_ok_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    match parse(text, Path::new(FILE), env) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}\n--- config ---\n{text}"),
    }
}

fn parse_errors(text: &str) -> Vec<ConfigError> {
    parse_errors_env(text, &no_env)
}

fn parse_errors_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    match parse(text, Path::new(FILE), env) {
        Ok(_) => panic!("expected errors, config was accepted:\n{text}"),
        Err(errors) => errors.0,
    }
}

/// The single error a config produces.
fn one_error(text: &str) -> ConfigError {
    let errors = parse_errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got: {errors:#?}");
    errors.into_iter().next().expect("one error")
}

/// Asserts an error's key and line, and that its message contains `needle`.
#[track_caller]
fn assert_error(error: &ConfigError, key: &str, line: usize, needle: &str) {
    assert_eq!(error.key, key, "key of {error:?}");
    assert_eq!(error.line, Some(line), "line of {error:?}");
    assert!(
        error.message.contains(needle),
        "message of {error:?} should contain {needle:?}"
    );
}
