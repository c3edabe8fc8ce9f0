//! What a sandbox is allowed: limits and grants, denied by default.
//!
//! A [`SandboxSpec`] is built once per process from the configuration and handed to
//! [`Sandbox::start`](crate::Sandbox::start) for every guest. The default denies everything it
//! can: no network, an empty environment, a read-only root, no mounts. Each grant is a named
//! builder call, and [`SandboxSpecBuilder::build`] rejects impossible combinations.

use std::path::PathBuf;

use crate::error::SandboxError;

/// Smallest memory cap we accept: `CPython` needs this much to start.
pub const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

/// Limits and grants for one sandboxed guest.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSpec {
    memory_bytes: u64,
    pids: u32,
    cpus: Option<f64>,
    scratch_bytes: u64,
    user: (u32, u32),
    env: Vec<(String, String)>,
    read_only_mounts: Vec<ReadOnlyMount>,
}

/// A host directory the guest may read but never write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyMount {
    /// Directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
}

impl SandboxSpec {
    /// A builder starting from the defaults: 512 MiB, 128 pids, no CPU quota, 64 MiB of scratch
    /// space, user `65534:65534`, empty environment, no mounts.
    pub fn builder() -> SandboxSpecBuilder {
        SandboxSpecBuilder::default()
    }
    /// A builder starting from this spec, to grant more (a client's own mounts, say).
    pub fn to_builder(&self) -> SandboxSpecBuilder {
        SandboxSpecBuilder { spec: self.clone() }
    }
    /// Memory cap in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    /// Process cap.
    pub fn pids(&self) -> u32 {
        self.pids
    }
    /// CPU quota in cores, if any.
    pub fn cpus(&self) -> Option<f64> {
        self.cpus
    }
    /// Size cap of each writable scratch area (`/tmp`, `/workspace`), where the backend can
    /// enforce one.
    pub fn scratch_bytes(&self) -> u64 {
        self.scratch_bytes
    }
    /// `uid:gid` inside the sandbox.
    pub fn user(&self) -> (u32, u32) {
        self.user
    }
    /// The guest's environment (empty unless granted).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
    /// Read-only mounts granted to the guest.
    pub fn read_only_mounts(&self) -> &[ReadOnlyMount] {
        &self.read_only_mounts
    }
    /// This spec plus one more read-only mount, for one guest (a directory of its own);
    /// checked as [`SandboxSpecBuilder::build`] checks mounts.
    pub fn with_read_only_mount(
        &self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
    ) -> Result<SandboxSpec, SandboxError> {
        SandboxSpecBuilder { spec: self.clone() }
            .read_only_mount(host, guest)
            .build()
    }
}

impl Default for SandboxSpec {
    fn default() -> Self {
        SandboxSpecBuilder::default()
            .build()
            .expect("the defaults are valid")
    }
}

/// Builder for [`SandboxSpec`]; setters are infallible, [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct SandboxSpecBuilder {
    spec: SandboxSpec,
}

impl Default for SandboxSpecBuilder {
    fn default() -> Self {
        Self {
            spec: SandboxSpec {
                memory_bytes: 512 * 1024 * 1024,
                pids: 128,
                cpus: None,
                scratch_bytes: 64 * 1024 * 1024,
                user: (65534, 65534),
                env: Vec::new(),
                read_only_mounts: Vec::new(),
            },
        }
    }
}

impl SandboxSpecBuilder {
    /// Memory cap in bytes (default 512 MiB; at least [`MIN_MEMORY_BYTES`]).
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.spec.memory_bytes = bytes;
        self
    }
    /// Process cap (default 128; at least 1).
    pub fn pids(mut self, pids: u32) -> Self {
        self.spec.pids = pids;
        self
    }
    /// CPU quota in cores (default none; must be positive).
    pub fn cpus(mut self, cpus: Option<f64>) -> Self {
        self.spec.cpus = cpus;
        self
    }
    /// Size cap of each scratch area (default 64 MiB).
    pub fn scratch_bytes(mut self, bytes: u64) -> Self {
        self.spec.scratch_bytes = bytes;
        self
    }
    /// `uid:gid` inside the sandbox (default `65534:65534`).
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.spec.user = (uid, gid);
        self
    }
    /// Grant one environment variable to the guest.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.push((key.into(), value.into()));
        self
    }
    /// Grant read-only access to a host directory.
    pub fn read_only_mount(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.spec.read_only_mounts.push(ReadOnlyMount {
            host: host.into(),
            guest: guest.into(),
        });
        self
    }
    /// Check the spec and return it.
    pub fn build(self) -> Result<SandboxSpec, SandboxError> {
        let spec = self.spec;
        if spec.memory_bytes < MIN_MEMORY_BYTES {
            return Err(SandboxError::Spec(format!(
                "memory cap {} bytes is below the {} MiB CPython needs",
                spec.memory_bytes,
                MIN_MEMORY_BYTES / 1024 / 1024
            )));
        }
        if spec.pids == 0 {
            return Err(SandboxError::Spec(
                "the process cap must be at least 1".into(),
            ));
        }
        if let Some(cpus) = spec.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return Err(SandboxError::Spec(format!(
                "CPU quota {cpus} is not a positive number"
            )));
        }
        for (i, mount) in spec.read_only_mounts.iter().enumerate() {
            if !mount.guest.starts_with('/') || mount.guest.split('/').any(|part| part == "..") {
                return Err(SandboxError::Spec(format!(
                    "mount target {:?} must be an absolute path without `..`",
                    mount.guest
                )));
            }
            if spec.read_only_mounts[..i]
                .iter()
                .any(|other| other.guest == mount.guest)
            {
                return Err(SandboxError::Spec(format!(
                    "mount target {:?} is granted twice",
                    mount.guest
                )));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deny_everything_optional() {
        let spec = SandboxSpec::default();
        assert!(spec.env().is_empty());
        assert!(spec.read_only_mounts().is_empty());
        assert_eq!(spec.memory_bytes(), 512 * 1024 * 1024);
        assert_eq!(spec.user(), (65534, 65534));
    }

    #[test]
    fn impossible_limits_are_rejected() {
        assert!(SandboxSpec::builder().memory_bytes(1024).build().is_err());
        assert!(SandboxSpec::builder().pids(0).build().is_err());
        assert!(SandboxSpec::builder().cpus(Some(-1.0)).build().is_err());
        assert!(
            SandboxSpec::builder()
                .read_only_mount("/x", "rel")
                .build()
                .is_err()
        );
        assert!(
            SandboxSpec::builder()
                .read_only_mount("/x", "/a/../b")
                .build()
                .is_err()
        );
        let one = SandboxSpec::builder()
            .read_only_mount("/x", "/data/x")
            .build()
            .unwrap();
        assert!(
            one.to_builder()
                .read_only_mount("/y", "/data/x")
                .build()
                .is_err()
        );
        assert_eq!(
            one.to_builder()
                .read_only_mount("/y", "/data/y")
                .build()
                .unwrap()
                .read_only_mounts()
                .len(),
            2
        );
    }

    #[test]
    fn a_mount_for_one_guest_leaves_the_shared_spec_alone() {
        let shared = SandboxSpec::default();
        let one = shared.with_read_only_mount("/host/s1", "/opt/p").unwrap();
        assert_eq!(one.read_only_mounts().len(), 1);
        assert!(shared.read_only_mounts().is_empty());
        assert!(shared.with_read_only_mount("/x", "rel").is_err());
    }
}
