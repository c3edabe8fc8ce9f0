//! Our seccomp profile ([`sandbox_core::seccomp`]) in the form each engine's API takes it.
//!
//! Docker reads `seccomp=` in `security_opt` as the profile itself (its command line client
//! sends a file's content). Podman's Docker-compatible API reads it as the path of a file on
//! its own host and refuses JSON there ("opening seccomp profile failed: file name too
//! long", podman 4.3), so for podman the profile is written into the bridge's private
//! directory (mode 0700, [`crate::channel::private_process_dir`]) once, and its path passed.
//! Either engine then replaces its default profile with ours.
//!
//! Under gVisor the profile is applied by gVisor's kernel (runsc's `oci-seccomp` flag, see
//! `runtime_flags`), which answers every refusal with `EPERM`: `clone3` is left to its
//! kernel ([`Clone3::LeftToTheKernel`]).

use std::io;
use std::path::PathBuf;

use sandbox_core::atomic_file::{Mode, write_atomic};
use sandbox_core::seccomp::{Clone3, profile};

use crate::channel::private_process_dir;
use crate::engine_kind::EngineKind;

/// The `security_opt` entry that gives `engine`'s containers our profile.
pub(crate) fn security_option(engine: EngineKind, gvisor: bool) -> io::Result<String> {
    let clone3 = if gvisor {
        Clone3::LeftToTheKernel
    } else {
        Clone3::NotImplemented
    };
    let json = profile(clone3).to_string();
    match engine {
        EngineKind::Docker => Ok(format!("seccomp={json}")),
        EngineKind::Podman => {
            let path = profile_file(gvisor)?;
            if !path.is_file() {
                write_atomic(&path, json.as_bytes(), Mode::Masked(0o600))?;
            }
            Ok(format!("seccomp={}", path.display()))
        }
    }
}

/// Where podman's copy of the profile is kept for this bridge process.
fn profile_file(gvisor: bool) -> io::Result<PathBuf> {
    let name = if gvisor {
        "seccomp-gvisor.json"
    } else {
        "seccomp.json"
    };
    Ok(private_process_dir()?.join(name))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn docker_gets_the_profile_itself() {
        let option = security_option(EngineKind::Docker, false).unwrap();
        let json = option.strip_prefix("seccomp=").expect("a seccomp option");
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, profile(Clone3::NotImplemented));
    }

    #[test]
    fn podman_gets_a_private_file_with_the_profile() {
        for gvisor in [false, true] {
            let option = security_option(EngineKind::Podman, gvisor).unwrap();
            let path = PathBuf::from(option.strip_prefix("seccomp=").expect("an option"));
            let parsed: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let clone3 = if gvisor {
                Clone3::LeftToTheKernel
            } else {
                Clone3::NotImplemented
            };
            assert_eq!(parsed, profile(clone3));
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }
}
