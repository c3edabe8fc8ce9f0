//! The sandbox's controlled way out: an allow list of hosts, reached through the bridge.
//!
//! Without `MCP_BRIDGE_ALLOW_HOSTS` a sandbox has no network at all. With it, code reaches
//! those hosts, over HTTP and HTTPS only, through the bridge: container and OCI sandboxes
//! through a per-session HTTP proxy on a unix socket ([`proxy`]), WASI sandboxes (which have
//! no sockets) through `mcp.runtime.fetch`, which the host performs ([`fetch`]). Both apply
//! one [`EgressPolicy`]:
//!
//! - [`allow`]: the request's host and port must be on the list;
//! - [`address`]: every address the host resolves to is checked, and loopback, private,
//!   link-local, multicast and metadata addresses are refused whatever the list says
//!   (`MCP_BRIDGE_ALLOW_PRIVATE` opts some in); [`resolve`] connects only to checked ones;
//! - [`ledger`]: bytes and open connections are capped per session, and every connection,
//!   allowed or not, is recorded for the reply (`network`) and the log;
//! - [`secrets`]: placeholders of host secrets are swapped for their values only in
//!   requests to the hosts they are bound to.

pub mod address;
pub mod allow;
pub mod fetch;
pub mod ledger;
pub mod proxy;
pub mod resolve;
pub mod secrets;

use address::AddressPolicy;
use allow::AllowList;
use ledger::Limits;
use secrets::Secrets;

/// Everything that decides where a sandbox's requests may go.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressPolicy {
    /// `MCP_BRIDGE_ALLOW_HOSTS`.
    pub allow: AllowList,
    /// `MCP_BRIDGE_ALLOW_PRIVATE`, and the check of every address.
    pub addresses: AddressPolicy,
    /// `MCP_BRIDGE_SECRETS`.
    pub secrets: Secrets,
    /// Per-session caps.
    pub limits: Limits,
}

impl EgressPolicy {
    /// True when any host is allowed: sessions get a way out.
    pub fn is_enabled(&self) -> bool {
        !self.allow.is_empty()
    }

    /// `Ok` when a request may be made to `host` (normalised) at `port`; the reason when
    /// not. Addresses are checked later, when the name is resolved.
    pub fn admits(&self, host: &str, port: u16) -> Result<(), String> {
        if self.allow.allows(host, port) {
            Ok(())
        } else if self.allow.is_empty() {
            Err("this sandbox has no network (MCP_BRIDGE_ALLOW_HOSTS is empty)".into())
        } else {
            Err(format!(
                "{host}:{port} is not in MCP_BRIDGE_ALLOW_HOSTS ({})",
                self.allow
            ))
        }
    }
}
