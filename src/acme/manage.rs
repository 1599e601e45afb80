//! One task per certificate set: load what the store has, renew when due, wait while another
//! replica holds the lock, back off after failures. A served certificate is only ever
//! replaced by a newer one, never dropped because an attempt failed.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use httpdate::fmt_http_date;
use instant_acme::CertificateIdentifier;
use rustls::pki_types::Der;

use super::renew::{self, RetryState};
use super::store::{Lease, Locked, Store};
use super::{CertState, Inner, Status, order, short_hash};
use crate::config;
use crate::tls::{self, CertSource};

/// How long a lock lasts without renewal; the holder renews it every third of this.
pub(crate) const LEASE: Duration = Duration::from_secs(60);

/// How often a replica waiting on another's lock looks for the result.
pub(crate) fn wait_poll(config: &config::Acme) -> Duration {
    config.check_interval.min(Duration::from_secs(2))
}

/// What is being served for this set.
struct Current {
    serial_hex: String,
    not_after: SystemTime,
    renew_at: SystemTime,
    /// The served certificate covers every configured name.
    complete: bool,
    /// How the CA's renewal information (ARI) names this certificate; `None` when the
    /// certificate has no authority key id or the CA offers no ARI.
    ari_id: Option<CertificateIdentifier<'static>>,
    /// When to ask the CA for renewal information next.
    ari_next: SystemTime,
    /// Where in the CA's suggested window this replica renews, in [0, 1).
    ari_pick: f64,
    /// The CA answered with a window: the renewal order names this certificate as replaced.
    ari_known: bool,
}

/// The storage keys and names of one set.
struct Set {
    names: Vec<String>,
    bundle_key: String,
    retry_key: String,
    lock_name: String,
}

impl Set {
    fn new(names: &[String]) -> Self {
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        let first = names.first().map_or("set", String::as_str);
        let id = format!("{first}-{}", &short_hash(sorted.join(",").as_bytes())[..8]);
        Self {
            names: names.to_vec(),
            bundle_key: format!("certs/{id}/bundle.pem"),
            retry_key: format!("certs/{id}/retry.json"),
            lock_name: format!("cert-{id}"),
        }
    }
}

/// Runs forever (until the process ends) for `inner.config.certificates[index]`.
pub(crate) async fn run(inner: Arc<Inner>, index: usize) {
    let set = Set::new(&inner.config.certificates[index].names);
    let mut task = Task {
        inner,
        index,
        set,
        current: None,
        last_holder: None,
        announced_wait: None,
        store_down: false,
    };
    task.pick_up_stored().await;
    if task.current.is_none() {
        tracing::info!(names = ?task.set.names, "ACME certificate pending; the fallback certificate serves its names meanwhile");
    }
    loop {
        let wait = task.step().await;
        tokio::time::sleep(wait).await;
    }
}

struct Task {
    inner: Arc<Inner>,
    index: usize,
    set: Set,
    current: Option<Current>,
    /// The other replica last seen holding the lock, so its name is logged once.
    last_holder: Option<String>,
    /// The retry time last logged, so a waiting replica logs it once.
    announced_wait: Option<u64>,
    /// The store failed last time, so its recovery is logged (and the failure only once).
    store_down: bool,
}

impl Task {
    /// One look at the set; returns how long to wait before the next.
    async fn step(&mut self) -> Duration {
        let inner = Arc::clone(&self.inner);
        let config = &inner.config;
        self.pick_up_stored().await;
        self.check_ari().await;
        let now = SystemTime::now();
        let due = match &self.current {
            None => true,
            Some(c) => !c.complete || now >= c.renew_at,
        };
        if !due {
            let renew_at = self.current.as_ref().map(|c| c.renew_at);
            self.update(|s| {
                s.status = Status::Valid;
                s.next_attempt = renew_at;
            });
            return until(renew_at.unwrap_or(now), config.check_interval);
        }
        if let Some(wait) = self.blocked_by_retry(now).await {
            return wait;
        }
        let lease = match self.inner.store.lock(&self.set.lock_name, LEASE).await {
            Ok(Locked::Acquired(lease)) => lease,
            Ok(Locked::Held { holder }) => {
                if self.last_holder.as_deref() != Some(holder.as_str()) {
                    tracing::info!(names = ?self.set.names, holder, "another replica holds the ACME lock; waiting for its certificate");
                    self.last_holder = Some(holder);
                }
                return wait_poll(config);
            }
            Err(err) => {
                if !self.store_down {
                    tracing::warn!(names = ?self.set.names, "ACME store unavailable; retrying: {err}");
                    self.store_down = true;
                }
                return wait_poll(config).max(Duration::from_secs(1));
            }
        };
        if self.store_down {
            tracing::info!(names = ?self.set.names, "ACME store available again");
            self.store_down = false;
        }
        self.last_holder = None;
        let wait = self.with_lock(&lease).await;
        if let Err(err) = self.inner.store.release(&lease).await {
            tracing::debug!("cannot release the ACME lock: {err}");
        }
        wait
    }

