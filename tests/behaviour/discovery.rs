//! Discovery that starts nothing it need not: docs, search and server descriptions are
//! answered from the tool cache; a server with no cache is started once, only to be listed,
//! and stopped again; its description comes from its own `instructions`.
//!
//! The server is `tests/fixtures/faulty_server.py` (official Python SDK), copied into a
//! directory of the test's own so that its processes can be told apart, with no description
//! in the config and `FAULTY_SERVER_STARTS` counting its starts. It needs the same Python as
//! the fault tests; without one the test prints `SKIP` and passes, unless
//! `TEST_REQUIRE_UPSTREAMS=1`.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde_json::json;

use crate::faults::{FAULTY_SERVER, python_with_mcp};
use crate::procs::processes_naming;
use crate::support::TestBackend;

/// The first sentence of the fixture's `instructions`.
const DESCRIPTION: &str = "Misbehaves on demand, for tests.";

fn starts(file: &Path) -> usize {
    std::fs::read_to_string(file).map_or(0, |s| s.lines().count())
}

pub(crate) async fn docs_and_descriptions_leave_no_server_running(b: &TestBackend) -> Result<()> {
    if b.name.starts_with("oci_rootless") {
        #[allow(clippy::print_stderr, reason = "the skip must be loud")]
        {
            eprintln!(
                "SKIP discovery on {}: the Python with `mcp` is in root's cache, out of the \
                 unprivileged user's reach (the proxy path is the same as on oci)",
                b.name
            );
        }
        return Ok(());
    }
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("described-upstream-")
        .tempdir()?;
    let script = dir.path().join("server.py");
    std::fs::copy(FAULTY_SERVER, &script)?;
    let started = dir.path().join("starts");
    let config = dir.path().join("servers.json");
    // A name of its own: the suite's bridges share one state dir, so one tool cache.
    let name = format!("described-{}", std::process::id());
    let mut servers = serde_json::Map::new();
    servers.insert(
        name.clone(),
        json!({"command": python, "args": [script], "env": {"FAULTY_SERVER_STARTS": started}}),
    );
    std::fs::write(&config, json!({"mcpServers": servers}).to_string())?;
    let config = config.to_str().context("utf-8 path")?;
    let env = [("MCP_SERVERS_CONFIG", config)];

    // A cold cache: the search starts the server once, only to list it.
    let bridge = b.bridge_with(&env).await?;
    let out = bridge
        .ok(&format!(
            "import mcp.runtime as r\n\
             print([d['tool'] for d in r.search_tool_docs_sync('ping the server')][:1])\n\
             print(r.discovered_servers(detailed=True))\n\
             print(len(r.query_tool_docs_sync({name:?})) > 2)"
        ))
        .await?;
    let described = format!("({{'name': '{name}', 'description': '{DESCRIPTION}'}},)");
    ensure!(
        out == format!("['ping']\n{described}\nTrue\n"),
        "search, descriptions and docs: {out:?}"
    );
    ensure!(
        starts(&started) == 1,
        "one start for the search, the descriptions and the docs"
    );
    let left = processes_naming(dir.path());
    ensure!(
        left.is_empty(),
        "a server listed for docs was left running: {left:?}"
    );

    // A warm cache, in a new bridge: nothing starts at all.
    let again = b.bridge_with(&env).await?;
    let out = again
        .ok(&format!(
            "import mcp.runtime as r\n\
             print(r.describe_server({name:?})['description'])\n\
             print([d['tool'] for d in await r.search_tool_docs('crash the server', limit=1)])"
        ))
        .await?;
    ensure!(out == format!("{DESCRIPTION}\n['crash']\n"), "{out:?}");
    ensure!(starts(&started) == 1, "the cache answered; nothing started");

    // A run that names the server starts it and keeps it up, as before.
    let pong = again
        .call(
            json!({"code": format!("print(await mcp_{}.ping())", name.replace('-', "_")),
            "servers": [name]}),
        )
        .await?;
    ensure!(!pong.is_error, "{}", pong.text);
    ensure!(starts(&started) == 2, "the call started it");
    ensure!(
        !processes_naming(dir.path()).is_empty(),
        "the called server stays up"
    );
    Ok(())
}
