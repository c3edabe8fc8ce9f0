//! Building the configured backend.

use std::sync::Arc;

use sandbox_core::Sandbox;

use crate::config::{BackendKind, Config};

/// The backend the configuration asks for.
pub fn build(config: &Config) -> Result<Arc<dyn Sandbox>, String> {
    match config.backend {
        #[cfg(feature = "backend-wasi")]
        BackendKind::Wasi => Ok(Arc::new(sandbox_wasi::WasiSandbox::new(wasi::provisioner(
            config,
        )?))),
        #[cfg(not(feature = "backend-wasi"))]
        BackendKind::Wasi => Err("this build has no wasi backend (feature backend-wasi)".into()),
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
