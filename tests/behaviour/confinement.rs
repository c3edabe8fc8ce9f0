//! Confinement that container-grade backends must show for real: caps enforced by the kernel,
//! privileges gone, deadlines that interrupt before they kill, and nothing left behind. Each
//! test runs on every backend; where a backend confines differently (WASI has no processes,
//! no `/proc` and no soft interrupt) the test says what that backend must show instead.

use anyhow::{Result, ensure};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{Ending, RawBridge, TestBackend, container_cpu_stat, leftovers};

fn is_container(b: &TestBackend) -> bool {
    b.is_container()
}

pub(crate) async fn memory_bomb_is_stopped_with_a_clear_error(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge_with(&[("MCP_BRIDGE_MEMORY", "128m")]).await?;
    bridge.ok("kept = 1").await?;
    let reply = bridge
        .run("chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))")
        .await?;
    ensure!(reply.is_error, "{}", reply.text);
    if b.name == "podman_gvisor" {
        // gVisor ignores RLIMIT_DATA: the cgroup cap stops the whole sandbox instead.
        ensure!(
            reply.text.contains("memory cap"),
            "no clear error: {}",
            reply.text
        );
        let out = bridge.ok("print('alive')").await?;
        ensure!(out == "alive\n", "{out:?}");
        return Ok(());
    }
    // Every other backend caps the heap itself, so the code gets a `MemoryError` it can
    // handle, and the session (with what it held before) lives on.
    ensure!(
        reply.structured["error"]["type"] == json!("MemoryError"),
        "expected a MemoryError: {}\n{}",
        reply.text,
        reply.structured
    );
    let out = bridge.ok("del chunks\nprint(kept)").await?;
    ensure!(out == "1\n", "{out:?}");
    Ok(())
}

pub(crate) async fn fork_bomb_hits_the_pids_cap(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge_with(&[("MCP_BRIDGE_PIDS", "32")]).await?;
    let code = r"
import os, time
if not hasattr(os, 'fork'):
    print('stopped: no fork here')
else:
    children = []
    try:
        for _ in range(500):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
        print('not stopped', len(children))
    except OSError as e:
        print('stopped', len(children), e.errno)
    finally:
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
";
    let reply = bridge.run(code).await?;
    if b.name == "podman_gvisor" && reply.status() == "sandbox_failed" {
        // gVisor's own threads share the cap: the bomb can take the whole sandbox down,
        // which the reply must say; the next call gets a fresh one.
        ensure!(reply.text.contains("state is lost"), "{}", reply.text);
        let out = bridge.ok("print('alive')").await?;
        ensure!(out == "alive\n", "{out:?}");
        return Ok(());
    }
    ensure!(!reply.is_error, "{}", reply.text);
    let out = reply.stdout().to_string();
    ensure!(out.starts_with("stopped"), "{out}");
    if is_container(b) {
        let forked: u32 = out.split_whitespace().nth(1).unwrap_or("").parse()?;
        // Under gVisor the cap also covers its own threads, with a headroom for them.
        let cap = if b.name == "podman_gvisor" {
            32 + 128
        } else {
            32
        };
        ensure!(
            forked < cap,
            "forked {forked} processes under a cap of {cap}"
        );
    }
    let out = bridge.ok("print('alive')").await?;
    ensure!(out == "alive\n", "{out:?}");
    Ok(())
}

