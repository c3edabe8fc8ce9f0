//! One running container: its attached standard streams and its controls.
//!
//! The container is created, attached (so no output is missed) and then started; its
//! multiplexed output is split into stdout and stderr pipes for the session engine. A
//! background task waits for the container to stop and records how it ended. Killing
//! removes the container (forced), so a killed session leaves nothing behind; dropping the
//! control without a kill removes it too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_core::{GuestControl, GuestExit, SandboxError, StartedGuest};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::engine::EngineKind;

/// Bytes buffered between the engine's stream and the session engine, per stream.
const PIPE_BYTES: usize = 256 * 1024;

/// Ids of the containers this process has running, so shutdown can remove them all.
#[derive(Debug, Default)]
pub(crate) struct Live {
    ids: Mutex<HashSet<String>>,
}

impl Live {
    fn insert(&self, id: &str) {
        self.ids.lock().expect("live set").insert(id.to_string());
    }
    fn remove(&self, id: &str) {
        self.ids.lock().expect("live set").remove(id);
    }
    /// Every live id, emptying the set.
    pub(crate) fn take_all(&self) -> Vec<String> {
        self.ids.lock().expect("live set").drain().collect()
    }
}

/// Remove a container, killing it first if needed. Errors are logged, not returned: the
/// container may already be gone.
pub(crate) async fn remove(client: &Docker, id: &str) {
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    match client.remove_container(id, Some(force)).await {
        Ok(()) => debug!(container = %short(id), "container removed"),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => warn!(container = %short(id), error = %e, "cannot remove container"),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Attach to the created container `id`, start it, and hand its streams to the engine.
pub(crate) async fn attach_and_start(
    client: &Docker,
    engine: EngineKind,
    id: String,
    live: Arc<Live>,
) -> Result<StartedGuest, SandboxError> {
    let fail = |what: &str, e: bollard::errors::Error| SandboxError::StartGuest {
        backend: crate::BACKEND_NAMES[engine as usize],
        message: format!("{what}: {e}"),
    };
    live.insert(&id);
    let control = ContainerControl::new(client.clone(), engine, id.clone(), live);
    let options = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .logs(false)
        .build();
    let attached = match client.attach_container(&id, Some(options)).await {
        Ok(attached) => attached,
        Err(e) => {
            control.kill().await;
            return Err(fail("cannot attach to the container", e));
        }
    };
    if let Err(e) = client.start_container(&id, None).await {
        control.kill().await;
        return Err(fail("cannot start the container", e));
    }
    control.watch_exit();

    let (mut stdout_tx, stdout_rx) = tokio::io::duplex(PIPE_BYTES);
    let (mut stderr_tx, stderr_rx) = tokio::io::duplex(PIPE_BYTES);
    let mut output = attached.output;
    tokio::spawn(async move {
        while let Some(item) = output.next().await {
            let written = match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    stdout_tx.write_all(&message).await
                }
                Ok(LogOutput::StdErr { message }) => stderr_tx.write_all(&message).await,
                Ok(LogOutput::StdIn { .. }) => Ok(()),
                Err(e) => {
                    debug!(error = %e, "the container's output stream ended");
                    break;
                }
            };
            if written.is_err() {
                break;
            }
        }
    });
    Ok(StartedGuest {
        stdin: attached.input,
        stdout: Box::pin(stdout_rx),
        stderr: Box::pin(stderr_rx),
        control: Box::new(control),
    })
}

/// Controls of one container.
pub(crate) struct ContainerControl {
    client: Docker,
    engine: EngineKind,
    id: String,
    live: Arc<Live>,
    killed: Arc<AtomicBool>,
    removed: AtomicBool,
    exit_tx: Arc<watch::Sender<Option<GuestExit>>>,
}

impl std::fmt::Debug for ContainerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerControl")
            .field("engine", &self.engine)
            .field("id", &short(&self.id))
            .finish_non_exhaustive()
    }
}

impl ContainerControl {
    fn new(client: Docker, engine: EngineKind, id: String, live: Arc<Live>) -> Self {
        Self {
            client,
            engine,
            id,
            live,
            killed: Arc::new(AtomicBool::new(false)),
            removed: AtomicBool::new(false),
            exit_tx: Arc::new(watch::channel(None).0),
        }
    }

    /// Wait for the container to stop in the background and record how it ended.
    fn watch_exit(&self) {
        let client = self.client.clone();
        let id = self.id.clone();
        let killed = self.killed.clone();
        let exit_tx = self.exit_tx.clone();
        tokio::spawn(async move {
            let code = match client.wait_container(&id, None).next().await {
                Some(Ok(response)) => Some(response.status_code),
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Some(code)
                }
                _ => None,
            };
            let exit = if killed.load(Ordering::SeqCst) {
                GuestExit::Killed
            } else {
                let oom = client
                    .inspect_container(&id, None)
                    .await
                    .ok()
                    .and_then(|info| info.state)
                    .and_then(|state| state.oom_killed)
                    .unwrap_or(false);
                match code {
                    _ if oom => GuestExit::LimitExceeded(
                        "the memory cap: the kernel's OOM killer ended the sandbox".into(),
                    ),
                    // Podman on cgroup v1 does not report OOM kills; say both causes.
                    Some(137) => GuestExit::Crashed(
                        "killed by SIGKILL: the kernel's OOM killer at the memory cap, or a kill \
                         from inside the sandbox"
                            .into(),
                    ),
                    Some(code) => GuestExit::Exited(i32::try_from(code).unwrap_or(i32::MAX)),
                    None => GuestExit::Crashed("the container disappeared".into()),
                }
            };
            exit_tx.send_replace(Some(exit));
        });
    }
}

#[async_trait]
impl GuestControl for ContainerControl {
    async fn interrupt(&self) -> Result<(), SandboxError> {
        // The init process forwards the signal to the interpreter.
        let options = KillContainerOptionsBuilder::default()
            .signal("SIGINT")
            .build();
        self.client
            .kill_container(&self.id, Some(options))
            .await
            .map_err(|e| SandboxError::GuestGone(format!("cannot interrupt the container: {e}")))
    }

    async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if !self.removed.swap(true, Ordering::SeqCst) {
            remove(&self.client, &self.id).await;
            self.live.remove(&self.id);
        }
    }

    async fn wait(&self) -> GuestExit {
        let mut exit = self.exit_tx.subscribe();
        let ended = exit
            .wait_for(Option::is_some)
            .await
            .map(|exit| exit.clone())
            .ok()
            .flatten();
        ended.unwrap_or(GuestExit::Killed)
    }
}

impl Drop for ContainerControl {
    fn drop(&mut self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.killed.store(true, Ordering::SeqCst);
        let client = self.client.clone();
        let id = std::mem::take(&mut self.id);
        let live = self.live.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                remove(&client, &id).await;
                live.remove(&id);
            });
        }
    }
}
