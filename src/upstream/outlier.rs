//! Passive health: which outcomes count against a replica, how long an ejection lasts, and
//! how much of a pool may be ejected at once. Pure; the counters live in the replica.

use std::time::Duration;

use crate::error::UpstreamFailure;
use crate::upstream::pool::ErrorKind;

/// How one exchange reflects on the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The replica answered sensibly: its failure streak ends.
    Success,
    /// Counts toward ejection.
    Failure,
    /// Says nothing about the replica (the gateway's own queue was full).
    Neutral,
}

/// A response status: 502, 503 and 504 always count; other 5xx only with `count_5xx` (one
/// buggy endpoint answering 500 must not eject a whole pool).
pub fn status_verdict(status: u16, count_5xx: bool) -> Verdict {
    match status {
        502..=504 => Verdict::Failure,
        500..=599 if count_5xx => Verdict::Failure,
        _ => Verdict::Success,
    }
}

/// A failed exchange: connect failures, resets and closes before a response, header timeouts.
pub fn failure_verdict(failure: UpstreamFailure) -> Verdict {
    match failure {
        UpstreamFailure::Pool(kind) => match kind {
            ErrorKind::QueueTimeout => Verdict::Neutral,
            ErrorKind::ConnectRefused
            | ErrorKind::ConnectTimeout
            | ErrorKind::Connect
            | ErrorKind::Closed
            | ErrorKind::Reset
            | ErrorKind::ResponseHeadTooLarge
            | ErrorKind::HeaderTimeout
            | ErrorKind::Other => Verdict::Failure,
        },
    }
}

/// The `nth` ejection in a row (1-based) lasts `base × 2^(nth-1)`, at most `max`.
pub fn ejection_time(base: Duration, max: Duration, nth: u32) -> Duration {
    let factor = 1u32 << nth.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(max)
}

/// Whether one more replica may be ejected when `ejected` of `total` already are. The share
/// is rounded down, but one replica may always be ejected unless the share is 0.
pub fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    if max_percent == 0 {
        return false;
    }
    let allowed = (total * max_percent as usize / 100).max(1);
    ejected < allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gateway_errors_count_unless_asked() {
        assert_eq!(status_verdict(200, false), Verdict::Success);
        assert_eq!(status_verdict(404, true), Verdict::Success);
        assert_eq!(status_verdict(503, false), Verdict::Failure);
        assert_eq!(status_verdict(500, false), Verdict::Success);
        assert_eq!(status_verdict(500, true), Verdict::Failure);
        assert_eq!(
            failure_verdict(UpstreamFailure::Pool(ErrorKind::QueueTimeout)),
            Verdict::Neutral
        );
        assert_eq!(
            failure_verdict(UpstreamFailure::Pool(ErrorKind::ConnectRefused)),
            Verdict::Failure
        );
        assert_eq!(
            failure_verdict(UpstreamFailure::Pool(ErrorKind::HeaderTimeout)),
            Verdict::Failure
        );
    }

    #[test]
    fn ejections_double_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(ejection_time(s(10), s(300), 1), s(10));
        assert_eq!(ejection_time(s(10), s(300), 2), s(20));
        assert_eq!(ejection_time(s(10), s(300), 5), s(160));
        assert_eq!(ejection_time(s(10), s(300), 6), s(300));
        assert_eq!(ejection_time(s(10), s(300), 60), s(300));
    }

    #[test]
    fn panic_threshold() {
        assert!(may_eject(0, 2, 50));
        assert!(!may_eject(1, 2, 50));
        assert!(may_eject(0, 1, 50), "a lone replica may still be ejected");
        assert!(may_eject(4, 10, 50));
        assert!(!may_eject(5, 10, 50));
        assert!(!may_eject(0, 10, 0));
    }
}
