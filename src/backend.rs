//! Building the configured backend.

use std::path::PathBuf;
use std::sync::Arc;

use sandbox_core::Sandbox;

use crate::config::{BackendKind, Config};

/// The backend the configuration asks for.
pub fn build(config: &Config) -> Result<Arc<dyn Sandbox>, String> {
    build_kind(config, config.backend)
}

/// The backend `kind`, with the rest of the configuration (for reports that probe them all).
pub fn build_kind(config: &Config, kind: BackendKind) -> Result<Arc<dyn Sandbox>, String> {
    // Only the wasi and container backends read it; a build with neither does not.
    #[cfg(not(any(feature = "backend-wasi", feature = "backend-container")))]
    let _ = config;
    match kind {
        #[cfg(feature = "backend-wasi")]
        BackendKind::Wasi => Ok(Arc::new(sandbox_wasi::WasiSandbox::new(wasi::provisioner(
            config,
        )?))),
        #[cfg(not(feature = "backend-wasi"))]
        BackendKind::Wasi => Err("this build has no wasi backend (feature backend-wasi)".into()),
        #[cfg(feature = "backend-container")]
        BackendKind::Podman | BackendKind::Docker => {
            Ok(Arc::new(container::sandbox(config, kind)?))
        }
        #[cfg(not(feature = "backend-container"))]
        BackendKind::Podman | BackendKind::Docker => Err(format!(
            "this build has no {} backend (feature backend-container)",
            kind.name()
        )),
        #[cfg(feature = "backend-oci")]
        BackendKind::Oci => Ok(Arc::new(oci::sandbox()?)),
        #[cfg(not(feature = "backend-oci"))]
        BackendKind::Oci => Err("this build has no oci backend (feature backend-oci)".into()),
    }
}

/// The bridge's cache directory: `MCP_BRIDGE_CACHE_DIR`, else the user's cache dir.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os(crate::env::CACHE_DIR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("mcp-server-code-execution-mode")))
}

/// The name of the locally built container image, when this build has container backends.
pub fn local_container_image() -> Option<String> {
    #[cfg(feature = "backend-container")]
    return Some(sandbox_container::local_image());
    #[cfg(not(feature = "backend-container"))]
    None
}

/// The container backend, concretely (for `image build`).
#[cfg(feature = "backend-container")]
pub mod container {
    pub use sandbox_container::ContainerSandbox;
    use sandbox_container::{ContainerOptions, EngineKind};
    use sandbox_rootfs::Rootfs;

    use crate::config::{BackendKind, Config};

    /// The Podman or Docker backend as configured.
    pub fn sandbox(config: &Config, kind: BackendKind) -> Result<ContainerSandbox, String> {
        let engine = match kind {
            BackendKind::Docker => EngineKind::Docker,
            _ => EngineKind::Podman,
        };
        let cache = super::cache_dir().ok_or(
            "no cache directory: set MCP_BRIDGE_CACHE_DIR or HOME so the root filesystem can be built",
        )?;
        Ok(ContainerSandbox::new(ContainerOptions {
            engine,
            image: config.image.clone(),
            oci_runtime: config.oci_runtime.clone(),
            rootfs: Rootfs::in_cache(&cache),
        }))
    }
}

/// The direct OCI backend (youki's libcontainer), which re-executes this binary as its shim.
#[cfg(feature = "backend-oci")]
pub mod oci {
    use sandbox_oci::OciOptions;
    pub use sandbox_oci::{OciSandbox, SHIM_SUBCOMMAND, shim};
    use sandbox_rootfs::Rootfs;

    /// The OCI backend as configured: the root filesystem from `MCP_BRIDGE_ROOTFS`, else
    /// the cache dir's.
    pub fn sandbox() -> Result<OciSandbox, String> {
        let shim = std::env::current_exe()
            .map_err(|e| format!("cannot find this binary to run as the oci shim: {e}"))?;
        let rootfs = match std::env::var_os(crate::env::ROOTFS).filter(|v| !v.is_empty()) {
            Some(dir) => Rootfs::at(dir.into()),
            None => Rootfs::in_cache(&super::cache_dir().ok_or(
                "no cache directory: set MCP_BRIDGE_CACHE_DIR or HOME so the root filesystem can be built",
            )?),
        };
        Ok(OciSandbox::new(OciOptions { shim, rootfs }))
    }
}

#[cfg(feature = "backend-wasi")]
mod wasi {
    use python_wasm::{Provisioner, WasmSource};

    use crate::config::Config;

    /// The interpreter provisioner for the WASI backend.
    pub(super) fn provisioner(config: &Config) -> Result<Provisioner, String> {
        let cache_dir = Provisioner::default_cache_dir().ok_or(
            "no cache directory: set MCP_BRIDGE_CACHE_DIR or HOME so the interpreter can be cached",
        )?;
        let source = match &config.python_wasm {
            Some(path) => WasmSource::LocalFile(path.clone()),
            None => WasmSource::Pinned,
        };
        Ok(Provisioner::new(cache_dir, source))
    }
}
