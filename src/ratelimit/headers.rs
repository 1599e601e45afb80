//! `Retry-After`, `RateLimit-Policy` and `RateLimit` values, in the structured-field syntax
//! of draft-ietf-httpapi-ratelimit-headers-10: each field is a List of Items, the item a
//! String naming the policy, with Integer parameters.
//!
//! - `RateLimit-Policy: "per_ip";q=100;w=60`: quota `q` requests per window `w` seconds.
//! - `RateLimit: "per_ip";r=0;t=12`: `r` requests remaining now, `t` seconds until the quota
//!   resets (rounded up). On a 429, `t` equals `Retry-After`: the moment one request is allowed
//!   again.

use std::fmt::Write;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The policy item, built once per limiter. A window that is not a whole number of seconds
/// is advertised as the quota over the next whole second count (`"10/500ms"` as `q=20;w=1`),
/// since `w` is an Integer.
pub fn policy_item(name: &str, requests: u32, window: Duration) -> String {
    let w = whole_seconds(window).max(1);
    let q = if window.subsec_nanos() == 0 {
        u64::from(requests)
    } else {
        let exact = u128::from(requests) * u128::from(w) * 1_000_000_000 / window.as_nanos();
        u64::try_from(exact).unwrap_or(u64::MAX)
    };
    // Names are validated to [a-z0-9_-], so they need no escaping inside the quotes.
    format!("\"{name}\";q={q};w={w}")
}

/// The header values for one response: items for every limit that reports on it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    policy: String,
    state: String,
    /// Set on a 429.
    retry_after: Option<u64>,
}

impl RateHeaders {
    /// Adds one limit's items.
    pub fn push(&mut self, policy_item: &str, remaining: u32, reset: Duration) {
        if !self.policy.is_empty() {
            self.policy.push_str(", ");
            self.state.push_str(", ");
        }
        self.policy.push_str(policy_item);
        let name = policy_item.split(';').next().unwrap_or("\"\"");
        // Writing to a String cannot fail.
        let _ = write!(
            self.state,
            "{name};r={remaining};t={}",
            whole_seconds(reset)
        );
    }

    /// Marks these as the headers of a 429 that may be retried after `wait` (at least 1 s).
    pub fn set_retry_after(&mut self, wait: Duration) {
        self.retry_after = Some(whole_seconds(wait).max(1));
    }

    /// Whether no limit added items.
    pub fn is_empty(&self) -> bool {
        self.policy.is_empty()
    }

    /// `Retry-After` in seconds, when set.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Writes the fields into `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.policy.is_empty() {
            return;
        }
        // Quoted [a-z0-9_-] names and integers are always valid header values.
        if let (Ok(policy), Ok(state)) = (
            HeaderValue::from_str(&self.policy),
            HeaderValue::from_str(&self.state),
        ) {
            headers.insert(RATELIMIT_POLICY, policy);
            headers.insert(RATELIMIT, state);
        }
    }
}
