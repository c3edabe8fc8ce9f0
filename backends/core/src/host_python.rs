//! The guest runtime run by the host's own `python3` as a plain child process, for tests
//! and benchmarks of the session engine. **This is not a sandbox**: nothing is isolated.
//! It reaches the engine's paths that WASI cannot (a soft interrupt by SIGINT, a guest that
//! exits), and it is only compiled with the `host-python` feature.

use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::process::{Child, Command};

use crate::guest::interpreter_args;
use crate::{GuestControl, GuestExit, Probe, Sandbox, SandboxError, SandboxSpec, StartedGuest};

/// This backend's name.
const BACKEND: &str = "host-python";

/// The host's `python3` as a guest. Not a sandbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostPython;

#[derive(Debug)]
struct HostControl {
    pid: u32,
    child: tokio::sync::Mutex<Child>,
    exit: Mutex<Option<GuestExit>>,
}

#[async_trait]
impl Sandbox for HostPython {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn probe(&self) -> Probe {
        match std::process::Command::new("python3")
            .arg("--version")
            .output()
        {
            Ok(out) if out.status.success() => Probe::Available {
                detail: "python3".into(),
            },
            _ => Probe::Unavailable {
                reason: "no python3 on PATH".into(),
            },
        }
    }

    async fn start(&self, _spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
        let mut child = Command::new("python3")
            .args(interpreter_args())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        Ok(StartedGuest {
            stdin: Box::pin(child.stdin.take().expect("piped")),
            stdout: Box::pin(child.stdout.take().expect("piped")),
            stderr: Box::pin(child.stderr.take().expect("piped")),
            control: Box::new(HostControl {
                pid: child.id().expect("running"),
                child: tokio::sync::Mutex::new(child),
                exit: Mutex::new(None),
            }),
            notice: None,
            compiled_runtime: None,
        })
    }
}

#[async_trait]
impl GuestControl for HostControl {
    async fn interrupt(&self) -> Result<(), SandboxError> {
        let status = Command::new("kill")
            .args(["-INT", &self.pid.to_string()])
            .status()
            .await
            .map_err(|e| SandboxError::interrupt(BACKEND, e))?;
        if status.success() {
            Ok(())
        } else {
            // kill(1) fails when no such process is left.
            Err(SandboxError::GuestGone("kill -INT failed".into()))
        }
    }

    async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
        *self.exit.lock().unwrap() = Some(GuestExit::Killed);
    }

    async fn wait(&self) -> GuestExit {
        if let Some(exit) = self.exit.lock().unwrap().clone() {
            return exit;
        }
        let status = self.child.lock().await.wait().await;
        match status.ok().and_then(|s| s.code()) {
            Some(code) => GuestExit::Exited(code),
            None => GuestExit::Crashed("killed by a signal".into()),
        }
    }
}
