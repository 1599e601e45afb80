//! In-process tests of what reload decides: restart-only keys, symlink following, snapshot
//! identity across rebuilds, and the reloader's verdicts and serialisation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::live::{align_listeners, restart_only_changes};
use super::watch::dependencies;
use super::{Reloader, Trigger, Verdict, load_initial};
use crate::config::{self, Config};
use crate::service::Shared;
use crate::snapshot::Snapshot;
use crate::tls::CertStore;
use crate::upstream::replica::Registry;

const FILE: &str = "/etc/edgeward/edgeward.toml";

fn parse(text: &str) -> Config {
    config::parse(text, Path::new(FILE), &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

const BASE: &str = r#"[listeners.public]
listen = "127.0.0.1:8080"

[listeners.internal]
listen = "127.0.0.1:8081"
trusted_proxies = ["10.0.0.0/8"]

[upstreams.app]
replicas = ["127.0.0.1:9000", "127.0.0.1:9001"]

[[routes]]
path = "/"
upstream = "app"
response_headers = { set = { "x-config" = "a" } }
"#;

#[test]
fn a_listener_address_change_names_the_key_and_line() {
    let running = parse(BASE);
    let text = BASE.replace("8081", "9091");
    let errors = restart_only_changes(&running, &parse(&text), &text, Path::new(FILE));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key, "listeners.internal.listen");
    assert_eq!(errors[0].line, Some(5));
    assert!(
        errors[0]
            .message
            .contains("running: 127.0.0.1:8081, file: 127.0.0.1:9091"),
        "{}",
        errors[0].message
    );
}

#[test]
fn routes_upstreams_and_trusted_proxies_change_live() {
    let running = parse(BASE);
    let text = BASE
        .replace("\"a\"", "\"b\"")
        .replace("10.0.0.0/8", "192.168.0.0/16")
        .replace(", \"127.0.0.1:9001\"", "")
        + "\n[[routes]]\npath = \"/old\"\nredirect = { to = \"https://example.com\" }\n";
    let errors = restart_only_changes(&running, &parse(&text), &text, Path::new(FILE));
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn added_removed_and_socket_settings_are_restart_only() {
    let running = parse(BASE);
    let text = BASE.replace(
        "[listeners.internal]\nlisten = \"127.0.0.1:8081\"",
        "[listeners.other]\nlisten = \"127.0.0.1:8081\"\ntls = true",
    ) + "\n[probe]\nlisten = \"127.0.0.1:9902\"\n[admin]\ntoken = \"s3cret\"\n[log]\nlevel = \"debug\"\n";
    let errors = restart_only_changes(&running, &parse(&text), &text, Path::new(FILE));
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listeners.internal",
            "listeners.other",
            "admin.token",
            "probe.listen",
            "log.level"
        ]
    );
    assert!(
        errors.iter().all(|e| !e.message.contains("s3cret")),
        "the token must not be echoed: {errors:#?}"
    );
    assert_eq!(errors[1].line, Some(4), "the added listener's table");
}

#[test]
fn acme_settings_are_restart_only_and_never_echoed() {
    let with_acme = |hmac: &str| {
        format!(
            "{BASE}[listeners.secure]\nlisten = \"127.0.0.1:8443\"\ntls = true\n\
             [acme]\neab = {{ kid = \"k\", hmac_key = \"{hmac}\" }}\n\
             [[acme.certificates]]\nnames = [\"app.test\"]\n"
        )
    };
    let running = parse(&with_acme("b2xk"));
    let text = with_acme("bmV3");
    let errors = restart_only_changes(&running, &parse(&text), &text, Path::new(FILE));
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["acme"], "{errors:#?}");
    assert!(!errors[0].message.contains("bmV3"), "{errors:#?}");
    let same = with_acme("b2xk");
    assert!(restart_only_changes(&running, &parse(&same), &same, Path::new(FILE)).is_empty());
}

