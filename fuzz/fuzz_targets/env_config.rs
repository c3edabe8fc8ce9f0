//! The bridge's configuration from its environment: `NAME=VALUE` lines (as in an env file)
//! for any of the `MCP_BRIDGE_*` variables, with any values.
//!
//! Checked: resolving never panics; an accepted config keeps its documented bounds (default
//! timeout at most the maximum, output cap in 1k..=16m, at most 16 warm sessions, at least
//! one session, timeouts clamped into `1 s..=max` (at least 1 s); each duration is the one its variable
//! spells (a blank one counts as unset); and the config written back as `NAME=VALUE` resolves to the same durations.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_server_code_execution_mode::cli::ConfigArgs;
use mcp_server_code_execution_mode::config::{Config, ConfigError, resolve_with};
use mcp_server_code_execution_mode::settings;
use mcp_server_code_execution_mode::units::parse_duration;

fn resolve(vars: &[(String, String)]) -> Result<Config, ConfigError> {
    resolve_with(&ConfigArgs::default(), &|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

fn durations(config: &Config) -> [(&'static str, Duration); 4] {
    [
        (settings::TIMEOUT.about().env, config.timeout),
        (settings::MAX_TIMEOUT.about().env, config.max_timeout),
        (settings::IDLE_TIMEOUT.about().env, config.idle_timeout),
        (settings::TOOL_TIMEOUT.about().env, config.tool_timeout),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(config) = resolve(&vars) else {
        return;
    };
    assert!(config.timeout <= config.max_timeout);
    assert!((1024..=16 << 20).contains(&config.output_limit));
    assert!(config.pool_size <= 16);
    assert!(config.max_sessions >= 1);
    for requested in [None, Some(0.0), Some(0.5), Some(1e12), Some(f64::NAN)] {
        // Runs get at least a second, even when the maximum is set lower (`0`, `500ms`).
        let clamped = config.clamp_timeout(requested);
        let ceiling = config.max_timeout.max(Duration::from_secs(1));
        assert!(clamped >= Duration::from_secs(1) && clamped <= ceiling);
    }
    for (name, duration) in durations(&config) {
        // A blank variable counts as unset.
        let set = vars.iter().rev().find(|(k, _)| k == name);
        if let Some((_, value)) = set.filter(|(_, v)| !v.trim().is_empty()) {
            assert_eq!(parse_duration(value), Ok(duration), "{name}={value:?}");
        }
    }

    let mut written = vars.clone();
    for (name, duration) in durations(&config) {
        written.push((
            name.to_string(),
            format!("{}.{:09}s", duration.as_secs(), duration.subsec_nanos()),
        ));
    }
    let again = resolve(&written).expect("the printed config resolves");
    for ((name, before), (_, after)) in durations(&config).into_iter().zip(durations(&again)) {
        let slack = before.as_secs_f64() * f64::EPSILON * 2.0 + 1e-9;
        assert!(
            after.abs_diff(before).as_secs_f64() <= slack,
            "{name}: {before:?} printed resolves to {after:?}"
        );
    }
});
