//! Validation of a route's `static = { ... }` action: the root directory, the index name,
//! immutable patterns and the two `Cache-Control` values.

use http::HeaderValue;
use toml::Spanned;

use super::fields::Ctx;
use super::model::{Action, StaticConfig};
use super::raw::RawStatic;

/// The `Cache-Control` hashed names get unless the route overrides it.
const HASHED_DEFAULT: &str = "public, max-age=31536000, immutable";

pub(crate) fn static_action(
    key: &str,
    files: &Spanned<RawStatic>,
    ctx: &mut Ctx<'_, '_>,
) -> Option<Action> {
    let raw = files.get_ref();
    let k = |field: &str| format!("{key}.{field}");
    let errors_before = ctx.diag.error_count();
    let root = match &raw.root {
        None => {
            let message = "missing root (the directory to serve, e.g. \"dist\")";
            ctx.diag.error(key, Some(files.span()), message);
            None
        }
        Some(root) => {
            let path = ctx.base_dir.join(root.get_ref());
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => Some(path),
                Ok(_) => {
                    let message = format!("{} is not a directory", path.display());
                    ctx.diag.error(k("root"), Some(root.span()), message);
                    None
                }
                Err(e) => {
                    let message = format!("cannot use {}: {e}", path.display());
                    ctx.diag.error(k("root"), Some(root.span()), message);
                    None
                }
            }
        }
    };
    let index = match &raw.index {
        None => "index.html".to_owned(),
        Some(index) => {
            let name = index.get_ref();
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
                let message = format!("index must be a plain file name, got {name:?}");
                ctx.diag.error(k("index"), Some(index.span()), message);
            }
            name.clone()
        }
    };
    let mut immutable_patterns = Vec::new();
    for (i, pattern) in raw.immutable_patterns.iter().flatten().enumerate() {
        let text = pattern.get_ref();
        let trimmed = text.trim_start_matches('/');
        if trimmed.is_empty() || trimmed.split('/').any(|s| s.is_empty() || s == "..") {
            let message = format!(
                "invalid pattern {text:?}: expected a file name or path below root, where * matches any characters except /, e.g. \"*.woff2\" or \"fonts/*\""
            );
            ctx.diag.error(
                format!("{}[{i}]", k("immutable_patterns")),
                Some(pattern.span()),
                message,
            );
            continue;
        }
        immutable_patterns.push(trimmed.to_owned());
    }
    let cache_control =
        |field: &str, value: &Option<Spanned<String>>, default, ctx: &mut Ctx<'_, '_>| {
            value
                .as_ref()
                .and_then(|v| ctx.header_value(&k(field), v))
                .unwrap_or_else(|| HeaderValue::from_static(default))
        };
    let cache_control_hashed = cache_control(
        "cache_control_hashed",
        &raw.cache_control_hashed,
        HASHED_DEFAULT,
        ctx,
    );
    let cache_control_other = cache_control(
        "cache_control_other",
        &raw.cache_control_other,
        "no-cache",
        ctx,
    );
    if ctx.diag.error_count() != errors_before {
        return None;
    }
    Some(Action::Static(StaticConfig {
        root: root?,
        index,
        spa_fallback: ctx.bool(&raw.spa_fallback, false),
        serve_hidden: ctx.bool(&raw.serve_hidden, false),
        follow_symlinks_outside: ctx.bool(&raw.follow_symlinks_outside, false),
        immutable_patterns,
        cache_control_hashed,
        cache_control_other,
        compress: ctx.bool(&raw.compress, true),
    }))
}
