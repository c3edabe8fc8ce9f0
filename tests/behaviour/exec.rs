//! Running code: output, state, errors, sessions.

use std::fmt::Write as _;

use anyhow::{Result, ensure};
use serde_json::json;

use crate::support::TestBackend;

pub(crate) async fn prints_stdout(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run("print('hello', 6 * 7)").await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(reply.stdout() == "hello 42\n", "{:?}", reply.stdout());
    ensure!(reply.text.contains("hello 42"), "{}", reply.text);
    Ok(())
}

pub(crate) async fn keeps_globals_between_calls(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge
        .ok("import math\nx = 41\ndef bump(n):\n    return n + 1")
        .await?;
    let out = bridge.ok("print(bump(x), math.floor(2.5))").await?;
    ensure!(out == "42 2\n", "{out:?}");
    Ok(())
}

pub(crate) async fn top_level_await_works(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let code = "import asyncio\nasync def sq(n):\n    await asyncio.sleep(0.01)\n    return n * n\n\
                print(sum(await asyncio.gather(*(sq(i) for i in range(10)))))";
    let out = bridge.ok(code).await?;
    ensure!(out == "285\n", "{out:?}");
    let out = bridge
        .ok("print(await asyncio.wait_for(sq(3), timeout=5))")
        .await?;
    ensure!(out == "9\n", "{out:?}");
    Ok(())
}

pub(crate) async fn asyncio_objects_survive_between_calls(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge
        .ok("import asyncio\nq = asyncio.Queue()\nawait q.put(5)")
        .await?;
    let out = bridge.ok("print(await q.get())").await?;
    ensure!(out == "5\n", "{out:?}");
    Ok(())
}

pub(crate) async fn exceptions_show_only_user_frames(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge
        .run("def f(d):\n    return 1 / d\n\nprint('before')\nf(0)")
        .await?;
    ensure!(reply.is_error);
    ensure!(reply.status() == "raised", "{}", reply.status());
    ensure!(reply.stdout() == "before\n", "{:?}", reply.stdout());
    let error = &reply.structured["error"];
    ensure!(error["type"] == "ZeroDivisionError", "{error}");
    let tb = error["traceback"].as_str().unwrap_or_default();
    ensure!(
        tb.contains("return 1 / d"),
        "traceback lacks the user's line: {tb}"
    );
    ensure!(
        !tb.contains("runtime.py") && !tb.contains("__mcp_runtime__"),
        "{tb}"
    );
    ensure!(reply.text.contains("ZeroDivisionError"), "{}", reply.text);
    // The session survives an exception.
    ensure!(bridge.ok("print(f(1))").await? == "1.0\n");
    Ok(())
}

pub(crate) async fn runs_are_numbered_from_one_in_every_session(b: &TestBackend) -> Result<()> {
    // With a warm pool, the bridge's own warm-up run must not take the number 1.
    let bridge = b.bridge_with(&[("MCP_BRIDGE_POOL_SIZE", "1")]).await?;
    bridge.ok("pass").await?; // the default session; the pool refills behind it
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for (run, expected) in [(1, "<run-1>"), (2, "<run-2>")] {
        let reply = bridge
            .call(json!({"code": "1 / 0", "session": "numbered"}))
            .await?;
        let tb = reply.structured["error"]["traceback"]
            .as_str()
            .unwrap_or_default();
        ensure!(
            tb.contains(&format!("File \"{expected}\"")),
            "run {run} of a fresh session is not {expected}: {tb}"
        );
    }
    Ok(())
}

pub(crate) async fn syntax_errors_point_at_the_line(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run("x = 1\ny = (\n").await?;
    ensure!(reply.is_error);
    ensure!(
        reply.structured["error"]["type"] == "SyntaxError",
        "{}",
        reply.structured
    );
    Ok(())
}

pub(crate) async fn stderr_is_captured_separately(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge
        .run("import sys\nprint('out')\nprint('err', file=sys.stderr)")
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(
        reply.stdout() == "out\n" && reply.stderr() == "err\n",
        "{:?}",
        reply.structured
    );
    Ok(())
}

pub(crate) async fn system_exit_ends_the_run_not_the_session(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge.ok("kept = 'yes'").await?;
    let reply = bridge.run("import sys\nsys.exit(3)").await?;
    ensure!(
        reply.is_error && reply.structured["error"]["type"] == "SystemExit",
        "{}",
        reply.text
    );
    let reply = bridge.run("exit()").await?;
    ensure!(
        reply.structured["error"]["type"] == "SystemExit",
        "{}",
        reply.text
    );
    ensure!(bridge.ok("print(kept)").await? == "yes\n");
    Ok(())
}

