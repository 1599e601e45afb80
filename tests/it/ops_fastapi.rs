//! `examples/fastapi`: two real uvicorn replicas behind the gateway, run with the example's
//! own config and the uvicorn flags its README gives. The app must see the real client
//! address, the client's scheme and its mount point.
//!
//! Needs a Python with fastapi and uvicorn: `EDGEWARD_TEST_PYTHON` (set by `.ci/run`), else
//! `target/pyenv/bin/python` if `.ci/run` made it. Without either the test says it skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::clients::status;
use crate::clients::*;
use crate::harness::*;

/// The Python to run uvicorn with, or why there is none.
pub fn python() -> Result<PathBuf, String> {
    let (python, explicit) = match std::env::var_os("EDGEWARD_TEST_PYTHON") {
        Some(p) => (PathBuf::from(p), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"),
            false,
        ),
    };
    let works = Command::new(&python)
        .args(["-c", "import fastapi, uvicorn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (works, explicit) {
        (true, _) => Ok(python),
        // Asked for explicitly (CI): a broken environment is a failure, not a skip.
        (false, true) => panic!(
            "EDGEWARD_TEST_PYTHON={} cannot import fastapi and uvicorn",
            python.display()
        ),
        (false, false) => Err(format!(
            "no Python with fastapi and uvicorn (set EDGEWARD_TEST_PYTHON, or run .ci/run once to make {})",
            python.display()
        )),
    }
}

/// A uvicorn process, killed on drop.
struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(python: &Path, dir: &Path) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("uvicorn-{port}.log"))).unwrap();
        let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fastapi");
        let child = Command::new(python)
            .args(["-m", "uvicorn", "app:app", "--app-dir"])
            .arg(&app_dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // The flags examples/fastapi/README.md gives.
            .args([
                "--proxy-headers",
                "--forwarded-allow-ips=127.0.0.1",
                "--root-path",
                "/api",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, port }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example's config with its fixed ports swapped for the harness placeholders.
fn example_config(replicas: &[u16]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fastapi/edgeward.toml");
    let mut text = std::fs::read_to_string(path).unwrap();
    let swaps = [
        ("\"0.0.0.0:8080\"", "\"127.0.0.1:{http}\"".to_owned()),
        ("\"0.0.0.0:8443\"", "\"127.0.0.1:{https}\"".to_owned()),
        ("\"127.0.0.1:9901\"", "\"127.0.0.1:{admin}\"".to_owned()),
        ("\"../../certs\"", "\"{dir}/certs\"".to_owned()),
        (
            "\"127.0.0.1:8001\"",
            format!("\"127.0.0.1:{}\"", replicas[0]),
        ),
        (
            "\"127.0.0.1:8002\"",
            format!("\"127.0.0.1:{}\"", replicas[1]),
        ),
    ];
    for (from, to) in swaps {
        assert!(
            text.contains(from),
            "examples/fastapi/edgeward.toml has {from}"
        );
        text = text.replace(from, &to);
    }
    text
}

fn json(got: &Got) -> serde_json::Value {
    assert_eq!(got.status, 200, "{}", got.text());
    serde_json::from_slice(&got.body).unwrap()
}

#[tokio::test]
async fn fastapi_replicas_see_the_client_scheme_and_root_path() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let logs = tempfile::tempdir().unwrap();
    let replicas = [
        Replica::start(&python, logs.path()),
        Replica::start(&python, logs.path()),
    ];
    for r in &replicas {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], r.port));
        eventually_async("uvicorn is up", || async {
            status(addr, "GET", "/health/ready", &[]).await == Some(200)
        })
        .await;
    }
    let gw = Gateway::start(&example_config(&[replicas[0].port, replicas[1].port])).await;
    let http = gw.addr("http");

    // Plain HTTP from 127.0.0.9, which also tries to claim another address.
    let echo = json(
        &get_from(
            [127, 0, 0, 9],
            http,
            "/api/echo",
            &[("x-forwarded-for", "6.6.6.6")],
        )
        .await
        .unwrap(),
    );
    assert_eq!(echo["client_host"], "127.0.0.9");
    assert_eq!(echo["scheme"], "http");
    assert_eq!(echo["root_path"], "/api");
    assert_eq!(echo["path"], "/api/echo");
    assert_eq!(echo["headers"]["x-forwarded-prefix"], "/api");
    let first_pid = echo["pid"].clone();

    // HTTPS from 127.0.0.10, with the self-signed certificate the gateway made.
    let cfg = trusting(&gw.dir.path().join("certs/self-signed.pem"));
    let echo = json(&get_tls_from(cfg, [127, 0, 0, 10], gw.addr("https"), "/api/echo").await);
    assert_eq!(echo["client_host"], "127.0.0.10");
    assert_eq!(echo["scheme"], "https");
    assert_eq!(echo["root_path"], "/api");
    assert!(
        echo["url"]
            .as_str()
            .unwrap()
            .starts_with("https://localhost/api/echo"),
        "{echo}"
    );
    assert_ne!(
        echo["pid"], first_pid,
        "round-robin reached the second replica"
    );

    // The interactive docs load through the gateway and point at the prefixed schema.
    let docs = get(http, "/api/docs", &[]).await.unwrap();
    assert_eq!(docs.status, 200);
    assert!(
        docs.text().contains("'/api/openapi.json'"),
        "{}",
        docs.text()
    );
    let schema = json(&get(http, "/api/openapi.json", &[]).await.unwrap());
    assert_eq!(schema["info"]["title"], "edgeward example");
    assert_eq!(schema["servers"][0]["url"], "/api");
    assert!(schema["paths"]["/echo"].is_object(), "{schema}");

    // Outside the prefix nothing routes.
    assert_eq!(get(http, "/echo", &[]).await.unwrap().status, 404);
}
