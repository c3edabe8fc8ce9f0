//! The MCP clients this bridge knows, in one table: where each keeps its config files on
//! each OS, in which format, and whether `install-client` can add the bridge to it.
//!
//! Discovery (`places`) reads every file of the table; `install-client` (`crate::clients`)
//! offers the clients that have an [`Install`] and writes the file it names. A new client is
//! one entry here (and, for discovery, its line in the catalogue's module docs).

use std::path::PathBuf;

use super::discovery_env::DiscoveryEnv;

/// Which client wrote a file, which decides where its servers are and a few entry details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
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
    pub(super) fn is_vscode(self) -> bool {
        matches!(self, Self::VsCodeMcp | Self::VsCodeSettings)
    }
}

/// The folder a config file's path starts from; the per-OS part of where a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    /// The user's home directory.
    Home,
    /// The directory the bridge runs in: project-local files.
    Cwd,
    /// `$XDG_CONFIG_HOME`, else `~/.config`, on every OS.
    ConfigHome,
    /// Where desktop applications keep their settings: `~/Library/Application Support` on
    /// macOS, the config home elsewhere.
    AppConfigHome,
}

impl Base {
    /// The folder on this machine; `None` when there is no home directory to start from.
    fn dir(self, env: &DiscoveryEnv) -> Option<PathBuf> {
        match self {
            Self::Home => env.home.clone(),
            Self::Cwd => Some(env.cwd.clone()),
            Self::ConfigHome => env.config_home(),
            Self::AppConfigHome => env.app_config_home(),
        }
    }
}

/// One config file a client keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConfigFile {
    /// Its step in discovery's order, the numbered list of the catalogue's module docs (the
    /// first definition of a name wins). Files of one step are read in table order.
    pub(crate) step: u8,
    /// The folder its path starts from.
    pub(crate) base: Base,
    /// Its path below `base`, a component each.
    pub(crate) path: &'static [&'static str],
    /// How to read it.
    pub(crate) format: Format,
}

impl ConfigFile {
    /// Where the file is on this machine; `None` when its base folder is unknown.
    pub(crate) fn locate(&self, env: &DiscoveryEnv) -> Option<PathBuf> {
        let dir = self.base.dir(env)?;
        Some(self.path.iter().fold(dir, |path, part| path.join(part)))
    }

    /// The file as the user would write it: `~/.cursor/mcp.json`, or `mcp.json` in the
    /// application settings folder.
    pub(crate) fn describe(&self) -> String {
        let path = self.path.join("/");
        match self.base {
            Base::Home => format!("`~/{path}`"),
            Base::Cwd => format!("`./{path}`"),
            Base::ConfigHome => format!("`$XDG_CONFIG_HOME/{path}`"),
            Base::AppConfigHome => format!(
                "`{}` in its settings folder",
                self.path.last().copied().unwrap_or_default()
            ),
        }
    }
}

/// How `install-client` adds the bridge to a client's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Install {
    /// Which of the client's `files` it writes (an index into them): its user-level JSON.
    pub(crate) file: usize,
    /// The key of the server map in that file.
    pub(crate) servers_key: &'static str,
    /// Whether the entry names its transport (`"type": "stdio"`), as the client writes it.
    pub(crate) stdio_type: bool,
    /// The client's own command that adds a user-level server, when it has one; the snippet
    /// shows it followed by `<name> -- <executable> run`.
    pub(crate) add_command: Option<&'static str>,
}

impl Install {
    /// The common case: the client's first file, its `mcpServers`, an entry without `type`.
    const MCP_SERVERS: Self = Self {
        file: 0,
        servers_key: "mcpServers",
        stdio_type: false,
        add_command: None,
    };
}

/// One MCP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownClient {
    /// Its name on the command line (`install-client <name>`).
    pub(crate) name: &'static str,
    /// Its name for people.
    pub(crate) title: &'static str,
    /// Every config file of it that discovery reads.
    pub(crate) files: &'static [ConfigFile],
    /// How `install-client` writes to it; `None` when it cannot.
    pub(crate) install: Option<Install>,
}

/// A config file entry of [`CLIENTS`].
const fn file(step: u8, base: Base, path: &'static [&'static str], format: Format) -> ConfigFile {
    ConfigFile {
        step,
        base,
        path,
        format,
    }
}

