//! HTTP/2 -> HTTP/1.1: requests whose framing the gateway did not check never reach the app,
//! and how the answer's fields are coded. The client here writes raw frames (HPACK literals
//! without Huffman coding), because a real HTTP/2 client library refuses to send these, and
//! reads them raw, because a client library does not say how a field was coded.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name", no Huffman coding.
fn hpack(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        assert!(name.len() < 127 && value.len() < 127);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    }
    out
}

async fn h2_gateway() -> (Pki, Upstream, Gateway, tempfile::TempDir) {
    let pki = Pki::new();
    let up = Upstream::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let template = tls_config(&pki, dir.path(), "app.test", up.addr, "");
    let gw = Gateway::start(&template).await;
    (pki, up, gw, dir)
}

/// Sends the frames on a fresh h2 connection and returns the frame types the server sent on
/// stream 1 (or a connection-level GOAWAY) until the stream ends or the connection closes.
async fn exchange(pki: &Pki, gw: &Gateway, frames: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
    let mut tls = tls_connect(pki, gw.addr("https"), Some("app.test"), &[b"h2"]).await;
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    for f in frames {
        tls.write_all(f).await.unwrap();
    }
    let mut seen = Vec::new();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if tls.read_exact(&mut head).await.is_err() {
                return;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if tls.read_exact(&mut payload).await.is_err() {
                return;
            }
            if stream == 1 || head[3] == GOAWAY {
                let done = head[3] == RST_STREAM || head[3] == GOAWAY || head[4] & END_STREAM != 0;
                seen.push((head[3], payload));
                if done {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, read).await;
    seen
}

fn refused(frames: &[(u8, Vec<u8>)]) -> bool {
    // A reset stream, a GOAWAY, or a response whose :status is 400 (HPACK static index 12).
    frames.iter().any(|(kind, payload)| {
        *kind == RST_STREAM
            || *kind == GOAWAY
            || (*kind == HEADERS && payload.first() == Some(&0x8c))
    })
}

fn base() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (":method", b"POST"),
        (":scheme", b"https"),
        (":authority", b"app.test"),
        (":path", b"/"),
    ]
}

#[tokio::test]
async fn header_values_with_cr_lf_or_nul_never_reach_the_app() {
    let (pki, up, gw, _dir) = h2_gateway().await;
    for bad in [&b"a\r\nx-injected: 1"[..], b"a\nb", b"a\0b"] {
        let mut h = base();
        h[0] = (":method", b"GET");
        h.push(("x-bad", bad));
        let frames = exchange(
            &pki,
            &gw,
            &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&h))],
        )
        .await;
        assert!(refused(&frames), "{bad:?}: {frames:?}");
    }
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn content_length_disagreeing_with_data_never_reaches_the_app_whole() {
    let (pki, up, gw, _dir) = h2_gateway().await;
    let mut h = base();
    h.push(("content-length", b"5"));
    let frames = exchange(
        &pki,
        &gw,
        &[
            frame(HEADERS, END_HEADERS, 1, &hpack(&h)),
            frame(DATA, END_STREAM, 1, b"0123456789"),
        ],
    )
    .await;
    assert!(refused(&frames), "{frames:?}");
    // The app may have seen the head before the excess arrived, but never a whole request
    // with more body than its Content-Length.
    assert!(
        up.seen().iter().all(|s| s.body.len() <= 5),
        "{:?}",
        up.seen()
    );
}

#[tokio::test]
async fn non_origin_form_path_is_rejected() {
    let (pki, up, gw, _dir) = h2_gateway().await;
    for path in [&b"evil"[..], b"*", b"http://other.test/"] {
        let mut h = base();
        h[0] = (":method", b"GET");
        h[3] = (":path", path);
        let frames = exchange(
            &pki,
            &gw,
            &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&h))],
        )
        .await;
        assert!(refused(&frames), "{path:?}: {frames:?}");
    }
    assert!(up.seen().is_empty());
}

/// How an HPACK field representation asks the decoder to treat its table (RFC 7541 §6).
#[derive(Debug, PartialEq)]
enum Coded {
    Indexed,
    LiteralIndexed,
    LiteralNotIndexed,
    LiteralNeverIndexed,
}

/// An HPACK integer with an `prefix`-bit prefix at `block[*at]` (RFC 7541 §5.1).
fn hpack_int(block: &[u8], at: &mut usize, prefix: u32) -> usize {
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(block[*at]) & max;
    *at += 1;
    if value < max {
        return value;
    }
    let mut shift = 0;
    loop {
        let byte = block[*at];
        *at += 1;
        value += usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return value;
        }
    }
}

/// The representation of each field in a header block, without decoding names or values.
fn representations(block: &[u8]) -> Vec<Coded> {
    let (mut at, mut out) = (0, Vec::new());
    while at < block.len() {
        let first = block[at];
        let (coded, prefix) = match first {
            _ if first & 0x80 != 0 => {
                hpack_int(block, &mut at, 7);
                out.push(Coded::Indexed);
                continue;
            }
            _ if first & 0xc0 == 0x40 => (Coded::LiteralIndexed, 6),
            _ if first & 0xe0 == 0x20 => {
                hpack_int(block, &mut at, 5); // a table size update, not a field
                continue;
            }
            _ if first & 0xf0 == 0x10 => (Coded::LiteralNeverIndexed, 4),
            _ => (Coded::LiteralNotIndexed, 4),
        };
        let strings = if hpack_int(block, &mut at, prefix) == 0 {
            2
        } else {
            1
        };
        for _ in 0..strings {
            let len = hpack_int(block, &mut at, 7);
            at += len;
        }
        out.push(coded);
    }
    assert_eq!(at, block.len(), "header block ends inside a field");
    out
}

#[tokio::test]
async fn the_request_id_reaches_an_http2_client_as_a_field_never_indexed() {
    // A fresh id per response: indexed, it would take a table entry per response on both
    // sides and push out the fields that do repeat.
    let (pki, _up, gw, _dir) = h2_gateway().await;
    let mut h = base();
    h[0] = (":method", b"GET");
    let frames = exchange(
        &pki,
        &gw,
        &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack(&h))],
    )
    .await;
    let (_, block) = frames
        .iter()
        .find(|(kind, _)| *kind == HEADERS)
        .unwrap_or_else(|| panic!("no response head: {frames:?}"));
    assert_eq!(block.first(), Some(&0x88), "not a 200: {frames:?}");
    let coded = representations(block);
    let never = coded
        .iter()
        .filter(|c| **c == Coded::LiteralNeverIndexed)
        .count();
    assert_eq!(never, 1, "{coded:?}");
    // The fields that repeat from one answer to the next are still indexed.
    assert!(coded.contains(&Coded::LiteralIndexed), "{coded:?}");
}
