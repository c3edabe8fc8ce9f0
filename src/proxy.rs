//! Proxy dispatch: the user's MCP servers, discovered from client configs, started on
//! demand, and reached from sandboxed code through `rpc` frames (see
//! `backends/core/docs/frames.md`, "Calls to the host").

pub mod alias;
pub mod catalogue;
pub mod describe;
pub mod dispatch;
pub mod guard;
pub mod search;
pub mod upstream;
