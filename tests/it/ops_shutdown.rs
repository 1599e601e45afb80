//! Container-style shutdown against the real process: not ready at once, keep serving for the
//! propagation delay, stop accepting, drain (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY),
//! end streams and tunnels cleanly at `stream_timeout`, exit 0; a second signal exits at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Response;
use rustix::process::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::clients::status;
use crate::harness::*;

/// An upstream whose `/slow` requests wait on a latch the test releases; everything else
/// answers `fast` at once.
struct Latched {
    up: Upstream,
    slow_seen: Arc<AtomicUsize>,
    latch: Arc<Semaphore>,
}

impl Latched {
    async fn start() -> Self {
        let slow_seen = Arc::new(AtomicUsize::new(0));
        let latch = Arc::new(Semaphore::new(0));
        let (seen2, latch2) = (Arc::clone(&slow_seen), Arc::clone(&latch));
        let up = Upstream::start(move |req| {
            let (seen, latch) = (Arc::clone(&seen2), Arc::clone(&latch2));
            async move {
                if req.uri.path() == "/slow" {
                    seen.fetch_add(1, Ordering::SeqCst);
                    latch.acquire().await.unwrap().forget();
                    return Response::new(full("slow done"));
                }
                Response::new(full("fast"))
            }
        })
        .await;
        Self {
            up,
            slow_seen,
            latch,
        }
    }

    async fn wait_slow(&self, n: usize) {
        eventually("the upstream saw the slow request", || {
            self.slow_seen.load(Ordering::SeqCst) >= n
        })
        .await;
    }

    fn release(&self) {
        self.latch.add_permits(64);
    }
}

fn config(up: SocketAddr, shutdown: &str) -> String {
    format!("{}\n[shutdown]\n{shutdown}\n", simple_config(up, ""))
}

/// Reads until the peer closes; `Err` if the connection was reset instead.
async fn read_to_eof<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, r.read_to_end(&mut out))
        .await
        .expect("the connection is closed in time")?;
    Ok(out)
}

/// Reads until `needle` has arrived.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(needle) {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("data in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn sigterm_serves_through_the_delay_then_drains_in_flight_requests() {
    let app = Latched::start().await;
    let mut gw = Gateway::start(&config(
        app.up.addr,
        "propagation_delay = \"500ms\"\ndrain_timeout = \"20s\"\nstream_timeout = \"20s\"",
    ))
    .await;
    let data = gw.addr("http");

    // An idle keep-alive connection, and one with a request the app is still working on.
    let mut idle = TcpStream::connect(data).await.unwrap();
    idle.write_all(b"GET /fast HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut idle, "fast").await;
    let mut busy = TcpStream::connect(data).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    let busy = tokio::spawn(async move { read_to_eof(&mut busy).await });
    app.wait_slow(1).await;

    gw.signal(Signal::TERM);
    eventually_async("ready turns 503", || async {
        status(gw.admin, "GET", "/health/ready", &[]).await == Some(503)
    })
    .await;
    // During the propagation delay a new connection is still accepted and served.
    let r = get(data, "/fast", &[]).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "fast"));

    eventually_async("new connections are refused after the delay", || {
        refused(data)
    })
    .await;
    // The idle keep-alive connection is closed at once (FIN, nothing written).
    assert_eq!(read_to_eof(&mut idle).await.unwrap(), b"");
    assert!(
        !busy.is_finished(),
        "the in-flight request is still being served"
    );
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "draining, not exited"
    );
    assert_eq!(
        status(gw.admin, "GET", "/health/ready", &[]).await,
        Some(503)
    );

    app.release();
    let got = String::from_utf8(busy.await.unwrap().unwrap()).unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(
        got.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "the last response says the connection closes:\n{got}"
    );
    assert!(got.ends_with("slow done"), "{got}");
    assert!(gw.wait_exit().await.success());
    let log = gw.log();
    assert!(log.contains("requests_cut=0"), "{log}");
    assert_eq!(app.slow_seen.load(Ordering::SeqCst), 1);
}

