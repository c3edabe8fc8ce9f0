//! A client's MCP roots, granted to its sessions as read-only mounts
//! (`MCP_BRIDGE_MOUNT_ROOTS=1`).
//!
//! What it trusts: the client names the directories its user works in (its `roots`
//! capability). What it guarantees: roots are asked for (`roots/list`) before the client's
//! first session starts, and again after `notifications/roots/list_changed`, before its
//! next new session: a run never races the answer. The grants go into a spec of the
//! client's own scope ([`Sessions::set_scope_spec`]), so no other client's sessions, and no
//! pooled session, see them. Sessions already running keep the mounts they started with.

use std::sync::Arc;
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::service::Peer;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::config::Config;
use crate::mounts::{self, roots::grants_from_roots};
use crate::sessions::{Scope, Sessions};

/// How long the client may take to answer `roots/list`.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// One client's roots: whether they must be asked for again, and the names granted.
#[derive(Debug)]
pub(crate) struct ClientRoots {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Ask the client before its next new session.
    stale: bool,
    /// Names under `/data` its roots were granted as.
    names: Vec<String>,
}

impl ClientRoots {
    /// Roots not asked for yet.
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                stale: true,
                names: Vec::new(),
            }),
        }
    }

    /// The client said its roots changed: ask again before its next new session.
    pub(crate) async fn mark_stale(&self) {
        self.state.lock().await.stale = true;
    }

    /// Names under `/data` the client's roots are granted as.
    pub(crate) async fn names(&self) -> Vec<String> {
        self.state.lock().await.names.clone()
    }

    /// When roots are granted and not asked for since they last changed, ask the client
    /// and give `scope` a spec with them. A client without the `roots` capability, or one
    /// that does not answer, keeps the configured mounts only (a warning says why).
    pub(crate) async fn refresh(
        &self,
        config: &Config,
        sessions: &Arc<Sessions>,
        scope: Scope,
        peer: &Peer<RoleServer>,
    ) {
        if !config.mount_roots {
            return;
        }
        let mut state = self.state.lock().await;
        if !state.stale {
            return;
        }
        state.stale = false;
        let uris = match ask_roots(peer).await {
            Ok(Some(uris)) => uris,
            Ok(None) => return,
            Err(why) => {
                warn!("{why}");
                return;
            }
        };
        let (grants, skipped) = grants_from_roots(uris.iter().map(String::as_str), &config.mounts);
        for why in skipped {
            warn!("not granting a root: {why}");
        }
        let spec = if grants.is_empty() {
            None
        } else {
            match mounts::spec_with(&config.spec, &grants) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    warn!("granting the client's roots failed: {e}");
                    return;
                }
            }
        };
        info!(%scope, roots = grants.len(), "granting the client's roots");
        sessions.set_scope_spec(scope, spec);
        state.names = grants.into_iter().map(|grant| grant.name).collect();
    }
}

/// The URIs of the client's roots; `None` when it has no `roots` capability.
#[allow(
    deprecated,
    reason = "roots are deprecated by SEP-2577 but still what clients send; rmcp serves them"
)]
async fn ask_roots(peer: &Peer<RoleServer>) -> Result<Option<Vec<String>>, String> {
    let offers_roots = peer
        .peer_info()
        .is_some_and(|info| info.capabilities.roots.is_some());
    if !offers_roots {
        return Ok(None);
    }
    match tokio::time::timeout(LIST_TIMEOUT, peer.list_roots()).await {
        Ok(Ok(result)) => Ok(Some(
            result.roots.into_iter().map(|root| root.uri).collect(),
        )),
        Ok(Err(e)) => Err(format!("asking the client for its roots failed: {e}")),
        Err(_) => Err(format!(
            "the client did not list its roots within {LIST_TIMEOUT:?}"
        )),
    }
}
