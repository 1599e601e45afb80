//! `edgeward probe URL`: exit 0 on a 2xx answer, 1 on anything else, for container
//! HEALTHCHECKs where there is no shell or curl.

use http::{Response, StatusCode};
use tokio::net::TcpListener;

use crate::harness::*;

/// Runs `edgeward probe <args>` and returns its exit code and stderr.
async fn probe(args: &[&str]) -> (i32, String) {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_edgeward"))
            .arg("probe")
            .args(args)
            .output(),
    )
    .await
    .expect("probe returns in time")
    .unwrap();
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn probe_exit_codes() {
    let up = Upstream::start(|seen| async move {
        let status = match seen.uri.path() {
            "/ok" => StatusCode::OK,
            "/empty" => StatusCode::NO_CONTENT,
            "/moved" => StatusCode::FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut resp = Response::new(full("x"));
        *resp.status_mut() = status;
        resp
    })
    .await;
    let base = format!("http://{}", up.addr);

    assert_eq!(probe(&[&format!("{base}/ok")]).await.0, 0);
    assert_eq!(probe(&[&format!("{base}/empty")]).await.0, 0);
    let (code, err) = probe(&[&format!("{base}/ready")]).await;
    assert_eq!(code, 1);
    assert!(err.contains("503"), "{err}");
    assert_eq!(
        probe(&[&format!("{base}/moved")]).await.0,
        1,
        "3xx is not healthy"
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.headers["user-agent"] == "edgeward-probe")
    );
    assert_eq!(seen[0].headers["host"], up.addr.to_string());

    // Nothing listening.
    let (code, err) = probe(&[&format!("http://{}/health/live", dead_addr())]).await;
    assert_eq!(code, 1);
    assert!(!err.is_empty(), "says why");

    // Not a URL it can probe.
    for bad in [
        "not a url",
        "https://127.0.0.1:9902/health/live",
        "http:///health",
        "127.0.0.1:9902",
    ] {
        let (code, err) = probe(&[bad]).await;
        assert_eq!(code, 1, "{bad}");
        assert!(err.contains("http://"), "{bad}: {err}");
    }

    // Accepts and never answers: gives up after --timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (code, err) = probe(&["--timeout", "1", &format!("http://{addr}/health/ready")]).await;
    assert_eq!(code, 1);
    assert!(err.contains("timed out"), "{err}");
}

#[tokio::test]
async fn probe_follows_the_gateway_readiness() {
    let mut gw = Gateway::start(&format!(
        "{}\n[probe]\nlisten = \"127.0.0.1:{{probe}}\"\n\n[shutdown]\npropagation_delay = \"60s\"\n",
        simple_config(dead_addr(), "")
    ))
    .await;
    let ready = format!("http://{}/health/ready", gw.addr("probe"));
    let live = format!("http://{}/health/live", gw.addr("probe"));
    assert_eq!(probe(&[&ready]).await.0, 0);
    gw.signal(rustix::process::Signal::TERM);
    eventually_async("ready probe fails once shutting down", || async {
        probe(&[&ready]).await.0 == 1
    })
    .await;
    assert_eq!(probe(&[&live]).await.0, 0, "still live while draining");
    gw.signal(rustix::process::Signal::TERM);
    assert!(gw.wait_exit().await.success());
}
