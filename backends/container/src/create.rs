//! The container a session runs in, as an engine API request built from the [`SandboxSpec`].
//!
//! Everything the spec does not grant is denied: no network, a read-only root, all
//! capabilities dropped, no new privileges, our own seccomp profile
//! ([`sandbox_core::seccomp`]), an unprivileged user, the bootstrap's own init as PID 1 (not
//! the engine's: ours makes itself non-dumpable, out of the sandboxed code's reach),
//! size-capped tmpfs at `/tmp` and `/workspace` (the only writable places), memory without
//! swap, a pids cap and an optional CPU quota, and an environment of our own, never the
//! host's.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};
use sandbox_core::SandboxSpec;
use sandbox_core::guest::{INIT_HEADROOM_BYTES, interpreter_args};
use sandbox_rootfs::GUEST_ENV;

use crate::channel::{GUEST_DIR, bootstrap_args};

/// Label every container we create carries; its value names the bridge process that owns it.
pub const OWNER_LABEL: &str = "io.github.mcp-server-code-execution-mode.owner";

/// The guest's whole environment (plus what the spec grants): the root filesystem's
/// ([`GUEST_ENV`]). The engine's own additions (`HOSTNAME`, `container`, `TERM`) and the
/// image's are dropped by `env -i`.
const BASE_ENV: [&str; 3] = GUEST_ENV;
/// Options of the tmpfs laid over directories engines would otherwise leave writable.
const SEALED_TMPFS: &str = "ro,nosuid,nodev,noexec,size=64k";
/// Open files per process.
const NOFILE: i64 = 1024;
/// Upper bound of the per-user process rlimit we set. The pids cap is the real limit per
/// container; this one counts every process of the sandbox uid on the host, so it must fit
/// many sessions, yet stay under what the engine's own processes may set (podman's service
/// runs with a hard limit of 32768 here, and raising it fails without `CAP_SYS_RESOURCE`).
const NPROC_MAX: i64 = 8192;

/// The process rlimit to give containers: engines otherwise copy the host's, which an
/// engine without `CAP_SYS_RESOURCE` may fail to set. Never above our own hard limit.
fn nproc_limit() -> i64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max processes"))?;
            let hard = line.split_whitespace().nth(3)?;
            hard.parse::<i64>().ok()
        })
        .map_or(NPROC_MAX, |hard| hard.min(NPROC_MAX))
}

/// Options of the engine that shape the request.
#[derive(Debug, Clone, Default)]
pub(crate) struct CreateOptions {
    /// The `security_opt` entry with our seccomp profile (`seccomp=<json>` for docker,
    /// `seccomp=<path>` for podman, which reads a file), from [`crate::seccomp`].
    pub(crate) seccomp: String,
    /// OCI runtime name the engine should use (`runsc` for gVisor), if not its default.
    pub(crate) oci_runtime: Option<String>,
    /// Processes the runtime itself needs inside the container's pids cgroup (gVisor's
    /// sentry and gofer threads live there), added to the spec's cap.
    pub(crate) pids_headroom: i64,
}

