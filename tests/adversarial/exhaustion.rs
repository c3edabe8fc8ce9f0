//! Resource exhaustion, under small caps (128 MiB, 32 processes, 10 s): every bomb ends in
//! an error the reply names (a Python exception, a cap, a deadline, or a sandbox the bridge
//! replaced), and the server keeps serving.

use anyhow::{Result, ensure};
use serde_json::json;

use crate::attack::{bridge, check_blocked, run, run_in, stopped};
use crate::support::{Reply, TestBackend, TestBridge};

/// Run `code` with a deadline of `timeout` seconds; it must end in an error, and the
/// server keep serving.
async fn must_stop(b: &TestBackend, code: &str, timeout: u64) -> Result<(TestBridge, Reply)> {
    let bridge = bridge(b, &[]).await?;
    let reply = run_in(&bridge, "default", code, timeout).await?;
    stopped(&bridge, &reply).await?;
    Ok((bridge, reply))
}

pub(crate) async fn attack_memory_bomb(b: &TestBackend) -> Result<()> {
    let (_, reply) = must_stop(
        b,
        "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))",
        10,
    )
    .await?;
    let kind = reply.structured["error"]["type"].as_str().unwrap_or("");
    ensure!(
        kind == "MemoryError" || reply.status() == "sandbox_failed",
        "{}",
        reply.text
    );
    Ok(())
}

pub(crate) async fn attack_memory_across_processes(b: &TestBackend) -> Result<()> {
    // Each process stays under the per-process heap limit; together they are far over the
    // sandbox's cap, which must stop them.
    let bridge = bridge(b, &[]).await?;
    let reply = run(
        &bridge,
        r"
import os
children = []
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        try:
            held = b'x' * (100 << 20)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
if all(s == 0 for s in statuses):
    print('BREACH every child held 100 MiB |', statuses)
else:
    print('blocked children |', statuses)
",
    )
    .await?;
    let said = reply
        .unenforced()
        .into_iter()
        .find(|entry| entry.starts_with("memory:"));
    if let Some(said) = said {
        // No cap on the sandbox as a whole on this host (rootless with no cgroup): only
        // the per-process limit holds, and the reply must say so. A known gap, reported.
        ensure!(said.contains("RLIMIT_DATA"), "{said}");
        #[allow(clippy::print_stderr, reason = "a known gap must be loud")]
        {
            eprintln!(
                "GAP {}: memory across processes is not capped: {said}",
                b.name
            );
        }
    } else if !reply.is_error {
        check_blocked(&reply)?;
    } else if b.backend() == "wasi" {
        ensure!(
            reply.structured["error"]["type"] == json!("AttributeError"),
            "{}",
            reply.text
        );
    }
    bridge.alive().await
}

pub(crate) async fn attack_fork_bomb(b: &TestBackend) -> Result<()> {
    let code =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass";
    let (bridge, reply) = must_stop(b, code, 5).await?;
    if b.backend() == "wasi" {
        ensure!(reply.text.contains("fork"), "{}", reply.text);
    } else {
        // Every process spins forever: only the deadline (and the kill after it) ends it.
        ensure!(
            matches!(reply.status(), "timed_out" | "sandbox_failed"),
            "{}",
            reply.structured
        );
        if reply.structured["state_lost"] == json!(false) {
            // The interrupt ended the run and the session was kept: the runtime ended every
            // other process of the sandbox before it said so. Only the init (PID 1) and the
            // interpreter may be left; no spinner, not even a zombie.
            let left = bridge
                .ok("import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())))")
                .await?;
            ensure!(
                left.trim() == "[]",
                "processes outlived the stopped run: {}",
                left.trim()
            );
        }
    }
    Ok(())
}

pub(crate) async fn attack_spinners_outlive_the_deadline(b: &TestBackend) -> Result<()> {
    // Children and orphaned grandchildren that spin (and ignore SIGINT), while the code
    // itself waits for the deadline: the interrupt must end them all, and the session keep
    // its state.
    let bridge = bridge(b, &[]).await?;
    bridge.ok("kept = 41").await?;
    let code = r"
import os, signal, time
for _ in range(4):
    if os.fork() == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if os.fork() == 0:
            if os.fork() == 0:  # orphaned at once: its parent exits below
                while True:
                    pass
            os._exit(0)
        while True:
            pass
print('spinning', flush=True)
time.sleep(60)
";
    let reply = run_in(&bridge, "default", code, 3).await?;
    stopped(&bridge, &reply).await?;
    if b.backend() == "wasi" {
        ensure!(reply.text.contains("fork"), "{}", reply.text);
        return Ok(());
    }
    ensure!(reply.status() == "timed_out", "{}", reply.structured);
    ensure!(
        reply.structured["state_lost"] == json!(false),
        "an interrupt keeps the session: {}",
        reply.structured
    );
    let left = bridge
        .ok("import os\nprint(kept + 1, sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())))")
        .await?;
    ensure!(
        left.trim() == "42 []",
        "processes outlived the stopped run: {}",
        left.trim()
    );
    Ok(())
}