    /// Holding the lock: check the store once more, then order.
    async fn with_lock(&mut self, lease: &Lease) -> Duration {
        // Another replica may have finished just before we got the lock.
        self.pick_up_stored().await;
        let now = SystemTime::now();
        if let Some(c) = &self.current {
            if c.complete && now < c.renew_at {
                return Duration::ZERO;
            }
        }
        if let Some(wait) = self.blocked_by_retry(now).await {
            return wait;
        }
        tracing::info!(names = ?self.set.names, holder = %lease.token, "holding the ACME lock");
        let renewing = self.current.is_some();
        self.update(|s| {
            s.status = if renewing {
                Status::Renewing
            } else {
                Status::Pending
            }
        });
        tracing::info!(names = ?self.set.names, renewal = renewing, "ordering an ACME certificate");
        let issued = tokio::select! {
            issued = self.order() => issued,
            () = keep_lease(&self.inner, lease) => Err("lost the ACME lock while ordering".to_owned()),
        };
        match issued {
            Ok(bundle) => self.issued(bundle).await,
            Err(message) => self.failed(message).await,
        }
    }

    async fn order(&self) -> Result<String, String> {
        let account = self.inner.account().await?;
        self.inner.retry_after.take();
        let replaces = self
            .current
            .as_ref()
            .filter(|c| c.ari_known)
            .and_then(|c| c.ari_id.clone());
        order::issue(
            &account,
            &self.set.names,
            self.inner.config.challenge,
            self.inner.config.key_type,
            &self.inner.challenges,
            replaces,
        )
        .await
        .map_err(|e| e.to_string())
    }

    async fn issued(&mut self, bundle: String) -> Duration {
        let check_interval = self.inner.config.check_interval;
        if let Err(err) = tls::load_pem(bundle.as_bytes(), bundle.as_bytes(), CertSource::Acme) {
            return self
                .failed(format!("the CA's certificate is unusable: {err}"))
                .await;
        }
        if let Err(err) = self
            .inner
            .store
            .put(&self.set.bundle_key, bundle.as_bytes())
            .await
        {
            // Served here all the same; other replicas (and a restart) will order their own.
            tracing::warn!(names = ?self.set.names, "cannot store the new certificate: {err}");
        }
        if let Err(err) = self.inner.store.delete(&self.set.retry_key).await {
            tracing::debug!("cannot clear the ACME retry state: {err}");
        }
        self.install(bundle.as_bytes(), "issued");
        self.update(|s| s.last_error = None);
        let now = SystemTime::now();
        let renew_at = self.current.as_ref().map_or(now, |c| c.renew_at);
        // At least one check interval between orders, even when the new certificate is due
        // at once (renew_before = 1): the CA is never asked in a tight loop.
        until(renew_at, check_interval).max(check_interval)
    }

    async fn failed(&mut self, message: String) -> Duration {
        let inner = Arc::clone(&self.inner);
        let config = &inner.config;
        let now = SystemTime::now();
        let previous = self.read_retry().await.map_or(0, |r| r.failures);
        let failures = previous.saturating_add(1);
        let retry_after = self.inner.retry_after.take();
        let next = renew::next_attempt(
            now,
            config.retry_interval,
            failures,
            retry_after,
            fastrand::f64(),
        );
        let state = RetryState {
            failures,
            not_before: renew::unix_secs(next),
            last_error: message.clone(),
        };
        match serde_json::to_vec(&state) {
            Ok(json) => {
                if let Err(err) = self.inner.store.put(&self.set.retry_key, &json).await {
                    tracing::warn!("cannot store the ACME retry state: {err}");
                }
            }
            Err(err) => tracing::warn!("cannot encode the ACME retry state: {err}"),
        }
        let serving = self.current.is_some();
        tracing::warn!(
            names = ?self.set.names,
            failures,
            next_attempt = %fmt_http_date(state.not_before()),
            still_serving = serving,
            "ACME order failed: {message}"
        );
        self.announced_wait = Some(state.not_before);
        self.update(|s| {
            s.status = Status::Failed;
            s.next_attempt = Some(state.not_before());
            s.last_error = Some(message);
        });
        until(state.not_before(), config.check_interval)
    }

    /// The stored retry state, if it still blocks attempts at `now`: the wait until the next
    /// check or the allowed attempt.
    async fn blocked_by_retry(&mut self, now: SystemTime) -> Option<Duration> {
        let retry = self.read_retry().await?;
        if retry.not_before() <= now {
            return None;
        }
        if self.announced_wait != Some(retry.not_before) {
            tracing::info!(
                names = ?self.set.names,
                failures = retry.failures,
                next_attempt = %fmt_http_date(retry.not_before()),
                last_error = %retry.last_error,
                "ACME attempts paused after failures"
            );
            self.announced_wait = Some(retry.not_before);
        }
        self.update(|s| {
            s.status = Status::Failed;
            s.next_attempt = Some(retry.not_before());
            s.last_error = Some(retry.last_error.clone());
        });
        Some(until(retry.not_before(), self.inner.config.check_interval))
    }

