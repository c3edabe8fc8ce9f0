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
//! target: readers see the old value or the new one, never a mix, and a crash leaves at
//! worst a stray temporary file. Writers in one process are serialised; writers in separate
//! processes race only on which complete value wins (and on the size totals, which may then
//! be overshot by one value). Keys and names are case-sensitive; on a case-insensitive file
//! system two keys differing only in case share a file.
//!
//! All calls block on file I/O: call them from `tokio::task::spawn_blocking`.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tracing::warn;

use crate::proxy::alias::is_python_keyword;

/// Largest saved tool source, in bytes.
pub const MAX_TOOL_BYTES: usize = 64 << 10;
/// Largest total of all saved tool sources, in bytes.
pub const MAX_TOOLS_TOTAL_BYTES: u64 = 4 << 20;
/// Longest saved tool name, in characters.
pub const MAX_TOOL_NAME_CHARS: usize = 100;
/// Longest memory key, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Largest memory value, in bytes of compact JSON.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest total of all memory values, in bytes.
pub const MAX_MEMORY_BYTES: u64 = 64 << 20;

const TOOLS_DIR: &str = "saved_tools";
const MEMORY_DIR: &str = "memory";
/// Where the memory store is, as the sandbox is told: relative to the state directory,
/// without the host path.
pub const GUEST_MEMORY_PATH: &str = "$MCP_BRIDGE_STATE_DIR/memory";
const USER_TOOLS: &str = "user_tools.py";

/// What went wrong with saved tools or memory. Each message is a sentence the agent can act
/// on; [`StateError::kind`] gives the `rpc` error kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A memory key that is not allowed.
    #[error(
        "memory key {key:?} is not allowed: {why}; a key is 1 to 128 letters, digits, `_`, `.` \
         or `-`, and does not start with `.`"
    )]
    InvalidKey {
        /// The key (clipped).
        key: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No value is saved under the key.
    #[error("no memory is saved under {key:?}")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A memory value over the per-key limit.
    #[error(
        "the value for memory key {key:?} is {bytes} bytes of JSON, more than the {limit} bytes \
         allowed per key"
    )]
    ValueTooLarge {
        /// The key.
        key: String,
        /// Its size as compact JSON.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Saving would take memory over its total limit.
    #[error(
        "saving memory key {key:?} would bring memory to {total} bytes, over the {limit} bytes \
         allowed in all; delete some keys first"
    )]
    MemoryFull {
        /// The key.
        key: String,
        /// The total after saving.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// A stored value that is not JSON (edited or damaged outside the bridge).
    #[error(
        "memory key {key:?} holds data that is not valid JSON ({source}); delete it and save \
         it again"
    )]
    Corrupt {
        /// The key.
        key: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A saved tool name that is not allowed.
    #[error(
        "{name:?} cannot be a saved tool's name: {why}; use a Python identifier of ASCII \
         letters, digits and `_` that is not a keyword or a __dunder__ name"
    )]
    InvalidToolName {
        /// The name (clipped).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A saved tool source that is not one function definition of that name.
    #[error("the source given for saved tool {name:?} is not acceptable: {why}")]
    InvalidToolSource {
        /// The tool's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// Saving would take saved tools over their total limit.
    #[error(
        "saving tool {name:?} would bring saved tools to {total} bytes, over the {limit} bytes \
         allowed in all; delete some first"
    )]
    ToolsFull {
        /// The tool's name.
        name: String,
        /// The total after saving.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// A request whose shape is wrong (unknown operation, missing field).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// File I/O failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What we were doing (`write`, `read`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl StateError {
    /// The `rpc` error kind of this error (see `frames.md`): `invalid_params`, `not_found` or
    /// `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Corrupt { .. } | Self::Io { .. } => "internal",
            Self::InvalidKey { .. }
            | Self::ValueTooLarge { .. }
            | Self::MemoryFull { .. }
            | Self::InvalidToolName { .. }
            | Self::InvalidToolSource { .. }
            | Self::ToolsFull { .. }
            | Self::InvalidRequest(_) => "invalid_params",
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// Hostile text in an error message, cut to a readable length.
fn clip(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        text.to_string()
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}

/// Check a memory key: 1..=128 characters of `[A-Za-z0-9_.-]`, not starting with `.`
/// (which also rules out `.` and `..`).
pub fn validate_key(key: &str) -> Result<(), StateError> {
    let invalid = |why| {
        Err(StateError::InvalidKey {
            key: clip(key),
            why,
        })
    };
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return invalid("it is longer than 128 characters");
    }
    if key.contains(['/', '\\']) {
        return invalid("it contains a path separator");
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return invalid("it contains a character outside letters, digits, `_`, `.` and `-`");
    }
    if key.starts_with('.') {
        return invalid("it starts with `.`");
    }
    Ok(())
}

