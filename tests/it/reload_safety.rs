//! What a reload must not do: apply an invalid file, re-bind a listener, start new upstream
//! connections, or fail a request under load; and what it costs for a large config.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::Request;
use hyper_util::rt::TokioIo;

use crate::harness::*;
use crate::reload_helpers::*;

/// `edgeward check` on `path`, with the gateway's environment: (ok, output).
fn check(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeward"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env("EDGEWARD_LOG_LEVEL", "debug")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An error of an answer as `edgeward check` prints it: `file:line: key: message`.
fn as_check_line(e: &serde_json::Value) -> String {
    format!(
        "{}:{}: {}: {}",
        e["file"].as_str().unwrap(),
        e["line"],
        e["key"].as_str().unwrap(),
        e["message"].as_str().unwrap()
    )
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_check_agrees() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", NO_WATCH)).await;

    let broken = edited(&gw.config_path, "upstream = \"app\"", "upstream = \"nope\"");
    std::fs::write(&gw.config_path, &broken).unwrap();
    let (status, answer) = post(&gw).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["result"], "failed");
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{answer}");
    assert_eq!(errors[0]["key"], "routes[0].upstream");
    let line = broken.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    assert_eq!(errors[0]["line"], line);

    // Still routed by the old config, and the status shows why the file was refused.
    assert_eq!(served_tag(gw.addr("http")).await, "a");
    let r = report(&gw).await;
    assert_eq!((count(&r, "applied"), count(&r, "failed")), (0, 1), "{r}");
    assert_eq!(r["generation"], 1);
    assert_eq!(r["last"]["errors"][0]["key"], "routes[0].upstream");
    assert!(
        gw.log().contains("routes[0].upstream"),
        "the error is logged"
    );

    // `edgeward check` gives the same verdict, in the same words.
    let (ok, out) = check(&gw.config_path);
    assert!(!ok);
    assert!(
        out.contains(&as_check_line(&errors[0])),
        "{out}\nvs {answer}"
    );

    // Fixed: both accept it.
    std::fs::write(
        &gw.config_path,
        broken
            .replace("\"nope\"", "\"app\"")
            .replace("\"a\"", "\"b\""),
    )
    .unwrap();
    assert!(check(&gw.config_path).0);
    let (status, answer) = post(&gw).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &"applied".into()),
        "{answer}"
    );
    assert_eq!(served_tag(gw.addr("http")).await, "b");
}

#[tokio::test]
async fn a_listener_address_change_is_rejected_and_the_old_socket_keeps_serving() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", NO_WATCH)).await;
    let old = gw.addr("http");
    let new_port = free_port();
    let text = edited(
        &gw.config_path,
        &format!("127.0.0.1:{}", old.port()),
        &format!("127.0.0.1:{new_port}"),
    )
    .replace("\"a\"", "\"b\"");
    std::fs::write(&gw.config_path, text).unwrap();

    let (status, answer) = post(&gw).await;
    assert_eq!(status, 422, "{answer}");
    let error = &answer["errors"][0];
    assert_eq!(error["key"], "listeners.public.listen");
    assert_eq!(error["line"], 2);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("restart"), "{message}");
    // Nothing else of the file was applied either.
    assert_eq!(served_tag(old).await, "a");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", new_port))
            .await
            .is_err(),
        "the new address must not be bound"
    );
}

/// The replica's state is carried into the new snapshot. Today that state is its pool (and
/// in-flight counter): the upstream sees no new connection across a reload. Health state
/// kept per replica belongs in this test too.
#[tokio::test]
async fn replica_state_survives_an_unrelated_reload() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&tagged_config(up.addr, "a", NO_WATCH)).await;
    assert_eq!(served_tag(gw.addr("http")).await, "a");
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);

    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"a\"", "\"b\"")).unwrap();
    assert_eq!(post(&gw).await.1["result"], "applied");
    for _ in 0..3 {
        assert_eq!(served_tag(gw.addr("http")).await, "b");
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the pooled upstream connection is reused across the reload"
    );
}

/// Two configs that differ in the `x-config` header, on a plain and a TLS listener.
fn load_config(
    up: std::net::SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
    tag: &str,
) -> String {
    tagged_config(up, tag, NO_WATCH).replace(
        "[upstreams.app]",
        &format!(
            "[listeners.secure]\nlisten = \"127.0.0.1:{{https}}\"\ntls = true\n\n[[tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\n[upstreams.app]",
            cert.display(),
            key.display()
        ),
    )
}

/// Counts per tag seen by the load clients, and failures.
#[derive(Default)]
struct Tally {
    a: usize,
    b: usize,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, result: Result<Option<String>, String>) {
        match result {
            Ok(Some(tag)) if tag == "a" => self.a += 1,
            Ok(Some(tag)) if tag == "b" => self.b += 1,
            Ok(other) => self.failed.push(format!("unexpected tag {other:?}")),
            Err(e) => self.failed.push(e),
        }
    }
}

fn tag_of(
    resp: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<Option<String>, String> {
    let resp = resp.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    Ok(resp
        .headers()
        .get("x-config")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned))
}

