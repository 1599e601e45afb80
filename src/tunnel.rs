//! Upgraded connections (WebSocket over HTTP/1.1 `Upgrade`), tunnelled both ways.
//!
//! A client connection stops being served (and counted by the listener) once it is upgraded,
//! so tunnels are spawned on the shared [`TaskTracker`](tokio_util::task::TaskTracker) and
//! watch the shutdown token themselves: shutdown can count them, wait for them, and end them
//! with a FIN both ways.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::http1::OnUpgrade;
use crate::metrics::OpenGuard;
use crate::service::Shared;
use crate::upstream::pool::Upgraded;
use crate::upstream::replica::InFlight;

/// Starts the tunnel once both sides have upgraded. `idle` closes it after no traffic either
/// way; the replica guard and the open-connection gauge guard are held for the tunnel's life.
/// `route_removed` is cancelled when a reload removed the tunnel's route and its grace period
/// passed: the tunnel then ends with a FIN both ways. Nothing else from the snapshot is kept,
/// so a long tunnel does not pin it.
pub fn spawn(
    shared: &Shared,
    client: OnUpgrade,
    upstream: Upgraded,
    idle: Option<Duration>,
    guard: InFlight,
    route_removed: CancellationToken,
    open: OpenGuard,
) {
    let stop = shared.stop_streams.clone();
    shared.tunnels.spawn(async move {
        let _open = open;
        let client = match client.await {
            Ok(client) => client,
            Err(err) => {
                tracing::debug!("upgrade failed: {err}");
                return;
            }
        };
        let activity = Arc::new(AtomicU64::new(0));
        let mut client = Counted {
            io: client,
            activity: Arc::clone(&activity),
        };
        let mut upstream = Counted {
            io: upstream,
            activity: Arc::clone(&activity),
        };
        let label = &guard.replica().label;
        let ended_by_us = {
            let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
            let watchdog = watch_idle(&activity, idle);
            tokio::select! {
                res = copy => {
                    if let Err(err) = res {
                        tracing::debug!(replica = %label, "tunnel ended: {err}");
                    }
                    false
                }
                () = watchdog => {
                    tracing::debug!(replica = %label, "tunnel idle timeout");
                    true
                }
                () = stop.cancelled() => {
                    tracing::debug!(replica = %label, "tunnel closed by shutdown");
                    true
                }
                () = route_removed.cancelled() => {
                    tracing::debug!(replica = %label, "tunnel closed: its route was removed");
                    true
                }
            }
        };
        if !ended_by_us {
            return;
        }
        // End cleanly: FIN both ways, no frame injected.
        let _ = client.shutdown().await;
        let _ = upstream.shutdown().await;
    });
}

async fn watch_idle(activity: &AtomicU64, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let mut last = activity.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(idle).await;
        let now = activity.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Counts reads so the idle watchdog can see traffic without a timer per byte.
struct Counted<T> {
    io: T,
    activity: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
