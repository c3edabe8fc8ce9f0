//! The MCP layer: the `run_python` tool, the capabilities resource, result formatting, and
//! the streamable HTTP transport.

mod capabilities;
mod discovery;
mod elicit;
pub mod files;
pub mod format;
pub mod http;
mod progress;
mod roots;
mod schema;
mod server;
pub mod terminal;
pub mod tools;

pub use capabilities::{CAPABILITIES_MIME, CAPABILITIES_URI, ManualFacts, manual};
pub use elicit::PeerAsker;
pub use server::Bridge;
