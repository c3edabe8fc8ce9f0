//! What this host lets the backend do: root or rootless, which ids the user namespace maps,
//! and which limits cgroups can enforce. Where a limit cannot be enforced, [`Mode::unenforced`]
//! names it, and the probe and every reply say so.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Where cgroup v2 (unified) or v1 controllers are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup limits apply to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Memory (and swap) cap.
    pub(crate) memory: bool,
    /// Process-count cap.
    pub(crate) pids: bool,
    /// CPU quota.
    pub(crate) cpu: bool,
}

impl Limits {
    /// Every limit.
    pub(crate) const fn all() -> Self {
        Self {
            memory: true,
            pids: true,
            cpu: true,
        }
    }
    /// No cgroup limit at all.
    pub(crate) const fn none() -> Self {
        Self {
            memory: false,
            pids: false,
            cpu: false,
        }
    }
    /// True when at least one limit is enforced by a cgroup.
    pub(crate) const fn any(self) -> bool {
        self.memory || self.pids || self.cpu
    }
}

/// Host ids of root-mode containers when root has no subordinate range of 65536 ids in
/// `/etc/subuid` and `/etc/subgid`: above the ranges systemd-nspawn picks from
/// (up to 0x6FFF0000) and below systemd's foreign range (0x7FFE0000).
pub(crate) const ROOT_FALLBACK_RANGE: (u32, u32) = (0x7000_0000, 65536);

/// The ids a root-mode container's user namespace needs: 0 (the runtime's setup) to 65534
/// (the guest).
const ROOT_RANGE_SIZE: u32 = 65536;

/// The uid and gid maps of a container's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct IdMap {
    uids: Vec<(u32, u32, u32)>,
    gids: Vec<(u32, u32, u32)>,
}

impl IdMap {
    /// Container root is the caller; container ids 1.. are the caller's subordinate range,
    /// when it has one.
    pub(crate) fn rootless(
        uid: u32,
        gid: u32,
        uid_range: Option<(u32, u32)>,
        gid_range: Option<(u32, u32)>,
    ) -> Self {
        let map = |own: u32, sub: Option<(u32, u32)>| {
            let mut ranges = vec![(0, own, 1)];
            if let Some((start, count)) = sub {
                ranges.push((1, start, count));
            }
            ranges
        };
        Self {
            uids: map(uid, uid_range),
            gids: map(gid, gid_range),
        }
    }

    /// Root mode: container ids 0..65536 are host ids from `uid_range` and `gid_range`
    /// (root's subordinate ranges, or [`ROOT_FALLBACK_RANGE`]), so even container root is
    /// an unprivileged nobody on the host.
    pub(crate) fn shifted(uid_range: (u32, u32), gid_range: (u32, u32)) -> Self {
        Self {
            uids: vec![(0, uid_range.0, uid_range.1)],
            gids: vec![(0, gid_range.0, gid_range.1)],
        }
    }

    /// True when container id `id` is mapped for both users and groups.
    pub(crate) fn maps(&self, id: u32) -> bool {
        let inside = |ranges: &[(u32, u32, u32)]| {
            ranges
                .iter()
                .any(|&(start, _, count)| id >= start && id - start < count)
        };
        inside(&self.uids) && inside(&self.gids)
    }

    /// `newuidmap`'s arguments after the pid: `container host count` per range.
    pub(crate) fn uid_args(&self) -> Vec<String> {
        Self::args(&self.uids)
    }
    /// `newgidmap`'s arguments after the pid.
    pub(crate) fn gid_args(&self) -> Vec<String> {
        Self::args(&self.gids)
    }
    fn args(ranges: &[(u32, u32, u32)]) -> Vec<String> {
        ranges
            .iter()
            .flat_map(|&(container, host, count)| [container, host, count])
            .map(|n| n.to_string())
            .collect()
    }

