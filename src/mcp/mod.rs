//! The MCP layer: the `run_python` tool, the capabilities resource, result formatting, and
//! the streamable HTTP transport.

mod discovery;
pub mod files;
pub mod format;
pub mod http;
mod progress;
mod schema;
mod server;
pub mod tools;

pub use server::{Bridge, CAPABILITIES_TEXT, CAPABILITIES_URI};
