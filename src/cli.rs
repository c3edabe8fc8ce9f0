//! Command-line interface. Flags override the `MCP_BRIDGE_*` environment (see `env.rs`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A code-execution MCP server: one `run_python` tool, sandboxed, with MCP servers as
/// Python proxies.
#[derive(Debug, Parser)]
#[command(name = "mcp-server-code-execution-mode", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdio (what MCP clients launch), or over streamable HTTP.
    Run(RunArgs),
    /// Make the configured backend ready (the WASI interpreter, or the container image),
    /// prove a session starts, then exit.
    Provision(ConfigArgs),
    /// Measure the backends through the real server over MCP (runs the bench binary built
    /// beside this one; `bench --help` lists its options).
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
    /// List the MCP servers discovered in client configs, where each came from, and what
    /// was skipped and why.
    Servers(ServersArgs),
    /// Report what this bridge can do here: backends, caches, servers, configuration.
    Doctor(DoctorArgs),
    /// Container images for the podman and docker backends.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the config snippet that makes an MCP client launch this bridge; with
    /// `--write`, merge it into the client's config file (after a backup).
    InstallClient(InstallClientArgs),
}

/// `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the sandbox root filesystem (debootstrap, Debian with python3) if it is missing,
    /// and import it into the engine as the local image. Needs root for debootstrap.
    Build(ConfigArgs),
}

/// Settings of the `install-client` subcommand.
#[derive(Debug, Clone, Args)]
pub struct InstallClientArgs {
    /// The MCP client.
    #[arg(value_enum)]
    pub client: crate::clients::Client,
    /// Merge the entry into the client's config file (a timestamped backup is kept; other
    /// entries are left alone; a file that is not valid JSON is refused).
    #[arg(long)]
    pub write: bool,
}

/// How `run` talks MCP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Standard input and output: one client, which started this process.
    #[default]
    Stdio,
    /// MCP streamable HTTP at `/mcp`: many clients, each MCP session with its own sandboxes.
    Http,
}

/// Settings of the `run` subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Transport: stdio, or http (MCP streamable HTTP at `http://LISTEN/mcp`).
    #[arg(long, value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,
    /// Address to listen on with `--transport http` [default: 127.0.0.1:8765]; port 0
    /// picks a free port. A non-loopback address needs `MCP_BRIDGE_HTTP_TOKEN`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A browser origin to accept besides loopback ones, e.g. `https://app.example:443`
    /// (`:*` for any port); repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// A `Host` header value to accept besides loopback names (`host` or `host:port`), for
    /// a non-loopback `--listen`; repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Settings shared with the other subcommands.
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl RunArgs {
    /// The HTTP-only flags given without `--transport http`, which would be ignored.
    pub fn stray_http_flags(&self) -> Vec<&'static str> {
        if self.transport == Transport::Http {
            return Vec::new();
        }
        let mut stray = Vec::new();
        if self.listen.is_some() {
            stray.push("--listen");
        }
        if !self.allow_origins.is_empty() {
            stray.push("--allow-origin");
        }
        if !self.allow_hosts.is_empty() {
            stray.push("--allow-host");
        }
        stray
    }
}

/// Settings of the `doctor` subcommand.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Settings shared with `run`.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Settings of the `servers` subcommand.
#[derive(Debug, Clone, Args)]
pub struct ServersArgs {
    /// Also start each server and report its tool count or its error.
    #[arg(long)]
    pub check: bool,
    /// Settings shared with `run`.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Settings shared by the subcommands that start sandboxes. Each overrides the environment
/// variable named in its help.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Sandbox backend: wasi, podman or docker [env: `MCP_BRIDGE_BACKEND`] (wasi).
    #[arg(long)]
    pub backend: Option<String>,
    /// Container image for podman/docker [env: `MCP_BRIDGE_IMAGE`] (a locally built
    /// Debian image with python3).
    #[arg(long)]
    pub image: Option<String>,
    /// OCI runtime for podman/docker, e.g. runsc for gVisor [env: `MCP_BRIDGE_OCI_RUNTIME`].
    #[arg(long)]
    pub oci_runtime: Option<String>,
    /// Default per-run timeout, e.g. 30, 30s, 2m, 500ms [env: `MCP_BRIDGE_TIMEOUT`].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Upper clamp for per-run timeouts [env: `MCP_BRIDGE_MAX_TIMEOUT`].
    #[arg(long)]
    pub max_timeout: Option<String>,
    /// Memory cap per sandbox, e.g. 512m [env: `MCP_BRIDGE_MEMORY`].
    #[arg(long)]
    pub memory: Option<String>,
    /// Process cap per sandbox [env: `MCP_BRIDGE_PIDS`].
    #[arg(long)]
    pub pids: Option<String>,
    /// CPU quota per sandbox, in cores [env: `MCP_BRIDGE_CPUS`].
    #[arg(long)]
    pub cpus: Option<String>,
    /// Idle time before a session is reaped [env: `MCP_BRIDGE_RUNTIME_IDLE_TIMEOUT`].
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Text form of results: compact, toon or json [env: `MCP_BRIDGE_OUTPUT_MODE`].
    #[arg(long)]
    pub output_mode: Option<String>,
    /// Per-stream output cap, e.g. 64k [env: `MCP_BRIDGE_OUTPUT_LIMIT`].
    #[arg(long)]
    pub output_limit: Option<String>,
    /// Warm sessions kept ready [env: `MCP_BRIDGE_POOL_SIZE`].
    #[arg(long)]
    pub pool_size: Option<String>,
    /// Most sessions alive at once [env: `MCP_BRIDGE_MAX_SESSIONS`].
    #[arg(long)]
    pub max_sessions: Option<String>,
    /// Host state directory [env: `MCP_BRIDGE_STATE_DIR`].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace [env: `MCP_BRIDGE_LOG_LEVEL`].
    #[arg(long)]
    pub log_level: Option<String>,
    /// `uid:gid` inside the sandbox [env: `MCP_BRIDGE_CONTAINER_USER`].
    #[arg(long)]
    pub user: Option<String>,
    /// Local python.wasm instead of the pinned download [env: `MCP_BRIDGE_PYTHON_WASM`].
    #[arg(long)]
    pub python_wasm: Option<PathBuf>,
    /// An MCP server config file to read first; repeatable [env: `MCP_SERVERS_CONFIG`].
    #[arg(long)]
    pub servers_config: Vec<PathBuf>,
    /// Also offer the discovery helpers as MCP tools [env: `MCP_BRIDGE_DISCOVERY_TOOLS`].
    #[arg(long)]
    pub discovery_tools: bool,
    /// Timeout of one call to an upstream MCP server [env: `MCP_BRIDGE_TOOL_TIMEOUT`].
    #[arg(long)]
    pub tool_timeout: Option<String>,
}

/// Arguments of the `bench` subcommand: passed unchanged to the bench binary, which parses
/// them (so `bench --help` is the bench's help).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Arguments of `mcp-server-code-execution-mode-bench` (see `bench --help`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_passes_every_argument_on_unchanged() {
        for words in [
            &["--help"][..],
            &["-h"],
            &["--backend", "all", "--iterations", "20", "--out", "/tmp/x"],
            &["tokens", "--servers-config", "a.json"],
            &[
                "proxy",
                "--server",
                "time",
                "--tool",
                "t",
                "--arguments",
                "{\"a\": -1}",
            ],
            &[],
        ] {
            let cli = Cli::parse_from(["server", "bench"].iter().chain(words));
            let Command::Bench(args) = cli.command else {
                panic!("expected `bench`");
            };
            assert_eq!(args.args, words, "bench {words:?}");
        }
    }
}
