//! Which bridge process owns a container, and removing the containers of dead bridges.
//!
//! Every container carries [`OWNER_LABEL`](crate::create::OWNER_LABEL) =
//! `host:pid:start-time`. A container whose owner is on this host but no longer running (the
//! pid is gone, or reused by a process that started at another time) is an orphan of a
//! crash, and the next bridge to connect removes it. Containers of live bridges and of other
//! hosts sharing the engine are left alone.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::{info, warn};

use crate::create::OWNER_LABEL;

/// How long the engine may take to list the containers.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the engine's containers could not be listed.
#[derive(Debug, thiserror::Error)]
enum ListError {
    /// The API socket refused the connection.
    #[error("cannot connect to {}", socket.display())]
    Connect {
        /// The engine's API socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The request could not be sent.
    #[error("cannot send the listing request")]
    Send(#[source] io::Error),
    /// The engine took too long.
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
    /// The answer could not be read.
    #[error("cannot read the answer")]
    Read(#[source] io::Error),
    /// The answer has no body.
    #[error("an HTTP answer without a body")]
    NoBody,
    /// The engine answered with an error status.
    #[error("the engine answered {0}")]
    Status(String),
    /// The body is not a container listing.
    #[error("bad listing")]
    Listing(#[source] serde_json::Error),
}

/// This process's owner label value.
pub(crate) fn this_process() -> String {
    owner_of(std::process::id())
        .unwrap_or_else(|| format!("{}:{}:0", hostname(), std::process::id()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// The owner label a live process `pid` would carry, if it exists.
fn owner_of(pid: u32) -> Option<String> {
    let start_time = sandbox_core::host::process_start_time(pid)?;
    Some(format!("{}:{pid}:{start_time}", hostname()))
}

/// True when `owner` names a bridge on this host that is no longer running.
fn is_orphaned(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(_start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) => owner_of(pid).as_deref() != Some(owner),
        Err(_) => false,
    }
}

/// Remove every container whose owner is a dead bridge on this host. Returns how many.
pub(crate) async fn remove_orphans(client: &Docker, socket: &Path) -> usize {
    let containers = match list_owned(socket).await {
        Ok(containers) => containers,
        Err(e) => {
            warn!(
                error = %sandbox_core::error_chain(&e),
                "cannot list containers to remove orphans"
            );
            return 0;
        }
    };
    let mut removed = 0;
    for (id, owner) in containers {
        if !is_orphaned(&owner) {
            continue;
        }
        let force = RemoveContainerOptionsBuilder::default().force(true).build();
        match client.remove_container(&id, Some(force)).await {
            Ok(()) => removed += 1,
            // Another bridge starting at the same time removed it first.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => warn!(container = %id, error = %e, "cannot remove an orphaned container"),
        }
    }
    if removed > 0 {
        info!(
            removed,
            "removed containers left behind by a bridge that crashed"
        );
    }
    removed
}

/// `(id, owner)` of every container carrying our owner label, running or not.
///
/// Asked over a plain HTTP/1.0 request rather than through bollard, whose typed listing
/// rejects the whole answer when podman reports a state it does not know (`stopped`).
async fn list_owned(socket: &Path) -> Result<Vec<(String, String)>, ListError> {
    let filters = format!(r#"{{"label":["{OWNER_LABEL}"]}}"#);
    let request = format!(
        "GET /v1.41/containers/json?all=1&filters={} HTTP/1.0\r\nHost: engine\r\n\r\n",
        percent_encode(&filters)
    );
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ListError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ListError::Send)?;
    let mut response = Vec::new();
    tokio::time::timeout(LIST_TIMEOUT, stream.read_to_end(&mut response))
        .await
        .map_err(|_| ListError::NoAnswer(LIST_TIMEOUT))?
        .map_err(ListError::Read)?;
    let split = memchr_split(&response).ok_or(ListError::NoBody)?;
    let (head, body) = response.split_at(split);
    let status_line =
        String::from_utf8_lossy(head.split(|b| *b == b'\n').next().unwrap_or_default());
    if !status_line.contains(" 200 ") {
        return Err(ListError::Status(status_line.trim().to_string()));
    }
    let listing: Vec<Value> = serde_json::from_slice(&body[4..]).map_err(ListError::Listing)?;
    Ok(listing
        .iter()
        .filter_map(|container| {
            let id = container["Id"].as_str()?.to_string();
            let owner = container["Labels"][OWNER_LABEL].as_str()?.to_string();
            Some((id, owner))
        })
        .collect())
}

/// Offset of the blank line ending the HTTP head.
fn memchr_split(response: &[u8]) -> Option<usize> {
    response.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Percent-encode a query value (everything but unreserved characters).
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_an_orphan() {
        let me = this_process();
        assert!(me.starts_with(&hostname()));
        assert!(!is_orphaned(&me));
    }

    #[test]
    fn a_dead_or_reused_pid_is_an_orphan() {
        let me = this_process();
        let (prefix, _) = me.rsplit_once(':').unwrap();
        assert!(
            is_orphaned(&format!("{prefix}:1")),
            "same pid, other start time"
        );
        assert!(is_orphaned(&format!("{}:{}:5", hostname(), u32::MAX)));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"{"a":["b.c"]}"#),
            "%7B%22a%22%3A%5B%22b.c%22%5D%7D"
        );
    }

    #[test]
    fn an_unreachable_socket_is_named_once_with_the_os_error_once() {
        let os = io::Error::from_raw_os_error(111);
        let os_text = os.to_string();
        let error = ListError::Connect {
            socket: "/run/podman/podman.sock".into(),
            source: os,
        };
        let told = sandbox_core::error_chain(&error);
        assert_eq!(
            told,
            format!("cannot connect to /run/podman/podman.sock: {os_text}")
        );
        assert_eq!(told.matches(&os_text).count(), 1, "{told}");
    }

    #[test]
    fn other_hosts_and_garbage_are_left_alone() {
        assert!(!is_orphaned("some-other-host:1:1"));
        assert!(!is_orphaned("garbage"));
        assert!(!is_orphaned(""));
    }
}
