//! Every environment variable the bridge reads, in one place.

/// Sandbox backend: `wasi` (default), `podman`, `docker`, `oci`.
pub const BACKEND: &str = "MCP_BRIDGE_BACKEND";
/// Container engine for the container backend: `auto`, `podman` or `docker`.
pub const RUNTIME: &str = "MCP_BRIDGE_RUNTIME";
/// Container image for the container backends.
pub const IMAGE: &str = "MCP_BRIDGE_IMAGE";
/// OCI runtime the container engines run sandboxes with, e.g. `runsc` (ours).
pub const OCI_RUNTIME: &str = "MCP_BRIDGE_OCI_RUNTIME";
/// A built Debian root filesystem for the oci backend, instead of the one in the cache dir
/// (rootless users point it at a tree root built, since only root can run debootstrap).
pub const ROOTFS: &str = "MCP_BRIDGE_ROOTFS";
/// Debian mirror for building the container root filesystem (read by `sandbox-rootfs`).
pub const DEBIAN_MIRROR: &str = "MCP_BRIDGE_DEBIAN_MIRROR";
/// Default per-run timeout.
pub const TIMEOUT: &str = "MCP_BRIDGE_TIMEOUT";
/// Upper clamp for per-run timeouts.
pub const MAX_TIMEOUT: &str = "MCP_BRIDGE_MAX_TIMEOUT";
/// Memory cap per sandbox.
pub const MEMORY: &str = "MCP_BRIDGE_MEMORY";
/// Process cap per sandbox.
pub const PIDS: &str = "MCP_BRIDGE_PIDS";
/// CPU quota per sandbox.
pub const CPUS: &str = "MCP_BRIDGE_CPUS";
/// `uid:gid` inside the sandbox.
pub const CONTAINER_USER: &str = "MCP_BRIDGE_CONTAINER_USER";
/// Idle time after which a session is reaped.
pub const IDLE_TIMEOUT: &str = "MCP_BRIDGE_RUNTIME_IDLE_TIMEOUT";
/// Host state directory (server configs, saved tools, memory).
pub const STATE_DIR: &str = "MCP_BRIDGE_STATE_DIR";
/// Text form of results: `compact`, `toon` or `json`.
pub const OUTPUT_MODE: &str = "MCP_BRIDGE_OUTPUT_MODE";
/// Per-stream output cap (ours).
pub const OUTPUT_LIMIT: &str = "MCP_BRIDGE_OUTPUT_LIMIT";
/// Log level.
pub const LOG_LEVEL: &str = "MCP_BRIDGE_LOG_LEVEL";
/// Allow proxying a server that is this bridge.
pub const ALLOW_SELF_SERVER: &str = "MCP_BRIDGE_ALLOW_SELF_SERVER";
/// One extra server config file, read first.
pub const SERVERS_CONFIG: &str = "MCP_SERVERS_CONFIG";
/// Timeout of one call to an upstream MCP server (ours).
pub const TOOL_TIMEOUT: &str = "MCP_BRIDGE_TOOL_TIMEOUT";
/// Also offer the discovery helpers as MCP tools (ours).
pub const DISCOVERY_TOOLS: &str = "MCP_BRIDGE_DISCOVERY_TOOLS";
/// Warm sessions kept ready (ours).
pub const POOL_SIZE: &str = "MCP_BRIDGE_POOL_SIZE";
/// Most sessions alive at once (ours).
pub const MAX_SESSIONS: &str = "MCP_BRIDGE_MAX_SESSIONS";
/// Bearer token the HTTP transport requires of every request (ours; unset: no token, and
/// only loopback addresses may be served).
pub const HTTP_TOKEN: &str = "MCP_BRIDGE_HTTP_TOKEN";
/// Local python.wasm to use instead of the pinned download (read by `python-wasm`).
pub const PYTHON_WASM: &str = "MCP_BRIDGE_PYTHON_WASM";
/// Cache of the interpreter and compiled modules (read by `python-wasm`).
pub const CACHE_DIR: &str = "MCP_BRIDGE_CACHE_DIR";
/// The Python whose pip fetches the interpreter (read by `python-wasm`).
pub const PIP_PYTHON: &str = "MCP_BRIDGE_PIP_PYTHON";

#[cfg(all(test, feature = "backend-wasi"))]
mod tests {
    #[test]
    fn names_read_by_python_wasm_agree() {
        assert_eq!(super::PYTHON_WASM, python_wasm::ENV_PYTHON_WASM);
        assert_eq!(super::CACHE_DIR, python_wasm::ENV_CACHE_DIR);
        assert_eq!(super::PIP_PYTHON, python_wasm::ENV_PIP_PYTHON);
    }
}

#[cfg(all(test, feature = "backend-container"))]
mod container_tests {
    #[test]
    fn names_read_by_sandbox_rootfs_agree() {
        assert_eq!(super::DEBIAN_MIRROR, sandbox_rootfs::ENV_DEBIAN_MIRROR);
    }
}
