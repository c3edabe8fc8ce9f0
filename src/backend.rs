//! Building the configured backend from the [`Config`]: the one place that turns settings
//! into a backend's options (backend crates read no environment of their own).

use std::sync::Arc;

use sandbox_core::Sandbox;

use crate::config::{BackendKind, Config};

/// Why a backend could not be built (before any probe: a build without its feature, or a
/// missing directory it needs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// This binary was built without the backend.
    #[error("this build has no {backend} backend (feature {feature})")]
    NotBuilt {
        /// The backend asked for.
        backend: BackendKind,
        /// The cargo feature that brings it.
        feature: &'static str,
    },
    /// No cache directory to keep the interpreter or the root filesystem in.
    #[error(
        "no cache directory for the {backend} backend: set MCP_BRIDGE_CACHE_DIR or HOME so \
         the {what} can be cached"
    )]
    NoCacheDir {
        /// The backend that needs it.
        backend: BackendKind,
        /// What would be kept there.
        what: &'static str,
    },
    /// The oci backend re-executes this binary as its shim, and could not find it.
    #[error("cannot find this binary to run as the oci shim")]
    NoShim(#[source] std::io::Error),
}

/// The backend the configuration asks for.
pub fn build(config: &Config) -> Result<Arc<dyn Sandbox>, BackendError> {
    build_kind(config, config.backend)
}

/// The backend `kind`, with the rest of the configuration (for reports that probe them all).
pub fn build_kind(config: &Config, kind: BackendKind) -> Result<Arc<dyn Sandbox>, BackendError> {
    // Only the backends read it; a build with none does not.
    #[cfg(not(any(
        feature = "backend-wasi",
        feature = "backend-container",
        feature = "backend-oci"
    )))]
    let _ = config;
    match kind {
        #[cfg(feature = "backend-wasi")]
        BackendKind::Wasi => Ok(Arc::new(wasi::sandbox(config)?)),
        #[cfg(not(feature = "backend-wasi"))]
        BackendKind::Wasi => Err(BackendError::NotBuilt {
            backend: kind,
            feature: "backend-wasi",
        }),
        #[cfg(feature = "backend-container")]
        BackendKind::Podman | BackendKind::Docker => {
            Ok(Arc::new(container::sandbox(config, kind)?))
        }
        #[cfg(not(feature = "backend-container"))]
        BackendKind::Podman | BackendKind::Docker => Err(BackendError::NotBuilt {
            backend: kind,
            feature: "backend-container",
        }),
        #[cfg(feature = "backend-oci")]
        BackendKind::Oci => Ok(Arc::new(oci::sandbox(config)?)),
        #[cfg(not(feature = "backend-oci"))]
        BackendKind::Oci => Err(BackendError::NotBuilt {
            backend: kind,
            feature: "backend-oci",
        }),
    }
}

/// The name of the locally built container image, when this build has container backends.
pub fn local_container_image() -> Option<String> {
    #[cfg(feature = "backend-container")]
    return Some(sandbox_container::local_image());
    #[cfg(not(feature = "backend-container"))]
    None
}

/// The root filesystem the container and oci backends build or use.
#[cfg(any(feature = "backend-container", feature = "backend-oci"))]
fn rootfs(config: &Config, backend: BackendKind) -> Result<sandbox_rootfs::Rootfs, BackendError> {
    use sandbox_rootfs::Rootfs;
    let rootfs = match (&config.rootfs, backend) {
        (Some(dir), BackendKind::Oci) => Rootfs::at(dir.clone()),
        _ => Rootfs::in_cache(
            config
                .cache_dir
                .as_deref()
                .ok_or(BackendError::NoCacheDir {
                    backend,
                    what: "root filesystem",
                })?,
        ),
    };
    Ok(rootfs
        .with_mirror(config.debian_mirror.clone())
        .with_pip_python(&config.pip_python))
}

