//! The `run_python` tool: its schema, its description, and reading its arguments.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::mcp::schema::check_arguments;
use crate::sessions::{DEFAULT_SESSION, validate_name};

/// The tool's name.
pub const RUN_PYTHON: &str = "run_python";

/// What an agent reads about the tool: short (well under 150 tokens), and enough to find
/// servers and helpers on its own.
pub const RUN_PYTHON_DESCRIPTION: &str = "Run Python in a persistent sandbox (globals survive \
calls; top-level await works); print results. No network; /tmp and /workspace are writable. \
MCP servers: `import mcp.runtime as r`; `r.discovered_servers()`, `r.search_tool_docs(q)`; \
servers=[\"name\"] gives async proxies `await mcp_name.tool(arg=...)`. \
`r.capability_summary()` tells more.";

/// The tool definition listed by `tools/list`. Its input schema is the one statement of
/// what a call may pass: every call is checked against it before it is read.
pub fn run_python_tool() -> Tool {
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
    let output = output_schema();
    Tool::new(RUN_PYTHON, RUN_PYTHON_DESCRIPTION, as_object(input))
        .with_raw_output_schema(Arc::new(as_object(output)))
        .with_title("Run Python")
        .with_annotations(ToolAnnotations::new().destructive(false).open_world(false))
}

/// The output schema of [`RunReport`], written out by hand to stay small: every token of
/// `tools/list` is paid by every client turn, and the field names speak for themselves.
/// A unit test keeps it in step with the struct.
fn output_schema() -> Value {
    let string = json!({"type": "string"});
    json!({
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "status": {"enum": ["completed", "raised", "timed_out", "cancelled", "sandbox_failed"]},
            "stdout": string,
            "stderr": string,
            "error": {"type": "object"},
            "servers": {"type": "array", "items": string},
            "session": string,
            "state_lost": {"type": "boolean"},
            "cut_bytes": {"type": "object"},
            "duration_ms": {"type": "number"},
            "notice": string,
            "files": {
                "type": "array",
                "description": "files the code wrote under /workspace/out/ and how each came back",
                "items": {"type": "object"}
            },
            "saved_output": {
                "type": "object",
                "description": "where the whole output of a stream cut by the cap is saved"
            },
            "unenforced": {
                "type": "array",
                "description": "limits this host cannot enforce, and what applies instead",
                "items": string
            }
        }
    })
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
    check_arguments(&run_python_tool(), arguments)?;
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
    use crate::mcp::format::RunReport;

    fn args(value: Value) -> Result<RunArgs, String> {
        parse_run_args(Some(&as_object(value)))
    }

    #[test]
    fn the_output_schema_matches_the_report() {
        use sandbox_core::{Captured, RunOutcome, RunStatus};
        let outcome = RunOutcome {
            status: RunStatus::Raised,
            stdout: Captured::default(),
            stderr: Captured::default(),
            error: Some(sandbox_core::frame::GuestErrorInfo {
                kind: "ValueError".into(),
                message: "m".into(),
                traceback: "t".into(),
            }),
            elapsed: std::time::Duration::from_millis(1),
            files: Vec::new(),
            stdout_saved: Some("/workspace/out/stdout-run-1.txt".into()),
            stderr_saved: None,
        };
        let mut report = RunReport::new(&outcome, "default", vec!["time".into()], 30.0);
        report.files = crate::mcp::files::content_blocks(&[sandbox_core::frame::OutFile {
            path: "/workspace/out/a.txt".into(),
            size: 1,
            data: Some("YQ==".into()),
        }])
        .1;
        let report = report.to_value();
        assert!(report["files"].is_array() && report["saved_output"].is_object());
        let schema = output_schema();
        let properties = schema["properties"].as_object().unwrap();
        let fields = report.as_object().unwrap();
        for key in fields.keys() {
            assert!(
                properties.contains_key(key),
                "{key} is missing from the schema"
            );
        }
        for (key, property) in properties {
            let Some(kind) = property["type"].as_str() else {
                continue;
            };
            let value = fields.get(key).filter(|v| !v.is_null());
            let ok = value.is_none_or(|v| match kind {
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "number" => v.is_number(),
                "integer" => v.is_u64(),
                "array" => v.is_array(),
                "object" => v.is_object(),
                _ => false,
            });
            assert!(ok, "{key} is not a {kind}: {value:?}");
        }
    }

    #[test]
    fn the_description_stays_short() {
        // Roughly 4 characters per token; keep well under 150 tokens.
        assert!(
            RUN_PYTHON_DESCRIPTION.len() < 520,
            "{}",
            RUN_PYTHON_DESCRIPTION.len()
        );
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