/// Check a saved tool's name: an ASCII Python identifier of at most 100 characters, not a
/// keyword, not a `__dunder__` name.
pub fn validate_tool_name(name: &str) -> Result<(), StateError> {
    let invalid = |why| {
        Err(StateError::InvalidToolName {
            name: clip(name),
            why,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.chars().count() > MAX_TOOL_NAME_CHARS {
        return invalid("it is longer than 100 characters");
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("it is not a Python identifier");
    }
    if is_python_keyword(name) {
        return invalid("it is a Python keyword");
    }
    if name.len() >= 4 && name.starts_with("__") && name.ends_with("__") {
        return invalid("it is a __dunder__ name");
    }
    Ok(())
}

/// Remove the whitespace prefix every non-blank line shares (like `textwrap.dedent`).
fn dedent(source: &str) -> String {
    let prefix = source
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| &line[..line.len() - line.trim_start().len()])
        .reduce(|a, b| {
            // Compare characters, not bytes: two different multi-byte spaces share leading
            // bytes, and a byte count would cut inside a character.
            let common: usize = a
                .chars()
                .zip(b.chars())
                .take_while(|(x, y)| x == y)
                .map(|(c, _)| c.len_utf8())
                .sum();
            &a[..common]
        })
        .unwrap_or("");
    source
        .lines()
        .map(|line| {
            line.strip_prefix(prefix)
                .unwrap_or_else(|| line.trim_start())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `line` starts `def name(` or `async def name(` (any spacing Python allows).
fn defines(line: &str, name: &str) -> bool {
    let mut rest = line;
    if let Some(after) = rest.strip_prefix("async")
        && after.starts_with([' ', '\t'])
    {
        rest = after.trim_start_matches([' ', '\t']);
    }
    let Some(after) = rest.strip_prefix("def") else {
        return false;
    };
    if !after.starts_with([' ', '\t']) {
        return false;
    }
    let after = after.trim_start_matches([' ', '\t']);
    after
        .strip_prefix(name)
        .is_some_and(|tail| tail.trim_start_matches([' ', '\t']).starts_with('('))
}

/// Check a saved tool's source and normalise it: dedented, without leading blank lines,
/// ending in one newline.
pub fn normalize_tool_source(name: &str, source: &str) -> Result<String, StateError> {
    let invalid = |why: String| {
        Err(StateError::InvalidToolSource {
            name: name.to_string(),
            why,
        })
    };
    if source.len() > MAX_TOOL_BYTES {
        return invalid(format!(
            "it is {} bytes, more than the {MAX_TOOL_BYTES} allowed",
            source.len()
        ));
    }
    if source.contains('\0') {
        return invalid("it contains a NUL character".into());
    }
    let dedented = dedent(&source.replace("\r\n", "\n"));
    let lines: Vec<&str> = dedented
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .collect();
    let body = lines.join("\n");
    let Some(first) = lines.first() else {
        return invalid("it is empty".into());
    };
    if !defines(first, name) {
        return invalid(format!(
            "it must start with `def {name}(` or `async def {name}(` (no decorators), but it \
             starts with {:?}",
            clip(first)
        ));
    }
    Ok(format!("{}\n", body.trim_end()))
}

/// Versions distinguish every different content (the first 64 bits of its SHA-256).
fn version_of(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// Whether a directory entry name is one of our temporary files or otherwise hidden.
fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Write `bytes` to `path` atomically: a fresh temporary file in the same folder, synced,
/// renamed over `path`. The temporary file is removed if anything fails.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("state files live in a folder");
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("state file names are validated ASCII");
    let temp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&temp);
        return Err(StateError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        });
    }
    // Make the rename durable; failing that is not worth failing the write for.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Create `dir` (and missing parents) with mode 0700 if it does not exist.
fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create the folder", dir))
}

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

/// The state directory: saved tools and memory.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    /// Serialises writers in this process (size totals are checked, then written).
    write_lock: Mutex<()>,
}

impl State {
    /// Open the state directory, creating it and its `saved_tools/` and `memory/` folders
    /// (mode 0700) when missing. An existing directory's mode is left as it is.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        ensure_dir(&dir)?;
        ensure_dir(&dir.join(TOOLS_DIR))?;
        ensure_dir(&dir.join(MEMORY_DIR))?;
        Ok(Self {
            dir,
            write_lock: Mutex::new(()),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it left nothing half-updated.
        self.write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tools_dir(&self) -> PathBuf {
        self.dir.join(TOOLS_DIR)
    }

    fn memory_dir(&self) -> PathBuf {
        self.dir.join(MEMORY_DIR)
    }

    /// `(stem, size)` of each `*.<ext>` file in `dir` whose stem passes `valid`, sorted.
    fn list_files(
        dir: &Path,
        ext: &str,
        valid: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, u64)>, StateError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_hidden(name) {
                continue;
            }
            let Some(stem) = name.strip_suffix(ext) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && valid(stem) {
                out.push((stem.to_string(), meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    // ---- saved tools ----

    /// Save a tool: `source` must be one function `name` (see [`normalize_tool_source`]).
    /// Replaces a tool of the same name; regenerates `user_tools.py`.
    pub fn save_tool(&self, name: &str, source: &str) -> Result<(), StateError> {
        validate_tool_name(name)?;
        let source = normalize_tool_source(name, source)?;
        let _guard = self.lock();
        let others: u64 = Self::list_files(&self.tools_dir(), ".py", |s| s != name)?
            .iter()
            .map(|(_, size)| size)
            .sum();
        let total = others + source.len() as u64;
        if total > MAX_TOOLS_TOTAL_BYTES {
            return Err(StateError::ToolsFull {
                name: name.to_string(),
                total,
                limit: MAX_TOOLS_TOTAL_BYTES,
            });
        }
        write_atomic(
            &self.tools_dir().join(format!("{name}.py")),
            source.as_bytes(),
        )?;
        self.write_user_tools();
        Ok(())
    }

    /// Delete a saved tool; whether it existed.
    pub fn delete_tool(&self, name: &str) -> Result<bool, StateError> {
        validate_tool_name(name)?;
        let _guard = self.lock();
        let path = self.tools_dir().join(format!("{name}.py"));
        let existed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("delete", &path)(e)),
        };
        self.write_user_tools();
        Ok(existed)
    }

    /// Names of the saved tools, sorted.
    pub fn tool_names(&self) -> Result<Vec<String>, StateError> {
        Ok(
            Self::list_files(&self.tools_dir(), ".py", |s| validate_tool_name(s).is_ok())?
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        )
    }

    /// The text of every saved tool in name order, with a version that changes whenever the
    /// text does; `None` when there are none. Files that cannot be read, or are larger than
    /// a tool may be, are left out with a warning in the log.
    pub fn saved_tools_source(&self) -> Option<(u64, String)> {
        let text = self.concatenated_tools();
        (!text.is_empty()).then(|| (version_of(&text), text))
    }

    /// Every saved tool in name order, each under a marker comment; empty when none.
    fn concatenated_tools(&self) -> String {
        let dir = self.tools_dir();
        let names = match Self::list_files(&dir, ".py", |s| validate_tool_name(s).is_ok()) {
            Ok(names) => names,
            Err(e) => {
                warn!(error = %e, "cannot list saved tools");
                return String::new();
            }
        };
        let mut text = String::new();
        for (name, size) in names {
            let path = dir.join(format!("{name}.py"));
            if size > MAX_TOOL_BYTES as u64 {
                warn!(file = %path.display(), size, "saved tool too large; left out");
                continue;
            }
            match fs::read_to_string(&path) {
                Ok(source) => {
                    let _ = write!(
                        text,
                        "# --- saved tool: {name} ---\n{}\n\n",
                        source.trim_end()
                    );
                }
                Err(e) => warn!(file = %path.display(), error = %e, "cannot read a saved tool"),
            }
        }
        text
    }

    /// Regenerate `user_tools.py` (a readable copy; failures only logged).
    fn write_user_tools(&self) {
        let path = self.dir.join(USER_TOOLS);
        let text = format!(
            "# Saved tools of mcp-server-code-execution-mode, loaded into every session.\n\
             # Generated from {TOOLS_DIR}/<name>.py on each save_tool: edit those files, not \
             this one.\n\n{}",
            self.concatenated_tools()
        );
        if let Err(e) = write_atomic(&path, text.as_bytes()) {
            warn!(error = %e, "cannot update user_tools.py");
        }
    }

    /// The `save_tool` rpc: `{name, source}` → `null`.
    pub fn save_tool_rpc(&self, params: &Value) -> Result<Value, StateError> {
        let field = |key: &str| {
            params.get(key).and_then(Value::as_str).ok_or_else(|| {
                StateError::InvalidRequest(format!("save_tool needs a string `{key}`"))
            })
        };
        self.save_tool(field("name")?, field("source")?)?;
        Ok(Value::Null)
    }

    // ---- memory ----

    fn key_path(&self, key: &str) -> Result<PathBuf, StateError> {
        validate_key(key)?;
        Ok(self.memory_dir().join(format!("{key}.json")))
    }

    /// Save `value` under `key`, replacing what was there.
    pub fn memory_save(&self, key: &str, value: &Value) -> Result<(), StateError> {
        let path = self.key_path(key)?;
        let bytes = serde_json::to_vec(value).expect("a JSON value always serialises");
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(StateError::ValueTooLarge {
                key: key.to_string(),
                bytes: bytes.len(),
                limit: MAX_VALUE_BYTES,
            });
        }
        let _guard = self.lock();
        let others: u64 = Self::list_files(&self.memory_dir(), ".json", |s| {
            s != key && validate_key(s).is_ok()
        })?
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
    pub fn memory_load(&self, key: &str) -> Result<Value, StateError> {
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
    pub fn memory_delete(&self, key: &str) -> Result<bool, StateError> {
        let path = self.key_path(key)?;
        let _guard = self.lock();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("delete", &path)(e)),
        }
    }

    /// Whether a value is saved under `key`.
    pub fn memory_exists(&self, key: &str) -> Result<bool, StateError> {
        Ok(self.key_path(key)?.is_file())
    }

    /// Every saved key, sorted.
    pub fn memory_list(&self) -> Result<Vec<String>, StateError> {
        Ok(
            Self::list_files(&self.memory_dir(), ".json", |s| validate_key(s).is_ok())?
                .into_iter()
                .map(|(key, _)| key)
                .collect(),
        )
    }

    /// How many keys, how many bytes, and where.
    pub fn memory_info(&self) -> Result<MemoryInfo, StateError> {
        let files = Self::list_files(&self.memory_dir(), ".json", |s| validate_key(s).is_ok())?;
        Ok(MemoryInfo {
            keys: files.len(),
            bytes: files.iter().map(|(_, size)| size).sum(),
            path: self.memory_dir(),
        })
    }

    /// The `memory` rpc: `{op, key?, value?}`, answered as `frames.md` says: `save` → null,
    /// `load` → the value, `delete` → bool, `list` → keys, `exists` → bool, `info` →
    /// `{keys, bytes, path}` (`keys` is a count; `path` is [`GUEST_MEMORY_PATH`], never the
    /// host path).
    pub fn memory_rpc(&self, params: &Value) -> Result<Value, StateError> {
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
                self.memory_save(key()?, value)?;
                Ok(Value::Null)
            }
            "load" => self.memory_load(key()?),
            "delete" => Ok(Value::Bool(self.memory_delete(key()?)?)),
            "exists" => Ok(Value::Bool(self.memory_exists(key()?)?)),
            "list" => Ok(json!(self.memory_list()?)),
            "info" => {
                let info = self.memory_info()?;
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
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn open_state() -> (tempfile::TempDir, State) {
        let root = tempfile::tempdir().unwrap();
        let state = State::open(root.path().join("MCPs")).unwrap();
        (root, state)
    }

    /// Every file under `dir`, relative, sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
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
    fn memory_round_trip_and_ops() {
        let (_root, state) = open_state();
        let value = json!({"a": [1, 2, {"b": null}], "s": "ü"});
        state.memory_save("notes.v1", &value).unwrap();
        assert_eq!(state.memory_load("notes.v1").unwrap(), value);
        assert!(state.memory_exists("notes.v1").unwrap());
        assert!(!state.memory_exists("other").unwrap());
        state.memory_save("a-key_2", &json!(null)).unwrap();
        assert_eq!(state.memory_list().unwrap(), ["a-key_2", "notes.v1"]);
        let info = state.memory_info().unwrap();
        assert_eq!(info.keys, 2);
        assert_eq!(
            info.bytes,
            (serde_json::to_vec(&value).unwrap().len() + 4) as u64
        );
        assert!(info.path.ends_with("memory"));
        // Replacing keeps one key.
        state.memory_save("notes.v1", &json!(2)).unwrap();
        assert_eq!(state.memory_load("notes.v1").unwrap(), json!(2));
        assert_eq!(state.memory_list().unwrap().len(), 2);
        assert!(state.memory_delete("notes.v1").unwrap());
        assert!(!state.memory_delete("notes.v1").unwrap());
        let err = state.memory_load("notes.v1").unwrap_err();
        assert_eq!(err.kind(), "not_found");
        assert_eq!(err.to_string(), "no memory is saved under \"notes.v1\"");
    }

    #[test]
    fn memory_keeps_every_float_exactly() {
        // Found by the guest_rpc fuzz target: without serde_json's `float_roundtrip`, this
        // number (as the guest's JSON spells it) loaded back one unit in the last place off.
        let (_root, state) = open_state();
        let text = "2333333333333333333333333333333333333333333.5";
        let sent: Value = serde_json::from_str(text).unwrap();
        assert_eq!(sent.as_f64(), text.parse::<f64>().ok(), "parsed exactly");
        state.memory_save("f", &sent).unwrap();
        assert_eq!(state.memory_load("f").unwrap(), sent);
    }

    #[test]
    fn path_traversal_and_bad_keys_are_refused() {
        let (root, state) = open_state();
        let long = "k".repeat(129);
        let bad = [
            "../x",
            "/etc/passwd",
            "a/b",
            "..",
            ".",
            "",
            long.as_str(),
            ".hidden",
            "a\\b",
            "a b",
            "é",
            "a\0b",
            "~root",
            "x/../../y",
        ];
        for key in bad {
            for result in [
                state.memory_save(key, &json!(1)).map(|()| Value::Null),
                state.memory_load(key),
                state.memory_delete(key).map(Value::Bool),
                state.memory_exists(key).map(Value::Bool),
            ] {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, StateError::InvalidKey { .. }),
                    "{key:?}: {err}"
                );
                assert_eq!(err.kind(), "invalid_params");
                assert!(err.to_string().starts_with("memory key"), "{err}");
            }
        }
        // The longest allowed key works; the message for a long one is clipped.
        state.memory_save(&"k".repeat(128), &json!(1)).unwrap();
        assert!(
            state
                .memory_save(&long, &json!(1))
                .unwrap_err()
                .to_string()
                .len()
                < 300
        );
        // Nothing was written outside memory/.
        assert_eq!(
            tree(root.path()),
            [format!("MCPs/memory/{}.json", "k".repeat(128))]
        );
    }

    #[test]
    fn value_and_total_limits() {
        let (_root, state) = open_state();
        let big = json!("x".repeat(MAX_VALUE_BYTES));
        let err = state.memory_save("big", &big).unwrap_err();
        assert!(matches!(err, StateError::ValueTooLarge { .. }), "{err}");
        assert_eq!(err.kind(), "invalid_params");
        let just_fits = json!("x".repeat(MAX_VALUE_BYTES - 2));
        state.memory_save("fits", &just_fits).unwrap();
        assert!(!state.memory_exists("big").unwrap());

        // The total: 64 values of exactly 1 MiB fit, then not one byte more.
        let (_root, state) = open_state();
        let chunk = json!("y".repeat(MAX_VALUE_BYTES - 2));
        for i in 0..64 {
            state.memory_save(&format!("k{i}"), &chunk).unwrap();
        }
        let err = state.memory_save("one-more", &json!("z")).unwrap_err();
        assert!(matches!(err, StateError::MemoryFull { .. }), "{err}");
        // Replacing an existing key with a value of the same size still fits.
        state.memory_save("k0", &chunk).unwrap();
    }

    #[test]
    fn corrupt_values_are_reported() {
        let (_root, state) = open_state();
        fs::write(state.memory_dir().join("bad.json"), b"{not json").unwrap();
        let err = state.memory_load("bad").unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
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
    fn failed_write_leaves_nothing_behind() {
        let (root, state) = open_state();
        // A folder where the file should go makes the rename fail.
        fs::create_dir(state.memory_dir().join("blocked.json")).unwrap();
        let err = state.memory_save("blocked", &json!(1)).unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(err.to_string().starts_with("could not write"), "{err}");
        let temps: Vec<String> = tree(root.path())
            .into_iter()
            .filter(|p| p.contains(".tmp"))
            .collect();
        assert!(temps.is_empty(), "{temps:?}");
    }

    #[test]
    fn two_writers_of_one_key_never_tear_it() {
        let (root, first) = open_state();
        // A second handle on the same folder: its own lock, as another process would have.
        let second = State::open(root.path().join("MCPs")).unwrap();
        let value = |writer: usize, i: usize| json!({"writer": writer, "i": i, "pad": "p".repeat(4096 * writer)});
        std::thread::scope(|scope| {
            for (writer, state) in [(1, &first), (2, &second)] {
                scope.spawn(move || {
                    for i in 0..100 {
                        state.memory_save("shared", &value(writer, i)).unwrap();
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..200 {
                    match first.memory_load("shared") {
                        Ok(v) => {
                            let writer = usize::try_from(v["writer"].as_u64().unwrap()).unwrap();
                            let i = usize::try_from(v["i"].as_u64().unwrap()).unwrap();
                            assert_eq!(v, value(writer, i));
                        }
                        Err(StateError::NotFound { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        });
        let last = first.memory_load("shared").unwrap();
        assert_eq!(last["i"], 99);
        assert_eq!(tree(root.path()), ["MCPs/memory/shared.json"]);
    }

    #[test]
    fn memory_rpc_follows_the_frame_contract() {
        let (_root, state) = open_state();
        let rpc = |params: Value| state.memory_rpc(&params);
        assert_eq!(
            rpc(json!({"op": "save", "key": "k", "value": [1]})).unwrap(),
            json!(null)
        );
        assert_eq!(
            rpc(json!({"op": "save", "key": "n", "value": null})).unwrap(),
            json!(null)
        );
        assert_eq!(rpc(json!({"op": "load", "key": "k"})).unwrap(), json!([1]));
        assert_eq!(rpc(json!({"op": "load", "key": "n"})).unwrap(), json!(null));
        assert_eq!(
            rpc(json!({"op": "exists", "key": "k"})).unwrap(),
            json!(true)
        );
        assert_eq!(rpc(json!({"op": "list"})).unwrap(), json!(["k", "n"]));
        let info = rpc(json!({"op": "info"})).unwrap();
        assert_eq!(info["keys"], 2);
        assert_eq!(info["bytes"], 7);
        assert_eq!(
            info["path"], GUEST_MEMORY_PATH,
            "no host path reaches the guest"
        );
        assert_eq!(
            rpc(json!({"op": "delete", "key": "k"})).unwrap(),
            json!(true)
        );
        assert_eq!(
            rpc(json!({"op": "delete", "key": "k"})).unwrap(),
            json!(false)
        );
        assert_eq!(
            rpc(json!({"op": "load", "key": "k"})).unwrap_err().kind(),
            "not_found"
        );
        for bad in [
            json!({}),
            json!({"op": 3}),
            json!({"op": "drop"}),
            json!({"op": "save", "key": "k"}),
            json!({"op": "load"}),
            json!({"op": "load", "key": 5}),
            json!({"op": "load", "key": "../k"}),
        ] {
            let err = rpc(bad.clone()).unwrap_err();
            assert_eq!(err.kind(), "invalid_params", "{bad}: {err}");
        }
    }

    #[test]
    fn tool_names_are_checked() {
        for good in [
            "f",
            "_private",
            "fetch_json2",
            "Match",
            "match",
            "type",
            "a".repeat(100).as_str(),
        ] {
            validate_tool_name(good).unwrap();
        }
        let long = "a".repeat(101);
        for bad in [
            "",
            "2f",
            "a-b",
            "a b",
            "é",
            "class",
            "None",
            "async",
            "__init__",
            "__x__",
            "../f",
            "f/g",
            ".f",
            long.as_str(),
        ] {
            let err = validate_tool_name(bad).unwrap_err();
            assert_eq!(err.kind(), "invalid_params", "{bad:?}");
        }
    }

    #[test]
    fn tool_sources_are_checked_and_normalised() {
        let ok = |name: &str, src: &str| normalize_tool_source(name, src).unwrap();
        assert_eq!(
            ok("f", "def f(x):\n    return x"),
            "def f(x):\n    return x\n"
        );
        assert_eq!(
            ok("f", "\n\n    async def f():\n        await g()\n\n"),
            "async def f():\n    await g()\n"
        );
        assert_eq!(
            ok("f", "async  def\tf (a=1):\r\n  pass\r\n"),
            "async  def\tf (a=1):\n  pass\n"
        );
        // Indented bodies with blank lines keep their relative indentation.
        assert_eq!(
            ok("f", "  def f():\n\n      x = 1\n      return x\n"),
            "def f():\n\n    x = 1\n    return x\n"
        );
        let bad = [
            ("f", "def g():\n    pass"),
            ("f", "def fx():\n    pass"),
            ("f", "@decorator\ndef f():\n    pass"),
            ("f", "class f:\n    pass"),
            ("f", "f = lambda: 1"),
            ("f", "asyncdef f():\n    pass"),
            ("f", "deff():\n    pass"),
            ("f", ""),
            ("f", "   \n\n"),
            ("f", "def f():\0"),
        ];
        for (name, src) in bad {
            let err = normalize_tool_source(name, src).unwrap_err();
            assert!(
                matches!(err, StateError::InvalidToolSource { .. }),
                "{src:?}"
            );
        }
        let huge = format!("def f():\n    return {:?}\n", "x".repeat(MAX_TOOL_BYTES));
        assert!(
            normalize_tool_source("f", &huge)
                .unwrap_err()
                .to_string()
                .contains("bytes")
        );
    }

    #[test]
    fn different_multibyte_indents_share_no_prefix() {
        // A guest's `save_tool` made the host panic: U+2003 and U+2002 share their first
        // two bytes, and dedent cut the common prefix inside a character.
        let err = normalize_tool_source("f", "\u{2003}def f():\n\u{2002}    pass\n").unwrap_err();
        assert!(matches!(err, StateError::InvalidToolSource { .. }), "{err}");
        assert_eq!(
            normalize_tool_source("f", "\u{2003}def f():\n\u{2003}\u{2002}pass").unwrap(),
            "def f():\n\u{2002}pass\n"
        );
    }

    #[test]
    fn saved_tools_replace_and_concatenate_in_name_order() {
        let (root, state) = open_state();
        assert_eq!(state.saved_tools_source(), None);
        state
            .save_tool("zeta", "def zeta():\n    return 'z'\n")
            .unwrap();
        state
            .save_tool("alpha", "    async def alpha():\n        return 'a'\n")
            .unwrap();
        let (v1, text) = state.saved_tools_source().unwrap();
        assert_eq!(
            text,
            "# --- saved tool: alpha ---\nasync def alpha():\n    return 'a'\n\n\
             # --- saved tool: zeta ---\ndef zeta():\n    return 'z'\n\n"
        );
        assert_eq!(state.tool_names().unwrap(), ["alpha", "zeta"]);
        // Same content, same version; new content, new version; one block per tool.
        assert_eq!(state.saved_tools_source().unwrap().0, v1);
        state
            .save_tool("zeta", "def zeta():\n    return 'Z'\n")
            .unwrap();
        let (v2, text) = state.saved_tools_source().unwrap();
        assert_ne!(v1, v2);
        assert_eq!(text.matches("def zeta").count(), 1);
        assert!(text.contains("return 'Z'"));
        // user_tools.py mirrors it for people.
        let user_tools = fs::read_to_string(root.path().join("MCPs/user_tools.py")).unwrap();
        assert!(user_tools.starts_with("# Saved tools"), "{user_tools}");
        assert!(user_tools.ends_with(&text), "{user_tools}");
        // Deleting.
        assert!(state.delete_tool("zeta").unwrap());
        assert!(!state.delete_tool("zeta").unwrap());
        assert_eq!(state.tool_names().unwrap(), ["alpha"]);
        assert!(state.delete_tool("alpha").unwrap());
        assert_eq!(state.saved_tools_source(), None);
    }

    #[test]
    fn saved_tools_total_is_capped() {
        let (_root, state) = open_state();
        let body = "x".repeat(MAX_TOOL_BYTES - 100);
        let mut saved = 0;
        let err = loop {
            let name = format!("t{saved}");
            match state.save_tool(&name, &format!("def {name}():\n    return {body:?}\n")) {
                Ok(()) => saved += 1,
                Err(e) => break e,
            }
            assert!(saved < 100, "the total cap never applied");
        };
        assert!(matches!(err, StateError::ToolsFull { .. }), "{err}");
        assert_eq!(saved, 64);
    }

    #[test]
    fn save_tool_rpc_checks_its_params() {
        let (_root, state) = open_state();
        let src = "def hello():\n    return 'hi'\n";
        assert_eq!(
            state
                .save_tool_rpc(&json!({"name": "hello", "source": src}))
                .unwrap(),
            json!(null)
        );
        for bad in [
            json!({"name": "hello"}),
            json!({"source": src}),
            json!({"name": 1, "source": src}),
        ] {
            assert_eq!(
                state.save_tool_rpc(&bad).unwrap_err().kind(),
                "invalid_params"
            );
        }
        let err = state
            .save_tool_rpc(&json!({"name": "../evil", "source": src}))
            .unwrap_err();
        assert!(matches!(err, StateError::InvalidToolName { .. }));
    }

    #[test]
    fn stray_files_are_ignored() {
        let (_root, state) = open_state();
        fs::write(state.memory_dir().join(".k.json.1.2.tmp"), b"1").unwrap();
        fs::write(state.memory_dir().join("notes.txt"), b"1").unwrap();
        fs::write(state.tools_dir().join("bad name.py"), b"def x(): pass").unwrap();
        fs::write(state.tools_dir().join(".f.py.1.tmp"), b"def f(): pass").unwrap();
        assert!(state.memory_list().unwrap().is_empty());
        assert!(state.tool_names().unwrap().is_empty());
        assert_eq!(state.saved_tools_source(), None);
    }
}