#[test]
fn reordered_listeners_keep_their_positions() {
    let running = parse(BASE);
    let (public, rest) = BASE.split_at(BASE.find("[listeners.internal]").unwrap());
    let (internal, rest) = rest.split_at(rest.find("[upstreams").unwrap());
    let text = format!("{internal}{public}{rest}");
    let mut new = parse(&text);
    assert_eq!(new.listeners[0].name, "internal");
    assert!(restart_only_changes(&running, &new, &text, Path::new(FILE)).is_empty());
    align_listeners(&running, &mut new);
    let names: Vec<&str> = new.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["public", "internal"]);
}

#[test]
fn dependencies_follow_a_configmap_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let stamp = root.join("..2026_01_01_00_00_00.000");
    std::fs::create_dir(&stamp).unwrap();
    std::fs::write(stamp.join("edgeward.toml"), "x").unwrap();
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.000", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/edgeward.toml", root.join("edgeward.toml")).unwrap();

    let deps = dependencies(&root.join("edgeward.toml"));
    let expected = [
        root.join("edgeward.toml"),
        root.join("..data"),
        stamp.join("edgeward.toml"),
    ];
    for path in &expected {
        assert!(
            deps.contains(path),
            "{} missing from {deps:?}",
            path.display()
        );
    }
    assert!(!deps.contains(&root.join("gateway.log")));
}

#[test]
fn dependencies_of_a_plain_file_are_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(root.join("edgeward.toml"), "x").unwrap();
    let deps = dependencies(&root.join("edgeward.toml"));
    assert_eq!(
        deps.into_iter().collect::<Vec<_>>(),
        [root.join("edgeward.toml")]
    );
}

#[tokio::test]
async fn a_rebuilt_snapshot_reuses_replicas_and_route_lives() {
    let registry = Registry::default();
    let limiters = crate::ratelimit::Registry::default();
    let first = Snapshot::build(Arc::new(parse(BASE)), &registry, &limiters, 1)
        .await
        .unwrap();
    let text = BASE.replace("\"a\"", "\"b\"")
        + "\n[upstreams.other]\nreplicas = [\"127.0.0.1:9100\"]\n[[routes]]\npath = \"/ws\"\nupstream = \"other\"\n";
    let mut second = Snapshot::build(Arc::new(parse(&text)), &registry, &limiters, 2)
        .await
        .unwrap();
    for (a, b) in first.upstreams["app"]
        .members()
        .replicas
        .iter()
        .zip(&second.upstreams["app"].members().replicas)
    {
        assert!(Arc::ptr_eq(a, b), "replica {} was rebuilt", a.addr);
        assert!(Arc::ptr_eq(&a.pool, &b.pool));
    }

    // Editing the route's headers keeps its identity; adopting hands over the same token.
    second.adopt_route_lives(|id| first.route_lives.get(&id).cloned());
    assert_eq!(second.route_lives.len(), 2);
    let kept = first.route_lives.keys().next().unwrap();
    assert!(second.route_lives.contains_key(kept));
    first.route_lives[kept].removed.cancel();
    assert!(second.route_lives[kept].removed.is_cancelled());

    // Removing the new route is seen from the next snapshot; moving "/" to another upstream
    // makes it another route.
    let moved = BASE.replace("upstream = \"app\"", "upstream = \"other\"")
        + "\n[upstreams.other]\nreplicas = [\"127.0.0.1:9100\"]\n";
    let third = Snapshot::build(Arc::new(parse(&moved)), &registry, &limiters, 3)
        .await
        .unwrap();
    let gone: Vec<String> = third
        .routes_gone(&second)
        .into_iter()
        .map(|(_, life)| life.name.to_string())
        .collect();
    assert_eq!(gone.len(), 2, "{gone:?}");
}

/// A reloader over a config file in a temp dir, without listeners or watcher.
async fn reloader(text: &str) -> (tempfile::TempDir, Arc<Reloader>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgeward.toml");
    std::fs::write(&path, text).unwrap();
    let (config, source) = load_initial(&path).unwrap();
    let config = Arc::new(config);
    let registry = Registry::default();
    let limiters = crate::ratelimit::Registry::default();
    let snapshot = Snapshot::build(Arc::clone(&config), &registry, &limiters, 1)
        .await
        .unwrap();
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        registry,
        limiters,
        certs: CertStore::new(),
        acme: None,
        tunnels: TaskTracker::new(),
        streams: TaskTracker::new(),
        stop_streams: CancellationToken::new(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        access_log: crate::access_log::AccessLog::start(None, crate::config::LogFormat::Text)
            .unwrap(),
    });
    let reloader = Reloader::new(source, config, Vec::new(), shared);
    (dir, reloader)
}

