//! The way out, end to end: what a request to an allowed host costs code in a sandbox,
//! against the same code on the host reaching the same server directly.
//!
//! A small HTTP server of the bench's own listens on 127.0.0.1 (opted in with
//! `MCP_BRIDGE_ALLOW_PRIVATE`; every request a new connection, as a client without
//! keep-alive makes). Timed in the guest, per request: `mcp.runtime.fetch_sync` (the host
//! makes the request; every backend) and, where the sandbox has sockets, `http.client`
//! through the session's proxy (the runtime's loopback forwarder, the unix socket, the
//! proxy's checks, a new connection to the server). The reference is the same `http.client`
//! loop run by the host's Python straight to the server. Target: the proxy adds at most
//! 0.3 ms to a request's median.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{self, Client};
use crate::stats::Summary;

/// Requests timed per way.
const REQUESTS: usize = 200;

/// The guest's loop: `REQUESTS` requests one way, each timed, printed as JSON milliseconds.
const TIMED_LOOP: &str = r#"
import http.client, json, os, time
def via_proxy(url):
    c = http.client.HTTPConnection("127.0.0.1", int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1]), timeout=10)
    c.request("GET", url)
    c.getresponse().read()
    c.close()
def direct(url):
    host, port = url.split("/")[2].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/")
    c.getresponse().read()
    c.close()
def via_fetch(url):
    import mcp.runtime
    mcp.runtime.fetch_sync(url)
def timed(way, url, n):
    way(url)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        way(url)
        times.append((time.perf_counter() - t) * 1000)
    return times
"#;

/// One way of reaching the server, timed.
#[derive(Debug, Clone)]
pub(crate) struct Way {
    /// Its name in the report.
    pub(crate) name: &'static str,
    /// Per-request times.
    pub(crate) summary: Summary,
}

/// The network figures of one backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkReport {
    /// The host's Python straight to the server.
    pub(crate) direct: Option<Summary>,
    /// Each way from the sandbox.
    pub(crate) ways: Vec<Way>,
    /// Why figures are missing.
    pub(crate) reason: Option<String>,
}

/// Measures `backend` against a server of the bench's own; `host_python` is the reference.
pub(crate) async fn measure(server: &Path, backend: &str, host_python: &Path) -> NetworkReport {
    match try_measure(server, backend, host_python).await {
        Ok(report) => report,
        Err(e) => NetworkReport {
            reason: Some(format!("{e:#}")),
            ..NetworkReport::default()
        },
    }
}

async fn try_measure(server: &Path, backend: &str, host_python: &Path) -> Result<NetworkReport> {
    let port = serve_small_answers()?;
    let url = format!("http://127.0.0.1:{port}/");
    let mut report = NetworkReport {
        direct: Some(host_loop(host_python, &url).await?),
        ..NetworkReport::default()
    };
    let state = tempfile::Builder::new()
        .prefix("bench-network-")
        .tempdir()
        .context("a state directory")?;
    let hosts = format!("127.0.0.1:{port}");
    let state_dir = state.path().display().to_string();
    let (client, _) = client::start(
        server,
        &["--backend".to_string(), backend.to_string()],
        &[
            ("MCP_BRIDGE_STATE_DIR", state_dir.as_str()),
            ("MCP_BRIDGE_ALLOW_HOSTS", hosts.as_str()),
            ("MCP_BRIDGE_ALLOW_PRIVATE", "127.0.0.1"),
            ("MCP_BRIDGE_EGRESS_BYTES", "1g"),
        ],
    )
    .await?;
    let proxied = guest_has_proxy(&client).await?;
    let mut ways = vec![("fetch", "via_fetch")];
    if proxied {
        ways.push(("proxy", "via_proxy"));
    }
    for (name, function) in ways {
        let times = guest_loop(&client, function, &url).await?;
        report.ways.push(Way {
            name,
            summary: Summary::of(times),
        });
    }
    client.cancel().await.ok();
    Ok(report)
}

/// A server answering every connection's request with 20 bytes, then closing; its port.
fn serve_small_answers() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("a loopback port")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\n\
                      okokokokokokokokokok",
                );
            });
        }
    });
    Ok(port)
}

/// The loop run by the host's Python straight to the server.
async fn host_loop(host_python: &Path, url: &str) -> Result<Summary> {
    let code = format!("{TIMED_LOOP}\nprint(json.dumps(timed(direct, {url:?}, {REQUESTS})))");
    let output = tokio::process::Command::new(host_python)
        .args(["-c", &code])
        .output()
        .await
        .with_context(|| format!("running {}", host_python.display()))?;
    if !output.status.success() {
        bail!(
            "the host's loop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Summary::of(durations(&serde_json::from_slice(
        &output.stdout,
    )?)?))
}

/// True when the session has a proxy (its sandbox has sockets).
async fn guest_has_proxy(client: &Client) -> Result<bool> {
    let result = client::run_python_ok(
        client,
        json!({"code": "import os\nprint('HTTP_PROXY' in os.environ)"}),
    )
    .await?;
    Ok(client::text_of(&result).contains("True"))
}

/// The guest's loop with `function`, its per-request times.
async fn guest_loop(client: &Client, function: &str, url: &str) -> Result<Vec<Duration>> {
    let code = format!("{TIMED_LOOP}\nprint(json.dumps(timed({function}, {url:?}, {REQUESTS})))");
    let result = client::run_python_ok(client, json!({"code": code, "timeout": 120})).await?;
    let stdout = client::stdout_of(&result);
    durations(
        &serde_json::from_str(&stdout).with_context(|| format!("the loop printed {stdout:?}"))?,
    )
}

fn durations(times: &Value) -> Result<Vec<Duration>> {
    let times = times.as_array().context("a list of times")?;
    if times.is_empty() {
        bail!("no times");
    }
    Ok(times
        .iter()
        .filter_map(Value::as_f64)
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
        .collect())
}

/// The report of `backend` as Markdown rows under [`markdown_header`].
pub(crate) fn markdown_rows(backend: &str, report: &NetworkReport) -> String {
    let Some(direct) = &report.direct else {
        return format!(
            "| {backend} | — | — | — | — | {} |\n",
            report.reason.as_deref().unwrap_or("not measured")
        );
    };
    let mut out = String::new();
    for way in &report.ways {
        let added = way.summary.median_ms - direct.median_ms;
        let _ = writeln!(
            out,
            "| {backend} | {} | {:.3} | {:.3} | {:.3} | {:+.3} ms ({:.2}×) |",
            way.name,
            way.summary.median_ms,
            way.summary.p95_ms,
            direct.median_ms,
            added,
            way.summary.median_ms / direct.median_ms,
        );
    }
    if let Some(reason) = &report.reason {
        let _ = writeln!(out, "| {backend} | — | — | — | — | {reason} |");
    }
    out
}

/// The table's header.
pub(crate) fn markdown_header() -> String {
    format!(
        "One GET per new connection to a server on 127.0.0.1, {REQUESTS} timed in the guest; \
         \"direct\" is the host's Python running the same loop straight to the server.\n\n\
         | backend | way | median ms | p95 ms | direct median ms | added (ratio) |\n\
         |---|---|---|---|---|---|\n"
    )
}
