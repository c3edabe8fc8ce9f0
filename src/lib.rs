//! The code-execution MCP server as a library: configuration, the MCP layer, sessions.
//!
//! The binary (`main.rs`) is a thin edge over this: it parses the command line, sets up
//! logging and runs a subcommand.
#![forbid(unsafe_code)]

pub mod audit;
pub mod backend;
#[cfg(feature = "backend-container")]
pub mod bridge_image;
pub mod checkpoints;
pub mod cli;
pub mod clients;
pub mod config;
pub mod digest;
pub mod egress;
pub mod mcp;
pub mod metrics;
pub mod mounts;
pub mod packages;
pub mod policy;
pub mod proxy;
pub mod sessions;
pub mod settings;
pub mod state;
pub mod tenants;
pub mod units;
