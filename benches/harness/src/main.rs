//! `mcp-server-code-execution-mode-bench`: measure the backends through the real server, over
//! MCP, as a client would.
//!
//! Every figure includes the protocol cost a client pays: the server binary is started as a
//! child process and driven by rmcp's client over stdio. The server's own `bench` subcommand
//! runs this binary with `--server` naming itself; the server never links this crate, so the
//! charting and tokenizer crates stay out of it.

mod bare;
mod charts;
mod cli;
mod client;
mod data;
mod durable;
mod engine;
mod floor;
mod focus;
mod measure;
mod memory;
mod network;
mod replicas;
mod report;
mod sdk_clients;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use mcp_server_code_execution_mode::cli::ConfigArgs;
use mcp_server_code_execution_mode::config::BackendKind;
use mcp_server_code_execution_mode::settings;

use crate::cli::{BenchArgs, BenchFocus, ProxyBenchArgs, SERVER_BINARY};
use crate::report::Report;

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    // Stdout is the report; what went wrong on the way goes to stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(run(&args));
    // Do not wait for blocked stdin readers or epoch threads on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    client::remove_state_dirs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_fatal(&e);
            ExitCode::from(2)
        }
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the fatal error, after everything else"
)]
fn report_fatal(error: &anyhow::Error) {
    eprintln!("mcp-server-code-execution-mode-bench: {error:#}");
}

/// Run the benchmark and print the report.
async fn run(args: &BenchArgs) -> Result<()> {
    if let Some(BenchFocus::CountTokens) = &args.focus {
        return print_report(&focus::count_stdin_tokens()?.to_string());
    }
    if let Some(BenchFocus::FloorServer { answer }) = &args.focus {
        return floor::serve_floor(answer).await;
    }
    let server = server_binary(args.server.as_deref())?;
    match &args.focus {
        Some(BenchFocus::Tokens(config)) => {
            return print_report(&focus::tokens_report(&server, config).await?);
        }
        Some(BenchFocus::Proxy(proxy)) => {
            return print_report(&focus::proxy_report(&server, proxy).await?);
        }
        Some(BenchFocus::Durable) => {
            let mut out = String::new();
            for backend in args.backend.split(',').map(str::trim) {
                let durable = durable::measure(&server, backend, false).await;
                out.push_str(&report::durable_markdown(backend, &durable));
            }
            return print_report(&out);
        }
        Some(BenchFocus::Network) => {
            let mut out = network::markdown_header();
            for backend in args.backend.split(',').map(str::trim) {
                let report = network::measure(&server, backend, &args.host_python).await;
                out.push_str(&network::markdown_rows(backend, &report));
            }
            return print_report(&out);
        }
        Some(BenchFocus::Replicas) => {
            let mut rows = Vec::new();
            for backend in args.backend.split(',').map(str::trim) {
                rows.push((
                    backend.to_owned(),
                    replicas::measure(&server, backend).await,
                ));
            }
            return print_report(&replicas::markdown(&rows));
        }
        Some(BenchFocus::Floor) => {
            let this = std::env::current_exe().context("finding this bench binary")?;
            let mut rows = Vec::new();
            for backend in args.backend.split(',').map(str::trim) {
                let report = floor::measure(&server, &this, backend, args.iterations).await;
                rows.push((backend.to_owned(), report));
            }
            return print_report(&floor::markdown(&rows));
        }
        Some(BenchFocus::Clients { python }) => {
            let backends: Vec<&str> = args.backend.split(',').map(str::trim).collect();
            let report = sdk_clients::report(&server, &backends, python, args.iterations).await?;
            return print_report(&report);
        }
        Some(BenchFocus::Engine(engine)) => {
            let report =
                engine::report(&server, engine, args.iterations, &args.host_python).await?;
            return print_report(&report);
        }
        Some(BenchFocus::CountTokens | BenchFocus::FloorServer { .. }) | None => {}
    }
    let wanted: Vec<String> = if args.backend == "all" {
        BackendKind::ALL
            .iter()
            .map(|kind| kind.name().to_string())
            .collect()
    } else {
        args.backend
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    let iterations = args.iterations.max(5);
    let mut backends = Vec::new();
    for backend in &wanted {
        let mut report =
            measure::bench_backend(&server, backend, iterations, &args.host_python).await;
        if report.available
            && let Some(target) = &args.proxy
        {
            match proxied_call(&server, args, target, backend, iterations).await {
                Ok(times) => {
                    report.proxy_upstream_ms = Some(times.direct.median_ms);
                    report.proxy_overhead_ms = Some(times.overhead_ms());
                    report.proxy_gather_per_call_ms =
                        Some((times.gathered_per_call.median_ms, times.one_call_ms()));
                }
                Err(e) => {
                    tracing::warn!(backend, error = %e, "the proxied call could not be timed");
                }
            }
        }
        backends.push(report);
    }
    let report = Report::new(iterations, backends);
    let markdown = report::markdown(&report);
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = &args.out {
        write_outputs(dir, &markdown, &json)?;
        match charts::write(
            dir,
            &report::latency_rows(&report),
            &report::throughput_rows(&report),
        ) {
            Ok(files) => {
                for file in files {
                    tracing::info!(chart = %file.display(), "chart written");
                }
            }
            Err(reason) => tracing::warn!(%reason, "no charts"),
        }
    }
    print_report(if args.json { &json } else { &markdown })
}

/// The server binary to drive: `--server`, else the server built beside this binary.
fn server_binary(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .context("locating this executable")?
        .with_file_name(SERVER_BINARY);
    if !beside.is_file() {
        bail!(
            "no server binary at {}: build it (cargo build --release -p {SERVER_BINARY}) or \
             name one with --server",
            beside.display()
        );
    }
    Ok(beside)
}

/// Print the report on stdout.
fn print_report(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, format!("{text}\n").as_bytes())?;
    Ok(())
}

fn write_outputs(dir: &Path, markdown: &str, json: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("bench.md"), markdown)?;
    std::fs::write(dir.join("bench.json"), json)?;
    Ok(())
}

/// Time `--proxy SERVER.TOOL` through the server binary `server` on `backend`.
async fn proxied_call(
    server: &Path,
    args: &BenchArgs,
    target: &str,
    backend: &str,
    iterations: usize,
) -> Result<focus::ProxyTimes> {
    let (upstream, tool) = target
        .split_once('.')
        .context("--proxy takes SERVER.TOOL, e.g. time.get_current_time")?;
    let proxy_args = ProxyBenchArgs {
        server: upstream.to_string(),
        tool: tool.to_string(),
        arguments: args.proxy_arguments.clone(),
        iterations: iterations.clamp(5, 100),
        config: args.servers_config.iter().fold(
            ConfigArgs::default().with(&settings::BACKEND, backend),
            |config, file| config.with(&settings::SERVERS_CONFIG, file.display().to_string()),
        ),
    };
    focus::proxy_times(server, &proxy_args).await
}
