//! `doctor`: what this bridge can do here, and why not where it cannot.
//!
//! For each backend that can run and is prepared ([`Sandbox::is_prepared`]: nothing to
//! build or download first), one short guest is started and asked which interpreter it is
//! and which of the scientific stack's libraries it has: the answer comes from the sandbox
//! itself, not from what we expect to have put there.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use mcp_server_code_execution_mode::checkpoints::listing;
use mcp_server_code_execution_mode::cli::DoctorArgs;
use mcp_server_code_execution_mode::config::BackendKind;
use mcp_server_code_execution_mode::egress::EgressPolicy;
use mcp_server_code_execution_mode::proxy::catalogue::render_report;
use mcp_server_code_execution_mode::proxy::dispatch::Proxy;
use mcp_server_code_execution_mode::{backend, config, mounts};
use sandbox_core::{NoCalls, Probe, RunRequest, Sandbox, Session};
use serde_json::{Value, json};

/// The libraries `doctor` looks for: the module to find, the distribution whose version is
/// shown.
const STACK: [(&str, &str); 15] = [
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("statsmodels", "statsmodels"),
    ("matplotlib", "matplotlib"),
    ("seaborn", "seaborn"),
    ("sympy", "sympy"),
    ("networkx", "networkx"),
    ("openpyxl", "openpyxl"),
    ("lxml", "lxml"),
    ("bs4", "beautifulsoup4"),
    ("yaml", "pyyaml"),
    ("jinja2", "jinja2"),
    ("cloudpickle", "cloudpickle"),
];

/// How long one backend's guest may take to start and answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// The guest's answer as one JSON line: its interpreter, and each library's version (`null`
/// when absent). Modules are found, not imported, so the answer is quick. `STACK` is
/// replaced by [`STACK`] as JSON.
const QUESTION: &str = r#"
import importlib.util, json, sys
def _version(module, dist):
    if importlib.util.find_spec(module) is None:
        return None
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "present"
_name = {"cpython": "CPython"}.get(sys.implementation.name, sys.implementation.name)
_version_info = ".".join(map(str, sys.version_info[:3]))
print(json.dumps({
    "interpreter": f"{_name} {_version_info} ({sys.platform})",
    "libraries": {dist: _version(module, dist) for module, dist in STACK},
}))
"#;

/// [`QUESTION`] with the libraries filled in.
fn stack_question() -> String {
    QUESTION.replace(
        "STACK",
        &serde_json::to_string(&STACK).expect("plain strings"),
    )
}

/// Start one guest on `sandbox`, ask it [`stack_question`], and stop it.
async fn ask_guest(sandbox: &dyn Sandbox, config: &config::Config) -> Result<Value> {
    let session = Session::start(sandbox, &config.spec, &config.session_config())
        .await
        .context("starting a guest")?;
    let outcome = session
        .run(
            &RunRequest::code(stack_question(), ASK_TIMEOUT),
            Arc::new(NoCalls),
        )
        .await;
    session.shutdown().await;
    ensure!(
        !outcome.is_error(),
        "the guest's answer failed: {:?} {}",
        outcome.status,
        outcome.stderr.text
    );
    serde_json::from_str(outcome.stdout.text.trim()).context("reading the guest's answer")
}