#[tokio::test]
async fn unchanged_bytes_are_skipped_and_invalid_ones_change_nothing() {
    let (_dir, reloader) = reloader(BASE).await;
    let answer = reloader.reload(Trigger::Admin).await;
    assert_eq!(answer.config.result, Verdict::Skipped);

    let bad = BASE.replace("upstream = \"app\"", "upstream = \"nope\"");
    std::fs::write(reloader.path(), &bad).unwrap();
    let answer = reloader.reload(Trigger::Admin).await;
    assert_eq!(answer.config.result, Verdict::Failed);
    let error = &answer.config.errors[0];
    assert_eq!(
        (error.key.as_str(), error.line),
        ("routes[0].upstream", Some(13))
    );
    let check = config::load(reloader.path()).unwrap_err();
    assert_eq!(
        answer.config.errors,
        check.0.iter().map(super::Problem::from).collect::<Vec<_>>(),
        "reload and check give the same verdict"
    );
    assert_eq!(reloader.shared().snapshot.load().generation, 1);

    std::fs::write(reloader.path(), BASE.replace("\"a\"", "\"b\"")).unwrap();
    let answer = reloader.reload(Trigger::Signal).await;
    assert_eq!(answer.config.result, Verdict::Applied);
    assert_eq!(answer.config.generation, 2);
    let counts = reloader.counts();
    assert_eq!((counts.applied, counts.failed, counts.skipped), (1, 1, 1));
}

#[tokio::test]
async fn concurrent_triggers_apply_once() {
    let (_dir, reloader) = reloader(BASE).await;
    std::fs::write(reloader.path(), BASE.replace("\"a\"", "\"b\"")).unwrap();
    let (a, b) = tokio::join!(
        reloader.reload(Trigger::Admin),
        reloader.reload(Trigger::Signal)
    );
    let mut results = [a.config.result, b.config.result];
    results.sort_by_key(|r| *r as u8);
    assert_eq!(results, [Verdict::Applied, Verdict::Skipped]);
    assert_eq!(reloader.shared().snapshot.load().generation, 2);
}

#[tokio::test]
async fn a_removed_route_is_cancelled_after_its_grace_unless_it_comes_back() {
    let with_ws = |grace: &str| {
        format!(
            "{BASE}\n[reload]\nremoved_route_grace = \"{grace}\"\n[[routes]]\npath = \"/ws\"\nupstream = \"app\"\n"
        )
    };
    let without_ws = |grace: &str| format!("{BASE}\n[reload]\nremoved_route_grace = \"{grace}\"\n");
    let (_dir, reloader) = reloader(&with_ws("1h")).await;
    let life = |r: &Reloader| {
        let snap = r.shared().snapshot.load();
        snap.route_lives
            .values()
            .find(|l| &*l.name == "*/ws")
            .map(|l| l.removed.clone())
    };
    let ws = life(&reloader).unwrap();

    // Removed with a long grace, then back: the same life, never cancelled.
    std::fs::write(reloader.path(), without_ws("1h")).unwrap();
    assert_eq!(
        reloader.reload(Trigger::Admin).await.config.result,
        Verdict::Applied
    );
    assert!(life(&reloader).is_none());
    std::fs::write(reloader.path(), with_ws("1h")).unwrap();
    assert_eq!(
        reloader.reload(Trigger::Admin).await.config.result,
        Verdict::Applied
    );
    assert!(!ws.is_cancelled());
    let back = life(&reloader).unwrap();

    // Removed with no grace: cancelled, and the token a tunnel holds sees it.
    std::fs::write(reloader.path(), without_ws("0s")).unwrap();
    assert_eq!(
        reloader.reload(Trigger::Admin).await.config.result,
        Verdict::Applied
    );
    tokio::time::timeout(Duration::from_secs(10), ws.cancelled())
        .await
        .expect("the removed route's token is cancelled");
    assert!(back.is_cancelled());
}
