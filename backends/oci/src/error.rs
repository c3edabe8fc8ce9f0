//! Errors of the OCI backend.

use std::path::{Path, PathBuf};

use sandbox_core::SandboxError;

/// What can go wrong before a container runs.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The root filesystem is missing and cannot be built by this user.
    #[error(
        "the sandbox root filesystem is not built at {0} and only root can build it: run \
         `provision --backend oci` as root, or set MCP_BRIDGE_ROOTFS to a built tree this \
         user can read"
    )]
    NoRootfs(PathBuf),
    /// Building the root filesystem failed.
    #[error(transparent)]
    Rootfs(#[from] sandbox_rootfs::RootfsError),
    /// The shim binary is missing.
    #[error("the shim binary {0} is missing")]
    NoShim(PathBuf),
    /// User namespaces are switched off.
    #[error(
        "every oci container gets a user namespace, and this host allows none \
         (/proc/sys/user/max_user_namespaces is 0)"
    )]
    NoUserNamespaces,
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl OciError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// As the shared error type.
    pub fn into_sandbox(self) -> SandboxError {
        SandboxError::start(crate::BACKEND_NAME, self)
    }
}
