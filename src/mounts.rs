//! Host directories granted to the sandbox, read-only, at `/data/<name>`.
//!
//! Two sources grant them: the user's `MCP_BRIDGE_MOUNTS` (`name=/host/dir`, checked at
//! start, [`parse_list`] then [`grant`]) and, with `MCP_BRIDGE_MOUNT_ROOTS=1`, the client's
//! MCP roots ([`roots::grants_from_roots`], per client).
//!
//! What it trusts: the user's settings and the client's roots name what the user means to
//! share. The guest is not trusted: the grant is enforced by each backend (a read-only
//! WASI preopen, a read-only bind mount) and proven by `tests/behaviour/mounts.rs`.
//!
//! What it guarantees:
//! - A name is 1 to 64 letters, digits, `-`, `_` or `.`, not `.` or `..` alone, so
//!   `/data/<name>` is exactly one path component below [`GUEST_ROOT`]; no two grants share
//!   a name.
//! - A granted host directory existed and was a directory when granted, and is canonical
//!   (symlinks and `..` resolved), so the backend binds the directory the user saw, not
//!   whatever a symlink points at later. A path with `:` is refused: container engines
//!   split bind mounts on it.

pub mod roots;

use std::path::{Path, PathBuf};

use sandbox_core::{SandboxError, SandboxSpec};

/// Where grants appear inside the sandbox.
pub const GUEST_ROOT: &str = "/data";

/// Separates grants in one `MCP_BRIDGE_MOUNTS` value: the platform's path-list separator
/// (`:` on Unix, `;` on Windows), as in `PATH`.
pub const LIST_SEPARATOR: char = if cfg!(windows) { ';' } else { ':' };

/// Separates the values of a repeated `--mount` flag (as the settings table joins them).
const REPEAT_SEPARATOR: char = '\0';

/// A grant as the user wrote it: a name and a host path, not yet checked on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// The name under [`GUEST_ROOT`].
    pub name: String,
    /// The host directory, as written.
    pub host: PathBuf,
}

/// A checked grant: a valid name and a canonical host directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountGrant {
    /// The name under [`GUEST_ROOT`].
    pub name: String,
    /// The canonical host directory.
    pub host: PathBuf,
}

impl MountGrant {
    /// Where the guest sees it: `/data/<name>`.
    pub fn guest_path(&self) -> String {
        format!("{GUEST_ROOT}/{}", self.name)
    }
}

/// Why a grant is refused.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Not `name=/host/dir`.
    #[error("expected name=/host/dir, got {0:?}")]
    Syntax(String),
    /// The name is not one safe path component.
    #[error(
        "mount name {0:?} is not valid: use 1 to 64 letters, digits, `-`, `_` or `.` (not `.` \
         or `..` alone)"
    )]
    InvalidName(String),
    /// Two grants share a name.
    #[error("mount name {0:?} is given twice")]
    Duplicate(String),
    /// The host directory cannot be resolved (missing, or not readable).
    #[error("mount {name:?}: cannot resolve the host directory {}", host.display())]
    Unresolvable {
        /// The grant's name.
        name: String,
        /// The host path, as given.
        host: PathBuf,
        /// What resolving it ran into.
        #[source]
        source: std::io::Error,
    },
    /// The host path is not a directory.
    #[error("mount {name:?}: {} is not a directory", host.display())]
    NotADirectory {
        /// The grant's name.
        name: String,
        /// The canonical host path.
        host: PathBuf,
    },
    /// The host path has a `:`, which engines' bind syntax cannot carry.
    #[error("mount {name:?}: the host path {} contains `:`, which container engines cannot bind", host.display())]
    Colon {
        /// The grant's name.
        name: String,
        /// The canonical host path.
        host: PathBuf,
    },
}

/// True when `name` is one safe path component: 1 to 64 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parse `name=/host/dir` grants: separated by [`LIST_SEPARATOR`] in a variable, one per
/// `--mount` flag. Checks the syntax and the names, not the disk.
pub fn parse_list(text: &str) -> Result<Vec<MountRequest>, MountError> {
    let mut requests: Vec<MountRequest> = Vec::new();
    for item in text
        .split([REPEAT_SEPARATOR, LIST_SEPARATOR])
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (name, host) = item
            .split_once('=')
            .filter(|(_, host)| !host.trim().is_empty())
            .ok_or_else(|| MountError::Syntax(item.to_string()))?;
        let name = name.trim();
        if !valid_name(name) {
            return Err(MountError::InvalidName(name.to_string()));
        }
        if requests.iter().any(|r| r.name == name) {
            return Err(MountError::Duplicate(name.to_string()));
        }
        requests.push(MountRequest {
            name: name.to_string(),
            host: PathBuf::from(host.trim()),
        });
    }
    Ok(requests)
}