pub(crate) async fn privileges_are_dropped(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let code = r"
import os
try:
    print(''.join(l for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNewPrivs'))))
except OSError:
    print('no /proc')
print('uid', os.getuid() if hasattr(os, 'getuid') else 'none')
";
    let out = bridge.ok(code).await?;
    if is_container(b) {
        let mut lines = vec![
            "CapInh:\t0000000000000000",
            "CapPrm:\t0000000000000000",
            "CapEff:\t0000000000000000",
            "CapBnd:\t0000000000000000",
        ];
        // gVisor's `/proc` (2022) shows neither; its kernel is not the host's anyway.
        if b.name != "podman_gvisor" {
            lines.extend(["CapAmb:\t0000000000000000", "NoNewPrivs:\t1"]);
        }
        for line in lines {
            ensure!(out.contains(line), "missing {line:?} in:\n{out}");
        }
        ensure!(out.contains("uid 65534"), "{out}");
    } else {
        ensure!(out.starts_with("no /proc"), "{out}");
    }
    Ok(())
}

pub(crate) async fn interrupted_code_keeps_its_session(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge.ok("x = 41").await?;
    let reply = bridge
        .call(json!({"code": "while True:\n    pass", "timeout": 1}))
        .await?;
    ensure!(reply.status() == "timed_out", "{}", reply.structured);
    if is_container(b) {
        ensure!(
            reply.structured["state_lost"] == json!(false),
            "an interrupt should keep the session: {}",
            reply.structured
        );
        ensure!(
            reply.text.contains("KeyboardInterrupt") || reply.text.contains("interrupt"),
            "{}",
            reply.text
        );
        let out = bridge.ok("print(x + 1)").await?;
        ensure!(out == "42\n", "{out:?}");
    } else {
        // No soft interrupt: the reply must say the state is gone, and it must be gone.
        ensure!(
            reply.structured["state_lost"] == json!(true),
            "{}",
            reply.structured
        );
        let out = bridge.ok("print('x' in globals())").await?;
        ensure!(out == "False\n", "{out:?}");
    }
    Ok(())
}

pub(crate) async fn code_ignoring_the_interrupt_is_killed_and_reported(
    b: &TestBackend,
) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge.ok("x = 1").await?;
    let code = "while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        print('ignoring', flush=True)";
    let reply = bridge.call(json!({"code": code, "timeout": 1})).await?;
    ensure!(reply.status() == "timed_out", "{}", reply.structured);
    ensure!(
        reply.structured["state_lost"] == json!(true),
        "{}",
        reply.structured
    );
    let notice = reply.structured["notice"].as_str().unwrap_or_default();
    ensure!(
        notice.contains("lost"),
        "the reply must say the state is lost: {notice}"
    );
    let out = bridge.ok("print('x' in globals())").await?;
    ensure!(out == "False\n", "{out:?}");
    Ok(())
}

async fn ends_without_leftovers(b: &TestBackend, how: Ending) -> Result<()> {
    let mut bridge = RawBridge::start(b)?;
    bridge.initialize().await?;
    let reply = bridge.run(1, "print('hello')").await?;
    ensure!(reply["result"]["isError"] != json!(true), "{reply}");
    let pid = bridge.pid();
    ensure!(
        !leftovers(b, pid)?.is_empty() || b.backend() == "wasi",
        "the run left no trace to check"
    );
    bridge.finish(how).await?;
    let left = leftovers(b, pid)?;
    ensure!(left.is_empty(), "left behind after {how:?}: {left:?}");
    Ok(())
}

pub(crate) async fn nothing_is_left_after_the_client_leaves(b: &TestBackend) -> Result<()> {
    ends_without_leftovers(b, Ending::CloseStdin).await
}

pub(crate) async fn nothing_is_left_after_sigterm(b: &TestBackend) -> Result<()> {
    ends_without_leftovers(b, Ending::Signal(Signal::SIGTERM)).await
}

pub(crate) async fn a_crashed_bridge_is_cleaned_up_by_the_next(b: &TestBackend) -> Result<()> {
    let mut crashed = RawBridge::start(b)?;
    crashed.initialize().await?;
    crashed.run(1, "print('hello')").await?;
    let pid = crashed.pid();
    crashed.finish(Ending::Signal(Signal::SIGKILL)).await?;
    let mut next = RawBridge::start(b)?;
    next.initialize().await?;
    let reply = next.run(1, "print('hello')").await?;
    ensure!(reply["result"]["isError"] != json!(true), "{reply}");
    // Its private podman service died with it (pdeathsig); the next bridge removed the
    // service's directory.
    let left = leftovers(b, pid)?;
    ensure!(
        left.is_empty(),
        "the crashed bridge's sandboxes are still there: {left:?}"
    );
    next.finish(Ending::CloseStdin).await?;
    Ok(())
}

pub(crate) async fn the_kernel_is_the_one_promised(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import os\nprint(os.uname().release if hasattr(os, 'uname') else 'none')")
        .await?;
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    match b.name {
        // gVisor's own kernel answers; guest syscalls never reach the host's.
        "podman_gvisor" => ensure!(out.trim() == "4.4.0", "not gVisor's kernel: {out}"),
        "podman" | "docker" | "oci" | "oci_rootless" | "oci_rootless_bare" => {
            ensure!(out.trim() == host.trim(), "{out} vs {host}");
        }
        _ => ensure!(
            out.trim() != host.trim(),
            "the host kernel is visible: {out}"
        ),
    }
    Ok(())
}

pub(crate) async fn cpu_quota_is_enforced(b: &TestBackend) -> Result<()> {
    if !is_container(b) {
        // WASI has no CPU quota (`MCP_BRIDGE_CPUS` is documented as container-only); its
        // guests yield every 10 ms and are bounded by their deadline instead.
        return Ok(());
    }
    if b.name == "podman_gvisor" {
        // gVisor's guest clocks are its own, and its sentry shares the cap: ask the host's
        // kernel whether it throttled the container's cgroup during a busy second.
        let mut bridge = RawBridge::start_with(b, &[("MCP_BRIDGE_CPUS", "0.1")])?;
        bridge.initialize().await?;
        let busy =
            "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end:\n    pass";
        let reply = bridge.run(1, busy).await?;
        ensure!(reply["result"]["isError"] != json!(true), "{reply}");
        let stat = container_cpu_stat(b, bridge.pid())?;
        let throttled: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .unwrap_or("0")
            .trim()
            .parse()?;
        ensure!(
            throttled > 0,
            "the kernel never throttled the sandbox: {stat}"
        );
        bridge.finish(Ending::CloseStdin).await?;
        return Ok(());
    }
    // CPU time used by a busy loop in one second of wall time under a tenth of a core. CPU
    // time, not work done against an unlimited run: a loaded machine slows the unlimited run
    // too, but never gives the capped one more than its quota.
    let busy = r"
import time
cpu, end = time.process_time(), time.monotonic() + 1.0
while time.monotonic() < end:
    pass
print(time.process_time() - cpu)
";
    let capped = b.bridge_with(&[("MCP_BRIDGE_CPUS", "0.1")]).await?;
    if let Some(said) = capped.unenforced("cpu").await? {
        // No cgroup to hold a quota in (rootless without one): the reply must say so.
        ensure!(said.contains("no quota"), "{said}");
        return Ok(());
    }
    let used: f64 = capped.ok(busy).await?.trim().parse()?;
    ensure!(
        used < 0.3,
        "a 0.1-core quota still let a busy second use {used:.2} s of CPU"
    );
    Ok(())
}

pub(crate) async fn missing_limits_are_named_in_every_reply(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run("pass").await?;
    let listed = reply.unenforced();
    if b.name == "oci_rootless_bare" {
        // A rootless user with no cgroup: every cgroup limit is missing, each named with
        // what holds instead.
        for limit in ["memory:", "processes:", "cpu:"] {
            ensure!(
                listed.iter().any(|entry| entry.starts_with(limit)),
                "{limit} not named: {listed:?}"
            );
        }
    } else {
        ensure!(listed.is_empty(), "limits hold here, yet: {listed:?}");
    }
    Ok(())
}
