//! Helpers for the reload tests: the `/admin/reload` API, editing the running config file,
//! and the settling rule every trigger test uses.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http::Request;
use serde_json::Value;

use crate::harness::{DEADLINE, Gateway, empty, get, send_h1};

/// The watcher's debounce; a count that stayed the same for twice this is settled.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// `GET /admin/reload`.
pub async fn report(gw: &Gateway) -> Value {
    let got = get(gw.admin, "/admin/reload", &[]).await.unwrap();
    assert_eq!(got.status, 200, "{}", got.text());
    serde_json::from_slice(&got.body).unwrap()
}

/// `POST /admin/reload`: status and answer.
pub async fn post(gw: &Gateway) -> (u16, Value) {
    let req = Request::post("/admin/reload")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let got = send_h1(gw.admin, req).await.unwrap();
    let value = serde_json::from_slice(&got.body).unwrap_or_else(|e| panic!("{e}: {}", got.text()));
    (got.status, value)
}

/// A counter of the report (`applied`, `failed`, `skipped`).
pub fn count(report: &Value, name: &str) -> u64 {
    report[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

/// Waits until `applied + failed` reaches `at_least`, then until the counters have not moved
/// for twice the debounce; returns the settled report.
pub async fn settled(gw: &Gateway, at_least: u64) -> Value {
    let start = Instant::now();
    loop {
        let r = report(gw).await;
        if count(&r, "applied") + count(&r, "failed") >= at_least {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no reload seen: {r}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut last = report(gw).await;
    loop {
        // Not synchronisation: this is the quiet window that shows no further reload follows.
        tokio::time::sleep(DEBOUNCE * 2).await;
        let now = report(gw).await;
        let key = |r: &Value| (count(r, "applied"), count(r, "failed"));
        if key(&now) == key(&last) {
            return now;
        }
        assert!(
            start.elapsed() < DEADLINE * 2,
            "reloads never settled: {now}"
        );
        last = now;
    }
}

/// The config file's text with `from` replaced by `to` (panics if `from` is absent).
pub fn edited(path: &Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    text.replace(from, to)
}

/// The `x-config` header of `GET /` through `addr`.
pub async fn served_tag(addr: SocketAddr) -> String {
    let got = get(addr, "/", &[]).await.unwrap();
    assert_eq!(got.status, 200, "{}", got.text());
    got.header("x-config").unwrap_or("").to_owned()
}

/// One listener, one upstream, one route whose responses carry `x-config: <tag>`; `extra`
/// is inserted as is (e.g. a `[reload]` table).
pub fn tagged_config(up: SocketAddr, tag: &str, extra: &str) -> String {
    format!(
        r#"[listeners.public]
listen = "127.0.0.1:{{http}}"

{extra}

[upstreams.app]
replicas = ["{up}"]
health = {{ mode = "off" }}

[[routes]]
path = "/"
upstream = "app"
response_headers = {{ set = {{ "x-config" = "{tag}" }} }}
"#
    )
}

/// `[reload] watch = false`: only SIGHUP and the admin endpoint reload.
pub const NO_WATCH: &str = "[reload]\nwatch = false\n";
