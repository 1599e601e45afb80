//! The data plane's HTTP/1.1 server connections.
//!
//! One task per connection reads a request head, calls the service, and writes the response,
//! in that task and without channels: the request body is read from the socket by whoever
//! polls it (the proxy's upload, in the same task), and the response is written frame by
//! frame as the body yields them, the head and a body that is ready together in one write.
//! hyper's server does the same job with a dispatcher between the socket and the service;
//! doing it here saves that layer on every request of the hot path (see `benches/README.md`).
//!
//! The parse is strict (RFC 9112): a head that could be read two ways — conflicting lengths,
//! a transfer coding with a length, a coding other than `chunked`, `Transfer-Encoding` on
//! HTTP/1.0, obs-fold, whitespace before a colon — gets a 4xx (or 501) and the connection
//! closes; it never reaches the service. Responses are framed by this connection: their
//! `Content-Length`, else the body's exact size, else chunked (HTTP/1.1) or close-delimited
//! (HTTP/1.0). Keep-alive follows the client's `Connection`, the close signal (drain,
//! request limit, idle shedding) and the connection's age; a request whose body was not read
//! closes the connection after its response, with a bounded lingering read so the client
//! sees the response rather than a reset. `request_header` bounds both the idle gap before a
//! head and the head itself, as hyper's header-read timeout did. An `Upgrade` request gets an
//! [`OnUpgrade`] in its extensions, resolved with the connection once a `101` is written.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};
use http_body::Body;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

pub mod framing;
mod head;
mod wire;

pub use head::Limits;
pub use wire::{Io, NotUpgraded, OnUpgrade, RecvBody, Upgraded};

use head::{Facts, Framing, Out};
use wire::{Shared, Upgrade, Wire, lock};

/// How long a connection that closes with a request body unread keeps reading (and
/// discarding) it, so the client gets to read the response instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// How much of an unread body lingering discards at most.
const LINGER_BYTES: usize = 256 * 1024;

/// A connection's settings, read from the snapshot when it was accepted.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Bounds on a request head.
    pub limits: Limits,
    /// The longest wait for a request head, the idle gap before it included
    /// (`timeouts.request_header`).
    pub header_timeout: Duration,
    /// The connection finishes after this long (the caller adds any jitter).
    pub max_age: Option<Duration>,
}

/// What waiting for a request ended with. The large variant is the common one: boxing it would
/// cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(Request<()>, Facts),
    Refused(head::Refused),
    End,
}

