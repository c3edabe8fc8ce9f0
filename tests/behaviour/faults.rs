//! Faults from outside the code's control: a proxied MCP server that dies, hangs or floods
//! its answer; a guest that crashes or is killed by the kernel; a client or supervisor that
//! ends the bridge while a run is in flight. After each: the caller gets a clear error,
//! nothing is left behind (processes, containers, scratch dirs), and the next request is
//! served.
//!
//! Faults covered elsewhere are not repeated here: `os._exit` (`limits::
//! guest_exit_is_reported_and_next_call_works`), a full `/tmp` (`limits::
//! filling_scratch_space_is_stopped`), a heap bomb (`confinement::memory_bomb_…`), and ending
//! an idle bridge by closing stdin, `SIGTERM` or `SIGKILL` (`confinement::nothing_is_left_…`,
//! `confinement::a_crashed_bridge_is_cleaned_up_by_the_next`).
//!
//! The misbehaving MCP server is `tests/fixtures/faulty_server.py` (official Python SDK). It
//! runs on `TEST_MCP_PYTHON`, else the `python` beside `TEST_MCP_SERVER_TIME`, else the
//! upstreams venv tests/run.sh makes in the cache dir; without one the upstream tests print
//! `SKIP` and pass, unless `TEST_REQUIRE_UPSTREAMS=1`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{Ending, RawBridge, Reply, TestBackend, TestBridge, cache_dir, leftovers};

/// The misbehaving server's script.
pub(crate) const FAULTY_SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/faulty_server.py"
);

/// A servers config naming the faulty server `faulty`, in a directory of its own.
struct FaultyUpstream {
    dir: tempfile::TempDir,
}

impl FaultyUpstream {
    /// The config, or `None` (after a loud skip) when no Python with `mcp` is here, or the
    /// bridge runs as a user who cannot reach it.
    fn new(b: &TestBackend) -> Result<Option<Self>> {
        if b.name.starts_with("oci_rootless") {
            #[allow(clippy::print_stderr, reason = "the skip must be loud")]
            {
                eprintln!(
                    "SKIP faulty upstream on {}: the Python with `mcp` is in root's \
                     cache, out of the unprivileged user's reach (the proxy path is the same \
                     as on oci, which runs these tests)",
                    b.name
                );
            }
            return Ok(None);
        }
        let Some(python) = python_with_mcp()? else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("faulty-upstream-")
            .tempdir()?;
        let config = json!({"mcpServers": {"faulty": {
            "command": python, "args": [FAULTY_SERVER],
            "description": "misbehaves on demand"}}});
        std::fs::write(dir.path().join("servers.json"), config.to_string())?;
        Ok(Some(Self { dir }))
    }

    fn config(&self) -> String {
        self.dir
            .path()
            .join("servers.json")
            .to_string_lossy()
            .into_owned()
    }
}

/// A Python with the official `mcp` package.
pub(crate) fn python_with_mcp() -> Result<Option<PathBuf>> {
    let candidates = [
        std::env::var_os("TEST_MCP_PYTHON").map(PathBuf::from),
        std::env::var_os("TEST_MCP_SERVER_TIME").map(|t| PathBuf::from(t).with_file_name("python")),
        Some(cache_dir().join("upstreams-venv/bin/python")),
    ];
    for python in candidates.into_iter().flatten() {
        let has_mcp = std::process::Command::new(&python)
            .args(["-c", "import mcp.server.mcpserver"])
            .output()
            .is_ok_and(|o| o.status.success());
        if has_mcp {
            return Ok(Some(python));
        }
    }
    let reason = "no python with the mcp package (set TEST_MCP_PYTHON; tests/run.sh makes one)";
    if std::env::var("TEST_REQUIRE_UPSTREAMS").is_ok_and(|v| v == "1") {
        bail!("upstream servers are required (TEST_REQUIRE_UPSTREAMS=1) but: {reason}");
    }
    #[allow(clippy::print_stderr, reason = "the skip must be loud")]
    {
        eprintln!("SKIP faulty upstream: {reason}");
    }
    Ok(None)
}

/// A bridge with the faulty server configured (and `env`), or `None` after a loud skip.
async fn bridge_with_faulty(
    b: &TestBackend,
    env: &[(&str, &str)],
) -> Result<Option<(FaultyUpstream, TestBridge)>> {
    let Some(upstream) = FaultyUpstream::new(b)? else {
        return Ok(None);
    };
    let config = upstream.config();
    let mut env = env.to_vec();
    env.push(("MCP_SERVERS_CONFIG", &config));
    let bridge = b.bridge_with(&env).await?;
    Ok(Some((upstream, bridge)))
}