    /// The uid map as `container→host×count` ranges, for the probe.
    pub(crate) fn describe_uids(&self) -> String {
        self.uids
            .iter()
            .map(|&(container, host, count)| format!("{container}→{host}×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn ranges_json(ranges: &[(u32, u32, u32)]) -> Value {
        json!(
            ranges
                .iter()
                .map(|&(container, host, size)| {
                    json!({"containerID": container, "hostID": host, "size": size})
                })
                .collect::<Vec<_>>()
        )
    }
    /// `uidMappings` of the spec.
    pub(crate) fn uid_json(&self) -> Value {
        Self::ranges_json(&self.uids)
    }
    /// `gidMappings` of the spec.
    pub(crate) fn gid_json(&self) -> Value {
        Self::ranges_json(&self.gids)
    }
}

/// The v1 controllers libcontainer places every container in, when the host mounts them.
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// How containers run on this host.
#[derive(Debug, Clone)]
pub(crate) struct Mode {
    /// True when the bridge runs as root.
    pub(crate) root: bool,
    /// The user namespace's maps.
    pub(crate) id_map: IdMap,
    /// Limits cgroups enforce.
    pub(crate) limits: Limits,
    /// Why limits are missing, one sentence per limit (empty when all are enforced).
    pub(crate) unenforced: Vec<String>,
    /// What would make the missing limits hold, when someone else can do it.
    pub(crate) remedy: Option<String>,
    /// `v1`, `v2` or `none`.
    pub(crate) cgroup_version: &'static str,
    /// The cgroup (relative to each hierarchy's root) under which containers get theirs.
    pub(crate) cgroup_parent: Option<String>,
    /// True when libcontainer must not see the host's cgroups (rootless with none
    /// delegated): the shim covers them with a fresh cgroup2 of its own namespace.
    pub(crate) hide_host_cgroups: bool,
}

impl Mode {
    /// Find out the mode of this process on this host.
    pub(crate) fn detect() -> Self {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let root_dir = Path::new(CGROUP_ROOT);
        let cgroup_version = cgroup_version(root_dir);
        if uid == 0 {
            let limits = root_limits(root_dir, cgroup_version);
            let unenforced = describe_missing(limits, "this host has no such cgroup controller");
            let range = |file: &str| {
                subordinate_range(file, "root", 0)
                    .filter(|&(_, count)| count >= ROOT_RANGE_SIZE)
                    .map_or(ROOT_FALLBACK_RANGE, |(start, _)| (start, ROOT_RANGE_SIZE))
            };
            return Self {
                root: true,
                id_map: IdMap::shifted(range("/etc/subuid"), range("/etc/subgid")),
                limits,
                unenforced,
                remedy: None,
                cgroup_version,
                cgroup_parent: limits.any().then(|| ROOT_CGROUP_PARENT.to_string()),
                hide_host_cgroups: false,
            };
        }
        let user = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name);
        let sub = |file: &str| {
            user.as_deref()
                .and_then(|u| subordinate_range(file, u, uid))
        };
        let id_map = IdMap::rootless(uid, gid, sub("/etc/subuid"), sub("/etc/subgid"));
        let parent = format!("{ROOT_CGROUP_PARENT}-{uid}");
        // Without a cgroup of its own, libcontainer still wants to place every container in
        // cgroups (on v1 it cannot be told not to), so the shim shows it a fresh cgroup2
        // mount, where libcontainer's rootless handling leaves the container in the shim's
        // cgroup (see `own_namespace`). The rlimits stand in for the cgroup limits, and the
        // replies say so.
        let (limits, why, remedy) = match cgroup_version {
            "v1" => match undelegated_v1_controllers(root_dir, &parent, uid) {
                missing if missing.is_empty() => (Limits::all(), "", None),
                missing => (
                    Limits::none(),
                    "rootless on cgroup v1 with no cgroup delegated by root",
                    Some(format!(
                        "to enforce them, root creates {CGROUP_ROOT}/<controller>/{parent} for \
                         {} and chowns each to uid {uid} (tests/run.sh shows how)",
                        missing.join(", ")
                    )),
                ),
            },
            "v2" => (
                Limits::none(),
                "rootless on cgroup v2, which this build does not delegate",
                None,
            ),
            _ => (Limits::none(), "this host has no cgroups", None),
        };
        Self {
            root: false,
            id_map,
            limits,
            unenforced: describe_missing(limits, why),
            remedy,
            cgroup_version,
            cgroup_parent: limits.any().then_some(parent),
            hide_host_cgroups: !limits.any(),
        }
    }
}

/// The cgroup holding every container's cgroup (rootless: suffixed with the uid).
const ROOT_CGROUP_PARENT: &str = "mcp-sandbox";

/// The v1 controllers this process is in that have no directory `parent` owned by `uid`.
fn undelegated_v1_controllers(root: &Path, parent: &str, uid: u32) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut missing: Vec<String> = mine
        .lines()
        .filter_map(|line| line.split(':').nth(1))
        .flat_map(|controllers| controllers.split(','))
        .filter(|c| V1_CONTROLLERS.contains(c) && root.join(c).is_dir())
        .filter(|c| {
            !std::fs::metadata(root.join(c).join(parent))
                .is_ok_and(|m| m.is_dir() && m.uid() == uid)
        })
        .map(ToString::to_string)
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// One sentence per limit that is not enforced, saying what applies instead.
fn describe_missing(limits: Limits, why: &str) -> Vec<String> {
    let mut missing = Vec::new();
    if !limits.memory {
        missing.push(format!(
            "memory: no cap on the sandbox as a whole ({why}); only the per-process \
             RLIMIT_DATA applies"
        ));
    }
    if !limits.pids {
        missing.push(format!(
            "processes: no pids cap ({why}); the per-user RLIMIT_NPROC applies instead"
        ));
    }
    if !limits.cpu {
        missing.push(format!("cpu: no quota ({why})"));
    }
    missing
}

fn cgroup_version(root: &Path) -> &'static str {
    if root.join("cgroup.controllers").is_file() {
        "v2"
    } else if root.join("memory").is_dir() || root.join("pids").is_dir() {
        "v1"
    } else {
        "none"
    }
}

