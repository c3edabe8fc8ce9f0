//! Sessions that start with the scientific stack already imported: a pre-initialised module.
//!
//! Importing numpy, pandas and matplotlib costs the full interpreter seconds per session.
//! Instead, once per machine and per [`Layout`], the interpreter is instantiated, started
//! (`_initialize`), made to import the stack in one `turn`, and its linear memory and
//! globals are written into a new module with wasmtime's wizer: the snapshot. A session then
//! instantiates the snapshot (copy-on-write from the mapped `.cwasm`, so sessions share the
//! stack's pages until they write them) and runs the bootstrap in a `turn`.
//!
//! # What a snapshot freezes, and how each piece is handled
//!
//! Everything in linear memory is the same in every session started from it:
//! - wasi-libc's table of preopened directories (fd number to guest path) and the
//!   environment: a snapshot is made for one [`Layout`] (guest paths in fd order, and the
//!   environment) and only serves sessions with exactly that layout; the host directories
//!   behind the paths differ per session (each has its own scratch `/tmp` and `/workspace`).
//!   A session's own grants (its mounts, its packages directory) are empty directories
//!   while the snapshot is made, so nothing from the configuration it was made for is in
//!   it; the interpreter's own read-only directories (its library, matplotlib's data) are
//!   the real ones, the same for every session.
//!   A layout with no snapshot yet starts the plain way while its snapshot is made.
//! - `sys.argv`, `os.environ` and `sys.path`: made from the same layout, so the same.
//! - The seeds of `random` and `numpy.random`: the runtime re-seeds both from the host's
//!   entropy when a session's `hello` arrives, before any user code runs.
//! - matplotlib's config dir and backend: the warm-up takes `/tmp/matplotlib` and Agg unless
//!   the layout's environment names others; a session's `/tmp` is its own and empty, so the
//!   runtime makes the dir at `hello` and picks its figure backend there (`figures.py`),
//!   as its import hooks do in a session that imports matplotlib itself.
//! - The hash seed of `str` and `bytes` (`PYTHONHASHSEED`): fixed per snapshot, so set
//!   iteration order is the same in every session of a machine. It is a per-machine secret
//!   (a new one whenever the snapshot is made again), never shared between machines.
//! - Python objects made by the imports: `gc.freeze()` moves them out of the collector's
//!   reach, so collections in a session do not touch (and un-share) their pages.
//!
//! What is not in memory is not frozen: file descriptors (the warm-up checks that nothing
//! but the preopens is open when the snapshot is taken), the clocks and the host's entropy.
//! No user code ever runs in the interpreter the snapshot is taken from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use python_wasm::{DerivedModule, Provisioner, PythonWasm};
use sha2::{Digest, Sha256};
use tracing::info;
use wasmtime::{Engine, Instance, Module, Store};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use crate::entry;
use crate::error::SnapshotError;
use crate::scratch::Scratch;
use crate::{GuestState, new_store};

/// What the interpreter runs before the snapshot is taken: the stack's imports, then checks
/// that nothing outside linear memory (an open file) would be lost. `{preopens}` is the
/// number of preopened directories.
/// A config dir or backend the layout's environment names is kept: the session's runtime
/// (`figures.py`) takes matplotlib over at `hello` the way its import hooks would have.
const WARM_UP: &str = r#"import os, sys
own_config_dir = "MPLCONFIGDIR" not in os.environ
if own_config_dir:
    os.environ["MPLCONFIGDIR"] = "/tmp/matplotlib"
    os.makedirs("/tmp/matplotlib", exist_ok=True)
import numpy, pandas, matplotlib
if "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")
import matplotlib.pyplot, matplotlib.figure, matplotlib.backends.backend_agg, random
matplotlib.get_configdir()
if own_config_dir:
    del os.environ["MPLCONFIGDIR"]
open_fds = []
for fd in range(3 + {preopens}, 256):
    try:
        os.fstat(fd)
        open_fds.append(fd)
    except OSError:
        pass
if open_fds:
    raise SystemExit(f"files still open when the snapshot would be taken: fds {open_fds}")
