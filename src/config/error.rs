//! Config errors and the collector that turns spans into line numbers or variable names.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, as given to the loader.
    pub file: PathBuf,
    /// 1-based line of the offending value, when it came from the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `routes[2].upstream` or `listeners.public.listen`. Array indices
    /// count from 0 in file order.
    pub key: String,
    /// Set when the bad value came from an `EDGEWARD_*` override.
    pub env_var: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(var) = &self.env_var {
            return write!(f, "{var} (overrides {}): {}", self.key, self.message);
        }
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one load, in file order (line-less ones last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors during one load.
///
/// Values injected from `EDGEWARD_*` overrides carry made-up spans past the end of the text
/// (`text.len() + 1 + i` for the i-th override), so every stage can report a span and this
/// one place decides whether it means a line or a variable.
pub(crate) struct Diag<'a> {
    file: &'a Path,
    text: &'a str,
    override_vars: Vec<String>,
    /// Values already reported as unusable (e.g. a failed `${VAR}`): later stages would only
    /// repeat the problem in other words, so their errors about these spans are dropped.
    poisoned: Vec<Range<usize>>,
    errors: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            override_vars: Vec::new(),
            poisoned: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Registers an override variable and returns the span its injected value carries.
    pub(crate) fn override_span(&mut self, var: &str) -> Range<usize> {
        let start = self.text.len() + 1 + self.override_vars.len();
        self.override_vars.push(var.to_owned());
        start..start + 1
    }

    /// Records an error about `key`, located by `span` (a line in the file, or an override).
    pub(crate) fn error(
        &mut self,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        if span.as_ref().is_some_and(|s| self.poisoned.contains(s)) {
            return;
        }
        let (line, env_var) = match span {
            Some(span) if span.start > self.text.len() => {
                let index = span.start - self.text.len() - 1;
                (None, self.override_vars.get(index).cloned())
            }
            Some(span) => (Some(line_of(self.text, span.start)), None),
            None => (None, None),
        };
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            key: key.into(),
            env_var,
            message: message.into(),
        });
    }

    /// Records an error about a value and drops any later error about the same value.
    pub(crate) fn error_poison(
        &mut self,
        key: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) {
        self.error(key, Some(span.clone()), message);
        self.poisoned.push(span);
    }

    /// Records an error about an override variable itself.
    pub(crate) fn env_error(
        &mut self,
        var: &str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: None,
            key: key.into(),
            env_var: Some(var.to_owned()),
            message: message.into(),
        });
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The collected errors, sorted by line; errors without a line keep their order, last.
    pub(crate) fn into_errors(mut self) -> ConfigErrors {
        self.errors
            .sort_by_key(|e| (e.line.is_none(), e.line.unwrap_or(0)));
        ConfigErrors(self.errors)
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