/// Call the faulty server from sandboxed code in the default session.
async fn proxied(bridge: &TestBridge, code: &str) -> Result<Reply> {
    bridge
        .call(json!({"code": code, "servers": ["faulty"]}))
        .await
}

/// The faulty server's process id, from its `ping`; proves the proxy serves.
async fn ping(bridge: &TestBridge) -> Result<u32> {
    let reply = proxied(bridge, "print(await mcp_faulty.ping())").await?;
    ensure!(!reply.is_error, "ping failed: {}", reply.text);
    let pid = reply
        .stdout()
        .trim()
        .strip_prefix("pong ")
        .with_context(|| format!("not a pong: {:?}", reply.stdout()))?;
    Ok(pid.parse()?)
}

/// Whether a process runs (a zombie does not: it only waits to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .is_some_and(|i| !stat[i + 1..].trim_start().starts_with('Z'))
    })
}

/// Wait up to `within` for a process to be gone.
async fn gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !running(pid)
}

async fn next_call_works(bridge: &TestBridge) -> Result<()> {
    let out = bridge.ok("print('alive')").await?;
    ensure!(out == "alive\n", "{out:?}");
    Ok(())
}

/// Peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// A `kB` field of `/proc/<pid>/status`.
pub(crate) fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()?)
}

pub(crate) async fn upstream_crash_mid_call_is_reported(b: &TestBackend) -> Result<()> {
    let Some((_upstream, bridge)) = bridge_with_faulty(b, &[]).await? else {
        return Ok(());
    };
    let first = ping(&bridge).await?;
    proxied(&bridge, "kept = 'still here'").await?;
    let started = Instant::now();
    let reply = proxied(&bridge, "await mcp_faulty.crash(code=3)").await?;
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the crash was waited out"
    );
    ensure!(reply.is_error, "{}", reply.text);
    ensure!(
        reply.structured["error"]["type"] == "mcp.MCPError",
        "{}",
        reply.structured
    );
    for needle in ["faulty", "crashed", "status 3", "crash"] {
        ensure!(
            reply.text.contains(needle),
            "{needle:?} missing: {}",
            reply.text
        );
    }
    // The sandbox session was not the one that failed: its state stays.
    let out = bridge.ok("print(kept)").await?;
    ensure!(out == "still here\n", "{out:?}");
    ensure!(gone(first, Duration::from_secs(5)).await, "{first} runs on");
    let second = ping(&bridge).await?;
    ensure!(second != first, "the server was not started again");
    Ok(())
}

pub(crate) async fn upstream_hang_ends_at_the_timeout(b: &TestBackend) -> Result<()> {
    // The tool call's own timeout ends the call; the run goes on and can handle it.
    let Some((_upstream, bridge)) =
        bridge_with_faulty(b, &[("MCP_BRIDGE_TOOL_TIMEOUT", "2s")]).await?
    else {
        return Ok(());
    };
    let server = ping(&bridge).await?;
    let started = Instant::now();
    let code = "try:\n    await mcp_faulty.nap(seconds=600)\nexcept Exception as e:\n    \
                print(type(e).__name__, e)";
    let reply = proxied(&bridge, code).await?;
    let took = started.elapsed();
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "took {took:?}"
    );
    let out = reply.stdout();
    ensure!(
        out.starts_with("MCPError") && out.contains("nap") && out.contains("timed out after 2"),
        "{out:?}"
    );
    // The server stays up (the call was cancelled, not the server), and serves.
    ensure!(ping(&bridge).await? == server, "the server was restarted");

    // A run deadline shorter than the tool's ends the run itself; where the sandbox can be
    // interrupted, the interrupt reaches code waiting for the call and the session keeps
    // its state.
    bridge.ok("kept = 41").await?;
    let reply = bridge
        .call(
            json!({"code": "await mcp_faulty.nap(seconds=600)", "servers": ["faulty"],
            "timeout": 1}),
        )
        .await?;
    ensure!(reply.status() == "timed_out", "{}", reply.structured);
    ensure!(reply.text.contains("Timed out"), "{}", reply.text);
    if b.is_container() {
        ensure!(
            reply.structured["state_lost"] == json!(false),
            "the interrupt did not reach code waiting for a proxied call: {}",
            reply.structured
        );
        ensure!(
            bridge.ok("print(kept + 1)").await? == "42\n",
            "the state was lost"
        );
    }
    ensure!(ping(&bridge).await? == server, "the server was restarted");
    next_call_works(&bridge).await
}