pub(crate) async fn named_sessions_are_separate(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge
        .call(json!({"code": "v = 'a'", "session": "one"}))
        .await?;
    bridge
        .call(json!({"code": "v = 'b'", "session": "two"}))
        .await?;
    let one = bridge
        .call(json!({"code": "print(v)", "session": "one"}))
        .await?;
    let two = bridge
        .call(json!({"code": "print(v)", "session": "two"}))
        .await?;
    ensure!(
        one.stdout() == "a\n" && two.stdout() == "b\n",
        "{one:?} {two:?}"
    );
    let default = bridge.run("print('v' in globals())").await?;
    ensure!(default.stdout() == "False\n", "{:?}", default.stdout());
    ensure!(one.structured["session"] == "one");
    Ok(())
}

pub(crate) async fn reset_starts_afresh(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    bridge.ok("gone = 1").await?;
    let reply = bridge
        .call(json!({"code": "print('gone' in globals())", "reset": true}))
        .await?;
    ensure!(reply.stdout() == "False\n", "{:?}", reply.structured);
    Ok(())
}

pub(crate) async fn stdin_reads_see_end_of_file(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run("input()").await?;
    ensure!(
        reply.structured["error"]["type"] == "EOFError",
        "{}",
        reply.text
    );
    let out = bridge
        .ok("import sys\nprint(repr(sys.stdin.read()))")
        .await?;
    ensure!(out == "''\n", "{out:?}");
    ensure!(bridge.ok("print('still fine')").await? == "still fine\n");
    Ok(())
}

pub(crate) async fn runtime_helpers_are_importable(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let code = "import mcp.runtime as runtime\nfrom mcp import runtime as r2\n\
                print(runtime is r2, runtime.discovered_servers(), len(runtime.capability_summary()) > 100)\n\
                print(issubclass(runtime.MCPError, RuntimeError))";
    let out = bridge.ok(code).await?;
    ensure!(out == "True () True\nTrue\n", "{out:?}");
    Ok(())
}

pub(crate) async fn large_code_runs(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    // About 4 MiB of source.
    let mut code = String::from("total = 0\n");
    for i in 0..200_000 {
        let _ = writeln!(code, "total += {i}");
    }
    code.push_str("print(total)\n");
    let reply = bridge.run(&code).await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(reply.stdout() == "19999900000\n", "{:?}", reply.stdout());
    Ok(())
}

pub(crate) async fn unicode_round_trips(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("s = 'héllo wörld ✓ 日本 🐍'\nprint(s, len(s))")
        .await?;
    ensure!(out == "héllo wörld ✓ 日本 🐍 18\n", "{out:?}");
    Ok(())
}

/// The runtime encodes and decodes frames with `_json`, the C accelerator, on every
/// interpreter: when a setting `_json` reads is missing (CPython 3.15 added one), it falls
/// back to the `json` module, a few times slower on every frame.
pub(crate) async fn frames_use_the_json_accelerator(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import sys\nrt = sys.modules['__mcp_runtime__']\n\
             print(type(rt.encode_json).__name__, type(rt.decode_json).__name__)")
        .await?;
    ensure!(
        out == "function function\n",
        "the runtime's frame codec fell back to the json module: {out:?}"
    );
    Ok(())
}

/// Top-level `await` runs in a real task whatever finishes when: code that completes without
/// ever waiting (which the runtime may run without a loop turn) still sees its task, and
/// what it scheduled still runs within the same run.
pub(crate) async fn code_that_never_waits_still_runs_in_a_task(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import asyncio\n\
             async def at_once():\n    return 41\n\
             task = asyncio.current_task()\n\
             async with asyncio.timeout(5):\n    value = await at_once()\n\
             asyncio.get_running_loop().call_soon(print, 'scheduled ran')\n\
             print(type(task).__name__, task is asyncio.current_task(), value + 1)")
        .await?;
    ensure!(out == "Task True 42\nscheduled ran\n", "{out:?}");
    let out = bridge
        .ok("print(asyncio.current_task() is task, task.done())\nawait at_once()")
        .await?;
    ensure!(out == "False True\n", "{out:?}");
    // SystemExit ends a run even from inside its task, and leaves nothing for later runs
    // (no "Task exception was never retrieved" in their stderr once the task is collected).
    let reply = bridge
        .run("import sys\nasync def leave():\n    sys.exit(3)\nawait leave()")
        .await?;
    ensure!(reply.status() == "raised", "{}", reply.text);
    ensure!(
        reply.structured["error"]["type"] == "SystemExit",
        "{}",
        reply.text
    );
    let reply = bridge
        .run("import gc\ngc.collect()\nprint('after')")
        .await?;
    ensure!(reply.stdout() == "after\n", "{}", reply.text);
    ensure!(reply.structured["stderr"] == "", "{}", reply.text);
    Ok(())
}
