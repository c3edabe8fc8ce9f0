//! The catalogue's data: each server and how to reach it, and what became of each file and
//! entry discovery looked at. Leaf types: besides the redaction helpers their renderings use,
//! they depend on nothing else in discovery.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::redact::{redact_args, redact_url};

/// How a remote server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// MCP streamable HTTP.
    Http,
    /// The older HTTP + server-sent events transport.
    Sse,
}

impl fmt::Display for RemoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Sse => "sse",
        })
    }
}

/// How to reach a server. Its `Debug` shows env and header names, never their values.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program (a path, or a name looked up in `PATH`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables the config sets for it (from `envFile`, then `env`, which wins).
        env: BTreeMap<String, String>,
        /// Its working directory, absolute when the config gave one.
        cwd: Option<PathBuf>,
    },
    /// A server reached over HTTP.
    Remote {
        /// Its endpoint.
        url: String,
        /// Headers sent with every request (often credentials).
        headers: BTreeMap<String, String>,
        /// Streamable HTTP or SSE.
        kind: RemoteKind,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", &redact_args(args))
                .field("env_keys", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
            Self::Remote { url, headers, kind } => f
                .debug_struct("Remote")
                .field("url", &redact_url(url))
                .field("header_names", &headers.keys().collect::<Vec<_>>())
                .field("kind", kind)
                .finish(),
        }
    }
}

/// One discovered server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// Its name in the config (what runs list in `servers`).
    pub name: String,
    /// Its Python alias (`mcp_<alias>`), unique in the catalogue.
    pub alias: String,
    /// The server's own `description`, else its file's top-level `description`.
    pub description: Option<String>,
    /// The file that defined it.
    pub source: PathBuf,
    /// How to reach it.
    pub transport: Transport,
    /// Things the user should know (unset variables), kept for the `servers` report.
    pub warnings: Vec<String>,
    /// The entry's `policy` for tool calls, if it has one (see [`crate::policy`]).
    pub policy: Option<crate::policy::Rules>,
}

/// What became of one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Read; it defines this many server entries (some may be skipped or shadowed).
    Read {
        /// Entries defined in the file.
        servers: usize,
    },
    /// Not usable; nothing from it was taken.
    Broken {
        /// Why, for the user.
        why: String,
    },
}

/// One config file that discovery looked at and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// What became of it.
    pub status: FileStatus,
}

/// A server entry that was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's name.
    pub name: String,
    /// The file that defined it.
    pub source: PathBuf,
    /// Why it was skipped.
    pub why: String,
}

/// Every server found, every file read, every entry skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// Servers, in discovery order, names unique.
    pub servers: Vec<ServerEntry>,
    /// Files found, in the order read.
    pub files: Vec<FileReport>,
    /// Entries not taken, with why.
    pub skipped: Vec<Skipped>,
}

impl Catalogue {
    /// The server with this exact name.
    pub fn get(&self, name: &str) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// Every server name, in discovery order.
    pub fn names(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.name.as_str()).collect()
    }

    /// The `catalogue` field of the guest's `hello` frame: `[{name, alias, description}]`
    /// (`description` is `null` when there is none).
    pub fn hello_entries(&self) -> Value {
        Value::Array(
            self.servers
                .iter()
                .map(|s| {
                    let mut entry = Map::new();
                    entry.insert("name".into(), Value::String(s.name.clone()));
                    entry.insert("alias".into(), Value::String(s.alias.clone()));
                    entry.insert(
                        "description".into(),
                        s.description.clone().map_or(Value::Null, Value::String),
                    );
                    Value::Object(entry)
                })
                .collect(),
        )
    }
}

/// What kind of JSON value this is, as messages name it (`an array`, `null`).
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A shell-like rendering of a command line (quoting words with spaces).
fn shell_words(words: impl IntoIterator<Item = String>) -> String {
    words
        .into_iter()
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{w:?}")
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line on how a server is reached, secrets hidden.
pub fn transport_summary(transport: &Transport) -> String {
    match transport {
        Transport::Stdio { command, args, .. } => format!(
            "stdio: {}",
            shell_words(std::iter::once(command.clone()).chain(redact_args(args)))
        ),
        Transport::Remote { url, kind, .. } => format!("{kind}: {}", redact_url(url)),
    }
}
