//! One upstream connection and one request/response exchange on it, driven by the request's
//! own task.
//!
//! hyper's client runs each connection in a task of its own and hands requests and responses
//! across channels: every request wakes two tasks and a response body crosses a channel
//! chunk by chunk. Here the request's task writes the head, uploads the body and reads the
//! response itself, and an idle connection is just a socket in the idle list. A closed idle
//! connection is noticed from the socket's readiness when it is checked out (no syscall when
//! nothing happened) and by the reaper.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, request};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use super::error::{BoxError, ErrorKind};
use super::wire::{self, Decoded, Decoder, RequestFraming, ResponseHead, WireError};
use crate::http1::framing::{Names, read_buffered};

/// First read buffer size; it doubles while reads fill it, up to [`MAX_READ`].
const MIN_READ: usize = 8 * 1024;
/// Largest read buffer (large bodies move in chunks this big, as with hyper's adaptive reads).
const MAX_READ: usize = 64 * 1024;
/// Chunks of a request body queued for the socket at most (data plus chunk framing).
const MAX_QUEUED: usize = 3;

/// The socket and its buffers.
pub(super) struct Io {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    read_size: usize,
    /// The request head being written (its allocation is reused).
    head: Vec<u8>,
    /// The `upstream_header` timer, made once per connection and re-armed per request.
    timer: Option<Pin<Box<Sleep>>>,
    /// The previous response's header names.
    names: Names,
    /// Holds the connection's slot in the pool for as long as the socket is open.
    _slot: OwnedSemaphorePermit,
}

