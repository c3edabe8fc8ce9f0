//! The OCI runtime spec (`config.json`) of one session's container, built in code.
//!
//! Everything is denied unless listed: every namespace of its own (user namespace when
//! rootless), a read-only root, size-capped tmpfs scratch, no capabilities,
//! `no_new_privileges`, runc's masked and read-only `/proc` paths, rlimits, cgroup limits
//! where they can be enforced, and the seccomp filter every container backend shares
//! ([`sandbox_core::seccomp`]).

use std::path::{Path, PathBuf};

use sandbox_core::SandboxSpec;
use sandbox_core::guest::INIT_HEADROOM_BYTES;
use sandbox_core::seccomp::{self, Clone3};
use sandbox_rootfs::GUEST_ENV;
use serde_json::{Value, json};

use crate::mode::{IdMap, Limits};

/// The interpreter inside the root filesystem.
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// Period of the CPU quota, in microseconds.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// Open files per process.
const NOFILE: u64 = 1024;

/// Size of the `/dev` and `/dev/shm` tmpfs mounts.
const DEV_SIZE: &str = "size=65536k";

/// Paths under `/proc` hidden from the guest (runc's defaults).
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Paths under `/proc` the guest may read but not write (runc's defaults).
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything `config.json` depends on besides the [`SandboxSpec`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The shared, read-only Debian root filesystem.
    pub(crate) rootfs: PathBuf,
    /// The guest's arguments after the interpreter.
    pub(crate) args: Vec<String>,
    /// Id maps of the container's user namespace (root); `None` when the container stays
    /// in the shim's own (rootless). Either way the network namespace is the one the shim
    /// made, with loopback up, so the spec names none.
    pub(crate) id_map: Option<IdMap>,
    /// True when libcontainer applies the cgroup limits (root). Rootless, the shim writes
    /// them into the delegated cgroup itself: libcontainer would also write the device
    /// list, which needs privileges.
    pub(crate) cgroup_resources: bool,
    /// The guest's `uid:gid` inside the container.
    pub(crate) user: (u32, u32),
    /// Which limits the host can enforce in this mode.
    pub(crate) limits: Limits,
    /// The container's cgroup, when cgroups are used.
    pub(crate) cgroups_path: Option<String>,
    /// The bundle directory (holds the identity files).
    pub(crate) bundle: PathBuf,
}

/// The container's spec as JSON.
pub(crate) fn config(spec: &SandboxSpec, plan: &Plan) -> Value {
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    let mut linux = json!({
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "seccomp": seccomp::profile(Clone3::NotImplemented),
    });
    if let Some(map) = &plan.id_map {
        namespaces.push(json!({"type": "user"}));
        linux["uidMappings"] = map.uid_json();
        linux["gidMappings"] = map.gid_json();
    }
    linux["namespaces"] = json!(namespaces);
    if let Some(path) = &plan.cgroups_path {
        linux["cgroupsPath"] = json!(path);
        if plan.cgroup_resources {
            linux["resources"] = resources(spec, plan.limits);
        }
    }
    // The root filesystem's environment, then what the spec grants (as the container
    // backends do).
    let env: Vec<String> = GUEST_ENV
        .iter()
        .map(ToString::to_string)
        .chain(spec.env().iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    let args: Vec<String> = std::iter::once(PYTHON.to_string())
        .chain(plan.args.iter().cloned())
        .collect();
    let no_caps: [&str; 0] = [];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": plan.user.0, "gid": plan.user.1, "additionalGids": []},
            "args": args,
            "env": env,
            "cwd": "/workspace",
            "capabilities": {
                "bounding": no_caps, "effective": no_caps, "inheritable": no_caps,
                "permitted": no_caps, "ambient": no_caps,
            },
            "rlimits": rlimits(spec, plan.limits),
            "noNewPrivileges": true,
        },
        "root": {"path": plan.rootfs, "readonly": true},
        "hostname": "sandbox",
        "mounts": mounts(spec, &plan.bundle),
        "linux": linux,
    })
}

/// Parse the JSON as a spec, as libcontainer will.
#[cfg(test)]
fn typed(config: &Value) -> Result<libcontainer::oci_spec::runtime::Spec, serde_json::Error> {
    serde_json::from_value(config.clone())
}

