//! Server discovery: every MCP client config on this machine, read into one catalogue.
//!
//! # Where we look, in order (the first definition of a name wins)
//!
//! Explicit before implicit, the bridge's own places before other clients':
//!
//! 1. the explicit files: the `--servers-config` paths if given, else `MCP_SERVERS_CONFIG`
//!    (a folder given here is read like the state dir);
//! 2. `$MCP_BRIDGE_STATE_DIR/*.json` and `*.toml` (default `~/MCPs`), sorted by file name;
//! 3. `$XDG_CONFIG_HOME/mcp/servers/*.json` (default `~/.config/mcp/servers`), sorted;
//! 4. `./mcp-servers/*.json`, sorted;
//! 5. `./.vscode/mcp.json` (VS Code workspace: `servers`);
//! 6. `~/.claude.json` (Claude Code): first `projects.<cwd>.mcpServers` for the project whose
//!    path is exactly the current directory (Claude Code's "local" scope, which it prefers),
//!    then the top-level `mcpServers` ("user" scope); other projects' servers are ignored;
//! 7. Claude Desktop: `$XDG_CONFIG_HOME/Claude/claude_desktop_config.json` on Linux,
//!    `~/Library/Application Support/Claude/claude_desktop_config.json` on macOS;
//! 8. Claude Code: `~/.claude/settings.json` (when it has `mcpServers`) and `./.mcp.json`;
//! 9. Cursor: `~/.cursor/mcp.json`, then `./.cursor/mcp.json`;
//! 10. Windsurf: `~/.codeium/windsurf/mcp_config.json`;
//! 11. opencode: `~/.opencode.json` (the original opencode: `mcpServers`), then
//!     `$XDG_CONFIG_HOME/opencode/opencode.json[c]` and `./opencode.json[c]` (today's
//!     opencode: `mcp`, or `mcp.servers` in its v2 format, with `type: local|remote`,
//!     `command` as a list, `environment`, `{env:VAR}` substitution);
//! 12. Gemini CLI: `~/.gemini/settings.json` (`mcpServers`; `url` is SSE, `httpUrl` is
//!     streamable HTTP);
//! 13. Codex: `~/.codex/config.toml` (`[mcp_servers.<name>]`, with `url`, `http_headers`,
//!     `env_http_headers` and `bearer_token_env_var` for remote servers);
//! 14. VS Code user settings: `settings.json` (`mcp.servers`) and the user `mcp.json`
//!     (`servers`), under `$XDG_CONFIG_HOME/Code/User` on Linux and
//!     `~/Library/Application Support/Code/User` on macOS.
//!
//! Missing files are not reported (most users have a few of these clients, not all); a
//! missing *explicit* file is, since the user named it. A file reached twice (the current
//! directory is the home directory) is read once.
//!
//! # Formats
//!
//! Every JSON file may carry comments and trailing commas (VS Code and opencode write them);
//! `.toml` files are TOML. Server maps are found under `mcpServers`, `servers`,
//! `mcp_servers`, `mcp.servers` or `mcp`, as each client writes them. An entry is either
//! - stdio: `command` (a string, or a list whose head is the program), `args`, `env` (an
//!   object, or a list of `KEY=VALUE` strings) or `environment`, `cwd` (relative to the
//!   config file's folder; a leading `~/` is the home directory);
//! - remote: `type` `http` / `streamable-http` / `sse` / `remote`, or just `url`
//!   (`serverUrl` for Windsurf, `httpUrl` for Gemini), with `headers`. Without a `type`, a
//!   URL whose path ends in `/sse` is SSE and any other is streamable HTTP.
//!
//! An entry with `disabled: true` or `enabled: false` is skipped and reported.
//!
//! # Expansion
//!
//! `${VAR}`, `${env:VAR}` and `${VAR:-default}` are expanded in the command, arguments, env
//! values, cwd, URL and header values. An unset variable expands to an empty string, and the
//! entry is kept with a warning naming the variable (so a missing token shows up in the
//! `servers` report rather than as a silent absence). VS Code's `${workspaceFolder}` (the
//! current directory) and `${userHome}` work in VS Code files, opencode's `{env:VAR}` and
//! `{file:PATH}` in opencode files. VS Code's `${input:ID}` (and any other `${kind:...}`)
//! needs an interactive prompt only VS Code can show: such an entry is skipped with why.
//!
//! # Trust and guarantees
//!
//! Config files are the user's own and are trusted to name programs to run, as the clients
//! that wrote them trust them; note that project-local files (`./.mcp.json`,
//! `./.vscode/mcp.json`, `./.cursor/mcp.json`, `./mcp-servers/`, `./opencode.json`) come
//! from whatever directory the bridge was started in. Nothing here starts a process: the
//! catalogue only describes servers, which start when a run names them. Discovery never
//! fails: an unreadable or malformed file is reported and skipped, a malformed entry is
//! skipped with why, files are size-capped before they are read, and a server entry that
//! would launch this bridge itself is skipped (recursion guard) unless
//! `MCP_BRIDGE_ALLOW_SELF_SERVER` is truthy.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::proxy::alias::assign_aliases;
use crate::settings;

/// This bridge's executable name, as clients launch it.
pub const BRIDGE_NAME: &str = "mcp-server-code-execution-mode";
/// The reference's Python module name (`python -m mcp_server_code_execution_mode`).
const BRIDGE_MODULE: &str = "mcp_server_code_execution_mode";
/// Config files larger than this are reported as broken instead of read.
const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// Server names longer than this are skipped.
const MAX_NAME_CHARS: usize = 256;
/// `{file:...}` substitutions read at most this much.
const MAX_SUBSTITUTED_FILE_BYTES: u64 = 64 << 10;

/// A lookup of environment variables (`None` when unset).
pub type VarLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything discovery reads from the outside world, injectable for tests.
#[derive(Clone)]
pub struct DiscoveryEnv {
    /// The user's home directory (home-based sources are skipped when `None`).
    pub home: Option<PathBuf>,
    /// The directory project-local configs are found in.
    pub cwd: PathBuf,
    /// The bridge's state directory.
    pub state_dir: PathBuf,
    /// Explicit config files or folders, read first, in order.
    pub explicit: Vec<PathBuf>,
    /// Environment variables, for `${VAR}` expansion and a few settings.
    pub vars: VarLookup,
    /// This executable, for the recursion guard.
    pub self_exe: Option<PathBuf>,
}

impl fmt::Debug for DiscoveryEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryEnv")
            .field("home", &self.home)
            .field("cwd", &self.cwd)
            .field("state_dir", &self.state_dir)
            .field("explicit", &self.explicit)
            .field("self_exe", &self.self_exe)
            .finish_non_exhaustive()
    }
}

