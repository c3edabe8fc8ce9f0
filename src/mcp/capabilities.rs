//! The capabilities resource: what the sandbox can do and how to use its helpers, one
//! markdown text (`capabilities.md`) served as an MCP resource and by the
//! `capability_summary` discovery tool.

/// URI of the capabilities resource.
pub const CAPABILITIES_URI: &str = "resource://mcp-server-code-execution-mode/capabilities";
/// Text of the capabilities resource.
pub const CAPABILITIES_TEXT: &str = include_str!("capabilities.md");
