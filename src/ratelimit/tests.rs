//! Limiter behaviour on governor's fake clock: GCRA burst and refill, the values a 429 carries,
//! bucket keys, the key cap and eviction.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::headers::{RATELIMIT, RATELIMIT_POLICY, policy_item, whole_seconds};
use super::{Key, Limiter, LocalLimiter, Registry, Verdict, check, is_exempt, stable_hash};
use crate::config::{LimitBackend, LimitKey, RateLimit};

fn definition(name: &str, requests: u32, window: Duration, burst: u32) -> RateLimit {
    RateLimit {
        name: name.to_owned(),
        requests,
        window,
        burst,
        key: LimitKey::ClientIp,
        ipv6_prefix: 64,
        max_keys: 1_000_000,
        headers: false,
        backend: LimitBackend::Local,
    }
}

fn limiter(def: &RateLimit) -> Limiter<FakeRelativeClock> {
    Limiter::new(def, None, FakeRelativeClock::default())
}

fn local(interval_ms: u64, burst: u32, max_keys: usize) -> LocalLimiter<FakeRelativeClock> {
    LocalLimiter::new(
        "test".into(),
        Duration::from_millis(interval_ms),
        NonZeroU32::new(burst).expect("burst > 0"),
        max_keys,
        FakeRelativeClock::default(),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("IP literal")
}

fn allowed(v: Verdict) -> bool {
    matches!(v, Verdict::Allowed { .. })
}

#[test]
fn burst_then_steady_rate() {
    // 10 per second, bursts of 5.
    let l = local(100, 5, 100);
    let k = Key::V4(1);
    for i in 0..5 {
        assert_eq!(
            l.check(&k),
            Verdict::Allowed {
                remaining: 4 - i,
                reset: Duration::from_millis(100) * (i + 1)
            },
            "request {i} of the burst"
        );
    }
    assert_eq!(
        l.check(&k),
        Verdict::Denied {
            retry_after: Duration::from_millis(100)
        }
    );
    // Steady state: one request per interval, never two.
    for round in 0..20 {
        l.clock().advance(Duration::from_millis(100));
        assert!(allowed(l.check(&k)), "round {round}");
        assert!(
            !allowed(l.check(&k)),
            "round {round}: second in one interval"
        );
    }
    // Half an interval is not enough; the wait says how much is left.
    l.clock().advance(Duration::from_millis(50));
    assert_eq!(
        l.check(&k),
        Verdict::Denied {
            retry_after: Duration::from_millis(50)
        }
    );
    // A long pause refills the bucket to the burst, not beyond.
    l.clock().advance(Duration::from_secs(10));
    let passed = (0..10).filter(|_| allowed(l.check(&k))).count();
    assert_eq!(passed, 5);
}

#[test]
fn buckets_are_per_key() {
    let l = local(1000, 1, 100);
    assert!(allowed(l.check(&Key::V4(1))));
    assert!(!allowed(l.check(&Key::V4(1))));
    assert!(allowed(l.check(&Key::V4(2))));
    assert_eq!(l.tracked_keys(), 2);
}

#[tokio::test]
async fn a_denial_carries_retry_after_and_draft_10_fields() {
    let mut def = definition("per_ip", 2, Duration::from_secs(60), 2);
    def.headers = true;
    let l = Arc::new(limiter(&def));
    let limits = [Arc::clone(&l)];
    let headers = HeaderMap::new();
    let client = ip("203.0.113.7");

    let first = check(&limits, client, &headers, 0)
        .await
        .expect("first allowed")
        .expect("headers = true");
    let mut out = HeaderMap::new();
    first.apply(&mut out);
    assert_eq!(out[RATELIMIT_POLICY], "\"per_ip\";q=2;w=60");
    assert_eq!(out[RATELIMIT], "\"per_ip\";r=1;t=30");
    assert!(out.get(http::header::RETRY_AFTER).is_none());

    check(&limits, client, &headers, 0)
        .await
        .expect("second allowed");
    l.local().clock().advance(Duration::from_secs(12));
    let denial = check(&limits, client, &headers, 0)
        .await
        .expect_err("third is over the limit");
    assert_eq!(&*denial.limit, "per_ip");
    // The next request is allowed 30 s after the second, 18 s from now.
    assert_eq!(denial.headers.retry_after(), Some(18));
    let mut out = HeaderMap::new();
    denial.headers.apply(&mut out);
    assert_eq!(out[http::header::RETRY_AFTER], "18");
    assert_eq!(out[RATELIMIT_POLICY], "\"per_ip\";q=2;w=60");
    assert_eq!(out[RATELIMIT], "\"per_ip\";r=0;t=18");
}

#[tokio::test]
async fn several_limits_report_together_and_the_first_refusal_answers() {
    let mut per_ip = definition("per_ip", 1, Duration::from_secs(10), 1);
    per_ip.headers = true;
    let mut global = definition("global", 100, Duration::from_secs(1), 100);
    global.key = LimitKey::Route;
    global.headers = true;
    let limits = [Arc::new(limiter(&per_ip)), Arc::new(limiter(&global))];
    let headers = HeaderMap::new();
    let ok = check(&limits, ip("10.0.0.1"), &headers, 7)
        .await
        .expect("allowed")
        .expect("both send headers");
    let mut out = HeaderMap::new();
    ok.apply(&mut out);
    assert_eq!(
        out[RATELIMIT_POLICY],
        "\"per_ip\";q=1;w=10, \"global\";q=100;w=1"
    );
    assert_eq!(out[RATELIMIT], "\"per_ip\";r=0;t=10, \"global\";r=99;t=1");

    let denial = check(&limits, ip("10.0.0.1"), &headers, 7)
        .await
        .expect_err("per_ip is spent");
    assert_eq!(&*denial.limit, "per_ip");
    assert_eq!(denial.headers.retry_after(), Some(10));
    let mut out = HeaderMap::new();
    denial.headers.apply(&mut out);
    assert_eq!(out[RATELIMIT], "\"per_ip\";r=0;t=10");

    // The refused request was not counted by the limit after the one that refused it.
    let ok = check(&limits, ip("10.0.0.2"), &headers, 7)
        .await
        .expect("another client")
        .expect("headers");
    let mut out = HeaderMap::new();
    ok.apply(&mut out);
    assert_eq!(out[RATELIMIT], "\"per_ip\";r=0;t=10, \"global\";r=98;t=1");
}

#[tokio::test]
async fn limits_without_headers_add_nothing_to_allowed_responses() {
    let l = Arc::new(limiter(&definition("quiet", 5, Duration::from_secs(1), 5)));
    let got = check(&[l], ip("10.0.0.1"), &HeaderMap::new(), 0).await;
    assert!(matches!(got, Ok(None)));
}

#[test]
fn ipv4_keys_by_address_and_ipv4_mapped_as_ipv4() {
    let l = limiter(&definition("k", 1, Duration::from_secs(1), 1));
    let h = HeaderMap::new();
    assert_eq!(l.key(ip("192.0.2.1"), &h, 0), Key::V4(0xc000_0201));
    assert_eq!(l.key(ip("::ffff:192.0.2.1"), &h, 0), Key::V4(0xc000_0201));
    assert_ne!(l.key(ip("192.0.2.2"), &h, 0), l.key(ip("192.0.2.1"), &h, 0));
}

#[test]
fn ipv6_keys_by_prefix() {
    let h = HeaderMap::new();
    let per64 = limiter(&definition("k", 1, Duration::from_secs(1), 1));
    let a = per64.key(ip("2001:db8:1:2::1"), &h, 0);
    let b = per64.key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), &h, 0);
    let other = per64.key(ip("2001:db8:1:3::1"), &h, 0);
    assert_eq!(a, b, "one /64 is one bucket");
    assert_ne!(a, other);
    assert_eq!(a, Key::V6(0x2001_0db8_0001_0002, 0));

    let mut def = definition("k", 1, Duration::from_secs(1), 1);
    def.ipv6_prefix = 48;
    let per48 = limiter(&def);
    assert_eq!(
        per48.key(ip("2001:db8:1:2::1"), &h, 0),
        per48.key(ip("2001:db8:1:ffff::1"), &h, 0)
    );
    assert_ne!(
        per48.key(ip("2001:db8:1::1"), &h, 0),
        per48.key(ip("2001:db8:2::1"), &h, 0)
    );

    def.ipv6_prefix = 128;
    let per128 = limiter(&def);
    assert_ne!(
        per128.key(ip("2001:db8::1"), &h, 0),
        per128.key(ip("2001:db8::2"), &h, 0)
    );
}

