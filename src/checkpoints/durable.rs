//! Saving a live session and resuming one: the two runtime actions, run on a session with
//! the calls of [`super::transfer`].
//!
//! Both are bounded by a deadline (the action is a run: interrupted, then killed, past it)
//! and never fail the bridge: a resume that goes wrong says why in a [`Resume`] and leaves
//! the caller to start the session fresh.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sandbox_core::{RpcHandler, RunAction, RunOutcome, RunRequest, Session};
use tracing::{info, warn};

use super::format::Header;
use super::store::{Store, StoreError};
use super::transfer::{ActionCalls, CheckpointCalls, RestoreCalls, Saved, Stamp, Target};

/// The guest runtime's version as checkpoints record it: a digest of its source, so a
/// checkpoint is read back only by the runtime that wrote it.
static RUNTIME_VERSION: LazyLock<String> = LazyLock::new(|| {
    let digest = crate::digest::sha256_hex(sandbox_core::guest::RUNTIME_SOURCE.as_bytes());
    format!("runtime-{}", &digest[..16])
});

/// The stamp of the guest running `session`.
pub fn stamp_of(session: &Session) -> Stamp {
    let ready = session.ready_info();
    Stamp {
        interpreter: format!("{} {}", ready.implementation, ready.python),
        backend: session.backend().to_string(),
        runtime: RUNTIME_VERSION.clone(),
    }
}

/// Why a session could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The runtime action failed (its error, or how the run ended).
    #[error("saving the session failed: {0}")]
    Action(String),
}

/// What resuming a session found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// There was no checkpoint.
    Nothing,
    /// The session was restored.
    Restored(Restored),
    /// There was a checkpoint, but the session starts fresh: why, for the reply.
    Fresh(String),
}

/// A session restored from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// When the checkpoint was taken, seconds since the Unix epoch.
    pub created_at_unix: u64,
    /// The names that came back.
    pub names: Vec<String>,
    /// Names that could not be restored, each with why.
    pub failed: Vec<String>,
    /// Names the checkpoint could not save, each with why.
    pub unsaveable: Vec<String>,
}

impl Restored {
    /// A sentence for the agent: what came back, from when, and what did not.
    pub fn notice(&self) -> String {
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(self.created_at_unix);
        let mut text = format!(
            "This session was restored from its checkpoint of {} ({} ago): {} name{} back",
            crate::units::format_utc(self.created_at_unix),
            crate::units::format_duration(Duration::from_secs(age)),
            self.names.len(),
            if self.names.len() == 1 { "" } else { "s" },
        );
        if !self.names.is_empty() {
            let _ = write!(text, " ({})", list_some(&self.names));
        }
        text.push_str(", with the files under /workspace.");
        if !self.unsaveable.is_empty() {
            let _ = write!(text, " Not saved then: {}.", list_some(&self.unsaveable));
        }
        if !self.failed.is_empty() {
            let _ = write!(text, " Not restored: {}.", list_some(&self.failed));
        }
        text
    }
}

/// The first few items of a list, joined, with how many more there are.
fn list_some(items: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        let _ = write!(text, " and {} more", items.len() - SHOWN);
    }
    text
}

/// Save `session` as `target` says, within `timeout`; `install` serves the interpreter's
/// `install` calls (for cloudpickle), if it may install.
pub async fn save(
    session: &Session,
    target: Target,
    timeout: Duration,
    install: Option<Arc<dyn RpcHandler>>,
) -> Result<Saved, SaveError> {
    let calls = Arc::new(CheckpointCalls::new(target));
    let handler = ActionCalls {
        checkpoint: Some(calls.clone()),
        install,
        ..ActionCalls::default()
    };
    let outcome = run_action(session, RunAction::Checkpoint, handler, timeout).await;
    match calls.saved() {
        Some(saved) if !outcome.is_error() => Ok(saved),
        _ => Err(SaveError::Action(failure(&outcome))),
    }
}

