//! Durable sessions: a session's state written to the host as opaque bytes, to resume it
//! after a restart of the client or the bridge, an idle reap or a suspension, and to fork it.
//!
//! - [`format`]: the file, a header the host reads and checks, and the payload the sandbox
//!   serialised, which the host never interprets;
//! - [`identity`]: the durable identity a client's sessions are filed under, and its tenant;
//! - [`store`]: one file per session and durable scope, private, atomic, capped, pruned;
//! - [`transfer`]: the host's side of the `checkpoint_*` and `restore_*` calls;
//! - [`durable`]: saving a live session and resuming a fresh one (the runtime actions);
//! - [`listing`]: the live and saved sessions, for `doctor` and `sessions`.
//!
//! When sessions are saved and resumed is [`crate::sessions`]'s business.

pub mod durable;
pub mod format;
pub mod identity;
pub mod listing;
pub mod store;
pub mod transfer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The checkpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Whether sessions are saved and resumed.
    pub enabled: bool,
    /// Size cap of one checkpoint file.
    pub limit: u64,
    /// Age after which a checkpoint is deleted.
    pub max_age: Duration,
}

impl CheckpointSettings {
    /// The store under `state_dir`, when checkpoints are on.
    pub fn store(&self, state_dir: &Path) -> Option<Arc<store::Store>> {
        self.enabled
            .then(|| Arc::new(store::Store::new(state_dir.join("checkpoints"), self.limit)))
    }
}