/// A raw upstream: `/ws` answers 101 and echoes bytes, recording when the gateway half-closes;
/// `/events` sends one server-sent event and never ends.
async fn streaming_upstream(fin_seen: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let fin_seen = Arc::clone(&fin_seen);
            tokio::spawn(async move {
                let head = read_until(&mut s, "\r\n\r\n").await;
                if head.starts_with("GET /ws ") {
                    s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n").await.unwrap();
                    let mut buf = [0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) => {
                                fin_seen.store(true, Ordering::SeqCst);
                                return;
                            }
                            Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                            Err(_) => return,
                        }
                    }
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nb\r\ndata: one\n\n\r\n").await.unwrap();
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_gets_a_fin_and_sse_its_last_chunk_at_stream_timeout() {
    let fin_seen = Arc::new(AtomicBool::new(false));
    let up = streaming_upstream(Arc::clone(&fin_seen)).await;
    let mut gw = Gateway::start(&config(
        up,
        "propagation_delay = \"200ms\"\ndrain_timeout = \"20s\"\nstream_timeout = \"2s\"",
    ))
    .await;
    let data = gw.addr("http");

    let mut ws = TcpStream::connect(data).await.unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nhost: a.test\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let head = read_until(&mut ws, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ws.write_all(b"ping-1").await.unwrap();
    read_until(&mut ws, "ping-1").await;

    let mut sse = TcpStream::connect(data).await.unwrap();
    sse.write_all(b"GET /events HTTP/1.1\r\nhost: a.test\r\n\r\n")
        .await
        .unwrap();
    let sse_head = read_until(&mut sse, "data: one\n\n").await;
    assert!(sse_head.starts_with("HTTP/1.1 200"), "{sse_head}");

    let signalled = Instant::now();
    gw.signal(Signal::TERM);
    eventually_async("draining", || refused(data)).await;
    // Draining, but streams get their grace: the tunnel still carries data both ways.
    ws.write_all(b"ping-2").await.unwrap();
    read_until(&mut ws, "ping-2").await;

    // At stream_timeout: FIN to the client and nothing injected (no WebSocket close frame).
    assert_eq!(read_to_eof(&mut ws).await.unwrap(), b"", "only a FIN");
    assert!(
        signalled.elapsed() >= Duration::from_millis(2200),
        "not before propagation delay + stream_timeout"
    );
    eventually("the upstream side got its FIN too", || {
        fin_seen.load(Ordering::SeqCst)
    })
    .await;
    // The event stream ends with a proper last chunk, not a reset.
    let tail = String::from_utf8(read_to_eof(&mut sse).await.unwrap()).unwrap();
    assert!(tail.ends_with("0\r\n\r\n"), "last chunk sent: {tail:?}");

    assert!(gw.wait_exit().await.success());
    let log = gw.log();
    for field in ["streams_cut=1", "tunnels_cut=1", "requests_cut=0"] {
        assert!(log.contains(field), "{field} in:\n{log}");
    }
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    // During the propagation delay.
    let app = Latched::start().await;
    let mut gw = Gateway::start(&config(
        app.up.addr,
        "propagation_delay = \"60s\"\ndrain_timeout = \"60s\"",
    ))
    .await;
    gw.signal(Signal::TERM);
    eventually_async("ready turns 503", || async {
        status(gw.admin, "GET", "/health/ready", &[]).await == Some(503)
    })
    .await;
    assert_eq!(status(gw.addr("http"), "GET", "/", &[]).await, Some(200));
    gw.signal(Signal::TERM);
    assert!(gw.wait_exit().await.success(), "long before the 60 s delay");
    assert!(gw.log().contains("second signal"));

    // While draining a request that would take longer than the deadline.
    let mut gw = Gateway::start(&config(
        app.up.addr,
        "propagation_delay = \"0s\"\ndrain_timeout = \"60s\"",
    ))
    .await;
    let data = gw.addr("http");
    let busy = tokio::spawn(async move { get(data, "/slow", &[]).await });
    app.wait_slow(1).await;
    gw.signal(Signal::TERM);
    eventually_async("draining", || refused(data)).await;
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "waits for the request"
    );
    gw.signal(Signal::INT);
    assert!(gw.wait_exit().await.success());
    assert!(busy.await.unwrap().is_err(), "the request was cut");
    app.release();
}

#[tokio::test]
async fn sigint_skips_the_propagation_delay() {
    let up = Upstream::ok().await;
    let mut gw = Gateway::start(&config(up.addr, "propagation_delay = \"60s\"")).await;
    let data = gw.addr("http");
    gw.signal(Signal::INT);
    eventually_async("refused long before the 60 s delay", || refused(data)).await;
    assert!(gw.wait_exit().await.success());
    assert!(gw.log().contains("SIGINT"));
}

#[tokio::test]
async fn http2_connections_get_goaway_and_finish_their_streams() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let app = Latched::start().await;
    let mut gw = Gateway::start(&tls_config(
        &pki,
        certs.path(),
        "localhost",
        app.up.addr,
        "[shutdown]\npropagation_delay = \"200ms\"\ndrain_timeout = \"20s\"",
    ))
    .await;
    let https = gw.addr("https");
    let tls = tls_connect(&pki, https, Some("localhost"), &[b"h2"]).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = |path: &str| {
        http::Request::get(format!("https://localhost{path}"))
            .body(())
            .unwrap()
    };
    let (slow, _) = client.send_request(req("/slow"), true).unwrap();
    let slow = tokio::spawn(async move {
        let resp = slow.await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        Ok::<_, h2::Error>((status, data))
    });
    app.wait_slow(1).await;

    gw.signal(Signal::TERM);
    eventually_async("draining", || refused(https)).await;
    // GOAWAY: the open connection takes no new stream.
    let refusal = std::sync::Mutex::new(None);
    eventually_async("a new stream is refused on the open connection", || {
        let client = client.clone();
        let refusal = &refusal;
        async move {
            let err = match client.ready().await {
                Err(err) => err,
                Ok(mut c) => match c.send_request(req("/fast"), true) {
                    Err(err) => err,
                    Ok((resp, _)) => match resp.await {
                        Err(err) => err,
                        Ok(_) => return false,
                    },
                },
            };
            *refusal.lock().unwrap() = Some(err);
            true
        }
    })
    .await;
    let refusal = refusal.into_inner().unwrap().unwrap();
    assert!(
        refusal.is_go_away()
            && refusal.is_remote()
            && refusal.reason() == Some(h2::Reason::NO_ERROR),
        "refused by the server's GOAWAY: {refusal:?}"
    );
    assert!(!slow.is_finished(), "the open stream is still served");

    app.release();
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status.as_u16(), body.as_slice()), (200, &b"slow done"[..]));
    // Its last stream done, the server closes the connection.
    tokio::time::timeout(DEADLINE, conn)
        .await
        .unwrap()
        .unwrap()
        .ok();
    assert!(gw.wait_exit().await.success());
    assert_eq!(
        app.up
            .seen()
            .iter()
            .filter(|s| s.uri.path() == "/fast")
            .count(),
        0
    );
}

#[tokio::test]
async fn requests_past_drain_timeout_are_cut_and_the_exit_is_still_zero() {
    let app = Latched::start().await;
    let mut gw = Gateway::start(&config(
        app.up.addr,
        "propagation_delay = \"0s\"\ndrain_timeout = \"500ms\"\nstream_timeout = \"500ms\"",
    ))
    .await;
    let data = gw.addr("http");
    let busy = tokio::spawn(async move { get(data, "/slow", &[]).await });
    app.wait_slow(1).await;
    gw.signal(Signal::TERM);
    assert!(gw.wait_exit().await.success(), "exit 0 with a request cut");
    assert!(busy.await.unwrap().is_err(), "the request was cut");
    let log = gw.log();
    assert!(log.contains("requests_cut=1"), "{log}");
    app.release();
}
