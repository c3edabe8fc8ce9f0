//! One running container: its attached standard streams and its controls.
//!
//! The container is created with the session's socket directory mounted (see
//! [`crate::channel`]) and started; its guest connects its standard streams there. The
//! control asks the engine how it ended only when the session engine waits for that. Killing
//! removes the container (forced), so a killed session leaves nothing behind; dropping the
//! control without a kill removes it too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{KillContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use sandbox_core::{GuestControl, GuestExit, SandboxError, StartFailure, StartedGuest};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::channel::Channel;
use crate::engine_kind::{BACKEND_NAMES, EngineKind};

/// How long a started container's guest may take to connect its streams.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Start the created container `id` and wait for its guest to connect to `channel`.
pub(crate) async fn start(
    client: &Docker,
    engine: EngineKind,
    id: String,
    channel: Channel,
    live: Arc<Live>,
) -> Result<StartedGuest, SandboxError> {
    let fail = |failure: StartFailure| SandboxError::start(BACKEND_NAMES[engine as usize], failure);
    live.insert(&id);
    let control = ContainerControl::new(client.clone(), engine, id.clone(), live);
    let started = std::time::Instant::now();
    if let Err(e) = client.start_container(&id, None).await {
        control.kill().await;
        return Err(fail(StartFailure::because("starting the container", e)));
    }
    debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "container started"
    );
    let connected = tokio::select! {
        connected = channel.accept(CONNECT_TIMEOUT) => connected,
        ended = control.wait() => {
            Err(std::io::Error::other(format!("the guest ended before it connected: {ended}")))
        }
    };
    drop(channel);
    debug!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        "guest connected"
    );
    let connected = match connected {
        Ok(connected) => connected,
        Err(e) => {
            control.kill().await;
            return Err(fail(StartFailure::because(
                "waiting for the guest to connect",
                e,
            )));
        }
    };
    let (stdout, stdin) = connected.io.into_split();
    Ok(StartedGuest {
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        stderr: Box::pin(connected.err),
        control: Box::new(control),
        notice: None,
        compiled_runtime: None,
    })
}

/// Controls of one container.
///
/// How the container ended is asked of the engine only when someone waits for it: a
/// waiting request per idle container would keep podman's API service busy polling.
pub(crate) struct ContainerControl {
    client: Docker,
    engine: EngineKind,
    id: String,
    live: Arc<Live>,
    killed: AtomicBool,
    removed: AtomicBool,
    exit: OnceCell<GuestExit>,
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
            killed: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            exit: OnceCell::new(),
        }
    }

    /// Wait for the container to stop and say how it ended.
    async fn observe_exit(&self) -> GuestExit {
        if self.killed.load(Ordering::SeqCst) {
            return GuestExit::Killed;
        }
        let code = match self.client.wait_container(&self.id, None).next().await {
            Some(Ok(response)) => Some(response.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            _ => None,
        };
        if self.killed.load(Ordering::SeqCst) {
            return GuestExit::Killed;
        }
        let oom = self
            .client
            .inspect_container(&self.id, None)
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
            .map_err(|e| SandboxError::interrupt(BACKEND_NAMES[self.engine as usize], e))
    }

    async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if !self.removed.swap(true, Ordering::SeqCst) {
            remove(&self.client, &self.id).await;
            self.live.remove(&self.id);
        }
    }

    async fn wait(&self) -> GuestExit {
        self.exit.get_or_init(|| self.observe_exit()).await.clone()
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
