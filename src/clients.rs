//! `install-client`: the config snippet that makes an MCP client launch this bridge, and
//! merging it into the client's config file.
//!
//! The clients, their files and their keys come from the one table of known clients that
//! discovery reads too (`proxy::catalogue`), and the files are found the same way
//! (`$XDG_CONFIG_HOME`, the macOS application-support folder). Writing never loses what was
//! there: the file is parsed as JSON (a file that is not JSON is refused, untouched), only our
//! entry under the client's key is inserted or replaced (other entries and the key order are
//! kept), the old file is first copied to a timestamped backup, and the new text replaces it
//! in one rename, keeping its permissions (`~/.claude.json` holds tokens): it is written to a
//! temporary file of unguessable name beside it and synced first (`sandbox_core::atomic_file`).

use std::fmt::{self, Write as _};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::builder::PossibleValue;
use sandbox_core::atomic_file::{Mode, write_atomic};
use serde_json::{Map, Value, json};

use crate::proxy::catalogue::{CLIENTS, DiscoveryEnv, Install, KnownClient};

/// The name our entry has in every client's config.
pub const SERVER_NAME: &str = "mcp-server-code-execution-mode";

/// An MCP client whose config `install-client` knows: a client of the known-clients table
/// that has an install entry, named on the command line by its table name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Client {
    known: &'static KnownClient,
    install: &'static Install,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Client").field(&self.name()).finish()
    }
}

impl clap::ValueEnum for Client {
    fn value_variants<'a>() -> &'a [Self] {
        static INSTALLABLE: LazyLock<Vec<Client>> = LazyLock::new(|| {
            CLIENTS
                .iter()
                .filter_map(|known| {
                    Some(Client {
                        known,
                        install: known.install.as_ref()?,
                    })
                })
                .collect()
        });
        &INSTALLABLE
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.help()))
    }
}

/// Why the config could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// No home (or settings) folder to find the client's config in.
    #[error("cannot tell where {0}'s config lives: no home directory")]
    NoHome(&'static str),
    /// The file is there but is not JSON.
    #[error(
        "{path} is not valid JSON, so it is left untouched (fix it, or add the snippet that \
         `install-client` prints without --write by hand)"
    )]
    NotJson {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The file's top level, or its server map, is not an object.
    #[error("{path}: {what} is not a JSON object; not touching it")]
    NotObject {
        /// The config file.
        path: PathBuf,
        /// Which part.
        what: String,
    },
    /// Reading, backing up or writing failed (what the OS said is the source, shown once
    /// by whoever prints the chain).
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What `--write` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The config file written.
    pub path: PathBuf,
    /// The copy of the previous file, when there was one.
    pub backup: Option<PathBuf>,
    /// Whether an entry of ours was already there (and is now replaced).
    pub replaced: bool,
}

impl std::fmt::Display for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.replaced { "replaced" } else { "added" };
        write!(f, "{verb} `{SERVER_NAME}` in {}", self.path.display())?;
        if let Some(backup) = &self.backup {
            write!(f, "\nprevious file saved as {}", backup.display())?;
        }
        Ok(())
    }
}