import gc
gc.collect()
gc.freeze()
sys.stdout.flush()
sys.stderr.flush()
"#;
/// Most memory the warm-up may use.
const WARM_UP_MEMORY: u64 = 2 << 30;
/// Most of the warm-up's stderr kept for an error.
const WARM_UP_STDERR: usize = 64 * 1024;
/// The wizer release that writes snapshots (pinned with wasmtime); part of every key.
const WIZER_VERSION: &str = "48.0.8";

/// What a snapshot is valid for: the guest paths of the preopened directories in fd order,
/// and the environment. Two sessions with the same layout can start from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Layout {
    preopens: Vec<String>,
    env: Vec<(String, String)>,
}

impl Layout {
    /// The layout of a session whose preopens have these guest paths, in fd order.
    pub(crate) fn new<'a>(
        preopens: impl IntoIterator<Item = &'a str>,
        env: &[(String, String)],
    ) -> Self {
        Self {
            preopens: preopens.into_iter().map(str::to_owned).collect(),
            env: env.to_vec(),
        }
    }

    /// A digest of the layout and of everything else a snapshot depends on besides the
    /// interpreter and the engine (which the module cache's name carries): the warm-up
    /// program and the snapshotter's version. 16 hex digits.
    pub(crate) fn key(&self) -> String {
        let mut hash = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(WIZER_VERSION.as_bytes());
        field(WARM_UP.as_bytes());
        for path in &self.preopens {
            field(b"preopen");
            field(path.as_bytes());
        }
        for (key, value) in &self.env {
            field(b"env");
            field(key.as_bytes());
            field(value.as_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// The cache entry of this layout's snapshot of `wasm`.
    pub(crate) fn module(
        &self,
        provisioner: &Provisioner,
        engine: &Engine,
        wasm: &PythonWasm,
    ) -> DerivedModule {
        provisioner.derived_module(engine, wasm, &format!("snapshot-{}", self.key()))
    }
}

/// A read-only directory for the warm-up, at a guest path of the layout.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The host directory; `None` for a session's own grant (a mount, its packages), which
    /// the warm-up sees as an empty directory so no configuration's files reach a snapshot
    /// that sessions of other configurations with the same guest paths start from.
    pub(crate) host: Option<PathBuf>,
    pub(crate) guest: String,
}

/// Make the snapshot of `wasm` for `layout` and return its WebAssembly. `grants` must be
/// the layout's preopens with host directories (the scratch ones are made here). Blocks
/// for about as long as two compiles of the interpreter: run it off the async runtime.
pub(crate) fn build(
    engine: &Engine,
    wasm: &PythonWasm,
    layout: &Layout,
    read_only: &[Grant],
) -> Result<Vec<u8>, SnapshotError> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(&wasm.path).map_err(SnapshotError::ReadInterpreter)?;
    let wizer = Wizer::new();
    let (module_context, instrumented) = wizer
        .instrument(&bytes)
        .map_err(|e| SnapshotError::Instrument(e.into()))?;
    let module =
        Module::new(engine, &instrumented).map_err(|e| SnapshotError::Compile(e.into()))?;
    drop(instrumented);
    info!(elapsed = ?started.elapsed(), "compiled the interpreter to take its snapshot");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SnapshotError::Runtime)?;
    runtime.block_on(async {
        let scratch = Scratch::create().map_err(SnapshotError::Scratch)?;
        let empty = tempfile::Builder::new()
            .prefix("mcp-wasi-snapshot-empty-")
            .tempdir()
            .map_err(SnapshotError::Scratch)?;
        let stdout = MemoryOutputPipe::new(WARM_UP_STDERR);
        let stderr = MemoryOutputPipe::new(WARM_UP_STDERR);
        let mut context = WasiCtxBuilder::new();
        context
            .stdin(MemoryInputPipe::new(Vec::new()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&entry::SNAPSHOT_ARGS)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // The imports stat and open thousands of files: on this thread, not the pool.
            .allow_blocking_current_thread(true);
        for (key, value) in &layout.env {
            context.env(key, value);
        }
        let grants: Vec<(&Path, &str, FsPerms)> = scratch
            .preopens()
            .into_iter()
            .map(|(host, guest)| (host, guest, FsPerms::ReadWrite))
            .chain(read_only.iter().map(|grant| {
                (
                    grant.host.as_deref().unwrap_or(empty.path()),
                    grant.guest.as_str(),
                    FsPerms::ReadOnly,
                )
            }))
            .collect();
        if !grants
            .iter()
            .map(|grant| grant.1)
            .eq(layout.preopens.iter().map(String::as_str))
        {
            return Err(SnapshotError::LayoutMismatch);
        }
        for (host, guest, perms) in &grants {
            context
                .preopened_dir(host, guest, *perms)
                .map_err(|e| SnapshotError::Preopen(e.into()))?;
        }
        let killed = Arc::new(AtomicBool::new(false));
        let (mut store, _) = new_store(engine, context.build_p1(), WARM_UP_MEMORY, &killed);
        let linker =
            crate::interpreter::linker(engine).map_err(|e| SnapshotError::Link(e.into()))?;
        let instance = linker
            .instantiate_async(&mut store, &module)
            .await
            .map_err(|e| SnapshotError::Link(e.into()))?;
        let warm_up = WARM_UP.replace("{preopens}", &grants.len().to_string());
        let status = entry::initialize_and_turn(&instance, &mut store, &warm_up)
            .await
            .map_err(|e| SnapshotError::Trapped(e.into()))?;
        if status != 0 {
            let stderr = String::from_utf8_lossy(&stderr.contents())
                .trim()
                .to_owned();
            return Err(SnapshotError::WarmUpFailed { status, stderr });
        }
        info!(elapsed = ?started.elapsed(), "imported the stack; taking the snapshot");
        let snapshot = wizer
            .snapshot(
                &module_context,
                &mut Taken {
                    store: &mut store,
                    instance,
                },
            )
            .await
            .map_err(|e| SnapshotError::Rewrite(e.into()))?;
        drop(scratch);
        Ok(snapshot)
    })
}

