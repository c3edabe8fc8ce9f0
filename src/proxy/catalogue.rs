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
//! Steps 5 to 14 come from the one table of known clients (`known_clients`, which
//! `install-client` reads too): each client file there carries its step number.
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
//!
//! # Layout
//!
//! This file is the orchestration: [`discover`] walks the places and reads each file,
//! entry by entry, into the catalogue. Each concern has its own module, leaves first, and no
//! module imports one that imports it back:
//!
//! - `discovery_env`: [`DiscoveryEnv`], everything read from the outside world;
//! - `redact`: hiding credentials in arguments and URLs (string helpers);
//! - `read`: a config file's text, size-capped, and JSONC stripping;
//! - `types`: the catalogue's data ([`Transport`] and its one-line summary, [`ServerEntry`],
//!   the file and skip reports), built on `redact`;
//! - `known_clients`: the one table of MCP clients: each one's config files per OS, their
//!   `Format`, and how `install-client` (`crate::clients`) writes to it;
//! - `places`: where to look, in order: the explicit files, our folders, the clients' files;
//! - `formats`: where each format keeps its server maps;
//! - `expand`: `${VAR}` expansion, paths and env files, for one entry of one file;
//! - `entry`: one entry parsed into a transport, built on `expand`;
//! - `self_guard`: the recursion guard;
//! - `report`: the `servers` report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tracing::{debug, warn};

use crate::proxy::alias::assign_aliases;
use crate::settings;

mod discovery_env;
mod entry;
mod expand;
mod formats;
mod known_clients;
mod places;
mod read;
mod redact;
mod report;
mod self_guard;
#[cfg(test)]
mod tests;
mod types;

pub use discovery_env::{DiscoveryEnv, VarLookup};
pub(crate) use known_clients::{CLIENTS, Install, KnownClient};
pub use read::strip_jsonc;
pub use report::render_report;
pub use self_guard::BRIDGE_NAME;
pub use types::{
    Catalogue, FileReport, FileStatus, RemoteKind, ServerEntry, Skipped, Transport,
    transport_summary,
};

use entry::{ParsedEntry, parse_entry};
use expand::EntryContext;
use formats::server_maps;
use known_clients::Format;
use places::{Place, folder_files, places};
use read::read_capped;
use self_guard::launches_self;
use types::json_kind;

/// Server names longer than this are skipped.
const MAX_NAME_CHARS: usize = 256;

impl Catalogue {
    /// Discover every server (see the module docs for where and how).
    pub fn discover(env: &DiscoveryEnv) -> Self {
        discover(env)
    }
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
                Ok(ParsedEntry {
                    transport,
                    description,
                    warnings,
                    policy,
                }) => {
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
                            policy,
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
