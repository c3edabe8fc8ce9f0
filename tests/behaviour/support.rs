//! The test bridge: the real binary, started as a child process and driven over MCP.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject,
};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Path of the binary under test: `TEST_BRIDGE_BIN` when set (for target dirs that several
/// checkouts share, where the top-level binary may be another checkout's), else cargo's.
fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("TEST_BRIDGE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mcp-server-code-execution-mode").to_owned())
    })
}

/// The machine's interpreter cache, shared by every bridge the suite starts.
pub(crate) fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("MCP_BRIDGE_CACHE_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_default();
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map_or_else(|| home.join(".cache"), std::path::PathBuf::from);
            cache.join("mcp-server-code-execution-mode")
        },
        std::path::PathBuf::from,
    )
}

/// An unprivileged user a rootless backend runs bridges as, with a copy of the binary and a
/// root filesystem it can read (tests/run.sh makes them, as root): `oci_rootless`'s has
/// cgroups delegated to it, `oci_rootless_bare`'s has none.
#[derive(Debug)]
struct RootlessUser {
    uid: u32,
    gid: u32,
    bin: String,
    rootfs: String,
}

/// The rootless user of `backend`, when it runs bridges as one.
fn rootless_user(backend: &TestBackend) -> Option<Result<&'static RootlessUser, String>> {
    static DELEGATED: OnceLock<Result<RootlessUser, String>> = OnceLock::new();
    static BARE: OnceLock<Result<RootlessUser, String>> = OnceLock::new();
    let (cell, user_var) = match backend.name {
        "oci_rootless" => (&DELEGATED, "TEST_ROOTLESS_USER"),
        "oci_rootless_bare" => (&BARE, "TEST_ROOTLESS_BARE_USER"),
        _ => return None,
    };
    let user = cell.get_or_init(|| {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!("{name} is not set (tests/run.sh sets it when it runs as root)")
            })
        };
        let user = var(user_var)?;
        let id = |flag: &str| -> Result<u32, String> {
            let out = std::process::Command::new("id")
                .args([flag, &user])
                .output()
                .map_err(|e| e.to_string())?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| format!("no user {user}"))
        };
        Ok(RootlessUser {
            uid: id("-u")?,
            gid: id("-g")?,
            bin: var("TEST_ROOTLESS_BIN")?,
            rootfs: var("TEST_ROOTLESS_ROOTFS")?,
        })
    });
    Some(user.as_ref().map_err(Clone::clone))
}

/// The uid of `backend`'s rootless user (an error for other backends).
fn rootless_uid(backend: &TestBackend) -> Result<u32> {
    match rootless_user(backend) {
        Some(user) => Ok(user.map_err(anyhow::Error::msg)?.uid),
        None => bail!("{} does not run as a rootless user", backend.name),
    }
}

/// Hand a host directory the test made to the user `backend` runs bridges as (only the
/// rootless backends run them as someone else), so its bridge can use it.
#[allow(
    dead_code,
    reason = "the adversarial suite uses it; this file is shared"
)]
pub(crate) fn hand_to_bridge_user(backend: &TestBackend, dir: &std::path::Path) -> Result<()> {
    let Some(user) = rootless_user(backend) else {
        return Ok(());
    };
    let user = user.map_err(anyhow::Error::msg)?;
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(dir)
        .status()?;
    ensure!(status.success(), "chown {} failed", dir.display());
    Ok(())
}

/// The bridge binary as `backend` runs it: as the rootless user for the rootless backends.
fn bridge_program(backend: &TestBackend) -> std::process::Command {
    match rootless_user(backend).and_then(Result::ok) {
        Some(user) => {
            let mut command = std::process::Command::new("setpriv");
            command
                .arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .args(["--clear-groups", "--", &user.bin])
                .env("MCP_BRIDGE_ROOTFS", &user.rootfs)
                .env_remove("XDG_RUNTIME_DIR");
            command
        }
        None => std::process::Command::new(bin()),
    }
}

