//! W3C trace context: kept from a trusted peer, replaced otherwise.

use crate::harness::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn traceparent_is_kept_from_trusted_peers_and_generated_otherwise() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&simple_config(up.addr, "").replace(
        "listen = \"127.0.0.1:{http}\"",
        "listen = \"0.0.0.0:{http}\"\ntrusted_proxies = [\"127.0.0.2/32\"]",
    ))
    .await;
    let http = gw.addr("http");
    let trace = [("traceparent", PARENT), ("tracestate", "vendor=abc")];

    get_from([127, 0, 0, 2], http, "/", &trace).await.unwrap();
    get_from([127, 0, 0, 3], http, "/", &trace).await.unwrap();
    get_from([127, 0, 0, 2], http, "/", &[("traceparent", "00-bad")])
        .await
        .unwrap();
    get_from([127, 0, 0, 3], http, "/", &[]).await.unwrap();

    let seen = up.seen();
    assert_eq!(seen.len(), 4);
    let header = |i: usize, name: &str| {
        seen[i]
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(header(0, "traceparent"), [PARENT]);
    assert_eq!(header(0, "tracestate"), ["vendor=abc"]);
    let mut generated = Vec::new();
    for i in 1..4 {
        let tp = header(i, "traceparent");
        assert_eq!(tp.len(), 1, "request {i}");
        let tp = &tp[0];
        assert_eq!(tp.len(), 55, "{tp}");
        assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
        assert!(
            tp[3..35]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(&tp[3..35], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(header(i, "tracestate").is_empty(), "request {i}");
        generated.push(tp.clone());
    }
    generated.dedup();
    assert_eq!(generated.len(), 3, "a new trace per request");
}
