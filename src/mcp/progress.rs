//! Stdout while a run goes on, as MCP progress notifications to a client whose request
//! carried a progress token: each notification's `message` is the text printed since the
//! last one, and `progress` counts them. The tool result still carries all output.
//! (Log-message notifications would be the other channel; MCP is retiring them, SEP-2577.)

use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::Peer;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::mcp::terminal::neutralise;

/// Forwards a run's streamed stdout to the client until the run's sender is dropped.
#[derive(Debug)]
pub(crate) struct ProgressRelay {
    task: JoinHandle<()>,
}

impl ProgressRelay {
    /// A relay to `peer` for `token`, and the sender the run writes into.
    pub(crate) fn start(
        peer: Peer<RoleServer>,
        token: ProgressToken,
    ) -> (Self, UnboundedSender<String>) {
        let (sender, mut texts) = unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let mut sent = 0_u32;
            while let Some(text) = texts.recv().await {
                sent += 1;
                let mut param = ProgressNotificationParam::new(token.clone(), f64::from(sent));
                param.message = Some(neutralise(&text).into_owned());
                if let Err(e) = peer.notify_progress(param).await {
                    debug!(error = %e, "progress notification not delivered; stopping them");
                    break;
                }
            }
        });
        (Self { task }, sender)
    }

    /// Wait until every streamed text has been sent (the run is over and its sender gone),
    /// so no progress notification follows the result.
    pub(crate) async fn finish(self) {
        let _ = self.task.await;
    }
}
