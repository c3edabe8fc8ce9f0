//! The `run_python` tool: its schema, its description, and reading its arguments.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

use crate::config::{BackendKind, Config, WasiPython};
use crate::mcp::schema::check_arguments;
use crate::sessions::{DEFAULT_SESSION, validate_name};

/// The tool's name.
pub const RUN_PYTHON: &str = "run_python";

/// What the sandbox offers beyond the standard library, as far as the listing may promise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SandboxFacts {
    /// numpy, pandas, scipy, scikit-learn and matplotlib import, and `plt.show()` returns
    /// images: the full WASI interpreter and our own root filesystem. False where the user
    /// brought their own interpreter or image, whose contents we cannot promise.
    pub data_stack: bool,
    /// `mcp.runtime.install()` may add packages (`MCP_BRIDGE_PACKAGE_INSTALL`).
    pub packages: bool,
}

impl SandboxFacts {
    /// What the configured backend and interpreter offer.
    pub fn of(config: &Config) -> Self {
        let data_stack = match config.backend {
            BackendKind::Wasi => {
                config.wasi_python == WasiPython::Full && config.python_wasm.is_none()
            }
            BackendKind::Podman | BackendKind::Docker => config.image.is_none(),
            BackendKind::Oci => config.rootfs.is_none(),
        };
        Self {
            data_stack,
            packages: config.packages.enabled,
        }
    }
}

/// What an agent reads about the tool: short (it is paid on every turn of every
/// conversation: the whole listing stays within 180 o200k tokens), and enough to use the
/// sandbox and find servers and helpers on its own. The capabilities resource
/// (`r.capability_summary()`) is the manual.
pub fn run_python_description(facts: SandboxFacts) -> String {
    let stack = if facts.data_stack {
        " with numpy, pandas, scipy, sklearn, matplotlib: plt.show() and /workspace/out/ \
files come back"
    } else {
        ", standard library only; /workspace/out/ files come back"
    };
    let install = if facts.packages {
        "; `await r.install('pkg')` adds wheels"
    } else {
        ""
    };
    format!(
        "Persistent Python (top-level await){stack}. Offline{install}. MCP servers: \
`import mcp.runtime as r`; `await r.search_tool_docs(q)`; servers=[\"name\"] gives \
`await mcp_name.tool(...)`. Manual: `r.capability_summary()`."
    )
}

/// The tool definition listed by `tools/list`, its description told for a sandbox with
/// `facts`. Its input schema is the one statement of what a call may pass: every call is
/// checked against it before it is read.
///
/// Nothing more is listed than clients need, for every token is paid on every turn: the
/// output schema says only that the structured result is an object (its fields are named
/// for what they hold, and the capabilities resource describes each), and there is no
/// title and no annotations (their defaults, "may change things and reach the outside
/// world", are the truth once servers are proxied).
pub fn run_python_tool(facts: SandboxFacts) -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "servers": {"type": "array", "items": {"type": "string"}},
            "timeout": {"type": "number", "minimum": 0, "description": "seconds"},
            "session": {"type": "string"},
            "reset": {"type": "boolean"}
        },
        "required": ["code"],
        "additionalProperties": false
    });
    Tool::new(RUN_PYTHON, run_python_description(facts), as_object(input))
        .with_raw_output_schema(Arc::new(as_object(json!({"type": "object"}))))
}

fn as_object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("schemas are objects"),
    }
}

/// Checked arguments of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Python source.
    pub code: String,
    /// Servers to load.
    pub servers: Vec<String>,
    /// Requested timeout in seconds, before clamping.
    pub timeout_secs: Option<f64>,
    /// Session name.
    pub session: String,
    /// Start the session afresh.
    pub reset: bool,
}

/// Check the arguments of a call against the published input schema, then read them; the
/// error is a sentence the caller can act on.
pub fn parse_run_args(arguments: Option<&JsonObject>) -> Result<RunArgs, String> {
    check_arguments(&run_python_tool(SandboxFacts::default()), arguments)?;
    read_run_args(arguments)
}

