//! [`StateError`]: what went wrong with saved tools or memory, as a sentence the agent can
//! act on, and the helpers that build one. A leaf: every other file of `state` uses it.

use std::io;
use std::path::{Path, PathBuf};

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
    #[error("memory key {key:?} holds data that is not valid JSON (delete it and save it again)")]
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
    #[error("could not {action} {}", path.display())]
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

/// A `map_err` maker for a [`StateError::Io`]: `action` failed on `path`.
pub(super) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// Hostile text in an error message, cut to a readable length.
pub(super) fn clip(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        text.to_string()
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}
