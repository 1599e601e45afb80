//! Hot reload: build a whole new snapshot off the request path, swap it in, retire what left.
//!
//! A [`Reloader`] owns the applied config (its file's hash, the generation, the certificate
//! files it serves) and runs one reload at a time, whatever triggered it: the file watcher
//! ([`watch`]), SIGHUP, or `POST /admin/reload`. A reload reads the file once, skips it when
//! the bytes hash as the applied ones, validates it with [`config::load_text`] (the verdict of
//! `edgeward check`), rejects changes that need a restart (`live.rs`), loads a changed
//! certificate list, builds the snapshot, and only then stores it. Anything that fails leaves
//! the running config untouched and is logged with file, line and key, counted, and kept as the
//! last outcome.
//!
//! Requests in flight keep the snapshot they loaded; connections never notice. Replicas are
//! shared between snapshots through the registry, so pools and counters carry over, and a
//! replica no snapshot uses any more is dropped once its last request ends. A route that
//! disappears has its tunnels closed after `reload.removed_route_grace`.

mod certs;
mod live;
mod outcome;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigErrors};
use crate::metrics::ReloadOutcome;
use crate::service::Shared;
use crate::snapshot::{RouteId, RouteLife, Snapshot};

pub use certs::{CertSlot, load_all as load_certificates, publish as publish_certificates};
pub use outcome::{Answer, Counts, History, Outcome, Problem, Report, Trigger, Verdict};

use outcome::{outcome, problems};

/// Where the running config came from: the path reloads read and the hash of the bytes the
/// gateway started with.
#[derive(Debug, Clone)]
pub struct Source {
    /// As given on the command line.
    pub path: PathBuf,
    /// Hash of the file's bytes.
    pub hash: u64,
    /// The text itself, to locate later errors in.
    pub text: String,
}

/// Reads and validates the config file for startup, remembering the hash of exactly the bytes
/// that were validated (a change right after startup must not be mistaken for the applied
/// file).
pub fn load_initial(path: &Path) -> Result<(Config, Source), ConfigErrors> {
    let text = config::read(path)?;
    let config = config::load_text(&text, path)?;
    let source = Source {
        path: path.to_path_buf(),
        hash: hash(text.as_bytes()),
        text,
    };
    Ok((config, source))
}

/// A collision only makes one reload be skipped; `DefaultHasher::new()` is the same in every
/// call within a process, which is all that is compared.
fn hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The applied state; its lock is held for a whole reload, so reloads never interleave.
struct Applied {
    hash: u64,
    text: String,
    config: Arc<Config>,
    generation: u64,
    certs: Vec<CertSlot>,
    /// Routes removed by a reload whose grace has not ended, with the generation that
    /// removed them; a later snapshot that has the route again adopts its life.
    removed: HashMap<RouteId, (RouteLife, u64)>,
}

#[derive(Default)]
struct Status {
    config: History,
    certificates: History,
    retired: Vec<Weak<Snapshot>>,
}

/// Owns the applied config and runs reloads one at a time.
pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    applied: tokio::sync::Mutex<Applied>,
    status: Mutex<Status>,
    watching: AtomicBool,
    /// Whether any listener terminates TLS (fixed: listeners do not change live).
    tls: bool,
}

impl Reloader {
    /// The reloader for a gateway started from `source` with `config`, serving `certs`.
    pub fn new(
        source: Source,
        config: Arc<Config>,
        certs: Vec<CertSlot>,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let generation = shared.snapshot.load().generation;
        Arc::new(Self {
            path: source.path,
            tls: config.listeners.iter().any(|l| l.tls),
            applied: tokio::sync::Mutex::new(Applied {
                hash: source.hash,
                text: source.text,
                config,
                generation,
                certs,
                removed: HashMap::new(),
            }),
            shared,
            status: Mutex::new(Status::default()),
            watching: AtomicBool::new(false),
        })
    }

    /// The config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state shared with the data plane.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reloads the config file. SIGHUP and the admin endpoint also re-read the certificate
    /// files, so a renewed certificate can be picked up without a watcher.
    pub async fn reload(self: &Arc<Self>, trigger: Trigger) -> Answer {
        let started = Instant::now();
        let mut applied = self.applied.lock().await;
        let (result, errors) = match self.apply(&mut applied).await {
            Ok(verdict) => (verdict, Vec::new()),
            Err(errors) => (Verdict::Failed, errors),
        };
        let config = self.finish(trigger, result, errors, applied.generation, started);
        let certificates = (trigger != Trigger::Watch && result != Verdict::Failed)
            .then(|| self.refresh_locked(&mut applied, trigger, Instant::now()));
        Answer {
            config,
            certificates,
        }
    }

