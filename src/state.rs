//! Host state shared across sessions: saved tools and memory, under `MCP_BRIDGE_STATE_DIR`.
//!
//! # Layout (default `~/MCPs`, created with mode 0700 when missing)
//!
//! ```text
//! $STATE_DIR/
//!   *.json, *.toml          server configs (read by discovery, never written here)
//!   saved_tools/<name>.py   one saved tool per file: the source of truth
//!   user_tools.py           all saved tools concatenated, regenerated after each change
//!   memory/<key>.json       one memory value per file, as compact JSON
//! ```
//!
//! Saved tools are kept one per file so that saving a tool replaces exactly that tool and
//! nothing else, with no markers to parse. Sessions receive the concatenation of
//! `saved_tools/*.py` in name order ([`State::saved_tools_source`]); `user_tools.py` holds
//! the same text for people to read (the reference's file name), and is overwritten on each
//! save: edit `saved_tools/<name>.py` instead.
//!
//! # Trust
//!
//! Every name, key, source and value here arrives from sandboxed code through `rpc` frames,
//! so it is hostile. Names and keys are checked against a strict allow-list before they touch
//! a path (no separators, no leading dot, bounded length), so no request can reach a file
//! outside `saved_tools/` or `memory/`. Sizes are bounded before anything is written: a
//! tool's source at 64 KiB and all tools at 4 MiB; a memory value at 1 MiB of JSON and all
//! memory at 64 MiB.
//!
//! The host checks only the shape of a saved tool (`def name(` or `async def name(` after
//! dedent); that the source parses is the guest's check. Saved source only ever runs inside
//! sandboxes, but it does run in every later session: a session that saves a tool can affect
//! later sessions' globals, which is what `save_tool` is for. The same holds for memory,
//! shared on purpose.
//!
//! # Guarantees
//!
//! Every write goes to a fresh temporary file in the same folder (mode 0600, named with a
//! leading dot, so it is never listed as a key or tool), is synced, then renamed over the
//! target (`sandbox_core::atomic_file`): readers see the old value or the new one, never a
//! mix, and a crash leaves at worst a stray temporary file. Writers of saved tools in one
//! process are serialised, and so are writers of memory; writers in separate processes race
//! only on which complete value wins (and on the size totals, which may then be overshot by
//! one value). Keys and names are case-sensitive; on a case-insensitive file system two keys
//! differing only in case share a file.
//!
//! All calls block on file I/O: call them from `tokio::task::spawn_blocking`.
//!
//! # Files
//!
//! [`State`] opens the folder and hands each call to its store: `saved_tools` (tools and
//! `user_tools.py`) or `memory`. Below them, the leaves: `names` (keys and tool names),
//! `tool_source` (checking and normalising a tool's source), `files` (private folders,
//! atomic writes, listings) and `error` ([`StateError`]).

mod error;
mod files;
mod memory;
mod names;
mod saved_tools;
mod tool_source;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use self::error::StateError;
use self::files::ensure_dir;
use self::memory::Memory;
pub use self::memory::{GUEST_MEMORY_PATH, MAX_MEMORY_BYTES, MAX_VALUE_BYTES, MemoryInfo};
pub use self::names::{MAX_KEY_CHARS, MAX_TOOL_NAME_CHARS, validate_key, validate_tool_name};
pub use self::saved_tools::MAX_TOOLS_TOTAL_BYTES;
use self::saved_tools::SavedTools;
pub use self::tool_source::{MAX_TOOL_BYTES, normalize_tool_source};

/// The state directory: saved tools and memory.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    tools: SavedTools,
    memory: Memory,
}

impl State {
    /// Open the state directory, creating it and its `saved_tools/` and `memory/` folders
    /// (mode 0700) when missing. An existing directory's mode is left as it is.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        ensure_dir(&dir)?;
        let tools = SavedTools::open(&dir)?;
        let memory = Memory::open(&dir)?;
        Ok(Self { dir, tools, memory })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ---- saved tools ----

    /// Save a tool: `source` must be one function `name` (see [`normalize_tool_source`]).
    /// Replaces a tool of the same name; regenerates `user_tools.py`.
    pub fn save_tool(&self, name: &str, source: &str) -> Result<(), StateError> {
        self.tools.save(name, source)
    }

