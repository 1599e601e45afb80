//! Test upstreams (a real hyper HTTP/1.1 server and a silent raw one), request bodies and
//! small helpers for the pool tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::upstream::pool::{Pool, PoolSettings, PooledBody, SendError};

pub(super) type TestBody = BoxBody<Bytes, Infallible>;

pub(super) const DEADLINE: Duration = Duration::from_secs(10);

/// A real hyper HTTP/1.1 server on 127.0.0.1:0 that counts what it sees.
///
/// Paths: `/` answers "ok"; `/hold` waits for a latch permit; `/big-head` sends a 64 KiB
/// header; `/large` a 1 MiB body; `/upload` counts the request body as it streams in;
/// `/upgrade` switches protocols and echoes raw bytes. Every response says which connection
/// served it in `x-conn`.
pub(super) struct Upstream {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<State>,
}

pub(super) struct State {
    accepted: AtomicUsize,
    closed: AtomicUsize,
    requests: AtomicUsize,
    held: AtomicUsize,
    latch: Semaphore,
    pub(super) uploaded: AtomicUsize,
    kill: watch::Sender<u64>,
}

impl Upstream {
    pub(super) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            accepted: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            latch: Semaphore::new(0),
            uploaded: AtomicUsize::new(0),
            kill: watch::Sender::new(0),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut kill = state.kill.subscribe();
                    let service = {
                        let state = Arc::clone(&state);
                        service_fn(move |req| respond(Arc::clone(&state), id, req))
                    };
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = connection => {}
                        _ = kill.changed() => {}
                    }
                    state.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, state }
    }

    pub(super) fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    pub(super) fn closed(&self) -> usize {
        self.state.closed.load(Ordering::SeqCst)
    }

    pub(super) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub(super) fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    pub(super) fn release(&self, n: usize) {
        self.state.latch.add_permits(n);
    }

    /// Close every open connection at once, without a `Connection: close`.
    pub(super) fn drop_connections(&self) {
        self.state.kill.send_modify(|generation| *generation += 1);
    }
}

async fn respond(
    state: Arc<State>,
    conn: usize,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut response = Response::builder().header("x-conn", conn);
    let body = match req.uri().path() {
        "/hold" => {
            state.held.fetch_add(1, Ordering::SeqCst);
            state.latch.acquire().await.unwrap().forget();
            Bytes::from_static(b"held")
        }
        "/big-head" => {
            response = response.header("x-big", "a".repeat(64 * 1024));
            Bytes::from_static(b"big")
        }
        "/large" => Bytes::from(vec![b'x'; 1024 * 1024]),
        "/empty" => {
            response = response.status(StatusCode::NO_CONTENT);
            Bytes::new()
        }
        "/upload" => {
            let mut total = 0;
            while let Some(Ok(frame)) = req.body_mut().frame().await {
                if let Some(data) = frame.data_ref() {
                    total += data.len();
                    state.uploaded.fetch_add(data.len(), Ordering::SeqCst);
                }
            }
            Bytes::from(total.to_string())
        }
        "/upgrade" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgrade.await.unwrap());
                let mut buf = [0; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(&buf).await.unwrap();
            });
            response = response
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "echo");
            Bytes::new()
        }
        _ => Bytes::from_static(b"ok"),
    };
    Ok(response.body(Full::new(body)).unwrap())
}

pub(super) fn settings() -> PoolSettings {
    PoolSettings {
        max_connections: 8,
        queue_timeout: DEADLINE,
        idle_timeout: Duration::from_secs(60),
        connect_timeout: Some(DEADLINE),
        max_response_header: 16 * 1024,
    }
}

pub(super) fn get(path: &str) -> Request<TestBody> {
    Request::get(path)
        .header("host", "app")
        .body(Empty::new().boxed())
        .unwrap()
}

/// [`Pool::send`] for a whole request, as the proxy sends one: the head kept here, the body
/// handed over.
pub(super) async fn send_req(
    pool: &Pool<TestBody>,
    req: Request<TestBody>,
    header_timeout: Option<Duration>,
) -> Result<Response<PooledBody>, SendError<TestBody>> {
    let (head, body) = req.into_parts();
    pool.send(&head, body, &[], header_timeout, Instant::now())
        .await
}

/// Send a request and read the whole response body.
pub(super) async fn fetch(pool: &Pool<TestBody>, req: Request<TestBody>) -> (Response<()>, Bytes) {
    let response = send_req(pool, req, None).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

pub(super) fn conn_id<T>(response: &Response<T>) -> String {
    response.headers()["x-conn"].to_str().unwrap().to_owned()
}

/// Poll `condition` until it holds, failing after `DEADLINE`.
pub(super) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A raw TCP upstream that never answers: it reads the request head first when `read_head`,
/// then closes. Returns its address and a count of accepted connections.
pub(super) async fn silent_upstream(read_head: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut buf = [0; 1024];
            while read_head && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        }
    });
    (addr, accepted)
}

/// A request body fed by the test, one chunk at a time.
pub(super) struct ChannelBody(pub(super) mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

/// 64 MiB produced on demand; records how far production ever ran ahead of the app.
pub(super) struct Generated {
    pub(super) chunks_left: usize,
    pub(super) chunk: Bytes,
    pub(super) produced: usize,
    pub(super) upstream: Arc<State>,
    pub(super) max_ahead: Arc<AtomicUsize>,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.chunks_left == 0 {
            return Poll::Ready(None);
        }
        let ahead = self.produced - self.upstream.uploaded.load(Ordering::SeqCst);
        self.max_ahead.fetch_max(ahead, Ordering::SeqCst);
        self.chunks_left -= 1;
        self.produced += self.chunk.len();
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

/// A raw TCP upstream that runs `serve` on every connection it accepts, for answers a real
/// server would not give (split at odd places, close-delimited, early). Returns its address
/// and a count of accepted connections.
pub(super) async fn scripted_upstream<F, Fut>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (addr, accepted)
}

/// Reads one request head; `None` at EOF.
pub(super) async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push(byte[0]),
        }
    }
    Some(head)
}

/// Writes `parts` one at a time, flushed, with a pause between them so each arrives on its own.
pub(super) async fn write_in_pieces(stream: &mut tokio::net::TcpStream, parts: &[&[u8]]) {
    for part in parts {
        stream.write_all(part).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