/// Read arguments already checked against [`run_python_tool`]'s input schema. What is left
/// to refuse is what the schema does not say: a session name that is not a valid name.
pub(crate) fn read_run_args(arguments: Option<&JsonObject>) -> Result<RunArgs, String> {
    let empty = JsonObject::new();
    let args = arguments.unwrap_or(&empty);
    let string = |name: &str| args.get(name).and_then(Value::as_str);
    let session = string("session").unwrap_or(DEFAULT_SESSION);
    validate_name(session).map_err(|e| e.to_string())?;
    let servers = args
        .get("servers")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(RunArgs {
        code: string("code").unwrap_or_default().to_string(),
        servers,
        timeout_secs: args.get("timeout").and_then(Value::as_f64),
        session: session.to_string(),
        reset: args.get("reset").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Result<RunArgs, String> {
        parse_run_args(Some(&as_object(value)))
    }

    #[test]
    fn the_listing_stays_small() {
        // `bench tokens` counts o200k tokens (the target is 180 for the whole `tools/list`);
        // this listing runs at about 4.2 bytes a token (673 bytes were 163 tokens).
        for (data_stack, packages) in [(false, false), (true, true)] {
            let tool = run_python_tool(SandboxFacts {
                data_stack,
                packages,
            });
            let listed =
                serde_json::to_string(&rmcp::model::ListToolsResult::with_all_items(vec![tool]))
                    .unwrap();
            assert!(listed.len() <= 780, "{}: {listed}", listed.len());
        }
    }

    #[test]
    fn good_arguments_are_accepted() {
        let parsed = args(
            json!({"code": "1", "servers": ["time"], "timeout": 5, "session": "s1",
            "reset": true}),
        )
        .unwrap();
        assert_eq!(parsed.servers, vec!["time"]);
        assert_eq!(parsed.timeout_secs, Some(5.0));
        assert_eq!(parsed.session, "s1");
        assert!(parsed.reset);
        // Fractions are common from models; below a second the config clamps up to one.
        for secs in [2.5, 0.25, 0.0] {
            let timeout = json!({"code": "", "timeout": secs});
            assert_eq!(args(timeout).unwrap().timeout_secs, Some(secs));
        }
        let defaults = args(json!({"code": ""})).unwrap();
        assert_eq!(
            (
                defaults.servers,
                defaults.timeout_secs,
                defaults.session,
                defaults.reset
            ),
            (Vec::new(), None, DEFAULT_SESSION.to_string(), false)
        );
    }

    #[test]
    fn bad_arguments_get_a_sentence_naming_the_problem() {
        assert!(
            parse_run_args(None)
                .unwrap_err()
                .contains("missing required argument `code`")
        );
        assert!(
            args(json!({"code": 1}))
                .unwrap_err()
                .contains("`code` must be a string")
        );
        assert!(
            args(json!({"cod": "x"}))
                .unwrap_err()
                .contains("unknown argument `cod`")
        );
        assert!(
            args(json!({"code": "x", "timeout": "soon"}))
                .unwrap_err()
                .contains("timeout")
        );
        assert!(
            args(json!({"code": "x", "timeout": -1}))
                .unwrap_err()
                .contains("timeout")
        );
        assert!(
            args(json!({"code": "x", "servers": [1]}))
                .unwrap_err()
                .contains("servers")
        );
        assert!(
            args(json!({"code": "x", "session": "../x"}))
                .unwrap_err()
                .contains("session")
        );
        assert!(
            args(json!({"code": "x", "reset": "yes"}))
                .unwrap_err()
                .contains("reset")
        );
    }

    #[test]
    fn what_the_schema_does_not_publish_is_refused() {
        assert_eq!(
            args(json!({"code": "x", "servers": "time"})).unwrap_err(),
            "`servers` must be a list of strings, got the string \"time\"; write [\"time\"]"
        );
        assert_eq!(
            args(json!({"code": "x", "timeout": "30s"})).unwrap_err(),
            "`timeout` must be a number (seconds), got the string \"30s\""
        );
        assert_eq!(
            args(json!({"code": "x", "timeout": -1})).unwrap_err(),
            "`timeout` must be at least 0 (seconds), got -1"
        );
        assert!(
            args(json!({"code": "x", "session": null}))
                .unwrap_err()
                .contains("leave `session` out")
        );
    }
}