/// The container backend, concretely (for `image build`).
#[cfg(feature = "backend-container")]
pub mod container {
    pub use sandbox_container::ContainerSandbox;
    use sandbox_container::{ContainerOptions, EngineKind};

    use super::BackendError;
    use crate::config::{BackendKind, Config};

    /// The Podman or Docker backend as configured.
    pub fn sandbox(config: &Config, kind: BackendKind) -> Result<ContainerSandbox, BackendError> {
        let (engine, api_socket) = match kind {
            BackendKind::Docker => (EngineKind::Docker, &config.docker_socket),
            _ => (EngineKind::Podman, &config.podman_socket),
        };
        Ok(ContainerSandbox::new(ContainerOptions {
            engine,
            image: config.image.clone(),
            oci_runtime: config.oci_runtime.clone(),
            rootfs: super::rootfs(config, kind)?,
            api_socket: api_socket.clone(),
            host: config.host.clone(),
        }))
    }
}

/// The direct OCI backend (youki's libcontainer), which re-executes this binary as its shim.
#[cfg(feature = "backend-oci")]
pub mod oci {
    use sandbox_oci::OciOptions;
    pub use sandbox_oci::{OciSandbox, SHIM_SUBCOMMAND, shim};

    use super::BackendError;
    use crate::config::{BackendKind, Config};

    /// The OCI backend as configured: the root filesystem from `MCP_BRIDGE_ROOTFS`, else
    /// the cache dir's.
    pub fn sandbox(config: &Config) -> Result<OciSandbox, BackendError> {
        let shim = std::env::current_exe().map_err(BackendError::NoShim)?;
        let rootfs = super::rootfs(config, BackendKind::Oci)?;
        Ok(OciSandbox::new(OciOptions {
            shim,
            rootfs,
            host: config.host.clone(),
        }))
    }
}

#[cfg(feature = "backend-wasi")]
mod wasi {
    use python_wasm::{Flavour, Provisioner, WasmSource};
    use sandbox_wasi::{EngineTuning, WasiSandbox};

    use super::BackendError;
    use crate::config::{BackendKind, Config, WasiPython};

    /// The interpreter flavour a setting names.
    pub(super) fn flavour(setting: WasiPython) -> Flavour {
        match setting {
            WasiPython::Slim => Flavour::Slim,
            WasiPython::Full => Flavour::Full,
        }
    }

    /// The WASI backend as configured. The full interpreter gets the slim one as its
    /// stand-in: sessions run on it while the full one is prepared on this machine.
    pub(super) fn sandbox(config: &Config) -> Result<WasiSandbox, BackendError> {
        let cache_dir = config.cache_dir.clone().ok_or(BackendError::NoCacheDir {
            backend: BackendKind::Wasi,
            what: "interpreter",
        })?;
        let provisioner = |source| {
            Provisioner::new(cache_dir.clone(), source).with_pip_python(&config.pip_python)
        };
        let source =
            WasmSource::local_or_pinned(config.python_wasm.clone(), flavour(config.wasi_python));
        let full = source == WasmSource::Pinned(Flavour::Full);
        // The settings table accepted only text that parses.
        let tuning = config.wasi_engine.parse().unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring the WASI engine settings");
            EngineTuning::default()
        });
        let sandbox = WasiSandbox::new(provisioner(source)).with_engine(tuning);
        Ok(if full {
            sandbox.with_stand_in(provisioner(WasmSource::Pinned(Flavour::Slim)))
        } else {
            sandbox
        })
    }
}

#[cfg(all(test, feature = "backend-wasi"))]
mod tests {
    use crate::config::WasiPython;

    #[test]
    fn the_interpreter_setting_names_every_pinned_flavour() {
        let names: Vec<&str> = python_wasm::Flavour::ALL
            .map(python_wasm::Flavour::name)
            .to_vec();
        assert_eq!(names, WasiPython::NAMES);
        for setting in WasiPython::ALL {
            assert_eq!(super::wasi::flavour(setting).name(), setting.name());
        }
    }
}