#[tokio::test]
async fn fifty_reloads_under_load_fail_no_request() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = pki.leaf(certs.path(), "localhost", &["localhost"]);
    let up = Upstream::ok().await;
    let gw = Gateway::start(&load_config(up.addr, &cert, &key, "a")).await;
    let a = std::fs::read_to_string(&gw.config_path).unwrap();
    let b = a.replace("\"x-config\" = \"a\"", "\"x-config\" = \"b\"");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    // HTTP/1.1 keep-alive: one connection each for the whole run.
    for _ in 0..2 {
        let (addr, stop) = (gw.addr("http"), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get("/")
                    .header("host", "localhost")
                    .body(empty())
                    .unwrap();
                tally.record(tag_of(sender.send_request(req).await));
            }
            tally
        }));
    }
    // HTTP/2 over TLS: one connection each, two streams at a time.
    for _ in 0..2 {
        let sender = h2_client(&pki, gw.addr("https"), "localhost").await;
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let send = |s: &mut hyper::client::conn::http2::SendRequest<TestBody>| {
                    let req = Request::get("https://localhost/").body(empty()).unwrap();
                    s.send_request(req)
                };
                let (mut s1, mut s2) = (sender.clone(), sender.clone());
                let (r1, r2) = tokio::join!(send(&mut s1), send(&mut s2));
                tally.record(tag_of(r1));
                tally.record(tag_of(r2));
            }
            tally
        }));
    }

    for i in 0..50 {
        let text = if i % 2 == 0 { &b } else { &a };
        std::fs::write(&gw.config_path, text).unwrap();
        let (status, answer) = post(&gw).await;
        assert_eq!(
            (status, &answer["result"]),
            (200, &"applied".into()),
            "reload {i}: {answer}"
        );
    }
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for client in clients {
        let t = tokio::time::timeout(DEADLINE, client)
            .await
            .unwrap()
            .unwrap();
        assert!(t.a + t.b > 0, "every client made requests");
        total.a += t.a;
        total.b += t.b;
        total.failed.extend(t.failed);
    }
    assert!(
        total.failed.is_empty(),
        "{} failed: {:?}",
        total.failed.len(),
        &total.failed[..total.failed.len().min(5)]
    );
    assert!(
        total.a > 0 && total.b > 0,
        "both configs served: a={} b={}",
        total.a,
        total.b
    );
    let r = report(&gw).await;
    assert_eq!((count(&r, "applied"), count(&r, "failed")), (50, 0), "{r}");
    assert_eq!(r["generation"], 51);
    eprintln!(
        "50 reloads under load: {} requests served (a={}, b={}), none failed",
        total.a + total.b,
        total.a,
        total.b
    );
}

/// A config with 1,000 routes over 100 upstreams; `tag` marks one route's responses.
fn large_config(up: std::net::SocketAddr, tag: &str) -> String {
    let mut text = format!("[listeners.public]\nlisten = \"127.0.0.1:{{http}}\"\n\n{NO_WATCH}\n");
    for u in 0..100 {
        text.push_str(&format!(
            "[upstreams.u{u}]\nreplicas = [\"{up}\"]\nhealth = {{ mode = \"off\" }}\n\n"
        ));
    }
    for r in 0..1000 {
        let host = format!("h{}.example", r % 50);
        text.push_str(&format!(
            "[[routes]]\nhost = \"{host}\"\npath = \"/p{r}\"\nupstream = \"u{}\"\nresponse_headers = {{ set = {{ \"x-config\" = \"{tag}\" }} }}\n\n",
            r % 100
        ));
    }
    text
}

#[tokio::test]
async fn a_thousand_route_reload_reports_its_time() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&large_config(up.addr, "a")).await;
    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"a\"", "\"b\"")).unwrap();
    let (status, answer) = post(&gw).await;
    assert_eq!(
        (status, &answer["result"]),
        (200, &"applied".into()),
        "{answer}"
    );
    let took = Duration::from_micros(answer["took_us"].as_u64().unwrap());
    let got = get(gw.addr("http"), "/p999", &[("host", "h49.example")])
        .await
        .unwrap();
    assert_eq!(got.header("x-config"), Some("b"));
    eprintln!("reload of 1000 routes and 100 upstreams (debug build): {took:?}");
}

#[tokio::test]
async fn a_replica_marked_not_ready_stays_not_ready_after_an_unrelated_reload() {
    let sick = App::start().await;
    let well = App::start().await;
    let template = format!(
        "[listeners.public]\nlisten = \"127.0.0.1:{{http}}\"\n\n{NO_WATCH}\n\n[upstreams.app]\nreplicas = [\"{}\", \"{}\"]\npolicy = \"round_robin\"\nhealth = {{ interval = \"100ms\", fall = 2, rise = 2 }}\n\n[[routes]]\npath = \"/\"\nupstream = \"app\"\nresponse_headers = {{ set = {{ \"x-config\" = \"a\" }} }}\n",
        sick.addr, well.addr
    );
    let gw = Gateway::start(&template).await;
    sick.set_ready(503);
    eventually_async("the replica to be reported not ready", || async {
        replica_state(&gw, "app", sick.addr)
            .await
            .is_some_and(|r| r["ready"] == false)
    })
    .await;
    std::fs::write(&gw.config_path, edited(&gw.config_path, "\"a\"", "\"b\"")).unwrap();
    assert_eq!(post(&gw).await.1["result"], "applied");
    let state = replica_state(&gw, "app", sick.addr).await.unwrap();
    assert_eq!(state["ready"], false, "health survives the reload: {state}");
    let before = sick.hits();
    for _ in 0..20 {
        assert_eq!(served_tag(gw.addr("http")).await, "b");
    }
    assert_eq!(sick.hits(), before, "the not-ready replica got no requests");
}