/// Serves requests on `io` until the client leaves, the connection is asked to finish
/// (`close`), or a request cannot be followed by another. Never fails: what goes wrong is
/// logged at debug level and ends the connection.
pub async fn serve<S, F, B>(
    io: impl Io,
    settings: &Settings,
    close: &CancellationToken,
    mut service: S,
) where
    S: FnMut(Request<RecvBody>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let wire: Shared = Arc::new(Mutex::new(Wire::new(io)));
    let limits = settings.limits;
    let (mut out, mut pieces) = (Vec::new(), Vec::new());
    // One timer per connection, re-armed per request (pushing a deadline later is cheap).
    let mut header_timer = pin!(tokio::time::sleep(settings.header_timeout));
    let expires = settings.max_age.map(|age| Instant::now() + age);
    let mut aged = expires.map(|at| Box::pin(tokio::time::sleep_until(at)));
    let mut closing = pin!(close.cancelled());

    loop {
        header_timer
            .as_mut()
            .reset(Instant::now() + settings.header_timeout);
        let next = poll_fn(|cx| {
            poll_head(
                cx,
                &wire,
                limits,
                closing.as_mut(),
                aged.as_mut(),
                header_timer.as_mut(),
            )
        })
        .await;
        let (request, facts) = match next {
            Next::Request(request, facts) => (request, facts),
            Next::Refused(refused) => {
                tracing::debug!(status = %refused.status, "request refused: {}", refused.what);
                let answer = head::refusal(refused.status);
                if write_all(&wire, &answer).await.is_ok() {
                    linger(&wire, true).await;
                }
                return;
            }
            Next::End => return,
        };

        lock(&wire).start_body(facts.framing, facts.expects_continue);
        let body = match facts.framing {
            Framing::Empty => RecvBody::empty(),
            _ => RecvBody::streaming(Arc::clone(&wire), limits.max_head),
        };
        let mut request = request.map(|()| body);
        let upgrade = facts.upgrade.then(|| {
            let (upgrade, on_upgrade) = Upgrade::pair();
            request.extensions_mut().insert(on_upgrade);
            upgrade
        });

        let mut call = pin!(service(request));
        let called = poll_fn(|cx| poll_call(cx, &wire, call.as_mut())).await;
        let Some(response) = called else {
            tracing::debug!("client closed the connection before its response");
            return;
        };

        let mut keep_alive = facts.keep_alive
            && !close.is_cancelled()
            && expires.is_none_or(|at| Instant::now() < at);
        let mut unread = false;
        // Answered before the body was asked for, the client gets no 100 (and may not send
        // the body at all); a 100 the socket took only part of is finished first.
        let continue_written;
        {
            let mut w = lock(&wire);
            continue_written = match w.continue_owed.take() {
                Some(written) if written > 0 => written,
                _ => wire::CONTINUE.len(),
            };
            if !w.body_done() && !w.skip_buffered_body(limits.max_head) {
                keep_alive = false;
                unread = true;
            }
        }
        let exact = response.body().size_hint().exact();
        let framing = head::encode(&mut out, &response, exact, &facts, &mut keep_alive);
        if continue_written < wire::CONTINUE.len() {
            out.splice(0..0, wire::CONTINUE[continue_written..].iter().copied());
        }

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(upgrade) = upgrade.filter(|_| !unread) else {
                tracing::debug!("101 without an upgrade request; closing");
                return;
            };
            if write_all(&wire, &out).await.is_ok() {
                upgrade.complete(wire);
            }
            return;
        }
        drop(upgrade);

        let body = pin!(response.into_body());
        let sent = send_body(&wire, &mut out, &mut pieces, body, framing, facts.trailers);
        if let Err(err) = sent.await {
            tracing::debug!("response not completed: {err}");
            return;
        }
        if !keep_alive {
            linger(&wire, unread).await;
            return;
        }
    }
}

/// Waits for the next request head: parses what arrives, and ends the wait when the client
/// leaves, the head takes too long, or (between requests) the connection is asked to finish.
fn poll_head(
    cx: &mut Context<'_>,
    wire: &Shared,
    limits: Limits,
    closing: Pin<&mut WaitForCancellationFuture<'_>>,
    aged: Option<&mut Pin<Box<Sleep>>>,
    timer: Pin<&mut Sleep>,
) -> Poll<Next> {
    let mut w = lock(wire);
    loop {
        // A head that did not come whole is parsed again only once its end has arrived (or
        // it reached the limit), so a client dribbling it a byte at a time costs one scan of
        // each byte instead of a parse of the whole head per read.
        let parse = match w.partial_head {
            _ if w.read.is_empty() => false,
            0 => true,
            seen => w.read.len() >= limits.max_head || head::ends_after(&w.read, seen),
        };
        if parse {
            let parsed = {
                let w = &mut *w;
                head::parse(&mut w.read, &mut w.names, limits)
            };
            match parsed {
                Ok(Some((request, facts))) => {
                    w.partial_head = 0;
                    return Poll::Ready(Next::Request(request, facts));
                }
                Ok(None) => w.partial_head = w.read.len(),
                Err(refused) => return Poll::Ready(Next::Refused(refused)),
            }
        } else if w.partial_head > 0 {
            w.partial_head = w.read.len();
        }
        if w.eof {
            return Poll::Ready(Next::End);
        }
        match w.poll_fill(cx) {
            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Next::End),
            Poll::Ready(Ok(_)) => {}
            Poll::Pending => break,
        }
    }
    // Between requests (nothing of the next one read yet), the connection may be asked to
    // finish; a head that has started is answered first. (Polling `closing` checks the token
    // itself first: a second check would take its lock once more.)
    let between = w.read.is_empty();
    drop(w);
    if between && closing.poll(cx).is_ready() {
        return Poll::Ready(Next::End);
    }
    if between && aged.is_some_and(|aged| aged.as_mut().poll(cx).is_ready()) {
        return Poll::Ready(Next::End);
    }
    if timer.poll(cx).is_ready() {
        tracing::debug!("no complete request head within request_header");
        return Poll::Ready(Next::End);
    }
    Poll::Pending
}

