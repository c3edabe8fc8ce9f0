//! One client format each: where a parsed config file keeps its server maps.

use std::path::Path;

use serde_json::{Map, Value};

use super::discovery_env::DiscoveryEnv;
use super::known_clients::Format;
use super::types::json_kind;

/// A server map found in a file, with a note on where in the file when it matters.
pub(super) type ServerMap<'a> = (Option<String>, &'a Map<String, Value>);

fn as_server_map<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("`{key}` is {}, not an object of servers", json_kind(value)))
}

/// Add the server map under `key` (if present) to `maps`; whether it was present.
fn push_map<'a>(
    maps: &mut Vec<ServerMap<'a>>,
    key: &str,
    value: Option<&'a Value>,
) -> Result<bool, String> {
    match value {
        Some(value) => {
            maps.push((None, as_server_map(value, key)?));
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The server maps of a document, per its format.
pub(super) fn server_maps<'a>(
    document: &'a Map<String, Value>,
    format: Format,
    env: &DiscoveryEnv,
) -> Result<Vec<ServerMap<'a>>, String> {
    let mut maps: Vec<ServerMap<'a>> = Vec::new();
    match format {
        Format::Generic => {
            let mut found = false;
            for key in ["mcpServers", "servers", "mcp_servers"] {
                found |= push_map(&mut maps, key, document.get(key))?;
            }
            if let Some(mcp) = document.get("mcp") {
                push_mcp_key(&mut maps, mcp)?;
                found = true;
            }
            if !found {
                return Err("it has no `mcpServers` (or `servers`, `mcp_servers`) object".into());
            }
        }
        Format::McpServers | Format::Gemini => {
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::ClaudeJson => {
            if let Some(projects) = document.get("projects").and_then(Value::as_object) {
                let canonical = std::fs::canonicalize(&env.cwd).ok();
                let project = projects.iter().find(|(dir, _)| {
                    let dir = Path::new(dir.as_str());
                    dir == env.cwd || canonical.as_deref() == Some(dir)
                });
                if let Some((dir, project)) = project
                    && let Some(servers) = project.get("mcpServers")
                {
                    maps.push((
                        Some(format!("project {dir}")),
                        as_server_map(servers, "mcpServers")?,
                    ));
                }
            }
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::VsCodeMcp => {
            push_map(&mut maps, "servers", document.get("servers"))?;
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::VsCodeSettings => {
            let nested = document.get("mcp").and_then(|m| m.get("servers"));
            push_map(&mut maps, "mcp.servers", nested)?;
            push_map(&mut maps, "mcp.servers", document.get("mcp.servers"))?;
        }
        Format::OpenCode => {
            if let Some(mcp) = document.get("mcp") {
                push_mcp_key(&mut maps, mcp)?;
            }
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::Codex => {
            push_map(&mut maps, "mcp_servers", document.get("mcp_servers"))?;
        }
    }
    Ok(maps)
}

/// opencode's `mcp`: either the server map itself, or (v2 and VS Code) `{servers: {...}}`.
fn push_mcp_key<'a>(maps: &mut Vec<ServerMap<'a>>, mcp: &'a Value) -> Result<(), String> {
    match mcp.get("servers") {
        Some(servers) => maps.push((None, as_server_map(servers, "mcp.servers")?)),
        None => maps.push((None, as_server_map(mcp, "mcp")?)),
    }
    Ok(())
}
