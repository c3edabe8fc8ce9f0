//! `mcp-server-code-execution-mode`: the binary edge. Parses the command line, sets up logging
//! (stderr only: stdout belongs to the MCP protocol), and runs a subcommand.

mod doctor;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use rmcp::ServiceExt;
use sandbox_core::RunRequest;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use mcp_server_code_execution_mode::backend;
use mcp_server_code_execution_mode::cli::{
    BenchArgs, Cli, Command, ConfigArgs, DoctorArgs, ImageBuildArgs, ImageCommand,
    InstallClientArgs, RunArgs, ServersArgs, Transport,
};
use mcp_server_code_execution_mode::clients;
use mcp_server_code_execution_mode::config::{self, Config};
use mcp_server_code_execution_mode::mcp::{Bridge, http};
use mcp_server_code_execution_mode::metrics::{self, BridgeFacts, Metrics};
use mcp_server_code_execution_mode::proxy::dispatch::Proxy;
use mcp_server_code_execution_mode::sessions::Sessions;
use mcp_server_code_execution_mode::tenants::Tenants;
use sandbox_core::SessionConfig;
use sandbox_core::frame::CatalogueEntry;

fn main() -> ExitCode {
    // The oci backend's shim: before anything else, and never inside an async runtime.
    #[cfg(feature = "backend-oci")]
    if std::env::args_os().nth(1).as_deref() == Some(backend::oci::SHIM_SUBCOMMAND.as_ref()) {
        return run_oci_shim();
    }
    let cli = Cli::parse();
    // A panic is a bug: log it as one line on stderr, never a backtrace with host paths.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error!(%location, "internal error (a bug): {message}");
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) if !args.stray_http_flags().is_empty() => Err(anyhow::anyhow!(
                "these flags need --transport http: {}",
                args.stray_http_flags().join(", ")
            )),
            Command::Run(args) => match args.transport {
                Transport::Stdio => Box::pin(serve(&args.config)).await,
                Transport::Http => Box::pin(serve_http(&args)).await,
            },
            Command::Provision(args) => provision(&args).await,
            Command::Bench(args) => Err(bench(&args)),
            Command::Servers(args) => servers(&args).await,
            Command::Sessions(args) => sessions_report(&args),
            Command::Image(ImageCommand::Build(args)) => image_build(&args).await,
            Command::InstallClient(args) => install_client(&args),
            Command::Doctor(args) => {
                init_logging("warn");
                doctor::report(&args)
                    .await
                    .map(|text| print_out(&format!("{text}\n")))
            }
        }
    });
    // Do not wait for blocked stdin readers or epoch threads on the way out.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
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
    reason = "fatal errors before or after logging is set up"
)]
fn report_fatal(error: &anyhow::Error) {
    // With JSON logs, the last word is a log line too, so collectors can read it.
    if JSON_LOGS.get() == Some(&true) {
        error!("{error:#}");
    } else {
        eprintln!("mcp-server-code-execution-mode: {error:#}");
    }
}

/// Whether the logs are JSON (set once, when logging starts).
static JSON_LOGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The bench binary, built beside this one (`cargo build --release -p` it).
const BENCH_BINARY: &str = "mcp-server-code-execution-mode-bench";

/// `bench`: replace this process with the bench binary beside it, which gets the arguments
/// unchanged after `--server <this executable>`; its exit code is ours. Returns only if the
/// bench could not be started.
fn bench(args: &BenchArgs) -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::Error::new(e).context("finding this executable's path"),
    };
    let bench = exe.with_file_name(BENCH_BINARY);
    if !bench.is_file() {
        return anyhow::anyhow!(
            "`bench` runs {}, which is not there: build it with \
             `cargo build --release -p {BENCH_BINARY}` (the profile this server was built with)",
            bench.display()
        );
    }
    let error = std::process::Command::new(&bench)
        .arg("--server")
        .arg(&exe)
        .args(&args.args)
        .exec();
    anyhow::Error::new(error).context(format!("running {}", bench.display()))
}

/// Resolve the configuration and set up logging; an invalid configuration stops here.
fn configure(args: &ConfigArgs) -> Result<Arc<Config>> {
    let config = config::resolve(args)
        .map_err(|e| anyhow::anyhow!("invalid configuration, not starting:\n{e}"))?;
    init_logging_as(&config.log_level, config.log_format);
    Ok(Arc::new(config))
}

/// Logs at `level` as text, for subcommands that print a report.
fn init_logging(level: &str) {
    init_logging_as(level, config::LogFormat::Text);
}

