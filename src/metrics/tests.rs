use super::*;

#[test]
fn exposition_has_build_info_and_reload_hooks() {
    let m = Metrics::new();
    let text = m.encode();
    assert!(
        text.contains(&format!(
            "edgeward_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
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

#[test]
fn classic_format_names_counter_samples_and_drops_openmetrics_lines() {
    let m = Metrics::new();
    m.record_reload(ReloadOutcome::Applied, None);
    let (om, om_type) = m.encode_for(Some(
        b"application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    ));
    assert_eq!(om_type, CONTENT_TYPE);
    assert!(om.contains("# TYPE edgeward_config_reloads counter\n"));
    let (text, text_type) = m.encode_for(None);
    assert_eq!(text_type, CLASSIC_CONTENT_TYPE);
    assert!(
        text.contains("# HELP edgeward_config_reloads_total Config reload attempts by outcome")
    );
    assert!(text.contains("# TYPE edgeward_config_reloads_total counter\n"));
    assert!(text.contains("edgeward_config_reloads_total{outcome=\"applied\"} 1\n"));
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
}