/// How the worlds' folders begin; the test process's id follows.
const WORLD_PREFIX: &str = "bridge-suite-";

/// Removes the worlds left by test processes that are gone. A world lives in a static, which
/// is never dropped, so each process leaves its worlds behind (hundreds of MB each: caches,
/// checkpoints, packages); the next run clears them. Folders of the older naming, without a
/// process id, go too.
fn remove_worlds_of_gone_processes() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(WORLD_PREFIX)) else {
                continue;
            };
            let owner = rest
                .split_once('-')
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            let alive = owner.is_some_and(|pid| {
                pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            if !alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// The folder holding the home, state, working and cache directories of the bridges this
/// test process starts on `backend` (the rootless users get their own).
fn suite_world(backend: &TestBackend) -> &'static std::path::Path {
    static WORLD: OnceLock<tempfile::TempDir> = OnceLock::new();
    static ROOTLESS_WORLD: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BARE_WORLD: OnceLock<tempfile::TempDir> = OnceLock::new();
    let owner = rootless_user(backend).and_then(Result::ok);
    let cell = match backend.name {
        _ if owner.is_none() => &WORLD,
        "oci_rootless_bare" => &BARE_WORLD,
        _ => &ROOTLESS_WORLD,
    };
    let world = cell.get_or_init(|| {
        remove_worlds_of_gone_processes();
        let world = tempfile::Builder::new()
            .prefix(&format!("{WORLD_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("tempdir");
        for dir in ["home", "state", "cwd", "cache"] {
            std::fs::create_dir(world.path().join(dir)).expect("suite dirs");
            if let Some(user) = owner {
                std::os::unix::fs::chown(world.path().join(dir), Some(user.uid), Some(user.gid))
                    .expect("chown suite dirs");
            }
        }
        if owner.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(world.path(), std::fs::Permissions::from_mode(0o755))
                .expect("open the suite dir");
        }
        world
    });
    world.path()
}

/// The state directory (`MCP_BRIDGE_STATE_DIR`) of the bridges started on `backend`.
pub(crate) fn suite_state_dir(backend: &TestBackend) -> std::path::PathBuf {
    suite_world(backend).join("state")
}

/// A bridge command isolated from the machine's MCP client configs: its own empty home,
/// state dir and working directory, so servers configured on the machine running the suite
/// never leak into it. The interpreter cache stays shared (the rootless user gets its own).
fn isolated_bridge_command(backend: &TestBackend) -> tokio::process::Command {
    let owner = rootless_user(backend).and_then(Result::ok);
    let world = suite_world(backend);
    let cache = if owner.is_some() {
        world.join("cache")
    } else {
        cache_dir()
    };
    let mut command = tokio::process::Command::from(bridge_program(backend));
    command
        .env("HOME", world.join("home"))
        .env("MCP_BRIDGE_STATE_DIR", world.join("state"))
        .env("MCP_BRIDGE_CACHE_DIR", cache)
        .env("MCP_BRIDGE_LOG_LEVEL", "warn")
        .env_remove("MCP_SERVERS_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .current_dir(world.join("cwd"));
    command
}

/// Run a subcommand of the bridge (`doctor`, `sessions`, ...) on `backend`'s state
/// directory, as the suite's bridges run; its output.
pub(crate) async fn bridge_cli(
    backend: &TestBackend,
    args: &[&str],
) -> Result<std::process::Output> {
    let mut command = isolated_bridge_command(backend);
    command.args(args).stdin(Stdio::null());
    let output = tokio::time::timeout(Duration::from_mins(2), command.output())
        .await
        .context("the subcommand did not finish within 2 minutes")??;
    Ok(output)
}

/// A backend the suite runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestBackend {
    /// The suite's name for it: a backend, or a backend with options
    /// (`podman_gvisor`: podman running containers under gVisor's runsc; `wasi_slim`: the
    /// WASI backend on the slim interpreter).
    pub(crate) name: &'static str,
}

impl TestBackend {
    /// The `--backend` it runs with.
    pub(crate) fn backend(&self) -> &'static str {
        match self.name {
            "podman_gvisor" => "podman",
            "wasi_slim" => "wasi",
            "oci_rootless" | "oci_rootless_bare" => "oci",
            name => name,
        }
    }

    /// Flags beyond `--backend`.
    fn flags(&self) -> &'static [&'static str] {
        match self.name {
            "podman_gvisor" => &["--oci-runtime", "runsc"],
            "wasi_slim" => &["--wasi-python", "slim"],
            _ => &[],
        }
    }

    /// True when it runs containers (under an engine, or directly with libcontainer).
    pub(crate) fn is_container(&self) -> bool {
        matches!(self.backend(), "podman" | "docker" | "oci")
    }

    /// Whether its interpreter has the scientific stack (numpy, pandas, scipy, scikit-learn,
    /// matplotlib): every backend but the slim WASI interpreter, which has the standard
    /// library only. A test of `library` on a backend without it prints a loud SKIP line
    /// naming the reason and passes.
    pub(crate) fn has_data_stack(&self, library: &str) -> bool {
        if self.name != "wasi_slim" {
            return true;
        }
        #[allow(clippy::print_stderr, reason = "the skip must be loud")]
        {
            eprintln!(
                "SKIP {} ({library}): the slim WASI interpreter has the standard library only",
                self.name
            );
        }
        false
    }

    /// True when it runs containers under an engine with a `ps` command.
    fn uses_engine(&self) -> bool {
        matches!(self.backend(), "podman" | "docker")
    }
}