/// Which controllers root can use.
fn root_limits(root: &Path, version: &str) -> Limits {
    match version {
        "v2" => {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let has = |name: &str| controllers.split_whitespace().any(|c| c == name);
            Limits {
                memory: has("memory"),
                pids: has("pids"),
                cpu: has("cpu"),
            }
        }
        "v1" => {
            let has = |name: &str| root.join(name).is_dir();
            Limits {
                memory: has("memory"),
                pids: has("pids"),
                cpu: has("cpu"),
            }
        }
        _ => Limits::none(),
    }
}

/// The first subordinate id range of `user` (or of its numeric id) in `/etc/subuid`-style
/// `file`.
fn subordinate_range(file: &str, user: &str, id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subordinate(&text, user, id)
}

fn parse_subordinate(text: &str, user: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let name = fields.next()?;
        if name != user && name != id {
            return None;
        }
        let start = fields.next()?.parse().ok()?;
        let count = fields.next()?.parse().ok()?;
        Some((start, count))
    })
}

/// The directory that holds container state and bundles for this user: under the runtime
/// directory when there is one, else a per-user directory in the temporary directory.
pub(crate) fn state_root(root: bool, runtime_dir: Option<&Path>) -> PathBuf {
    if root {
        return PathBuf::from("/run/mcp-sandbox-oci");
    }
    let uid = nix::unistd::geteuid().as_raw();
    runtime_dir.filter(|dir| dir.is_dir()).map_or_else(
        || std::env::temp_dir().join(format!("mcp-sandbox-oci-{uid}")),
        |dir| dir.join("mcp-sandbox-oci"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_found_by_name_or_id() {
        let text = "alice:100000:65536\n1001:200000:65536\n";
        assert_eq!(
            parse_subordinate(text, "alice", 1000),
            Some((100_000, 65536))
        );
        assert_eq!(parse_subordinate(text, "bob", 1001), Some((200_000, 65536)));
        assert_eq!(parse_subordinate(text, "carol", 1002), None);
    }

    #[test]
    fn the_guest_user_is_mapped_only_with_a_subordinate_range() {
        let with = IdMap::rootless(1000, 1000, Some((100_000, 65536)), Some((100_000, 65536)));
        assert!(with.maps(65534));
        let without = IdMap::rootless(1000, 1000, None, None);
        assert!(!without.maps(65534));
        assert!(without.maps(0));
    }

    #[test]
    fn root_mode_shifts_every_id_the_container_uses() {
        let map = IdMap::shifted(ROOT_FALLBACK_RANGE, ROOT_FALLBACK_RANGE);
        assert!(map.maps(0) && map.maps(65534));
        assert_eq!(map.uid_json()[0]["hostID"], 0x7000_0000);
        assert_eq!(map.uid_json().as_array().unwrap().len(), 1);
    }

    #[test]
    fn missing_limits_are_each_named() {
        let missing = describe_missing(Limits::none(), "because");
        assert_eq!(missing.len(), 3);
        assert!(describe_missing(Limits::all(), "because").is_empty());
    }
}
