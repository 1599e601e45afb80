//! Peak-EWMA latency, as in tower's `load::PeakEwma`: an observation above the estimate
//! replaces it at once (a replica that just got slow is avoided at once), one below pulls it
//! down gradually, and an idle estimate decays so a once-slow replica is tried again.
//!
//! Kept in two atomics (estimate and when it was last touched) so the balancer reads it
//! without a lock; concurrent updates may lose one observation, which an estimate tolerates.

use std::sync::atomic::{AtomicU64, Ordering};

/// How fast the estimate forgets: after `DECAY_US` without observations it has fallen to 1/e.
const DECAY_US: f64 = 10_000_000.0;

/// The estimate before any observation, in microseconds: optimistic, so new replicas get tried.
const INITIAL_US: f64 = 1_000.0;

/// A lock-free peak-EWMA estimate in microseconds. Times are microseconds on the caller's
/// clock.
#[derive(Debug)]
pub struct PeakEwma {
    estimate: AtomicU64,
    stamp: AtomicU64,
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self {
            estimate: AtomicU64::new(INITIAL_US.to_bits()),
            stamp: AtomicU64::new(0),
        }
    }
}

impl PeakEwma {
    /// The estimate at `now_us`, decayed for the time since the last observation.
    pub fn get(&self, now_us: u64) -> f64 {
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let elapsed = now_us.saturating_sub(self.stamp.load(Ordering::Relaxed));
        decayed(estimate, elapsed)
    }

    /// Records one round trip of `rtt_us` observed at `now_us`.
    pub fn observe(&self, rtt_us: f64, now_us: u64) {
        let current = self.get(now_us);
        self.estimate
            .store(next(current, rtt_us).to_bits(), Ordering::Relaxed);
        self.stamp.store(now_us, Ordering::Relaxed);
    }
}

/// `estimate` after `elapsed_us` without observations.
fn decayed(estimate: f64, elapsed_us: u64) -> f64 {
    if elapsed_us == 0 {
        return estimate;
    }
    estimate * (-(elapsed_us as f64) / DECAY_US).exp()
}

/// The estimate after observing `rtt`: peaks replace it, lower values are blended in.
fn next(current: f64, rtt: f64) -> f64 {
    if rtt > current {
        rtt
    } else {
        // The weight of the old estimate for one observation: a quarter moves toward `rtt`.
        current * 0.75 + rtt * 0.25
    }
}

#[cfg(test)]
mod tests {
    use super::PeakEwma;

    #[test]
    fn peaks_jump_and_lows_blend() {
        let e = PeakEwma::default();
        e.observe(50_000.0, 1);
        assert_eq!(e.get(1), 50_000.0);
        e.observe(1_000.0, 1);
        let after_one = e.get(1);
        assert!(after_one < 50_000.0 && after_one > 30_000.0, "{after_one}");
        for _ in 0..40 {
            e.observe(1_000.0, 1);
        }
        assert!(e.get(1) < 1_100.0);
        e.observe(9_000.0, 1);
        assert_eq!(e.get(1), 9_000.0);
    }

    #[test]
    fn idle_estimates_decay() {
        let e = PeakEwma::default();
        e.observe(50_000.0, 0);
        let later = e.get(10_000_000);
        assert!(
            (later - 50_000.0 / std::f64::consts::E).abs() < 1.0,
            "{later}"
        );
        assert!(e.get(60_000_000) < 200.0);
    }
}