/// One backend's probe, made at most once.
type ProbeCell = Arc<OnceLock<Result<(), String>>>;

/// Whether a backend can run here, found out once per test process.
fn probe(backend: TestBackend) -> Result<(), String> {
    static PROBES: OnceLock<Mutex<HashMap<&'static str, ProbeCell>>> = OnceLock::new();
    let cell = PROBES
        .get_or_init(Mutex::default)
        .lock()
        .expect("probe table")
        .entry(backend.name)
        .or_default()
        .clone();
    cell.get_or_init(|| {
        if let Some(user) = rootless_user(&backend) {
            user?;
        }
        let output = bridge_program(&backend)
            .args(["provision", "--backend", backend.backend()])
            .args(backend.flags())
            .env("MCP_BRIDGE_LOG_LEVEL", "error")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    })
    .clone()
}

impl TestBackend {
    /// `Ok(true)` when the backend can run; `Ok(false)` (after printing a loud SKIP line)
    /// when it cannot and is not required; an error when it is required but cannot run.
    pub(crate) fn available(&self) -> Result<bool> {
        match probe(*self) {
            Ok(()) => Ok(true),
            Err(reason) => {
                let required = std::env::var("TEST_REQUIRE_BACKENDS").unwrap_or_default();
                if required.split(',').any(|b| b.trim() == self.name) {
                    bail!(
                        "backend {} is required (TEST_REQUIRE_BACKENDS) but: {reason}",
                        self.name
                    );
                }
                #[allow(clippy::print_stderr, reason = "the skip must be loud")]
                {
                    eprintln!("SKIP {}: {reason}", self.name);
                }
                Ok(false)
            }
        }
    }

    /// Start a bridge on this backend with extra environment, as a client of its own name
    /// (sessions are saved under the client's name: no other test resumes them).
    pub(crate) async fn bridge_with(&self, env: &[(&str, &str)]) -> Result<TestBridge> {
        self.bridge_as(env, &unique_client_name()).await
    }

    /// Start a bridge on this backend with extra environment, as the client `client`.
    pub(crate) async fn bridge_as(&self, env: &[(&str, &str)], client: &str) -> Result<TestBridge> {
        let mut command = isolated_bridge_command(self);
        command
            .arg("run")
            .arg("--backend")
            .arg(self.backend())
            .args(self.flags());
        for (key, value) in env {
            command.env(key, value);
        }
        let (transport, _) = TokioChildProcess::builder(command)
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the bridge")?;
        let pid = transport.id().context("the bridge exited at once")?;
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(client, "0"),
        );
        let client = info
            .serve(transport)
            .await
            .context("initialising the bridge")?;
        Ok(TestBridge { client, pid })
    }

    /// Start a bridge with the default configuration.
    pub(crate) async fn bridge(&self) -> Result<TestBridge> {
        self.bridge_with(&[]).await
    }
}

