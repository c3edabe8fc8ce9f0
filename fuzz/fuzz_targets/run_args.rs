//! The arguments of a `run_python` call, as an MCP client (or the model behind it) sends
//! them: any JSON object.
//!
//! Checked: checking never panics; accepted arguments have the published schema's types (a
//! list of servers, a number of seconds), name a valid session, carry a finite, non-negative
//! timeout that the default config clamps into `1 s..=max`, and written back as JSON they
//! are accepted again as the same arguments.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_server_code_execution_mode::cli::ConfigArgs;
use mcp_server_code_execution_mode::config::{Config, resolve_with};
use mcp_server_code_execution_mode::mcp::tools::{RunArgs, parse_run_args};
use mcp_server_code_execution_mode::sessions::validate_name;
use serde_json::{Map, Value, json};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        resolve_with(&ConfigArgs::default(), &|_| None).expect("the defaults are valid")
    })
}

fn as_json(args: &RunArgs) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("code".into(), json!(args.code));
    map.insert("servers".into(), json!(args.servers));
    if let Some(secs) = args.timeout_secs {
        map.insert("timeout".into(), json!(secs));
    }
    map.insert("session".into(), json!(args.session));
    map.insert("reset".into(), json!(args.reset));
    map
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(arguments)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(args) = parse_run_args(Some(&arguments)) else {
        return;
    };
    let given = |name: &str| arguments.get(name);
    assert!(
        given("servers").is_none_or(Value::is_array),
        "{arguments:?}"
    );
    assert!(
        given("timeout").is_none_or(Value::is_number),
        "{arguments:?}"
    );
    assert!(validate_name(&args.session).is_ok(), "{:?}", args.session);
    if let Some(secs) = args.timeout_secs {
        assert!(secs.is_finite() && secs >= 0.0, "{secs}");
    }
    let config = config();
    let timeout = config.clamp_timeout(args.timeout_secs);
    assert!(timeout >= Duration::from_secs(1) && timeout <= config.max_timeout);

    let again = parse_run_args(Some(&as_json(&args)));
    assert_eq!(
        again.as_ref(),
        Ok(&args),
        "written back, the arguments changed"
    );
});