    /// Delete a saved tool; whether it existed.
    pub fn delete_tool(&self, name: &str) -> Result<bool, StateError> {
        self.tools.delete(name)
    }

    /// Names of the saved tools, sorted.
    pub fn tool_names(&self) -> Result<Vec<String>, StateError> {
        self.tools.names()
    }

    /// The text of every saved tool in name order, with a version that changes whenever the
    /// text does; `None` when there are none. Files that cannot be read, or are larger than
    /// a tool may be, are left out with a warning in the log.
    pub fn saved_tools_source(&self) -> Option<(u64, String)> {
        self.tools.source()
    }

    /// The `save_tool` rpc: `{name, source}` → `null`.
    pub fn save_tool_rpc(&self, params: &Value) -> Result<Value, StateError> {
        self.tools.rpc(params)
    }

    // ---- memory ----

    /// Save `value` under `key`, replacing what was there.
    pub fn memory_save(&self, key: &str, value: &Value) -> Result<(), StateError> {
        self.memory.save(key, value)
    }

    /// The value saved under `key`.
    pub fn memory_load(&self, key: &str) -> Result<Value, StateError> {
        self.memory.load(key)
    }

    /// Delete `key`; whether it existed.
    pub fn memory_delete(&self, key: &str) -> Result<bool, StateError> {
        self.memory.delete(key)
    }

    /// Whether a value is saved under `key`.
    pub fn memory_exists(&self, key: &str) -> Result<bool, StateError> {
        self.memory.exists(key)
    }

    /// Every saved key, sorted.
    pub fn memory_list(&self) -> Result<Vec<String>, StateError> {
        self.memory.list()
    }

    /// How many keys, how many bytes, and where.
    pub fn memory_info(&self) -> Result<MemoryInfo, StateError> {
        self.memory.info()
    }

    /// The `memory` rpc: `{op, key?, value?}`, answered as `frames.md` says: `save` → null,
    /// `load` → the value, `delete` → bool, `list` → keys, `exists` → bool, `info` →
    /// `{keys, bytes, path}` (`keys` is a count; `path` is [`GUEST_MEMORY_PATH`], never the
    /// host path).
    pub fn memory_rpc(&self, params: &Value) -> Result<Value, StateError> {
        self.memory.rpc(params)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;

    use super::files::tree;
    use super::*;

    fn open_state() -> (tempfile::TempDir, State) {
        let root = tempfile::tempdir().unwrap();
        let state = State::open(root.path().join("MCPs")).unwrap();
        (root, state)
    }

    #[test]
    fn open_creates_private_folders() {
        let (root, state) = open_state();
        assert_eq!(state.dir(), root.path().join("MCPs"));
        for dir in ["MCPs", "MCPs/saved_tools", "MCPs/memory"] {
            let mode = fs::metadata(root.path().join(dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{dir}");
        }
        // Opening again is fine.
        State::open(root.path().join("MCPs")).unwrap();
    }

    #[test]
    fn writes_leave_no_temporary_files() {
        let (root, state) = open_state();
        for i in 0..20 {
            state.memory_save("same", &json!(i)).unwrap();
        }
        state.save_tool("f", "def f():\n    return 1\n").unwrap();
        state.save_tool("f", "def f():\n    return 2\n").unwrap();
        assert_eq!(
            tree(root.path()),
            [
                "MCPs/memory/same.json",
                "MCPs/saved_tools/f.py",
                "MCPs/user_tools.py"
            ]
        );
    }

    #[test]
    fn stray_files_are_ignored() {
        let (_root, state) = open_state();
        fs::write(state.memory.dir().join(".k.json.1.2.tmp"), b"1").unwrap();
        fs::write(state.memory.dir().join("notes.txt"), b"1").unwrap();
        fs::write(state.tools.dir().join("bad name.py"), b"def x(): pass").unwrap();
        fs::write(state.tools.dir().join(".f.py.1.tmp"), b"def f(): pass").unwrap();
        assert!(state.memory_list().unwrap().is_empty());
        assert!(state.tool_names().unwrap().is_empty());
        assert_eq!(state.saved_tools_source(), None);
    }
}