/// A running bridge and an MCP client connected to it.
pub(crate) struct TestBridge {
    pub(crate) client: RunningService<RoleClient, ClientConfig>,
    /// The bridge's process id.
    pub(crate) pid: u32,
}

/// What a `run_python` call returned, in the shapes tests look at.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) is_error: bool,
    pub(crate) text: String,
    pub(crate) structured: Value,
    /// Every content block, as JSON.
    pub(crate) content: Vec<Value>,
}

impl Reply {
    /// The paths of the files the run sent back (`files`), in order.
    pub(crate) fn file_paths(&self) -> Vec<&str> {
        self.structured["files"]
            .as_array()
            .map(|files| files.iter().filter_map(|f| f["path"].as_str()).collect())
            .unwrap_or_default()
    }
    pub(crate) fn stdout(&self) -> &str {
        self.structured["stdout"].as_str().unwrap_or_default()
    }
    pub(crate) fn stderr(&self) -> &str {
        self.structured["stderr"].as_str().unwrap_or_default()
    }
    pub(crate) fn status(&self) -> &str {
        self.structured["status"].as_str().unwrap_or_default()
    }
    /// The limits the reply says this host does not enforce (`unenforced`), one entry each,
    /// each starting with the limit's name (`memory:`, `processes:`, `cpu:`).
    pub(crate) fn unenforced(&self) -> Vec<&str> {
        self.structured["unenforced"]
            .as_array()
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

impl TestBridge {
    /// Call `run_python` with raw arguments.
    pub(crate) async fn call_raw(&self, arguments: Value) -> Result<CallToolResult> {
        let Value::Object(arguments) = arguments else {
            bail!("arguments must be an object")
        };
        let params =
            CallToolRequestParams::new("run_python").with_arguments(arguments as JsonObject);
        Ok(self.client.call_tool(params).await?)
    }

    /// Call `run_python` with these arguments and decode the reply.
    pub(crate) async fn call(&self, arguments: Value) -> Result<Reply> {
        let result = self.call_raw(arguments).await?;
        Ok(Reply {
            is_error: result.is_error == Some(true),
            text: result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect::<Vec<_>>()
                .join("\n"),
            structured: result.structured_content.clone().unwrap_or(Value::Null),
            content: result
                .content
                .iter()
                .map(|block| serde_json::to_value(block).unwrap_or(Value::Null))
                .collect(),
        })
    }

    /// Run code in the default session.
    pub(crate) async fn run(&self, code: &str) -> Result<Reply> {
        self.call(json!({ "code": code })).await
    }

    /// The server still serves: a follow-up call in the default session works.
    pub(crate) async fn alive(&self) -> Result<()> {
        let out = self.ok("print('alive')").await?;
        ensure!(out == "alive\n", "the follow-up call printed {out:?}");
        Ok(())
    }

    /// Run code that must succeed; returns its stdout.
    /// `Some(the reply's sentence)` when a reply says `limit` (`memory`, `processes`, `cpu`)
    /// is not enforced on this host, `None` when it holds.
    pub(crate) async fn unenforced(&self, limit: &str) -> Result<Option<String>> {
        let reply = self.run("pass").await?;
        let prefix = format!("{limit}:");
        Ok(reply
            .unenforced()
            .into_iter()
            .find(|entry| entry.starts_with(&prefix))
            .map(ToString::to_string))
    }

    pub(crate) async fn ok(&self, code: &str) -> Result<String> {
        let reply = self.run(code).await?;
        anyhow::ensure!(
            !reply.is_error,
            "expected success for {code:?}, got: {}",
            reply.text
        );
        Ok(reply.stdout().to_string())
    }
}

/// A bridge driven with raw JSON-RPC lines, for malformed-input tests.
pub(crate) struct RawBridge {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl RawBridge {
    pub(crate) fn start(backend: &TestBackend) -> Result<Self> {
        Self::start_with(backend, &[])
    }

    /// Start a bridge on `backend` with extra environment.
    pub(crate) fn start_with(backend: &TestBackend, env: &[(&str, &str)]) -> Result<Self> {
        let mut command = isolated_bridge_command(backend);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .args(["run", "--backend", backend.backend()])
            .args(backend.flags())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    pub(crate) async fn send_line(&mut self, line: &str) -> Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub(crate) async fn send(&mut self, message: &Value) -> Result<()> {
        self.send_line(&message.to_string()).await
    }

    /// Read messages until one has this id.
    pub(crate) async fn response(&mut self, id: i64) -> Result<Value> {
        let read = async {
            loop {
                let mut line = String::new();
                if self.stdout.read_line(&mut line).await? == 0 {
                    bail!("the bridge closed its stdout");
                }
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    bail!("the bridge wrote a non-JSON line to stdout: {line:?}");
                };
                if message["id"] == json!(id) {
                    return Ok(message);
                }
            }
        };
        tokio::time::timeout(Duration::from_mins(1), read)
            .await
            .context("no response")?
    }

    /// Initialise as a client of its own name (no other test resumes its sessions).
    pub(crate) async fn initialize(&mut self) -> Result<()> {
        self.initialize_as(&unique_client_name()).await
    }

    /// Initialise as the client `client`.
    pub(crate) async fn initialize_as(&mut self, client: &str) -> Result<()> {
        self.send(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": client, "version": "0"}}}),
        )
        .await?;
        self.response(0).await?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The bridge's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the bridge is running")
    }

    /// Call `run_python` with `code` and wait for the answer.
    pub(crate) async fn run(&mut self, id: i64, code: &str) -> Result<Value> {
        self.call(id, json!({"code": code})).await
    }

    /// Call `run_python` with `arguments` and wait for the answer.
    pub(crate) async fn call(&mut self, id: i64, arguments: Value) -> Result<Value> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "run_python", "arguments": arguments}}))
            .await?;
        self.response(id).await
    }

    /// End the bridge as a client or a supervisor would, and wait for it to exit.
    pub(crate) async fn finish(self, how: Ending) -> Result<std::process::ExitStatus> {
        let Self {
            mut child, stdin, ..
        } = self;
        let pid = child.id().context("the bridge already exited")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        match how {
            Ending::CloseStdin => drop(stdin),
            Ending::Signal(signal) => nix::sys::signal::kill(pid, signal)?,
        }
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .context("the bridge did not exit within 30 s")?
            .context("waiting for the bridge")
    }
}

