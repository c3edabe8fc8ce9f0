//! The MCP layer: the `run_python` tool, the capabilities resource, result formatting.

mod discovery;
pub mod format;
mod server;
pub mod tools;

pub use server::{Bridge, CAPABILITIES_TEXT, CAPABILITIES_URI};
