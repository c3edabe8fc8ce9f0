//! MCP client config files, read by server discovery: any bytes, written where one client
//! keeps its config, then the real discovery over a scratch home and project folder.
//!
//! The first byte picks the file (see [`SLOTS`]: the bridge's own JSON and TOML, Claude
//! Code, VS Code, Cursor, opencode, Gemini CLI, Codex); the rest is its content, in which
//! `@CWD@` stands for the project folder (Claude Code keys projects by path). Variables for
//! `${VAR}` expansion are fixed: `HOME_TOKEN=t0k3n`, `EMPTY=`.
//!
//! Checked: discovery never panics; every entry the file defines is either served or
//! skipped with a reason; names and Python aliases are unique and aliases are `[a-z0-9_]+`;
//! the report renders; and every served entry, written back as the bridge's own JSON
//! config, is discovered again as the same entry (same transport, description and alias).
//! JSONC stripping keeps line numbers and leaves plain JSON meaning the same.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mcp_server_code_execution_mode::proxy::catalogue::{
    Catalogue, DiscoveryEnv, FileStatus, RemoteKind, ServerEntry, Transport, VarLookup,
    render_report, strip_jsonc,
};
use mcp_server_code_execution_mode_fuzz::{clear_files, scratch_dir, write_file};
use serde_json::{Map, Value, json};

/// Where each client keeps its config, relative to the scratch folder.
const SLOTS: [&str; 10] = [
    "state/servers.json",
    "state/servers.toml",
    "home/.claude.json",
    "project/.vscode/mcp.json",
    "home/.config/Code/User/settings.json",
    "home/.cursor/mcp.json",
    "project/opencode.jsonc",
    "home/.gemini/settings.json",
    "home/.codex/config.toml",
    "project/.mcp.json",
];

fn vars() -> VarLookup {
    Arc::new(|name| match name {
        "HOME_TOKEN" => Some("t0k3n".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    })
}

/// The discovery environment of the fuzzed file, and the one of the written-back file.
fn envs() -> &'static (DiscoveryEnv, DiscoveryEnv) {
    static ENVS: OnceLock<(DiscoveryEnv, DiscoveryEnv)> = OnceLock::new();
    ENVS.get_or_init(|| {
        let root = scratch_dir();
        for dir in ["home", "project", "state", "again/project", "again/state"] {
            std::fs::create_dir_all(root.join(dir)).expect("scratch folders");
        }
        let fuzzed = DiscoveryEnv {
            home: Some(root.join("home")),
            cwd: root.join("project"),
            state_dir: root.join("state"),
            explicit: Vec::new(),
            vars: vars(),
            self_exe: None,
            allow_self_server: false,
        };
        let again = DiscoveryEnv {
            home: None,
            cwd: root.join("again/project"),
            state_dir: root.join("again/state"),
            explicit: vec![root.join("again/servers.json")],
            vars: vars(),
            self_exe: None,
            allow_self_server: false,
        };
        (fuzzed, again)
    })
}

/// Server aliases are `[a-z0-9_]+`, not starting with a digit (keywords allowed: the
/// sandbox names them `mcp_<alias>`).
fn is_alias(alias: &str) -> bool {
    !alias.is_empty()
        && !alias.starts_with(|c: char| c.is_ascii_digit())
        && alias
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether written back, the entry would read differently for reasons that are not bugs:
/// text that looks like a `${...}` reference is expanded again.
fn rewrite_changes_meaning(entry: &ServerEntry) -> bool {
    let texts: Vec<&str> = match &entry.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => std::iter::once(command.as_str())
            .chain(args.iter().map(String::as_str))
            .chain(env.values().map(String::as_str))
            .chain(cwd.iter().filter_map(|c| c.to_str()))
            .collect(),
        Transport::Remote { url, headers, .. } => std::iter::once(url.as_str())
            .chain(headers.values().map(String::as_str))
            .collect(),
    };
    texts.iter().any(|t| t.contains("${"))
}

