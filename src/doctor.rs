//! `doctor`: what this bridge can do here, and why not where it cannot.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use mcp_server_code_execution_mode::cli::DoctorArgs;
use mcp_server_code_execution_mode::config::BackendKind;
use mcp_server_code_execution_mode::proxy::catalogue::render_report;
use mcp_server_code_execution_mode::proxy::dispatch::Proxy;
use mcp_server_code_execution_mode::{backend, config, mounts};
use sandbox_core::Probe;
use serde_json::{Value, json};

/// Files under `dir` (one level), with sizes.
fn files_in(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let size = if meta.is_dir() {
                std::fs::read_dir(e.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            } else {
                meta.len()
            };
            Some((e.file_name().to_string_lossy().into_owned(), size))
        })
        .collect();
    files.sort();
    files
}

/// Build the report; text unless `--json`.
pub(crate) async fn report(args: &DoctorArgs) -> Result<String> {
    let config = config::resolve(&args.config)?;
    let mut backends = Vec::new();
    for kind in BackendKind::ALL {
        let (available, detail) = match backend::build_kind(&config, kind) {
            Ok(sandbox) => {
                let probe = sandbox.probe().await;
                sandbox.shutdown().await;
                match probe {
                    Probe::Available { detail } => (true, detail),
                    Probe::Unavailable { reason } => (false, reason),
                }
            }
            Err(reason) => (false, reason.to_string()),
        };
        backends.push(json!({"backend": kind.name(), "available": available,
            "detail": detail, "configured": kind == config.backend}));
    }
    let caches: Vec<Value> = config
        .cache_dir
        .iter()
        .flat_map(|dir| ["python-wasm", "modules", "rootfs"].map(|sub| dir.join(sub)))
        .map(|dir| {
            let files = files_in(&dir);
            json!({"dir": dir, "files": files.iter().map(|(n, s)| json!({"name": n, "bytes": s})).collect::<Vec<_>>()})
        })
        .collect();
    let proxy = Proxy::from_config(&config);
    let servers = render_report(proxy.catalogue());
    let origins = serde_json::to_value(&config.origins)?;
    if args.json {
        let doc = json!({
            "backends": backends,
            "caches": caches,
            "servers": proxy.catalogue().servers.iter().map(|s| json!({
                "name": s.name, "alias": s.alias, "source": s.source})).collect::<Vec<_>>(),
            "skipped": proxy.catalogue().skipped.iter().map(|s| json!({
                "name": s.name, "source": s.source, "why": s.why})).collect::<Vec<_>>(),
            "configuration": origins,
            "state_dir": config.state_dir,
            "mounts": mounts_json(&config),
        });
        return Ok(serde_json::to_string_pretty(&doc)?);
    }
    let mut out = String::new();
    let _ = writeln!(out, "Backends:");
    for b in &backends {
        let mark = if b["available"] == json!(true) {
            "ok  "
        } else {
            "--  "
        };
        let _ = writeln!(
            out,
            "  {mark}{:<7} {}",
            b["backend"].as_str().unwrap_or(""),
            b["detail"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(out, "\nCaches:");
    for c in &caches {
        let _ = writeln!(out, "  {}", c["dir"].as_str().unwrap_or(""));
        for f in c["files"].as_array().into_iter().flatten() {
            #[allow(clippy::cast_precision_loss, reason = "display only")]
            let mb = f["bytes"].as_u64().unwrap_or(0) as f64 / 1e6;
            let _ = writeln!(
                out,
                "    {:<70} {mb:>8.1} MB",
                f["name"].as_str().unwrap_or("")
            );
        }
    }
    out.push_str(&mounts_text(&config));
    let _ = writeln!(
        out,
        "\nMCP servers (state dir {}):",
        config.state_dir.display()
    );
    for line in servers.lines() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "\nConfiguration (flags over environment over defaults):"
    );
    for o in &config.origins {
        let from = match o.from {
            config::From::Default => "default".to_string(),
            config::From::Environment => "environment".to_string(),
            config::From::Flag => format!("--{}", o.flag.unwrap_or_default()),
        };
        let _ = writeln!(out, "  {:<34} {:<24} {from}", o.variable, o.value);
    }
    Ok(out)
}

/// The granted host directories, each with whether it is still there.
fn mounts_json(config: &config::Config) -> Value {
    json!({
        "granted": config.mounts.iter().map(|m| json!({
            "name": m.name, "guest": m.guest_path(), "host": m.host,
            "present": mounts::still_there(&m.host)})).collect::<Vec<_>>(),
        "client_roots": config.mount_roots,
    })
}

/// The "Mounts" section: what every sandbox reads at `/data/<name>`; a directory gone
/// since start-up is flagged loudly (sessions would fail to start).
fn mounts_text(config: &config::Config) -> String {
    let mut out = String::from("\nMounts (read-only in every sandbox):\n");
    if config.mounts.is_empty() {
        out.push_str("  (none)\n");
    }
    for m in &config.mounts {
        let _ = write!(out, "  {:<24} {}", m.guest_path(), m.host.display());
        if !mounts::still_there(&m.host) {
            out.push_str("   !! MISSING: this directory is gone; sessions cannot start");
        }
        out.push('\n');
    }
    if config.mount_roots {
        out.push_str("  + each client's file:// roots, at /data/<last component>\n");
    }
    out
}