pub(crate) async fn upstream_flood_is_refused_clearly(b: &TestBackend) -> Result<()> {
    let Some((_upstream, bridge)) = bridge_with_faulty(b, &[]).await? else {
        return Ok(());
    };
    let server = ping(&bridge).await?;
    // A large answer under the 16 MiB cap arrives whole (the SDK sends the text twice: as
    // content and as structured content).
    let reply = proxied(
        &bridge,
        "r = await mcp_faulty.flood(megabytes=4)\nprint(len(r))",
    )
    .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(
        reply.stdout() == format!("{}\n", 4 << 20),
        "{:?}",
        reply.stdout()
    );
    let before = peak_rss_kib(bridge.pid)?;
    // 50 MiB in one message: refused at once, with a reason, without holding it all.
    let started = Instant::now();
    let reply = proxied(&bridge, "await mcp_faulty.flood(megabytes=50)").await?;
    let took = started.elapsed();
    ensure!(reply.is_error, "{}", reply.text);
    ensure!(
        took < Duration::from_secs(20),
        "took {took:?}: {}",
        reply.text
    );
    ensure!(
        reply.text.contains("faulty") && reply.text.contains("MiB"),
        "no clear reason: {}",
        reply.text
    );
    let grew = peak_rss_kib(bridge.pid)?.saturating_sub(before);
    #[allow(clippy::print_stderr, reason = "the number is reported")]
    {
        eprintln!(
            "{}: a 50 MiB upstream answer was refused in {took:?}; bridge peak RSS grew {} MiB",
            b.name,
            grew >> 10
        );
    }
    ensure!(grew < 64 << 10, "the bridge's peak RSS grew {grew} KiB");
    ensure!(
        gone(server, Duration::from_secs(5)).await,
        "the flooding server runs on"
    );
    ping(&bridge).await?;
    next_call_works(&bridge).await
}

pub(crate) async fn guest_crash_is_reported_and_next_call_works(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    if !b.is_container() {
        // WASI has no signals and no working ctypes (the slim build lacks the module, the
        // full one refuses every call): its guest cannot crash itself this way. Its own
        // crash, a trap, is what a blown stack gives (`limits::deep_recursion_is_contained`).
        let out = bridge.ok("import os\nprint(hasattr(os, 'kill'))").await?;
        ensure!(out == "False\n", "{out:?}");
        let reply = bridge.run("import ctypes\nctypes.string_at(0)").await?;
        ensure!(reply.is_error, "{}", reply.text);
        ensure!(reply.status() == "raised", "{}", reply.structured);
        ensure!(bridge.ok("print(1)").await? == "1\n");
        return Ok(());
    }
    for crash in [
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
        "import ctypes\nctypes.string_at(0)",
    ] {
        bridge.ok("x = 1").await?;
        let reply = bridge.run(crash).await?;
        ensure!(reply.is_error, "{}", reply.text);
        ensure!(reply.status() == "sandbox_failed", "{}", reply.structured);
        ensure!(reply.structured["state_lost"] == json!(true));
        ensure!(
            reply.text.contains("fresh session") && reply.text.contains("SIGSEGV"),
            "{}",
            reply.text
        );
        let out = bridge.ok("print('x' in globals())").await?;
        ensure!(out == "False\n", "{out:?}");
    }
    Ok(())
}