/// Polls the service. Once the request (body included) has been read, the socket is watched
/// too: a client that closes its side gets `None` and its request is dropped (the app's
/// request is then cancelled), as hyper did; bytes of a pipelined next request are kept for
/// later. (A poll function rather than an `async fn` taking the future, which would move the
/// service's large future once more per request.)
fn poll_call<R>(
    cx: &mut Context<'_>,
    wire: &Shared,
    call: Pin<&mut impl Future<Output = R>>,
) -> Poll<Option<R>> {
    if let Poll::Ready(response) = call.poll(cx) {
        return Poll::Ready(Some(response));
    }
    let mut w = lock(wire);
    if w.body_done() && w.read.is_empty() {
        if let Poll::Ready(Ok(0) | Err(_)) = w.poll_fill(cx) {
            return Poll::Ready(None);
        }
    }
    Poll::Pending
}

/// Why a response could not be completed; the connection then closes without finishing it.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("writing to the client: {0}")]
    Io(#[from] io::Error),
    #[error("response body: {0}")]
    Body(String),
    #[error("response body longer than its content-length")]
    TooLong,
    #[error("response body shorter than its content-length")]
    TooShort,
}

/// Most pieces queued after the head: a body frame, the CRLF that ends its chunk, and the
/// last chunk.
const MAX_PIECES: usize = 3;

/// What goes to the socket next: the head (or chunk framing, written into the same buffer),
/// then at most one body frame with its framing, written together with vectored writes. Both
/// buffers belong to the connection and keep their allocations from one response to the next.
///
/// One frame at a time on purpose: a frame is a slice of the pool's read buffer, and holding
/// it while the pool reads the next one would keep the buffer from being reused (a fresh
/// allocation per large response, and reads cut at its size).
struct Output<'a> {
    head: &'a mut Vec<u8>,
    head_at: usize,
    pieces: &'a mut Vec<Bytes>,
    /// Pieces of `pieces` already written.
    first: usize,
}

impl Output<'_> {
    fn is_empty(&self) -> bool {
        self.head_at == self.head.len() && self.first == self.pieces.len()
    }

    /// Whether a body frame may be queued: none is waiting to be written.
    fn has_room(&self) -> bool {
        self.pieces.is_empty()
    }

    fn push(&mut self, piece: Bytes) {
        debug_assert!(self.pieces.len() < MAX_PIECES);
        self.pieces.push(piece);
    }

    /// Appends framing bytes: into the head buffer while nothing follows it, else as a piece.
    fn push_framing(&mut self, framing: &[u8]) {
        if self.pieces.is_empty() {
            self.head.extend_from_slice(framing);
        } else {
            self.push(Bytes::copy_from_slice(framing));
        }
    }

    /// Writes everything queued.
    fn poll_write(&mut self, cx: &mut Context<'_>, wire: &Shared) -> Poll<io::Result<()>> {
        let mut w = lock(wire);
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_PIECES + 1];
            slices[0] = IoSlice::new(&self.head[self.head_at..]);
            let mut count = 1;
            for piece in &self.pieces[self.first..] {
                slices[count] = IoSlice::new(piece);
                count += 1;
            }
            let mut n = ready!(Pin::new(&mut w.io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_head = n.min(self.head.len() - self.head_at);
            self.head_at += from_head;
            n -= from_head;
            while n > 0 {
                let piece = &mut self.pieces[self.first];
                let taken = n.min(piece.len());
                piece.advance(taken);
                n -= taken;
                if piece.is_empty() {
                    self.first += 1;
                }
            }
        }
        self.head.clear();
        self.head_at = 0;
        self.pieces.clear();
        self.first = 0;
        Poll::Ready(Ok(()))
    }
}

