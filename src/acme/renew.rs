//! When to renew and when to try again: pure functions of times and counts, plus the retry
//! state kept in the store so that every replica, and a restarted one, honours the same
//! backoff (a crash-looping replica must not spend the CA's failed-validation allowance).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The longest wait between failed attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(86_400);

/// When a certificate valid from `not_before` to `not_after` is due for renewal: once
/// `fraction` of its lifetime remains.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, fraction: f64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after
        .checked_sub(lifetime.mul_f64(fraction.clamp(0.0, 1.0)))
        .unwrap_or(not_before)
}

/// A point in the CA's suggested renewal window (ACME Renewal Information): `r` in [0, 1)
/// picks where, so that replicas and clients spread out.
pub fn in_window(start: SystemTime, end: SystemTime, r: f64) -> SystemTime {
    let width = end.duration_since(start).unwrap_or_default();
    start + width.mul_f64(r.clamp(0.0, 1.0))
}

/// Wait after the `failures`-th failure in a row: `base` doubled per further failure, capped
/// at [`MAX_BACKOFF`], times a jitter factor in [0.9, 1.1) chosen by `r` in [0, 1).
pub fn backoff(base: Duration, failures: u32, r: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let exp = base
        .saturating_mul(1u32 << doublings.min(31))
        .min(MAX_BACKOFF);
    exp.mul_f64(0.9 + 0.2 * r.clamp(0.0, 1.0))
}

/// The next allowed attempt after a failure: the backoff, or the CA's `Retry-After` if later.
pub fn next_attempt(
    now: SystemTime,
    base: Duration,
    failures: u32,
    retry_after: Option<SystemTime>,
    r: f64,
) -> SystemTime {
    let ours = now + backoff(base, failures, r);
    retry_after.map_or(ours, |theirs| ours.max(theirs))
}

/// Failures in a row for one certificate set and the earliest next attempt, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    pub failures: u32,
    /// Unix seconds.
    pub not_before: u64,
    /// The CA's (or the network's) message for the last failure.
    pub last_error: String,
}

impl RetryState {
    /// The next allowed attempt as a time.
    pub fn not_before(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.not_before)
    }
}

/// Unix seconds of `t`, rounded up so a stored time is never earlier than the computed one.
pub fn unix_secs(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{backoff, in_window, next_attempt, renew_at};

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renews_when_the_fraction_of_lifetime_remains() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert_eq!(renew_at(start, end, 1.0 / 3.0), start + 60 * DAY);
        assert_eq!(renew_at(start, end, 1.0), start);
        assert_eq!(renew_at(start, end, 0.5), start + 45 * DAY);
        // A certificate whose dates are inverted is due at once rather than never.
        assert_eq!(renew_at(end, start, 1.0 / 3.0), start);
    }

    #[test]
    fn window_points_stay_inside() {
        let start = SystemTime::UNIX_EPOCH + DAY;
        let end = start + DAY;
        assert_eq!(in_window(start, end, 0.0), start);
        assert_eq!(in_window(start, end, 0.5), start + DAY / 2);
        assert_eq!(in_window(end, start, 0.5), end);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let base = Duration::from_secs(300);
        assert_eq!(backoff(base, 1, 0.5), base);
        assert_eq!(backoff(base, 2, 0.5), 2 * base);
        assert_eq!(backoff(base, 3, 0.5), 4 * base);
        assert_eq!(backoff(base, 3, 0.0), (4 * base).mul_f64(0.9));
        assert!(backoff(base, 3, 0.999) < (4 * base).mul_f64(1.1));
        assert_eq!(backoff(base, 200, 0.5), DAY);
        assert_eq!(backoff(base, 0, 0.5), base);
    }

    #[test]
    fn the_cas_retry_after_wins_when_later() {
        let now = SystemTime::UNIX_EPOCH + DAY;
        let base = Duration::from_secs(60);
        assert_eq!(next_attempt(now, base, 1, None, 0.5), now + base);
        let later = now + Duration::from_secs(3600);
        assert_eq!(next_attempt(now, base, 1, Some(later), 0.5), later);
        let sooner = now + Duration::from_secs(1);
        assert_eq!(next_attempt(now, base, 1, Some(sooner), 0.5), now + base);
    }
}