/// The entry as the bridge's own config writes it.
fn written_back(entry: &ServerEntry) -> Value {
    let mut out = match &entry.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => json!({
            "type": "stdio",
            "command": command,
            "args": args,
            "env": env,
            "cwd": cwd.as_ref().map(|c| c.to_str().expect("from JSON text")),
        }),
        Transport::Remote { url, headers, kind } => json!({
            "type": match kind { RemoteKind::Http => "http", RemoteKind::Sse => "sse" },
            "url": url,
            "headers": headers,
        }),
    };
    if let Some(description) = &entry.description {
        out["description"] = json!(description);
    }
    out
}

fn check_catalogue(catalogue: &Catalogue, file: &Path) {
    let mut names: Vec<&str> = catalogue.names();
    let mut aliases: Vec<&str> = catalogue.servers.iter().map(|s| s.alias.as_str()).collect();
    for alias in &aliases {
        assert!(is_alias(alias), "alias {alias:?}");
    }
    names.sort_unstable();
    names.dedup();
    aliases.sort_unstable();
    aliases.dedup();
    assert_eq!(names.len(), catalogue.servers.len(), "names are unique");
    assert_eq!(aliases.len(), catalogue.servers.len(), "aliases are unique");
    let reports: Vec<_> = catalogue.files.iter().filter(|f| f.path == file).collect();
    match reports.as_slice() {
        [] => assert!(catalogue.servers.is_empty() && catalogue.skipped.is_empty()),
        [report] => {
            if let FileStatus::Read { servers } = report.status {
                let skipped = catalogue
                    .skipped
                    .iter()
                    .filter(|s| s.source == file)
                    .count();
                assert_eq!(catalogue.servers.len() + skipped, servers, "entries lost");
            }
        }
        _ => panic!("{} reported twice", file.display()),
    }
    let _ = render_report(catalogue);
    let _ = catalogue.hello_entries();
}

fn check_jsonc(text: &str) {
    let stripped = strip_jsonc(text);
    assert_eq!(
        stripped.lines().count(),
        text.lines().count(),
        "line numbers moved"
    );
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        assert_eq!(serde_json::from_str::<Value>(&stripped).ok(), Some(value));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&slot, content)) = data.split_first() else {
        return;
    };
    let (fuzzed, again) = envs();
    let root = scratch_dir();
    let cwd = fuzzed.cwd.to_str().expect("a UTF-8 scratch path");
    let content = match std::str::from_utf8(content) {
        Ok(text) => {
            check_jsonc(text);
            text.replace("@CWD@", cwd).into_bytes()
        }
        Err(_) => content.to_vec(),
    };
    let file: PathBuf = root.join(SLOTS[usize::from(slot) % SLOTS.len()]);
    write_file(&file, &content);
    let catalogue = Catalogue::discover(fuzzed);
    clear_files(root);
    check_catalogue(&catalogue, &file);

    let servers: Vec<&ServerEntry> = catalogue
        .servers
        .iter()
        .filter(|s| !rewrite_changes_meaning(s))
        .collect();
    if servers.is_empty() {
        return;
    }
    let map: Map<String, Value> = servers
        .iter()
        .map(|s| (s.name.clone(), written_back(s)))
        .collect();
    let rewritten = serde_json::to_vec(&json!({ "mcpServers": map })).expect("JSON");
    write_file(&again.explicit[0], &rewritten);
    let reread = Catalogue::discover(again);
    clear_files(root);
    assert_eq!(reread.servers.len(), servers.len(), "{:?}", reread.skipped);
    for (before, after) in servers.iter().zip(&reread.servers) {
        assert_eq!(before.name, after.name);
        assert_eq!(before.description, after.description);
        assert_eq!(before.transport, after.transport, "{}", before.name);
        if servers.len() == catalogue.servers.len() {
            assert_eq!(before.alias, after.alias);
        }
    }
});