/// Write the bundle: `config.json` in `dir`.
pub(crate) fn write(dir: &Path, config: &Value) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let bytes = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    // Private to the runtime: only the identity files are for the container to read.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("config.json"))?
        .write_all(&bytes)
}

/// The sandbox's own host name, bind-mounted over the root filesystem's (debootstrap copies
/// the build host's).
const IDENTITY_FILES: [(&str, &str); 1] = [("hostname", "sandbox\n")];

/// Write the identity files into the bundle `dir`.
pub(crate) fn write_identity(dir: &Path) -> std::io::Result<()> {
    for (name, text) in IDENTITY_FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn mounts(spec: &SandboxSpec, bundle: &Path) -> Vec<Value> {
    let scratch = format!("size={}", spec.scratch_bytes());
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", DEV_SIZE]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", DEV_SIZE]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", scratch]}),
        json!({"destination": "/workspace", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", scratch]}),
    ];
    for (name, _) in IDENTITY_FILES {
        mounts.push(json!({
            "destination": format!("/etc/{name}"), "type": "bind", "source": bundle.join(name),
            "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
        }));
    }
    // The grants' mount points are made in a small tmpfs over each one's parent (such as
    // `/data`, which the root filesystem provides empty): the shared root is read-only, so
    // libcontainer cannot make them there. Owned by the container's root, mode 755: the
    // guest user cannot write in it.
    let mut parents: Vec<&str> = spec
        .read_only_mounts()
        .iter()
        .filter_map(|mount| mount.guest.rsplit_once('/').map(|(parent, _)| parent))
        .filter(|parent| !parent.is_empty())
        .collect();
    parents.sort_unstable();
    parents.dedup();
    for parent in parents {
        mounts.push(
            json!({"destination": parent, "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "noexec", "nodev", "mode=755", "size=64k"]}),
        );
    }
    for mount in spec.read_only_mounts() {
        mounts.push(json!({
            "destination": mount.guest, "type": "bind", "source": mount.host,
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
        }));
    }
    mounts
}

fn rlimits(spec: &SandboxSpec, limits: Limits) -> Vec<Value> {
    let limit = |kind: &str, value: u64| json!({"type": kind, "hard": value, "soft": value});
    let mut rlimits = vec![
        limit("RLIMIT_NOFILE", NOFILE),
        limit("RLIMIT_CORE", 0),
        // Per process, so a memory bomb gets a MemoryError instead of ending the session.
        limit(
            "RLIMIT_DATA",
            spec.memory_bytes()
                .saturating_sub(INIT_HEADROOM_BYTES)
                .max(sandbox_core::MIN_MEMORY_BYTES),
        ),
    ];
    if !limits.pids {
        // Without a pids cgroup, the per-user process limit is what stops a fork bomb.
        rlimits.push(limit("RLIMIT_NPROC", u64::from(spec.pids())));
    }
    rlimits
}

/// cgroup limits; the device allow-list only as root (it needs `CAP_SYS_ADMIN`; rootless
/// containers can reach only the few device nodes bind-mounted into their `/dev`).
fn resources(spec: &SandboxSpec, limits: Limits) -> Value {
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if limits.memory {
        resources["memory"] = json!({"limit": spec.memory_bytes(), "swap": spec.memory_bytes()});
    }
    if limits.pids {
        resources["pids"] = json!({"limit": spec.pids()});
    }
    if limits.cpu
        && let Some(quota) = cpu_quota(spec)
    {
        resources["cpu"] = json!({"quota": quota, "period": CPU_PERIOD_US});
    }
    resources
}

/// The CPU quota per [`CPU_PERIOD_US`], in microseconds, if the spec has one.
pub(crate) fn cpu_quota(spec: &SandboxSpec) -> Option<i64> {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "a core count times the period fits easily"
    )]
    spec.cpus()
        .map(|cpus| (cpus * CPU_PERIOD_US as f64).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::ROOT_FALLBACK_RANGE;

    fn plan(limits: Limits, id_map: Option<IdMap>, cgroup_resources: bool) -> Plan {
        Plan {
            rootfs: PathBuf::from("/srv/rootfs"),
            args: vec!["-I".into(), "-S".into(), "-c".into(), "pass".into()],
            id_map,
            cgroup_resources,
            user: (65534, 65534),
            limits,
            cgroups_path: limits.any().then(|| "/mcp-sandbox/test".to_string()),
            bundle: PathBuf::from("/run/bundle"),
        }
    }

    #[test]
    fn the_root_mode_spec_is_valid_and_locked_down() {
        let spec = SandboxSpec::builder().cpus(Some(0.5)).build().unwrap();
        let map = IdMap::shifted(ROOT_FALLBACK_RANGE, ROOT_FALLBACK_RANGE);
        let config = config(&spec, &plan(Limits::all(), Some(map), true));
        let typed = typed(&config).expect("a valid OCI spec");
        let process = typed.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().as_ref().unwrap();
        assert!(caps.bounding().as_ref().unwrap().is_empty());
        assert!(caps.effective().as_ref().unwrap().is_empty());
        assert_eq!(typed.root().as_ref().unwrap().readonly(), Some(true));
        let linux = typed.linux().as_ref().unwrap();
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(
            resources.memory().as_ref().unwrap().limit(),
            Some(i64::try_from(spec.memory_bytes()).unwrap())
        );
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
        let namespaces = config["linux"]["namespaces"].as_array().unwrap();
        assert!(
            !namespaces.iter().any(|n| n["type"] == "network"),
            "the shim makes the network namespace"
        );
        let uids = linux.uid_mappings().as_ref().expect("a user namespace");
        assert_eq!(uids[0].container_id(), 0);
        assert_eq!(uids[0].host_id(), ROOT_FALLBACK_RANGE.0);
        let names: Vec<String> = linux
            .seccomp()
            .as_ref()
            .unwrap()
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|rule| rule.names().clone())
            .collect();
        for needed in [
            "mount",
            "ptrace",
            "bpf",
            "keyctl",
            "unshare",
            "setns",
            "kexec_load",
        ] {
            assert!(names.iter().any(|n| n == needed), "{needed} is denied");
        }
    }

    #[test]
    fn grants_are_read_only_binds_with_their_mount_points_in_a_tmpfs() {
        let spec = SandboxSpec::builder()
            .read_only_mount("/srv/a", "/data/a")
            .read_only_mount("/srv/b", "/data/b")
            .build()
            .unwrap();
        let mounts = mounts(&spec, Path::new("/run/bundle"));
        let at = |dest: &str| {
            mounts
                .iter()
                .position(|m| m["destination"] == dest)
                .unwrap_or_else(|| panic!("{dest} mounted"))
        };
        let parent = &mounts[at("/data")];
        assert_eq!(parent["type"], "tmpfs");
        assert_eq!(
            mounts
                .iter()
                .filter(|m| m["destination"] == "/data")
                .count(),
            1
        );
        for grant in ["/data/a", "/data/b"] {
            assert!(at("/data") < at(grant), "the tmpfs comes first");
            let options = mounts[at(grant)]["options"].as_array().unwrap();
            assert!(options.contains(&json!("ro")), "{grant} is read-only");
            assert!(options.contains(&json!("rbind")), "{grant} is a whole tree");
        }
    }

    #[test]
    fn rootless_without_cgroups_falls_back_to_rlimits_in_the_shims_namespaces() {
        let spec = SandboxSpec::default();
        let config = config(&spec, &plan(Limits::none(), None, false));
        typed(&config).expect("a valid OCI spec");
        assert!(config["linux"].get("resources").is_none());
        assert!(config["linux"].get("cgroupsPath").is_none());
        let rlimits = config["process"]["rlimits"].as_array().unwrap();
        assert!(rlimits.iter().any(|r| r["type"] == "RLIMIT_NPROC"));
        // The container stays in the shim's user and network namespaces.
        assert!(config["linux"].get("uidMappings").is_none());
        let namespaces = config["linux"]["namespaces"].as_array().unwrap();
        assert!(!namespaces.iter().any(|n| n["type"] == "user"));
        assert!(!namespaces.iter().any(|n| n["type"] == "network"));
    }
}
