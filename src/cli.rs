//! Command-line interface. The settings' flags come from [`crate::settings`], where each
//! setting is declared with its `MCP_BRIDGE_*` variable; a flag overrides its variable.

use std::ffi::OsString;
use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::settings::ConfigArgs;

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
    /// Report what this bridge can do here: backends, caches, servers, sessions,
    /// configuration.
    Doctor(DoctorArgs),
    /// List the sessions on this state directory: live ones of running bridges (with their
    /// memory) and saved ones (with their size, age and what they hold).
    Sessions(DoctorArgs),
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
    Build(ImageBuildArgs),
}

/// Settings of `image build`.
#[derive(Debug, Clone, Args)]
pub struct ImageBuildArgs {
    /// Build the bridge's own image instead (`localhost/mcp-server-code-execution-mode:
    /// VERSION`): this binary and the provisioned WASI interpreter over the root filesystem,
    /// serving streamable HTTP on port 8765 as `nobody` (docs/deploy.md).
    #[arg(long)]
    pub bridge: bool,
    /// The settings.
    #[command(flatten)]
    pub config: ConfigArgs,
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

    /// clap checks this only in debug builds; the test command runs release ones.
    #[test]
    fn no_two_flags_of_a_subcommand_share_a_name() {
        fn check(command: &clap::Command, path: &str) {
            let mut seen = std::collections::HashMap::new();
            for arg in command.get_arguments() {
                if let Some(long) = arg.get_long() {
                    let previous = seen.insert(long.to_string(), arg.get_id().to_string());
                    assert!(
                        previous.is_none(),
                        "{path}: --{long} is both {} and {}",
                        previous.unwrap_or_default(),
                        arg.get_id()
                    );
                }
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut command = Cli::command();
        command.build();
        check(&command, "mcp-server-code-execution-mode");
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