#[test]
fn header_keys_by_value_and_by_client_without_it() {
    let mut def = definition("api", 1, Duration::from_secs(1), 1);
    def.key = LimitKey::Header(HeaderName::from_static("x-api-key"));
    let l = limiter(&def);
    let with = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(value));
        h
    };
    let client = ip("10.1.1.1");
    let alice = l.key(client, &with("alice"), 0);
    assert_eq!(alice, Key::Header(stable_hash(b"alice")));
    assert_eq!(
        l.key(ip("10.9.9.9"), &with("alice"), 0),
        alice,
        "same key anywhere"
    );
    assert_ne!(l.key(client, &with("bob"), 0), alice);
    assert_eq!(l.key(client, &HeaderMap::new(), 0), Key::V4(0x0a01_0101));
}

#[test]
fn route_keys_by_route() {
    let mut def = definition("global", 1, Duration::from_secs(1), 1);
    def.key = LimitKey::Route;
    let l = limiter(&def);
    let h = HeaderMap::new();
    assert_eq!(l.key(ip("10.0.0.1"), &h, 42), Key::Route(42));
    assert_eq!(l.key(ip("10.0.0.2"), &h, 42), Key::Route(42));
}

#[test]
fn stable_hash_is_fnv1a() {
    // Published FNV-1a 64 test vectors: every gateway must derive the same Redis keys.
    assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn at_the_cap_new_keys_share_one_overflow_bucket() {
    let l = local(1000, 1, 3);
    for k in 1..=3 {
        assert!(allowed(l.check(&Key::V4(k))));
    }
    assert_eq!(l.tracked_keys(), 3);
    assert!(
        allowed(l.check(&Key::V4(4))),
        "first new key gets the overflow bucket"
    );
    assert!(
        !allowed(l.check(&Key::V4(5))),
        "and shares it with every other new key"
    );
    assert_eq!(l.tracked_keys(), 3);
    assert_eq!(l.overflow_hits(), 2);
    // Known keys keep their own buckets.
    l.clock().advance(Duration::from_secs(1));
    assert!(allowed(l.check(&Key::V4(1))));
    assert_eq!(l.overflow_hits(), 2);
}

#[test]
fn eviction_forgets_idle_keys_and_frees_their_memory() {
    let l = local(1000, 2, 20_000);
    for k in 0..10_000 {
        assert!(allowed(l.check(&Key::V4(k))));
    }
    assert_eq!(l.tracked_keys(), 10_000);
    assert!(l.capacity() >= 10_000);

    // Not idle yet: every bucket still differs from a full one.
    l.evict();
    assert_eq!(l.tracked_keys(), 10_000);

    // One key stays busy while the others go idle.
    l.clock().advance(Duration::from_secs(5));
    assert!(allowed(l.check(&Key::V4(7))));
    assert!(allowed(l.check(&Key::V4(7))));
    l.evict();
    assert_eq!(l.tracked_keys(), 1);
    assert!(
        l.capacity() < 10_000,
        "capacity {} after eviction",
        l.capacity()
    );
    // The busy key kept its state: its bucket is still empty.
    assert!(!allowed(l.check(&Key::V4(7))));

    l.clock().advance(Duration::from_secs(5));
    l.evict();
    assert_eq!(l.tracked_keys(), 0);
    assert_eq!(l.capacity(), 0);
}

#[test]
fn eviction_makes_room_below_the_cap_again() {
    let l = local(1000, 1, 2);
    for k in 0..3 {
        l.check(&Key::V4(k));
    }
    assert_eq!((l.tracked_keys(), l.overflow_hits()), (2, 1));
    l.clock().advance(Duration::from_secs(3));
    l.evict();
    assert_eq!(l.tracked_keys(), 0);
    assert!(allowed(l.check(&Key::V4(9))));
    assert_eq!((l.tracked_keys(), l.overflow_hits()), (1, 1));
}

#[test]
fn the_registry_reuses_a_limiter_while_its_definition_is_unchanged() {
    let registry = Registry::default();
    let def = definition("per_ip", 10, Duration::from_secs(1), 10);
    let a = registry.limiter(&def, None);
    let b = registry.limiter(&def, None);
    assert!(Arc::ptr_eq(&a, &b));

    let mut changed = def.clone();
    changed.requests = 20;
    let c = registry.limiter(&changed, None);
    assert!(!Arc::ptr_eq(&a, &c));

    // Once no snapshot holds it, the same definition starts afresh.
    let weak = Arc::downgrade(&a);
    drop((a, b));
    assert!(weak.upgrade().is_none());
}

#[test]
fn acme_challenges_are_exempt() {
    assert!(is_exempt("/.well-known/acme-challenge/token"));
    assert!(!is_exempt("/.well-known/acme-challenge"));
    assert!(!is_exempt("/api/.well-known/acme-challenge/x"));
    assert!(!is_exempt("/"));
}

#[test]
fn policy_items_and_seconds() {
    assert_eq!(
        policy_item("per_ip", 100, Duration::from_secs(60)),
        "\"per_ip\";q=100;w=60"
    );
    assert_eq!(
        policy_item("fast", 10, Duration::from_millis(500)),
        "\"fast\";q=20;w=1"
    );
    assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
    assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
    assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    assert_eq!(whole_seconds(Duration::ZERO), 0);
}
