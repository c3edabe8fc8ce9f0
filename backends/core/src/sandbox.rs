//! The seam between the shared engine and each isolation technology.
//!
//! A backend knows how to start an isolated guest interpreter with given limits and hand back
//! its standard streams plus a kill switch. It knows nothing of MCP, tools or Python
//! semantics: everything above this trait (frames, runs, deadlines, output caps, sessions) is
//! written once in this crate and in the binary.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::SandboxError;
use crate::spec::SandboxSpec;

/// Whether a backend can run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It can; `detail` says with what (versions, paths).
    Available {
        /// What was found.
        detail: String,
    },
    /// It cannot; `reason` names what is missing so a user can fix it.
    Unavailable {
        /// Why not.
        reason: String,
    },
}

impl Probe {
    /// True when the backend can run.
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available { .. })
    }
}

/// One isolation technology (WASI, Podman/Docker, direct OCI).
#[async_trait]
pub trait Sandbox: Send + Sync + fmt::Debug {
    /// Short name used in configuration and reports (`wasi`, `podman`, ...).
    fn name(&self) -> &'static str;

    /// Can this backend run here, and if not, exactly why.
    async fn probe(&self) -> Probe;

    /// Make everything the configured sandbox needs ready now (downloads, builds,
    /// compiles), so that no session with a spec like `spec` (the same mount targets and
    /// environment) waits for it or runs on a stand-in. The default is [`Sandbox::probe`],
    /// for backends whose probe already does that.
    async fn prepare(&self, _spec: &SandboxSpec) -> Result<(), SandboxError> {
        match self.probe().await {
            Probe::Available { .. } => Ok(()),
            Probe::Unavailable { reason } => Err(SandboxError::Unavailable {
                backend: self.name(),
                reason,
            }),
        }
    }

    /// True when [`Sandbox::start`] would start a guest of the configured interpreter now,
    /// without first building, downloading or compiling anything (and without a stand-in).
    /// `doctor` asks only such backends' guests what they carry. The default: true.
    async fn is_prepared(&self) -> bool {
        true
    }

    /// Start one guest running the shared guest runtime's bootstrap (see
    /// [`crate::guest::interpreter_args`]) under `spec`.
    async fn start(&self, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError>;

    /// Limits of the [`SandboxSpec`] this backend cannot enforce on this host, one sentence
    /// each saying what applies instead. Empty when every limit holds; replies list these.
    fn unenforced_limits(&self) -> Vec<String> {
        Vec::new()
    }

    /// True when the guest can open sockets: loopback ones, and unix sockets bind-mounted
    /// into it (a read-only mount of the spec). Sessions of such backends reach the allowed
    /// hosts through a proxy on a mounted socket; the others only through the host's
    /// `fetch`. The default: false.
    fn has_sockets(&self) -> bool {
        false
    }

    /// Release what the backend holds beyond its guests (helper services, leftover guests)
    /// before the process exits. Called once, after every session was shut down.
    async fn shutdown(&self) {}
}

/// A byte stream from the guest.
pub type GuestReader = Pin<Box<dyn AsyncRead + Send>>;
/// A byte stream to the guest.
pub type GuestWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A running guest: its standard streams and its controls.
pub struct StartedGuest {
    /// The guest's stdin: host frames go here.
    pub stdin: GuestWriter,
    /// The guest's stdout: guest frames and stray output come from here.
    pub stdout: GuestReader,
    /// The guest's stderr: stray error output.
    pub stderr: GuestReader,
    /// Interrupt, kill and observe the guest.
    pub control: Box<dyn GuestControl>,
    /// What every reply from this guest's session should tell the agent about a guest
    /// that is not what the configuration asked for (a lighter stand-in interpreter while
    /// the configured one is being prepared); `None` for nothing. The warm pool drops
    /// sessions with a notice once [`Sandbox::is_prepared`] says the configured sandbox is
    /// ready.
    pub notice: Option<String>,
    /// The guest runtime precompiled for this guest's interpreter (`marshal.dumps` of its
    /// code object, made by a fresh interpreter that ran nothing else), if the backend has
    /// it. The session then sends it instead of the source, and skips compiling it.
    pub compiled_runtime: Option<Arc<[u8]>>,
}

impl fmt::Debug for StartedGuest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartedGuest")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// The interpreter exited with this status.
    Exited(i32),
    /// We killed it.
    Killed,
    /// It was stopped by the runtime (a trap, a signal, the OOM killer); the text says how.
    Crashed(String),
    /// The backend stopped it for exceeding a limit; the text names the limit.
    LimitExceeded(String),
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => {
                write!(f, "the interpreter exited with status {code}")?;
                match signal_of_status(*code) {
                    Some(signal) => write!(f, " ({signal})"),
                    None => Ok(()),
                }
            }
            Self::Killed => f.write_str("the sandbox was killed"),
            Self::Crashed(how) => write!(f, "the sandbox crashed: {how}"),
            Self::LimitExceeded(what) => write!(f, "the sandbox was stopped: {what}"),
        }
    }
}

/// What an exit status of 129 to 159 says: init processes and shells report a process
/// killed by signal N as 128 + N (`killed by signal 11, SIGSEGV`).
fn signal_of_status(code: i32) -> Option<String> {
    let signal = code.checked_sub(128).filter(|s| (1..=31).contains(s))?;
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return Some(format!("killed by signal {signal}")),
    };
    Some(format!("killed by signal {signal}, {name}"))
}

/// Resource figures a backend can report for a guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Guest memory in bytes (linear memory for WASI, cgroup figure for containers).
    pub memory_bytes: Option<u64>,
}

/// Controls of a running guest.
#[async_trait]
pub trait GuestControl: Send + Sync + fmt::Debug {
    /// Soft interrupt: user code sees `KeyboardInterrupt`, the session keeps its state.
    /// Backends that cannot do this return [`SandboxError::Unsupported`].
    async fn interrupt(&self) -> Result<(), SandboxError>;

    /// True when [`interrupt`](Self::interrupt) can work; false for backends that can stop a
    /// run only by killing the guest (the session then has the guest send its output as it
    /// is written, so that a kill does not lose it).
    fn can_interrupt(&self) -> bool {
        true
    }

    /// Hard kill: the guest and its state are gone. Idempotent.
    async fn kill(&self);

    /// Wait until the guest has ended, and say how.
    async fn wait(&self) -> GuestExit;

    /// Resource usage, if the backend knows it.
    fn usage(&self) -> ResourceUsage {
        ResourceUsage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::GuestExit;

    #[test]
    fn statuses_of_signal_deaths_name_the_signal() {
        assert_eq!(
            GuestExit::Exited(139).to_string(),
            "the interpreter exited with status 139 (killed by signal 11, SIGSEGV)"
        );
        assert_eq!(
            GuestExit::Exited(3).to_string(),
            "the interpreter exited with status 3"
        );
        assert_eq!(
            GuestExit::Exited(128).to_string(),
            "the interpreter exited with status 128"
        );
        assert!(
            GuestExit::Exited(158)
                .to_string()
                .ends_with("(killed by signal 30)")
        );
    }
}
