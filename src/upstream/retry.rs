//! Retries: which failures may be retried, and the budget that bounds them.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use http::Method;

/// What happened to an attempt, as far as replaying it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// No byte reached the replica (connect failure, or the request came back unsent).
    Unsent,
    /// The request was sent and the connection ended before any response byte.
    Lost,
    /// Anything else: a timeout, a response, an error after the response began.
    Final,
}

/// Whether an attempt may be replayed on another replica. An unsent request is the same
/// request whatever its method; a lost one may have been acted on, so only idempotent methods
/// with a body the gateway still holds in full are replayed.
pub fn may_retry(attempt: Attempt, idempotent: bool, replayable: bool) -> bool {
    match attempt {
        Attempt::Unsent => true,
        Attempt::Lost => idempotent && replayable,
        Attempt::Final => false,
    }
}

/// GET, HEAD, OPTIONS, PUT, DELETE (and TRACE, RFC 9110 §9.2.2), plus the route's own list.
pub fn is_idempotent(method: &Method, extra: &[Method]) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || extra.contains(method)
}

/// Token scale: one retry costs this many tokens.
const RETRY: i64 = 1000;

/// Most retries saved up, so a long quiet period cannot fund a retry storm.
const MAX_SAVED: i64 = 100 * RETRY;

/// A retry budget in the style of Finagle's: each request deposits `percent` hundredths of a
/// retry, each retry withdraws one; besides, `min_per_sec` retries per second are always
/// allowed so a quiet service can still retry.
#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    min_per_sec: u32,
    tokens: AtomicI64,
    second: AtomicU64,
    used_this_second: AtomicU32,
}

impl RetryBudget {
    /// A budget of `percent` of requests plus `min_per_sec` per second.
    pub fn new(percent: u32, min_per_sec: u32) -> Self {
        Self {
            deposit: i64::from(percent) * RETRY / 100,
            min_per_sec,
            tokens: AtomicI64::new(0),
            second: AtomicU64::new(0),
            used_this_second: AtomicU32::new(0),
        }
    }

    /// A budget of zero percent and zero per second: no retry is ever granted, so nothing
    /// needs to be kept for one.
    pub fn never_grants(&self) -> bool {
        self.deposit == 0 && self.min_per_sec == 0
    }

    /// Counts one request.
    pub fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let after = self.tokens.fetch_add(self.deposit, Ordering::Relaxed) + self.deposit;
        if after > MAX_SAVED {
            self.tokens.fetch_min(MAX_SAVED, Ordering::Relaxed);
        }
    }

    /// Takes one retry if the budget allows it; `now_sec` is the current second on any clock.
    pub fn withdraw(&self, now_sec: u64) -> bool {
        let taken = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= RETRY).then_some(t - RETRY)
            });
        if taken.is_ok() {
            return true;
        }
        if self.second.swap(now_sec, Ordering::Relaxed) != now_sec {
            self.used_this_second.store(0, Ordering::Relaxed);
        }
        self.used_this_second
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used < self.min_per_sec).then_some(used + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_rules() {
        assert!(may_retry(Attempt::Unsent, false, false));
        assert!(may_retry(Attempt::Lost, true, true));
        assert!(!may_retry(Attempt::Lost, false, true), "POST after sending");
        assert!(!may_retry(Attempt::Lost, true, false), "streamed body");
        assert!(!may_retry(Attempt::Final, true, true));
        assert!(is_idempotent(&Method::PUT, &[]));
        assert!(!is_idempotent(&Method::POST, &[]));
        assert!(is_idempotent(&Method::POST, &[Method::POST]));
    }

    #[test]
    fn budget_is_a_share_plus_a_floor() {
        let b = RetryBudget::new(20, 3);
        // The floor: three per second with no traffic at all.
        assert!(b.withdraw(1) && b.withdraw(1) && b.withdraw(1));
        assert!(!b.withdraw(1));
        assert!(b.withdraw(2), "a new second refills the floor");
        // 20% of 100 requests: 20 more retries in the same second.
        let b = RetryBudget::new(20, 0);
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..50).filter(|_| b.withdraw(5)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn an_empty_budget_never_grants() {
        let b = RetryBudget::new(0, 0);
        assert!(b.never_grants());
        for _ in 0..1000 {
            b.deposit();
        }
        assert!(!b.withdraw(1));
        assert!(!RetryBudget::new(0, 1).never_grants());
        assert!(!RetryBudget::new(1, 0).never_grants());
    }

    #[test]
    fn savings_are_capped() {
        let b = RetryBudget::new(100, 0);
        for _ in 0..1000 {
            b.deposit();
        }
        let granted = (0..1000).filter(|_| b.withdraw(0)).count();
        assert_eq!(granted, 100);
    }
}