/// The instance the snapshot is read from.
struct Taken<'a> {
    store: &'a mut Store<GuestState>,
    instance: Instance,
}

impl InstanceState for Taken<'_> {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        let global = self
            .instance
            .get_global(&mut *self.store, name)
            .expect("wizer asks only for the globals it exported");
        match global.get(&mut *self.store) {
            wasmtime::Val::I32(x) => SnapshotVal::I32(x),
            wasmtime::Val::I64(x) => SnapshotVal::I64(x),
            wasmtime::Val::F32(x) => SnapshotVal::F32(x),
            wasmtime::Val::F64(x) => SnapshotVal::F64(x),
            wasmtime::Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            _ => unreachable!("wizer refuses modules with mutable reference globals"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self
            .instance
            .get_memory(&mut *self.store, name)
            .expect("wizer asks only for the memories it exported");
        contents(memory.data(&*self.store));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_key_follows_paths_their_order_and_the_environment() {
        let base = Layout::new(["/tmp", "/workspace", "/usr/local/lib"], &[]);
        assert_eq!(
            base.key(),
            Layout::new(["/tmp", "/workspace", "/usr/local/lib"], &[]).key()
        );
        assert_eq!(base.key().len(), 16);
        let others = [
            Layout::new(["/workspace", "/tmp", "/usr/local/lib"], &[]),
            Layout::new(["/tmp", "/workspace", "/usr/local/lib", "/data/csv"], &[]),
            Layout::new(["/tmp", "/workspace"], &[]),
            Layout::new(
                ["/tmp", "/workspace", "/usr/local/lib"],
                &env(&[("LANG", "C")]),
            ),
            Layout::new(
                ["/tmp", "/workspace", "/usr/local/lib"],
                &env(&[("LANG", "C.UTF-8")]),
            ),
            // A boundary moved between two fields is another layout.
            Layout::new(["/tmp", "/workspace/usr/local/lib"], &[]),
        ];
        let mut keys: Vec<String> = others.iter().map(Layout::key).collect();
        keys.push(base.key());
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count, "every layout has its own key");
    }
}