    /// Re-reads the certificate files of the applied config: pairs whose bytes changed are
    /// loaded and served to new handshakes at once; a broken pair keeps its previous
    /// certificate and is reported.
    pub async fn reload_certificates(self: &Arc<Self>, trigger: Trigger) -> Outcome {
        let started = Instant::now();
        let mut applied = self.applied.lock().await;
        self.refresh_locked(&mut applied, trigger, started)
    }

    fn refresh_locked(&self, applied: &mut Applied, trigger: Trigger, started: Instant) -> Outcome {
        let refresh = certs::refresh(&applied.certs);
        if refresh.changed {
            certs::publish(&self.shared.certs, &refresh.slots);
            applied.certs = refresh.slots;
        }
        let errors: Vec<Problem> = refresh
            .broken
            .iter()
            .map(|(i, err)| self.cert_problem(&applied.text, *i, err))
            .collect();
        let result = match (errors.is_empty(), refresh.changed) {
            (false, _) => Verdict::Failed,
            (true, true) => Verdict::Applied,
            (true, false) => Verdict::Skipped,
        };
        let outcome = outcome(trigger, result, errors, applied.generation, started);
        match result {
            Verdict::Applied => tracing::info!(trigger = ?trigger, "certificates reloaded"),
            Verdict::Skipped => tracing::debug!(trigger = ?trigger, "certificate files unchanged"),
            Verdict::Failed => {
                for e in &outcome.errors {
                    tracing::error!(
                        "certificate reload failed; the previous certificate is kept: {e}"
                    );
                }
            }
        }
        let mut status = self.lock_status();
        status.certificates.counts.count(result);
        status.certificates.last = Some(outcome.clone());
        outcome
    }

    /// Reads, checks, builds and swaps. `Err` leaves everything as it was.
    async fn apply(self: &Arc<Self>, applied: &mut Applied) -> Result<Verdict, Vec<Problem>> {
        let path = self.path.clone();
        let text = tokio::task::spawn_blocking(move || config::read(&path))
            .await
            .map_err(|join| vec![self.problem("", format!("reading the file failed: {join}"))])?
            .map_err(|errors| problems(&errors))?;
        let hash = hash(text.as_bytes());
        if hash == applied.hash {
            return Ok(Verdict::Skipped);
        }
        let mut config = config::load_text(&text, &self.path).map_err(|e| problems(&e))?;
        let restart = live::restart_only_changes(&applied.config, &config, &text, &self.path);
        if !restart.is_empty() {
            return Err(restart.iter().map(Problem::from).collect());
        }
        live::align_listeners(&applied.config, &mut config);
        let new_certs = self.certificates_for(applied, &config, &text)?;

        let config = Arc::new(config);
        let generation = applied.generation + 1;
        let mut next = Snapshot::build(
            Arc::clone(&config),
            &self.shared.registry,
            &self.shared.limiters,
            generation,
        )
        .await
        .map_err(|e| vec![self.problem("upstreams", e.to_string())])?;
        let previous = self.shared.snapshot.load_full();
        next.adopt_route_lives(|id| {
            previous
                .route_lives
                .get(&id)
                .or_else(|| applied.removed.get(&id).map(|(life, _)| life))
                .cloned()
        });
        applied
            .removed
            .retain(|id, _| !next.route_lives.contains_key(id));
        let gone = next.routes_gone(&previous);
        let routes = next.route_lives.len();
        let upstreams = next.upstreams.len();

        let next = Arc::new(next);
        self.shared.snapshot.store(Arc::clone(&next));
        // Replicas that left are drained, not cut: no new requests, in-flight ones finish.
        next.retire_replaced(&previous);
        if let Some(new_certs) = new_certs {
            match new_certs {
                NewCerts::Files(slots) => {
                    certs::publish(&self.shared.certs, &slots);
                    applied.certs = slots;
                }
                NewCerts::SelfSigned(cert) => {
                    self.shared.certs.set_self_signed(cert);
                    self.shared.certs.set_files(Vec::new());
                    applied.certs = Vec::new();
                }
            }
        }
        self.retire(
            applied,
            previous,
            gone,
            generation,
            config.reload.removed_route_grace,
        );
        tracing::info!(generation, routes, upstreams, "config reloaded");

        applied.hash = hash;
        applied.text = text;
        applied.config = config;
        applied.generation = generation;
        Ok(Verdict::Applied)
    }

    /// Loads the certificate list of `config` when it differs from the applied one (TLS
    /// listeners only, as at startup). `Ok(None)`: keep what is served.
    fn certificates_for(
        &self,
        applied: &Applied,
        config: &Config,
        text: &str,
    ) -> Result<Option<NewCerts>, Vec<Problem>> {
        let files = &config.tls.certificates;
        if !self.tls || certs::same_list(&applied.config.tls.certificates, files) {
            return Ok(None);
        }
        if files.is_empty() {
            return certs::self_signed(config)
                .map(|cert| Some(NewCerts::SelfSigned(cert)))
                .map_err(|e| vec![self.problem("tls.self_signed_dir", e.to_string())]);
        }
        certs::load_all(files)
            .map(|slots| Some(NewCerts::Files(slots)))
            .map_err(|(i, e)| vec![self.cert_problem(text, i, &e)])
    }

