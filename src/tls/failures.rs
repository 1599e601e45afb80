//! Handshake failures: a bounded reason for each, counts for metrics, and rate-limited logs.
//!
//! Internet scanners open TLS connections and abandon them by the thousand; every one is a
//! handshake failure. They are counted exactly, but only a few per second are logged.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The message rustls gives when the resolver returns no certificate (rustls 0.23
/// `server/hs.rs`); a test pins it.
const NO_CERTIFICATE_MESSAGE: &str = "no server certificate chain resolved";

/// Why a TLS handshake failed, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The handshake did not finish within the handshake timeout.
    Timeout,
    /// The peer closed or reset the connection mid-handshake.
    Eof,
    /// No cipher suite, key-exchange group or signature scheme in common.
    NoSharedCipher,
    /// The client offers neither TLS 1.2 nor TLS 1.3.
    ProtocolVersion,
    /// No certificate for the SNI name and no default one.
    NoCertificate,
    /// The client offered ALPN protocols and none is `h2` or `http/1.1`.
    NoAlpn,
    /// Bytes that are not a well-formed TLS handshake (plain HTTP, scanners, broken clients).
    BadClientHello,
    /// The client aborted with an alert, typically because it does not trust the certificate.
    AlertReceived,
    Other,
}

impl FailureReason {
    /// Every reason, in the order [`HandshakeFailures::counts`] reports them.
    pub const ALL: [Self; 9] = [
        Self::Timeout,
        Self::Eof,
        Self::NoSharedCipher,
        Self::ProtocolVersion,
        Self::NoCertificate,
        Self::NoAlpn,
        Self::BadClientHello,
        Self::AlertReceived,
        Self::Other,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Eof => "eof",
            Self::NoSharedCipher => "no_shared_cipher",
            Self::ProtocolVersion => "protocol_version",
            Self::NoCertificate => "no_certificate",
            Self::NoAlpn => "no_alpn",
            Self::BadClientHello => "bad_client_hello",
            Self::AlertReceived => "alert_received",
            Self::Other => "other",
        }
    }

    /// Classify a failed accept: tokio-rustls reports rustls errors as `InvalidData` wrapping a
    /// `rustls::Error` and a peer that hangs up as `UnexpectedEof`; a timeout should be passed
    /// as `TimedOut` (`io::Error::from(tokio::time::error::Elapsed)` is one).
    pub fn classify(err: &io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::TimedOut => return Self::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => return Self::Eof,
            _ => {}
        }
        match err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Self::classify_rustls(tls),
            None => Self::Other,
        }
    }

    fn classify_rustls(err: &rustls::Error) -> Self {
        use rustls::{Error, PeerIncompatible as P};
        match err {
            Error::PeerIncompatible(
                P::NoCipherSuitesInCommon
                | P::NoKxGroupsInCommon
                | P::NoSignatureSchemesInCommon
                | P::NoEcPointFormatsInCommon,
            ) => Self::NoSharedCipher,
            Error::PeerIncompatible(
                P::SupportedVersionsExtensionRequired
                | P::Tls12NotOffered
                | P::Tls12NotOfferedOrEnabled
                | P::ServerDoesNotSupportTls12Or13,
            ) => Self::ProtocolVersion,
            Error::General(message) if message == NO_CERTIFICATE_MESSAGE => Self::NoCertificate,
            Error::NoApplicationProtocol => Self::NoAlpn,
            Error::InvalidMessage(_)
            | Error::InappropriateMessage { .. }
            | Error::InappropriateHandshakeMessage { .. }
            | Error::PeerMisbehaved(_)
            | Error::PeerIncompatible(_) => Self::BadClientHello,
            Error::AlertReceived(_) => Self::AlertReceived,
            // rustls::Error is non-exhaustive.
            _ => Self::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_label(label: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == label)
            .unwrap_or(Self::Other)
    }
}

/// The bounded reason label for a failed TLS accept; see [`FailureReason::classify`].
pub fn failure_reason(err: &io::Error) -> &'static str {
    FailureReason::classify(err).as_str()
}

/// Handshake outcome counters, and a log of failures limited to a few lines per window.
pub struct HandshakeFailures {
    counts: [AtomicU64; FailureReason::ALL.len()],
    ok: AtomicU64,
    max_lines: u32,
    window: Duration,
    log: Mutex<LogWindow>,
}

/// Lines logged in the current window.
struct LogWindow {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// Whether a failure gets a log line.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Log it; `suppressed` lines were dropped in the window that just ended.
    Log {
        suppressed: u64,
    },
    Suppress,
}

impl Default for HandshakeFailures {
    fn default() -> Self {
        Self::new()
    }
}

impl HandshakeFailures {
    /// At most 5 log lines per second.
    pub fn new() -> Self {
        Self::with_limit(5, Duration::from_secs(1))
    }

