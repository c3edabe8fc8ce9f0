//! Asking the user of an MCP client, through MCP elicitation: the [`Asker`] of a run whose
//! client is `peer`.
//!
//! The request is a form with no fields: the client shows the message and the user accepts,
//! declines or cancels. Only a client that declared the `elicitation` capability (form mode)
//! in `initialize` is asked; any other gets a refusal from the policy, never a silent allow.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rmcp::RoleServer;
use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::service::{Peer, ServiceError};

use crate::policy::ask::{Answer, Asker};

/// Asks the user of the client at the other end of `peer`.
#[derive(Debug, Clone)]
pub struct PeerAsker {
    peer: Peer<RoleServer>,
}

impl PeerAsker {
    /// The asker of the client `peer` speaks to.
    pub fn new(peer: Peer<RoleServer>) -> Self {
        Self { peer }
    }
}

#[async_trait]
impl Asker for PeerAsker {
    fn can_ask(&self) -> bool {
        let Some(info) = self.peer.peer_info() else {
            return false;
        };
        // A capability naming neither mode means form, as the protocol's first version had it.
        info.capabilities
            .elicitation
            .as_ref()
            .is_some_and(|e| e.form.is_some() || e.url.is_none())
    }

    async fn ask(&self, message: String, timeout: Duration) -> Answer {
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: ElicitationSchema::new(BTreeMap::new()),
        };
        match self
            .peer
            .create_elicitation_with_timeout(params, Some(timeout))
            .await
        {
            Ok(result) => match result.action {
                ElicitationAction::Accept => Answer::Accepted,
                ElicitationAction::Decline => Answer::Declined,
                ElicitationAction::Cancel => Answer::Cancelled,
                // An answer newer than this bridge: not an acceptance.
                _ => Answer::Failed("the client gave an answer this bridge does not know".into()),
            },
            Err(ServiceError::Timeout { .. }) => Answer::TimedOut,
            Err(e) => Answer::Failed(sandbox_core::error_chain(&e)),
        }
    }
}