/// The run failed with `error` after printing `<label> <count>`; the count.
fn count_before(reply: &Reply, error: &str, label: &str) -> Result<u64> {
    ensure!(
        reply.structured["error"]["type"] == json!(error),
        "expected {error}: {}",
        reply.text
    );
    let count = reply.stdout().trim().strip_prefix(label).unwrap_or(" 0");
    Ok(count.trim().parse()?)
}

pub(crate) async fn attack_thread_bomb(b: &TestBackend) -> Result<()> {
    let code = r"
import threading, time
threads = []
try:
    while True:
        t = threading.Thread(target=time.sleep, args=(60,), daemon=True)
        t.start()
        threads.append(t)
finally:
    print('started', len(threads))
";
    let (_, reply) = must_stop(b, code, 10).await?;
    if reply.status() != "sandbox_failed" && reply.status() != "timed_out" {
        let started = count_before(&reply, "RuntimeError", "started")?;
        // Threads count against the pids cap (gVisor's own threads have a headroom).
        ensure!(
            started < 32 + 128,
            "started {started} threads under a cap of 32"
        );
    }
    Ok(())
}

async fn fill(b: &TestBackend, dir: &str) -> Result<()> {
    let code = format!(
        "written = 0\ntry:\n    with open('{dir}/fill', 'wb') as f:\n        while True:\n            \
         f.write(b'x' * (1 << 20))\n            f.flush()\n            written += 1\n\
         finally:\n    print('written', written)"
    );
    let (_, reply) = must_stop(b, &code, 30).await?;
    if reply.status() == "sandbox_failed" {
        ensure!(reply.text.contains(dir), "{}", reply.text);
    } else {
        let written = count_before(&reply, "OSError", "written")?;
        ensure!(written <= 64, "wrote {written} MiB into a 64 MiB area");
    }
    Ok(())
}

pub(crate) async fn attack_fill_tmp(b: &TestBackend) -> Result<()> {
    fill(b, "/tmp").await
}

pub(crate) async fn attack_fill_workspace(b: &TestBackend) -> Result<()> {
    fill(b, "/workspace").await
}

/// Flood one stream through every writer the code can reach; the reply must hold a capped
/// head and tail, say how much was cut, and the server keep serving.
async fn flood(b: &TestBackend, stream: &str, fd: u8) -> Result<()> {
    let bridge = bridge(b, &[]).await?;
    let code = format!(
        "import os, sys\nchunk = b'y' * (1 << 20)\nfor _ in range(24):\n    os.write({fd}, chunk)\n    \
         sys.{stream}.buffer.write(chunk)\n    sys.{stream}.write('z' * (1 << 20))\n\
         print('END', file=sys.{stream})"
    );
    let reply = run_in(&bridge, "default", &code, 60).await?;
    let text = reply.structured[stream].as_str().unwrap_or_default();
    // The cap holds per source: what the runtime captured, and raw writes to the fd.
    ensure!(
        text.len() < 2 * 64 * 1024 + 1024,
        "{stream} not capped: {} bytes",
        text.len()
    );
    ensure!(text.contains("END\n"), "the tail is lost");
    let cut = reply.structured["cut_bytes"][stream].as_u64().unwrap_or(0);
    ensure!(cut > 70 << 20, "only {cut} bytes of {stream} were cut");
    bridge.alive().await
}

pub(crate) async fn attack_huge_stdout(b: &TestBackend) -> Result<()> {
    flood(b, "stdout", 1).await
}

pub(crate) async fn attack_huge_stderr(b: &TestBackend) -> Result<()> {
    flood(b, "stderr", 2).await
}

pub(crate) async fn attack_deep_recursion_in_c(b: &TestBackend) -> Result<()> {
    // Recursion in C code (the parser, json, repr, pickle) ...
    let bridge = bridge(b, &[]).await?;
    let nest = "nested = []\nfor _ in range(200_000):\n    nested = [nested]\n";
    let reply = run(
        &bridge,
        &format!(
            "import json, pickle\n{nest}{}",
            r"
attempt('parser', lambda: eval('(' * 200_000 + ')' * 200_000))
attempt('json', lambda: len(json.dumps(nested)))
attempt('repr', lambda: len(repr(nested)))
attempt('pickle', lambda: len(pickle.dumps(nested)))
"
        ),
    )
    .await?;
    check_blocked(&reply)?;
    ensure!(reply.stdout().contains("blocked parser"), "{}", reply.text);
    // ... then with the recursion limit lifted, where the interpreter's own stack gives out
    // (a segfault in a container, a trap on WASI): the crash must stay inside.
    let reply = run(
        &bridge,
        &format!("import sys\nsys.setrecursionlimit(10**7)\n{nest}print(len(repr(nested)))"),
    )
    .await?;
    if reply.is_error {
        ensure!(
            reply.status() == "sandbox_failed" || reply.structured["error"].is_object(),
            "{}",
            reply.text
        );
    }
    bridge.alive().await
}

pub(crate) async fn attack_many_files(b: &TestBackend) -> Result<()> {
    let code = "n = 0\nwhile True:\n    open(f'/tmp/f{n}', 'w').close()\n    n += 1";
    let (_, reply) = must_stop(b, code, 20).await?;
    if b.backend() == "wasi" {
        // WASI counts entries itself (10,000 at most).
        ensure!(reply.text.contains("files"), "{}", reply.text);
    }
    Ok(())
}
