//! Replicas behind HAProxy, over streamable HTTP: what the load balancer adds to a warm call,
//! and how many calls a second three replicas serve against one.
//!
//! Real parts: three `run --transport http` processes of the server under test, sharing a
//! state directory, and Debian's HAProxy with `deploy/haproxy/haproxy.cfg` unchanged (the
//! configuration is compiled into this binary, so what is measured is what is committed).
//! The client is rmcp's streamable HTTP client. Trusts the machine to have `haproxy` on
//! `PATH` or in `/usr/sbin`; says so when it does not.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

use crate::client::{self, Client};
use crate::stats::Summary;

/// The committed load balancer configuration.
const HAPROXY_CONFIG: &str = include_str!("../../../deploy/haproxy/haproxy.cfg");

/// Warm calls timed each way.
const CALLS: usize = 300;

/// Clients calling at once in the throughput runs, and calls each makes.
const CLIENTS: usize = 12;
const CALLS_PER_CLIENT: usize = 25;

/// What the throughput runs execute: a little CPU, as an agent's small scripts take.
const WORK: &str = "sum(i * i for i in range(20000))";

/// The figures of one backend.
#[derive(Debug, Clone)]
pub(crate) struct ReplicasReport {
    /// A warm `pass`, straight to one replica.
    pub(crate) direct: Summary,
    /// The same through HAProxy (three replicas behind it).
    pub(crate) balanced: Summary,
    /// Calls a second, all clients on one replica directly.
    pub(crate) one_replica: f64,
    /// Calls a second, the clients spread over three replicas by HAProxy.
    pub(crate) three_replicas: f64,
}

/// A child process killed when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Measures `backend`: three replicas of `server`, HAProxy in front.
pub(crate) async fn measure(server: &Path, backend: &str) -> Result<ReplicasReport> {
    let haproxy = haproxy_binary()?;
    let state = tempfile::Builder::new()
        .prefix("bench-replicas-")
        .tempdir()
        .context("a state directory")?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let mut children = Vec::new();
    for port in ports {
        children.push(start_replica(server, backend, port, state.path())?);
    }
    for port in ports {
        wait_for(|| http_status(port, "/healthz") == Some(200), "a replica").await?;
    }
    let (listen, stats_port) = (free_port()?, free_port()?);
    let config = state.path().join("haproxy.cfg");
    std::fs::write(&config, HAPROXY_CONFIG).context("writing HAProxy's configuration")?;
    let mut command = tokio::process::Command::new(&haproxy);
    command
        .args(["-db", "-f"])
        .arg(&config)
        .env("MCP_LISTEN", format!("127.0.0.1:{listen}"))
        .env("MCP_STATS", format!("127.0.0.1:{stats_port}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (i, port) in ports.iter().enumerate() {
        command.env(
            format!("MCP_REPLICA_{}", i + 1),
            format!("127.0.0.1:{port}"),
        );
    }
    children.push(Child(
        command
            .spawn()
            .with_context(|| format!("starting {}", haproxy.display()))?,
    ));
    wait_for(
        || replicas_up(stats_port) == 3,
        "HAProxy to see three replicas",
    )
    .await?;

    let direct_url = format!("http://127.0.0.1:{}/mcp", ports[0]);
    let balanced_url = format!("http://127.0.0.1:{listen}/mcp");
    let direct = warm_calls(&direct_url).await?;
    let balanced = warm_calls(&balanced_url).await?;
    let one_replica = throughput(&direct_url).await?;
    let three_replicas = throughput(&balanced_url).await?;
    drop(children);
    Ok(ReplicasReport {
        direct,
        balanced,
        one_replica,
        three_replicas,
    })
}

/// The Markdown table of every backend's figures.
pub(crate) fn markdown(rows: &[(String, Result<ReplicasReport>)]) -> String {
    let mut out = format!(
        "Warm `pass` over streamable HTTP, {CALLS} calls (ms: median / p99), straight to one \
         replica and through HAProxy; throughput with {CLIENTS} clients at once, \
         {CALLS_PER_CLIENT} calls each of `{WORK}`.\n\n\
         | backend | direct | through HAProxy | added (median) | ratio | one replica, calls/s | three replicas, calls/s | gain |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (backend, row) in rows {
        match row {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "| {backend} | {:.3} / {:.3} | {:.3} / {:.3} | +{:.3} | {:.2}× | {:.0} | {:.0} | {:.2}× |",
                    r.direct.median_ms,
                    r.direct.p99_ms,
                    r.balanced.median_ms,
                    r.balanced.p99_ms,
                    r.balanced.median_ms - r.direct.median_ms,
                    r.balanced.median_ms / r.direct.median_ms,
                    r.one_replica,
                    r.three_replicas,
                    r.three_replicas / r.one_replica,
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {backend} | not measured: {e:#} |||||||");
            }
        }
    }
    out
}

fn haproxy_binary() -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
        .context("HAProxy is not installed (Debian: apt-get install haproxy)")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("a loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn start_replica(server: &Path, backend: &str, port: u16, state: &Path) -> Result<Child> {
    let child = tokio::process::Command::new(server)
        .args([
            "run",
            "--transport",
            "http",
            "--backend",
            backend,
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .env("MCP_BRIDGE_STATE_DIR", state)
        .env("MCP_BRIDGE_LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    Ok(Child(child))
}

/// The status of `GET path` on the loopback `port`, if it answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).and_then(|answer| answer.split(' ').nth(1)?.parse().ok())
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// Replicas HAProxy's statistics show up.
fn replicas_up(stats_port: u16) -> usize {
    http_get(stats_port, "/stats;csv").map_or(0, |csv| {
        csv.lines()
            .filter(|line| line.starts_with("bridges,replica") && line.contains(",UP,"))
            .count()
    })
}

async fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_mins(1);
    while !ready() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn connect(url: &str) -> Result<Client> {
    ().serve(StreamableHttpClientTransport::from_uri(url))
        .await
        .with_context(|| format!("initialising MCP at {url}"))
}

/// `CALLS` warm `pass` calls from one client, after a warm-up.
async fn warm_calls(url: &str) -> Result<Summary> {
    let client = connect(url).await?;
    for _ in 0..10 {
        client::run_python_ok(&client, json!({"code": "pass"})).await?;
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        client::run_python_ok(&client, json!({"code": "pass"})).await?;
        times.push(started.elapsed());
    }
    client.cancel().await.ok();
    Ok(Summary::of(times))
}

/// Calls a second with `CLIENTS` clients at once, each with its own MCP session.
async fn throughput(url: &str) -> Result<f64> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let client = connect(url).await?;
        client::run_python_ok(&client, json!({"code": "pass"})).await?;
        clients.push(client);
    }
    let started = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for client in clients {
        runs.spawn(async move {
            for _ in 0..CALLS_PER_CLIENT {
                client::run_python_ok(&client, json!({"code": WORK})).await?;
            }
            Ok::<_, anyhow::Error>(client)
        });
    }
    let mut done = Vec::with_capacity(CLIENTS);
    while let Some(finished) = runs.join_next().await {
        done.push(finished.context("a client's task")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for client in done {
        client.cancel().await.ok();
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "a few hundred calls, exact in f64"
    )]
    let calls = (CLIENTS * CALLS_PER_CLIENT) as f64;
    Ok(calls / elapsed)
}
