//! `proxy::upstream` against real MCP servers: `mcp-server-time` (PyPI),
//! `@modelcontextprotocol/server-everything` (npm, over stdio and streamable HTTP), and a tiny
//! server written here with the official Python SDK (it crashes, sleeps and spawns on demand).
//!
//! The servers are found through environment variables; a test whose server is missing prints
//! `SKIP upstream: <reason>` and passes, unless `TEST_REQUIRE_UPSTREAMS=1`, then it fails.
//! - `TEST_MCP_SERVER_TIME`: the `mcp-server-time` executable (in a venv that also has the
//!   `mcp` package, whose `python` runs the tiny server; override with `TEST_MCP_PYTHON`).
//! - `TEST_MCP_NPM_PREFIX`: an npm prefix with `@modelcontextprotocol/server-everything`.
//!
//! Timings are printed (`cargo test --test upstream_servers -- --nocapture`), never asserted.
#![allow(clippy::print_stderr, reason = "skips and timings must be visible")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use mcp_server_code_execution_mode::proxy::catalogue::RemoteKind;
use mcp_server_code_execution_mode::proxy::upstream::{
    UpstreamError, UpstreamSpec, UpstreamTransport, Upstreams,
};
use rmcp::model::{CallToolResult, JsonObject};
use sandbox_core::error_chain;
use serde_json::{Value, json};

#[allow(
    dead_code,
    reason = "shared with the behaviour suite; this test uses part of it"
)]
#[path = "common/stats.rs"]
mod stats;
use stats::median;
#[path = "common/procs.rs"]
mod procs;
use procs::processes_naming;

/// A tiny MCP server on the official Python SDK, for what real servers will not do on demand
/// (shared with the behaviour suite's fault tests).
const CRASHY: &str = include_str!("fixtures/faulty_server.py");

// ---- finding the servers ------------------------------------------------------------------

fn skip(reason: &str) -> Result<Option<PathBuf>> {
    if std::env::var("TEST_REQUIRE_UPSTREAMS").is_ok_and(|v| v == "1") {
        bail!("upstream servers are required (TEST_REQUIRE_UPSTREAMS=1) but: {reason}");
    }
    eprintln!("SKIP upstream: {reason}");
    Ok(None)
}

fn env_path(var: &str, what: &str) -> Result<Option<PathBuf>> {
    match std::env::var_os(var) {
        Some(path) if Path::new(&path).exists() => Ok(Some(PathBuf::from(path))),
        Some(path) => skip(&format!(
            "{var}={} does not exist ({what})",
            path.to_string_lossy()
        )),
        None => skip(&format!("{var} is not set ({what})")),
    }
}

/// The `mcp-server-time` executable.
fn time_server() -> Result<Option<PathBuf>> {
    env_path(
        "TEST_MCP_SERVER_TIME",
        "path to the mcp-server-time executable",
    )
}

/// `mcp-server-everything` from the npm prefix.
fn everything() -> Result<Option<PathBuf>> {
    let Some(prefix) = env_path("TEST_MCP_NPM_PREFIX", "npm prefix with server-everything")? else {
        return Ok(None);
    };
    let bin = prefix.join("node_modules/.bin/mcp-server-everything");
    if bin.exists() {
        Ok(Some(bin))
    } else {
        skip(&format!("{} is missing", bin.display()))
    }
}

/// A Python with the `mcp` package: `TEST_MCP_PYTHON`, else the venv of `mcp-server-time`.
fn python_with_mcp() -> Result<Option<PathBuf>> {
    if std::env::var_os("TEST_MCP_PYTHON").is_some() {
        return env_path("TEST_MCP_PYTHON", "a python with the mcp package");
    }
    let Some(time) = time_server()? else {
        return Ok(None);
    };
    let python = time.with_file_name("python");
    if python.exists() {
        Ok(Some(python))
    } else {
        skip("no python beside mcp-server-time")
    }
}

fn stdio(name: &str, command: &Path, args: &[&str]) -> UpstreamSpec {
    UpstreamSpec {
        name: name.to_owned(),
        transport: UpstreamTransport::Stdio {
            command: command.to_string_lossy().into_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: BTreeMap::new(),
            cwd: None,
        },
    }
}

/// The crashy server, written into `dir`.
fn crashy(python: &Path, dir: &Path) -> Result<UpstreamSpec> {
    let script = dir.join("crashy.py");
    std::fs::write(&script, CRASHY)?;
    Ok(stdio(
        "crashy",
        python,
        &[script.to_str().context("utf-8 path")?],
    ))
}

