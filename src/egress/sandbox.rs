//! What one session's sandbox gets of the network: its ledger, and, where the sandbox can
//! open sockets, a proxy of its own on a unix socket mounted into it.
//!
//! Inside a container or OCI sandbox the network is loopback only. The mounted directory
//! holds one socket, [`SOCKET`]; the guest runtime listens on [`GUEST_LISTEN`] and passes each
//! connection on to it, and the proxy variables (`HTTP_PROXY`, `HTTPS_PROXY` and their lower
//! case twins) name that address, so `pip`, `urllib`'s own proxy support, `requests` and
//! `curl` go through the bridge. Nothing else leaves the sandbox: it has no other route.
//! `pip install` puts packages in [`PIP_TARGET`], which the runtime keeps on `sys.path`.

use std::sync::Arc;

use sandbox_core::socket_dir::SocketDir;
use sandbox_core::{SandboxError, SandboxSpec};

use super::Egress;
use super::ledger::{Ledger, Witnesses};
use super::proxy::SessionProxy;
use crate::audit::Audit;
use crate::metrics::Metrics;

/// Where the socket directory is mounted in the sandbox.
pub const GUEST_DIR: &str = "/run/egress";
/// The proxy's socket in that directory.
pub const SOCKET: &str = "egress.sock";
/// The loopback address the guest runtime forwards to the socket from.
pub const GUEST_LISTEN: &str = "127.0.0.1:3128";
/// Where `pip install` in the sandbox puts packages (`PIP_TARGET`): writable scratch that
/// the guest runtime keeps on `sys.path`. The tree's own site is read-only, and Debian marks
/// it externally managed; installing with a target is what pip allows there.
pub const PIP_TARGET: &str = "/tmp/pip-packages";
/// Prefix of the per-process directory holding the sessions' socket directories.
const PROCESS_DIR_PREFIX: &str = "mcp-egress-";
/// Its mode: unlistable, but passable for libcontainer, which mounts as the sandbox's root.
const PROCESS_DIR_MODE: u32 = 0o711;

/// One session's network: its record and budget, and its proxy while it lives.
#[derive(Debug)]
pub struct SessionNetwork {
    ledger: Arc<Ledger>,
    audit: Audit,
    metrics: Metrics,
    /// The proxy and the directory of its socket, for sandboxes with sockets. The proxy
    /// stops and the directory goes when this is dropped.
    proxy: Option<(SessionProxy, SocketDir)>,
}

impl SessionNetwork {
    /// A new session's network under `egress`; with `proxied`, its own proxy on a socket
    /// in a fresh directory.
    pub(super) fn open(egress: &Egress, proxied: bool) -> std::io::Result<Self> {
        let ledger = Ledger::new(egress.policy().limits);
        let proxy = if proxied {
            let dir = SocketDir::open(PROCESS_DIR_PREFIX, PROCESS_DIR_MODE)?;
            let listener = dir.listen(SOCKET)?;
            let proxy =
                SessionProxy::serve(listener, Arc::clone(egress.policy()), Arc::clone(&ledger));
            Some((proxy, dir))
        } else {
            None
        };
        Ok(Self {
            ledger,
            audit: egress.audit.clone(),
            metrics: egress.metrics.clone(),
            proxy,
        })
    }

    /// `spec` with the proxy's socket directory mounted and the variables that lead to it
    /// set; `spec` itself for a session without a proxy.
    pub fn grant(&self, spec: &SandboxSpec) -> Result<SandboxSpec, SandboxError> {
        let Some((_, dir)) = &self.proxy else {
            return Ok(spec.clone());
        };
        let proxy_url = format!("http://{GUEST_LISTEN}");
        let mut builder = spec
            .with_read_only_mount(dir.path(), GUEST_DIR)?
            .to_builder()
            .env("MCP_BRIDGE_EGRESS_SOCKET", format!("{GUEST_DIR}/{SOCKET}"))
            .env("MCP_BRIDGE_EGRESS_LISTEN", GUEST_LISTEN);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            builder = builder.env(name, proxy_url.clone());
        }
        builder
            .env("PIP_TARGET", PIP_TARGET)
            .env("PIP_NO_CACHE_DIR", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .build()
    }

    /// Names the session: from now on its connections also go to the audit log as
    /// `session` of `scope`, and to the metrics under `tenant`. Only the first name counts.
    pub fn name(&self, session: &str, scope: &str, tenant: &str) {
        self.ledger.report_to(Witnesses {
            audit: self.audit.clone(),
            metrics: self.metrics.clone(),
            session: session.to_string(),
            scope: scope.to_string(),
            tenant: tenant.to_string(),
        });
    }

    /// The session's record and budget.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// True when the session has a proxy of its own.
    pub fn is_proxied(&self) -> bool {
        self.proxy.is_some()
    }
}

/// Removes the socket directories of bridge processes that died without doing so.
pub fn remove_orphaned_dirs() {
    sandbox_core::socket_dir::remove_orphaned(PROCESS_DIR_PREFIX);
}
