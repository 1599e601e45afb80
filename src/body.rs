//! Concrete body types, both directions. Bodies stream frame by frame; nothing is collected.
//!
//! [`RequestBody`] goes upstream: the client's body with the route's `max_body` and
//! `client_body_idle` enforced as it streams. [`ResponseBody`] goes to the client: either a
//! short body the gateway made, or the upstream's with `upstream_body_idle` enforced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::compress::CompressedBody;
use crate::static_files::stream::FileBody;

mod read;

use crate::upstream::pool::PooledBody;
use crate::upstream::replica::InFlight;
pub use read::ReadBody;

/// Why a client body stopped, recorded so the proxy can answer 413 or 408 instead of 502.
#[derive(Debug, Default)]
pub struct BodyFault(AtomicU8);

impl BodyFault {
    const TOO_LARGE: u8 = 1;
    const IDLE: u8 = 2;
    const ABORTED: u8 = 3;

    fn set(&self, v: u8) {
        self.0.fetch_or(v, Ordering::Relaxed);
    }

    /// The recorded fault, if any.
    pub fn get(&self) -> Option<BodyError> {
        match self.0.load(Ordering::Relaxed) {
            Self::TOO_LARGE => Some(BodyError::TooLarge),
            Self::IDLE => Some(BodyError::Idle),
            Self::ABORTED => Some(BodyError::Aborted),
            _ => None,
        }
    }
}

/// A body stream error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The client's body grew past `max_body`.
    #[error("request body exceeds max_body")]
    TooLarge,
    /// No body byte for the idle timeout.
    #[error("body idle timeout")]
    Idle,
    /// The peer's stream broke.
    #[error("body stream aborted")]
    Aborted,
}

/// An idle timer for a streaming body, cheap for the common case: the timer is created only
/// when the body first has to wait (a small body that is ready at once never arms one), and a
/// frame only sets a flag instead of re-arming it. When the timer fires after traffic it is
/// re-armed; when it fires after none, the body has been idle for at least `after` (and at
/// most twice that). Boxed because `Sleep` is `!Unpin` and the pool needs `Unpin` bodies.
struct IdleTimer {
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    active: bool,
}

impl IdleTimer {
    fn new(after: Option<Duration>) -> Option<Self> {
        after.map(|after| Self {
            after,
            sleep: None,
            active: false,
        })
    }

    /// Called when the body is pending: registers the timer and says whether it ran out.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let after = self.after;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        while sleep.as_mut().poll(cx).is_ready() {
            if !self.active {
                return true;
            }
            self.active = false;
            sleep.as_mut().reset(Instant::now() + after);
        }
        false
    }

    /// A frame went through.
    fn reset(&mut self) {
        self.active = true;
    }
}

/// A client's request body as its connection delivers it.
pub enum Inbound {
    /// Read from an HTTP/1.1 connection by the gateway's own server.
    H1(crate::http1::RecvBody),
    /// The DATA frames of an HTTP/2 stream, from hyper.
    H2(Incoming),
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::H1(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|_| BodyError::Aborted),
            Self::H2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|_| BodyError::Aborted),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::H1(body) => body.is_end_stream(),
            Self::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::H1(body) => body.size_hint(),
            Self::H2(body) => body.size_hint(),
        }
    }
}

/// The client's request body, limited and timed.
pub struct ClientBody {
    inner: Inbound,
    max: u64,
    seen: u64,
    idle: Option<IdleTimer>,
    fault: Arc<BodyFault>,
}

impl ClientBody {
    /// Wraps `inner`; `fault` records why the stream stopped.
    pub fn new(inner: Inbound, max: u64, idle: Option<Duration>, fault: Arc<BodyFault>) -> Self {
        Self {
            inner,
            max,
            seen: 0,
            idle: IdleTimer::new(idle),
            fault,
        }
    }

    fn fail(&self, err: BodyError, code: u8) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.fault.set(code);
        Poll::Ready(Some(Err(err)))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.max {
                        return this.fail(BodyError::TooLarge, BodyFault::TOO_LARGE);
                    }
                }
                if let Some(idle) = &mut this.idle {
                    idle.reset();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => this.fail(BodyError::Aborted, BodyFault::ABORTED),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.idle.as_mut().is_some_and(|idle| idle.expired(cx)) {
                    return this.fail(BodyError::Idle, BodyFault::IDLE);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the gateway sends upstream.
pub enum RequestBody {
    /// No body (most GETs): nothing to poll.
    Empty,
    /// A body held in memory.
    Full(Option<Bytes>),
    /// The client's streaming body.
    Client(ClientBody),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Client(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(data) => data.is_none(),
            Self::Client(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Client(body) => body.size_hint(),
        }
    }
}

/// The upstream's response body with `upstream_body_idle` enforced. It holds the replica's
/// in-flight guard, so a streaming response counts until its last byte.
pub struct UpstreamBody {
    inner: PooledBody,
    idle: Option<IdleTimer>,
    /// For endless streams (SSE): shutdown ends them with a proper last chunk / END_STREAM.
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// Counts an endless stream in shutdown's stream tracker until the body is dropped.
    _stream: Option<TaskTrackerToken>,
    _in_flight: InFlight,
}

impl UpstreamBody {
    /// `idle` is `None` for event streams and when the route turns the timeout off; `stream`
    /// is set for event streams, which shutdown counts and ends cleanly when its token is
    /// cancelled instead of waiting for them.
    pub fn new(
        inner: PooledBody,
        idle: Option<Duration>,
        stream: Option<(CancellationToken, TaskTrackerToken)>,
        in_flight: InFlight,
    ) -> Self {
        let idle = if inner.is_end_stream() {
            None
        } else {
            IdleTimer::new(idle)
        };
        let (stop, stream) = match stream {
            Some((stop, counted)) => (Some(Box::pin(stop.cancelled_owned())), Some(counted)),
            None => (None, None),
        };
        Self {
            inner,
            idle,
            stop,
            _stream: stream,
            _in_flight: in_flight,
        }
    }
}

/// What the client receives.
pub enum ResponseBody {
    /// Nothing (HEAD, 304, redirects).
    Empty,
    /// A body the gateway made.
    Full(Option<Bytes>),
    /// Streamed from the upstream.
    Upstream(UpstreamBody),
    /// A static file streamed from disk.
    File(FileBody),
    /// A proxied body compressed on the way (`compress = true` routes).
    Compressed(CompressedBody),
}

impl ResponseBody {
    /// A static text body.
    pub fn text(s: &'static str) -> Self {
        Self::Full(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::File(body) => Pin::new(body).poll_frame(cx),
            Self::Compressed(body) => Pin::new(body).poll_frame(cx),
            Self::Upstream(body) => {
                let polled = Pin::new(&mut body.inner).poll_frame(cx);
                match polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(idle) = &mut body.idle {
                            idle.reset();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(BodyError::Aborted))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => {
                        if body.idle.as_mut().is_some_and(|idle| idle.expired(cx)) {
                            return Poll::Ready(Some(Err(BodyError::Idle)));
                        }
                        if body
                            .stop
                            .as_mut()
                            .is_some_and(|stop| stop.as_mut().poll(cx).is_ready())
                        {
                            return Poll::Ready(None);
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(data) => data.is_none(),
            Self::Upstream(body) => body.inner.is_end_stream(),
            Self::File(body) => body.is_end_stream(),
            Self::Compressed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Upstream(body) => body.inner.size_hint(),
            Self::File(body) => body.size_hint(),
            Self::Compressed(body) => body.size_hint(),
        }
    }
}