impl DiscoveryEnv {
    /// The real process environment. `servers_config` are the `--servers-config` paths; when
    /// empty, `MCP_SERVERS_CONFIG` (if set) is the one explicit file.
    pub fn from_process(state_dir: PathBuf, servers_config: &[PathBuf]) -> Self {
        let vars: VarLookup = Arc::new(|name| std::env::var(name).ok());
        let explicit = if servers_config.is_empty() {
            vars(settings::SERVERS_CONFIG.about().env)
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from)
                .into_iter()
                .collect()
        } else {
            servers_config.to_vec()
        };
        Self {
            home: dirs::home_dir(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            state_dir,
            explicit,
            vars,
            self_exe: std::env::current_exe().ok(),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name)
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub(crate) fn config_home(&self) -> Option<PathBuf> {
        self.var("XDG_CONFIG_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// Where desktop applications keep their settings: `~/Library/Application Support` on
    /// macOS, the XDG config home elsewhere.
    pub(crate) fn app_config_home(&self) -> Option<PathBuf> {
        if cfg!(target_os = "macos") {
            self.home
                .as_ref()
                .map(|h| h.join("Library").join("Application Support"))
        } else {
            self.config_home()
        }
    }

    fn self_server_allowed(&self) -> bool {
        self.var(settings::ALLOW_SELF_SERVER.about().env)
            .is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
    }
}

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
    /// Discover every server (see the module docs for where and how).
    pub fn discover(env: &DiscoveryEnv) -> Self {
        discover(env)
    }

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

/// Which client wrote a file, which decides where its servers are and a few entry details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Our own files: any of the known server-map keys; a file without one is broken.
    Generic,
    /// A client file with `mcpServers` (absent: no servers).
    McpServers,
    /// `~/.claude.json`: the current project's `mcpServers`, then the top-level one.
    ClaudeJson,
    /// VS Code `mcp.json`: `servers` (or `mcpServers`).
    VsCodeMcp,
    /// VS Code `settings.json`: `mcp.servers`.
    VsCodeSettings,
    /// opencode: `mcp` (or `mcp.servers`), or the original opencode's `mcpServers`.
    OpenCode,
    /// Gemini CLI: `mcpServers`, with `url` meaning SSE.
    Gemini,
    /// Codex: `mcp_servers`.
    Codex,
}

impl Format {
    fn is_vscode(self) -> bool {
        matches!(self, Self::VsCodeMcp | Self::VsCodeSettings)
    }
}

/// A place to look: a file, or a folder whose `*.json` (and maybe `*.toml`) files to read.
#[derive(Debug)]
enum Place {
    File {
        path: PathBuf,
        format: Format,
        explicit: bool,
    },
    Folder {
        path: PathBuf,
        toml: bool,
        explicit: bool,
    },
}

fn places(env: &DiscoveryEnv) -> Vec<Place> {
    let file = |path: PathBuf, format: Format| Place::File {
        path,
        format,
        explicit: false,
    };
    let mut out: Vec<Place> = env
        .explicit
        .iter()
        .map(|path| {
            if path.is_dir() {
                Place::Folder {
                    path: path.clone(),
                    toml: true,
                    explicit: true,
                }
            } else {
                Place::File {
                    path: path.clone(),
                    format: Format::Generic,
                    explicit: true,
                }
            }
        })
        .collect();
    out.push(Place::Folder {
        path: env.state_dir.clone(),
        toml: true,
        explicit: false,
    });
    if let Some(config) = env.config_home() {
        out.push(Place::Folder {
            path: config.join("mcp").join("servers"),
            toml: false,
            explicit: false,
        });
    }
    let cwd = &env.cwd;
    out.push(Place::Folder {
        path: cwd.join("mcp-servers"),
        toml: false,
        explicit: false,
    });
    out.push(file(
        cwd.join(".vscode").join("mcp.json"),
        Format::VsCodeMcp,
    ));
    let home = env.home.as_deref();
    let app = env.app_config_home();
    let config = env.config_home();
    if let Some(home) = home {
        out.push(file(home.join(".claude.json"), Format::ClaudeJson));
    }
    if let Some(app) = &app {
        out.push(file(
            app.join("Claude").join("claude_desktop_config.json"),
            Format::McpServers,
        ));
    }
    if let Some(home) = home {
        out.push(file(
            home.join(".claude").join("settings.json"),
            Format::McpServers,
        ));
    }
    out.push(file(cwd.join(".mcp.json"), Format::McpServers));
    if let Some(home) = home {
        out.push(file(
            home.join(".cursor").join("mcp.json"),
            Format::McpServers,
        ));
    }
    out.push(file(
        cwd.join(".cursor").join("mcp.json"),
        Format::McpServers,
    ));
    if let Some(home) = home {
        out.push(file(
            home.join(".codeium")
                .join("windsurf")
                .join("mcp_config.json"),
            Format::McpServers,
        ));
        out.push(file(home.join(".opencode.json"), Format::OpenCode));
    }
    if let Some(config) = &config {
        for name in ["opencode.json", "opencode.jsonc"] {
            out.push(file(config.join("opencode").join(name), Format::OpenCode));
        }
    }
    for name in ["opencode.json", "opencode.jsonc"] {
        out.push(file(cwd.join(name), Format::OpenCode));
    }
    if let Some(home) = home {
        out.push(file(
            home.join(".gemini").join("settings.json"),
            Format::Gemini,
        ));
        out.push(file(home.join(".codex").join("config.toml"), Format::Codex));
    }
    if let Some(app) = &app {
        let user = app.join("Code").join("User");
        out.push(file(user.join("settings.json"), Format::VsCodeSettings));
        out.push(file(user.join("mcp.json"), Format::VsCodeMcp));
    }
    out
}

/// The `*.json` (and `*.toml`) files of a folder, sorted by name; empty when it is absent.
fn folder_files(folder: &Path, toml: bool) -> Result<Vec<PathBuf>, std::io::Error> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str());
            let wanted = ext == Some("json") || (toml && ext == Some("toml"));
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            wanted && !hidden && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One server entry before first-wins and aliasing.
struct Candidate {
    name: String,
    source: PathBuf,
    /// Extra words on where in the file it came from, for shadowing reports.
    scope: Option<String>,
    entry: ServerEntry,
}

/// Discover every server (see the module docs for where and how).
pub fn discover(env: &DiscoveryEnv) -> Catalogue {
    let mut catalogue = Catalogue::default();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut seen_files: HashSet<PathBuf> = HashSet::new();
    let mut visit = |path: PathBuf, format: Format, explicit: bool, catalogue: &mut Catalogue| {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen_files.insert(key) {
            return;
        }
        read_file(env, &path, format, explicit, catalogue, &mut candidates);
    };
    for place in places(env) {
        match place {
            Place::File {
                path,
                format,
                explicit,
            } => visit(path, format, explicit, &mut catalogue),
            Place::Folder {
                path,
                toml,
                explicit,
            } => match folder_files(&path, toml) {
                Ok(files) => {
                    for file in files {
                        visit(file, Format::Generic, explicit, &mut catalogue);
                    }
                }
                Err(e) => {
                    warn!(folder = %path.display(), error = %e, "cannot list server configs");
                    catalogue.files.push(FileReport {
                        path,
                        status: FileStatus::Broken {
                            why: format!("cannot list the folder: {e}"),
                        },
                    });
                }
            },
        }
    }

    // First definition wins.
    let mut winners: Vec<(ServerEntry, String)> = Vec::new();
    for candidate in candidates {
        let origin = match &candidate.scope {
            Some(scope) => format!("{} ({scope})", candidate.source.display()),
            None => candidate.source.display().to_string(),
        };
        if let Some((_, first)) = winners.iter().find(|(e, _)| e.name == candidate.name) {
            catalogue.skipped.push(Skipped {
                name: candidate.name,
                source: candidate.source,
                why: format!("shadowed by the earlier definition in {first}"),
            });
        } else {
            winners.push((candidate.entry, origin));
        }
    }
    let names: Vec<&str> = winners.iter().map(|(e, _)| e.name.as_str()).collect();
    let aliases = assign_aliases(&names);
    catalogue.servers = winners
        .into_iter()
        .zip(aliases)
        .map(|((mut entry, _), alias)| {
            entry.alias = alias;
            entry
        })
        .collect();
    debug!(
        servers = catalogue.servers.len(),
        files = catalogue.files.len(),
        skipped = catalogue.skipped.len(),
        "server discovery done"
    );
    catalogue
}

/// Read one file into `candidates`, recording what became of it.
fn read_file(
    env: &DiscoveryEnv,
    path: &Path,
    format: Format,
    explicit: bool,
    catalogue: &mut Catalogue,
    candidates: &mut Vec<Candidate>,
) {
    let mut broken = |why: String| {
        warn!(file = %path.display(), %why, "skipping a server config");
        catalogue.files.push(FileReport {
            path: path.to_path_buf(),
            status: FileStatus::Broken { why },
        });
    };
    let text = match read_capped(path) {
        Ok(Some(text)) => text,
        Ok(None) if explicit => return broken("the file does not exist".into()),
        Ok(None) => return,
        Err(why) => return broken(why),
    };
    let is_toml = path.extension().and_then(|e| e.to_str()) == Some("toml");
    let document = if is_toml {
        toml::from_str::<Value>(&text).map_err(|e| format!("invalid TOML: {e}"))
    } else {
        serde_json::from_str::<Value>(&strip_jsonc(&text)).map_err(|e| format!("invalid JSON: {e}"))
    };
    let document = match document {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return broken(format!(
                "the top level is {}, not an object",
                json_kind(&other)
            ));
        }
        Err(why) => return broken(why),
    };
    let maps = match server_maps(&document, format, env) {
        Ok(maps) => maps,
        Err(why) => return broken(why),
    };
    let file_description = document
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let ctx = EntryContext {
        env,
        format,
        base_dir: path.parent().unwrap_or_else(|| Path::new(".")),
        file_description: file_description.as_deref(),
    };
    let mut defined = 0;
    for (scope, servers) in maps {
        for (name, value) in servers {
            defined += 1;
            let skip = |why: String| Skipped {
                name: name.clone(),
                source: path.to_path_buf(),
                why,
            };
            if name.trim().is_empty() {
                catalogue.skipped.push(skip("the name is empty".into()));
                continue;
            }
            if name.chars().count() > MAX_NAME_CHARS {
                catalogue.skipped.push(skip(format!(
                    "the name is longer than {MAX_NAME_CHARS} characters"
                )));
                continue;
            }
            match parse_entry(&ctx, value) {
                Ok((transport, description, warnings)) => {
                    if let Transport::Stdio { command, args, .. } = &transport
                        && !env.self_server_allowed()
                        && launches_self(env, command, args)
                    {
                        catalogue.skipped.push(skip(format!(
                            "it would launch this bridge itself (recursion guard); set {}=1 \
                             to allow it",
                            settings::ALLOW_SELF_SERVER.about().env
                        )));
                        continue;
                    }
                    candidates.push(Candidate {
                        name: name.clone(),
                        source: path.to_path_buf(),
                        scope: scope.clone(),
                        entry: ServerEntry {
                            name: name.clone(),
                            alias: String::new(),
                            description,
                            source: path.to_path_buf(),
                            transport,
                            warnings,
                        },
                    });
                }
                Err(why) => catalogue.skipped.push(skip(why)),
            }
        }
    }
    debug!(file = %path.display(), servers = defined, "read a server config");
    catalogue.files.push(FileReport {
        path: path.to_path_buf(),
        status: FileStatus::Read { servers: defined },
    });
}

/// The file's text, `None` when it does not exist; errors are reasons for the user.
fn read_capped(path: &Path) -> Result<Option<String>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if meta.is_dir() {
        return Err("it is a folder, not a file".into());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "it is {} bytes, more than the {MAX_CONFIG_BYTES} we read",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "it is more than the {MAX_CONFIG_BYTES} bytes we read"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    Ok(Some(
        text.strip_prefix('\u{feff}')
            .map_or_else(|| text.clone(), str::to_string),
    ))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A server map found in a file, with a note on where in the file when it matters.
type ServerMap<'a> = (Option<String>, &'a Map<String, Value>);