    async fn read_retry(&self) -> Option<RetryState> {
        match self.inner.store.get(&self.set.retry_key).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(err) => {
                if !self.store_down {
                    tracing::warn!("cannot read the ACME retry state: {err}");
                }
                None
            }
        }
    }

    /// Serves the stored certificate if it is newer than the one served now.
    async fn pick_up_stored(&mut self) {
        let bytes = match self.inner.store.get(&self.set.bundle_key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(err) => {
                // While the store is down this repeats every poll: say it once.
                if !self.store_down {
                    tracing::warn!(names = ?self.set.names, "cannot read the stored certificate: {err}");
                }
                return;
            }
        };
        self.install(&bytes, "loaded from the store");
    }

    /// Parses a bundle and, if valid and different from the served one, serves it.
    fn install(&mut self, bundle: &[u8], how: &str) {
        let loaded = match tls::load_pem(bundle, bundle, CertSource::Acme) {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::warn!(names = ?self.set.names, "stored certificate is unusable: {err}");
                return;
            }
        };
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.serial_hex == loaded.serial_hex)
        {
            return;
        }
        let now = SystemTime::now();
        if loaded.not_after <= now {
            return;
        }
        let facts = loaded
            .key
            .cert
            .first()
            .and_then(|der| tls::renewal_facts(der).ok());
        let not_before = facts.as_ref().map_or(now, |f| f.not_before);
        let ari_id = facts.and_then(|f| {
            let aki = f.authority_key_id?;
            let id =
                CertificateIdentifier::new(Der::from_slice(&aki), Der::from_slice(&f.serial_der));
            Some(id.into_owned())
        });
        let renew_at =
            renew::renew_at(not_before, loaded.not_after, self.inner.config.renew_before);
        let complete = self.set.names.iter().all(|n| loaded.names.contains(n));
        tracing::info!(
            names = ?self.set.names,
            serial = %loaded.serial_hex,
            not_after = %fmt_http_date(loaded.not_after),
            renew_at = %fmt_http_date(renew_at),
            "ACME certificate {how}"
        );
        let current = Current {
            serial_hex: loaded.serial_hex.clone(),
            not_after: loaded.not_after,
            renew_at,
            complete,
            ari_id,
            ari_next: now,
            ari_pick: fastrand::f64(),
            ari_known: false,
        };
        self.inner.certs.set_acme(loaded);
        self.update(|s| {
            s.status = Status::Valid;
            s.not_after = Some(current.not_after);
            s.serial_hex = Some(current.serial_hex.clone());
            s.next_attempt = Some(current.renew_at);
        });
        self.current = Some(current);
    }

    /// Asks the CA for its suggested renewal window (ACME Renewal Information) when it is time
    /// to; a window moves the renewal time into it. A CA without ARI is asked once per
    /// certificate, and renewal stays at the configured fraction of the lifetime.
    async fn check_ari(&mut self) {
        let inner = Arc::clone(&self.inner);
        let now = SystemTime::now();
        let Some(current) = self.current.as_mut() else {
            return;
        };
        let Some(id) = current.ari_id.clone() else {
            return;
        };
        if now < current.ari_next {
            return;
        }
        current.ari_next = now + inner.config.check_interval;
        let account = match inner.account().await {
            Ok(account) => account,
            Err(err) => {
                tracing::debug!("no ACME account for renewal information yet: {err}");
                return;
            }
        };
        match account.renewal_info(&id).await {
            Ok((info, recheck)) => {
                let start = SystemTime::from(info.suggested_window.start);
                let end = SystemTime::from(info.suggested_window.end);
                let at = renew::in_window(start, end, current.ari_pick);
                if !current.ari_known || at != current.renew_at {
                    tracing::info!(
                        names = ?self.set.names,
                        renew_at = %fmt_http_date(at),
                        "the CA's renewal information sets the renewal time"
                    );
                }
                current.renew_at = at;
                current.ari_known = true;
                current.ari_next = now + recheck.clamp(Duration::from_secs(60), renew::MAX_BACKOFF);
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                tracing::debug!(names = ?self.set.names, "the CA offers no renewal information; renewing at the configured fraction");
                current.ari_id = None;
            }
            Err(err) => {
                tracing::debug!(names = ?self.set.names, "renewal information unavailable: {err}");
            }
        }
        let renew_at = current.renew_at;
        self.update(|s| {
            if s.status == Status::Valid {
                s.next_attempt = Some(renew_at);
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut CertState)) {
        let mut state = self.inner.states[self.index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
    }
}

/// Renews the lease every third of its length; returns only when it is lost.
async fn keep_lease(inner: &Inner, lease: &Lease) {
    loop {
        tokio::time::sleep(lease.lease / 3).await;
        match inner.store.renew(lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => tracing::warn!("cannot renew the ACME lock: {err}"),
        }
    }
}

/// The wait until `at`, but at most `check` (and never negative).
fn until(at: SystemTime, check: Duration) -> Duration {
    at.duration_since(SystemTime::now())
        .unwrap_or_default()
        .min(check)
}
