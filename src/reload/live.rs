//! What a reload cannot change: settings read once when the gateway starts (sockets, their
//! TLS and PROXY handling, the admin and probe listeners, connection budgets, the TLS session
//! setup, logging). A reload that changes one of them is rejected as a whole, naming each key,
//! and the running config stays: re-binding sockets on reload drops connections, and applying
//! the rest while silently ignoring these would leave the file saying what is not running.

use std::path::Path;

use crate::config::{self, Config, ConfigError};

/// The keys whose value in `new` differs from the running config and needs a restart, as
/// errors that name the file, line and key. Empty when the reload may go ahead; the caller
/// then calls [`align_listeners`].
pub fn restart_only_changes(
    running: &Config,
    new: &Config,
    text: &str,
    path: &Path,
) -> Vec<ConfigError> {
    let mut diffs = Diffs::default();
    for old in &running.listeners {
        let k = |field: &str| format!("listeners.{}.{field}", old.name);
        let Some(l) = new.listeners.iter().find(|l| l.name == old.name) else {
            diffs.push(format!("listeners.{}", old.name), "present", "removed");
            continue;
        };
        diffs.cmp(k("listen"), old.addr, l.addr);
        diffs.cmp(k("tls"), old.tls, l.tls);
        let v6_only = |v: Option<bool>| v.map_or("OS default".to_owned(), |v| v.to_string());
        diffs.cmp(k("v6_only"), v6_only(old.v6_only), v6_only(l.v6_only));
        diffs.cmp(k("proxy_protocol"), old.proxy_protocol, l.proxy_protocol);
    }
    for l in &new.listeners {
        if !running.listeners.iter().any(|old| old.name == l.name) {
            diffs.push(format!("listeners.{}", l.name), "absent", "added");
        }
    }

    let (a, b) = (&running.admin, &new.admin);
    diffs.cmp("admin.listen".into(), a.addr, b.addr);
    diffs.cmp("admin.hosts".into(), Shown(&a.hosts), Shown(&b.hosts));
    if a.token != b.token {
        // Never echo a secret into logs or the admin API.
        let set = |t: &Option<String>| if t.is_some() { "set" } else { "unset" };
        let new_value = if a.token.is_some() && b.token.is_some() {
            "another token"
        } else {
            set(&b.token)
        };
        diffs.push("admin.token".into(), set(&a.token), new_value);
    }
    diffs.cmp(
        "admin.max_connections".into(),
        a.max_connections,
        b.max_connections,
    );

    let probe_addr = |c: &Config| {
        c.probe
            .as_ref()
            .map_or("off".to_owned(), |p| p.addr.to_string())
    };
    diffs.cmp("probe.listen".into(), probe_addr(running), probe_addr(new));
    if let (Some(a), Some(b)) = (&running.probe, &new.probe) {
        diffs.cmp("probe.metrics".into(), a.metrics, b.metrics);
        diffs.cmp(
            "probe.max_connections".into(),
            a.max_connections,
            b.max_connections,
        );
    }

    let (a, b) = (&running.server, &new.server);
    diffs.cmp(
        "server.max_connections".into(),
        a.max_connections,
        b.max_connections,
    );
    diffs.cmp(
        "server.max_connections_per_ip".into(),
        a.max_connections_per_ip,
        b.max_connections_per_ip,
    );
    let (a, b) = (&running.tls, &new.tls);
    diffs.cmp(
        "tls.session_cache_size".into(),
        a.session_cache_size,
        b.session_cache_size,
    );
    diffs.cmp("tls.tickets".into(), a.tickets, b.tickets);
    // ACME's store, client and certificate tasks are set up once at start.
    if running.acme != new.acme {
        diffs.push("acme".into(), "as started", "changed");
    }
    let (a, b) = (&running.log, &new.log);
    diffs.cmp("log.format".into(), Shown(a.format), Shown(b.format));
    diffs.cmp("log.level".into(), &a.level, &b.level);

    diffs
        .0
        .into_iter()
        .map(|(key, was, now)| ConfigError {
            file: path.to_path_buf(),
            line: config::line_of_key(text, &key),
            message: format!(
                "cannot change while running (running: {was}, file: {now}); restart to apply \
                 it. Nothing was reloaded"
            ),
            key,
            env_var: None,
        })
        .collect()
}

/// Puts `new`'s listeners in the running order. Connections know their listener by position,
/// and the file may list the same listeners in another order; [`restart_only_changes`] has
/// checked that the names are the same.
pub fn align_listeners(running: &Config, new: &mut Config) {
    new.listeners.sort_by_key(|l| {
        running
            .listeners
            .iter()
            .position(|old| old.name == l.name)
            .unwrap_or(usize::MAX)
    });
}

/// `(key, running value, new value)` for each difference found.
#[derive(Default)]
struct Diffs(Vec<(String, String, String)>);

impl Diffs {
    fn push(&mut self, key: String, was: &str, now: &str) {
        self.0.push((key, was.to_owned(), now.to_owned()));
    }

    fn cmp<T: PartialEq + std::fmt::Display>(&mut self, key: String, was: T, now: T) {
        if was != now {
            self.0.push((key, was.to_string(), now.to_string()));
        }
    }
}

/// Shows a value with its `Debug` form, for types without `Display`.
#[derive(PartialEq)]
struct Shown<T>(T);

impl<T: std::fmt::Debug> std::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
