//! Saved tools: one function per file in `saved_tools/<name>.py`, the source of truth, and
//! `user_tools.py`, their concatenation for people to read, regenerated after each change.
//!
//! Names are checked ([`validate_tool_name`]) before they touch a path, sources are checked
//! and bounded ([`normalize_tool_source`]) before anything is written, and the total of all
//! sources is bounded at [`MAX_TOOLS_TOTAL_BYTES`].

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tracing::warn;

use super::error::{StateError, io_error};
use super::files::{WriteLock, ensure_dir, list_files, write_atomic};
use super::names::validate_tool_name;
use super::tool_source::{MAX_TOOL_BYTES, normalize_tool_source};

/// Largest total of all saved tool sources, in bytes.
pub const MAX_TOOLS_TOTAL_BYTES: u64 = 4 << 20;

/// The folder of saved tools, in the state directory.
const DIR: &str = "saved_tools";
/// The concatenation of all saved tools, in the state directory.
const USER_TOOLS: &str = "user_tools.py";

/// The saved tools of one state directory.
#[derive(Debug)]
pub(super) struct SavedTools {
    /// `saved_tools/`.
    dir: PathBuf,
    /// `user_tools.py`.
    user_tools: PathBuf,
    /// Serialises writers in this process (the total is checked, then written).
    write_lock: WriteLock,
}

impl SavedTools {
    /// The saved tools of `state_dir`, creating `saved_tools/` (mode 0700) when missing.
    pub(super) fn open(state_dir: &Path) -> Result<Self, StateError> {
        let dir = state_dir.join(DIR);
        ensure_dir(&dir)?;
        Ok(Self {
            dir,
            user_tools: state_dir.join(USER_TOOLS),
            write_lock: WriteLock::default(),
        })
    }

    /// The folder the tools are saved in.
    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Save a tool: `source` must be one function `name` (see [`normalize_tool_source`]).
    /// Replaces a tool of the same name; regenerates `user_tools.py`.
    pub(super) fn save(&self, name: &str, source: &str) -> Result<(), StateError> {
        validate_tool_name(name)?;
        let source = normalize_tool_source(name, source)?;
        let _guard = self.write_lock.hold();
        let others: u64 = list_files(&self.dir, ".py", |s| s != name)?
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
        write_atomic(&self.dir.join(format!("{name}.py")), source.as_bytes())?;
        self.write_user_tools();
        Ok(())
    }

    /// Delete a saved tool; whether it existed.
    pub(super) fn delete(&self, name: &str) -> Result<bool, StateError> {
        validate_tool_name(name)?;
        let _guard = self.write_lock.hold();
        let path = self.dir.join(format!("{name}.py"));
        let existed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("delete", &path)(e)),
        };
        self.write_user_tools();
        Ok(existed)
    }

    /// Names of the saved tools, sorted.
    pub(super) fn names(&self) -> Result<Vec<String>, StateError> {
        Ok(
            list_files(&self.dir, ".py", |s| validate_tool_name(s).is_ok())?
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        )
    }

    /// The text of every saved tool in name order, with a version that changes whenever the
    /// text does; `None` when there are none. Files that cannot be read, or are larger than
    /// a tool may be, are left out with a warning in the log.
    pub(super) fn source(&self) -> Option<(u64, String)> {
        let text = self.concatenated();
        (!text.is_empty()).then(|| (version_of(&text), text))
    }

    /// Every saved tool in name order, each under a marker comment; empty when none.
    fn concatenated(&self) -> String {
        let dir = &self.dir;
        let names = match list_files(dir, ".py", |s| validate_tool_name(s).is_ok()) {
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
        let text = format!(
            "# Saved tools of mcp-server-code-execution-mode, loaded into every session.\n\
             # Generated from {DIR}/<name>.py on each save_tool: edit those files, not \
             this one.\n\n{}",
            self.concatenated()
        );
        if let Err(e) = write_atomic(&self.user_tools, text.as_bytes()) {
            warn!(error = %e, "cannot update user_tools.py");
        }
    }

    /// The `save_tool` rpc: `{name, source}` → `null`.
    pub(super) fn rpc(&self, params: &Value) -> Result<Value, StateError> {
        let field = |key: &str| {
            params.get(key).and_then(Value::as_str).ok_or_else(|| {
                StateError::InvalidRequest(format!("save_tool needs a string `{key}`"))
            })
        };
        self.save(field("name")?, field("source")?)?;
        Ok(Value::Null)
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn open_tools() -> (tempfile::TempDir, SavedTools) {
        let root = tempfile::tempdir().unwrap();
        let tools = SavedTools::open(&root.path().join("MCPs")).unwrap();
        (root, tools)
    }

    #[test]
    fn saved_tools_replace_and_concatenate_in_name_order() {
        let (root, tools) = open_tools();
        assert_eq!(tools.source(), None);
        tools.save("zeta", "def zeta():\n    return 'z'\n").unwrap();
        tools
            .save("alpha", "    async def alpha():\n        return 'a'\n")
            .unwrap();
        let (v1, text) = tools.source().unwrap();
        assert_eq!(
            text,
            "# --- saved tool: alpha ---\nasync def alpha():\n    return 'a'\n\n\
             # --- saved tool: zeta ---\ndef zeta():\n    return 'z'\n\n"
        );
        assert_eq!(tools.names().unwrap(), ["alpha", "zeta"]);
        // Same content, same version; new content, new version; one block per tool.
        assert_eq!(tools.source().unwrap().0, v1);
        tools.save("zeta", "def zeta():\n    return 'Z'\n").unwrap();
        let (v2, text) = tools.source().unwrap();
        assert_ne!(v1, v2);
        assert_eq!(text.matches("def zeta").count(), 1);
        assert!(text.contains("return 'Z'"));
        // user_tools.py mirrors it for people.
        let user_tools = fs::read_to_string(root.path().join("MCPs/user_tools.py")).unwrap();
        assert!(user_tools.starts_with("# Saved tools"), "{user_tools}");
        assert!(user_tools.ends_with(&text), "{user_tools}");
        // Deleting.
        assert!(tools.delete("zeta").unwrap());
        assert!(!tools.delete("zeta").unwrap());
        assert_eq!(tools.names().unwrap(), ["alpha"]);
        assert!(tools.delete("alpha").unwrap());
        assert_eq!(tools.source(), None);
    }

    #[test]
    fn saved_tools_total_is_capped() {
        let (_root, tools) = open_tools();
        let body = "x".repeat(MAX_TOOL_BYTES - 100);
        let mut saved = 0;
        let err = loop {
            let name = format!("t{saved}");
            match tools.save(&name, &format!("def {name}():\n    return {body:?}\n")) {
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
        let (_root, tools) = open_tools();
        let src = "def hello():\n    return 'hi'\n";
        assert_eq!(
            tools.rpc(&json!({"name": "hello", "source": src})).unwrap(),
            json!(null)
        );
        for bad in [
            json!({"name": "hello"}),
            json!({"source": src}),
            json!({"name": 1, "source": src}),
        ] {
            assert_eq!(tools.rpc(&bad).unwrap_err().kind(), "invalid_params");
        }
        let err = tools
            .rpc(&json!({"name": "../evil", "source": src}))
            .unwrap_err();
        assert!(matches!(err, StateError::InvalidToolName { .. }));
    }
}
