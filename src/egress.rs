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
//! - [`sandbox`]: what each session gets: its ledger, and its proxy's socket mounted;
//! - [`secrets`]: placeholders of host secrets are swapped for their values only in
//!   requests to the hosts they are bound to.

pub mod address;
pub mod allow;
pub mod fetch;
pub mod ledger;
pub mod proxy;
pub mod resolve;
pub mod sandbox;
pub mod secrets;

use std::sync::Arc;

use address::AddressPolicy;
use allow::AllowList;
use fetch::{FetchError, Fetcher};
use ledger::Limits;
use sandbox::SessionNetwork;
use secrets::Secrets;

use crate::audit::Audit;
use crate::metrics::Metrics;

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

/// The bridge's side of the network: the policy, the client `fetch` uses, the audit log and
/// the metrics.
#[derive(Debug)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    fetcher: Fetcher,
    audit: Audit,
    metrics: Metrics,
}

impl Egress {
    /// The way out under `policy`, or `None` when no host is allowed; every connection is
    /// written to `audit` and counted in `metrics`.
    pub fn start(
        policy: &Arc<EgressPolicy>,
        audit: Audit,
        metrics: Metrics,
    ) -> Result<Option<Arc<Self>>, FetchError> {
        if !policy.is_enabled() {
            return Ok(None);
        }
        sandbox::remove_orphaned_dirs();
        Ok(Some(Arc::new(Self {
            fetcher: Fetcher::new(Arc::clone(policy))?,
            policy: Arc::clone(policy),
            audit,
            metrics,
        })))
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<EgressPolicy> {
        &self.policy
    }

    /// The client of `mcp.runtime.fetch`.
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// The network of a new session: its budget and record (which also goes to the audit
    /// log once the session is named), and with `proxied` (sandboxes with sockets) a proxy
    /// of its own, for [`SessionNetwork::grant`] to mount.
    pub fn open_session(&self, proxied: bool) -> std::io::Result<SessionNetwork> {
        SessionNetwork::open(self, proxied)
    }
}