/// The create request for one session's container.
pub(crate) fn container_body(
    spec: &SandboxSpec,
    image: &str,
    owner: &str,
    channel_dir: &Path,
    options: &CreateOptions,
) -> ContainerCreateBody {
    // Podman gives a tmpfs over an image directory that directory's mode, whatever `mode`
    // says: the root filesystem makes both directories 1777 (see `sandbox-rootfs`).
    let tmpfs_options = format!("rw,nosuid,nodev,size={},mode=1777", spec.scratch_bytes());
    // Podman (with a read-only root) and gVisor otherwise mount writable tmpfs of their
    // own at `/run` and `/var/tmp`, bounded only by the memory cap: cover both with empty,
    // read-only ones. (`/run/mcp` is bind-mounted inside `/run` all the same.)
    let tmpfs = HashMap::from([
        ("/tmp".to_string(), tmpfs_options.clone()),
        ("/workspace".to_string(), tmpfs_options),
        ("/run".to_string(), SEALED_TMPFS.to_string()),
        ("/var/tmp".to_string(), SEALED_TMPFS.to_string()),
    ]);
    let memory = i64::try_from(spec.memory_bytes()).unwrap_or(i64::MAX);
    // Per process, below the cap by what the init keeps, so the interpreter's memory bomb
    // gets a `MemoryError` before the cgroup's OOM killer ends the sandbox.
    let data = i64::try_from(
        spec.memory_bytes()
            .saturating_sub(INIT_HEADROOM_BYTES)
            .max(sandbox_core::MIN_MEMORY_BYTES),
    )
    .unwrap_or(i64::MAX);
    let mut binds: Vec<String> = spec
        .read_only_mounts()
        .iter()
        .map(|mount| format!("{}:{}:ro", mount.host.display(), mount.guest))
        .collect();
    binds.push(format!("{}:{GUEST_DIR}:ro", channel_dir.display()));
    let host_config = HostConfig {
        network_mode: Some("none".into()),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into(), options.seccomp.clone()]),
        memory: Some(memory),
        memory_swap: Some(memory),
        pids_limit: Some(i64::from(spec.pids()) + options.pids_headroom),
        #[allow(
            clippy::cast_possible_truncation,
            reason = "a CPU quota in nano-CPUs fits an i64 for any real core count"
        )]
        nano_cpus: spec.cpus().map(|cpus| (cpus * 1e9).round() as i64),
        // PID 1 is the bootstrap's `--init`, which forwards signals, reaps orphans and makes
        // itself non-dumpable; an engine's init (catatonit, tini) stays traceable by the
        // sandbox's code, which runs as the same user.
        init: Some(false),
        ulimits: Some(vec![
            ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(NOFILE),
                hard: Some(NOFILE),
            },
            // Heap and anonymous mappings per process, just under the memory cap: a memory
            // bomb gets a clean `MemoryError` and the session lives on. The cgroup cap stays
            // the limit for the whole container (several processes, page cache, tmpfs).
            ResourcesUlimits {
                name: Some("data".into()),
                soft: Some(data),
                hard: Some(data),
            },
            ResourcesUlimits {
                name: Some("nproc".into()),
                soft: Some(nproc_limit()),
                hard: Some(nproc_limit()),
            },
        ]),
        binds: Some(binds),
        // The guest's streams go over the channel; nothing is worth logging.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ipc_mode: Some("private".into()),
        // `/dev/shm` stays writable (POSIX shared memory, semaphores): private to the
        // container, charged to its memory cap, and no larger than a scratch area.
        shm_size: Some(i64::try_from(spec.scratch_bytes()).unwrap_or(i64::MAX)),
        runtime: options.oci_runtime.clone(),
        ..HostConfig::default()
    };
    let (uid, gid) = spec.user();
    let mut env: Vec<String> = BASE_ENV.iter().map(ToString::to_string).collect();
    env.extend(
        spec.env()
            .iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    let mut cmd = vec!["/usr/bin/env".to_string(), "-i".to_string()];
    cmd.extend(env.iter().cloned());
    cmd.push("python3".to_string());
    cmd.extend(interpreter_args().iter().map(ToString::to_string));
    cmd.push("--init".to_string());
    cmd.extend(bootstrap_args().iter().map(ToString::to_string));
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        entrypoint: Some(Vec::new()),
        env: Some(env),
        user: Some(format!("{uid}:{gid}")),
        working_dir: Some("/workspace".into()),
        hostname: Some("sandbox".into()),
        network_disabled: Some(true),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        labels: Some(HashMap::from([(
            OWNER_LABEL.to_string(),
            owner.to_string(),
        )])),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ContainerCreateBody {
        let spec = SandboxSpec::builder()
            .memory_bytes(256 << 20)
            .pids(64)
            .cpus(Some(1.5))
            .scratch_bytes(8 << 20)
            .user(1000, 1000)
            .env("X", "1")
            .read_only_mount("/host/tools", "/tools")
            .build()
            .unwrap();
        container_body(
            &spec,
            "img:1",
            "host:1:2",
            Path::new("/host/chan"),
            &CreateOptions {
                seccomp: "seccomp=/run/profile.json".into(),
                ..CreateOptions::default()
            },
        )
    }

    #[test]
    fn the_container_is_locked_down() {
        let body = body();
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(body.network_disabled, Some(true));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            host.security_opt.as_deref(),
            Some(
                &[
                    "no-new-privileges".to_string(),
                    "seccomp=/run/profile.json".to_string()
                ][..]
            )
        );
        assert_eq!(host.init, Some(false), "the bootstrap's own init is PID 1");
        let cmd = body.cmd.as_ref().unwrap();
        let init = cmd.iter().position(|arg| arg == "--init").expect("--init");
        let connect = cmd.iter().position(|arg| arg == "--connect").unwrap();
        assert!(init < connect, "--init comes first: {cmd:?}");
        assert_ne!(host.privileged, Some(true));
    }

    #[test]
    fn limits_come_from_the_spec() {
        let body = body();
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(host.memory_swap, host.memory, "no swap beyond the cap");
        let data = host
            .ulimits
            .as_ref()
            .unwrap()
            .iter()
            .find(|limit| limit.name.as_deref() == Some("data"))
            .unwrap();
        let below = i64::try_from((256 << 20) - INIT_HEADROOM_BYTES).unwrap();
        assert_eq!(data.hard, Some(below), "room for the init under the cap");
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        let tmpfs = host.tmpfs.as_ref().unwrap();
        assert!(tmpfs["/tmp"].contains("size=8388608"));
        assert!(tmpfs["/workspace"].contains("size=8388608"));
        assert_eq!(host.shm_size, Some(8 << 20));
        for sealed in ["/run", "/var/tmp"] {
            assert!(
                tmpfs[sealed].starts_with("ro,"),
                "{sealed} must be read-only"
            );
        }
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            host.binds.as_deref(),
            Some(
                &[
                    "/host/tools:/tools:ro".to_string(),
                    "/host/chan:/run/mcp:ro".to_string()
                ][..]
            )
        );
    }

    #[test]
    fn the_process_rlimit_never_exceeds_ours() {
        let limit = nproc_limit();
        assert!(limit > 0 && limit <= NPROC_MAX);
    }

    #[test]
    fn the_environment_is_ours_not_the_hosts() {
        let body = body();
        let env = body.env.unwrap();
        assert!(env.contains(&"X=1".to_string()));
        assert!(
            env.iter()
                .all(|entry| { BASE_ENV.contains(&entry.as_str()) || entry == "X=1" })
        );
        assert_eq!(body.labels.unwrap()[OWNER_LABEL], "host:1:2");
        let cmd = body.cmd.unwrap();
        assert_eq!(
            &cmd[..2],
            ["/usr/bin/env", "-i"],
            "the engine's variables are dropped"
        );
        assert!(cmd.contains(&"X=1".to_string()));
    }
}
