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

use crate::bare;
use crate::cli::ProxyBenchArgs;
use crate::client;
use crate::stats::{Summary, median};

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

/// How many proxied calls one `asyncio.gather` makes in `bench proxy`.
pub(crate) const GATHERED: u32 = 50;

/// Times of one proxied call, each way.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTimes {
    /// The upstream called by the host's own rmcp client.
    pub(crate) direct: Summary,
    /// `run_python("pass")` through MCP.
    pub(crate) pass: Summary,
    /// `run_python` awaiting the one proxied call.
    pub(crate) proxied: Summary,
    /// `run_python` gathering [`GATHERED`] proxied calls, the run's time less `pass`'s median,
    /// per call.
    pub(crate) gathered_per_call: Summary,
    /// As the guest's own clock has them, in a run of their own.
    pub(crate) in_guest: InGuest,
    /// `run_python("pass")` with the bare run handler (see `bare.rs`).
    pub(crate) bare_pass: Summary,
    /// A run of the bare handler making the one call.
    pub(crate) bare_call: Summary,
}

/// What a proxied call costs inside the guest, in ms (medians of the guest's clock, the
/// calls and compiles made back to back in one run, so with warm caches).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InGuest {
    /// One awaited call, from the guest's `await` to its value.
    pub(crate) round_trip: f64,
    /// `compile` of the code a run awaiting the call sends (top-level `await` allowed).
    pub(crate) compile: f64,
    /// `compile` of `pass`, as every run does.
    pub(crate) compile_pass: f64,
}

