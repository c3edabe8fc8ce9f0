use std::time::Duration;

use super::*;

fn metrics() -> Metrics {
    Metrics::new(
        BridgeFacts {
            backend: "podman",
            transport: "http",
        },
        ["team-a", "default"],
    )
}

/// The value of the series written exactly as `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn every_known_tenant_has_every_status_and_reason_from_the_start() {
    let text = metrics().render(&SessionGauges::default());
    for tenant in ["default", "team-a"] {
        for status in RunEnd::ALL {
            let series = format!(
                "mcp_bridge_runs_total{{tenant=\"{tenant}\",status=\"{}\"}}",
                status.as_str()
            );
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for reason in Refusal::ALL {
            let series = format!(
                "mcp_bridge_refusals_total{{tenant=\"{tenant}\",reason=\"{}\"}}",
                reason.as_str()
            );
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for gauge in ["mcp_bridge_sessions_live", "mcp_bridge_sessions_suspended"] {
            let series = format!("{gauge}{{tenant=\"{tenant}\"}}");
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
    }
    assert!(
        text.contains("mcp_bridge_info{version=\"0.1.0\",backend=\"podman\",transport=\"http\"} 1")
    );
    assert_eq!(
        text.matches("tenant=\"default\",status=\"completed\"")
            .count(),
        1
    );
}

#[test]
fn runs_are_counted_by_status_and_timed_once_they_reach_a_session() {
    let metrics = metrics();
    metrics.run_finished(
        "team-a",
        RunEnd::Ran(RunKind::Completed),
        Duration::from_millis(2),
    );
    metrics.run_finished(
        "team-a",
        RunEnd::Ran(RunKind::Completed),
        Duration::from_secs(7),
    );
    metrics.run_finished("team-a", RunEnd::Refused, Duration::ZERO);
    let text = metrics.render(&SessionGauges::default());
    let runs = |status| {
        value(
            &text,
            &format!("mcp_bridge_runs_total{{tenant=\"team-a\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(runs("completed"), Some(2.0));
    assert_eq!(runs("refused"), Some(1.0));
    let histogram = |suffix: &str| {
        value(
            &text,
            &format!("mcp_bridge_run_duration_seconds_{suffix}{{tenant=\"team-a\"}}"),
        )
    };
    assert_eq!(
        histogram("count"),
        Some(2.0),
        "the refused run is not timed"
    );
    assert!((histogram("sum").unwrap() - 7.002).abs() < 1e-9);
    let bucket = |le: &str| {
        value(
            &text,
            &format!("mcp_bridge_run_duration_seconds_bucket{{le=\"{le}\",tenant=\"team-a\"}}"),
        )
    };
    assert_eq!(bucket("0.0025"), Some(1.0));
    assert_eq!(bucket("10.0"), Some(2.0));
    assert_eq!(bucket("+Inf"), Some(2.0));
    assert!(text.contains("# UNIT mcp_bridge_run_duration_seconds seconds"));
}

#[test]
fn refused_calls_and_connections_are_refusals_too() {
    let metrics = metrics();
    metrics.proxied_call("team-a", "github", CallEnd::Ok, Duration::from_millis(40));
    metrics.proxied_call("team-a", "github", CallEnd::Refused, Duration::ZERO);
    metrics.network_connection("team-a", true, 100, 2000);
    metrics.network_connection("team-a", false, 0, 0);
    metrics.refused("", Refusal::Unauthorized);
    let text = metrics.render(&SessionGauges::default());
    let calls = |outcome| {
        value(
            &text,
            &format!(
                "mcp_bridge_proxied_calls_total{{tenant=\"team-a\",server=\"github\",\
                 outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(calls("ok"), Some(1.0));
    assert_eq!(calls("refused"), Some(1.0));
    let refusals = |tenant, reason| {
        value(
            &text,
            &format!("mcp_bridge_refusals_total{{tenant=\"{tenant}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refusals("team-a", "policy"), Some(1.0));
    assert_eq!(refusals("team-a", "network"), Some(1.0));
    assert_eq!(refusals("", "unauthorized"), Some(1.0));
    assert_eq!(
        value(
            &text,
            "mcp_bridge_proxied_call_duration_seconds_count{server=\"github\"}"
        ),
        Some(1.0),
        "a refused call is not timed"
    );
    assert_eq!(
        value(
            &text,
            "mcp_bridge_network_bytes_total{tenant=\"team-a\",direction=\"received\"}"
        ),
        Some(2000.0)
    );
    assert_eq!(
        value(
            &text,
            "mcp_bridge_network_connections_total{tenant=\"team-a\",outcome=\"refused\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn session_gauges_follow_each_scrape_and_fall_back_to_zero() {
    let metrics = metrics();
    let busy = SessionGauges {
        live: [("team-a".to_string(), 3)].into(),
        suspended: [("former-tenant".to_string(), 2)].into(),
        warm: 2,
    };
    let text = metrics.render(&busy);
    assert_eq!(
        value(&text, "mcp_bridge_sessions_live{tenant=\"team-a\"}"),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            "mcp_bridge_sessions_suspended{tenant=\"former-tenant\"}"
        ),
        Some(2.0),
        "saved sessions of a tenant no longer in the file still count"
    );
    assert_eq!(value(&text, "mcp_bridge_pool_warm_sessions"), Some(2.0));
    let text = metrics.render(&SessionGauges::default());
    assert_eq!(
        value(&text, "mcp_bridge_sessions_live{tenant=\"team-a\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "mcp_bridge_sessions_suspended{tenant=\"former-tenant\"}"
        ),
        None,
        "an unknown tenant's series goes with its last session"
    );
}

#[test]
fn label_values_cannot_break_the_text() {
    let metrics = metrics();
    metrics.proxied_call("team-a", "odd\"name\n# EOF", CallEnd::Ok, Duration::ZERO);
    let text = metrics.render(&SessionGauges::default());
    assert_eq!(
        text.lines()
            .filter(|line| line.starts_with("# EOF"))
            .count(),
        1,
        "the name stays inside its label's quotes"
    );
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains(r#"server="odd\"name\n# EOF""#));
}

#[test]
fn metrics_that_are_off_record_and_render_nothing() {
    let off = Metrics::off();
    off.run_finished("default", RunEnd::Ran(RunKind::Completed), Duration::ZERO);
    off.refused("default", Refusal::Policy);
    assert!(!off.is_on());
    assert_eq!(off.render(&SessionGauges::default()), "");
}
