//! The guest runtime, precompiled to bytecode once per interpreter and cached on disk.
//!
//! Compiling the runtime's source costs each new session about 24 ms inside the WASI
//! interpreter. Instead, a fresh interpreter that runs nothing but
//! [`COMPILE_RUNTIME_SOURCE`] compiles it once; sessions then receive `marshal` bytecode,
//! which loads in under a millisecond. The bytecode is trusted because no user code ever ran
//! in the interpreter that made it; the file is written atomically into the private cache
//! directory, named by the interpreter's and the runtime's checksums.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sandbox_core::atomic_file::{Mode, write_atomic};
use sandbox_core::guest::{COMPILE_RUNTIME_SOURCE, RUNTIME_SOURCE};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::CompileError;
use python_wasm::PythonWasm;
use wasmtime::InstancePre;

use crate::entry::Entry;
use crate::{GuestState, new_store};

/// Largest bytecode we accept from the compiling interpreter.
const MAX_BYTECODE: usize = 8 * 1024 * 1024;

/// The runtime's bytecode for this interpreter, from the cache or compiled now. `None` (and
/// a warning) when compiling fails: sessions then fall back to the source.
pub(crate) async fn runtime(interpreter: Compiler<'_>, cache_dir: &Path) -> Option<Arc<[u8]>> {
    let path = cache_path(cache_dir, &interpreter.wasm.sha256);
    prune_stale(&path, &interpreter.wasm.sha256);
    if let Ok(bytes) = std::fs::read(&path)
        && !bytes.is_empty()
    {
        return Some(bytes.into());
    }
    let started = std::time::Instant::now();
    match compile(interpreter).await {
        Ok(bytes) => {
            if let Err(e) = store(&path, &bytes) {
                warn!(path = %path.display(), "could not cache the compiled runtime: {e}");
            }

            info!(elapsed = ?started.elapsed(), bytes = bytes.len(), "compiled the guest runtime");
            Some(bytes.into())
        }
        Err(e) => {
            warn!(
                "could not precompile the guest runtime, sessions will compile it: {}",
                sandbox_core::error_chain(&e)
            );
            None
        }
    }
}

fn cache_path(cache_dir: &Path, wasm_sha256: &str) -> PathBuf {
    let source = hex16(&Sha256::digest(RUNTIME_SOURCE.as_bytes()));
    let wasm = wasm_sha256.get(..16).unwrap_or(wasm_sha256);
    cache_dir
        .join("modules")
        .join(format!("runtime-{wasm}-{source}.marshal"))
}

fn hex16(digest: &[u8]) -> String {
    hex::encode(&digest[..8])
}

/// The interpreter that compiles the runtime: pre-linked, how to start it, what it is.
#[derive(Clone, Copy)]
pub(crate) struct Compiler<'a> {
    pub(crate) pre: &'a InstancePre<GuestState>,
    pub(crate) entry: Entry,
    pub(crate) wasm: &'a PythonWasm,
}

async fn compile(loaded: Compiler<'_>) -> Result<Vec<u8>, CompileError> {
    let stdout = MemoryOutputPipe::new(MAX_BYTECODE);
    let stderr = MemoryOutputPipe::new(64 * 1024);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(MemoryInputPipe::new(RUNTIME_SOURCE.as_bytes().to_vec()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .args(&loaded.entry.args(COMPILE_RUNTIME_SOURCE))
        .allow_blocking_current_thread(true);
    for dir in &loaded.wasm.read_only_dirs {
        wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
            .map_err(|e| CompileError::Instantiate(e.into()))?;
    }
    let killed = Arc::new(AtomicBool::new(false));
    let engine = loaded.pre.module().engine();
    let (mut store, _) = new_store(engine, wasi.build_p1(), 256 << 20, &killed);
    let instance = loaded
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| CompileError::Instantiate(e.into()))?;
    let status = loaded
        .entry
        .run(&instance, &mut store)
        .await
        .map_err(|e| CompileError::Trapped(e.into()))?;
    if status != 0 {
        let stderr = String::from_utf8_lossy(&stderr.contents())
            .trim()
            .to_string();
        return Err(CompileError::Failed { stderr });
    }
    let bytes = stdout.contents().to_vec();
    if bytes.is_empty() {
        return Err(CompileError::Empty);
    }
    Ok(bytes)
}

/// Remove bytecode of earlier runtime versions for the same interpreter (each upgrade would
/// otherwise leave one behind).
fn prune_stale(current: &Path, wasm_sha256: &str) {
    let Some(dir) = current.parent() else { return };
    let wasm = wasm_sha256.get(..16).unwrap_or(wasm_sha256);
    let prefix = format!("runtime-{wasm}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix)
            && name.ends_with(".marshal")
            && entry.path() != current
            && std::fs::remove_file(entry.path()).is_ok()
        {
            info!(file = name, "removed the bytecode of an earlier runtime");
        }
    }
}

fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir)?;
    write_atomic(path, bytes, Mode::Masked(0o600))
}
