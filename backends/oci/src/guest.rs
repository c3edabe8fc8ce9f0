//! The bridge's side of one container: the shim process, its control socket, and the
//! guest's standard streams (the shim's own pipes, which the container inherited).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sandbox_core::{GuestControl, GuestExit, SandboxError, StartFailure, StartedGuest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::{Mutex, watch};
use tracing::{debug, warn};

use crate::protocol::{Ended, SHIM_SUBCOMMAND, ShimMessage, ShimRequest};

/// How long a container may take from the shim's start to running.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed container may take to be gone before the shim itself is killed.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the shim's error output a failed start reports.
const STDERR_TAIL: usize = 2048;

/// The environment the shim runs with: nothing of the bridge's, only where to find
/// `newuidmap`.
const SHIM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn fail(message: impl Into<String>) -> SandboxError {
    SandboxError::start(crate::BACKEND_NAME, StartFailure::new(message))
}

fn fail_because(step: impl Into<String>, cause: impl Into<sandbox_core::BoxError>) -> SandboxError {
    SandboxError::start(crate::BACKEND_NAME, StartFailure::because(step, cause))
}

/// Start the shim for `request` (a [`ShimRequest::Run`]) whose control socket `listener`
/// listens on, and wait until the container runs.
pub(crate) async fn start(
    shim: &std::path::Path,
    request: &ShimRequest,
    listener: UnixListener,
) -> Result<StartedGuest, SandboxError> {
    let request_json = serde_json::to_string(request)
        .map_err(|e| fail_because("encoding the shim's request", e))?;
    let started = std::time::Instant::now();
    let mut child = Command::new(shim)
        .arg(SHIM_SUBCOMMAND)
        .arg(request_json)
        .env_clear()
        .env("PATH", SHIM_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail_because(format!("cannot run the shim {}", shim.display()), e))?;
    // Taken before any wait: waiting on a child closes its stdin.
    let (Some(stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(fail("the shim's streams are missing"));
    };
    let accepted = tokio::time::timeout(START_TIMEOUT, async {
        tokio::select! {
            accepted = listener.accept() => accepted.map(|(stream, _)| Some(stream)),
            _ = child.wait() => Ok(None),
        }
    })
    .await;
    let stream = match accepted {
        Ok(Ok(Some(stream))) => stream,
        Ok(Ok(None)) => {
            return Err(fail(
                shim_failure(&mut child, &mut stderr, "the shim exited").await,
            ));
        }
        Ok(Err(e)) => return Err(fail_because("waiting on the control socket", e)),
        Err(_) => {
            let _ = child.start_kill();
            return Err(fail(
                shim_failure(&mut child, &mut stderr, "the shim did not answer in time").await,
            ));
        }
    };
    drop(listener);
    let (read, write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
    let pid = match first {
        Ok(Ok(Some(line))) => match ShimMessage::parse(&line) {
            Some(ShimMessage::Started(pid)) => pid,
            Some(ShimMessage::Failed(why)) => {
                return Err(fail(shim_failure(&mut child, &mut stderr, &why).await));
            }
            _ => return Err(fail(format!("the shim said {line:?}"))),
        },
        Ok(_) => {
            return Err(fail(
                shim_failure(&mut child, &mut stderr, "the shim gave up").await,
            ));
        }
        Err(_) => {
            let _ = child.start_kill();
            return Err(fail("the container did not start within 30 s"));
        }
    };
    debug!(
        pid,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "container started"
    );
    let (ended_tx, ended_rx) = watch::channel(None);
    tokio::spawn(follow(lines, child, ended_tx));
    Ok(StartedGuest {
        stdin: Box::pin(stdin),
        stdout: Box::pin(stdout),
        stderr: Box::pin(stderr),
        control: Box::new(OciControl {
            pid,
            writer: Mutex::new(Some(write)),
            ended: ended_rx,
            killed: Arc::new(AtomicBool::new(false)),
        }),
        notice: None,
        compiled_runtime: None,
    })
}

/// Why a start failed: `why`, then the tail of what the shim wrote on stderr.
async fn shim_failure(child: &mut Child, stderr: &mut ChildStderr, why: &str) -> String {
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        (&mut *stderr).take(64 * 1024).read_to_end(&mut bytes),
    )
    .await;
    let tail = String::from_utf8_lossy(&bytes);
    let tail = tail.trim();
    let tail = &tail[tail.floor_char_boundary(tail.len().saturating_sub(STDERR_TAIL))..];
    if tail.is_empty() {
        why.to_string()
    } else {
        format!("{why} ({})", tail.replace('\n', "; "))
    }
}

/// Read the shim's messages until the container ends, then reap the shim.
async fn follow(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    mut child: Child,
    ended: watch::Sender<Option<Ended>>,
) {
    let mut outcome = None;
    while let Ok(Some(line)) = lines.next_line().await {
        match ShimMessage::parse(&line) {
            Some(ShimMessage::Ended(how)) => {
                outcome = Some(how);
                break;
            }
            Some(ShimMessage::Log(text)) => warn!("oci-shim: {text}"),
            _ => debug!(line, "unexpected line from the shim"),
        }
    }
    let _ = child.wait().await;
    // No report means the shim itself died: say so as a signal with no OOM kill.
    let _ = ended.send(Some(outcome.unwrap_or(Ended::Signaled(0, 0))));
}

/// Controls of one container, through its shim.
#[derive(Debug)]
struct OciControl {
    pid: i32,
    writer: Mutex<Option<OwnedWriteHalf>>,
    ended: watch::Receiver<Option<Ended>>,
    killed: Arc<AtomicBool>,
}

impl OciControl {
    async fn tell(&self, word: &str) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        let Some(stream) = writer.as_mut() else {
            return Err(std::io::Error::other("the container was killed"));
        };
        stream.write_all(format!("{word}\n").as_bytes()).await
    }

    async fn ended(&self) -> Ended {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await {
            Ok(value) => value.clone().expect("waited for Some"),
            Err(_) => Ended::Signaled(0, 0),
        }
    }
}

