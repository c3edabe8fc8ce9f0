//! Why the shim could not get a container running. Each message names the step and its
//! object; the OS or libcontainer error is the source, and the whole chain becomes text
//! only where the shim tells the bridge
//! ([`ShimMessage::failed`](crate::protocol::ShimMessage::failed)).

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;
use nix::errno::Errno;

use crate::loopback::LoopbackError;
use crate::own_namespace::NamespaceError;

/// Why the shim could not get a container running; sent to the bridge as
/// [`ShimMessage::Failed`](crate::protocol::ShimMessage::Failed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShimError {
    /// The shim could not become a child subreaper.
    #[error("cannot become a subreaper")]
    Subreaper(#[source] Errno),
    /// Rootless: the shim's own namespaces.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// The shim's mount namespace for the bound root filesystem.
    #[error("cannot make the shim's mount namespace")]
    MountNamespace(#[source] Errno),
    /// Making `/` a private mount failed.
    #[error("cannot make the shim's mounts private")]
    PrivateMounts(#[source] Errno),
    /// The mount point in the bundle could not be made.
    #[error("cannot create {}", path.display())]
    MountPoint {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The root filesystem could not be bound into the bundle.
    #[error("cannot bind {}", path.display())]
    Bind {
        /// The shared root filesystem.
        path: PathBuf,
        /// Why.
        #[source]
        source: Errno,
    },
    /// The bound root filesystem could not be made read-only.
    #[error("cannot make the bound root filesystem read-only")]
    ReadOnly(#[source] Errno),
    /// The container's network namespace.
    #[error(transparent)]
    Loopback(#[from] LoopbackError),
    /// libcontainer could not create the container.
    #[error("cannot create the container")]
    Create(#[source] LibcontainerError),
    /// A rootless container's cgroup limit could not be written.
    #[error("cannot set the limit {}", file.display())]
    Limit {
        /// The cgroup file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// libcontainer could not start the created container.
    #[error("cannot start the container")]
    Start(#[source] LibcontainerError),
    /// The started container reports no process.
    #[error("the container has no process")]
    NoProcess,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_limit_names_the_file_once_and_the_os_error_once() {
        let os = std::io::Error::from_raw_os_error(13);
        let os_text = os.to_string();
        let error = ShimError::Limit {
            file: PathBuf::from("/sys/fs/cgroup/pids/x/pids.max"),
            source: os,
        };
        let told = sandbox_core::error_chain(&error);
        assert_eq!(
            told,
            format!("cannot set the limit /sys/fs/cgroup/pids/x/pids.max: {os_text}")
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
        assert_eq!(told.matches("pids.max").count(), 1, "{told}");
    }

    #[test]
    fn a_loopback_failure_passes_through_without_a_second_label() {
        let error = ShimError::from(LoopbackError::Send(Errno::ENOBUFS));
        assert_eq!(
            sandbox_core::error_chain(&error),
            format!("cannot send to rtnetlink: {}", Errno::ENOBUFS)
        );
    }
}