    /// At most `max_lines` log lines per `window`.
    pub fn with_limit(max_lines: u32, window: Duration) -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            ok: AtomicU64::new(0),
            max_lines,
            window,
            log: Mutex::new(LogWindow {
                start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Count a failed handshake and log it unless this window's lines are used up. `reason`
    /// is a label from [`failure_reason`]; any other string counts as `other`.
    pub fn record(&self, peer: SocketAddr, sni: Option<&str>, reason: &'static str) {
        let reason = FailureReason::from_label(reason);
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
        match self.admit(Instant::now()) {
            Admit::Log { suppressed } => {
                if suppressed > 0 {
                    tracing::info!(
                        suppressed,
                        "suppressed {suppressed} handshake failure logs in the last {:?}",
                        self.window
                    );
                }
                tracing::info!(%peer, sni = sni.unwrap_or("-"), reason = reason.as_str(), "TLS handshake failed");
            }
            Admit::Suppress => {}
        }
    }

    /// Count a completed handshake.
    pub fn record_ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Completed handshakes so far.
    pub fn handshakes_ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Failures so far by reason label, every reason listed (zeros included), in
    /// [`FailureReason::ALL`] order.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        FailureReason::ALL
            .into_iter()
            .map(|reason| {
                (
                    reason.as_str(),
                    self.counts[reason.index()].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Decide whether a failure at `now` is logged. Windows are fixed: the first failure after
    /// a window has ended opens the next one.
    fn admit(&self, now: Instant) -> Admit {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut suppressed = 0;
        let expired = log
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            suppressed = std::mem::take(&mut log.suppressed);
            log.start = Some(now);
            log.logged = 0;
        }
        if log.logged < self.max_lines {
            log.logged += 1;
            Admit::Log { suppressed }
        } else {
            log.suppressed += 1;
            Admit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_lines_per_window_then_a_summary() {
        let failures = HandshakeFailures::with_limit(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        for ms in [0, 10, 20] {
            assert_eq!(failures.admit(at(ms)), Admit::Log { suppressed: 0 });
        }
        for ms in [30, 500, 999] {
            assert_eq!(failures.admit(at(ms)), Admit::Suppress);
        }
        // The next window reports what the last one dropped, once.
        assert_eq!(failures.admit(at(1000)), Admit::Log { suppressed: 3 });
        assert_eq!(failures.admit(at(1001)), Admit::Log { suppressed: 0 });
        assert_eq!(failures.admit(at(1002)), Admit::Log { suppressed: 0 });
        assert_eq!(failures.admit(at(1003)), Admit::Suppress);
        // A quiet gap longer than a window starts afresh.
        assert_eq!(failures.admit(at(60_000)), Admit::Log { suppressed: 1 });
    }

    #[test]
    fn counts_every_failure_even_when_not_logged() {
        let failures = HandshakeFailures::with_limit(1, Duration::from_secs(3600));
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        for _ in 0..10 {
            failures.record(peer, None, "eof");
        }
        failures.record(peer, Some("a.example.com"), "no_certificate");
        failures.record(peer, None, "not-a-reason");
        failures.record_ok();
        failures.record_ok();
        let counts = failures.counts();
        assert_eq!(counts.len(), FailureReason::ALL.len());
        let count = |label| counts.iter().find(|(l, _)| *l == label).unwrap().1;
        assert_eq!(count("eof"), 10);
        assert_eq!(count("no_certificate"), 1);
        assert_eq!(count("other"), 1);
        assert_eq!(count("timeout"), 0);
        assert_eq!(failures.handshakes_ok(), 2);
    }

    #[test]
    fn labels_round_trip_and_index_the_counters() {
        for (i, reason) in FailureReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert_eq!(FailureReason::from_label(reason.as_str()), reason);
        }
    }

    fn wrapped(err: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn classifies_io_and_rustls_errors() {
        use rustls::{AlertDescription, InvalidMessage, PeerIncompatible};
        let cases = [
            (io::Error::from(io::ErrorKind::TimedOut), "timeout"),
            (
                io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof"),
                "eof",
            ),
            (io::Error::from(io::ErrorKind::ConnectionReset), "eof"),
            (
                wrapped(PeerIncompatible::NoCipherSuitesInCommon.into()),
                "no_shared_cipher",
            ),
            (
                wrapped(PeerIncompatible::Tls12NotOfferedOrEnabled.into()),
                "protocol_version",
            ),
            (
                wrapped(PeerIncompatible::SupportedVersionsExtensionRequired.into()),
                "protocol_version",
            ),
            (
                wrapped(PeerIncompatible::NullCompressionRequired.into()),
                "bad_client_hello",
            ),
            (
                wrapped(rustls::Error::InvalidMessage(
                    InvalidMessage::InvalidContentType,
                )),
                "bad_client_hello",
            ),
            (
                wrapped(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
                "alert_received",
            ),
            (wrapped(rustls::Error::NoApplicationProtocol), "no_alpn"),
            (
                wrapped(rustls::Error::General(NO_CERTIFICATE_MESSAGE.to_owned())),
                "no_certificate",
            ),
            (
                wrapped(rustls::Error::General("something else".to_owned())),
                "other",
            ),
            (io::Error::other("not rustls"), "other"),
        ];
        for (err, want) in cases {
            assert_eq!(failure_reason(&err), want, "{err:?}");
        }
    }
}
