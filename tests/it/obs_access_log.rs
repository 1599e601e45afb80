//! The access log: JSON lines with the request id the client got, no header values, escaped
//! control characters; a file target reopened on SIGUSR1.

use std::path::Path;

use crate::harness::*;

fn config(up: std::net::SocketAddr, log: &str) -> String {
    simple_config(up, "name = \"app\"") + "\n[log]\n" + log + "\n"
}

/// The JSON access lines written so far to `text`.
fn access_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.contains("\"target\":\"edgeward::access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn line_for(read: impl Fn() -> String, id: &str) -> serde_json::Value {
    let mut found = None;
    eventually(&format!("an access line for {id}"), || {
        found = access_lines(&read())
            .into_iter()
            .find(|v| v["request_id"] == id);
        found.is_some()
    })
    .await;
    found.unwrap()
}

#[tokio::test]
async fn json_line_carries_the_request_id_and_no_header_values() {
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&config(up.addr, ""))
        .env("EDGEWARD_LOG_FORMAT", "json")
        .start()
        .await;
    let resp = get(
        gw.addr("http"),
        "/users/42?token=query-secret",
        &[
            ("cookie", "session=cookie-secret"),
            ("authorization", "Bearer auth-secret"),
            ("user-agent", "agent-secret"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let id = resp.header("x-request-id").unwrap().to_owned();
    let line = line_for(|| gw.log(), &id).await;

    assert_eq!(line["level"], "INFO");
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "localhost");
    assert_eq!(line["path"], "/users/42");
    assert!(line.get("query").is_none(), "queries are off by default");
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_in"], 0);
    assert_eq!(line["bytes_out"], 2);
    assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["route"], "app");
    assert_eq!(line["replica"], up.addr.to_string());
    assert!(line["upstream_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["retries"], 0);
    assert!(line["rate_limit"].is_null());
    // An untrusted client's trace is not continued: the app got a new one, which is logged.
    let sent = up.seen()[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(line["trace_id"].as_str().unwrap(), &sent[3..35]);
    assert_ne!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));

    let log = gw.log();
    for secret in [
        "cookie-secret",
        "auth-secret",
        "agent-secret",
        "query-secret",
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

#[tokio::test]
async fn control_characters_are_escaped_and_queries_logged_on_request() {
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&config(up.addr, "format = \"json\"\nlog_query = true"))
        .start()
        .await;
    // A tab and an obs-text byte are valid in a header value; hyper passes them through.
    let resp = raw(
        gw.addr("http"),
        b"GET /search?q=a%20b HTTP/1.1\r\nhost: evil\t\"host\xff\r\nconnection: close\r\n\r\n",
    )
    .await;
    let id = resp
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no request id in {resp}"))
        .trim()
        .to_owned();
    let line = line_for(|| gw.log(), &id).await;
    assert_eq!(line["host"], "evil\t\"host\u{ff}");
    assert_eq!(line["query"], "q=a%20b");
    assert_eq!(line["status"], 400);
    let log = gw.log();
    let raw_line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("edgeward::access"))
        .unwrap();
    assert!(
        raw_line.contains(r#""host":"evil\t\"host\u00ff""#),
        "{raw_line}"
    );
}

#[tokio::test]
async fn file_target_is_reopened_on_sigusr1() {
    let up = Upstream::ok().await;
    let gw = Gateway::builder(&config(
        up.addr,
        "format = \"json\"\naccess_log_file = \"{dir}/access.log\"",
    ))
    .start()
    .await;
    let path = gw.dir.path().join("access.log");
    let rotated = gw.dir.path().join("access.log.1");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    let first = get(gw.addr("http"), "/one", &[]).await.unwrap();
    let first_id = first.header("x-request-id").unwrap().to_owned();
    line_for(|| read(&path), &first_id).await;
    assert!(
        !gw.log().contains(&format!("\"request_id\":\"{first_id}\"")),
        "file only"
    );

    std::fs::rename(&path, &rotated).unwrap();
    gw.signal(rustix::process::Signal::USR1);
    eventually("the file is reopened", || path.exists()).await;
    let second = get(gw.addr("http"), "/two", &[]).await.unwrap();
    let second_id = second.header("x-request-id").unwrap().to_owned();
    line_for(|| read(&path), &second_id).await;

    assert_eq!(access_lines(&read(&rotated)).len(), 1);
    assert_eq!(access_lines(&read(&path)).len(), 1);
    assert!(gw.log().contains("access log reopened"));
}
