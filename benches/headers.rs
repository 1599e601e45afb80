//! Client resolution and header rewriting, as done once per proxied request.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use edgeward::config::ClientIpHeader;
use edgeward::forwarded::{
    Added, ForwardCtx, Peer, PeerText, request_id, resolve_client, rewrite_request,
};
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("app.example.com"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"),
    );
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    h.insert(
        "cookie",
        HeaderValue::from_static("session=abc123; theme=dark"),
    );
    h.insert("connection", HeaderValue::from_static("keep-alive"));
    h
}

fn rewriting(c: &mut Criterion) {
    let authority = HeaderValue::from_static("app.example.com");
    for (name, trusted, xff) in [
        ("untrusted_peer", Vec::<IpNet>::new(), None),
        (
            "trusted_chain",
            vec!["10.0.0.0/8".parse().unwrap()],
            Some("203.0.113.9, 10.1.2.3"),
        ),
    ] {
        let peer = Peer {
            ip: "10.0.0.7".parse::<IpAddr>().unwrap(),
            tls: true,
            local_port: 8443,
        };
        let peer_text = PeerText::of(&peer);
        let mut headers = browser_headers();
        if let Some(xff) = xff {
            headers.insert("x-forwarded-for", HeaderValue::from_static(xff));
        }
        c.bench_function(&format!("forwarded/resolve_and_rewrite_{name}"), |b| {
            b.iter_batched_ref(
                || headers.clone(),
                |h| {
                    let resolved =
                        resolve_client(&peer, &trusted, ClientIpHeader::XForwardedFor, h);
                    let id = request_id(h, resolved.peer_trusted);
                    let mut added = Added::new();
                    rewrite_request(
                        h,
                        &mut added,
                        &ForwardCtx {
                            peer: &peer,
                            peer_text: &peer_text,
                            resolved: &resolved,
                            authority: &authority,
                            request_id: &id,
                            prefix: None,
                            allow_underscore: false,
                            forwarded_header: false,
                            upgrade: false,
                            replace_trace: true,
                        },
                    );
                    black_box((h.len(), added.as_slice().len()))
                },
                BatchSize::SmallInput,
            )
        });
    }
    let headers = browser_headers();
    c.bench_function("forwarded/request_id_generated", |b| {
        b.iter(|| request_id(black_box(&headers), false))
    });
}

criterion_group!(benches, rewriting);
criterion_main!(benches);
