//! The environment's two ways into the config: `${VAR}` in string values, and `EDGEWARD_*`
//! variables that override scalar keys.
//!
//! Both work on the parsed document tree before it is deserialized, so an overridden value goes
//! through exactly the same type checks and validation as one written in the file.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::Diag;
use super::keys::{KEYS, Kind, env_var_for};

/// Looks up one environment variable.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Prefix of every override variable.
const PREFIX: &str = "EDGEWARD_";

/// Replaces `${VAR}` and `${VAR:-default}` in every string value of the tree.
pub(crate) fn expand(table: &mut DeTable<'_>, path: &str, env: Lookup<'_>, diag: &mut Diag<'_>) {
    for (key, value) in table.iter_mut() {
        let child = join(path, key.get_ref());
        expand_value(value, &child, env, diag);
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    env: Lookup<'_>,
    diag: &mut Diag<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) if text.contains("${") => match expand_str(text, env) {
            Ok(expanded) => *text = Cow::Owned(expanded),
            Err(message) => diag.error_poison(path, span, message),
        },
        DeValue::Array(array) => {
            for (index, item) in array.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{index}]"), env, diag);
            }
        }
        DeValue::Table(table) => expand(table, path, env, diag),
        _ => {}
    }
}

/// Expands one string. Only `${...}` is special; a lone `$` is kept as is. As in the shell,
/// `${VAR:-default}` also uses the default when `VAR` is set but empty.
pub(crate) fn expand_str(text: &str, env: Lookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated \"${\": write ${NAME} or ${NAME:-default}".to_owned())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_var_name(name) {
            return Err(format!(
                "invalid variable name {name:?} in \"${{{inner}}}\": use letters, digits and _"
            ));
        }
        match (env(name), default) {
            (Some(value), None) => out.push_str(&value),
            (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
            (_, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One override found in the environment.
#[derive(Debug)]
pub(crate) struct Override {
    pub(crate) var: String,
    /// The concrete key path segments, e.g. `["listeners", "public", "listen"]`.
    pub(crate) segments: Vec<String>,
    pub(crate) kind: Kind,
    pub(crate) value: String,
}

impl Override {
    fn key(&self) -> String {
        self.segments.join(".")
    }
}

/// Finds the override variables that apply to this file. `present` lists the `EDGEWARD_*`
/// variable names when the caller can enumerate the environment; those that look like
/// overrides (contain `__`) but name no setting are reported.
pub(crate) fn find_overrides(
    tree: &DeTable<'_>,
    env: Lookup<'_>,
    present: Option<&[String]>,
    diag: &mut Diag<'_>,
) -> Vec<Override> {
    // Variable name -> the concrete keys it could mean (more than one only when two upstream
    // names differ just by `-` and `_`).
    let mut candidates: BTreeMap<String, Vec<(Vec<String>, Kind)>> = BTreeMap::new();
    let mut aliases: BTreeMap<&str, String> = BTreeMap::new();
    for info in KEYS {
        let pattern: Vec<&str> = info.path.split('.').collect();
        for segments in concrete_paths(tree, &pattern) {
            let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            let var = env_var_for(&refs);
            if let Some(alias) = info.alias {
                aliases.insert(alias, var.clone());
            }
            candidates
                .entry(var)
                .or_default()
                .push((segments, info.kind));
        }
    }

    let mut found = Vec::new();
    for (var, keys) in &candidates {
        let alias = aliases
            .iter()
            .find(|(_, canonical)| *canonical == var)
            .map(|(a, _)| *a);
        // Which variable supplied the value (the full name or its shorthand), and the value.
        let (source, value) = match (env(var), alias.and_then(|a| env(a).map(|v| (a, v)))) {
            (Some(_), Some((alias, _))) => {
                diag.env_error(
                    var,
                    keys[0].0.join("."),
                    format!("also set as {alias}; set only one"),
                );
                continue;
            }
            (Some(value), None) => (var.clone(), value),
            (None, Some((alias, value))) => (alias.to_owned(), value),
            (None, None) => continue,
        };
        if let [(segments, kind)] = keys.as_slice() {
            found.push(Override {
                var: source,
                segments: segments.clone(),
                kind: *kind,
                value,
            });
        } else {
            let names: Vec<String> = keys.iter().map(|(s, _)| s.join(".")).collect();
            diag.env_error(
                &source,
                names[0].clone(),
                format!("ambiguous: matches {}", names.join(", ")),
            );
        }
    }

    for var in present.unwrap_or_default() {
        let known = candidates.contains_key(var) || aliases.contains_key(var.as_str());
        if var.starts_with(PREFIX) && var.contains("__") && !known {
            report_unknown(var, diag);
        }
    }
    found
}

/// Every concrete path for a key pattern: `<name>` is replaced by each table name present in
/// the file at that position.
fn concrete_paths(tree: &DeTable<'_>, pattern: &[&str]) -> Vec<Vec<String>> {
    let Some(hole) = pattern.iter().position(|s| *s == "<name>") else {
        return vec![pattern.iter().map(|s| (*s).to_owned()).collect()];
    };
    let mut table = tree;
    for segment in &pattern[..hole] {
        match table.get(*segment).map(|v| v.get_ref()) {
            Some(DeValue::Table(inner)) => table = inner,
            _ => return Vec::new(),
        }
    }
    table
        .keys()
        .map(|name| {
            let mut path: Vec<String> = pattern.iter().map(|s| (*s).to_owned()).collect();
            path[hole] = name.get_ref().to_string();
            path
        })
        .collect()
}

fn report_unknown(var: &str, diag: &mut Diag<'_>) {
    let segments: Vec<String> = var[PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let key = segments.join(".");
    let names_table = KEYS.iter().any(|info| {
        let pattern: Vec<&str> = info.path.split('.').collect();
        pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| *p == "<name>" || p == s)
    });
    let message = if names_table {
        format!(
            "there is no [{}.{}] in the config file; overrides only apply to tables defined there",
            segments[0], segments[1]
        )
    } else {
        "no such setting (see the reference table in docs/configuration.md)".to_owned()
    };
    diag.env_error(var, key, message);
}

/// Writes the overrides into the tree, typed by their key's kind, creating missing tables.
pub(crate) fn inject<'a>(tree: &mut DeTable<'a>, overrides: &'a [Override], diag: &mut Diag<'_>) {
    for entry in overrides {
        let Some(value) = typed_value(entry, diag) else {
            continue;
        };
        let span = diag.override_span(&entry.var);
        insert_at(tree, &entry.segments, value, span);
    }
}

/// Inserts `value` at `path`, creating tables on the way. A path through a non-table value is
/// left alone: reading that section reports the problem.
fn insert_at<'a>(table: &mut DeTable<'a>, path: &[String], value: DeValue<'a>, span: Range<usize>) {
    let key = |name: &String| Spanned::new(span.clone(), Cow::Owned(name.clone()));
    match path {
        [] => {}
        [last] => {
            table.insert(key(last), Spanned::new(span.clone(), value));
        }
        [first, rest @ ..] => {
            let slot = table
                .entry(key(first))
                .or_insert_with(|| Spanned::new(span.clone(), DeValue::Table(DeTable::new())));
            if let DeValue::Table(inner) = slot.get_mut() {
                insert_at(inner, rest, value, span);
            }
        }
    }
}

/// The override's value as the tree value its key's type calls for.
fn typed_value<'a>(entry: &'a Override, diag: &mut Diag<'_>) -> Option<DeValue<'a>> {
    let text = entry.value.trim();
    let integer = || {
        text.parse::<i64>()
            .ok()
            .and_then(|_| DeValue::parse(text).ok())
            .map(Spanned::into_inner)
            .filter(DeValue::is_integer)
    };
    match entry.kind {
        Kind::Bool => match text {
            "true" => Some(DeValue::Boolean(true)),
            "false" => Some(DeValue::Boolean(false)),
            _ => {
                let message = format!("expected true or false, got {:?}", entry.value);
                diag.env_error(&entry.var, entry.key(), message);
                None
            }
        },
        Kind::Int => integer().or_else(|| {
            let message = format!("expected an integer, got {:?}", entry.value);
            diag.env_error(&entry.var, entry.key(), message);
            None
        }),
        Kind::Size => integer().or_else(|| Some(DeValue::String(Cow::Borrowed(&entry.value)))),
        Kind::Fraction => DeValue::parse(text)
            .ok()
            .map(Spanned::into_inner)
            .filter(|v| v.is_float() || v.is_integer())
            .or_else(|| Some(DeValue::String(Cow::Borrowed(&entry.value)))),
        Kind::Str
        | Kind::Url
        | Kind::Duration
        | Kind::DurationOrOff
        | Kind::Addr
        | Kind::Path
        | Kind::Rate
        | Kind::LimitKey
        | Kind::RedisUrl
        | Kind::Choice(_) => Some(DeValue::String(Cow::Borrowed(&entry.value))),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
