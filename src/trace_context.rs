//! W3C trace context (`traceparent`, `tracestate`) for the app behind the gateway.
//!
//! A well-formed `traceparent` from a trusted peer (a proxy in front of the gateway) is kept
//! unchanged with its `tracestate`, so the app joins the trace that peer started. Otherwise,
//! absent, malformed, or from an untrusted peer, both are dropped and a new trace starts here:
//! a random trace id and span id from the thread-local RNG, with the sampled flag set so that
//! parent-based samplers in the app record the trace whose id the access log line carries.

use http::{HeaderMap, HeaderValue};

use crate::forwarded::names::TRACEPARENT;

/// The trace a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The 128-bit trace id.
    pub trace_id: u128,
    /// The parent span id sent to the app.
    pub span_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// Whether the context came from a trusted peer (and is forwarded as it came).
    pub kept: bool,
}

impl TraceContext {
    /// Keeps a trusted peer's valid context, or starts a new one.
    pub fn of_request(headers: &HeaderMap, peer_trusted: bool) -> Self {
        if peer_trusted {
            let mut values = headers.get_all(TRACEPARENT).iter();
            if let (Some(value), None) = (values.next(), values.next()) {
                if let Some(mut kept) = parse(value.as_bytes()) {
                    kept.kept = true;
                    return kept;
                }
            }
        }
        Self {
            trace_id: nonzero(|| fastrand::u128(..)),
            span_id: nonzero(|| fastrand::u64(..)),
            flags: 0x01,
            kept: false,
        }
    }

    /// The `traceparent` the gateway sends, or `None` for a kept context, which goes as it
    /// came with its `tracestate`. A new one replaces whatever the client sent, and the
    /// client's `tracestate` goes with it (`forwarded::ForwardCtx::replace_trace`).
    pub fn traceparent(&self) -> Option<HeaderValue> {
        if self.kept {
            return None;
        }
        let mut buf = [0u8; 55];
        self.write_traceparent(&mut buf);
        Some(hex_header(buf))
    }

    /// `00-<trace id>-<span id>-<flags>`.
    fn write_traceparent(&self, buf: &mut [u8; 55]) {
        buf[..3].copy_from_slice(b"00-");
        hex(self.trace_id, &mut buf[3..35]);
        buf[35] = b'-';
        hex(u128::from(self.span_id), &mut buf[36..52]);
        buf[52] = b'-';
        hex(u128::from(self.flags), &mut buf[53..55]);
    }

    /// The trace id as 32 lower-case hex digits, for the access log.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex(self.trace_id, &mut out);
        out
    }
}

fn nonzero<T: PartialEq + From<u8>>(mut draw: impl FnMut() -> T) -> T {
    loop {
        let v = draw();
        if v != T::from(0) {
            return v;
        }
    }
}

/// Writes the low `out.len()` hex digits of `v` in lower case, eight digits per step.
pub(crate) fn hex(mut v: u128, out: &mut [u8]) {
    let mut words = out.rchunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&hex8(v as u32));
        v >>= 32;
    }
    let rest = words.into_remainder();
    let skip = 8 - rest.len();
    rest.copy_from_slice(&hex8(v as u32)[skip..]);
}

/// Hex digits and dashes as a header value, without checking each byte again: they are
/// visible ASCII by construction. The array becomes the value's own shared allocation, so a
/// clone (the request id goes to the app and back to the client) is a reference count; a
/// value copied from a slice is promoted on its first clone, a second allocation.
pub(crate) fn hex_header<const N: usize>(text: [u8; N]) -> HeaderValue {
    debug_assert!(text.iter().all(|&b| b.is_ascii_hexdigit() || b == b'-'));
    crate::http1::framing::known_valid(bytes::Bytes::from_owner(text))
}

/// The eight hex digits of `v`, all at once: each nibble spread into a byte of its own, then
/// every byte turned into its digit by the same additions (a table lookup per digit cost
/// about 400 instructions per request for the request id and `traceparent`).
fn hex8(v: u32) -> [u8; 8] {
    let mut x = u64::from(v);
    x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // A nibble of 10 or more carries into bit 4 when 6 is added: its digit is a letter,
    // `'a' - '0' - 10` = 39 further on than a decimal digit would be.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

/// Parses a `traceparent` value (W3C Trace Context level 1): version `00` exactly 55 bytes;
/// a later version at least that, with any extra after a `-`. Lower-case hex only; the
/// invalid version `ff` and all-zero ids are refused.
pub fn parse(v: &[u8]) -> Option<TraceContext> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = unhex(&v[..2])?;
    match version {
        0xff => return None,
        0x00 if v.len() != 55 => return None,
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = unhex(&v[3..35])?;
    let span_id = u64::try_from(unhex(&v[36..52])?).ok()?;
    let flags = u8::try_from(unhex(&v[53..55])?).ok()?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(TraceContext {
        trace_id,
        span_id,
        flags,
        kept: false,
    })
}

fn unhex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn hex_writes_the_low_digits_in_lower_case() {
        let values = [
            0,
            1,
            0x9,
            0xa,
            0xf0,
            0x0123_4567_89ab_cdef,
            u128::from(u64::MAX),
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            u128::MAX,
        ];
        for v in values {
            for width in [1, 2, 7, 8, 9, 16, 31, 32] {
                let mut out = vec![b'?'; width];
                hex(v, &mut out);
                let full = format!("{v:032x}");
                assert_eq!(
                    std::str::from_utf8(&out).unwrap(),
                    &full[32 - width..],
                    "{v:#x} in {width} digits"
                );
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn parses_the_spec_example() {
        let t = parse(VALID.as_bytes()).unwrap();
        assert_eq!(t.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(t.span_id, 0x00f067aa0ba902b7);
        assert_eq!(t.flags, 1);
        assert_eq!(&t.trace_id_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later";
        assert!(parse(future.as_bytes()).is_some());
    }

    #[test]
    fn trusted_valid_context_is_kept_with_its_state() {
        let h = headers(&[("traceparent", VALID), ("tracestate", "congo=t61rcWkgMzE")]);
        let t = TraceContext::of_request(&h, true);
        assert!(t.kept);
        assert_eq!(t.traceparent(), None);
    }

    #[test]
    fn untrusted_or_invalid_context_is_replaced() {
        let cases = [
            (
                headers(&[("traceparent", VALID), ("tracestate", "a=b")]),
                false,
            ),
            (
                headers(&[("traceparent", "garbage"), ("tracestate", "a=b")]),
                true,
            ),
            (
                headers(&[("traceparent", VALID), ("traceparent", VALID)]),
                true,
            ),
            (headers(&[]), true),
        ];
        for (h, trusted) in cases {
            let t = TraceContext::of_request(&h, trusted);
            assert!(!t.kept);
            let sent = t.traceparent().unwrap();
            let parsed = parse(sent.as_bytes()).unwrap();
            assert_eq!(
                (parsed.trace_id, parsed.span_id, parsed.flags),
                (t.trace_id, t.span_id, 1)
            );
            assert_ne!(sent, VALID);
        }
    }
}