/// One line for the text report: the interpreter and the stack's libraries.
fn stack_line(stack: &Value) -> String {
    if let Some(error) = stack["error"].as_str() {
        return format!("interpreter not asked: {error}");
    }
    let mut present = Vec::new();
    let mut missing = Vec::new();
    // In [`STACK`]'s order, not the JSON object's.
    for (_, dist) in STACK {
        match stack["libraries"][dist].as_str() {
            Some(version) => present.push(format!("{dist} {version}")),
            None => missing.push(dist),
        }
    }
    let mut line = stack["interpreter"].as_str().unwrap_or("?").to_string();
    if !present.is_empty() {
        let _ = write!(line, "; {}", present.join(", "));
    }
    if !missing.is_empty() {
        let _ = write!(line, "; missing: {}", missing.join(", "));
    }
    line
}

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
        let (available, detail, stack) = match backend::build_kind(&config, kind) {
            Ok(sandbox) => {
                let probe = sandbox.probe().await;
                let stack = match &probe {
                    Probe::Available { .. } if sandbox.is_prepared().await => {
                        ask_guest(sandbox.as_ref(), &config)
                            .await
                            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}))
                    }
                    Probe::Available { .. } => json!({"error":
                        "not prepared yet (run `provision` for this backend)"}),
                    Probe::Unavailable { .. } => Value::Null,
                };
                sandbox.shutdown().await;
                match probe {
                    Probe::Available { detail } => (true, detail, stack),
                    Probe::Unavailable { reason } => (false, reason, stack),
                }
            }
            Err(reason) => (false, reason.to_string(), Value::Null),
        };
        backends.push(json!({"backend": kind.name(), "available": available,
            "detail": detail, "configured": kind == config.backend, "stack": stack}));
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
            "network": network_json(&config.egress, config.backend),
            "sessions": serde_json::from_str::<Value>(&sessions(&config, true)?)?,
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
        if !b["stack"].is_null() {
            let _ = writeln!(out, "            {}", stack_line(&b["stack"]));
        }
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
    out.push_str(&network_text(&config.egress, config.backend));
    let _ = write!(out, "\n{}", sessions(&config, false)?);
    let _ = writeln!(
        out,
        "\nMCP servers (state dir {}):",
        config.state_dir.display()
    );
    for line in servers.lines().chain(proxy.policy_report().lines()) {
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

/// The live and saved sessions on the configured state directory, as text or JSON.
pub(crate) fn sessions(config: &config::Config, json: bool) -> Result<String> {
    let Some(store) = config.checkpoints.store(&config.state_dir) else {
        return Ok(if json {
            json!({"checkpoints": "off", "live": [], "saved": []}).to_string()
        } else {
            "Sessions are not saved here (MCP_BRIDGE_CHECKPOINTS=off).\n".to_string()
        });
    };
    let saved = store.list_all()?;
    let live = listing::live(&store);
    if json {
        let saved: Vec<Value> = saved
            .iter()
            .map(|s| {
                json!({"scope": s.header.scope, "session": s.session, "bytes": s.bytes,
                    "backend": s.header.backend, "saved_at": s.header.created_at_unix,
                    "names": s.header.names, "unsaveable": s.header.unsaveable})
            })
            .collect();
        return Ok(serde_json::to_string_pretty(
            &json!({"checkpoints": store.root(), "live": live, "saved": saved}),
        )?);
    }
    Ok(format!(
        "Sessions (saved under {}):\n{}",
        store.root().display(),
        listing::render(&saved, &live)
    ))
}

/// The ways a sandbox of `backend` reaches the allowed hosts: the host's `fetch` always,
/// and a proxy of the session's own where the sandbox has sockets.
fn ways_out(backend: BackendKind) -> &'static [&'static str] {
    if backend == BackendKind::Wasi {
        &["fetch"]
    } else {
        &["fetch", "proxy"]
    }
}

/// Where sandboxes may go, and how.
fn network_json(egress: &EgressPolicy, backend: BackendKind) -> Value {
    json!({
        "allowed_hosts": egress.allow.to_string(),
        "ways": if egress.is_enabled() { ways_out(backend) } else { &[] },
        "allowed_private": egress.addresses.opted_in().iter().map(ToString::to_string)
            .collect::<Vec<_>>(),
        "secrets": egress.secrets.spec(),
        "session_bytes": egress.limits.bytes,
        "session_connections": egress.limits.connections,
    })
}

/// The "Network" section: where sandboxes may go, with which secrets, and what cannot
/// carry a secret.
fn network_text(egress: &EgressPolicy, backend: BackendKind) -> String {
    let mut out = String::from("\nNetwork:\n");
    if !egress.is_enabled() {
        out.push_str("  none: sandboxes reach no host (MCP_BRIDGE_ALLOW_HOSTS is empty)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "  allowed hosts      {} (HTTP and HTTPS)",
        egress.allow
    );
    let way = if ways_out(backend).contains(&"proxy") {
        "mcp.runtime.fetch and urllib through the host; pip, requests and other clients \
         through the session's proxy (HTTP_PROXY, HTTPS_PROXY)"
    } else {
        "mcp.runtime.fetch and urllib through the host (a WASI sandbox has no sockets)"
    };
    let _ = writeln!(out, "  way out            {way}");
    let private: Vec<String> = egress
        .addresses
        .opted_in()
        .iter()
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(
        out,
        "  internal addresses {}",
        if private.is_empty() {
            "all refused (loopback, private, link-local, multicast, metadata)".to_string()
        } else {
            format!("refused but for {}", private.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "  per session        {} in all, {} open connections",
        mcp_server_code_execution_mode::units::format_bytes(egress.limits.bytes),
        egress.limits.connections
    );
    if egress.secrets.is_empty() {
        out.push_str("  secrets            none\n");
    } else {
        let _ = writeln!(
            out,
            "  secrets            {} (placeholders in the sandbox; swapped into headers of \
             requests the host makes to their hosts. HTTPS tunnelled through a proxy \
             (CONNECT) is encrypted end to end and cannot carry them: use fetch)",
            egress.secrets.spec()
        );
    }
    out
}

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