fn as_server_map<'a>(value: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("`{key}` is {}, not an object of servers", json_kind(value)))
}

/// Add the server map under `key` (if present) to `maps`; whether it was present.
fn push_map<'a>(
    maps: &mut Vec<ServerMap<'a>>,
    key: &str,
    value: Option<&'a Value>,
) -> Result<bool, String> {
    match value {
        Some(value) => {
            maps.push((None, as_server_map(value, key)?));
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The server maps of a document, per its format.
fn server_maps<'a>(
    document: &'a Map<String, Value>,
    format: Format,
    env: &DiscoveryEnv,
) -> Result<Vec<ServerMap<'a>>, String> {
    let mut maps: Vec<ServerMap<'a>> = Vec::new();
    match format {
        Format::Generic => {
            let mut found = false;
            for key in ["mcpServers", "servers", "mcp_servers"] {
                found |= push_map(&mut maps, key, document.get(key))?;
            }
            if let Some(mcp) = document.get("mcp") {
                push_mcp_key(&mut maps, mcp)?;
                found = true;
            }
            if !found {
                return Err("it has no `mcpServers` (or `servers`, `mcp_servers`) object".into());
            }
        }
        Format::McpServers | Format::Gemini => {
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::ClaudeJson => {
            if let Some(projects) = document.get("projects").and_then(Value::as_object) {
                let canonical = std::fs::canonicalize(&env.cwd).ok();
                let project = projects.iter().find(|(dir, _)| {
                    let dir = Path::new(dir.as_str());
                    dir == env.cwd || canonical.as_deref() == Some(dir)
                });
                if let Some((dir, project)) = project
                    && let Some(servers) = project.get("mcpServers")
                {
                    maps.push((
                        Some(format!("project {dir}")),
                        as_server_map(servers, "mcpServers")?,
                    ));
                }
            }
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::VsCodeMcp => {
            push_map(&mut maps, "servers", document.get("servers"))?;
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::VsCodeSettings => {
            let nested = document.get("mcp").and_then(|m| m.get("servers"));
            push_map(&mut maps, "mcp.servers", nested)?;
            push_map(&mut maps, "mcp.servers", document.get("mcp.servers"))?;
        }
        Format::OpenCode => {
            if let Some(mcp) = document.get("mcp") {
                push_mcp_key(&mut maps, mcp)?;
            }
            push_map(&mut maps, "mcpServers", document.get("mcpServers"))?;
        }
        Format::Codex => {
            push_map(&mut maps, "mcp_servers", document.get("mcp_servers"))?;
        }
    }
    Ok(maps)
}

/// opencode's `mcp`: either the server map itself, or (v2 and VS Code) `{servers: {...}}`.
fn push_mcp_key<'a>(maps: &mut Vec<ServerMap<'a>>, mcp: &'a Value) -> Result<(), String> {
    match mcp.get("servers") {
        Some(servers) => maps.push((None, as_server_map(servers, "mcp.servers")?)),
        None => maps.push((None, as_server_map(mcp, "mcp")?)),
    }
    Ok(())
}

/// What parsing an entry needs to know about its file.
struct EntryContext<'a> {
    env: &'a DiscoveryEnv,
    format: Format,
    base_dir: &'a Path,
    file_description: Option<&'a str>,
}

/// Expansion state for one entry: the warnings it produced.
struct Expander<'a> {
    ctx: &'a EntryContext<'a>,
    warnings: Vec<String>,
}

impl Expander<'_> {
    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    fn lookup(&mut self, name: &str, written: &str) -> String {
        if let Some(value) = self.ctx.env.var(name) {
            return value;
        }
        self.warn(format!(
            "{written} is not set; it expands to an empty string"
        ));
        String::new()
    }

    /// Expand `${...}` (and, in opencode files, `{env:...}` / `{file:...}`) in `text`.
    fn expand(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        loop {
            let dollar = rest.find("${");
            let brace = (self.ctx.format == Format::OpenCode)
                .then(|| {
                    [rest.find("{env:"), rest.find("{file:")]
                        .into_iter()
                        .flatten()
                        .min()
                })
                .flatten();
            let (start, skip) = match (dollar, brace) {
                (Some(d), Some(b)) if b < d => (b, 1),
                (Some(d), _) => (d, 2),
                (None, Some(b)) => (b, 1),
                (None, None) => break,
            };
            let Some(len) = rest[start + skip..].find('}') else {
                break;
            };
            let inner = &rest[start + skip..start + skip + len];
            let written = &rest[start..=start + skip + len];
            out.push_str(&rest[..start]);
            let value = if skip == 2 {
                self.dollar(inner, written)?
            } else {
                self.opencode(inner, written)
            };
            out.push_str(&value);
            rest = &rest[start + skip + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The inside of `${...}`.
    fn dollar(&mut self, inner: &str, written: &str) -> Result<String, String> {
        if let Some(name) = inner.strip_prefix("env:") {
            return Ok(self.lookup(name, written));
        }
        if self.ctx.format.is_vscode() {
            match inner {
                "workspaceFolder" => return Ok(self.ctx.env.cwd.display().to_string()),
                "userHome" => {
                    if let Some(home) = &self.ctx.env.home {
                        return Ok(home.display().to_string());
                    }
                }
                _ => {}
            }
        }
        if let Some((name, default)) = inner.split_once(":-")
            && is_var_name(name)
        {
            return Ok(self
                .ctx
                .env
                .var(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()));
        }
        if is_var_name(inner) {
            return Ok(self.lookup(inner, written));
        }
        if inner.contains(':') {
            return Err(format!(
                "it uses {written}, which only the client that wrote the file can resolve \
                 (an interactive input or editor setting)"
            ));
        }
        Err(format!(
            "{written} is not a variable reference we understand"
        ))
    }

    /// The inside of opencode's `{env:...}` or `{file:...}`.
    fn opencode(&mut self, inner: &str, written: &str) -> String {
        if let Some(name) = inner.strip_prefix("env:") {
            return self.lookup(name, written);
        }
        let raw = inner.strip_prefix("file:").unwrap_or(inner);
        let path = resolve_path(self.ctx, raw);
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut text = String::new();
            f.take(MAX_SUBSTITUTED_FILE_BYTES)
                .read_to_string(&mut text)?;
            Ok(text)
        });
        match read {
            Ok(text) => text.trim_end().to_string(),
            Err(e) => {
                self.warn(format!(
                    "{written}: cannot read {}: {e}; it expands to an empty string",
                    path.display()
                ));
                String::new()
            }
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A path from a config: `~/` is the home directory, relative is relative to the file.
fn resolve_path(ctx: &EntryContext<'_>, raw: &str) -> PathBuf {
    if let (Some(rest), Some(home)) = (raw.strip_prefix("~/"), &ctx.env.home) {
        return home.join(rest);
    }
    if raw == "~"
        && let Some(home) = &ctx.env.home
    {
        return home.clone();
    }
    let path = Path::new(raw);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.base_dir.join(path)
    }
}

/// A string-ish JSON scalar as text (configs write ports and flags as numbers or booleans).
fn scalar_text(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("{what} is {}, not a string", json_kind(other))),
    }
}

/// A `{KEY: value}` object, or a list of `KEY=VALUE` strings.
fn string_map(
    value: &Value,
    what: &str,
    expander: &mut Expander<'_>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                let text = scalar_text(value, &format!("{what} `{key}`"))?;
                out.insert(key.clone(), expander.expand(&text)?);
            }
        }
        Value::Array(items) => {
            for item in items {
                let text = scalar_text(item, &format!("an item of {what}"))?;
                let Some((key, value)) = text.split_once('=') else {
                    return Err(format!("{what} item {text:?} is not KEY=VALUE"));
                };
                out.insert(key.to_string(), expander.expand(value)?);
            }
        }
        other => return Err(format!("{what} is {}, not an object", json_kind(other))),
    }
    Ok(out)
}

/// One entry's transport, description and warnings, or why it is skipped.
fn parse_entry(
    ctx: &EntryContext<'_>,
    value: &Value,
) -> Result<(Transport, Option<String>, Vec<String>), String> {
    let Some(entry) = value.as_object() else {
        return Err(format!("the entry is {}, not an object", json_kind(value)));
    };
    if entry.get("disabled").and_then(Value::as_bool) == Some(true) {
        return Err("it is disabled in its config (`disabled: true`)".into());
    }
    if entry.get("enabled").and_then(Value::as_bool) == Some(false) {
        return Err("it is disabled in its config (`enabled: false`)".into());
    }
    let description = entry
        .get("description")
        .and_then(Value::as_str)
        .or(ctx.file_description)
        .map(str::to_string);
    let mut expander = Expander {
        ctx,
        warnings: Vec::new(),
    };
    let kind = match entry.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.trim().to_ascii_lowercase()),
        Some(other) => return Err(format!("`type` is {}, not a string", json_kind(other))),
    };
    let url_key = ["url", "serverUrl", "httpUrl"]
        .into_iter()
        .find(|k| entry.contains_key(*k));
    let transport = match kind.as_deref() {
        Some("stdio" | "local") => stdio(ctx, entry, &mut expander)?,
        Some("http" | "streamable-http" | "streamable_http" | "streamablehttp" | "remote") => {
            remote(entry, url_key, Some(RemoteKind::Http), &mut expander)?
        }
        Some("sse") => remote(entry, url_key, Some(RemoteKind::Sse), &mut expander)?,
        Some(other) => {
            return Err(format!(
                "its type {other:?} is unknown; expected stdio, http or sse"
            ));
        }
        None if entry.contains_key("command") => stdio(ctx, entry, &mut expander)?,
        None if url_key.is_some() => {
            let kind = match url_key {
                Some("httpUrl") => Some(RemoteKind::Http),
                Some("url") if ctx.format == Format::Gemini => Some(RemoteKind::Sse),
                _ => None,
            };
            remote(entry, url_key, kind, &mut expander)?
        }
        None => return Err("it has neither a `command` nor a `url`".into()),
    };
    Ok((transport, description, expander.warnings))
}

