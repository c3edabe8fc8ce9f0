//! What the bridge and its shim say to each other.
//!
//! The bridge starts the shim as `<its own binary> oci-shim <request as JSON>`. The guest's
//! standard streams are the shim's own (the container inherits them), so a call never passes
//! through the shim. Control goes over a unix socket the bridge listens on, one line per
//! message:
//! - shim → bridge: `started <pid>`, `failed <why>`, `log <text>`, then at the end
//!   `exited <status>` or `signaled <signal> <oom kills>`;
//! - bridge → shim: `interrupt`, `kill`. When the bridge's end closes (the bridge ended, or
//!   the session was dropped), the shim kills the container.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::mode::IdMap;

/// The subcommand under which the binary runs the shim.
pub const SHIM_SUBCOMMAND: &str = "oci-shim";

/// What the shim is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "do", rename_all = "snake_case")]
pub(crate) enum ShimRequest {
    /// Create and start one container and supervise it until it ends.
    Run {
        /// Container id.
        id: String,
        /// libcontainer's state directory.
        state_root: PathBuf,
        /// The bundle (holds `config.json`).
        bundle: PathBuf,
        /// The bridge's control socket.
        control: PathBuf,
        /// cgroup v1/v2 directory whose OOM-kill count to read when the guest ends.
        memory_cgroup: Option<PathBuf>,
        /// cgroup files to write (path, value) after the container is created and before it
        /// starts: the limits of a rootless container in its delegated cgroup, which
        /// libcontainer cannot apply without privileges.
        #[serde(default)]
        limit_files: Vec<(PathBuf, String)>,
        /// The root filesystem to bind into the bundle (root mode), in a mount namespace
        /// of the shim's own.
        #[serde(default)]
        rootfs_bind: Option<PathBuf>,
        /// The user namespace the shim makes for itself and runs libcontainer in
        /// (rootless; see [`crate::own_namespace`]).
        #[serde(default)]
        user_namespace: Option<IdMap>,
        /// Cover the host's cgroups with a fresh cgroup2 in the shim's own namespaces
        /// (rootless with no cgroup delegated).
        #[serde(default)]
        hide_host_cgroups: bool,
    },
    /// Write the id maps of the shim `pid` (which has just made a user namespace) with
    /// `newuidmap` and `newgidmap`, once a line arrives on standard input.
    MapIds {
        /// The shim.
        pid: i32,
        /// The maps.
        id_map: IdMap,
    },
    /// Delete the containers (and bundles) of bridges that no longer run.
    Sweep {
        /// libcontainer's state directory.
        state_root: PathBuf,
    },
}

/// How the guest ended, as the shim reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Exit status.
    Exited(i32),
    /// Killed by a signal; the count of OOM kills in its cgroup.
    Signaled(i32, u64),
}

/// A message from the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShimMessage {
    /// The container runs; its init's pid on the host.
    Started(i32),
    /// It could not be started.
    Failed(String),
    /// A diagnostic to log.
    Log(String),
    /// It ended.
    Ended(Ended),
}

impl ShimMessage {
    /// The start failed with `error`: the one place a shim error becomes text, told with
    /// its causes.
    pub(crate) fn failed(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Failed(sandbox_core::error_chain(error))
    }

    /// One line, without the newline.
    pub(crate) fn to_line(&self) -> String {
        let one_line = |text: &str| text.replace('\n', " ");
        match self {
            Self::Started(pid) => format!("started {pid}"),
            Self::Failed(why) => format!("failed {}", one_line(why)),
            Self::Log(text) => format!("log {}", one_line(text)),
            Self::Ended(Ended::Exited(status)) => format!("exited {status}"),
            Self::Ended(Ended::Signaled(signal, oom)) => format!("signaled {signal} {oom}"),
        }
    }

    /// Parse one line; `None` for anything else.
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line
            .trim_end()
            .split_once(' ')
            .unwrap_or((line.trim_end(), ""));
        match word {
            "started" => rest.parse().ok().map(Self::Started),
            "failed" => Some(Self::Failed(rest.to_string())),
            "log" => Some(Self::Log(rest.to_string())),
            "exited" => rest.parse().ok().map(|s| Self::Ended(Ended::Exited(s))),
            "signaled" => {
                let (signal, oom) = rest.split_once(' ')?;
                Some(Self::Ended(Ended::Signaled(
                    signal.parse().ok()?,
                    oom.parse().ok()?,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for message in [
            ShimMessage::Started(42),
            ShimMessage::Failed("no such file".into()),
            ShimMessage::Log("cannot delete".into()),
            ShimMessage::Ended(Ended::Exited(3)),
            ShimMessage::Ended(Ended::Signaled(9, 1)),
        ] {
            assert_eq!(ShimMessage::parse(&message.to_line()), Some(message));
        }
        assert_eq!(
            ShimMessage::parse(&ShimMessage::Failed("a\nb".into()).to_line()),
            Some(ShimMessage::Failed("a b".into()))
        );
        assert_eq!(ShimMessage::parse("exited x"), None);
        assert_eq!(ShimMessage::parse("hello"), None);
    }

    #[test]
    fn a_failure_is_told_with_its_cause_on_one_line() {
        let os = std::io::Error::from_raw_os_error(2);
        let os_text = os.to_string();
        let error = crate::shim::ShimError::Limit {
            file: "/sys/fs/cgroup/memory/x/memory.limit_in_bytes".into(),
            source: os,
        };
        let line = ShimMessage::failed(&error).to_line();
        assert_eq!(
            line,
            format!(
                "failed cannot set the limit /sys/fs/cgroup/memory/x/memory.limit_in_bytes: {os_text}"
            )
        );
        assert_eq!(line.matches(&os_text).count(), 1, "{line}");
    }

    #[test]
    fn requests_round_trip_as_json() {
        let request = ShimRequest::Sweep {
            state_root: "/run/x".into(),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(serde_json::from_str::<ShimRequest>(&json).unwrap(), request);
    }
}
