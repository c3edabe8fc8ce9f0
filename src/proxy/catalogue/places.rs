//! Where to look: the explicit files, the bridge's own folders, then each client's config
//! files, in the order discovery reads them (the catalogue's module docs list it).

use std::path::{Path, PathBuf};

use super::discovery_env::DiscoveryEnv;
use super::known_clients::{Format, client_files};

/// A place to look: a file, or a folder whose `*.json` (and maybe `*.toml`) files to read.
#[derive(Debug)]
pub(super) enum Place {
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

/// Every place to look, in order: the explicit files and folders, the bridge's own folders,
/// then every known client's config files ([`CLIENTS`](super::known_clients::CLIENTS)).
pub(super) fn places(env: &DiscoveryEnv) -> Vec<Place> {
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
    out.push(Place::Folder {
        path: env.cwd.join("mcp-servers"),
        toml: false,
        explicit: false,
    });
    out.extend(
        client_files(env)
            .into_iter()
            .map(|(path, format)| Place::File {
                path,
                format,
                explicit: false,
            }),
    );
    out
}

/// The `*.json` (and `*.toml`) files of a folder, sorted by name; empty when it is absent.
pub(super) fn folder_files(folder: &Path, toml: bool) -> Result<Vec<PathBuf>, std::io::Error> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn env(home: Option<&str>) -> DiscoveryEnv {
        DiscoveryEnv {
            home: home.map(PathBuf::from),
            cwd: PathBuf::from("/p"),
            state_dir: PathBuf::from("/s"),
            explicit: Vec::new(),
            vars: Arc::new(|_| None),
            self_exe: None,
            allow_self_server: false,
        }
    }

    fn describe(places: &[Place]) -> Vec<String> {
        places
            .iter()
            .map(|place| match place {
                Place::File {
                    path,
                    format,
                    explicit,
                } => format!("{} {format:?} explicit={explicit}", path.display()),
                Place::Folder {
                    path,
                    toml,
                    explicit,
                } => format!("{}/ toml={toml} explicit={explicit}", path.display()),
            })
            .collect()
    }

    fn file(path: &Path, format: Format) -> String {
        format!("{} {format:?} explicit=false", path.display())
    }

    fn folder(path: &Path, toml: bool) -> String {
        format!("{}/ toml={toml} explicit=false", path.display())
    }

    #[test]
    fn every_client_file_in_the_documented_order() {
        let env = env(Some("/h"));
        let (home, cwd) = (Path::new("/h"), Path::new("/p"));
        let app = env
            .app_config_home()
            .expect("a home gives a settings folder");
        let config = home.join(".config");
        let expected = [
            folder(&PathBuf::from("/s"), true),
            folder(&config.join("mcp").join("servers"), false),
            folder(&cwd.join("mcp-servers"), false),
            file(&cwd.join(".vscode").join("mcp.json"), Format::VsCodeMcp),
            file(&home.join(".claude.json"), Format::ClaudeJson),
            file(
                &app.join("Claude").join("claude_desktop_config.json"),
                Format::McpServers,
            ),
            file(
                &home.join(".claude").join("settings.json"),
                Format::McpServers,
            ),
            file(&cwd.join(".mcp.json"), Format::McpServers),
            file(&home.join(".cursor").join("mcp.json"), Format::McpServers),
            file(&cwd.join(".cursor").join("mcp.json"), Format::McpServers),
            file(
                &home
                    .join(".codeium")
                    .join("windsurf")
                    .join("mcp_config.json"),
                Format::McpServers,
            ),
            file(&home.join(".opencode.json"), Format::OpenCode),
            file(
                &config.join("opencode").join("opencode.json"),
                Format::OpenCode,
            ),
            file(
                &config.join("opencode").join("opencode.jsonc"),
                Format::OpenCode,
            ),
            file(&cwd.join("opencode.json"), Format::OpenCode),
            file(&cwd.join("opencode.jsonc"), Format::OpenCode),
            file(&home.join(".gemini").join("settings.json"), Format::Gemini),
            file(&home.join(".codex").join("config.toml"), Format::Codex),
            file(
                &app.join("Code").join("User").join("settings.json"),
                Format::VsCodeSettings,
            ),
            file(
                &app.join("Code").join("User").join("mcp.json"),
                Format::VsCodeMcp,
            ),
        ];
        assert_eq!(describe(&places(&env)), expected);
    }

    #[test]
    fn without_a_home_only_project_files_and_the_state_dir() {
        let cwd = Path::new("/p");
        let expected = [
            folder(&PathBuf::from("/s"), true),
            folder(&cwd.join("mcp-servers"), false),
            file(&cwd.join(".vscode").join("mcp.json"), Format::VsCodeMcp),
            file(&cwd.join(".mcp.json"), Format::McpServers),
            file(&cwd.join(".cursor").join("mcp.json"), Format::McpServers),
            file(&cwd.join("opencode.json"), Format::OpenCode),
            file(&cwd.join("opencode.jsonc"), Format::OpenCode),
        ];
        assert_eq!(describe(&places(&env(None))), expected);
    }
}