/// Logs to stderr at `level` (stdout belongs to MCP), as text or one JSON object per line.
fn init_logging_as(level: &str, format: config::LogFormat) {
    // rmcp logs every peer handshake at info; keep that at warn unless asked for debug.
    let directives = match level {
        "info" => "info,rmcp=warn".to_string(),
        other => other.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::new(directives);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let started = match format {
        config::LogFormat::Text => logs.try_init(),
        config::LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
    if started.is_ok() {
        let _ = JSON_LOGS.set(format == config::LogFormat::Json);
    }
}

fn sessions_for(config: &Config, catalogue: Vec<CatalogueEntry>) -> Result<Arc<Sessions>> {
    let sandbox = backend::build(config)?;
    let manual = mcp_server_code_execution_mode::mcp::manual(
        &mcp_server_code_execution_mode::mcp::ManualFacts::of(config, catalogue.clone()),
    );
    let session_config = SessionConfig {
        catalogue,
        manual,
        ..config.session_config()
    };
    let packages =
        mcp_server_code_execution_mode::packages::Packages::new(&config.packages, sandbox.name());
    Ok(Sessions::new(
        sandbox,
        config.spec.clone(),
        session_config,
        config.pool_size,
        config.max_sessions,
        config.idle_timeout,
        packages,
        config.checkpoints.store(&config.state_dir),
    ))
}

/// Start the proxy and the sessions (with their reaper), counting in `metrics`, and warm
/// the backend up in the background so `initialize` is answered at once.
fn start(config: &Arc<Config>, metrics: &Metrics) -> Result<(Arc<Proxy>, Arc<Sessions>)> {
    let proxy = Proxy::from_config(config);
    proxy.set_metrics(metrics.clone());
    let sessions = sessions_for(config, proxy.hello_catalogue())?;
    let egress = mcp_server_code_execution_mode::egress::Egress::start(
        &config.egress,
        proxy.audit().clone(),
        metrics.clone(),
    )
    .context("the network's HTTP client could not start")?;
    if let Some(egress) = egress {
        info!(hosts = %config.egress.allow, "sandboxes may reach these hosts through the bridge");
        sessions.set_egress(egress);
    }
    sessions.spawn_reaper();
    sessions.spawn_pruner(config.checkpoints.max_age);
    // Provision and warm up off the critical path: `initialize` is answered at once.
    let warm = sessions.clone();
    tokio::spawn(async move {
        match warm.sandbox().probe().await {
            sandbox_core::Probe::Available { detail } => {
                info!(backend = warm.backend(), %detail, "backend ready");
                warm.refill();
            }
            sandbox_core::Probe::Unavailable { reason } => {
                error!(backend = warm.backend(), %reason, "backend unavailable");
            }
        }
    });
    Ok((proxy, sessions))
}

/// The metrics of this bridge when `MCP_BRIDGE_METRICS_LISTEN` is set (off otherwise), and
/// its listener, bound now so a taken port stops the start.
async fn metrics_for(
    config: &Config,
    transport: &str,
    tenants: Option<&Tenants>,
) -> Result<(Metrics, Option<tokio::net::TcpListener>)> {
    let Some(addr) = config.metrics_listen else {
        return Ok((Metrics::off(), None));
    };
    let listener = metrics::bind(addr).await?;
    let facts = BridgeFacts {
        backend: config.backend.name(),
        transport,
    };
    let names = tenants.map(Tenants::names).unwrap_or_default();
    Ok((Metrics::new(facts, names), Some(listener)))
}

/// Serve `metrics` on `listener` (if any) in the background, the gauges read from
/// `sessions`, until `stop` is cancelled.
fn spawn_metrics(
    listener: Option<tokio::net::TcpListener>,
    metrics: &Metrics,
    sessions: &Arc<Sessions>,
    stop: &CancellationToken,
) {
    let Some(listener) = listener else { return };
    let (metrics, sessions, stop) = (metrics.clone(), sessions.clone(), stop.clone());
    tokio::spawn(async move {
        let gauges = move || sessions.gauges();
        let stopped = async move { stop.cancelled().await };
        if let Err(e) = metrics::serve(listener, metrics, gauges, stopped).await {
            error!(
                "the metrics endpoint stopped: {}",
                sandbox_core::error_chain(&e)
            );
        }
    });
}

/// `run`: serve MCP over stdio until the client goes away or we are told to stop.
async fn serve(args: &ConfigArgs) -> Result<()> {
    let config = configure(args)?;
    let (metrics, metrics_listener) = metrics_for(&config, "stdio", None).await?;
    let (proxy, sessions) = start(&config, &metrics)?;
    let stop_metrics = CancellationToken::new();
    spawn_metrics(metrics_listener, &metrics, &sessions, &stop_metrics);
    let bridge = Bridge::new(config.clone(), sessions.clone(), proxy.clone());
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let service = Box::pin(bridge.serve((stdin, stdout)))
        .await
        .context("MCP initialisation failed")?;
    let outcome = tokio::select! {
        done = service.waiting() => done.map(|_| ()).context("MCP service ended with an error"),
        () = shutdown_signal() => {
            info!("signal received; shutting down");
            Ok(())
        }
    };
    stop_metrics.cancel();
    sessions.shutdown_all().await;
    sessions.sandbox().shutdown().await;
    proxy.shutdown().await;
    outcome
}

/// `run --transport http`: serve MCP streamable HTTP until told to stop; each MCP session
/// gets a bridge with sandbox sessions of its own.
async fn serve_http(args: &RunArgs) -> Result<()> {
    let config = configure(&args.config)?;
    let tenants = match &config.http_tokens_file {
        Some(path) => Some(Arc::new(
            mcp_server_code_execution_mode::tenants::read_file(path)
                .context("not starting: the tokens file")?,
        )),
        None => None,
    };
    if let Some(tenants) = &tenants {
        info!(tenants = ?tenants.names(), "tenants from the tokens file");
    }
    let (metrics, metrics_listener) = metrics_for(&config, "http", tenants.as_deref()).await?;
    let options = http::HttpOptions {
        listen: args.listen,
        token: config.http_token.clone(),
        tenants,
        allow_origins: args.allow_origins.clone(),
        allow_hosts: args.allow_hosts.clone(),
        metrics: metrics.clone(),
    };
    // Refuse a bad address or origin before any sandbox starts.
    let listener = http::bind(&options).await?;
    let (proxy, sessions) = start(&config, &metrics)?;
    let stop_metrics = CancellationToken::new();
    spawn_metrics(metrics_listener, &metrics, &sessions, &stop_metrics);
    let make_bridge = {
        let (config, sessions, proxy) = (config.clone(), sessions.clone(), proxy.clone());
        move || Bridge::scoped(config.clone(), sessions.clone(), proxy.clone())
    };
    let outcome = http::serve(listener, &options, make_bridge, shutdown_signal()).await;
    stop_metrics.cancel();
    sessions.shutdown_all().await;
    sessions.sandbox().shutdown().await;
    proxy.shutdown().await;
    outcome.context("HTTP transport failed")
}

/// `servers`: what discovery found, and with `--check` whether each server starts.
async fn servers(args: &ServersArgs) -> Result<()> {
    let config = configure(&args.config)?;
    let proxy = Proxy::from_config(&config);
    let mut report =
        mcp_server_code_execution_mode::proxy::catalogue::render_report(proxy.catalogue());
    report.push_str(&proxy.policy_report());
    if args.check {
        report.push_str("\nChecks:\n");
        report.push_str(&proxy.check_report().await);
        proxy.shutdown().await;
    }
    print_out(&report);
    Ok(())
}

/// `sessions`: the live and saved sessions on this state directory.
fn sessions_report(args: &DoctorArgs) -> Result<()> {
    init_logging("warn");
    let config = config::resolve(&args.config)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let report = doctor::sessions(&config, args.json)?;
    print_out(&report);
    Ok(())
}

/// `install-client`: print the client's snippet, or merge it into its config file.
fn install_client(args: &InstallClientArgs) -> Result<()> {
    init_logging("warn");
    let exe = std::env::current_exe().context("finding this executable's path")?;
    if !args.write {
        print_out(&args.client.snippet(&exe));
        return Ok(());
    }
    let env = mcp_server_code_execution_mode::proxy::catalogue::DiscoveryEnv::from_process(
        std::path::PathBuf::new(),
        &[],
        false,
    );
    let done = clients::install(args.client, &env, &exe)?;
    print_out(&format!("{done}\n"));
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "the report is this subcommand's output"
)]
fn print_out(text: &str) {
    print!("{text}");
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The oci backend's shim: a synchronous process; errors go to stderr, which a failed start
/// reports.
#[cfg(feature = "backend-oci")]
fn run_oci_shim() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_max_level(tracing::Level::ERROR)
        .init();
    let request = std::env::args().nth(2).unwrap_or_default();
    backend::oci::shim::main(&request)
}

/// `provision`: fetch, verify and precompile the interpreter, then prove a session starts.
async fn provision(args: &ConfigArgs) -> Result<()> {
    provision_configured(&configure(args)?).await
}

/// Makes `config`'s backend ready and runs a first session on it.
async fn provision_configured(config: &Arc<Config>) -> Result<()> {
    let config = config.clone();
    let sessions = sessions_for(&config, Vec::new())?;
    sessions.prepare().await.context("preparing the backend")?;
    match sessions.sandbox().probe().await {
        sandbox_core::Probe::Available { detail } => info!(%detail, "interpreter ready"),
        sandbox_core::Probe::Unavailable { reason } => anyhow::bail!("{reason}"),
    }
    let session = sessions
        .start_cold()
        .await
        .context("starting a first session")?;
    let outcome = session
        .run(
            &RunRequest::code("import sys; print(sys.version.split()[0])", config.timeout),
            Arc::new(sandbox_core::NoCalls),
        )
        .await;
    session.shutdown().await;
    sessions.sandbox().shutdown().await;
    anyhow::ensure!(
        !outcome.is_error(),
        "the first session failed: {:?}",
        outcome.status
    );
    info!(python = outcome.stdout.text.trim(), "a first session ran");
    Ok(())
}

/// `image build`: build the root filesystem and import it as the local image; with
/// `--bridge`, the bridge's own image.
#[cfg(feature = "backend-container")]
async fn image_build(args: &ImageBuildArgs) -> Result<()> {
    use mcp_server_code_execution_mode::config::BackendKind;
    use sandbox_core::Sandbox as _;
    if args.bridge {
        return bridge_image_build(&args.config).await;
    }
    let config = configure(&args.config)?;
    let kind = if config.backend.is_container_engine() {
        config.backend
    } else {
        BackendKind::Podman
    };
    let sandbox = mcp_server_code_execution_mode::backend::container::sandbox(&config, kind)?;
    let built = sandbox.build_image().await;
    sandbox.shutdown().await;
    let image = built.context("building the image")?;
    info!(%image, engine = kind.name(), "image ready");
    print_out(&format!("{image}\n"));
    Ok(())
}

/// `image build --bridge`: provision the WASI interpreter (and its snapshot) in the cache,
/// then import the root filesystem with this binary and that cache over it.
#[cfg(all(feature = "backend-container", feature = "backend-wasi"))]
async fn bridge_image_build(args: &ConfigArgs) -> Result<()> {
    use mcp_server_code_execution_mode::bridge_image;
    use mcp_server_code_execution_mode::config::BackendKind;
    use sandbox_core::Sandbox as _;
    let config = configure(args)?;
    let engine = if config.backend.is_container_engine() {
        config.backend
    } else {
        BackendKind::Podman
    };
    let wasi = Arc::new(Config {
        backend: BackendKind::Wasi,
        ..Config::clone(&config)
    });
    provision_configured(&wasi)
        .await
        .context("provisioning the WASI interpreter for the image")?;
    let cache = config
        .cache_dir
        .clone()
        .context("no cache directory (set MCP_BRIDGE_CACHE_DIR)")?;
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let staging = tempfile::tempdir().context("making a staging directory")?;
    bridge_image::stage(staging.path(), &exe, &cache)?;
    let image = bridge_image::image_name();
    let sandbox = mcp_server_code_execution_mode::backend::container::sandbox(&config, engine)?;
    let built = sandbox
        .import_over_rootfs(&image, staging.path(), &bridge_image::settings())
        .await;
    sandbox.shutdown().await;
    built.context("importing the bridge image")?;
    info!(%image, engine = engine.name(), "bridge image ready");
    print_out(&format!("{image}\n"));
    Ok(())
}

/// `image build --bridge` without the WASI backend.
#[cfg(all(feature = "backend-container", not(feature = "backend-wasi")))]
#[allow(
    clippy::unused_async,
    reason = "the same signature as the build with the WASI backend"
)]
async fn bridge_image_build(_args: &ConfigArgs) -> Result<()> {
    anyhow::bail!(
        "the bridge image runs the WASI backend, which this build lacks (feature backend-wasi)"
    )
}

/// `image build` without the container backends.
#[cfg(not(feature = "backend-container"))]
#[allow(
    clippy::unused_async,
    reason = "the same signature as the build with container backends"
)]
async fn image_build(_args: &ImageBuildArgs) -> Result<()> {
    anyhow::bail!("this build has no container backends (feature backend-container)")
}
