//! `bench tokens` and `bench proxy`: the context economy, and the cost of one proxied call.
//!
//! Both read the configuration in this process (the same flags the server under test gets)
//! to reach the upstream servers directly, as the host's own client; the server is driven
//! over MCP through [`crate::client`].

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mcp_server_code_execution_mode::cli::ConfigArgs;
use mcp_server_code_execution_mode::config;
use mcp_server_code_execution_mode::proxy::dispatch::Proxy;
use rmcp::model::ListToolsResult;
use serde_json::{Value, json};

use crate::cli::ProxyBenchArgs;
use crate::client;
use crate::stats::{median, ms};

/// The flags of `args` as command-line words, so the bridge under test sees the same config.
fn config_flags(args: &ConfigArgs) -> Vec<String> {
    args.to_flags()
}

fn tokens(bpe: &tiktoken_rs::CoreBPE, value: &impl serde::Serialize) -> Result<usize> {
    Ok(count_tokens(bpe, &serde_json::to_string(value)?))
}

/// The o200k tokenizer, as `bench tokens` counts with it.
fn o200k() -> Result<tiktoken_rs::CoreBPE> {
    tiktoken_rs::o200k_base().map_err(|e| anyhow::anyhow!("tokenizer: {e}"))
}

/// The o200k tokens of `text`, special-token spellings counted as the special tokens.
pub(crate) fn count_tokens(bpe: &tiktoken_rs::CoreBPE, text: &str) -> usize {
    bpe.encode_with_special_tokens(text).len()
}

/// `bench count-tokens`: the o200k tokens of the UTF-8 text on stdin.
pub(crate) fn count_stdin_tokens() -> Result<usize> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
        .context("reading the text to count from stdin")?;
    Ok(count_tokens(&o200k()?, &text))
}

/// `bench tokens`, of the server binary `server`.
pub(crate) async fn tokens_report(server: &Path, args: &ConfigArgs) -> Result<String> {
    let config = config::resolve(args).map_err(anyhow::Error::msg)?;
    let bpe = o200k()?;
    let flags = config_flags(args);
    let (ours, _) = client::start(server, &flags, &[]).await?;
    let ours_tokens = tokens(
        &bpe,
        &ListToolsResult::with_all_items(ours.list_all_tools().await?),
    )?;
    ours.cancel().await.ok();
    let (with_discovery, _) =
        client::start(server, &flags, &[("MCP_BRIDGE_DISCOVERY_TOOLS", "1")]).await?;
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

/// `bench proxy`, through the server binary `server`.
pub(crate) async fn proxy_report(server: &Path, args: &ProxyBenchArgs) -> Result<String> {
    let medians = proxy_medians(server, args).await?;
    let iterations = args.iterations.max(5);
    let (direct, pass, proxied, overhead) = (
        medians.direct,
        medians.pass,
        medians.proxied,
        medians.overhead(),
    );
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

/// Time one proxied call each way: the upstream alone, an empty run, a run making the call
/// through the server binary `server`.
pub(crate) async fn proxy_medians(server: &Path, args: &ProxyBenchArgs) -> Result<ProxyMedians> {
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

    let (bridge, _) = client::start(server, &config_flags(&args.config), &[]).await?;
    let call_code = format!(
        "import mcp.runtime as r\nawait r.call_tool({}, {}, {})",
        json!(args.server),
        json!(args.tool),
        json!(arguments)
    );
    let run = |code: String| {
        let bridge = &bridge;
        let arguments = json!({"code": code, "servers": [args.server]});
        async move {
            let started = Instant::now();
            client::run_python_ok(bridge, arguments).await?;
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
    bridge.cancel().await.ok();
    Ok(ProxyMedians {
        direct: median(direct),
        pass: median(pass),
        proxied: median(proxied),
    })
}

#[cfg(test)]
mod tests {
    use super::{count_tokens, o200k};

    #[test]
    fn count_tokens_counts_o200k_tokens() {
        let bpe = o200k().expect("the o200k vocabulary is built in");
        assert_eq!(count_tokens(&bpe, ""), 0);
        assert_eq!(count_tokens(&bpe, "hello world"), 2);
        assert_eq!(count_tokens(&bpe, "<|endoftext|>"), 1);
    }
}
