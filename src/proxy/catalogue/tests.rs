use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::sync::Arc;

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
    allow_self_server: bool,
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
            allow_self_server: false,
        }
    }

    fn allow_self_server(mut self) -> Self {
        self.allow_self_server = true;
        self
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
            allow_self_server: self.allow_self_server,
        }
    }

    fn discover(&self) -> Catalogue {
        discover(&self.env())
    }
}

fn stdio_of(entry: &ServerEntry) -> (&str, &[String], &BTreeMap<String, String>, Option<&Path>) {
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
fn from_process_reads_the_files_the_configuration_names() {
    // `config::resolve` chose them: the flags, else MCP_SERVERS_CONFIG.
    let env =
        DiscoveryEnv::from_process(PathBuf::from("/s"), &[PathBuf::from("/flag.json")], false);
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
    let world = World::new().allow_self_server();
    world.state_file("s.json", r#"{"mcpServers": {"nested": {"command": "uvx", "args": ["mcp-server-code-execution-mode", "run"]}}}"#);
    assert_eq!(world.discover().names(), ["nested"]);
    let world = World::new();
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
fn an_entry_carries_its_policy_and_a_bad_one_skips_it() {
    let world = World::new();
    world.state_file(
        "p.json",
        r#"{"mcpServers": {
              "files": {"command": "fs", "policy": {"default": "allow", "tools": {"write_*": "ask"}}},
              "plain": {"command": "p"},
              "typo": {"command": "t", "policy": {"tools": {"write_file": "maybe"}}}
            }}"#,
    );
    let catalogue = world.discover();
    assert_eq!(catalogue.names(), ["files", "plain"]);
    let rules = catalogue.get("files").unwrap().policy.as_ref().unwrap();
    assert_eq!(
        rules.rule_for("write_file").map(|r| r.0),
        Some(crate::policy::Decision::Ask)
    );
    assert!(catalogue.get("plain").unwrap().policy.is_none());
    let why = skipped_why(&catalogue, "typo");
    assert!(
        why.contains("`policy`") && why.contains("`tools.write_file`") && why.contains("maybe"),
        "{why}"
    );
}
