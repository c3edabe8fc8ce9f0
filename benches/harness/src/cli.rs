//! Command line of the bench: the backend comparison, or a focused measurement.
//!
//! A leaf: the measuring modules take these types, and none of them imports `main`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mcp_server_code_execution_mode::cli::ConfigArgs;

/// The server binary the bench drives unless `--server` names another: the one built beside
/// this binary.
pub(crate) const SERVER_BINARY: &str = "mcp-server-code-execution-mode";

/// Measure the backends through the real server over MCP.
///
/// Also run as `mcp-server-code-execution-mode bench`, which passes its arguments here and
/// `--server` naming itself.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcp-server-code-execution-mode-bench", version)]
// The server passes `--server` first; a `--server` of the user's comes later and wins.
#[command(args_override_self = true)]
pub(crate) struct BenchArgs {
    /// A focused measurement instead of the backend comparison.
    #[command(subcommand)]
    pub(crate) focus: Option<BenchFocus>,
    /// Backends to measure: a comma-separated list, or `all`.
    #[arg(long, default_value = "wasi")]
    pub(crate) backend: String,
    /// Warm round trips to time per backend.
    #[arg(long, default_value_t = 200)]
    pub(crate) iterations: usize,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    pub(crate) json: bool,
    /// Directory to write `bench.json` and `bench.md` into.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// The server binary to drive [default: `mcp-server-code-execution-mode` beside this
    /// binary].
    #[arg(long)]
    pub(crate) server: Option<PathBuf>,
    /// Also time one proxied call per backend: `SERVER.TOOL` of a configured MCP server.
    #[arg(long, value_name = "SERVER.TOOL")]
    pub(crate) proxy: Option<String>,
    /// Arguments of the proxied call, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub(crate) proxy_arguments: String,
    /// An MCP server config file to read first (for `--proxy`); repeatable.
    #[arg(long)]
    pub(crate) servers_config: Vec<PathBuf>,
    /// The host's Python that the CPU and data workloads are compared with (the data
    /// ratios need numpy, pandas and matplotlib in it).
    #[arg(long, default_value = "python3")]
    pub(crate) host_python: PathBuf,
}

/// Focused benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum BenchFocus {
    /// Context economy: tokens of our `tools/list` against the sum of the configured
    /// upstream servers' `tools/list` (o200k tokenizer).
    Tokens(ConfigArgs),
    /// Overhead of one proxied call (sandbox, host, upstream and back) over the upstream's
    /// own round trip.
    Proxy(ProxyBenchArgs),
    /// Count the o200k tokens of the UTF-8 text on stdin and print the number; for scripts
    /// that measure what a client receives (`tests/e2e/agent_flow.py`).
    CountTokens,
    /// Durable sessions only: save and resume times, checkpoint sizes, start-up with 1,000
    /// saved sessions, for the backends of `--backend`.
    Durable,
    /// The way out to allowed hosts: a request through `fetch` and through the session's
    /// proxy, against the host's Python reaching the same server directly, for the
    /// backends of `--backend`.
    Network,
    /// Replicas behind HAProxy (`deploy/haproxy/haproxy.cfg`) over streamable HTTP: the
    /// load balancer's cost on a warm call, and three replicas' throughput against one's,
    /// for the backends of `--backend`. Needs `haproxy` (Debian's package).
    Replicas,
    /// Where a warm call's time goes, against the protocol's own floor (an rmcp server
    /// answering the same bytes at once) and `exec("pass")` inside the guest, for the
    /// backends of `--backend`.
    Floor,
    /// Warm calls as clients built on the official Python MCP SDK see them, for the
    /// backends of `--backend`: through the bridge with and without the SDK's validation
    /// of `structuredContent`, and through an unsandboxed in-process Python server, for
    /// each `--python`; the bench's own rmcp client beside them.
    Clients {
        /// A Python interpreter with the SDK (`pip install mcp`, 1.x or 2.x); repeatable.
        #[arg(long, required = true)]
        python: Vec<PathBuf>,
    },
    /// The WASI backend under each engine setting (`MCP_BRIDGE_WASI_ENGINE`): time to
    /// prepare the interpreter, a warm `pass` (`--iterations` of them) and the CPU-bound
    /// programs against `--host-python`. Each setting recompiles the interpreter (the full
    /// one: minutes) in a cache of the bench's own.
    Engine(EngineBenchArgs),
    /// Serve MCP over stdio, answering every `tools/call` with this `CallToolResult` (JSON)
    /// at once: the floor `bench floor` measures against.
    #[command(hide = true)]
    FloorServer {
        /// The answer.
        answer: String,
    },
}

/// Settings of `bench engine`.
#[derive(Debug, Clone, Args)]
pub(crate) struct EngineBenchArgs {
    /// An engine setting to measure, as `MCP_BRIDGE_WASI_ENGINE` takes it; repeatable
    /// [default: wasmtime's defaults, then each setting changed alone].
    #[arg(long)]
    pub(crate) tuning: Vec<String>,
    /// The WASI interpreter: `full` or `slim`.
    #[arg(long, default_value = "full")]
    pub(crate) wasi_python: String,
    /// Times each CPU-bound program runs per setting (the median counts).
    #[arg(long, default_value_t = 3)]
    pub(crate) repeats: usize,
    /// The cache directory the settings are compiled into [default: a temporary one,
    /// removed at the end].
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
}

/// Settings of `bench proxy`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ProxyBenchArgs {
    /// The configured server to call.
    #[arg(long)]
    pub(crate) server: String,
    /// The tool to call.
    #[arg(long)]
    pub(crate) tool: String,
    /// The tool's arguments, as a JSON object.
    #[arg(long, default_value = "{}")]
    pub(crate) arguments: String,
    /// Calls to time each way.
    #[arg(long, default_value_t = 100)]
    pub(crate) iterations: usize,
    /// Settings shared with `run`.
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{BenchArgs, BenchFocus};

    #[test]
    fn command_line_is_consistent() {
        BenchArgs::command().debug_assert();
    }

    #[test]
    fn count_tokens_takes_no_arguments() {
        let args = BenchArgs::parse_from(["bench", "--server", "/bin/ours", "count-tokens"]);
        assert!(matches!(args.focus, Some(BenchFocus::CountTokens)));
    }

    #[test]
    fn a_later_server_flag_wins_over_the_one_the_server_passes() {
        let args =
            BenchArgs::parse_from(["bench", "--server", "/bin/ours", "--server", "/bin/theirs"]);
        assert_eq!(args.server.as_deref(), Some("/bin/theirs".as_ref()));
    }

    #[test]
    fn the_server_flag_before_proxy_leaves_the_upstream_server_alone() {
        let args = BenchArgs::parse_from([
            "bench",
            "--server",
            "/bin/ours",
            "proxy",
            "--server",
            "time",
            "--tool",
            "now",
        ]);
        assert_eq!(args.server.as_deref(), Some("/bin/ours".as_ref()));
        let Some(BenchFocus::Proxy(proxy)) = args.focus else {
            panic!("expected `proxy`");
        };
        assert_eq!(proxy.server, "time");
    }
}
