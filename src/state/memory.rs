//! Memory: one JSON value per key, in `memory/<key>.json`, as compact JSON.
//!
//! Keys are checked ([`validate_key`]) before they touch a path, and sizes are bounded
//! before anything is written: a value at [`MAX_VALUE_BYTES`], all values at
//! [`MAX_MEMORY_BYTES`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::{StateError, clip, io_error};
use super::files::{WriteLock, ensure_dir, list_files, write_atomic};
use super::names::validate_key;

/// Largest memory value, in bytes of compact JSON.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest total of all memory values, in bytes.
pub const MAX_MEMORY_BYTES: u64 = 64 << 20;
/// Where the memory store is, as the sandbox is told: relative to the state directory,
/// without the host path.
pub const GUEST_MEMORY_PATH: &str = "$MCP_BRIDGE_STATE_DIR/memory";

/// The folder of memory values, in the state directory.
const DIR: &str = "memory";

/// What `memory` `info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryInfo {
    /// How many keys are saved.
    pub keys: usize,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The folder they live in.
    pub path: PathBuf,
}

/// The memory of one state directory.
#[derive(Debug)]
pub(super) struct Memory {
    /// `memory/`.
    dir: PathBuf,
    /// Serialises writers in this process (the total is checked, then written).
    write_lock: WriteLock,
}

impl Memory {
    /// The memory of `state_dir`, creating `memory/` (mode 0700) when missing.
    pub(super) fn open(state_dir: &Path) -> Result<Self, StateError> {
        let dir = state_dir.join(DIR);
        ensure_dir(&dir)?;
        Ok(Self {
            dir,
            write_lock: WriteLock::default(),
        })
    }

    /// The folder the values are saved in.
    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self, key: &str) -> Result<PathBuf, StateError> {
        validate_key(key)?;
        Ok(self.dir.join(format!("{key}.json")))
    }

    /// Save `value` under `key`, replacing what was there.
    pub(super) fn save(&self, key: &str, value: &Value) -> Result<(), StateError> {
        let path = self.key_path(key)?;
        let bytes = serde_json::to_vec(value).expect("a JSON value always serialises");
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(StateError::ValueTooLarge {
                key: key.to_string(),
                bytes: bytes.len(),
                limit: MAX_VALUE_BYTES,
            });
        }
        let _guard = self.write_lock.hold();
        let others: u64 = list_files(&self.dir, ".json", |s| s != key && validate_key(s).is_ok())?
            .iter()
            .map(|(_, size)| size)
            .sum();
        let total = others + bytes.len() as u64;
        if total > MAX_MEMORY_BYTES {
            return Err(StateError::MemoryFull {
                key: key.to_string(),
                total,
                limit: MAX_MEMORY_BYTES,
            });
        }
        write_atomic(&path, &bytes)
    }

    /// The value saved under `key`.
    pub(super) fn load(&self, key: &str) -> Result<Value, StateError> {
        let path = self.key_path(key)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            key: key.to_string(),
            source,
        })
    }

    /// Delete `key`; whether it existed.
    pub(super) fn delete(&self, key: &str) -> Result<bool, StateError> {
        let path = self.key_path(key)?;
        let _guard = self.write_lock.hold();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("delete", &path)(e)),
        }
    }

    /// Whether a value is saved under `key`.
    pub(super) fn exists(&self, key: &str) -> Result<bool, StateError> {
        Ok(self.key_path(key)?.is_file())
    }

    /// Every saved key, sorted.
    pub(super) fn list(&self) -> Result<Vec<String>, StateError> {
        Ok(list_files(&self.dir, ".json", |s| validate_key(s).is_ok())?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    /// How many keys, how many bytes, and where.
    pub(super) fn info(&self) -> Result<MemoryInfo, StateError> {
        let files = list_files(&self.dir, ".json", |s| validate_key(s).is_ok())?;
        Ok(MemoryInfo {
            keys: files.len(),
            bytes: files.iter().map(|(_, size)| size).sum(),
            path: self.dir.clone(),
        })
    }

    /// The `memory` rpc: `{op, key?, value?}`, answered as `frames.md` says: `save` → null,
    /// `load` → the value, `delete` → bool, `list` → keys, `exists` → bool, `info` →
    /// `{keys, bytes, path}` (`keys` is a count; `path` is [`GUEST_MEMORY_PATH`], never the
    /// host path).
    pub(super) fn rpc(&self, params: &Value) -> Result<Value, StateError> {
        let op = params.get("op").and_then(Value::as_str).ok_or_else(|| {
            StateError::InvalidRequest(
                "memory needs `op`: save, load, delete, list, exists or info".into(),
            )
        })?;
        let key = || {
            params.get("key").and_then(Value::as_str).ok_or_else(|| {
                StateError::InvalidRequest(format!("memory {op} needs a string `key`"))
            })
        };
        match op {
            "save" => {
                let value = params.get("value").ok_or_else(|| {
                    StateError::InvalidRequest("memory save needs a `value`".into())
                })?;
                self.save(key()?, value)?;
                Ok(Value::Null)
            }
            "load" => self.load(key()?),
            "delete" => Ok(Value::Bool(self.delete(key()?)?)),
            "exists" => Ok(Value::Bool(self.exists(key()?)?)),
            "list" => Ok(json!(self.list()?)),
            "info" => {
                let info = self.info()?;
                Ok(json!({
                    "keys": info.keys,
                    "bytes": info.bytes,
                    // The sandbox learns where the store is, not the host's paths (which
                    // name the host's user and layout).
                    "path": GUEST_MEMORY_PATH,
                }))
            }
            other => Err(StateError::InvalidRequest(format!(
                "unknown memory op {:?}; expected save, load, delete, list, exists or info",
                clip(other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