/// Writes the head already in `head` and the body as `framing` says: the head with the first
/// frame when it is ready, and the last chunk with the last frame when the body knows it has
/// ended, each in one vectored write.
async fn send_body<B>(
    wire: &Shared,
    head: &mut Vec<u8>,
    pieces: &mut Vec<Bytes>,
    mut body: Pin<&mut B>,
    framing: Out,
    trailers: bool,
) -> Result<(), SendError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let chunked = framing == Out::Chunked;
    let mut left = match framing {
        Out::Length(len) => Some(len),
        _ => None,
    };
    let mut done = framing == Out::None;
    let mut output = Output {
        head,
        head_at: 0,
        pieces,
        first: 0,
    };
    poll_fn(|cx| {
        loop {
            while !done && output.has_room() {
                let frame = match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => frame,
                    Poll::Ready(Some(Err(err))) => {
                        return Poll::Ready(Err(SendError::Body(err.to_string())));
                    }
                    Poll::Ready(None) => {
                        if left.is_some_and(|left| left > 0) {
                            return Poll::Ready(Err(SendError::TooShort));
                        }
                        if chunked {
                            output.push_framing(b"0\r\n\r\n");
                        }
                        done = true;
                        break;
                    }
                    Poll::Pending => break,
                };
                match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        if let Some(left) = &mut left {
                            *left = left
                                .checked_sub(data.len() as u64)
                                .ok_or(SendError::TooLong)?;
                        }
                        if chunked {
                            output.push_framing(&framing::chunk_line(data.len()));
                            output.push(data);
                            output.push(Bytes::from_static(b"\r\n"));
                        } else {
                            output.push(data);
                        }
                        // A body that knows it is over needs no further poll.
                        if body.is_end_stream() && left.is_none_or(|left| left == 0) {
                            if chunked {
                                output.push(Bytes::from_static(b"0\r\n\r\n"));
                            }
                            done = true;
                        }
                    }
                    Err(frame) => {
                        // Trailers end a chunked body; other framings have nowhere to put them.
                        if let (true, Ok(fields)) = (chunked, frame.into_trailers()) {
                            let mut last = b"0\r\n".to_vec();
                            if trailers {
                                for (name, value) in &fields {
                                    framing::push_field(&mut last, name, value);
                                }
                            }
                            last.extend_from_slice(b"\r\n");
                            output.push_framing(&last);
                            done = true;
                        }
                    }
                }
            }
            if output.is_empty() {
                ready!(Pin::new(&mut lock(wire).io).poll_flush(cx))?;
                return if done {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            ready!(output.poll_write(cx, wire))?;
        }
    })
    .await
}

/// Writes `bytes` and flushes.
async fn write_all(wire: &Shared, bytes: &[u8]) -> io::Result<()> {
    let mut head = bytes.to_vec();
    let mut pieces = Vec::new();
    let mut output = Output {
        head: &mut head,
        head_at: 0,
        pieces: &mut pieces,
        first: 0,
    };
    poll_fn(|cx| {
        ready!(output.poll_write(cx, wire))?;
        Pin::new(&mut lock(wire).io).poll_flush(cx)
    })
    .await
}

/// Closes the connection: our side first, then, when the client may still be sending a body
/// nobody read, reading and discarding it for a bounded time so the close does not reset the
/// connection before the client has read its response.
async fn linger(wire: &Shared, unread: bool) {
    let _ = poll_fn(|cx| Pin::new(&mut lock(wire).io).poll_shutdown(cx)).await;
    if !unread {
        return;
    }
    let mut discarded = 0;
    let drain = poll_fn(|cx| {
        let mut w = lock(wire);
        loop {
            w.read.clear();
            match ready!(w.poll_fill(cx)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(n) => {
                    discarded += n;
                    if discarded >= LINGER_BYTES {
                        return Poll::Ready(());
                    }
                }
            }
        }
    });
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests;