fn stdio(
    ctx: &EntryContext<'_>,
    entry: &Map<String, Value>,
    expander: &mut Expander<'_>,
) -> Result<Transport, String> {
    let mut words: Vec<String> = match entry.get("command") {
        Some(Value::String(command)) => vec![command.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| scalar_text(item, "an item of `command`"))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`command` is {}, not a string", json_kind(other))),
        None => return Err("it is a stdio server without a `command`".into()),
    };
    match entry.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                words.push(scalar_text(item, "an item of `args`")?);
            }
        }
        Some(other) => return Err(format!("`args` is {}, not a list", json_kind(other))),
    }
    let mut words = words
        .iter()
        .map(|w| expander.expand(w))
        .collect::<Result<Vec<String>, String>>()?
        .into_iter();
    let command = words.next().unwrap_or_default();
    if command.trim().is_empty() {
        return Err("its `command` is empty".into());
    }
    let command = if command.starts_with("~/") {
        resolve_path(ctx, &command).display().to_string()
    } else {
        command
    };
    let mut env = BTreeMap::new();
    match entry.get("envFile") {
        None | Some(Value::Null) => {}
        Some(Value::String(path)) => {
            let path = resolve_path(ctx, &expander.expand(path)?);
            env.extend(read_env_file(&path, expander));
        }
        Some(other) => return Err(format!("`envFile` is {}, not a string", json_kind(other))),
    }
    for key in ["env", "environment"] {
        if let Some(value) = entry.get(key) {
            env.extend(string_map(value, &format!("`{key}`"), expander)?);
        }
    }
    let cwd = match entry.get("cwd") {
        None | Some(Value::Null) => None,
        Some(Value::String(cwd)) if cwd.trim().is_empty() => None,
        Some(Value::String(cwd)) => Some(resolve_path(ctx, &expander.expand(cwd)?)),
        Some(other) => return Err(format!("`cwd` is {}, not a string", json_kind(other))),
    };
    Ok(Transport::Stdio {
        command,
        args: words.collect(),
        env,
        cwd,
    })
}

/// The `KEY=VALUE` lines of a dotenv file (VS Code's and Cursor's `envFile`): blank lines
/// and `#` comments skipped, an `export ` prefix and matching quotes around the value
/// removed, no expansion inside. An unreadable file is a warning, not a skipped entry.
fn read_env_file(path: &Path, expander: &mut Expander<'_>) -> BTreeMap<String, String> {
    let read = std::fs::File::open(path).and_then(|f| {
        let mut text = String::new();
        f.take(MAX_SUBSTITUTED_FILE_BYTES)
            .read_to_string(&mut text)?;
        Ok(text)
    });
    let text = match read {
        Ok(text) => text,
        Err(e) => {
            expander.warn(format!(
                "its envFile {} cannot be read ({e}); its variables are not set",
                path.display()
            ));
            return BTreeMap::new();
        }
    };
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .into_iter()
            .find_map(|q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)));
        vars.insert(
            key.trim().to_string(),
            unquoted.unwrap_or(value).to_string(),
        );
    }
    vars
}

fn remote(
    entry: &Map<String, Value>,
    url_key: Option<&str>,
    kind: Option<RemoteKind>,
    expander: &mut Expander<'_>,
) -> Result<Transport, String> {
    let Some(key) = url_key else {
        return Err("it is a remote server without a `url`".into());
    };
    let url = match &entry[key] {
        Value::String(url) => expander.expand(url.trim())?,
        other => return Err(format!("`{key}` is {}, not a string", json_kind(other))),
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("its url {url:?} is not an http:// or https:// URL"));
    }
    let mut headers = BTreeMap::new();
    for key in ["headers", "http_headers"] {
        if let Some(value) = entry.get(key) {
            headers.extend(string_map(value, &format!("`{key}`"), expander)?);
        }
    }
    // Codex: headers whose values come from named variables.
    if let Some(value) = entry.get("env_http_headers") {
        let Some(map) = value.as_object() else {
            return Err("`env_http_headers` is not an object".into());
        };
        for (header, var) in map {
            let var = scalar_text(var, &format!("`env_http_headers` `{header}`"))?;
            let value = expander.lookup(&var, &format!("${{{var}}}"));
            headers.insert(header.clone(), value);
        }
    }
    if let Some(var) = entry.get("bearer_token_env_var") {
        let var = scalar_text(var, "`bearer_token_env_var`")?;
        let token = expander.lookup(&var, &format!("${{{var}}}"));
        headers.insert("Authorization".into(), format!("Bearer {token}"));
    }
    let kind = kind.unwrap_or_else(|| {
        let path = lower.split(['?', '#']).next().unwrap_or_default();
        if path.trim_end_matches('/').ends_with("/sse") {
            RemoteKind::Sse
        } else {
            RemoteKind::Http
        }
    });
    Ok(Transport::Remote { url, headers, kind })
}

/// Whether a stdio entry would start this bridge: by name (`mcp-server-code-execution-mode`
/// as the program or the program's file name, or as a bare argument of a launcher such as
/// `uvx` or `pipx run`, with or without a version suffix), by module
/// (`python -m mcp_server_code_execution_mode`), or by path (the command resolves to this
/// very executable). Arguments that are paths (`/src/mcp-server-code-execution-mode`, say a
/// folder given to a filesystem server) do not count: they name files, not programs.
fn launches_self(env: &DiscoveryEnv, command: &str, args: &[String]) -> bool {
    let names_bridge = |word: &str| {
        let word = word.strip_suffix(".exe").unwrap_or(word);
        let base = word
            .split(['@', '=', '[', '<', '>', '~'])
            .next()
            .unwrap_or(word);
        base == BRIDGE_NAME || base == BRIDGE_MODULE
    };
    let program = command.rsplit(['/', '\\']).next().unwrap_or(command);
    let is_path = |arg: &&String| arg.contains(['/', '\\']);
    if names_bridge(program) || args.iter().filter(|a| !is_path(a)).any(|a| names_bridge(a)) {
        return true;
    }
    let Some(self_exe) = &env.self_exe else {
        return false;
    };
    let Ok(self_exe) = std::fs::canonicalize(self_exe) else {
        return false;
    };
    let resolved = if command.contains('/') {
        Some(env.cwd.join(command))
    } else {
        env.var("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(command))
                .find(|candidate| candidate.is_file())
        })
    };
    resolved
        .and_then(|p| std::fs::canonicalize(p).ok())
        .is_some_and(|p| p == self_exe)
}

/// Remove `//` and `/* */` comments and trailing commas from JSON text (VS Code's JSONC),
/// leaving strings alone. Comments become spaces, so line and column numbers in parse errors
/// still point at the original text.
pub fn strip_jsonc(text: &str) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Str,
        Escape,
        Line,
        Block,
    }
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut state = State::Code;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match state {
            State::Code => match (b, next) {
                (b'"', _) => {
                    state = State::Str;
                    out.push(b);
                }
                (b'/', Some(b'/')) => {
                    state = State::Line;
                    out.extend_from_slice(b"  ");
                    i += 1;
                }
                (b'/', Some(b'*')) => {
                    state = State::Block;
                    out.extend_from_slice(b"  ");
                    i += 1;
                }
                _ => out.push(b),
            },
            State::Str => {
                match b {
                    b'\\' => state = State::Escape,
                    b'"' => state = State::Code,
                    _ => {}
                }
                out.push(b);
            }
            State::Escape => {
                state = State::Str;
                out.push(b);
            }
            State::Line => {
                if b == b'\n' {
                    state = State::Code;
                    out.push(b);
                } else {
                    out.push(b' ');
                }
            }
            State::Block => {
                if b == b'*' && next == Some(b'/') {
                    state = State::Code;
                    out.extend_from_slice(b"  ");
                    i += 1;
                } else {
                    out.push(if b == b'\n' { b'\n' } else { b' ' });
                }
            }
        }
        i += 1;
    }
    // Trailing commas: a comma followed (after whitespace) by `}` or `]`, outside strings.
    let mut in_string = false;
    let mut escaped = false;
    for i in 0..out.len() {
        let b = out[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b',' => {
                let following = out[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if matches!(following, Some(b'}' | b']')) {
                    out[i] = b' ';
                }
            }
            _ => {}
        }
    }
    // Only ASCII bytes were replaced, and whole multi-byte characters at that.
    String::from_utf8(out).expect("stripping comments keeps UTF-8 valid")
}

