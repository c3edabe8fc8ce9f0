//! The opt-in discovery tools (`--discovery-tools`): the sandbox's discovery helpers, offered
//! as small MCP tools for clients that want to look before they run code. Off by default,
//! so the surface stays `run_python` alone.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::proxy::dispatch::Proxy;

fn object(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("schemas are objects"),
    }
}

fn read_only(tool: Tool) -> Tool {
    tool.with_annotations(ToolAnnotations::new().read_only(true).open_world(false))
}

/// The discovery tools' definitions; their input schemas say what each call may pass.
pub(super) fn discovery_tools() -> Vec<Tool> {
    let detail = json!({"type": "string", "enum": ["summary", "full"],
        "description": "\"full\" adds each tool's input schema."});
    vec![
        read_only(Tool::new(
            "discovered_servers",
            "List the MCP servers run_python can load with servers=[...].",
            object(json!({"type": "object", "properties": {
                "detailed": {"type": "boolean", "description": "Include descriptions."}}})),
        )),
        read_only(Tool::new(
            "search_tool_docs",
            "Find tools across all configured MCP servers, best match first.",
            object(json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                "detail": detail}, "required": ["query"]})),
        )),
        read_only(Tool::new(
            "query_tool_docs",
            "Docs of one MCP server's tools, or of one tool.",
            object(json!({"type": "object", "properties": {
                "server": {"type": "string"},
                "tool": {"type": "string"},
                "detail": detail}, "required": ["server"]})),
        )),
        read_only(Tool::new(
            "capability_summary",
            "What the run_python sandbox can do and how to use its helpers.",
            object(json!({"type": "object", "properties": {}})),
        )),
    ]
}

fn structured(value: &Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(value).expect("serialises");
    let wrapped = json!({ "result": value });
    let mut result = CallToolResult::structured(wrapped);
    result.content = vec![ContentBlock::text(text)];
    result
}

/// Call one discovery tool with arguments already checked against its input schema; `None`
/// when `name` is not one of them.
pub(super) async fn call(
    proxy: &Proxy,
    manual: &str,
    name: &str,
    args: &JsonObject,
) -> Option<CallToolResult> {
    let string = |name: &str| args.get(name).and_then(Value::as_str);
    let full = string("detail") == Some("full");
    let outcome: Result<CallToolResult, String> = match name {
        "discovered_servers" => {
            let detailed = args
                .get("detailed")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if detailed {
                let described = proxy.describe_servers(None).await;
                described
                    .map(|servers| {
                        let servers: Vec<Value> = servers
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|s| json!({"name": s["name"], "description": s["description"]}))
                            .collect();
                        structured(&Value::Array(servers))
                    })
                    .map_err(|e| e.message)
            } else {
                let names = proxy.catalogue().names();
                Ok(structured(&json!(names)))
            }
        }
        "search_tool_docs" => {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "the schema checked an integer in 1..=20"
            )]
            let limit = args
                .get("limit")
                .and_then(Value::as_f64)
                .map_or(5, |n| n as u64);
            let query = string("query").unwrap_or_default();
            let found = proxy.search_docs(query, limit, full).await;
            found.map(|v| structured(&v)).map_err(|e| e.message)
        }
        "query_tool_docs" => {
            let server = string("server").unwrap_or_default();
            let found = proxy.query_docs(server, string("tool"), full).await;
            found.map(|v| structured(&v)).map_err(|e| e.message)
        }
        "capability_summary" => Ok(CallToolResult::success(vec![ContentBlock::text(manual)])),
        _ => return None,
    };
    Some(outcome.unwrap_or_else(|message| CallToolResult::error(vec![ContentBlock::text(message)])))
}
