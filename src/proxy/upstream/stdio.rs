//! Child processes of stdio servers: environment, spawning, stderr, and their process group.
//!
//! A child gets exactly the environment of its spec on top of [`BASE_ENV`], runs in its `cwd`,
//! and leads its own process group, so that everything it starts (`npx` → `node`, `uvx` →
//! `python`) can be signalled at once. Its stderr is read line by line into tracing, never
//! inherited (our stderr is the operator's log; our stdout is the MCP channel).
//!
//! Orphans: besides [`ProcessGroup::terminate`] (graceful shutdown) and the `SIGKILL` to the
//! group when a [`ProcessGroup`] is dropped, on Linux the child is started through util-linux's
//! `setpriv --pdeathsig KILL` when that is available, so that it is killed even if the bridge
//! itself is `SIGKILL`ed. (`PR_SET_PDEATHSIG` must be set between fork and exec, which this
//! crate cannot do without `unsafe`; `setpriv` sets it and execs the server in the same
//! process.) Gaps: the death signal reaches the direct child only, not processes it started
//! (they usually exit on their own when their stdin, our pipe, closes); it fires when the
//! *thread* that spawned the child exits, and children are spawned from tokio worker threads,
//! which live as long as the runtime; and without `setpriv` (not Linux, or util-linux older
//! than 2.33) a `SIGKILL`ed bridge leaves its children to notice the closed pipe by themselves.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tracing::{debug, info, warn};

use super::StartError;

/// Variables passed from the bridge's own environment to every stdio server, when set; the
/// spec's `env` is applied on top and wins. The first six are the set the official MCP SDKs
/// (TypeScript and Python) pass by default; `LANG`, `LC_ALL` and `TMPDIR` keep locale and
/// temporary files as the user has them. Nothing else leaks: in particular not the API keys
/// and tokens of the client that started the bridge.
pub const BASE_ENV: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR",
];

/// `PATH` for a child when neither the bridge nor the spec has one.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Lines of stderr kept for crash reports.
const TAIL_LINES: usize = 12;
/// Longest stderr line kept in a crash report, in bytes.
const TAIL_LINE_BYTES: usize = 300;
/// A longer stderr line is logged in pieces of this many bytes.
const STDERR_CHUNK: u64 = 8192;

/// The last lines a child wrote to stderr.
pub(super) type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// A spawned stdio server.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: ChildStdout,
    pub(super) stderr: ChildStderr,
    pub(super) group: ProcessGroup,
}

/// The environment a child gets: [`BASE_ENV`] from ours, then the spec's.
pub(super) fn child_env(spec_env: &BTreeMap<String, String>) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = BASE_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (OsString::from(name), value)))
        .collect();
    env.entry(OsString::from("PATH"))
        .or_insert_with(|| OsString::from(DEFAULT_PATH));
    env.extend(
        spec_env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    env
}

/// Where `command` is, resolved the way `execvp` would in the child: a name with a `/` is a
/// path (relative to the child's `cwd`), anything else is looked up on the child's `PATH`.
fn resolve(
    command: &str,
    path_var: Option<&OsString>,
    cwd: Option<&Path>,
) -> Result<PathBuf, StartError> {
    if command.is_empty() {
        return Err(StartError::EmptyCommand);
    }
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let path = Path::new(command);
        let path = match cwd {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path.to_path_buf(),
        };
        return if executable(&path) {
            Ok(path)
        } else {
            Err(StartError::NotExecutable { path })
        };
    }
    let search = path_var.cloned().unwrap_or_default();
    for dir in std::env::split_paths(&search) {
        let dir = match cwd {
            Some(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir,
        };
        let candidate = dir.join(command);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(StartError::NotFound {
        program: command.to_owned(),
        searched: search.to_string_lossy().into_owned(),
    })
}

/// util-linux's `setpriv`, if it supports `--pdeathsig` here (checked once per process).
async fn setpriv() -> Option<&'static Path> {
    static SETPRIV: tokio::sync::OnceCell<Option<PathBuf>> = tokio::sync::OnceCell::const_new();
    SETPRIV
        .get_or_init(|| async {
            if !cfg!(target_os = "linux") {
                return None;
            }
            for candidate in ["/usr/bin/setpriv", "/bin/setpriv"] {
                let works = Command::new(candidate)
                    .args(["--pdeathsig", "KILL", "--", "true"])
                    .env_clear()
                    .env("PATH", DEFAULT_PATH)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if works {
                    return Some(PathBuf::from(candidate));
                }
            }
            warn!(
                "setpriv --pdeathsig is not available: stdio MCP servers may outlive a bridge \
                 that is killed with SIGKILL"
            );
            None
        })
        .await
        .as_deref()
}

/// Spawn a stdio server in its own process group, with piped stdio and a death signal.
pub(super) async fn spawn(
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
) -> Result<Spawned, StartError> {
    if let Some(cwd) = cwd
        && !cwd.is_dir()
    {
        return Err(StartError::NoWorkingDirectory {
            cwd: cwd.to_path_buf(),
        });
    }
    let env = child_env(env);
    let program = resolve(command, env.get(&OsString::from("PATH")), cwd)?;
    let mut cmd = match setpriv().await {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"]).arg(&program);
            cmd
        }
        None => Command::new(&program),
    };
    cmd.args(args)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    // Spawn from a runtime worker thread: the death signal fires when the spawning *thread*
    // exits, and worker threads live as long as the runtime (a `spawn_blocking` thread that
    // happened to call us would not).
    let spawned = tokio::spawn(async move { cmd.spawn() })
        .await
        .map_err(StartError::SpawnTask)?;
    let mut child = spawned.map_err(|source| StartError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id().ok_or(StartError::ExitedAtOnce)?;
    let group = ProcessGroup::new(pid);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(StartError::NoPipes);
    };
    debug!(pid, program = %program.display(), "spawned");
    Ok(Spawned {
        child,
        stdin,
        stdout,
        stderr,
        group,
    })
}