#[async_trait]
impl GuestControl for OciControl {
    async fn interrupt(&self) -> Result<(), SandboxError> {
        self.tell("interrupt")
            .await
            .map_err(|e| SandboxError::interrupt(crate::BACKEND_NAME, e))
    }

    async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let _ = self.tell("kill").await;
        // Closing our end also makes the shim kill the container.
        self.writer.lock().await.take();
        if tokio::time::timeout(KILL_TIMEOUT, self.ended())
            .await
            .is_err()
        {
            warn!(pid = self.pid, "the container did not end after a kill");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    async fn wait(&self) -> GuestExit {
        let ended = self.ended().await;
        if self.killed.load(Ordering::SeqCst) {
            return GuestExit::Killed;
        }
        describe(&ended)
    }
}

/// How the guest ended, in the session engine's terms.
fn describe(ended: &Ended) -> GuestExit {
    match *ended {
        Ended::Exited(status) => GuestExit::Exited(status),
        Ended::Signaled(_, oom) if oom > 0 => GuestExit::LimitExceeded(
            "the memory cap: the kernel's OOM killer ended the sandbox".into(),
        ),
        Ended::Signaled(0, _) => {
            GuestExit::Crashed("the container's supervisor (oci-shim) ended unexpectedly".into())
        }
        Ended::Signaled(signal, _) => {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string());
            GuestExit::Crashed(format!("killed by {name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_described() {
        assert_eq!(describe(&Ended::Exited(3)), GuestExit::Exited(3));
        assert!(matches!(
            describe(&Ended::Signaled(9, 1)),
            GuestExit::LimitExceeded(_)
        ));
        assert_eq!(
            describe(&Ended::Signaled(11, 0)),
            GuestExit::Crashed("killed by SIGSEGV".into())
        );
        assert!(matches!(
            describe(&Ended::Signaled(0, 0)),
            GuestExit::Crashed(_)
        ));
    }
}