pub(crate) async fn oom_killed_guest_is_reported_and_next_call_works(
    b: &TestBackend,
) -> Result<()> {
    if !b.is_container() {
        // WASI's memory cap is the guest's own heap limit: a `MemoryError`, never a kill
        // (`limits::memory_cap_gives_memory_error`).
        return Ok(());
    }
    let bridge = b.bridge_with(&[("MCP_BRIDGE_MEMORY", "128m")]).await?;
    if let Some(said) = bridge.unenforced("memory").await? {
        // No cgroup cap for the sandbox as a whole, hence no OOM killer to report: the
        // reply must say what holds instead (`memory_bomb_*` checks that it does).
        ensure!(said.contains("RLIMIT_DATA"), "{said}");
        return Ok(());
    }
    // The heap cap stops one process, not several: children that each stay under it
    // together go past the cgroup's cap, and the kernel's OOM killer ends one of them.
    let code = r"
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        try:
            block = b'x' * (100 << 20)
            time.sleep(10)
        finally:
            os._exit(0)
    children.append(pid)
killed = 0
for pid in children:
    _, status = os.waitpid(pid, 0)
    killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
print('killed', killed)
";
    let reply = bridge.call(json!({"code": code, "timeout": 30})).await?;
    if reply.status() == "sandbox_failed" {
        // The kernel may pick the guest itself (gVisor counts all its memory as one).
        ensure!(reply.text.contains("memory"), "{}", reply.text);
    } else {
        ensure!(!reply.is_error, "{}", reply.text);
        let killed: u32 = reply
            .stdout()
            .trim()
            .strip_prefix("killed ")
            .context("no count")?
            .parse()?;
        ensure!(killed >= 1, "no child was OOM-killed: {}", reply.stdout());
    }
    // Now the guest itself: scratch files (a 64 MiB tmpfs) count towards the cgroup's cap
    // but not the heap's, so the heap runs into the cgroup's cap and the guest is killed.
    let code = "open('/tmp/ballast', 'wb').write(b'x' * (60 << 20))\nblock = b'y' * (90 << 20)";
    let reply = bridge.call(json!({"code": code, "timeout": 30})).await?;
    ensure!(reply.is_error, "{}", reply.text);
    let memory_error = reply.structured["error"]["type"] == "MemoryError";
    let killed = reply.status() == "sandbox_failed" && reply.text.contains("memory");
    ensure!(
        memory_error || killed,
        "{}\n{}",
        reply.text,
        reply.structured
    );
    #[allow(clippy::print_stderr, reason = "which way the kernel went is reported")]
    {
        eprintln!(
            "{}: heap past the cgroup cap: {}",
            b.name,
            reply.text.lines().next().unwrap_or_default()
        );
    }
    next_call_works(&bridge).await
}

/// Start a bridge with the faulty server, put a long run in flight that first starts the
/// server, end the bridge `how`, and check nothing of it is left. Returns the bridge's pid.
async fn end_mid_run(b: &TestBackend, upstream: &FaultyUpstream, how: Ending) -> Result<u32> {
    let config = upstream.config();
    let mut bridge = RawBridge::start_with(b, &[("MCP_SERVERS_CONFIG", &config)])?;
    bridge.initialize().await?;
    let call = |id: i64, code: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "run_python", "arguments": {"code": code, "servers": ["faulty"]}}})
    };
    bridge
        .send(&call(1, "print(await mcp_faulty.ping(), flush=True)"))
        .await?;
    let reply = bridge.response(1).await?;
    let text = reply["result"]["structuredContent"]["stdout"]
        .as_str()
        .unwrap_or_default();
    let server: u32 = text
        .trim()
        .strip_prefix("pong ")
        .with_context(|| format!("{reply}"))?
        .parse()?;
    bridge
        .send(&call(
            2,
            "import time\nawait mcp_faulty.nap(seconds=1)\ntime.sleep(120)",
        ))
        .await?;
    // Past the proxied call, into the sleep.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = bridge.pid();
    ensure!(bridge.is_running(), "the bridge died before it was ended");
    let started = Instant::now();
    bridge.finish(how).await?;
    #[allow(clippy::print_stderr, reason = "the number is reported")]
    {
        eprintln!(
            "{}: ended mid-run by {how:?} in {:?}",
            b.name,
            started.elapsed()
        );
    }
    ensure!(
        gone(server, Duration::from_secs(5)).await,
        "the proxied server {server} outlived the bridge ({how:?})"
    );
    Ok(pid)
}

fn check_no_leftovers(b: &TestBackend, pid: u32, how: Ending) -> Result<()> {
    let left = leftovers(b, pid)?;
    ensure!(
        left.is_empty(),
        "left behind after {how:?} mid-run: {left:?}"
    );
    Ok(())
}

pub(crate) async fn ending_the_bridge_mid_run_leaves_nothing(b: &TestBackend) -> Result<()> {
    let Some(upstream) = FaultyUpstream::new(b)? else {
        return Ok(());
    };
    for how in [Ending::CloseStdin, Ending::Signal(Signal::SIGTERM)] {
        let pid = end_mid_run(b, &upstream, how).await?;
        check_no_leftovers(b, pid, how)?;
    }
    // A killed bridge cleans nothing itself: the next one removes its sandboxes and its
    // private podman service's directory (the service died with its parent).
    let how = Ending::Signal(Signal::SIGKILL);
    let pid = end_mid_run(b, &upstream, how).await?;
    let next = b.bridge().await?;
    next_call_works(&next).await?;
    check_no_leftovers(b, pid, how)?;
    Ok(())
}