/// Restore the checkpoint of `name` in `scope` into `session`, a fresh session, within
/// `timeout` (`install` as for [`save`]). On [`Resume::Fresh`] the session may hold part of
/// the checkpoint: the caller replaces it with another fresh one.
pub async fn resume(
    session: &Session,
    store: &Arc<Store>,
    (scope, name): (&str, &str),
    timeout: Duration,
    install: Option<Arc<dyn RpcHandler>>,
) -> Resume {
    if !store.may_have(scope, name) {
        return Resume::Nothing; // the common case, a new name: no hop to the blocking pool
    }
    let loaded = {
        let (store, scope, name) = (store.clone(), scope.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.load(&scope, &name)).await
    };
    let (header, payload) = match loaded {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return Resume::Nothing,
        Ok(Err(e)) => return unreadable(store, scope, name, &e).await,
        Err(e) => return Resume::Fresh(format!("its checkpoint could not be read ({e})")),
    };
    if let Some(why) = stamp_of(session).refuses(&header) {
        warn!(session = name, "not resuming: {why}");
        return Resume::Fresh(format!("its checkpoint was not loaded: {why}"));
    }
    let calls = Arc::new(RestoreCalls::new(payload));
    let handler = ActionCalls {
        restore: Some(calls.clone()),
        install,
        ..ActionCalls::default()
    };
    let outcome = run_action(session, RunAction::Restore, handler, timeout).await;
    match calls.failed() {
        Some(failed) if !outcome.is_error() => {
            info!(
                session = name,
                names = header.names.len(),
                "session resumed"
            );
            Resume::Restored(restored(header, failed))
        }
        _ => Resume::Fresh(format!(
            "its checkpoint could not be loaded: {}",
            failure(&outcome)
        )),
    }
}

/// Run `action` on `session` with `handler` serving its calls.
async fn run_action(
    session: &Session,
    action: RunAction,
    handler: ActionCalls,
    timeout: Duration,
) -> RunOutcome {
    session
        .run(&RunRequest::action(action, timeout), Arc::new(handler))
        .await
}

fn restored(header: Header, failed: Vec<String>) -> Restored {
    let lost: Vec<&str> = failed.iter().filter_map(|f| f.split(':').next()).collect();
    Restored {
        created_at_unix: header.created_at_unix,
        names: header
            .names
            .into_iter()
            .filter(|name| !lost.contains(&name.as_str()))
            .collect(),
        failed,
        unsaveable: header.unsaveable,
    }
}

/// A checkpoint file the store cannot read (corrupt, truncated, over the cap): removed, so
/// it is reported once, and the session starts fresh.
async fn unreadable(store: &Arc<Store>, scope: &str, name: &str, error: &StoreError) -> Resume {
    let why = sandbox_core::error_chain(error);
    warn!(session = name, "discarding an unreadable checkpoint: {why}");
    let (store, scope, name) = (store.clone(), scope.to_string(), name.to_string());
    let _ = tokio::task::spawn_blocking(move || store.discard(&scope, &name)).await;
    Resume::Fresh(format!("{why}; it was removed"))
}

/// How an action run failed, in words.
fn failure(outcome: &RunOutcome) -> String {
    match &outcome.error {
        Some(error) => format!("{}: {}", error.kind, error.message),
        None => format!("{:?}", outcome.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_says_when_and_what_did_not_come_back() {
        let restored = Restored {
            created_at_unix: 0,
            names: vec!["df".into(), "fit".into()],
            failed: vec!["m: ModuleNotFoundError: No module named 'x'".into()],
            unsaveable: vec!["f: an open file (open it again after a restore)".into()],
        };
        let text = restored.notice();
        assert!(
            text.starts_with(
                "This session was restored from its checkpoint of 1970-01-01T00:00:00Z"
            ),
            "{text}"
        );
        assert!(text.contains("2 names back (df, fit)"), "{text}");
        assert!(text.contains("Not saved then: f: an open file"), "{text}");
        assert!(
            text.contains("Not restored: m: ModuleNotFoundError"),
            "{text}"
        );
        let many: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
        assert!(list_some(&many).ends_with("v11 and 8 more"));
    }
}
