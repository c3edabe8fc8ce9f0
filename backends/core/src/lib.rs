//! `sandbox-core`: the seam every sandbox backend implements, and everything above it that is
//! written once.
//!
//! - [`Sandbox`] / [`GuestControl`]: start a guest with limits, get its streams and controls.
//! - [`SandboxSpec`]: limits and grants, denied by default.
//! - [`frame`]: the host side of the frame protocol (`docs/frames.md`); the guest is hostile.
//! - [`guest`]: the Python guest runtime every backend runs.
//! - [`Session`]: one guest, many runs, deadlines, output caps.
//! - [`atomic_file`]: replacing a file whole and durably, for every crate of the workspace.
//! - [`seccomp`]: the syscalls every container backend refuses, rendered as a profile.
//! - [`socket_dir`]: directories of unix sockets only one sandbox can reach.
#![forbid(unsafe_code)]

pub mod atomic_file;
pub mod error;
pub mod frame;
mod frame_sender;
pub mod guest;
pub mod host;
#[cfg(feature = "host-python")]
pub mod host_python;
mod output;
pub mod rpc;
mod sandbox;
pub mod seccomp;
mod session;
pub mod socket_dir;
mod spec;

pub use error::{BoxError, SandboxError, StartFailure, chain as error_chain};
pub use output::{CappedBytes, Captured, Cut, KeptOutput};
pub use rpc::{NoCalls, RpcError, RpcHandler};
pub use sandbox::{
    GuestControl, GuestExit, GuestReader, GuestWriter, Probe, ResourceUsage, Sandbox, StartedGuest,
};
pub use session::{RunAction, RunKind, RunOutcome, RunRequest, RunStatus, Session, SessionConfig};
pub use spec::{MIN_MEMORY_BYTES, ReadOnlyMount, SandboxSpec, SandboxSpecBuilder};