/// Every client this bridge knows, by name. `install-client` lists them in this order.
pub(crate) const CLIENTS: &[KnownClient] = &[
    KnownClient {
        name: "claude-code",
        title: "Claude Code",
        files: &[
            file(6, Base::Home, &[".claude.json"], Format::ClaudeJson),
            file(
                8,
                Base::Home,
                &[".claude", "settings.json"],
                Format::McpServers,
            ),
            file(8, Base::Cwd, &[".mcp.json"], Format::McpServers),
        ],
        install: Some(Install {
            stdio_type: true,
            add_command: Some("claude mcp add --scope user"),
            ..Install::MCP_SERVERS
        }),
    },
    KnownClient {
        name: "claude-desktop",
        title: "Claude Desktop",
        files: &[file(
            7,
            Base::AppConfigHome,
            &["Claude", "claude_desktop_config.json"],
            Format::McpServers,
        )],
        install: Some(Install::MCP_SERVERS),
    },
    KnownClient {
        name: "codex",
        title: "Codex",
        files: &[file(
            13,
            Base::Home,
            &[".codex", "config.toml"],
            Format::Codex,
        )],
        install: None,
    },
    KnownClient {
        name: "cursor",
        title: "Cursor",
        files: &[
            file(9, Base::Home, &[".cursor", "mcp.json"], Format::McpServers),
            file(9, Base::Cwd, &[".cursor", "mcp.json"], Format::McpServers),
        ],
        install: Some(Install::MCP_SERVERS),
    },
    KnownClient {
        name: "gemini",
        title: "Gemini CLI",
        files: &[file(
            12,
            Base::Home,
            &[".gemini", "settings.json"],
            Format::Gemini,
        )],
        install: None,
    },
    KnownClient {
        name: "opencode",
        title: "opencode",
        files: &[
            file(11, Base::Home, &[".opencode.json"], Format::OpenCode),
            file(
                11,
                Base::ConfigHome,
                &["opencode", "opencode.json"],
                Format::OpenCode,
            ),
            file(
                11,
                Base::ConfigHome,
                &["opencode", "opencode.jsonc"],
                Format::OpenCode,
            ),
            file(11, Base::Cwd, &["opencode.json"], Format::OpenCode),
            file(11, Base::Cwd, &["opencode.jsonc"], Format::OpenCode),
        ],
        install: None,
    },
    KnownClient {
        name: "vscode",
        title: "VS Code",
        files: &[
            file(5, Base::Cwd, &[".vscode", "mcp.json"], Format::VsCodeMcp),
            file(
                14,
                Base::AppConfigHome,
                &["Code", "User", "settings.json"],
                Format::VsCodeSettings,
            ),
            file(
                14,
                Base::AppConfigHome,
                &["Code", "User", "mcp.json"],
                Format::VsCodeMcp,
            ),
        ],
        install: Some(Install {
            file: 2,
            servers_key: "servers",
            stdio_type: true,
            ..Install::MCP_SERVERS
        }),
    },
    KnownClient {
        name: "windsurf",
        title: "Windsurf",
        files: &[file(
            10,
            Base::Home,
            &[".codeium", "windsurf", "mcp_config.json"],
            Format::McpServers,
        )],
        install: Some(Install::MCP_SERVERS),
    },
];

/// Every client's config file with its path on this machine, in discovery order; files
/// whose base folder is unknown are left out.
pub(super) fn client_files(env: &DiscoveryEnv) -> Vec<(PathBuf, Format)> {
    let mut files: Vec<&ConfigFile> = CLIENTS.iter().flat_map(|c| c.files).collect();
    files.sort_by_key(|f| f.step);
    files
        .into_iter()
        .filter_map(|f| Some((f.locate(env)?, f.format)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_unique_and_sorted() {
        let names: Vec<&str> = CLIENTS.iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn install_writes_a_json_file_discovery_reads_under_its_key() {
        for client in CLIENTS {
            let Some(install) = client.install else {
                continue;
            };
            let file = client
                .files
                .get(install.file)
                .expect("the file is one of the client's");
            assert!(
                file.path
                    .last()
                    .map(std::path::Path::new)
                    .and_then(std::path::Path::extension)
                    == Some("json".as_ref()),
                "{}",
                client.name
            );
            let read_key = match file.format {
                Format::McpServers | Format::ClaudeJson => "mcpServers",
                Format::VsCodeMcp => "servers",
                other => panic!("{}: install-client cannot write {other:?}", client.name),
            };
            assert_eq!(install.servers_key, read_key, "{}", client.name);
            assert_ne!(file.base, Base::Cwd, "{}: a user-level file", client.name);
        }
    }
}
