//! Configuration: loading the TOML file, environment overrides, validation, and the validated
//! model.
//!
//! Loading goes through three stages, each in its own file:
//!
//! 1. parse the text into toml's spanned document tree; expand `${VAR}` in string values and
//!    write `EDGEWARD_*` overrides into the tree (`env.rs`);
//! 2. deserialize each section into raw serde types that mirror the file (`raw.rs`);
//! 3. check every value and apply defaults, producing [`Config`] (`validate.rs`,
//!    `validate_routes.rs`, with typed field access in `fields.rs`).
//!
//! Every stage records problems instead of stopping, so one run reports all of them (only a
//! syntax error stops early). `keys.rs` lists the overridable keys for the environment and the
//! reference table in `docs/configuration.md`.

mod env;
mod error;
mod fields;
mod keys;
mod model;
mod model_acme;
mod raw;
mod units;
mod validate;
mod validate_acme;
mod validate_limits;
mod validate_routes;
mod validate_static;
mod validate_upstream;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use keys::reference_table;
pub use model::*;
pub use model_acme::*;

use error::Diag;
use toml::de::DeTable;

/// Read, parse and validate; collects every problem it can find (not just the first).
///
/// Uses the process environment for `${VAR}` and `EDGEWARD_*` overrides, and reports
/// `EDGEWARD_*__*` variables that name no setting.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_text(&read(path)?, path)
}

/// [`load`] for text already read from `path` (a reload hashes the bytes it validates, so it
/// reads the file once). Gives the same verdict as [`load`] on the same bytes.
pub fn load_text(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let present: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("EDGEWARD_"))
        .collect();
    let lookup = |name: &str| std::env::var(name).ok();
    parse_inner(text, path, &lookup, Some(&present))
}

/// [`load`] with a given environment lookup instead of the process environment.
///
/// A lookup cannot list variables, so misspelt override names are not reported; use
/// [`parse_with_vars`] for that.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = read(path)?;
    parse_inner(&text, path, env, None)
}

/// Parses and validates config text. `path` names the file in errors, and its directory is
/// where relative paths in the text are resolved.
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    parse_inner(text, path, env, None)
}

/// [`parse`] with the environment given as a complete list of variables, so that `EDGEWARD_*`
/// variables naming no setting are reported as they are by [`load`].
pub fn parse_with_vars(
    text: &str,
    path: &Path,
    vars: &[(String, String)],
) -> Result<Config, ConfigErrors> {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let present: Vec<String> = vars.iter().map(|(key, _)| key.clone()).collect();
    parse_inner(text, path, &lookup, Some(&present))
}

/// Reads a config file; the error names the file as [`load`]'s do.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            env_var: None,
            message: format!("cannot read config file: {e}"),
        }])
    })
}

/// The 1-based line where a dotted key path (`listeners.public.listen`,
/// `tls.certificates[1].cert`) is written in `text`, or of its nearest written parent.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let tree = DeTable::parse(text).ok()?;
    let mut table = tree.get_ref();
    let mut found = None;
    for segment in key.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((k, value)) = table.get_key_value(name) else {
            break;
        };
        found = Some(k.span().start);
        let value = match (index, value.get_ref()) {
            (Some(i), toml::de::DeValue::Array(items)) => match items.get(i) {
                Some(item) => {
                    found = Some(item.span().start);
                    item
                }
                None => break,
            },
            _ => value,
        };
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found.map(|offset| error::line_of(text, offset))
}

fn parse_inner(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    present: Option<&[String]>,
) -> Result<Config, ConfigErrors> {
    let mut diag = Diag::new(path, text);
    let (tree, syntax_errors) = DeTable::parse_recoverable(text);
    // Recovery after a syntax error produces follow-on errors that only confuse; the first
    // one is the one to fix.
    if let Some(first) = syntax_errors
        .iter()
        .min_by_key(|e| e.span().map_or(0, |s| s.start))
    {
        diag.error("", first.span(), first.message());
        return Err(diag.into_errors());
    }
    let mut tree = tree.into_inner();
    env::expand(&mut tree, "", env, &mut diag);
    let overrides = env::find_overrides(&tree, env, present, &mut diag);
    env::inject(&mut tree, &overrides, &mut diag);

    let raw = raw::read(tree, &mut diag);
    let mut ctx = fields::Ctx {
        diag: &mut diag,
        base_dir: fields::base_dir(path),
    };
    let config = validate::validate(raw, &mut ctx);
    if diag.error_count() > 0 {
        return Err(diag.into_errors());
    }
    Ok(config)
}
