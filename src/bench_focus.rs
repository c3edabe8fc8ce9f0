//! `bench tokens` and `bench proxy`: the context economy, and the cost of one proxied call.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mcp_server_code_execution_mode::cli::{ConfigArgs, ProxyBenchArgs};
use mcp_server_code_execution_mode::config;
use mcp_server_code_execution_mode::proxy::dispatch::Proxy;
use rmcp::model::{CallToolRequestParams, JsonObject, ListToolsResult};
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt, service::RunningService};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

/// The flags of `args` as command-line words, so the bridge under test sees the same config.
fn config_flags(args: &ConfigArgs) -> Vec<String> {
    args.to_flags()
}

async fn bridge(server: &Path, flags: &[String], env: &[(&str, &str)]) -> Result<Client> {
    let mut command = tokio::process::Command::new(server);
    command
        .arg("run")
        .args(flags)
        .env("MCP_BRIDGE_LOG_LEVEL", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting the bridge")?;
    ().serve(transport).await.context("initialising the bridge")
}

fn tokens(bpe: &tiktoken_rs::CoreBPE, value: &impl serde::Serialize) -> Result<usize> {
    Ok(bpe
        .encode_with_special_tokens(&serde_json::to_string(value)?)
        .len())
}

/// `bench tokens`.
pub(crate) async fn tokens_report(args: &ConfigArgs) -> Result<String> {
    let config = config::resolve(args).map_err(anyhow::Error::msg)?;
    let bpe = tiktoken_rs::o200k_base().map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    let exe = std::env::current_exe()?;
    let flags = config_flags(args);
    let ours = bridge(&exe, &flags, &[]).await?;
    let ours_tokens = tokens(
        &bpe,
        &ListToolsResult::with_all_items(ours.list_all_tools().await?),
    )?;
    ours.cancel().await.ok();
    let with_discovery = bridge(&exe, &flags, &[("MCP_BRIDGE_DISCOVERY_TOOLS", "1")]).await?;
    let discovery_tokens = tokens(
        &bpe,
        &ListToolsResult::with_all_items(with_discovery.list_all_tools().await?),
    )?;
    with_discovery.cancel().await.ok();

    let proxy = Proxy::from_config(&config);
    let mut out = String::new();
    let _ = writeln!(out, "## Context economy (o200k tokens of `tools/list`)\n");
    let _ = writeln!(out, "| server | tools | tokens |\n|---|---|---|");
    let mut total = 0;
    for entry in &proxy.catalogue().servers {
        match proxy.server_tools(&entry.name).await {
            Ok(tools) => {
                let count = tokens(&bpe, &ListToolsResult::with_all_items(tools.clone()))?;
                total += count;
                let _ = writeln!(out, "| {} | {} | {count} |", entry.name, tools.len());
            }
            Err(e) => {
                let _ = writeln!(out, "| {} | failed: {} | |", entry.name, e.message);
            }
        }
    }
    proxy.shutdown().await;
    let _ = writeln!(out, "| **all upstreams** | | **{total}** |");
    let _ = writeln!(
        out,
        "| **this bridge** (`run_python` alone) | 1 | **{ours_tokens}** |"
    );
    let _ = writeln!(
        out,
        "| this bridge with `--discovery-tools` | 5 | {discovery_tokens} |"
    );
    if ours_tokens > 0 && total > 0 {
        #[allow(clippy::cast_precision_loss, reason = "display only")]
        let ratio = total as f64 / ours_tokens as f64;
        let _ = writeln!(
            out,
            "\nA client loads {ratio:.1}× fewer tokens through this bridge."
        );
    }
    Ok(out)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Medians of one proxied call, each way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyMedians {
    /// The upstream called by the host's own rmcp client.
    pub(crate) direct: Duration,
    /// `run_python("pass")` through MCP.
    pub(crate) pass: Duration,
    /// `run_python` making the one proxied call.
    pub(crate) proxied: Duration,
}

impl ProxyMedians {
    /// What the proxy path adds over the upstream's own time and an empty run.
    pub(crate) fn overhead(&self) -> Duration {
        self.proxied
            .saturating_sub(self.pass)
            .saturating_sub(self.direct)
    }
}

/// `bench proxy`.
pub(crate) async fn proxy_report(args: &ProxyBenchArgs) -> Result<String> {
    let medians = proxy_medians(args).await?;
    let iterations = args.iterations.max(5);
    let (direct, pass, proxied, overhead) = (
        medians.direct,
        medians.pass,
        medians.proxied,
        medians.overhead(),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## One proxied call: `{}.{}` ({iterations} iterations, medians)\n",
        args.server, args.tool
    );
    let _ = writeln!(out, "| measurement | ms |\n|---|---|");
    let _ = writeln!(
        out,
        "| upstream alone (host rmcp client, stdio) | {:.3} |",
        ms(direct)
    );
    let _ = writeln!(
        out,
        "| `run_python(\"pass\")` through MCP | {:.3} |",
        ms(pass)
    );
    let _ = writeln!(
        out,
        "| `run_python` with one proxied call | {:.3} |",
        ms(proxied)
    );
    let _ = writeln!(
        out,
        "| **overhead of the proxy path** | **{:.3}** |",
        ms(overhead)
    );
    Ok(out)
}

/// Time one proxied call each way: the upstream alone, an empty run, a run making the call.
pub(crate) async fn proxy_medians(args: &ProxyBenchArgs) -> Result<ProxyMedians> {
    let config = config::resolve(&args.config).map_err(anyhow::Error::msg)?;
    let Value::Object(arguments) = serde_json::from_str::<Value>(&args.arguments)? else {
        bail!("--arguments must be a JSON object");
    };
    let iterations = args.iterations.max(5);
    let proxy = Proxy::from_config(&config);
    proxy
        .call_direct(&args.server, &args.tool, arguments.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let mut direct = Vec::new();
    for _ in 0..iterations {
        let started = Instant::now();
        proxy
            .call_direct(&args.server, &args.tool, arguments.clone())
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        direct.push(started.elapsed());
    }
    proxy.shutdown().await;

    let client = bridge(&std::env::current_exe()?, &config_flags(&args.config), &[]).await?;
    let call_code = format!(
        "import mcp.runtime as r\nawait r.call_tool({}, {}, {})",
        json!(args.server),
        json!(args.tool),
        json!(arguments)
    );
    let run = |code: String| {
        let client = &client;
        let servers = json!([args.server]);
        async move {
            let Value::Object(arguments) = json!({"code": code, "servers": servers}) else {
                unreachable!()
            };
            let params =
                CallToolRequestParams::new("run_python").with_arguments(arguments as JsonObject);
            let started = Instant::now();
            let result = client.call_tool(params).await?;
            if result.is_error == Some(true) {
                bail!("the run failed: {:?}", result.content);
            }
            Ok::<Duration, anyhow::Error>(started.elapsed())
        }
    };
    run(call_code.clone()).await?;
    let mut pass = Vec::new();
    let mut proxied = Vec::new();
    for _ in 0..iterations {
        pass.push(run("pass".into()).await?);
        proxied.push(run(call_code.clone()).await?);
    }
    client.cancel().await.ok();
    Ok(ProxyMedians {
        direct: median(direct),
        pass: median(pass),
        proxied: median(proxied),
    })
}
