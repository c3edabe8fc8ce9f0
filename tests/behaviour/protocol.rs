//! The MCP surface: tools, schemas, errors, resources, output modes, malformed input.

use anyhow::{Context, Result, ensure};
use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

use crate::support::{RawBridge, TestBackend};

pub(crate) async fn lists_one_tool_with_schemas(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let tools = bridge.client.list_all_tools().await?;
    ensure!(tools.len() == 1, "{tools:?}");
    let tool = &tools[0];
    ensure!(tool.name == "run_python");
    let description = tool.description.as_deref().unwrap_or_default();
    ensure!(
        description.len() < 600,
        "description too long: {}",
        description.len()
    );
    for helper in ["search_tool_docs", "capability_summary", "/workspace/out/"] {
        ensure!(description.contains(helper), "{helper}: {description}");
    }
    let input = Value::Object((*tool.input_schema).clone());
    ensure!(input["required"] == json!(["code"]), "{input}");
    for arg in ["code", "servers", "timeout", "session", "reset"] {
        ensure!(
            input["properties"][arg].is_object(),
            "missing {arg}: {input}"
        );
    }
    // The structured result is an object; its fields are described in the resource.
    let output = tool.output_schema.as_ref().context("no output schema")?;
    ensure!(output.get("type") == Some(&json!("object")), "{output:?}");
    Ok(())
}

pub(crate) async fn unknown_tool_is_a_protocol_error(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let err = bridge
        .client
        .call_tool(CallToolRequestParams::new("rm_rf"))
        .await
        .expect_err("unknown tools are protocol errors");
    ensure!(err.to_string().contains("rm_rf"), "{err}");
    ensure!(bridge.ok("print(1)").await? == "1\n");
    Ok(())
}

pub(crate) async fn bad_arguments_get_a_clear_error(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let cases = [
        (json!({}), "missing required argument `code`"),
        (json!({"code": 5}), "`code` must be a string"),
        (json!({"code": "1", "timeout": "soon"}), "timeout"),
        (
            json!({"code": "1", "servers": "time"}),
            "`servers` must be a list of strings",
        ),
        (
            json!({"code": "1", "servers": ["nope-server"]}),
            "unknown server `nope-server`",
        ),
        (
            json!({"code": "1", "session": "../../etc"}),
            "invalid session name",
        ),
        (json!({"code": "1", "bogus": 1}), "unknown argument `bogus`"),
    ];
    for (arguments, expected) in cases {
        let reply = bridge.call(arguments.clone()).await?;
        ensure!(reply.is_error, "{arguments} should fail");
        ensure!(
            reply.text.contains(expected),
            "{arguments}: {:?} lacks {expected:?}",
            reply.text
        );
    }
    ensure!(bridge.ok("print('fine')").await? == "fine\n");
    Ok(())
}

pub(crate) async fn unknown_server_is_named(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge
        .call(json!({"code": "1", "servers": ["github"]}))
        .await?;
    ensure!(
        reply.is_error && reply.text.contains("`github`"),
        "{}",
        reply.text
    );
    Ok(())
}

pub(crate) async fn malformed_json_rpc_keeps_the_server_serving(b: &TestBackend) -> Result<()> {
    let mut raw = RawBridge::start(b)?;
    raw.initialize().await?;
    raw.send_line("{this is not json").await?;
    raw.send_line("[]").await?;
    raw.send_line(r#"{"jsonrpc":"2.0","id":"x","method":"no/such/method"}"#)
        .await?;
    raw.send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": 12}}}))
        .await?;
    let bad_args = raw.response(7).await?;
    ensure!(bad_args["result"]["isError"] == json!(true), "{bad_args}");
    raw.send(&json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": "print(2 + 2)"}}}))
        .await?;
    let good = raw.response(8).await?;
    ensure!(
        good["result"]["structuredContent"]["stdout"] == "4\n",
        "{good}"
    );
    ensure!(raw.is_running());
    Ok(())
}

pub(crate) async fn capabilities_resource_is_readable(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let resources = bridge.client.list_all_resources().await?;
    let uri = "resource://mcp-server-code-execution-mode/capabilities";
    let listed = resources.iter().find(|r| r.uri == uri);
    ensure!(listed.is_some(), "{resources:?}");
    let read = bridge
        .client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await?;
    let text = serde_json::to_string(&read)?;
    let read_mime = serde_json::to_value(&read)?["contents"][0]["mimeType"].clone();
    ensure!(
        listed.and_then(|r| r.mime_type.as_deref()) == read_mime.as_str(),
        "listed as {:?}, read as {read_mime}",
        listed.and_then(|r| r.mime_type.as_deref())
    );
    ensure!(
        text.contains("run_python") && text.contains("discovered_servers"),
        "{text}"
    );
    // One manual: the sandbox's capability_summary() is the resource's text.
    let resource = serde_json::to_value(&read)?["contents"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let inside = bridge
        .ok("import mcp.runtime as r\nprint(r.capability_summary(), end='')")
        .await?;
    ensure!(
        inside == resource,
        "inside:\n{inside}\n---\nthe resource:\n{resource}"
    );
    ensure!(
        resource.contains(&format!("Backend `{}`", b.backend())),
        "{resource}"
    );
    Ok(())
}

pub(crate) async fn output_modes_shape_the_text(b: &TestBackend) -> Result<()> {
    let code = "print('hi')";
    let compact = b.bridge().await?.run(code).await?;
    ensure!(compact.text == "hi\n", "{:?}", compact.text);
    let toon = b
        .bridge_with(&[("MCP_BRIDGE_OUTPUT_MODE", "toon")])
        .await?
        .run(code)
        .await?;
    ensure!(
        toon.text.contains("stdout: \"hi\\n\"") && toon.text.contains("ok: true"),
        "{}",
        toon.text
    );
    let json = b
        .bridge_with(&[("MCP_BRIDGE_OUTPUT_MODE", "json")])
        .await?
        .run(code)
        .await?;
    let parsed: Value = serde_json::from_str(&json.text)?;
    ensure!(parsed["stdout"] == "hi\n", "{parsed}");
    Ok(())
}

pub(crate) async fn structured_content_reports_the_run(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run("print('x')").await?;
    let s = &reply.structured;
    ensure!(s["ok"] == json!(true) && s["status"] == "completed", "{s}");
    ensure!(
        s["session"] == "default" && s["servers"] == json!([]),
        "{s}"
    );
    ensure!(
        s["state_lost"] == json!(false) && s["cut_bytes"]["stdout"] == 0,
        "{s}"
    );
    ensure!(s["duration_ms"].as_f64().is_some(), "{s}");
    Ok(())
}

pub(crate) async fn cancelling_a_request_stops_its_run(b: &TestBackend) -> Result<()> {
    let mut raw = RawBridge::start(b)?;
    raw.initialize().await?;
    raw.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": "while True:\n    pass", "timeout": 120}}}))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    raw.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 5, "reason": "the user gave up"}}),
    )
    .await?;
    // Without cancellation this call would queue behind the runaway loop for two minutes.
    let started = std::time::Instant::now();
    raw.send(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": "print('after')"}}}))
        .await?;
    let after = raw.response(6).await?;
    ensure!(
        after["result"]["structuredContent"]["stdout"] == "after\n",
        "{after}"
    );
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the run was not stopped"
    );
    Ok(())
}