impl Client {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        self.known.name
    }

    /// The key of the server map in the client's config.
    pub fn servers_key(self) -> &'static str {
        self.install.servers_key
    }

    /// What `install-client --help` says of the client: its file and key.
    fn help(self) -> String {
        let typed = if self.install.stdio_type {
            r#", with `"type": "stdio"`"#
        } else {
            ""
        };
        format!(
            "{}: {}, `{}`{typed}",
            self.known.title,
            self.known.files[self.install.file].describe(),
            self.servers_key()
        )
    }

    /// The client's user-level config file (where discovery reads it too).
    pub fn config_path(self, env: &DiscoveryEnv) -> Result<PathBuf, InstallError> {
        self.known.files[self.install.file]
            .locate(env)
            .ok_or(InstallError::NoHome(self.name()))
    }

    /// Our entry: launch `exe run` over stdio.
    pub fn entry(self, exe: &Path) -> Value {
        let command = exe.to_string_lossy();
        if self.install.stdio_type {
            json!({"type": "stdio", "command": command, "args": ["run"]})
        } else {
            json!({"command": command, "args": ["run"]})
        }
    }

    /// The text `install-client` prints: the JSON to merge into the config file, and for a
    /// client with its own command for it (Claude Code's `claude mcp add`), that command.
    pub fn snippet(self, exe: &Path) -> String {
        let mut servers = Map::new();
        servers.insert(SERVER_NAME.into(), self.entry(exe));
        let mut top = Map::new();
        top.insert(self.servers_key().into(), Value::Object(servers));
        let mut out =
            serde_json::to_string_pretty(&Value::Object(top)).expect("JSON values serialize");
        out.push('\n');
        if let Some(add) = self.install.add_command {
            let _ = writeln!(
                out,
                "\n# or, with the {} CLI:\n{add} {SERVER_NAME} -- {} run",
                self.known.title,
                shell_quote(&exe.to_string_lossy())
            );
        }
        out
    }
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Merge our entry into the text of a config file (`None`: no file yet). Returns the new
/// text and whether an entry of ours was replaced. Other entries, other keys and their
/// order are kept; an existing entry of ours keeps its place.
pub fn merge(
    existing: Option<&str>,
    path: &Path,
    client: Client,
    entry: Value,
) -> Result<(String, bool), InstallError> {
    let mut top = match existing.map(str::trim) {
        None | Some("") => Value::Object(Map::new()),
        Some(text) => serde_json::from_str(text).map_err(|source| InstallError::NotJson {
            path: path.to_path_buf(),
            source,
        })?,
    };
    let not_object = |what: String| InstallError::NotObject {
        path: path.to_path_buf(),
        what,
    };
    let top_map = top
        .as_object_mut()
        .ok_or_else(|| not_object("the top level".into()))?;
    let key = client.servers_key();
    let servers = top_map
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| not_object(format!("`{key}`")))?;
    let replaced = servers.insert(SERVER_NAME.into(), entry).is_some();
    let mut text = serde_json::to_string_pretty(&top).expect("JSON values serialize");
    text.push('\n');
    Ok((text, replaced))
}

/// Write our entry into `client`'s config (see the module docs for the guarantees).
pub fn install(client: Client, env: &DiscoveryEnv, exe: &Path) -> Result<Installed, InstallError> {
    let path = client.config_path(env)?;
    install_at(&path, client, exe)
}

/// [`install`] into an explicit file.
pub fn install_at(path: &Path, client: Client, exe: &Path) -> Result<Installed, InstallError> {
    let io = |action: &'static str, at: &Path| {
        let at = at.to_path_buf();
        move |source| InstallError::Io {
            action,
            path: at,
            source,
        }
    };
    let existing = match fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading", path)(e)),
    };
    let (text, replaced) = merge(existing.as_deref(), path, client, client.entry(exe))?;
    let backup = match existing {
        Some(_) => Some(back_up(path).map_err(io("backing up", path))?),
        None => None,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("creating the folder of", path))?;
    // The file replaced keeps its permissions exactly; a new one gets the usual ones.
    let mode = match fs::metadata(path) {
        Ok(meta) => Mode::Exact(meta.permissions().mode()),
        Err(_) => Mode::Masked(0o666),
    };
    write_atomic(path, text.as_bytes(), mode).map_err(io("writing", path))?;
    Ok(Installed {
        path: path.to_path_buf(),
        backup,
        replaced,
    })
}