/// Log a child's stderr line by line (at `info`, with the server's name) and keep its tail.
pub(super) async fn pump_stderr(server: Arc<str>, stderr: ChildStderr, tail: StderrTail) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(STDERR_CHUNK)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if text.is_empty() {
                    continue;
                }
                info!(server = %server, "stderr: {text}");
                let mut kept = text.to_owned();
                if kept.len() > TAIL_LINE_BYTES {
                    let mut cut = TAIL_LINE_BYTES;
                    while !kept.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    kept.truncate(cut);
                    kept.push('…');
                }
                let mut tail = tail.lock().expect("stderr tail lock");
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(kept);
            }
            Err(e) => {
                debug!(server = %server, error = %e, "stderr read failed");
                break;
            }
        }
    }
}

/// `exited with status 3`, `killed by signal 9 (SIGKILL)`.
pub(super) fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => {
            if let Some(code) = status.code() {
                format!("the process exited with status {code}")
            } else if let Some(signal) = status.signal() {
                match Signal::try_from(signal) {
                    Ok(name) => format!("the process was killed by signal {signal} ({name})"),
                    Err(_) => format!("the process was killed by signal {signal}"),
                }
            } else {
                format!("the process ended ({status})")
            }
        }
        Err(e) => format!("the process could not be waited for: {e}"),
    }
}

/// The tail of stderr as one line for an error message, or nothing.
pub(super) fn tail_text(tail: &StderrTail) -> String {
    let tail = tail.lock().expect("stderr tail lock");
    if tail.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
    format!("; last stderr: {}", lines.join(" | "))
}

/// The process group a stdio server leads. Dropping it kills the whole group.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    pgid: Pid,
    /// Set once the group was seen empty, so that a later signal cannot hit a new group that
    /// reused the id.
    gone: AtomicBool,
}

impl ProcessGroup {
    fn new(pid: u32) -> Self {
        let raw = i32::try_from(pid).expect("process ids fit in i32");
        Self {
            pgid: Pid::from_raw(raw),
            gone: AtomicBool::new(false),
        }
    }

    /// The process group id (the leader's process id).
    pub(super) fn id(&self) -> u32 {
        self.pgid.as_raw().unsigned_abs()
    }

    /// Send `signal` (or probe, with `None`) to the group; `false` once the group is gone.
    fn signal(&self, signal: Option<Signal>) -> bool {
        if self.gone.load(Ordering::Acquire) {
            return false;
        }
        match killpg(self.pgid, signal) {
            Ok(()) => true,
            Err(Errno::ESRCH) => {
                self.gone.store(true, Ordering::Release);
                false
            }
            Err(e) => {
                debug!(pgid = self.pgid.as_raw(), error = %e, "cannot signal the process group");
                false
            }
        }
    }

    /// Whether a process of the group is still running (zombies, which only wait to be
    /// reaped by their parent, do not count).
    pub(super) fn alive(&self) -> bool {
        if !self.signal(None) {
            return false;
        }
        if cfg!(target_os = "linux") {
            !live_members(self.id()).is_empty()
        } else {
            true
        }
    }

    /// `SIGKILL` the whole group now.
    pub(super) fn kill(&self) {
        if self.signal(Some(Signal::SIGKILL)) {
            debug!(pgid = self.pgid.as_raw(), "process group killed");
        }
    }

    /// `SIGTERM` the group, give it `grace` to exit, then `SIGKILL` what is left.
    pub(super) async fn terminate(&self, grace: Duration) {
        if !self.alive() {
            return;
        }
        self.signal(Some(Signal::SIGTERM));
        if self.wait_empty(grace).await {
            return;
        }
        warn!(
            pgid = self.pgid.as_raw(),
            "process group ignored SIGTERM; killing it"
        );
        self.kill();
        self.wait_empty(Duration::from_millis(500)).await;
    }

    async fn wait_empty(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !self.alive() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running (not zombie) processes whose process group is `pgid`, from `/proc`.
pub(super) fn live_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Some(process) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            members.push(process);
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_base_plus_spec() {
        let spec = BTreeMap::from([
            ("PATH".to_owned(), "/opt/x".to_owned()),
            ("K".into(), "v".into()),
        ]);
        let env = child_env(&spec);
        assert_eq!(
            env.get(&OsString::from("PATH")),
            Some(&OsString::from("/opt/x"))
        );
        assert_eq!(env.get(&OsString::from("K")), Some(&OsString::from("v")));
        for name in env.keys() {
            let name = name.to_string_lossy();
            assert!(
                BASE_ENV.contains(&name.as_ref()) || name == "K",
                "unexpected {name}"
            );
        }
    }

    #[test]
    fn commands_resolve_like_execvp() {
        let path = Some(OsString::from("/nonexistent:/bin:/usr/bin"));
        assert!(resolve("sh", path.as_ref(), None).is_ok());
        let missing = resolve("surely-not-a-command", path.as_ref(), None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "`surely-not-a-command` was not found on PATH (/nonexistent:/bin:/usr/bin)"
        );
        let relative = resolve("./nope", path.as_ref(), Some(Path::new("/"))).unwrap_err();
        assert!(
            matches!(&relative, StartError::NotExecutable { path } if path == Path::new("/./nope")),
            "{relative}"
        );
        assert!(matches!(
            resolve("", path.as_ref(), None),
            Err(StartError::EmptyCommand)
        ));
    }
}