fn upstreams(specs: Vec<UpstreamSpec>, cache: &Path, call_timeout: Duration) -> Upstreams {
    Upstreams::new(specs, cache.to_path_buf(), call_timeout)
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, not {other}"),
    }
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Processes of a process group that are still running (not zombies).
fn live_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(process) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields[0] != "Z" {
            members.push(process);
        }
    }
    members
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z'))
    })
}

async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    done()
}

// ---- the tests ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_tools_of_real_servers() -> Result<()> {
    let (Some(time), Some(everything)) = (time_server()?, everything()?) else {
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    let ups = upstreams(
        vec![
            stdio("time", &time, &[]),
            stdio("everything", &everything, &["stdio"]),
        ],
        cache.path(),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let time_tools = ups.list_tools("time").await?;
    eprintln!("time: start + tools/list in {:?}", started.elapsed());
    let names: BTreeSet<_> = time_tools.iter().map(|t| t.name.to_string()).collect();
    ensure!(
        names.contains("get_current_time") && names.contains("convert_time"),
        "{names:?}"
    );

    let started = Instant::now();
    let everything_tools = ups.list_tools("everything").await?;
    eprintln!("everything: start + tools/list in {:?}", started.elapsed());
    let names: BTreeSet<_> = everything_tools
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    ensure!(
        names.contains("echo") && names.contains("get-sum"),
        "{names:?}"
    );

    let (name, _version) = ups
        .server_info("time")
        .context("time reported serverInfo")?;
    ensure!(name.contains("time"), "serverInfo name {name}");
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_tools_and_reports_the_round_trip() -> Result<()> {
    let (Some(time), Some(everything)) = (time_server()?, everything()?) else {
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    let ups = upstreams(
        vec![
            stdio("time", &time, &[]),
            stdio("everything", &everything, &["stdio"]),
        ],
        cache.path(),
        Duration::from_secs(30),
    );
    let now = ups
        .call_tool("time", "get_current_time", args(json!({"timezone": "UTC"})))
        .await?;
    ensure!(now.is_error != Some(true), "{now:?}");
    ensure!(
        text(&now).contains("UTC"),
        "get_current_time said {}",
        text(&now)
    );

    let echo = ups
        .call_tool(
            "everything",
            "echo",
            args(json!({"message": "hello upstream"})),
        )
        .await?;
    ensure!(
        text(&echo).contains("hello upstream"),
        "echo said {}",
        text(&echo)
    );

    // A tool error is a result with isError, not an UpstreamError.
    let bad = ups
        .call_tool(
            "time",
            "get_current_time",
            args(json!({"timezone": "Nowhere/X"})),
        )
        .await;
    match bad {
        Ok(result) => ensure!(result.is_error == Some(true), "{result:?}"),
        Err(e) => ensure!(e.kind() == "upstream", "{e}"),
    }

    let mut samples = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        ups.call_tool("time", "get_current_time", args(json!({"timezone": "UTC"})))
            .await?;
        samples.push(started.elapsed());
    }
    eprintln!(
        "time get_current_time over stdio: median {:?} of 100 calls",
        median(samples)
    );
    let mut samples = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        ups.call_tool("everything", "echo", args(json!({"message": "x"})))
            .await?;
        samples.push(started.elapsed());
    }
    eprintln!(
        "everything echo over stdio: median {:?} of 100 calls",
        median(samples)
    );
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_and_servers_are_named() -> Result<()> {
    let Some(time) = time_server()? else {
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    let ups = upstreams(
        vec![stdio("time", &time, &[])],
        cache.path(),
        Duration::from_secs(30),
    );
    let error = ups
        .call_tool("time", "get_time", JsonObject::new())
        .await
        .unwrap_err();
    ensure!(error.kind() == "unknown_tool", "{error}");
    let UpstreamError::UnknownTool { similar, .. } = &error else {
        bail!("{error}")
    };
    ensure!(similar.iter().any(|s| s == "get_current_time"), "{error}");
    eprintln!("unknown tool: {error}");
    let error = ups
        .call_tool("tiem", "get_current_time", JsonObject::new())
        .await
        .unwrap_err();
    ensure!(
        error.kind() == "unknown_server" && error.to_string().contains("`time`"),
        "{error}"
    );
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_first_calls_share_one_start() -> Result<()> {
    let Some(everything) = everything()? else {
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    let ups = upstreams(
        vec![stdio("everything", &everything, &["stdio"])],
        cache.path(),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let calls = (0..20).map(|i| {
        let ups = ups.clone();
        tokio::spawn(async move {
            let message = format!("message {i}");
            let result = ups
                .call_tool("everything", "echo", args(json!({"message": message})))
                .await;
            (message, result)
        })
    });
    let mut pids = BTreeSet::new();
    for call in calls.collect::<Vec<_>>() {
        let (message, result) = call.await?;
        let result = result?;
        ensure!(
            text(&result).contains(&message),
            "{message}: {}",
            text(&result)
        );
        pids.insert(ups.process_id("everything"));
    }
    eprintln!(
        "20 concurrent echo calls, cold start included: {:?}",
        started.elapsed()
    );
    ensure!(pids.len() == 1, "one server process expected, saw {pids:?}");

    let started = Instant::now();
    let warm = (0..20).map(|i| {
        let ups = ups.clone();
        tokio::spawn(async move {
            ups.call_tool("everything", "get-sum", args(json!({"a": i, "b": 1})))
                .await
        })
    });
    for (i, call) in warm.collect::<Vec<_>>().into_iter().enumerate() {
        let result = call.await??;
        ensure!(
            text(&result).contains(&(i + 1).to_string()),
            "{}",
            text(&result)
        );
    }
    eprintln!("20 concurrent get-sum calls, warm: {:?}", started.elapsed());
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_answers_without_starting_the_server() -> Result<()> {
    let Some(time) = time_server()? else {
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    let spec = stdio("time", &time, &[]);
    let first = upstreams(vec![spec.clone()], cache.path(), Duration::from_secs(30));
    ensure!(
        first.cached_tools("time").is_none(),
        "no cache before the first start"
    );
    let listed = first.list_tools("time").await?;
    first.shutdown().await;

    let file = cache.path().join("time.json");
    let written: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    ensure!(
        written["serverInfo"]["name"].is_string(),
        "serverInfo cached: {written}"
    );
    ensure!(
        written["fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 64),
        "{written}"
    );

    let second = upstreams(vec![spec], cache.path(), Duration::from_secs(30));
    let cached = second.cached_tools("time").context("the cache answers")?;
    ensure!(cached == listed, "cached tools differ from the listed ones");
    ensure!(
        second.process_id("time").is_none(),
        "the cache must not start the server"
    );

    // Another spec (an extra env variable) does not match the cache.
    let mut changed = stdio("time", &time, &[]);
    if let UpstreamTransport::Stdio { env, .. } = &mut changed.transport {
        env.insert("TZ".into(), "UTC".into());
    }
    let third = upstreams(vec![changed], cache.path(), Duration::from_secs(30));
    ensure!(
        third.cached_tools("time").is_none(),
        "a changed spec must not use the old cache"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_for_docs_is_cached_and_leaves_nothing_running() -> Result<()> {
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let spec = crashy(&python, dir.path())?;
    let cache = dir.path().join("cache");
    let ups = upstreams(vec![spec.clone()], &cache, Duration::from_secs(30));
    ensure!(ups.cached_listing("crashy").is_none(), "a cold cache");
    let listing = ups.listing("crashy").await?;
    ensure!(
        listing.tools.iter().any(|t| t.name == "ping"),
        "{listing:?}"
    );
    ensure!(
        listing
            .instructions
            .as_deref()
            .is_some_and(|i| i.contains("Misbehaves on demand")),
        "{listing:?}"
    );
    ensure!(ups.process_id("crashy").is_none(), "stopped once listed");
    let left = processes_naming(dir.path());
    ensure!(left.is_empty(), "nothing of it runs: {left:?}");

    // From the cache now, in a new bridge too: nothing starts.
    let again = upstreams(vec![spec.clone()], &cache, Duration::from_secs(30));
    let cached = again.listing("crashy").await?;
    ensure!(
        cached == listing,
        "the cache keeps tools, serverInfo and instructions"
    );
    ensure!(
        processes_naming(dir.path()).is_empty(),
        "a warm cache starts nothing"
    );

    // A call that comes while a listing start is under way shares it, and keeps it up.
    let cold = dir.path().join("cold");
    let both = upstreams(vec![spec], &cold, Duration::from_secs(30));
    let (listed, called) = tokio::join!(
        both.listing("crashy"),
        both.call_tool("crashy", "ping", args(json!({})))
    );
    listed?;
    let pong = text(&called?);
    let pid = both
        .process_id("crashy")
        .context("the call keeps the server up")?;
    ensure!(
        pong == format!("pong {pid}"),
        "one process for both: {pong} vs {pid}"
    );
    both.shutdown().await;
    ensure!(processes_naming(dir.path()).is_empty(), "shut down");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_call_is_reported_at_once_and_the_next_call_restarts() -> Result<()> {
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    // A long call timeout: the crash must be reported long before it.
    let ups = upstreams(
        vec![crashy(&python, dir.path())?],
        dir.path(),
        Duration::from_mins(1),
    );
    let before = text(&ups.call_tool("crashy", "ping", JsonObject::new()).await?);
    let first_pid = ups.process_id("crashy").context("running")?;

    let ups2 = ups.clone();
    let napping = tokio::spawn(async move {
        ups2.call_tool("crashy", "nap", args(json!({"seconds": 50})))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        ups.call_tool("crashy", "crash", args(json!({"code": 3}))),
    )
    .await
    .context("a crash must not hang the call")?
    .unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("crash reported after {elapsed:?}: {error}");
    let UpstreamError::Crashed { detail, .. } = &error else {
        bail!("expected Crashed: {error}")
    };
    ensure!(error.kind() == "upstream");
    ensure!(detail.contains("status 3"), "exit status in {detail}");
    ensure!(
        detail.contains("about to crash on purpose"),
        "stderr tail in {detail}"
    );
    ensure!(detail.contains("`crash`"), "the tool in {detail}");

    let napped = tokio::time::timeout(Duration::from_secs(20), napping)
        .await
        .context("the call in flight must not hang")??;
    let napped = napped.unwrap_err();
    ensure!(
        matches!(napped, UpstreamError::Crashed { .. }),
        "in-flight call: {napped}"
    );

    let started = Instant::now();
    let after = text(&ups.call_tool("crashy", "ping", JsonObject::new()).await?);
    eprintln!("restarted after the crash in {:?}", started.elapsed());
    ensure!(
        after.starts_with("pong") && after != before,
        "{before} then {after}"
    );
    let second_pid = ups.process_id("crashy").context("running again")?;
    ensure!(
        second_pid != first_pid && !alive(first_pid),
        "old process gone, new one up"
    );
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_start_says_why_and_then_backs_off() -> Result<()> {
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let broken = stdio(
        "broken",
        &python,
        &[
            "-c",
            "import sys; print('no config here', file=sys.stderr); sys.exit(2)",
        ],
    );
    let ups = upstreams(vec![broken], dir.path(), Duration::from_secs(10));
    let error = ups.list_tools("broken").await.unwrap_err();
    let detail = error_chain(&error);
    eprintln!("first start: {detail}");
    ensure!(
        matches!(error, UpstreamError::Start { attempt: 1, .. }),
        "{detail}"
    );
    ensure!(
        detail.contains("status 2") && detail.contains("no config here"),
        "{detail}"
    );
    let mut last = error;
    for _ in 0..6 {
        last = ups.list_tools("broken").await.unwrap_err();
        if matches!(last, UpstreamError::Backoff { .. }) {
            break;
        }
    }
    eprintln!("later: {last}");
    ensure!(matches!(last, UpstreamError::Backoff { .. }), "{last}");
    ensure!(last.to_string().contains("no config here"), "{last}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_hangs_times_out_and_leaves_nothing_running() -> Result<()> {
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let pidfile = dir.path().join("hung.pid");
    let code = "import os, sys, time\n\
                open(sys.argv[1], 'w').write(str(os.getpid()))\n\
                time.sleep(300)";
    let hung = stdio(
        "hung",
        &python,
        &["-c", code, pidfile.to_str().context("utf-8")?],
    );
    let ups = upstreams(vec![hung], dir.path(), Duration::from_secs(5))
        .with_start_timeout(Duration::from_secs(2));
    let error = ups.list_tools("hung").await.unwrap_err();
    let text = error_chain(&error);
    eprintln!("hung start: {text}");
    ensure!(matches!(error, UpstreamError::Start { .. }), "{text}");
    ensure!(text.contains("no answer within 2 s"), "{text}");
    let pid: u32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    let gone = wait_until(Duration::from_secs(3), || !alive(pid)).await;
    ensure!(gone, "the hung server {pid} was left running");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_names_server_tool_and_duration_and_the_server_stays_up() -> Result<()> {
    let Some(everything) = everything()? else {
        return Ok(());
    };
    let cache = tempfile::tempdir()?;
    let ups = upstreams(
        vec![stdio("everything", &everything, &["stdio"])],
        cache.path(),
        Duration::from_secs(1),
    );
    ups.list_tools("everything").await?;
    let pid = ups.process_id("everything");
    let started = Instant::now();
    let error = ups
        .call_tool(
            "everything",
            "trigger-long-running-operation",
            args(json!({"duration": 10, "steps": 2})),
        )
        .await
        .unwrap_err();
    eprintln!("timed out after {:?}: {error}", started.elapsed());
    let UpstreamError::Timeout {
        server,
        tool,
        after,
    } = &error
    else {
        bail!("{error}")
    };
    ensure!(server == "everything" && tool.as_deref() == Some("trigger-long-running-operation"));
    ensure!(*after == Duration::from_secs(1));
    ensure!(error.to_string().contains("timed out after 1 s"), "{error}");
    let echo = ups
        .call_tool("everything", "echo", args(json!({"message": "still here"})))
        .await?;
    ensure!(text(&echo).contains("still here"));
    ensure!(
        ups.process_id("everything") == pid,
        "same process after a timeout"
    );
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_get_their_env_and_cwd_only() -> Result<()> {
    let (Some(everything), Some(python)) = (everything()?, python_with_mcp()?) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut everything = stdio("everything", &everything, &["stdio"]);
    let mut crashy = crashy(&python, dir.path())?;
    let workdir = dir.path().join("work");
    std::fs::create_dir(&workdir)?;
    if let UpstreamTransport::Stdio { env, .. } = &mut everything.transport {
        env.insert("UPSTREAM_TEST_VAR".into(), "42".into());
    }
    if let UpstreamTransport::Stdio { cwd, .. } = &mut crashy.transport {
        *cwd = Some(workdir.clone());
    }
    let ups = upstreams(
        vec![everything, crashy],
        dir.path(),
        Duration::from_secs(30),
    );
    let env = text(
        &ups.call_tool("everything", "get-env", JsonObject::new())
            .await?,
    );
    let env: BTreeMap<String, String> = serde_json::from_str(&env)?;
    ensure!(
        env.get("UPSTREAM_TEST_VAR").map(String::as_str) == Some("42"),
        "{env:?}"
    );
    // cargo sets CARGO_MANIFEST_DIR for this test process; children must not see it.
    ensure!(
        !env.contains_key("CARGO_MANIFEST_DIR"),
        "leaked: {:?}",
        env.keys()
    );
    let allowed = [
        "UPSTREAM_TEST_VAR",
        "HOME",
        "LOGNAME",
        "PATH",
        "SHELL",
        "TERM",
        "USER",
        "LANG",
        "LC_ALL",
        "TMPDIR",
    ];
    let unexpected: Vec<_> = env
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()) && !k.starts_with("npm_"))
        .collect();
    eprintln!("child env keys beyond the base: {unexpected:?}");
    let cwd = text(&ups.call_tool("crashy", "where", JsonObject::new()).await?);
    ensure!(Path::new(&cwd) == workdir.canonicalize()?, "cwd {cwd}");
    ups.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_process_behind() -> Result<()> {
    let (Some(time), Some(everything), Some(python)) =
        (time_server()?, everything()?, python_with_mcp()?)
    else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let ups = upstreams(
        vec![
            stdio("time", &time, &[]),
            stdio("everything", &everything, &["stdio"]),
            crashy(&python, dir.path())?,
        ],
        dir.path(),
        Duration::from_secs(30),
    );
    ups.list_tools("time").await?;
    ups.list_tools("everything").await?;
    let sleeper = ups
        .call_tool("crashy", "spawn_sleeper", JsonObject::new())
        .await?;
    let sleeper: u32 = text(&sleeper).trim().parse()?;
    let groups: Vec<u32> = ["time", "everything", "crashy"]
        .iter()
        .filter_map(|s| ups.process_id(s))
        .collect();
    ensure!(groups.len() == 3, "three servers running: {groups:?}");
    ensure!(alive(sleeper) && groups.iter().all(|g| !live_members(*g).is_empty()));

    let started = Instant::now();
    ups.shutdown().await;
    eprintln!("shutdown of 3 servers took {:?}", started.elapsed());
    for group in &groups {
        ensure!(
            live_members(*group).is_empty(),
            "group {group} left {:?}",
            live_members(*group)
        );
    }
    ensure!(!alive(sleeper), "the grandchild {sleeper} survived");
    let error = ups
        .call_tool("time", "get_current_time", JsonObject::new())
        .await
        .unwrap_err();
    ensure!(matches!(error, UpstreamError::ShutDown { .. }), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_upstreams_kills_the_process_groups() -> Result<()> {
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let ups = upstreams(
        vec![crashy(&python, dir.path())?],
        dir.path(),
        Duration::from_secs(30),
    );
    let sleeper = ups
        .call_tool("crashy", "spawn_sleeper", JsonObject::new())
        .await?;
    let sleeper: u32 = text(&sleeper).trim().parse()?;
    let group = ups.process_id("crashy").context("running")?;
    drop(ups);
    let gone = wait_until(Duration::from_secs(5), || live_members(group).is_empty()).await;
    ensure!(
        gone,
        "group {group} survived the drop: {:?}",
        live_members(group)
    );
    ensure!(!alive(sleeper), "the grandchild {sleeper} survived");
    Ok(())
}

/// Env var that turns [`hold_a_server_for_the_kill_test`] on, naming its pid file.
const HOLD_PIDFILE: &str = "UPSTREAM_TEST_HOLD_PIDFILE";

/// Not a test by itself: run by `a_sigkilled_bridge_takes_its_servers_along` in a separate
/// process, it starts a server, writes the server's pid, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of a_sigkilled_bridge_takes_its_servers_along"]
async fn hold_a_server_for_the_kill_test() -> Result<()> {
    let Some(pidfile) = std::env::var_os(HOLD_PIDFILE) else {
        return Ok(());
    };
    let python = PathBuf::from(std::env::var_os("TEST_MCP_PYTHON").context("python")?);
    let dir = tempfile::tempdir()?;
    let ups = upstreams(
        vec![crashy(&python, dir.path())?],
        dir.path(),
        Duration::from_secs(30),
    );
    ups.call_tool("crashy", "ping", JsonObject::new()).await?;
    let pid = ups.process_id("crashy").context("running")?;
    std::fs::write(&pidfile, pid.to_string())?;
    tokio::time::sleep(Duration::from_mins(2)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_bridge_takes_its_servers_along() -> Result<()> {
    let Some(python) = python_with_mcp()? else {
        return Ok(());
    };
    if !Path::new("/usr/bin/setpriv").exists() && !Path::new("/bin/setpriv").exists() {
        skip("no setpriv: children of a SIGKILLed bridge are not killed by the kernel")?;
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let pidfile = dir.path().join("server.pid");
    let mut bridge = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "hold_a_server_for_the_kill_test",
            "--ignored",
            "--nocapture",
        ])
        .env(HOLD_PIDFILE, &pidfile)
        .env("TEST_MCP_PYTHON", &python)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let written = wait_until(Duration::from_secs(30), || pidfile.exists()).await;
    ensure!(written, "the helper never started its server");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let server: u32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    ensure!(alive(server), "server {server} running");
    bridge.start_kill()?; // SIGKILL: no destructor, no shutdown runs in the helper
    bridge.wait().await?;
    let gone = wait_until(Duration::from_secs(5), || !alive(server)).await;
    ensure!(gone, "server {server} outlived its SIGKILLed bridge");
    Ok(())
}

/// server-everything in streamable HTTP mode on `port` (it listens on all interfaces; the
/// tests talk to it on loopback only).
fn everything_http(everything: &Path, port: u16) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(everything)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

async fn listening(port: u16) -> bool {
    wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_upstreams_work() -> Result<()> {
    let Some(everything) = everything()? else {
        return Ok(());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = everything_http(&everything, port)?;
    ensure!(
        listening(port).await,
        "server-everything did not listen on {port}"
    );

    let cache = tempfile::tempdir()?;
    let spec = UpstreamSpec {
        name: "remote".into(),
        transport: UpstreamTransport::Remote {
            url: format!("http://127.0.0.1:{port}/mcp"),
            headers: BTreeMap::from([("X-Upstream-Test".to_owned(), "1".to_owned())]),
            kind: RemoteKind::Http,
        },
    };
    let ups = upstreams(vec![spec], cache.path(), Duration::from_secs(30));
    let started = Instant::now();
    let tools = ups.list_tools("remote").await?;
    eprintln!(
        "streamable HTTP: connect + tools/list in {:?}",
        started.elapsed()
    );
    ensure!(tools.iter().any(|t| t.name == "echo"));
    ensure!(ups.process_id("remote").is_none());

    let calls = (0..20).map(|i| {
        let ups = ups.clone();
        tokio::spawn(async move {
            ups.call_tool("remote", "echo", args(json!({"message": format!("m{i}")})))
                .await
        })
    });
    for (i, call) in calls.collect::<Vec<_>>().into_iter().enumerate() {
        let result = call.await??;
        ensure!(text(&result).contains(&format!("m{i}")));
    }
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        ups.call_tool("remote", "echo", args(json!({"message": "x"})))
            .await?;
        samples.push(started.elapsed());
    }
    eprintln!(
        "everything echo over streamable HTTP: median {:?} of 50 calls",
        median(samples)
    );
    ensure!(ups.cached_tools("remote").is_some());

    // https to this plain-HTTP port: the TLS handshake itself must be attempted (and fail).
    let tls = UpstreamSpec {
        name: "tls".into(),
        transport: UpstreamTransport::Remote {
            url: format!("https://127.0.0.1:{port}/mcp"),
            headers: BTreeMap::new(),
            kind: RemoteKind::Http,
        },
    };
    let tls = upstreams(vec![tls], cache.path(), Duration::from_secs(5));
    let error = tls.list_tools("tls").await.unwrap_err();
    eprintln!("https to a plain-HTTP server: {error}");
    ensure!(matches!(error, UpstreamError::Start { .. }), "{error}");

    // The server goes away: calls fail with an upstream error, promptly.
    server.start_kill()?;
    server.wait().await?;
    let started = Instant::now();
    let error = ups
        .call_tool("remote", "echo", args(json!({"message": "gone"})))
        .await
        .unwrap_err();
    eprintln!("HTTP server gone, after {:?}: {error}", started.elapsed());
    ensure!(error.kind() == "upstream", "{error}");

    // It comes back (a new process, so the old session is unknown to it): calls work again.
    let mut server = everything_http(&everything, port)?;
    ensure!(
        listening(port).await,
        "server-everything did not listen again on {port}"
    );
    let mut outcome = Err(error);
    for _ in 0..10 {
        outcome = ups
            .call_tool("remote", "echo", args(json!({"message": "back"})))
            .await;
        match &outcome {
            Ok(_) => break,
            Err(e) => eprintln!("HTTP server back, call: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(text(&outcome?).contains("back"));

    // It restarts between two calls: our session is unknown to the new process. The next
    // call fails at once (server-everything answers 400 with an id-less error), the one
    // after opens a new session.
    server.start_kill()?;
    server.wait().await?;
    let mut server = everything_http(&everything, port)?;
    ensure!(
        listening(port).await,
        "server-everything did not listen a third time"
    );
    let started = Instant::now();
    let stale = ups
        .call_tool("remote", "echo", args(json!({"message": "stale"})))
        .await;
    eprintln!(
        "stale session, after {:?}: {stale:?}",
        started.elapsed().as_millis()
    );
    let fresh = ups
        .call_tool("remote", "echo", args(json!({"message": "fresh"})))
        .await?;
    ensure!(text(&fresh).contains("fresh"));
    ups.shutdown().await;
    server.start_kill()?;
    server.wait().await?;
    Ok(())
}

#[tokio::test]
async fn https_urls_are_understood_and_failures_are_start_errors() -> Result<()> {
    // Nothing listens on this port: the error must be about connecting, not the scheme.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cache = tempfile::tempdir()?;
    let spec = UpstreamSpec {
        name: "tls".into(),
        transport: UpstreamTransport::Remote {
            url: format!("https://127.0.0.1:{port}/mcp"),
            headers: BTreeMap::new(),
            kind: RemoteKind::Http,
        },
    };
    let ups = upstreams(vec![spec], cache.path(), Duration::from_secs(5))
        .with_start_timeout(Duration::from_secs(10));
    let error = ups.list_tools("tls").await.unwrap_err();
    let text = error_chain(&error);
    eprintln!("https to a closed port: {text}");
    ensure!(matches!(error, UpstreamError::Start { .. }), "{text}");
    ensure!(!text.to_lowercase().contains("scheme"), "{text}");
    Ok(())
}