/// Check a request on disk: the directory exists, is a directory, and its canonical path
/// can be bound.
pub fn grant(request: &MountRequest) -> Result<MountGrant, MountError> {
    let name = request.name.clone();
    let host = std::fs::canonicalize(&request.host).map_err(|source| MountError::Unresolvable {
        name: name.clone(),
        host: request.host.clone(),
        source,
    })?;
    if !host.is_dir() {
        return Err(MountError::NotADirectory { name, host });
    }
    if host.to_string_lossy().contains(':') {
        return Err(MountError::Colon { name, host });
    }
    Ok(MountGrant { name, host })
}

/// `base` with `grants` added as read-only mounts at `/data/<name>`.
pub fn spec_with(base: &SandboxSpec, grants: &[MountGrant]) -> Result<SandboxSpec, SandboxError> {
    grants
        .iter()
        .fold(base.to_builder(), |builder, grant| {
            builder.read_only_mount(&grant.host, grant.guest_path())
        })
        .build()
}

/// Whether a granted directory is still there (for `doctor`).
pub fn still_there(host: &Path) -> bool {
    host.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_from_a_list_or_repeated_flags() {
        let list = format!("sales=/srv/sales{LIST_SEPARATOR} logs = /var/log ");
        let parsed = parse_list(&list).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].name, "logs");
        assert_eq!(parsed[1].host, PathBuf::from("/var/log"));
        let flags = parse_list("a=/x\0b=/y").unwrap();
        assert_eq!(
            flags.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn bad_names_duplicates_and_syntax_are_refused() {
        for bad in [
            "../x=/tmp",
            "a/b=/tmp",
            "..=/tmp",
            ".=/tmp",
            "x y=/tmp",
            "=/tmp",
        ] {
            let err = parse_list(bad).unwrap_err();
            assert!(matches!(err, MountError::InvalidName(_)), "{bad}: {err}");
        }
        assert!(matches!(
            parse_list("a=/x\0a=/y").unwrap_err(),
            MountError::Duplicate(_)
        ));
        for bad in ["just-a-path", "a=", "a= "] {
            assert!(
                matches!(parse_list(bad).unwrap_err(), MountError::Syntax(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_grant_is_a_canonical_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let request = |host: PathBuf| MountRequest {
            name: "d".into(),
            host,
        };
        let granted = grant(&request(dir.path().join("real/../real"))).unwrap();
        assert_eq!(
            granted.host,
            std::fs::canonicalize(dir.path().join("real")).unwrap()
        );
        assert_eq!(granted.guest_path(), "/data/d");
        let missing = grant(&request(dir.path().join("gone"))).unwrap_err();
        assert!(
            matches!(missing, MountError::Unresolvable { .. }),
            "{missing}"
        );
        assert!(missing.to_string().contains("gone"), "{missing}");
        let file = grant(&request(dir.path().join("file"))).unwrap_err();
        assert!(matches!(file, MountError::NotADirectory { .. }), "{file}");
        std::fs::create_dir(dir.path().join("a:b")).unwrap();
        let colon = grant(&request(dir.path().join("a:b"))).unwrap_err();
        assert!(matches!(colon, MountError::Colon { .. }), "{colon}");
    }

    #[test]
    fn the_spec_gains_one_read_only_mount_per_grant() {
        let grants = [MountGrant {
            name: "sales".into(),
            host: PathBuf::from("/srv/sales"),
        }];
        let spec = spec_with(&SandboxSpec::default(), &grants).unwrap();
        let mounts = spec.read_only_mounts();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].guest, "/data/sales");
        assert_eq!(mounts[0].host, PathBuf::from("/srv/sales"));
        // A second grant at the same place is refused by the spec.
        assert!(spec_with(&spec, &grants).is_err());
    }
}
