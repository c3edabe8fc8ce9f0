//! The seccomp policy of every container backend, written once: which syscalls a sandboxed
//! interpreter is refused, and how `clone` is held to creating plain processes and threads.
//!
//! What it promises: the guest cannot make namespaces (`unshare`, `setns`, `clone` with a
//! namespace flag), trace or read other processes (`ptrace`, `process_vm_*`, `kcmp`), use
//! keyrings, load code into the kernel (modules, BPF, kexec), open perf events, mount, change
//! its root, set clocks, swap, reboot, or reach the kernel's `io_uring` and `userfaultfd` code.
//! Everything else is allowed: the C library, Python and the scientific stack need no call
//! on the list, and `fork`, threads and `subprocess` keep working (plain `clone`).
//!
//! `clone3` passes its flags in memory a filter cannot read, so it answers `ENOSYS` and the
//! C library falls back to `clone`, whose flags the filter checks ([`Clone3::NotImplemented`]).
//!
//! [`profile`] renders the policy as a seccomp document: the OCI runtime spec's
//! `linux.seccomp`, which is also the profile format podman and docker take with
//! `--security-opt seccomp=`. It names no architectures, so only the machine's native
//! system call table is allowed: a call through another ABI (the 32-bit `int 0x80` entry on
//! x86-64) never meets the allow-all default. Measured under runc (podman, docker): the
//! process is killed with `SIGSYS`.

use serde_json::{Value, json};

/// `EPERM`: what a refused call returns.
pub const REFUSED_ERRNO: u32 = 1;

/// `ENOSYS`: what `clone3` returns, so the C library falls back to `clone`.
pub const CLONE3_ERRNO: u32 = 38;

/// Syscalls the guest is refused with [`REFUSED_ERRNO`]: mounting and changing root, tracing
/// other processes, loading code into the kernel (modules, BPF, kexec), keyrings, new
/// namespaces, perf events, clocks, swap, reboot, `io_uring`, `userfaultfd`, and the legacy entry
/// points that bypass the rest. Python never needs any of them. Names a machine lacks (such
/// as `vm86` outside 32-bit x86) are skipped by the runtimes.
pub const REFUSED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "vm86",
    "vm86old",
];

/// Namespace flags `clone` may not be given: `CLONE_NEWNS`, `CLONE_NEWCGROUP`,
/// `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`.
pub const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// How the rendered profile treats `clone3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clone3 {
    /// The filter answers `ENOSYS`: the rule for a kernel that has `clone3`.
    NotImplemented,
    /// No rule: the kernel behind the filter answers itself. For gVisor, whose kernel (the
    /// 2022 build measured) has no `clone3` and answers `ENOSYS`, and whose seccomp answers
    /// every refusal with `EPERM` whatever the rule's errno, from which the C library would
    /// not fall back to `clone` (threads would fail to start).
    LeftToTheKernel,
}

/// The number of rules a rendered profile refuses by (the named syscalls, plus `clone`
/// with namespace flags and `clone3`), for probes to report.
pub fn refused_count() -> usize {
    REFUSED_SYSCALLS.len() + 2
}

/// The policy as a seccomp document (OCI `linux.seccomp`, equally a podman or docker
/// profile): allow by default, refuse [`REFUSED_SYSCALLS`] and `clone` with any of
/// [`CLONE_NAMESPACE_FLAGS`], and treat `clone3` as `clone3` says.
pub fn profile(clone3: Clone3) -> Value {
    let mut rules = vec![json!({
        "names": REFUSED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": REFUSED_ERRNO,
    })];
    for flag in CLONE_NAMESPACE_FLAGS {
        rules.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": REFUSED_ERRNO,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    if clone3 == Clone3::NotImplemented {
        rules.push(json!({
            "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": CLONE3_ERRNO,
        }));
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|rule| rule.get("args").is_none())
            .flat_map(|rule| rule["names"].as_array().expect("names").clone())
            .map(|name| name.as_str().expect("a name").to_string())
            .collect()
    }

    #[test]
    fn the_profile_refuses_what_reaches_past_the_sandbox() {
        let profile = profile(Clone3::NotImplemented);
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
        let names = refused(&profile);
        for needed in [
            "mount",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "unshare",
            "setns",
            "io_uring_setup",
            "userfaultfd",
            "kexec_load",
            "clone3",
        ] {
            assert!(names.iter().any(|n| n == needed), "{needed} is refused");
        }
        assert!(
            !names.iter().any(|n| n == "clone"),
            "plain clone is allowed"
        );
    }

    #[test]
    fn clone_is_refused_only_with_a_namespace_flag() {
        let profile = profile(Clone3::NotImplemented);
        let clone_rules: Vec<&Value> = profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["names"] == json!(["clone"]))
            .collect();
        assert_eq!(clone_rules.len(), CLONE_NAMESPACE_FLAGS.len());
        for (rule, flag) in clone_rules.iter().zip(CLONE_NAMESPACE_FLAGS) {
            let arg = &rule["args"][0];
            assert_eq!(arg["index"], 0);
            assert_eq!(arg["op"], "SCMP_CMP_MASKED_EQ");
            assert_eq!(arg["value"], flag);
            assert_eq!(arg["valueTwo"], flag);
        }
        // The flags glibc gives clone for a thread and for fork set none of them.
        let thread = 0x003d_0f00_u64;
        let fork = 0x0120_0011_u64;
        for flags in [thread, fork] {
            assert!(CLONE_NAMESPACE_FLAGS.iter().all(|f| flags & f == 0));
        }
    }

    #[test]
    fn clone3_answers_enosys_unless_left_to_the_kernel() {
        let rule = |profile: &Value| {
            profile["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|rule| rule["names"] == json!(["clone3"]))
                .cloned()
        };
        let rule3 = rule(&profile(Clone3::NotImplemented)).expect("a clone3 rule");
        assert_eq!(rule3["errnoRet"], CLONE3_ERRNO);
        assert!(rule(&profile(Clone3::LeftToTheKernel)).is_none());
    }

    #[test]
    fn the_count_covers_every_kind_of_refusal() {
        assert_eq!(refused_count(), REFUSED_SYSCALLS.len() + 2);
        let mut sorted = REFUSED_SYSCALLS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), REFUSED_SYSCALLS.len(), "no name twice");
    }
}
