//! The status page: its JSON, its headers, and what headless Chromium renders before and
//! after a replica turns not ready.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::*;

fn config(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"
[listeners.public]
listen = "127.0.0.1:{{http}}"

[upstreams.app]
replicas = ["{a}", "{b}"]

[upstreams.app.health]
interval = "100ms"
rise = 1
fall = 1

[[routes]]
name = "api"
path = "/"
upstream = "app"
"#
    )
}

#[tokio::test]
async fn page_is_locked_down_and_status_json_describes_the_gateway() {
    let a = App::start().await;
    let b = App::start().await;
    let gw = Gateway::start(&config(a.addr, b.addr)).await;
    for _ in 0..2 {
        assert_eq!(get(gw.addr("http"), "/x", &[]).await.unwrap().status, 200);
    }

    let page = get(gw.admin, "/", &[]).await.unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self'") && csp.contains("style-src 'sha256-"));
    assert!(page.text().contains("/admin/status"));

    let status = get(gw.admin, "/admin/status", &[]).await.unwrap();
    assert_eq!(status.header("content-type"), Some("application/json"));
    let s: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(s["generation"], 1);
    assert_eq!(s["ready"], true);
    assert!(s["reload"].is_null(), "no reloader has recorded anything");
    assert_eq!(s["routes"][0]["name"], "api");
    assert_eq!(s["routes"][0]["upstream"], "app");
    assert_eq!(s["routes"][0]["requests"], 2);
    assert_eq!(s["totals"]["requests"], 2);
    let replicas = s["upstreams"][0]["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2);
    assert!(
        replicas
            .iter()
            .all(|r| r["ready"] == true && r["live"] == true)
    );

    // The probe listener has none of it.
    let probe =
        Gateway::start(&(config(a.addr, b.addr) + "\n[probe]\nlisten = \"127.0.0.1:{probe}\"\n"))
            .await;
    for path in ["/", "/admin/status"] {
        assert_eq!(
            get(probe.addr("probe"), path, &[]).await.unwrap().status,
            404
        );
    }
}

/// The DOM of `url` after the page's script ran, or `None` without Chromium.
async fn dump_dom(url: &str) -> Option<String> {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--virtual-time-budget=5000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(url)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => panic!("chromium: {err}"),
    };
    assert!(out.status.success(), "chromium exited with {}", out.status);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rendered table row of replica `addr`.
fn replica_row(dom: &str, addr: SocketAddr) -> String {
    let marker = format!("data-replica=\"app/{addr}\"");
    let start = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {addr} in:\n{dom}"));
    let end = dom[start..].find("</tr>").unwrap() + start;
    dom[start..end].to_owned()
}

#[tokio::test]
async fn chromium_renders_the_replica_state_before_and_after_it_turns_not_ready() {
    let a = App::start().await;
    let b = App::start().await;
    let gw = Gateway::start(&config(a.addr, b.addr)).await;
    let url = format!("http://127.0.0.1:{}/", gw.admin.port());

    let chromium = tokio::time::timeout(Duration::from_secs(120), dump_dom(&url));
    let Some(before) = chromium.await.expect("chromium hung") else {
        println!("skipped: chromium not installed");
        return;
    };
    assert!(before.contains("data-route=\"api\""), "{before}");
    let row = replica_row(&before, b.addr);
    assert!(
        row.contains(">ready<") && !row.contains("not ready"),
        "{row}"
    );
    assert!(
        before.contains(r#"<span id="error" class="bad"></span>"#),
        "the page reports a load error:\n{before}"
    );

    b.set_ready(503);
    eventually_async("/admin/upstreams shows b not ready", || async {
        replica_state(&gw, "app", b.addr)
            .await
            .is_some_and(|r| r["ready"] == false)
    })
    .await;
    let after = tokio::time::timeout(Duration::from_secs(120), dump_dom(&url))
        .await
        .expect("chromium hung")
        .unwrap();
    assert!(
        replica_row(&after, b.addr).contains(">not ready<"),
        "{after}"
    );
    let other = replica_row(&after, a.addr);
    assert!(
        other.contains(">ready<") && !other.contains("not ready"),
        "{other}"
    );
}