/// A client name no other bridge of this test process uses.
pub(crate) fn unique_client_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("suite-{}-{n}", std::process::id())
}

/// How a test ends a bridge.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ending {
    /// The client goes away: stdin reaches end of file.
    CloseStdin,
    /// A signal from a supervisor (SIGTERM) or a crash (SIGKILL).
    Signal(nix::sys::signal::Signal),
}

/// The host's `cpu.stat` of the container a bridge process runs (its first one).
pub(crate) fn container_cpu_stat(backend: &TestBackend, bridge_pid: u32) -> Result<String> {
    let dir = container_cgroups(backend, bridge_pid, "cpu")?
        .into_iter()
        .next()
        .context("the bridge has no running container")?;
    let path = dir.join("cpu.stat");
    std::fs::read_to_string(&path).with_context(|| path.display().to_string())
}

/// The host's cgroup directories (for `controller`, on cgroup v1; the unified one on v2) of
/// the containers a bridge process runs.
pub(crate) fn container_cgroups(
    backend: &TestBackend,
    bridge_pid: u32,
    controller: &str,
) -> Result<Vec<std::path::PathBuf>> {
    if backend.backend() == "oci" {
        // One cgroup per container, named after the bridge, under the backend's parent.
        let parent = match rootless_user(backend) {
            Some(_) => format!("mcp-sandbox-{}", rootless_uid(backend)?),
            None => "mcp-sandbox".to_string(),
        };
        let prefix = format!("mcp-{bridge_pid}-");
        let base = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(parent);
        return Ok(std::fs::read_dir(&base)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect());
    }
    let engine = backend.backend();
    let listing = std::process::Command::new(engine)
        .args([
            "ps",
            "--filter",
            "label=io.github.mcp-server-code-execution-mode.owner",
            "--format",
            "{{.ID}} {{.Labels}}",
        ])
        .output()?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    let mut dirs = Vec::new();
    for id in listing
        .lines()
        .filter(|line| line.contains(&format!(":{bridge_pid}:")))
        .filter_map(|line| line.split_whitespace().next())
    {
        let inspect = std::process::Command::new(engine)
            .args(["inspect", "--format", "{{.State.Pid}}", id])
            .output()?;
        let pid = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let dir = cgroups
            .lines()
            .find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                if controllers.split(',').any(|c| c == controller) {
                    Some(format!("/sys/fs/cgroup/{controller}{path}"))
                } else if controllers.is_empty() {
                    Some(format!("/sys/fs/cgroup{path}"))
                } else {
                    None
                }
            })
            .with_context(|| format!("no {controller} cgroup for container {id}"))?;
        dirs.push(dir.into());
    }
    Ok(dirs)
}