impl Io {
    pub(super) fn new(stream: TcpStream, slot: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            read: BytesMut::new(),
            read_size: MIN_READ,
            head: Vec::new(),
            timer: None,
            names: Names::default(),
            _slot: slot,
        }
    }

    /// Whether the upstream closed (or wrote to) the connection while it sat idle. Costs a
    /// syscall only when the socket has signalled something since the last read.
    pub(super) fn is_closed(&mut self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            // Readable: EOF, an error, stray bytes, or a stale signal (`WouldBlock`).
            Poll::Ready(Ok(())) => !matches!(
                self.stream.try_read(&mut [0; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    fn arm_timer(&mut self, deadline: Instant) {
        match &mut self.timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn timer_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }

    /// Reads more into the buffer. `Ok(0)` is EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < self.read_size / 2 {
            self.read.reserve(self.read_size);
        }
        let spare = self.read.capacity() - self.read.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.read
        ))?;
        if n == spare {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(MIN_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Takes the next piece of a response body, reading from the socket when the buffer has
    /// nothing for the decoder.
    pub(super) fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        decoder: &mut Decoder,
        max_trailers: usize,
    ) -> Poll<Result<Decoded, WireError>> {
        loop {
            match decoder.decode(&mut self.read, max_trailers)? {
                Decoded::More => {}
                decoded => return Poll::Ready(Ok(decoded)),
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    decoder.eof()?;
                    return Poll::Ready(Ok(Decoded::End));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(io_failure(&e))),
            }
        }
    }

    /// Whether nothing was left over after the response (a reusable connection has no stray
    /// bytes).
    pub(super) fn is_clean(&self) -> bool {
        self.read.is_empty()
    }

    /// Hands the socket over for a tunnel, with whatever the upstream already sent.
    pub(super) fn into_upgraded(self) -> Upgraded {
        Upgraded {
            stream: self.stream,
            buffered: self.read.freeze(),
        }
    }

    /// Bytes read and not yet consumed.
    pub(super) fn buffered(&self) -> usize {
        self.read.len()
    }

    /// Decodes a body that is already whole in the buffer.
    pub(super) fn take_body(&mut self, decoder: &mut Decoder) -> Option<Bytes> {
        match decoder.decode(&mut self.read, 0) {
            Ok(Decoded::Data(data)) => Some(data),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.read.capacity()
    }

    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Bounds on one exchange.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Largest response head.
    pub(super) max_head: usize,
    /// Longest wait for the response head once the request is written.
    pub(super) header_timeout: Option<Duration>,
    /// The clock read just before the exchange. It stands for the moment the request went
    /// out when the head was written at once and no body follows; otherwise the clock is
    /// read again once the request is out.
    pub(super) begun: Instant,
}

/// The outcome of a failed exchange.
pub(super) enum Failed<B> {
    /// Nothing reached the upstream: the body comes back whole (the caller kept the head).
    Unsent(B, BoxError, ErrorKind),
    /// Some or all of the request was written; the connection is unusable. The body was
    /// consumed; a replayable request is sent again from the head the caller kept.
    Lost(BoxError, ErrorKind),
}

/// Sends the request (`parts`, which the caller keeps, and `body`) on `io` and reads the
/// response head. A request body still uploading when the head arrives (an early answer, or
/// a full-duplex app) is left in `upload` to be finished alongside the response body. An
/// `async` block rather than an `async fn`, for the reason given at `service::handle`.
#[expect(clippy::manual_async_fn, reason = "no second copy of the arguments")]
pub(super) fn exchange<B>(
    io: &mut Io,
    upload: &mut Option<Upload<B>>,
    parts: &request::Parts,
    body: B,
    added: &[(HeaderName, HeaderValue)],
    limits: Limits,
) -> impl Future<Output = Result<ResponseHead, Failed<B>>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    async move {
        let (framing, add) = match wire::request_framing(
            &parts.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        ) {
            Ok(framing) => framing,
            Err(e) => {
                let kind = e.kind;
                return Err(Failed::Unsent(body, e.into(), kind));
            }
        };
        wire::encode_head(&mut io.head, parts, added, framing, add);

        // The first write decides whether the request can come back: if the socket refuses it
        // outright (the upstream reset an idle connection), nothing was sent.
        let mut written =
            match poll_fn(|cx| Pin::new(&mut io.stream).poll_write(cx, &io.head)).await {
                Ok(n) => n,
                Err(e) => {
                    let kind = io_kind(&e);
                    return Err(Failed::Unsent(body, e.into(), kind));
                }
            };
        let mut sent_at = Some(limits.begun);
        while written < io.head.len() {
            sent_at = None;
            match poll_fn(|cx| Pin::new(&mut io.stream).poll_write(cx, &io.head[written..])).await {
                Ok(0) => return Err(lost(io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) => return Err(lost(e)),
            }
        }
        if framing != RequestFraming::Empty {
            *upload = Some(Upload::new(body, framing));
            sent_at = None;
        }

        let mut write_error = None;
        let mut armed = false;
        poll_fn(|cx| {
            if let Some(up) = upload.as_mut().filter(|up| !up.is_done()) {
                match up.poll(cx, &mut io.stream) {
                    // The client's body failed (too large, idle, gone): the exchange is over.
                    Poll::Ready(Err(UploadError::Body(e))) => return Poll::Ready(Err(e)),
                    // Keep reading: the upstream may have answered (413, 401) before it stopped
                    // reading. The upload is over either way.
                    Poll::Ready(Err(UploadError::Socket(e))) => {
                        up.fail();
                        write_error.get_or_insert(e);
                    }
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                }
            }
            if let Poll::Ready(head) = poll_head(io, cx, &parts.method, limits.max_head) {
                return Poll::Ready(head);
            }
            // The `upstream_header` clock starts once the whole request is out.
            if let Some(after) = limits.header_timeout {
                if upload.as_ref().is_none_or(Upload::is_done) {
                    if !armed {
                        io.arm_timer(sent_at.unwrap_or_else(Instant::now) + after);
                        armed = true;
                    }
                    if io.timer_expired(cx) {
                        return Poll::Ready(Err(WireError {
                            kind: ErrorKind::HeaderTimeout,
                            what: "no response head within upstream_header",
                        }));
                    }
                }
            }
            Poll::Pending
        })
        .await
        .map_err(|e| {
            // A refused write explains a close better than the close itself.
            let e = match write_error.take() {
                Some(w) if e.kind == ErrorKind::Closed => w,
                _ => e,
            };
            let kind = e.kind;
            Failed::Lost(e.into(), kind)
        })
    }
}

fn poll_head(
    io: &mut Io,
    cx: &mut Context<'_>,
    method: &Method,
    max: usize,
) -> Poll<Result<ResponseHead, WireError>> {
    loop {
        if !io.read.is_empty() {
            if let Some(head) = wire::parse_head(&mut io.read, &mut io.names, method, max)? {
                return Poll::Ready(Ok(head));
            }
        }
        match ready!(io.poll_fill(cx)) {
            Ok(0) => {
                return Poll::Ready(Err(WireError {
                    kind: ErrorKind::Closed,
                    what: "the upstream closed the connection before a full response head",
                }));
            }
            Ok(_) => {}
            Err(e) => return Poll::Ready(Err(io_failure(&e))),
        }
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
        _ => ErrorKind::Other,
    }
}

fn io_failure(e: &io::Error) -> WireError {
    WireError {
        kind: io_kind(e),
        what: match io_kind(e) {
            ErrorKind::Reset => "the upstream reset the connection",
            ErrorKind::Closed => "the upstream closed the connection",
            _ => "reading from the upstream failed",
        },
    }
}

fn lost<B>(e: io::Error) -> Failed<B> {
    let kind = io_kind(&e);
    Failed::Lost(e.into(), kind)
}

/// Why an upload stopped.
pub(super) enum UploadError {
    /// The body itself failed or broke its framing: nothing more can be sent.
    Body(WireError),
    /// The socket refused it; the upstream may still have answered.
    Socket(WireError),
}

impl UploadError {
    pub(super) fn into_inner(self) -> WireError {
        match self {
            Self::Body(e) | Self::Socket(e) => e,
        }
    }
}

/// A request body on its way to the upstream, framed by length or chunked, with at most a
/// few chunks queued (backpressure comes from the socket).
pub(super) struct Upload<B> {
    body: B,
    framing: RequestFraming,
    /// Length framing: bytes still owed.
    left: u64,
    queue: VecDeque<Bytes>,
    state: UploadState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UploadState {
    Sending,
    /// The body ended; the queue drains.
    Finishing,
    Done,
    Failed,
}

impl<B> Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn new(body: B, framing: RequestFraming) -> Self {
        let left = match framing {
            RequestFraming::Length(len) => len,
            _ => 0,
        };
        Self {
            body,
            framing,
            left,
            queue: VecDeque::with_capacity(MAX_QUEUED),
            state: UploadState::Sending,
        }
    }

    /// Sent in full.
    pub(super) fn is_done(&self) -> bool {
        matches!(self.state, UploadState::Done | UploadState::Failed)
    }

    /// Every byte reached the socket (the connection can carry another request).
    pub(super) fn is_complete(&self) -> bool {
        self.state == UploadState::Done
    }

    pub(super) fn fail(&mut self) {
        self.state = UploadState::Failed;
        self.queue.clear();
    }

    /// Moves the body along; `Ready(Ok)` once it is all written.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            if !self.queue.is_empty() {
                let slices: [IoSlice<'_>; MAX_QUEUED] = std::array::from_fn(|i| {
                    IoSlice::new(self.queue.get(i).map_or(&[][..], |b| &b[..]))
                });
                let n = match ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices)) {
                    Ok(0) => {
                        let e = io::ErrorKind::WriteZero.into();
                        return Poll::Ready(Err(UploadError::Socket(io_failure(&e))));
                    }
                    Ok(n) => n,
                    Err(e) => return Poll::Ready(Err(UploadError::Socket(io_failure(&e)))),
                };
                self.advance(n);
                continue;
            }
            match self.state {
                UploadState::Done | UploadState::Failed => return Poll::Ready(Ok(())),
                UploadState::Finishing => {
                    self.state = UploadState::Done;
                    return Poll::Ready(Ok(()));
                }
                UploadState::Sending => {}
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers are not forwarded upstream.
                        continue;
                    };
                    self.queue_data(data).map_err(UploadError::Body)?;
                }
                Some(Err(_)) => {
                    let e = WireError::invalid("the request body failed");
                    return Poll::Ready(Err(UploadError::Body(e)));
                }
                None => {
                    if self.framing == RequestFraming::Chunked {
                        self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    } else if self.left != 0 {
                        let e =
                            WireError::invalid("the request body ended before its content-length");
                        return Poll::Ready(Err(UploadError::Body(e)));
                    }
                    self.state = UploadState::Finishing;
                }
            }
        }
    }

    fn queue_data(&mut self, data: Bytes) -> Result<(), WireError> {
        if data.is_empty() {
            return Ok(());
        }
        match self.framing {
            RequestFraming::Chunked => {
                self.queue.push_back(wire::chunk_line(data.len()));
                self.queue.push_back(data);
                self.queue.push_back(Bytes::from_static(b"\r\n"));
            }
            _ => {
                let len = data.len() as u64;
                if len > self.left {
                    return Err(WireError::invalid(
                        "the request body is longer than its content-length",
                    ));
                }
                self.left -= len;
                self.queue.push_back(data);
            }
        }
        Ok(())
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.queue.pop_front();
        }
    }
}

/// The upstream side of an upgraded connection (WebSocket): the socket, with the bytes the
/// upstream sent right after its `101` served first.
pub struct Upgraded {
    stream: TcpStream,
    buffered: Bytes,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("buffered", &self.buffered.len())
            .finish()
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if read_buffered(&mut this.buffered, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