/// Whether a variable, header or flag name looks like it holds a credential.
fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "key",
        "auth",
        "credential",
        "cookie",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Arguments with credential-looking values hidden: `--token=x` → `--token=***`, and the
/// word after `--api-key` → `***`.
fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
            continue;
        }
        if arg.starts_with('-') {
            if let Some((flag, _)) = arg.split_once('=') {
                if looks_secret(flag) {
                    out.push(format!("{flag}=***"));
                    continue;
                }
            } else if looks_secret(arg) {
                hide_next = true;
            }
        }
        out.push(arg.clone());
    }
    out
}

/// A URL with its user info and query hidden (both often carry credentials).
fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?***"),
        None => (url, ""),
    };
    let redacted = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    format!("{redacted}{query}")
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

fn redacted_pairs(map: &BTreeMap<String, String>) -> String {
    map.keys()
        .map(|k| format!("{k}=***"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `servers` subcommand's report: every server (name, alias, how it is reached with
/// secrets hidden, source), every file read, every entry skipped with why.
pub fn render_report(catalogue: &Catalogue) -> String {
    const MAX_COLUMN: usize = 48;
    let mut out = String::new();
    if catalogue.servers.is_empty() {
        out.push_str("No MCP servers found.\n");
    } else {
        let _ = writeln!(
            out,
            "{} (the first definition of a name wins):",
            plural(catalogue.servers.len(), "server", "servers")
        );
        let rows: Vec<[String; 4]> = catalogue
            .servers
            .iter()
            .map(|s| {
                [
                    s.name.clone(),
                    s.alias.clone(),
                    transport_summary(&s.transport),
                    s.source.display().to_string(),
                ]
            })
            .collect();
        let header = ["NAME", "ALIAS", "TRANSPORT", "SOURCE"].map(String::from);
        let widths: Vec<usize> = (0..3)
            .map(|col| {
                std::iter::once(&header)
                    .chain(&rows)
                    .map(|r| r[col].chars().count())
                    .max()
                    .unwrap_or(0)
                    .min(MAX_COLUMN)
            })
            .collect();
        let line = |row: &[String; 4]| {
            format!(
                "  {:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        };
        let _ = writeln!(out, "{}", line(&header).trim_end());
        let indent = " ".repeat(widths[0] + widths[1] + 6);
        for (server, row) in catalogue.servers.iter().zip(&rows) {
            let _ = writeln!(out, "{}", line(row).trim_end());
            if let Some(description) = &server.description {
                let _ = writeln!(out, "{indent}description: {description}");
            }
            match &server.transport {
                Transport::Stdio { env, cwd, .. } => {
                    if !env.is_empty() {
                        let _ = writeln!(out, "{indent}env: {}", redacted_pairs(env));
                    }
                    if let Some(cwd) = cwd {
                        let _ = writeln!(out, "{indent}cwd: {}", cwd.display());
                    }
                }
                Transport::Remote { headers, .. } => {
                    if !headers.is_empty() {
                        let _ = writeln!(out, "{indent}headers: {}", redacted_pairs(headers));
                    }
                }
            }
            for warning in &server.warnings {
                let _ = writeln!(out, "{indent}warning: {warning}");
            }
        }
    }
    out.push('\n');
    if catalogue.files.is_empty() {
        out.push_str("No config files found.\n");
    } else {
        let _ = writeln!(
            out,
            "{} found:",
            plural(catalogue.files.len(), "config file", "config files")
        );
        for file in &catalogue.files {
            let status = match &file.status {
                FileStatus::Read { servers } => plural(*servers, "server", "servers"),
                FileStatus::Broken { why } => format!("skipped: {why}"),
            };
            let _ = writeln!(out, "  {}: {status}", file.path.display());
        }
    }
    if !catalogue.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n{} skipped:",
            plural(catalogue.skipped.len(), "entry", "entries")
        );
        for skipped in &catalogue.skipped {
            let _ = writeln!(
                out,
                "  {} in {}: {}",
                skipped.name,
                skipped.source.display(),
                skipped.why
            );
        }
    }
    out
}

/// Discover from the real environment and render the `servers` report: what the `servers`
/// subcommand prints. `servers_config` are the `--servers-config` paths.
pub fn servers_report(state_dir: PathBuf, servers_config: &[PathBuf]) -> String {
    render_report(&discover(&DiscoveryEnv::from_process(
        state_dir,
        servers_config,
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;

    use serde_json::json;
    use tempfile::TempDir;

    use super::*;

    /// A home, a working directory and a state dir in one temporary folder.
    struct World {
        _root: TempDir,
        home: PathBuf,
        cwd: PathBuf,
        state: PathBuf,
        vars: HashMap<String, String>,
        explicit: Vec<PathBuf>,
        self_exe: Option<PathBuf>,
    }

    fn write_file(path: &Path, text: &str) -> PathBuf {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        path.to_path_buf()
    }

    impl World {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            let home = root.path().join("home");
            let cwd = root.path().join("project");
            let state = home.join("MCPs");
            for dir in [&home, &cwd] {
                fs::create_dir_all(dir).unwrap();
            }
            Self {
                _root: root,
                home,
                cwd,
                state,
                vars: HashMap::new(),
                explicit: Vec::new(),
                self_exe: None,
            }
        }

        fn var(mut self, name: &str, value: &str) -> Self {
            self.vars.insert(name.into(), value.into());
            self
        }

        fn home_file(&self, rel: &str, text: &str) -> PathBuf {
            write_file(&self.home.join(rel), text)
        }

        fn cwd_file(&self, rel: &str, text: &str) -> PathBuf {
            write_file(&self.cwd.join(rel), text)
        }

        fn state_file(&self, rel: &str, text: &str) -> PathBuf {
            write_file(&self.state.join(rel), text)
        }

        fn env(&self) -> DiscoveryEnv {
            let vars = self.vars.clone();
            DiscoveryEnv {
                home: Some(self.home.clone()),
                cwd: self.cwd.clone(),
                state_dir: self.state.clone(),
                explicit: self.explicit.clone(),
                vars: Arc::new(move |name| vars.get(name).cloned()),
                self_exe: self.self_exe.clone(),
            }
        }

        fn discover(&self) -> Catalogue {
            discover(&self.env())
        }
    }

    fn stdio_of(
        entry: &ServerEntry,
    ) -> (&str, &[String], &BTreeMap<String, String>, Option<&Path>) {
        match &entry.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => (command, args, env, cwd.as_deref()),
            other @ Transport::Remote { .. } => panic!("expected stdio, got {other:?}"),
        }
    }

    fn remote_of(entry: &ServerEntry) -> (&str, &BTreeMap<String, String>, RemoteKind) {
        match &entry.transport {
            Transport::Remote { url, headers, kind } => (url, headers, *kind),
            other @ Transport::Stdio { .. } => panic!("expected remote, got {other:?}"),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn skipped_why<'a>(catalogue: &'a Catalogue, name: &str) -> &'a str {
        &catalogue
            .skipped
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} not skipped: {catalogue:#?}"))
            .why
    }

    #[test]
    fn nothing_configured_is_an_empty_catalogue() {
        let world = World::new();
        let catalogue = world.discover();
        assert_eq!(catalogue, Catalogue::default());
        assert!(render_report(&catalogue).contains("No MCP servers found."));
    }

    #[test]
    fn state_dir_reference_format_with_descriptions() {
        let world = World::new();
        let path = world.state_file(
            "tools.json",
            r#"{"description": "Everyday tools",
                "mcpServers": {
                  "time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone", "UTC"]},
                  "git": {"command": "uvx", "args": ["mcp-server-git"], "description": "Git repos",
                          "env": {"GIT_PAGER": "cat"}, "cwd": "/tmp"}
                }}"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["time", "git"]);
        let time = catalogue.get("time").unwrap();
        assert_eq!(time.description.as_deref(), Some("Everyday tools"));
        assert_eq!(time.source, path);
        let (command, args, env, cwd) = stdio_of(time);
        assert_eq!(command, "uvx");
        assert_eq!(args, ["mcp-server-time", "--local-timezone", "UTC"]);
        assert!(env.is_empty());
        assert_eq!(cwd, None);
        let git = catalogue.get("git").unwrap();
        assert_eq!(git.description.as_deref(), Some("Git repos"));
        let (_, _, env, cwd) = stdio_of(git);
        assert_eq!(env, &map(&[("GIT_PAGER", "cat")]));
        assert_eq!(cwd, Some(Path::new("/tmp")));
        assert_eq!(
            catalogue.files,
            [FileReport {
                path,
                status: FileStatus::Read { servers: 2 }
            }]
        );
        assert_eq!(
            catalogue.hello_entries(),
            json!([
                {"name": "time", "alias": "time", "description": "Everyday tools"},
                {"name": "git", "alias": "git", "description": "Git repos"},
            ])
        );
    }

    #[test]
    fn state_dir_files_are_read_sorted_and_toml_too() {
        let world = World::new();
        world.state_file(
            "b.json",
            r#"{"mcpServers": {"b": {"command": "b"}, "x": {"command": "from-b"}}}"#,
        );
        world.state_file(
            "a.toml",
            "[mcpServers.a]\ncommand = \"a\"\nargs = [\"--port\", \"1\"]\n\n[mcpServers.x]\ncommand = \"from-a\"\n",
        );
        world.state_file("notes.txt", "not a config");
        world.state_file(".hidden.json", "{oops");
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["a", "x", "b"]);
        assert_eq!(stdio_of(catalogue.get("x").unwrap()).0, "from-a");
        assert_eq!(stdio_of(catalogue.get("a").unwrap()).1, ["--port", "1"]);
        assert_eq!(catalogue.files.len(), 2);
    }

    #[test]
    fn explicit_file_comes_first_and_missing_explicit_is_reported() {
        let mut world = World::new();
        world.state_file(
            "s.json",
            r#"{"mcpServers": {"time": {"command": "state-time"}}}"#,
        );
        let explicit = write_file(
            &world.home.join("elsewhere/servers.json"),
            r#"{"mcpServers": {"time": {"command": "explicit-time"}}}"#,
        );
        let missing = world.home.join("nope.json");
        world.explicit = vec![missing.clone(), explicit.clone()];
        let catalogue = world.discover();
        assert_eq!(stdio_of(catalogue.get("time").unwrap()).0, "explicit-time");
        assert_eq!(
            catalogue.files[0],
            FileReport {
                path: missing,
                status: FileStatus::Broken {
                    why: "the file does not exist".into()
                }
            }
        );
        let why = skipped_why(&catalogue, "time");
        assert!(
            why.contains("shadowed") && why.contains(&explicit.display().to_string()),
            "{why}"
        );
    }

    #[test]
    fn explicit_folder_is_read_like_the_state_dir() {
        let mut world = World::new();
        let folder = world.home.join("configs");
        write_file(
            &folder.join("one.json"),
            r#"{"mcpServers": {"one": {"command": "1"}}}"#,
        );
        write_file(
            &folder.join("two.toml"),
            "[mcp_servers.two]\ncommand = \"2\"\n",
        );
        world.explicit = vec![folder];
        assert_eq!(world.discover().names(), ["one", "two"]);
    }

    #[test]
    fn from_process_prefers_flags_over_the_variable() {
        // Flags replace MCP_SERVERS_CONFIG, like every other setting.
        let env = DiscoveryEnv::from_process(PathBuf::from("/s"), &[PathBuf::from("/flag.json")]);
        assert_eq!(env.explicit, [PathBuf::from("/flag.json")]);
        assert!(format!("{env:?}").contains("/flag.json"));
    }

    #[test]
    fn first_definition_wins_across_clients_and_shadowing_names_both() {
        let world = World::new();
        let claude = world.home_file(
            ".claude.json",
            r#"{"mcpServers": {"fs": {"command": "claude-fs"}}}"#,
        );
        let cursor = world.home_file(
            ".cursor/mcp.json",
            r#"{"mcpServers": {"fs": {"command": "cursor-fs"}, "only-cursor": {"command": "c"}}}"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["fs", "only-cursor"]);
        assert_eq!(stdio_of(catalogue.get("fs").unwrap()).0, "claude-fs");
        assert_eq!(catalogue.get("only-cursor").unwrap().alias, "only_cursor");
        let shadowed = &catalogue.skipped[0];
        assert_eq!(shadowed.name, "fs");
        assert_eq!(shadowed.source, cursor);
        assert!(
            shadowed.why.contains(&claude.display().to_string()),
            "{}",
            shadowed.why
        );
        assert_eq!(
            catalogue
                .files
                .iter()
                .map(|f| &f.status)
                .collect::<Vec<_>>(),
            [
                &FileStatus::Read { servers: 1 },
                &FileStatus::Read { servers: 2 }
            ]
        );
    }

    #[test]
    fn aliases_are_assigned_over_the_final_list() {
        let world = World::new();
        world.state_file(
            "a.json",
            r#"{"mcpServers": {"My-Server": {"command": "a"}, "my server": {"command": "b"},
                               "2fa": {"command": "c"}}}"#,
        );
        let catalogue = world.discover();
        let aliases: Vec<&str> = catalogue.servers.iter().map(|s| s.alias.as_str()).collect();
        assert_eq!(aliases, ["my_server", "my_server_2", "_2fa"]);
    }

    #[test]
    fn claude_json_reads_the_current_project_first_then_the_top_level() {
        let world = World::new();
        let cwd = world.cwd.display().to_string();
        world.home_file(
            ".claude.json",
            &json!({
                "mcpServers": {"shared": {"command": "user-shared"}, "user": {"command": "u"}},
                "projects": {
                    cwd.clone(): {"mcpServers": {"shared": {"command": "project-shared"}, "local": {"command": "l"}}},
                    "/some/other/project": {"mcpServers": {"other": {"command": "o"}}}
                },
                "numStartups": 12
            })
            .to_string(),
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["shared", "local", "user"]);
        assert_eq!(
            stdio_of(catalogue.get("shared").unwrap()).0,
            "project-shared"
        );
        let why = skipped_why(&catalogue, "shared");
        assert!(why.contains(&format!("project {cwd}")), "{why}");
    }

    #[test]
    fn claude_code_and_desktop_configs() {
        let world = World::new();
        world.home_file(
            ".config/Claude/claude_desktop_config.json",
            r#"{"mcpServers": {"desktop": {"command": "d"}}, "globalShortcut": "x"}"#,
        );
        world.home_file(".claude/settings.json", r#"{"permissions": {"allow": []}}"#);
        world.cwd_file(
            ".mcp.json",
            r#"{"mcpServers": {"proj": {"type": "stdio", "command": "p"},
                               "api": {"type": "http", "url": "https://api.example.com/mcp",
                                       "headers": {"Authorization": "Bearer ${API_TOKEN}"}}}}"#,
        );
        let catalogue = world.discover();
        if cfg!(target_os = "macos") {
            assert_eq!(catalogue.names(), ["proj", "api"]);
        } else {
            assert_eq!(catalogue.names(), ["desktop", "proj", "api"]);
        }
        let (url, headers, kind) = remote_of(catalogue.get("api").unwrap());
        assert_eq!(url, "https://api.example.com/mcp");
        assert_eq!(kind, RemoteKind::Http);
        assert_eq!(headers, &map(&[("Authorization", "Bearer ")]));
        // Settings without servers are read and count zero.
        assert!(
            catalogue
                .files
                .iter()
                .any(|f| f.path.ends_with(".claude/settings.json")
                    && f.status == FileStatus::Read { servers: 0 })
        );
    }

    #[test]
    fn vscode_workspace_mcp_json_with_comments_and_inputs() {
        let world = World::new().var("HOME_TOKEN", "t0k");
        world.cwd_file(
            ".vscode/mcp.json",
            r#"{
              // VS Code writes comments
              "inputs": [{"type": "promptString", "id": "key", "password": true}],
              "servers": {
                "local": {
                  "type": "stdio",
                  "command": "node",
                  "args": ["${workspaceFolder}/server.js", "--home", "${userHome}"], /* inline */
                  "env": {"TOKEN": "${env:HOME_TOKEN}",},
                },
                "prompted": {"type": "http", "url": "https://x.example/mcp",
                             "headers": {"Authorization": "Bearer ${input:key}"}},
                "events": {"type": "sse", "url": "https://x.example/sse"},
              },
            }"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["local", "events"]);
        let (command, args, env, _) = stdio_of(catalogue.get("local").unwrap());
        assert_eq!(command, "node");
        assert_eq!(
            args,
            [
                format!("{}/server.js", world.cwd.display()),
                "--home".into(),
                world.home.display().to_string()
            ]
        );
        assert_eq!(env, &map(&[("TOKEN", "t0k")]));
        assert!(skipped_why(&catalogue, "prompted").contains("${input:key}"));
        assert_eq!(
            remote_of(catalogue.get("events").unwrap()).2,
            RemoteKind::Sse
        );
    }

    #[test]
    fn vscode_user_settings_with_comments_and_trailing_commas() {
        let world = World::new();
        let dir = if cfg!(target_os = "macos") {
            "Library/Application Support/Code/User"
        } else {
            ".config/Code/User"
        };
        world.home_file(
            &format!("{dir}/settings.json"),
            r#"{
              // editor settings
              "editor.fontSize": 14, // trailing comment with "quotes"
              "files.exclude": {"**/.git": true,},
              "url.with.slashes": "http://example.com/*not a comment*/",
              "mcp": {
                "servers": {
                  "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory",],},
                },
              },
            }"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["memory"]);
        assert_eq!(
            stdio_of(catalogue.get("memory").unwrap()).1,
            ["-y", "@modelcontextprotocol/server-memory"]
        );
    }

    #[test]
    fn cursor_windsurf_and_gemini_formats() {
        let world = World::new();
        world.cwd_file(
            ".cursor/mcp.json",
            r#"{"mcpServers": {"cursor-remote": {"url": "https://c.example/mcp"}}}"#,
        );
        world.home_file(
            ".codeium/windsurf/mcp_config.json",
            r#"{"mcpServers": {"windsurf": {"serverUrl": "https://w.example/sse"}, "off": {"command": "x", "disabled": true}}}"#,
        );
        world.home_file(
            ".gemini/settings.json",
            r#"{"theme": "Default", "mcpServers": {
                "gem-sse": {"url": "https://g.example/events"},
                "gem-http": {"httpUrl": "https://g.example/mcp", "headers": {"X-Key": "k"}},
                "gem-stdio": {"command": "python", "args": ["-m", "srv"], "cwd": "./srv"}}}"#,
        );
        let catalogue = world.discover();
        assert_eq!(
            remote_of(catalogue.get("cursor-remote").unwrap()).2,
            RemoteKind::Http
        );
        assert_eq!(
            remote_of(catalogue.get("windsurf").unwrap()).2,
            RemoteKind::Sse
        );
        assert_eq!(
            remote_of(catalogue.get("gem-sse").unwrap()).2,
            RemoteKind::Sse
        );
        let (url, headers, kind) = remote_of(catalogue.get("gem-http").unwrap());
        assert_eq!((url, kind), ("https://g.example/mcp", RemoteKind::Http));
        assert_eq!(headers, &map(&[("X-Key", "k")]));
        // A relative cwd is relative to the config file's folder.
        assert_eq!(
            stdio_of(catalogue.get("gem-stdio").unwrap()).3,
            Some(world.home.join(".gemini").join("./srv").as_path())
        );
        assert!(skipped_why(&catalogue, "off").contains("disabled"));
    }

    #[test]
    fn opencode_formats_old_and_new() {
        let world = World::new().var("CONTEXT7_API_KEY", "c7");
        // The original opencode: `mcpServers`, env as a list.
        world.home_file(
            ".opencode.json",
            r#"{"mcpServers": {"old": {"type": "stdio", "command": "srv", "env": ["A=1", "B=${X:-dflt}"], "args": ["-v"]}}}"#,
        );
        // Today's opencode: `mcp`, command as a list, `environment`, `{env:...}`.
        world.home_file(
            ".config/opencode/opencode.json",
            r#"{"$schema": "https://opencode.ai/config.json",
                "mcp": {
                  "everything": {"type": "local", "command": ["npx", "-y", "@modelcontextprotocol/server-everything"],
                                 "enabled": true, "environment": {"LEVEL": "debug"}},
                  "ctx7": {"type": "remote", "url": "https://mcp.context7.com/mcp",
                           "headers": {"CONTEXT7_API_KEY": "{env:CONTEXT7_API_KEY}"}},
                  "off": {"type": "local", "command": ["x"], "enabled": false}
                }}"#,
        );
        // opencode v2: `mcp.servers`, in a project file with comments.
        world.cwd_file(
            "opencode.jsonc",
            r#"{ "mcp": { "servers": { "v2": { "type": "local", "command": ["v2-server"], }, }, }, }"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["old", "everything", "ctx7", "v2"]);
        let (command, args, env, _) = stdio_of(catalogue.get("old").unwrap());
        assert_eq!((command, args), ("srv", &["-v".to_string()][..]));
        assert_eq!(env, &map(&[("A", "1"), ("B", "dflt")]));
        let (command, args, env, _) = stdio_of(catalogue.get("everything").unwrap());
        assert_eq!(command, "npx");
        assert_eq!(args, ["-y", "@modelcontextprotocol/server-everything"]);
        assert_eq!(env, &map(&[("LEVEL", "debug")]));
        let (_, headers, kind) = remote_of(catalogue.get("ctx7").unwrap());
        assert_eq!(headers, &map(&[("CONTEXT7_API_KEY", "c7")]));
        assert_eq!(kind, RemoteKind::Http);
        assert!(skipped_why(&catalogue, "off").contains("enabled: false"));
    }

    #[test]
    fn codex_toml_stdio_and_remote() {
        let world = World::new().var("GH_TOKEN", "ghp").var("ORG", "acme");
        world.home_file(
            ".codex/config.toml",
            r#"
model = "o4"

[mcp_servers.docs]
command = "npx"
args = ["-y", "mcp-server"]
env = { "API_KEY" = "value" }

[mcp_servers.github]
url = "https://api.github.example/mcp"
bearer_token_env_var = "GH_TOKEN"
http_headers = { "X-Static" = "1" }
env_http_headers = { "X-Org" = "ORG" }

[mcp_servers.paused]
command = "x"
enabled = false
"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["docs", "github"]);
        let (_, _, env, _) = stdio_of(catalogue.get("docs").unwrap());
        assert_eq!(env, &map(&[("API_KEY", "value")]));
        let (url, headers, kind) = remote_of(catalogue.get("github").unwrap());
        assert_eq!(
            (url, kind),
            ("https://api.github.example/mcp", RemoteKind::Http)
        );
        assert_eq!(
            headers,
            &map(&[
                ("Authorization", "Bearer ghp"),
                ("X-Org", "acme"),
                ("X-Static", "1")
            ])
        );
    }

    #[test]
    fn expansion_of_every_field_and_warnings_for_unset_variables() {
        let world = World::new().var("BIN", "/opt/bin").var("REGION", "eu");
        world.state_file(
            "x.json",
            r#"{"mcpServers": {
                "s": {"command": "${BIN}/server", "args": ["--region=${env:REGION}", "--key=${MISSING}", "$PLAIN", "${unterminated"],
                      "env": {"R": "${REGION}-1", "D": "${NOPE:-fallback}", "E": "${ALSO_MISSING}"},
                      "cwd": "${BIN}/work"},
                "r": {"url": "https://${REGION}.example/mcp?k=${MISSING}", "headers": {"H": "${REGION}"}}
            }}"#,
        );
        let catalogue = world.discover();
        let s = catalogue.get("s").unwrap();
        let (command, args, env, cwd) = stdio_of(s);
        assert_eq!(command, "/opt/bin/server");
        assert_eq!(args, ["--region=eu", "--key=", "$PLAIN", "${unterminated"]);
        assert_eq!(env, &map(&[("D", "fallback"), ("E", ""), ("R", "eu-1")]));
        assert_eq!(cwd, Some(Path::new("/opt/bin/work")));
        assert_eq!(
            s.warnings,
            [
                "${MISSING} is not set; it expands to an empty string",
                "${ALSO_MISSING} is not set; it expands to an empty string"
            ]
        );
        let r = catalogue.get("r").unwrap();
        let (url, headers, _) = remote_of(r);
        assert_eq!(url, "https://eu.example/mcp?k=");
        assert_eq!(headers, &map(&[("H", "eu")]));
        assert_eq!(r.warnings.len(), 1);
        let report = render_report(&catalogue);
        assert!(
            report.contains("warning: ${MISSING} is not set"),
            "{report}"
        );
    }

    #[test]
    fn env_files_are_read_and_env_wins() {
        let world = World::new();
        world.cwd_file(
            ".env",
            "# comment\nexport A=from-file\nB=\"quoted value\"\n\nC='single'\nnot a pair\n",
        );
        world.cwd_file(
            ".vscode/mcp.json",
            r#"{"servers": {
                "s": {"command": "x", "envFile": "${workspaceFolder}/.env", "env": {"A": "from-env"}},
                "missing": {"command": "y", "envFile": "${workspaceFolder}/nope.env"}
            }}"#,
        );
        let catalogue = world.discover();
        let (_, _, env, _) = stdio_of(catalogue.get("s").unwrap());
        assert_eq!(
            env,
            &map(&[("A", "from-env"), ("B", "quoted value"), ("C", "single")])
        );
        let missing = catalogue.get("missing").unwrap();
        assert!(
            missing.warnings[0].contains("nope.env"),
            "{:?}",
            missing.warnings
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let world = World::new().var("T", "s3cr3t");
        world.state_file(
            "d.json",
            r#"{"mcpServers": {"a": {"command": "x", "args": ["--token", "s3cr3t"], "env": {"K": "${T}"}},
                               "b": {"url": "https://h/mcp?k=s3cr3t", "headers": {"H": "${T}"}}}}"#,
        );
        let debug = format!("{:?}", world.discover());
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("env_keys") && debug.contains("header_names"),
            "{debug}"
        );
    }

    #[test]
    fn tilde_in_command_and_cwd_is_the_home_directory() {
        let world = World::new();
        world.state_file(
            "t.json",
            r#"{"mcpServers": {"t": {"command": "~/bin/srv", "cwd": "~/data", "args": ["~/x"]}}}"#,
        );
        let catalogue = world.discover();
        let (command, args, _, cwd) = stdio_of(catalogue.get("t").unwrap());
        assert_eq!(command, world.home.join("bin/srv").display().to_string());
        assert_eq!(cwd, Some(world.home.join("data").as_path()));
        // Arguments are the server's business: passed as written.
        assert_eq!(args, ["~/x"]);
    }

    #[test]
    fn self_guard_skips_the_bridge_itself() {
        let world = World::new();
        world.state_file(
            "self.json",
            r#"{"mcpServers": {
                "direct": {"command": "mcp-server-code-execution-mode", "args": ["run"]},
                "by-path": {"command": "/usr/local/bin/mcp-server-code-execution-mode"},
                "uvx": {"command": "uvx", "args": ["mcp-server-code-execution-mode", "run"]},
                "pinned": {"command": "uvx", "args": ["mcp-server-code-execution-mode@0.3.1", "run"]},
                "module": {"command": "python3", "args": ["-m", "mcp_server_code_execution_mode"]},
                "similar": {"command": "uvx", "args": ["mcp-server-code-execution-mode-extras"]},
                "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem",
                                                  "/home/me/src/mcp-server-code-execution-mode"]},
                "time": {"command": "uvx", "args": ["mcp-server-time"]}
            }}"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["similar", "fs", "time"]);
        for name in ["direct", "by-path", "uvx", "pinned", "module"] {
            let why = skipped_why(&catalogue, name);
            assert!(
                why.contains("recursion guard") && why.contains("MCP_BRIDGE_ALLOW_SELF_SERVER"),
                "{why}"
            );
        }
    }

    #[test]
    fn self_guard_recognises_this_executable_under_another_name() {
        let mut world = World::new();
        let exe = write_file(&world.home.join("bin/renamed-bridge"), "#!/bin/sh\n");
        world.self_exe = Some(exe.clone());
        let bin = world.home.join("bin").display().to_string();
        let world = world.var("PATH", &format!("/nonexistent:{bin}"));
        world.state_file(
            "s.json",
            &json!({"mcpServers": {
                "abs": {"command": exe.display().to_string()},
                "on-path": {"command": "renamed-bridge"},
                "other": {"command": "sh"}
            }})
            .to_string(),
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["other"]);
    }

    #[test]
    fn self_guard_can_be_overridden() {
        for value in ["1", "true", "YES", "on"] {
            let world = World::new().var("MCP_BRIDGE_ALLOW_SELF_SERVER", value);
            world.state_file("s.json", r#"{"mcpServers": {"nested": {"command": "uvx", "args": ["mcp-server-code-execution-mode", "run"]}}}"#);
            assert_eq!(world.discover().names(), ["nested"], "{value}");
        }
        let world = World::new().var("MCP_BRIDGE_ALLOW_SELF_SERVER", "0");
        world.state_file(
            "s.json",
            r#"{"mcpServers": {"nested": {"command": "mcp-server-code-execution-mode"}}}"#,
        );
        assert!(world.discover().servers.is_empty());
    }

    #[test]
    fn broken_files_are_reported_and_never_fatal() {
        let world = World::new();
        let bad_json = world.state_file("a-bad.json", r#"{"mcpServers": {"x": {"command": "x"}"#);
        let bad_toml = world.state_file("b-bad.toml", "[mcpServers.x\ncommand = ");
        let array = world.state_file("c-array.json", "[1, 2]");
        let no_key = world.state_file("d-nokey.json", r#"{"description": "nothing here"}"#);
        let wrong_type = world.state_file("e-wrong.json", r#"{"mcpServers": ["x"]}"#);
        let binary = world.state_file("f-binary.json", "");
        fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        world.state_file(
            "g-good.json",
            r#"{"mcpServers": {"good": {"command": "ok"}}}"#,
        );
        world.home_file(".cursor/mcp.json", "{ not json");
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["good"]);
        let why = |path: &Path| match &catalogue
            .files
            .iter()
            .find(|f| f.path == path)
            .unwrap()
            .status
        {
            FileStatus::Broken { why } => why.clone(),
            FileStatus::Read { .. } => panic!("{} was read", path.display()),
        };
        assert!(
            why(&bad_json).starts_with("invalid JSON"),
            "{}",
            why(&bad_json)
        );
        assert!(
            why(&bad_toml).starts_with("invalid TOML"),
            "{}",
            why(&bad_toml)
        );
        assert!(why(&array).contains("not an object"), "{}", why(&array));
        assert!(why(&no_key).contains("mcpServers"), "{}", why(&no_key));
        assert!(
            why(&wrong_type).contains("not an object of servers"),
            "{}",
            why(&wrong_type)
        );
        assert!(why(&binary).contains("UTF-8"), "{}", why(&binary));
        assert!(why(&world.home.join(".cursor/mcp.json")).starts_with("invalid JSON"));
        let report = render_report(&catalogue);
        assert!(report.contains("skipped: invalid JSON"), "{report}");
    }

    #[test]
    fn broken_entries_are_skipped_with_why() {
        let world = World::new();
        world.state_file(
            "e.json",
            r#"{"mcpServers": {
                "not-object": "uvx thing",
                "no-command": {"args": ["x"]},
                "empty-command": {"command": "  "},
                "bad-args": {"command": "x", "args": "--flag"},
                "bad-env": {"command": "x", "env": {"A": {"nested": 1}}},
                "bad-env-list": {"command": "x", "env": ["NOEQUALS"]},
                "bad-type": {"type": "websocket", "url": "wss://x"},
                "bad-url": {"type": "http", "url": "ftp://x"},
                "no-url": {"type": "sse"},
                "": {"command": "x"},
                "ok": {"command": "x", "args": [8080, true], "env": {"PORT": 8080}}
            }}"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["ok"]);
        let (_, args, env, _) = stdio_of(catalogue.get("ok").unwrap());
        assert_eq!(args, ["8080", "true"]);
        assert_eq!(env, &map(&[("PORT", "8080")]));
        let expectations = [
            ("not-object", "not an object"),
            ("no-command", "neither a `command` nor a `url`"),
            ("empty-command", "empty"),
            ("bad-args", "`args` is a string"),
            ("bad-env", "`env` `A` is an object"),
            ("bad-env-list", "KEY=VALUE"),
            ("bad-type", "websocket"),
            ("bad-url", "not an http"),
            ("no-url", "without a `url`"),
            ("", "name is empty"),
        ];
        for (name, expected) in expectations {
            let why = skipped_why(&catalogue, name);
            assert!(why.contains(expected), "{name}: {why}");
        }
        assert_eq!(catalogue.files[0].status, FileStatus::Read { servers: 11 });
    }

    #[test]
    fn the_same_file_reached_twice_is_read_once() {
        let mut world = World::new();
        // The bridge started in the home directory: ./.cursor/mcp.json is ~/.cursor/mcp.json.
        world.cwd = world.home.clone();
        world.home_file(
            ".cursor/mcp.json",
            r#"{"mcpServers": {"c": {"command": "c"}}}"#,
        );
        let catalogue = world.discover();
        assert_eq!(catalogue.names(), ["c"]);
        assert!(catalogue.skipped.is_empty(), "{:?}", catalogue.skipped);
        assert_eq!(catalogue.files.len(), 1);
    }

    #[test]
    fn project_folder_and_user_folder_of_json_files() {
        let world = World::new();
        world.home_file(
            ".config/mcp/servers/u.json",
            r#"{"mcpServers": {"user-dir": {"command": "u"}}}"#,
        );
        world.cwd_file(
            "mcp-servers/p.json",
            r#"{"servers": {"project-dir": {"command": "p"}}}"#,
        );
        world.cwd_file("mcp-servers/ignored.toml", "[mcpServers.t]\ncommand='t'\n");
        assert_eq!(world.discover().names(), ["user-dir", "project-dir"]);
    }

    #[test]
    fn jsonc_stripping_keeps_strings_and_positions() {
        let text =
            "{\n // c\n \"a\": \"//not\", /* b\n */ \"b\": [1, 2,],\n \"c\": \"\\\"/*x*/\",\n}";
        let stripped = strip_jsonc(text);
        assert_eq!(stripped.lines().count(), text.lines().count());
        let value: Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value, json!({"a": "//not", "b": [1, 2], "c": "\"/*x*/"}));
        // Valid JSON is unchanged.
        let plain = r#"{"a": [1, {"b": "c,}"}], "d": "\\"}"#;
        assert_eq!(strip_jsonc(plain), plain);
        // Non-ASCII inside comments and strings survives.
        let unicode = "{\"é\": \"ü\" // ☃ comment\n}";
        assert_eq!(
            serde_json::from_str::<Value>(&strip_jsonc(unicode)).unwrap(),
            json!({"é": "ü"})
        );
    }

    #[test]
    fn report_lists_servers_files_and_skips_with_secrets_hidden() {
        let world = World::new().var("TOKEN", "s3cr3t-value");
        world.state_file(
            "r.json",
            r#"{"mcpServers": {
                "github": {"command": "docker", "args": ["run", "--api-key", "s3cr3t-value", "--token=s3cr3t-value", "ghcr.io/github/github-mcp-server"],
                           "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${TOKEN}"}, "description": "GitHub"},
                "remote": {"url": "https://user:s3cr3t-value@mcp.example/mcp?key=s3cr3t-value",
                           "headers": {"Authorization": "Bearer ${TOKEN}"}},
                "bad": {"type": "carrier-pigeon"}
            }}"#,
        );
        let report = render_report(&world.discover());
        assert!(!report.contains("s3cr3t"), "{report}");
        for expected in [
            "2 servers",
            "NAME",
            "ALIAS",
            "TRANSPORT",
            "SOURCE",
            "stdio: docker run --api-key *** --token=*** ghcr.io/github/github-mcp-server",
            "env: GITHUB_PERSONAL_ACCESS_TOKEN=***",
            "http: https://***@mcp.example/mcp?***",
            "headers: Authorization=***",
            "description: GitHub",
            "1 config file found:",
            "r.json: 3 servers",
            "1 entry skipped:",
            "bad in ",
            "carrier-pigeon",
        ] {
            assert!(
                report.contains(expected),
                "missing {expected:?} in\n{report}"
            );
        }
    }

    #[test]
    fn url_and_arg_redaction() {
        assert_eq!(redact_url("https://h.example/mcp"), "https://h.example/mcp");
        assert_eq!(redact_url("https://a:b@h/x?y=1"), "https://***@h/x?***");
        assert_eq!(redact_url("http://h?x"), "http://h?***");
        let args: Vec<String> = [
            "--port",
            "1",
            "--password",
            "p",
            "-k=v",
            "--secret-file=f",
            "pos",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            redact_args(&args),
            [
                "--port",
                "1",
                "--password",
                "***",
                "-k=v",
                "--secret-file=***",
                "pos"
            ]
        );
    }
}