/// What a bridge process left behind on this backend: WASI scratch directories, or
/// containers and private podman API services.
pub(crate) fn leftovers(backend: &TestBackend, pid: u32) -> Result<Vec<String>> {
    let mut found: Vec<String> = std::fs::read_dir(std::env::temp_dir())?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.starts_with(&format!("mcp-wasi-{pid}-"))
                // Pids are reused: another backend's bridge may have this pid's number.
                || (backend.backend() == "podman" && *name == format!("mcp-podman-{pid}"))
                || *name == format!("mcp-container-{pid}")
        })
        .collect();
    match backend.name {
        "oci" => found.extend(oci_leftovers(
            pid,
            std::path::Path::new("/run/mcp-sandbox-oci"),
            "mcp-sandbox",
        )),
        "oci_rootless" | "oci_rootless_bare" => {
            let uid = rootless_uid(backend)?;
            found.extend(oci_leftovers(
                pid,
                &std::env::temp_dir().join(format!("mcp-sandbox-oci-{uid}")),
                &format!("mcp-sandbox-{uid}"),
            ));
        }
        _ => {}
    }
    if backend.uses_engine() {
        let output = std::process::Command::new(backend.backend())
            .args([
                "ps",
                "-a",
                "--filter",
                "label=io.github.mcp-server-code-execution-mode.owner",
                "--format",
                "{{.ID}} {{.Labels}}",
            ])
            .output()
            .context("listing containers")?;
        ensure!(
            output.status.success(),
            "{} ps failed: {}",
            backend.backend(),
            String::from_utf8_lossy(&output.stderr)
        );
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|line| line.contains(&format!(":{pid}:")))
                .map(|line| format!("container {line}")),
        );
    }
    Ok(found)
}

/// What the oci backend keeps per container of bridge `pid`: libcontainer state, bundles,
/// cgroups, and live container processes.
fn oci_leftovers(pid: u32, state: &std::path::Path, cgroup_parent: &str) -> Vec<String> {
    let prefix = format!("mcp-{pid}-");
    let ours = |name: &str| name.starts_with(&prefix);
    let mut found = Vec::new();
    let mut list = |dir: std::path::PathBuf| {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if ours(&name) {
                    found.push(format!("{}", dir.join(name).display()));
                }
            }
        }
    };
    list(state.to_path_buf());
    list(state.join("bundles"));
    list(std::path::Path::new("/sys/fs/cgroup").join(cgroup_parent));
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for controller in controllers.flatten() {
            list(controller.path().join(cgroup_parent));
        }
    }
    found.sort();
    found.dedup();
    found
}