/// Copy `path` to `path.bak-YYYYMMDDTHHMMSSZ` (with `-N` added if that exists), keeping its
/// permissions.
fn back_up(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = utc_stamp(SystemTime::now());
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    for n in 0..100 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let backup = path.with_file_name(format!("{name}.bak-{stamp}{suffix}"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&backup)
        {
            Ok(_) => {
                fs::copy(path, &backup)?;
                return Ok(backup);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "too many backups with this timestamp",
    ))
}

/// `YYYYMMDDTHHMMSSZ` for `time` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let [year, month, day, hour, minute, second] = crate::units::utc_fields(secs);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use clap::ValueEnum as _;

    use super::*;
    use crate::proxy::catalogue::discover;

    const EXE: &str = "/opt/bin/mcp-server-code-execution-mode";

    fn client(name: &str) -> Client {
        Client::from_str(name, false).expect("an installable client")
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn merged(existing: Option<&str>, client: Client) -> (Value, bool) {
        let (text, replaced) = merge(
            existing,
            Path::new("c.json"),
            client,
            client.entry(Path::new(EXE)),
        )
        .unwrap();
        (serde_json::from_str(&text).unwrap(), replaced)
    }

    #[test]
    fn other_entries_and_key_order_survive() {
        let existing = r#"{"zeta": 1, "mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}, "git": {"command": "git-mcp"}}, "alpha": {"x": [1, 2]}}"#;
        let (value, replaced) = merged(Some(existing), client("cursor"));
        assert!(!replaced);
        assert_eq!(keys(&value), ["zeta", "mcpServers", "alpha"]);
        assert_eq!(keys(&value["mcpServers"]), ["time", "git", SERVER_NAME]);
        assert_eq!(value["mcpServers"]["time"]["args"][0], "mcp-server-time");
        assert_eq!(value["alpha"]["x"][1], 2);
        assert_eq!(
            value["mcpServers"][SERVER_NAME],
            json!({"command": EXE, "args": ["run"]})
        );
    }

    #[test]
    fn our_entry_is_replaced_in_place() {
        let existing = format!(
            r#"{{"servers": {{"a": {{}}, "{SERVER_NAME}": {{"command": "/old"}}, "b": {{}}}}}}"#
        );
        let (value, replaced) = merged(Some(&existing), client("vscode"));
        assert!(replaced);
        assert_eq!(keys(&value["servers"]), ["a", SERVER_NAME, "b"]);
        assert_eq!(
            value["servers"][SERVER_NAME],
            json!({"type": "stdio", "command": EXE, "args": ["run"]})
        );
    }

    #[test]
    fn a_missing_or_empty_file_starts_afresh() {
        for existing in [None, Some(""), Some("  \n")] {
            let (value, _) = merged(existing, client("claude-code"));
            assert_eq!(
                value,
                json!({"mcpServers": {SERVER_NAME: {"type": "stdio", "command": EXE, "args": ["run"]}}})
            );
        }
    }

    #[test]
    fn files_that_are_not_json_objects_are_refused() {
        let path = Path::new("c.json");
        let entry = || client("cursor").entry(Path::new(EXE));
        let broken = merge(
            Some("{\"mcpServers\": {,}"),
            path,
            client("cursor"),
            entry(),
        );
        assert!(
            matches!(broken, Err(InstallError::NotJson { .. })),
            "{broken:?}"
        );
        let commented = merge(Some("// hi\n{}"), path, client("vscode"), entry());
        assert!(matches!(commented, Err(InstallError::NotJson { .. })));
        let list = merge(Some("[]"), path, client("cursor"), entry());
        assert!(matches!(list, Err(InstallError::NotObject { .. })));
        let odd = merge(
            Some(r#"{"mcpServers": []}"#),
            path,
            client("cursor"),
            entry(),
        );
        let message = odd.unwrap_err().to_string();
        assert!(
            message.contains("`mcpServers` is not a JSON object"),
            "{message}"
        );
    }

    #[test]
    fn write_backs_up_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("mcp.json");
        let first = install_at(&path, client("windsurf"), Path::new(EXE)).unwrap();
        assert_eq!(first.backup, None);
        assert!(!first.replaced);
        let before = r#"{"mcpServers": {"time": {"command": "t"}}}"#;
        fs::write(&path, before).unwrap();
        let second = install_at(&path, client("windsurf"), Path::new(EXE)).unwrap();
        let backup = second.backup.unwrap();
        assert_eq!(fs::read_to_string(&backup).unwrap(), before);
        assert!(
            backup
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("mcp.json.bak-")
        );
        let value: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["mcpServers"]["time"]["command"], "t");
        assert_eq!(value["mcpServers"][SERVER_NAME]["command"], EXE);
        // A second backup in the same second gets its own name.
        let third = install_at(&path, client("windsurf"), Path::new(EXE)).unwrap();
        assert!(third.replaced);
        assert_ne!(third.backup.unwrap(), backup);
        // Not JSON: refused, and the file is left as it was.
        fs::write(&path, "{oops").unwrap();
        assert!(install_at(&path, client("windsurf"), Path::new(EXE)).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "{oops");
    }

    #[test]
    fn write_keeps_permissions_and_cannot_be_redirected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp.json");
        // A new file gets the usual permissions: 0666 less the umask.
        install_at(&path, client("windsurf"), Path::new(EXE)).unwrap();
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))
            .map(|octal| u32::from_str_radix(octal.trim(), 8).unwrap())
            .unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o666 & !umask);
        // An existing file keeps its own, even bits the umask would take away.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o606)).unwrap();
        // A symlink planted under the temporary name the writer once used (predictable from
        // the pid) must not redirect the write.
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let planted = path.with_extension(format!("tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let installed = install_at(&path, client("windsurf"), Path::new(EXE)).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::symlink_metadata(&planted).unwrap().is_symlink());
        assert_eq!(mode(&path), 0o606);
        let value: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["mcpServers"][SERVER_NAME]["command"], EXE);
        // Nothing else is left behind: no temporary file beside the config.
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let backup = installed.backup.unwrap();
        let mut expected = vec![
            "mcp.json".to_string(),
            backup.file_name().unwrap().to_string_lossy().into_owned(),
            planted.file_name().unwrap().to_string_lossy().into_owned(),
            "victim".to_string(),
        ];
        expected.sort();
        assert_eq!(names, expected);
    }

    /// A home and a project folder under `root`, no variables set, this bridge at [`EXE`].
    fn env_in(root: &Path) -> DiscoveryEnv {
        let home = root.join("home");
        DiscoveryEnv {
            home: Some(home.clone()),
            cwd: root.join("project"),
            state_dir: home.join("MCPs"),
            explicit: Vec::new(),
            vars: Arc::new(|_| None),
            self_exe: Some(PathBuf::from(EXE)),
            allow_self_server: false,
        }
    }

    #[test]
    fn discovery_keeps_the_other_entries_and_skips_ours_as_itself() {
        let root = tempfile::tempdir().unwrap();
        let env = env_in(root.path());
        let path = client("cursor").config_path(&env).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            r#"{"mcpServers": {"time": {"command": "mcp-server-time"}}}"#,
        )
        .unwrap();
        let done = install(client("cursor"), &env, Path::new(EXE)).unwrap();
        assert_eq!(done.path, path);
        let catalogue = discover(&env);
        assert_eq!(catalogue.names(), ["time"]);
        let ours = catalogue
            .skipped
            .iter()
            .find(|s| s.name == SERVER_NAME)
            .expect("our entry is reported as skipped");
        assert!(ours.why.contains("recursion guard"), "{}", ours.why);
    }

    #[test]
    fn the_installable_clients_their_files_and_keys() {
        let root = Path::new("/r");
        let env = env_in(root);
        let (home, app) = (root.join("home"), env.app_config_home().unwrap());
        let expected = [
            ("claude-code", home.join(".claude.json"), "mcpServers"),
            (
                "claude-desktop",
                app.join("Claude").join("claude_desktop_config.json"),
                "mcpServers",
            ),
            (
                "cursor",
                home.join(".cursor").join("mcp.json"),
                "mcpServers",
            ),
            (
                "vscode",
                app.join("Code").join("User").join("mcp.json"),
                "servers",
            ),
            (
                "windsurf",
                home.join(".codeium")
                    .join("windsurf")
                    .join("mcp_config.json"),
                "mcpServers",
            ),
        ];
        let offered: Vec<_> = Client::value_variants()
            .iter()
            .map(|c| (c.name(), c.config_path(&env).unwrap(), c.servers_key()))
            .collect();
        assert_eq!(offered, expected);
        let help = |name: &str| client(name).help();
        assert_eq!(
            help("claude-code"),
            r#"Claude Code: `~/.claude.json`, `mcpServers`, with `"type": "stdio"`"#
        );
        assert_eq!(
            help("claude-desktop"),
            "Claude Desktop: `claude_desktop_config.json` in its settings folder, `mcpServers`"
        );
        assert_eq!(
            help("windsurf"),
            "Windsurf: `~/.codeium/windsurf/mcp_config.json`, `mcpServers`"
        );
        let homeless = DiscoveryEnv { home: None, ..env };
        assert!(matches!(
            client("cursor").config_path(&homeless),
            Err(InstallError::NoHome("cursor"))
        ));
    }

    #[test]
    fn every_installable_client_is_written_where_discovery_reads_it() {
        for &client in Client::value_variants() {
            let root = tempfile::tempdir().unwrap();
            let env = env_in(root.path());
            let done = install(client, &env, Path::new(EXE)).unwrap();
            let catalogue = discover(&env);
            let ours = catalogue
                .skipped
                .iter()
                .find(|s| s.name == SERVER_NAME)
                .unwrap_or_else(|| panic!("{client:?}: our entry is not found: {catalogue:#?}"));
            assert_eq!(ours.source, done.path, "{client:?}");
            assert!(ours.why.contains("recursion guard"), "{}", ours.why);
        }
    }

    #[test]
    fn snippets_name_the_executable_and_run() {
        let snippet = client("claude-desktop").snippet(Path::new(EXE));
        let value: Value = serde_json::from_str(&snippet).unwrap();
        assert_eq!(
            value,
            json!({"mcpServers": {SERVER_NAME: {"command": EXE, "args": ["run"]}}})
        );
        let code = client("claude-code").snippet(Path::new("/a b/bridge"));
        assert!(
            code.contains(&format!(
                "claude mcp add --scope user {SERVER_NAME} -- '/a b/bridge' run"
            )),
            "{code}"
        );
    }

    #[test]
    fn timestamps_are_utc_calendar_time() {
        let at = |secs| utc_stamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_798_761_599), "20261231T235959Z");
    }
}
