//! What reloads report: the outcome of each, counts, and the `/admin/reload` documents.

use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::config::{ConfigError, ConfigErrors};

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A change to the config file or a certificate file.
    Watch,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A new snapshot (or certificate) is serving.
    Applied,
    /// The files are the ones already applied; nothing was done.
    Skipped,
    /// Nothing changed; `errors` says why.
    Failed,
}

/// One problem that stopped a reload, located like `edgeward check` locates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The config file.
    pub file: String,
    /// 1-based line in it, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `routes[2].upstream`.
    pub key: String,
    /// The `EDGEWARD_*` override the value came from, if any.
    pub env_var: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl From<&ConfigError> for Problem {
    fn from(e: &ConfigError) -> Self {
        Self {
            file: e.file.display().to_string(),
            line: e.line,
            key: e.key.clone(),
            env_var: e.env_var.clone(),
            message: e.message.clone(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of one reload, as logged and as `/admin/reload` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Applied, skipped or failed.
    pub result: Verdict,
    /// What asked for it.
    pub trigger: Trigger,
    /// The generation serving once it finished.
    pub generation: u64,
    /// When it finished, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// How long it took, from reading the file to the swap.
    pub took_us: u64,
    /// Why it failed (empty otherwise).
    pub errors: Vec<Problem>,
}

/// Reload counts, for the status page and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Reloads that swapped in something new.
    pub applied: u64,
    /// Reloads rejected (invalid file, restart-only change, unusable certificate).
    pub failed: u64,
    /// Reloads of unchanged files.
    pub skipped: u64,
}

impl Counts {
    pub(super) fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Applied => self.applied += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Skipped => self.skipped += 1,
        }
    }
}

/// Counts and the last outcome of one kind of reload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    /// Totals since start.
    #[serde(flatten)]
    pub counts: Counts,
    /// The most recent outcome.
    pub last: Option<Outcome>,
}

/// Everything `GET /admin/reload` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The generation serving now (1 at startup).
    pub generation: u64,
    /// Config reloads.
    #[serde(flatten)]
    pub config: History,
    /// Certificate file reloads (pairs re-read without a config change).
    pub certificates: History,
    /// Whether the config and certificate files are being watched.
    pub watching: bool,
    /// Replaced snapshots still held by something (a request still running on them). Streams
    /// and tunnels hold none, so this drops to 0 once in-flight requests have their heads.
    pub retained_snapshots: usize,
}

/// What a config reload answers: its outcome and, for a manual trigger, the certificate
/// files' re-read.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The config reload.
    #[serde(flatten)]
    pub config: Outcome,
    /// The certificate re-read that SIGHUP and `POST /admin/reload` also do.
    pub certificates: Option<Outcome>,
}

pub(super) fn problems(errors: &ConfigErrors) -> Vec<Problem> {
    errors.0.iter().map(Problem::from).collect()
}

pub(super) fn outcome(
    trigger: Trigger,
    result: Verdict,
    errors: Vec<Problem>,
    generation: u64,
    started: Instant,
) -> Outcome {
    Outcome {
        result,
        trigger,
        generation,
        at_unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        took_us: started.elapsed().as_micros() as u64,
        errors,
    }
}