    /// Hands what the new snapshot no longer uses to whoever retires it. Replicas need nothing
    /// here: the registry holds them weakly, so a replica no snapshot uses is dropped (and its
    /// idle connections closed) when its last in-flight request ends. Removed routes get their
    /// grace, then their tunnels are closed. Per-replica tasks (health probes) and keyed
    /// state (limiters) that must stop when their owner leaves are retired here as well.
    fn retire(
        self: &Arc<Self>,
        applied: &mut Applied,
        previous: Arc<Snapshot>,
        gone: Vec<(RouteId, RouteLife)>,
        generation: u64,
        grace: Duration,
    ) {
        for (id, life) in gone {
            tracing::info!(
                route = %life.name,
                grace_s = grace.as_secs_f64(),
                "route removed; its WebSockets close after the grace period"
            );
            applied.removed.insert(id, (life, generation));
            let this = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let mut applied = this.applied.lock().await;
                // A later reload that brought the route back adopted its life; one that
                // removed it again started its own grace.
                if applied
                    .removed
                    .get(&id)
                    .is_some_and(|(_, removed_at)| *removed_at == generation)
                {
                    if let Some((life, _)) = applied.removed.remove(&id) {
                        tracing::info!(route = %life.name, "closing the WebSockets of a removed route");
                        life.removed.cancel();
                    }
                }
            });
        }
        let mut status = self.lock_status();
        status.retired.retain(|w| w.strong_count() > 0);
        status.retired.push(Arc::downgrade(&previous));
    }

    fn finish(
        &self,
        trigger: Trigger,
        result: Verdict,
        errors: Vec<Problem>,
        generation: u64,
        started: Instant,
    ) -> Outcome {
        let outcome = outcome(trigger, result, errors, generation, started);
        match result {
            Verdict::Applied => {}
            Verdict::Skipped => {
                tracing::debug!(trigger = ?trigger, "config file unchanged; reload skipped")
            }
            Verdict::Failed => {
                for e in &outcome.errors {
                    tracing::error!(
                        trigger = ?trigger,
                        "config reload rejected; the running config is kept: {e}"
                    );
                }
            }
        }
        // A skipped reload (same bytes) is no reload: metrics count applied and failed ones.
        let metrics = &self.shared.metrics;
        match result {
            Verdict::Applied => metrics.record_reload(ReloadOutcome::Applied, None),
            Verdict::Failed => metrics.record_reload(
                ReloadOutcome::Failed,
                outcome.errors.first().map(ToString::to_string),
            ),
            Verdict::Skipped => {}
        }
        let mut status = self.lock_status();
        status.config.counts.count(result);
        status.config.last = Some(outcome.clone());
        outcome
    }

    /// What `GET /admin/reload` shows.
    pub fn report(&self) -> Report {
        let mut status = self.lock_status();
        status.retired.retain(|w| w.strong_count() > 0);
        Report {
            generation: self.shared.snapshot.load().generation,
            config: status.config.clone(),
            certificates: status.certificates.clone(),
            watching: self.watching.load(Ordering::Relaxed),
            retained_snapshots: status.retired.len(),
        }
    }

    /// Config reload counts, for metrics.
    pub fn counts(&self) -> Counts {
        self.lock_status().config.counts
    }

    /// Certificate reload counts, for metrics.
    pub fn certificate_counts(&self) -> Counts {
        self.lock_status().certificates.counts
    }

    fn set_watching(&self, on: bool) {
        self.watching.store(on, Ordering::Relaxed);
    }

    fn problem(&self, key: &str, message: String) -> Problem {
        Problem {
            file: self.path.display().to_string(),
            line: None,
            key: key.to_owned(),
            env_var: None,
            message,
        }
    }

    fn cert_problem(&self, text: &str, index: usize, err: &crate::tls::TlsError) -> Problem {
        let key = format!("tls.certificates[{index}]");
        Problem {
            line: config::line_of_key(text, &key),
            ..self.problem(&key, err.to_string())
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, Status> {
        // Every field is replaced whole; a panic elsewhere cannot leave it half-written.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

enum NewCerts {
    Files(Vec<CertSlot>),
    SelfSigned(crate::tls::LoadedCert),
}

/// Reloads on every SIGHUP until `stop`.
pub async fn on_hangup(reloader: Arc<Reloader>, mut hangup: Signal, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading");
                reloader.reload(Trigger::Signal).await;
            }
        }
    }
}
