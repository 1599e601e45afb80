use super::*;

#[test]
fn exposition_has_build_info_and_reload_hooks() {
    let m = Metrics::new();
    let text = m.encode();
    assert!(text.contains("edgeward_build_info{version=\""), "{text}");
    assert!(text.ends_with("# EOF\n"));
    assert!(m.last_reload().is_none());

    m.record_reload(ReloadOutcome::Failed, Some("routes[0].path: bad".into()));
    m.record_reload(ReloadOutcome::Applied, None);
    m.record_reload(ReloadOutcome::Applied, None);
    let text = m.encode();
    assert!(
        text.contains("edgeward_config_reloads_total{outcome=\"applied\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("edgeward_config_reloads_total{outcome=\"failed\"} 1"),
        "{text}"
    );
    let last = m.last_reload().unwrap();
    assert_eq!((last.outcome, last.error), (ReloadOutcome::Applied, None));
}

#[test]
fn connection_gauges_follow_guards() {
    let m = Metrics::new();
    let gauges = m.connection_gauges("public");
    let a = gauges.open(Protocol::H1);
    let _b = gauges.open(Protocol::H1);
    let _ws = gauges.open(Protocol::WebSocket);
    drop(a);
    let text = m.encode();
    assert!(
        text.contains("edgeward_open_connections{listener=\"public\",protocol=\"h1\"} 1"),
        "{text}"
    );
    assert!(text.contains("edgeward_open_connections{listener=\"public\",protocol=\"h2\"} 0"));
    assert!(
        text.contains("edgeward_open_connections{listener=\"public\",protocol=\"websocket\"} 1")
    );
}

#[test]
fn route_counters_carry_over_by_name() {
    let carried = Carried::default();
    let first = carried.route("api");
    first.rate_limited();
    let again = carried.route("api");
    assert!(Arc::ptr_eq(&first, &again));
    drop((first, again));
    assert_eq!(
        carried.route("api").rate_limited_count(),
        0,
        "dropped with its last user"
    );
}