/// Times, inside the guest, [`IN_GUEST_CALLS`] awaited calls and as many compiles of the
/// call's code and of `pass`; prints the three medians in ms. `{call}` and `{code}` are
/// filled in.
const IN_GUEST_TIMING: &str = r#"
import ast, time, mcp.runtime as r
def _median(xs):
    return sorted(xs)[len(xs) // 2] * 1000
_calls, _compiles, _passes = [], [], []
for _ in range({n}):
    _t = time.perf_counter()
    await {call}
    _calls.append(time.perf_counter() - _t)
for _source, _into in (({code}, _compiles), ("pass", _passes)):
    for _ in range({n}):
        _t = time.perf_counter()
        compile(_source, "<timed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        _into.append(time.perf_counter() - _t)
print(_median(_calls), _median(_compiles), _median(_passes))
"#;

/// Calls (and compiles of each kind) timed inside the guest.
const IN_GUEST_CALLS: usize = 200;

impl ProxyTimes {
    /// What the proxy path adds over the upstream's own time and an empty run (medians).
    pub(crate) fn overhead_ms(&self) -> f64 {
        (self.proxied.median_ms - self.pass.median_ms - self.direct.median_ms).max(0.0)
    }

    /// What the proxy path adds for a bare guest, as [`Self::overhead_ms`] does for ours:
    /// the transport's and the host's share, whatever runtime the guest runs.
    pub(crate) fn bare_overhead_ms(&self) -> f64 {
        (self.bare_call.median_ms - self.bare_pass.median_ms - self.direct.median_ms).max(0.0)
    }

    /// One awaited call: the run's median less an empty run's.
    pub(crate) fn one_call_ms(&self) -> f64 {
        (self.proxied.median_ms - self.pass.median_ms).max(0.0)
    }
}

/// `bench proxy`, through the server binary `server`.
pub(crate) async fn proxy_report(server: &Path, args: &ProxyBenchArgs) -> Result<String> {
    let times = proxy_times(server, args).await?;
    let iterations = args.iterations.max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Proxied calls: `{}.{}` ({iterations} iterations)\n",
        args.server, args.tool
    );
    let _ = writeln!(
        out,
        "| measurement | min | median | p95 | p99 |\n|---|---|---|---|---|"
    );
    let rows = [
        ("upstream alone (host rmcp client, stdio)", &times.direct),
        ("`run_python(\"pass\")` through MCP", &times.pass),
        ("`run_python` awaiting one proxied call", &times.proxied),
        ("bare guest: `pass`", &times.bare_pass),
        ("bare guest: one call", &times.bare_call),
    ];
    for (what, summary) in rows {
        let _ = writeln!(
            out,
            "| {what} | {:.3} | {:.3} | {:.3} | {:.3} |",
            summary.min_ms, summary.median_ms, summary.p95_ms, summary.p99_ms
        );
    }
    let gathered = &times.gathered_per_call;
    let _ = writeln!(
        out,
        "| `gather` of {GATHERED} proxied calls, per call (less `pass`) | {:.3} | {:.3} | {:.3} \
         | {:.3} |",
        gathered.min_ms, gathered.median_ms, gathered.p95_ms, gathered.p99_ms
    );
    let _ = writeln!(
        out,
        "\n- **Overhead of the proxy path** (one call, less `pass` and the upstream alone): \
         **{:.3} ms** (target ≤ 0.3).",
        times.overhead_ms()
    );
    let _ = writeln!(
        out,
        "- **A bare guest's overhead** (the run handler swapped for one that compiles the same \
         code, then only sends the rpc frame and reads its answer; the same way less `pass` \
         and the upstream): \
         **{:.3} ms**, what the transport and the host's dispatch cost whatever runtime the \
         guest runs; our runtime adds {:.3} ms to it.",
        times.bare_overhead_ms(),
        times.overhead_ms() - times.bare_overhead_ms()
    );
    let in_guest = times.in_guest;
    let _ = writeln!(
        out,
        "- Inside the guest (its own clock, {IN_GUEST_CALLS} of each back to back in one run): \
         an awaited call round-trips in **{:.3} ms** ({:.3} ms over the upstream alone); \
         `compile` of the run's code takes {:.3} ms, of `pass` {:.3} ms. Those two excesses \
         (the round trip's over the upstream, the compile's over `pass`'s) make {:.3} ms of \
         the overhead, warm; inside a run of one call, caches are colder.",
        in_guest.round_trip,
        in_guest.round_trip - times.direct.median_ms,
        in_guest.compile,
        in_guest.compile_pass,
        in_guest.round_trip - times.direct.median_ms + in_guest.compile - in_guest.compile_pass,
    );
    let _ = writeln!(
        out,
        "- One awaited call takes {:.3} ms of a run; in a `gather` of {GATHERED}, {:.3} ms \
         each ({:.2}× of one).",
        times.one_call_ms(),
        gathered.median_ms,
        gathered.median_ms / times.one_call_ms().max(f64::MIN_POSITIVE)
    );
    Ok(out)
}

/// Time proxied calls each way: the upstream alone, an empty run, a run awaiting the call,
/// a run gathering [`GATHERED`] of them, through the server binary `server`.
pub(crate) async fn proxy_times(server: &Path, args: &ProxyBenchArgs) -> Result<ProxyTimes> {
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
    let call = format!(
        "r.call_tool({}, {}, {})",
        json!(args.server),
        json!(args.tool),
        json!(arguments)
    );
    let call_code = format!("import mcp.runtime as r\nawait {call}");
    let gather_code = format!(
        "import asyncio, mcp.runtime as r\nawait asyncio.gather(*({call} for _ in range({GATHERED})))"
    );
    let run = |code: String| {
        let bridge = &bridge;
        async move { timed_run(bridge, &args.server, &code).await }
    };
    run(call_code.clone()).await?;
    run(gather_code.clone()).await?;
    let mut pass = Vec::new();
    let mut proxied = Vec::new();
    let mut gathered = Vec::new();
    for round in 0..iterations {
        pass.push(run("pass".into()).await?);
        proxied.push(run(call_code.clone()).await?);
        if round % 5 == 0 {
            gathered.push(run(gather_code.clone()).await?);
        }
    }
    let in_guest = in_guest_times(&bridge, &args.server, &call, &call_code).await?;
    let params = json!({"server": args.server, "tool": args.tool, "arguments": arguments});
    let bare_code = format!("{}{call_code}", bare::BARE_CALL);
    let (bare_pass, bare_call) =
        bare_times(&bridge, &args.server, &params, &bare_code, iterations).await?;
    bridge.cancel().await.ok();
    let pass_median = median(pass.clone());
    let gathered_per_call = gathered
        .into_iter()
        .map(|took| took.saturating_sub(pass_median) / GATHERED)
        .collect();
    Ok(ProxyTimes {
        direct: Summary::of(direct),
        pass: Summary::of(pass),
        proxied: Summary::of(proxied),
        gathered_per_call: Summary::of(gathered_per_call),
        in_guest,
        bare_pass,
        bare_call,
    })
}

/// Runs of `pass` and of `call_code` (which the bare handler compiles, then answers with
/// one call on `server` with `params`), alternated, `iterations` of each, with the bare run
/// handler in place; then the real one is back.
async fn bare_times(
    bridge: &client::Client,
    server: &str,
    params: &Value,
    call_code: &str,
    iterations: usize,
) -> Result<(Summary, Summary)> {
    const WARM_UP: usize = 10;
    bare::install(bridge, Some(params)).await?;
    let (mut pass, mut call) = (Vec::new(), Vec::new());
    for round in 0..WARM_UP + iterations {
        let times = (
            timed_run(bridge, server, "pass").await?,
            timed_run(bridge, server, call_code).await?,
        );
        if round >= WARM_UP {
            pass.push(times.0);
            call.push(times.1);
        }
    }
    bare::remove(bridge, 2 * (WARM_UP + iterations)).await?;
    Ok((Summary::of(pass), Summary::of(call)))
}

/// How long `run_python` of `code`, with `server` loaded, takes as the client sees it.
async fn timed_run(bridge: &client::Client, server: &str, code: &str) -> Result<Duration> {
    let started = Instant::now();
    client::run_python_ok(bridge, json!({"code": code, "servers": [server]})).await?;
    Ok(started.elapsed())
}

/// [`IN_GUEST_TIMING`] of `call` (whose run sends `call_code`) on `server`, through `bridge`.
async fn in_guest_times(
    bridge: &client::Client,
    server: &str,
    call: &str,
    call_code: &str,
) -> Result<InGuest> {
    let code = IN_GUEST_TIMING
        .replace("{n}", &IN_GUEST_CALLS.to_string())
        .replace("{call}", call)
        .replace("{code}", &bare::python_string(call_code));
    let result = client::run_python_ok(
        bridge,
        json!({"code": code, "servers": [server], "timeout": 120}),
    )
    .await?;
    let stdout = client::stdout_of(&result);
    let figures: Vec<f64> = stdout
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("the in-guest timing printed {stdout:?}"))?;
    let [round_trip, compile, compile_pass] = figures[..] else {
        bail!("the in-guest timing printed {stdout:?}");
    };
    Ok(InGuest {
        round_trip,
        compile,
        compile_pass,
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
