//! Durable sessions: a named session outlives the bridge that ran it (closed stdin, SIGTERM,
//! SIGKILL after an idle save), comes back in the same process after the idle reaper or a
//! suspension, forks, names what it could not save, and survives a bad checkpoint file as a
//! fresh session with a notice.

use std::fmt::Write as _;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{
    Ending, RawBridge, TestBackend, bridge_cli, suite_state_dir, unique_client_name,
};

/// Code that builds up a session: a variable, a function, a class and an instance of it, an
/// imported module and a file under /workspace.
const BUILD_UP: &str = "\
import json
rows = [{'n': i, 'sq': i * i} for i in range(50)]
def total(key):
    return sum(r[key] for r in rows)
class Box:
    def __init__(self, w, h):
        self.w, self.h = w, h
    def area(self):
        return self.w * self.h
box = Box(3, 4)
open('/workspace/notes.txt', 'w').write('kept on disk')
print('built')";

/// Code that checks all of it is there, printing one line.
const CHECK: &str = "\
print(total('sq'), box.area(), isinstance(box, Box), json.dumps([1]),
      open('/workspace/notes.txt').read())";

/// What `CHECK` prints when everything came back.
const CHECKED: &str = "40425 12 True [1] kept on disk\n";

/// The reply's structured result.
fn structured(reply: &Value) -> &Value {
    &reply["result"]["structuredContent"]
}

fn stdout(reply: &Value) -> &str {
    structured(reply)["stdout"].as_str().unwrap_or_default()
}

fn notice(reply: &Value) -> &str {
    structured(reply)["notice"].as_str().unwrap_or_default()
}

/// A bridge on `b` initialised as `client`, with extra environment.
async fn bridge_as(b: &TestBackend, client: &str, env: &[(&str, &str)]) -> Result<RawBridge> {
    let mut bridge = RawBridge::start_with(b, env)?;
    bridge.initialize_as(client).await?;
    Ok(bridge)
}

/// Build a session as `client`, end the bridge `how`, and check a new bridge gives it back.
async fn survives(b: &TestBackend, how: Ending) -> Result<()> {
    let client = unique_client_name();
    let mut first = bridge_as(b, &client, &[]).await?;
    let built = first.run(1, BUILD_UP).await?;
    ensure!(stdout(&built) == "built\n", "{built}");
    first.finish(how).await?;

    let mut second = bridge_as(b, &client, &[]).await?;
    let reply = second.run(1, CHECK).await?;
    ensure!(
        stdout(&reply) == CHECKED,
        "not restored after {how:?}: {reply}"
    );
    let restored = &structured(&reply)["restored"];
    ensure!(
        restored["names"]
            .as_array()
            .is_some_and(|names| names.contains(&json!("box")) && names.contains(&json!("total"))),
        "{reply}"
    );
    ensure!(
        notice(&reply).contains("restored from its checkpoint of"),
        "the reply should say it was restored, and from when: {reply}"
    );
    // Only the first reply says so.
    let again = second.run(2, "print(1)").await?;
    ensure!(structured(&again).get("restored").is_none(), "{again}");
    second.finish(Ending::CloseStdin).await?;
    Ok(())
}

pub(crate) async fn a_session_survives_the_client_closing_stdin(b: &TestBackend) -> Result<()> {
    survives(b, Ending::CloseStdin).await
}

pub(crate) async fn a_session_survives_sigterm(b: &TestBackend) -> Result<()> {
    survives(b, Ending::Signal(Signal::SIGTERM)).await
}

pub(crate) async fn an_idle_save_survives_sigkill_and_the_reaper(b: &TestBackend) -> Result<()> {
    let client = unique_client_name();
    let idle = [("MCP_BRIDGE_RUNTIME_IDLE_TIMEOUT", "1s")];
    let mut first = bridge_as(b, &client, &idle).await?;
    first.run(1, BUILD_UP).await?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // Reaped and saved: the same bridge resumes it.
    let resumed = first.run(2, CHECK).await?;
    ensure!(
        stdout(&resumed) == CHECKED,
        "not resumed after the reaper: {resumed}"
    );
    ensure!(structured(&resumed)["restored"].is_object(), "{resumed}");
    first.run(3, "rows.append({'n': 50, 'sq': 2500})").await?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // Saved again when reaped again; then the bridge is killed outright.
    first.finish(Ending::Signal(Signal::SIGKILL)).await?;
    let mut second = bridge_as(b, &client, &[]).await?;
    let reply = second.run(1, "print(total('sq'))").await?;
    ensure!(
        stdout(&reply) == "42925\n",
        "the idle save was lost: {reply}"
    );
    second.finish(Ending::CloseStdin).await?;
    Ok(())
}

pub(crate) async fn a_fork_is_a_copy_the_original_never_sees(b: &TestBackend) -> Result<()> {
    let mut bridge = bridge_as(b, &unique_client_name(), &[]).await?;
    bridge.run(1, BUILD_UP).await?;
    let forked = bridge
        .run(
            2,
            "import mcp.runtime as rt\ninfo = rt.fork_session('trial')\n\
             print(info['session'], info['bytes'] > 0)",
        )
        .await?;
    ensure!(stdout(&forked) == "trial True\n", "{forked}");
    let changed = bridge
        .call(
            3,
            json!({"session": "trial", "code": "rows.clear()\nbox.w = 10\nprint(total('sq'), box.area())"}),
        )
        .await?;
    ensure!(
        stdout(&changed) == "0 40\n",
        "the fork did not start from the copy: {changed}"
    );
    ensure!(
        structured(&changed)["restored"].is_object(),
        "the fork's first reply should say where it came from: {changed}"
    );
    let original = bridge.run(4, CHECK).await?;
    ensure!(
        stdout(&original) == CHECKED,
        "the fork changed the original: {original}"
    );
    bridge.finish(Ending::CloseStdin).await?;
    Ok(())
}

pub(crate) async fn unsaveable_names_are_listed(b: &TestBackend) -> Result<()> {
    let client = unique_client_name();
    let mut first = bridge_as(b, &client, &[]).await?;
    let reply = first
        .run(
            1,
            "import threading\nkept = 1\nhandle = open('/workspace/log.txt', 'w')\n\
             gen = (i for i in range(3))\nlock = threading.Lock()\n\
             import mcp.runtime as rt\nfor line in rt.checkpoint()['unsaveable']:\n    print(line)",
        )
        .await?;
    let out = stdout(&reply);
    for name in ["handle: an open file", "gen: ", "lock: "] {
        ensure!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} is not listed: {reply}"
        );
    }
    first.finish(Ending::CloseStdin).await?;
    let mut second = bridge_as(b, &client, &[]).await?;
    let reply = second.run(1, "print(kept, 'handle' in globals())").await?;
    ensure!(stdout(&reply) == "1 False\n", "{reply}");
    ensure!(notice(&reply).contains("Not saved then: "), "{reply}");
    ensure!(notice(&reply).contains("handle: an open file"), "{reply}");
    second.finish(Ending::CloseStdin).await?;
    Ok(())
}

/// The file holding `client`'s checkpoint of `session` (stdio).
fn checkpoint_file(b: &TestBackend, client: &str, session: &str) -> std::path::PathBuf {
    let digest = Sha256::digest(format!("stdio:{client}").as_bytes());
    let scope = digest.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    });
    suite_state_dir(b)
        .join("checkpoints")
        .join(scope)
        .join(format!("{session}.ckpt"))
}

pub(crate) async fn a_bad_checkpoint_gives_a_fresh_session_with_a_notice(
    b: &TestBackend,
) -> Result<()> {
    for damage in ["truncated", "garbage"] {
        let client = unique_client_name();
        let mut first = bridge_as(b, &client, &[]).await?;
        first.run(1, BUILD_UP).await?;
        first.finish(Ending::CloseStdin).await?;
        let file = checkpoint_file(b, &client, "default");
        let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
        let damaged = match damage {
            "truncated" => bytes[..bytes.len() / 2].to_vec(),
            _ => b"\x80\x05not a checkpoint at all".repeat(1000),
        };
        std::fs::write(&file, damaged)?;
        let mut second = bridge_as(b, &client, &[]).await?;
        let reply = second.run(1, "print('rows' in globals())").await?;
        ensure!(stdout(&reply) == "False\n", "{damage}: {reply}");
        ensure!(
            notice(&reply).contains("could not be restored"),
            "{damage}: the reply should say why the session is fresh: {reply}"
        );
        let alive = second.run(2, "print('alive')").await?;
        ensure!(stdout(&alive) == "alive\n", "{damage}: {alive}");
        second.finish(Ending::CloseStdin).await?;
    }
    Ok(())
}

pub(crate) async fn reset_discards_the_checkpoint(b: &TestBackend) -> Result<()> {
    let client = unique_client_name();
    let mut first = bridge_as(b, &client, &[]).await?;
    first.run(1, BUILD_UP).await?;
    first.finish(Ending::CloseStdin).await?;
    let mut second = bridge_as(b, &client, &[]).await?;
    let reply = second
        .call(
            1,
            json!({"code": "print('rows' in globals())", "reset": true}),
        )
        .await?;
    ensure!(stdout(&reply) == "False\n", "{reply}");
    ensure!(
        !checkpoint_file(b, &client, "default").exists(),
        "reset should have removed the checkpoint"
    );
    second.finish(Ending::CloseStdin).await?;
    let mut third = bridge_as(b, &client, &[]).await?;
    let reply = third.run(1, "print('rows' in globals())").await?;
    ensure!(
        stdout(&reply) == "False\n",
        "the reset session came back: {reply}"
    );
    third.finish(Ending::CloseStdin).await?;
    Ok(())
}

pub(crate) async fn idle_sessions_are_suspended_to_make_room(b: &TestBackend) -> Result<()> {
    let mut bridge = bridge_as(
        b,
        &unique_client_name(),
        &[("MCP_BRIDGE_MAX_SESSIONS", "2")],
    )
    .await?;
    for (id, session) in [(1, "a"), (2, "b"), (3, "c")] {
        let reply = bridge
            .call(
                id,
                json!({"session": session, "code": format!("mine = '{session}'\nprint(mine)")}),
            )
            .await?;
        ensure!(
            stdout(&reply) == format!("{session}\n"),
            "session {session} should start, suspending the least recently used: {reply}"
        );
    }
    // `a` was suspended for `c`; it comes back as it was (suspending `b`).
    let reply = bridge
        .call(4, json!({"session": "a", "code": "print(mine)"}))
        .await?;
    ensure!(stdout(&reply) == "a\n", "{reply}");
    ensure!(structured(&reply)["restored"].is_object(), "{reply}");
    bridge.finish(Ending::CloseStdin).await?;
    Ok(())
}

/// The lines of `sessions` that name `client`'s session `session`, under the heading that
/// starts with `heading`.
async fn listed(
    b: &TestBackend,
    heading: &str,
    client: &str,
    session: &str,
) -> Result<Vec<String>> {
    let output = bridge_cli(b, &["sessions"]).await?;
    ensure!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut under = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            under = line.starts_with(heading);
        } else if under && line.contains(client) && line.contains(session) {
            lines.push(line.to_string());
        }
    }
    Ok(lines)
}

pub(crate) async fn live_and_saved_sessions_are_listed_with_their_sizes(
    b: &TestBackend,
) -> Result<()> {
    let client = unique_client_name();
    let mut bridge = bridge_as(b, &client, &[]).await?;
    bridge
        .call(
            1,
            json!({"session": "listed", "code": "rows = list(range(100_000))"}),
        )
        .await?;
    let live = listed(b, "Live sessions", &client, "listed").await?;
    ensure!(
        live.len() == 1,
        "the live session is not listed once: {live:?}"
    );
    bridge.finish(Ending::CloseStdin).await?;
    let saved = listed(b, "Saved sessions", &client, "listed").await?;
    ensure!(
        saved.len() == 1,
        "the saved session is not listed once: {saved:?}"
    );
    ensure!(saved[0].contains(" MB, saved "), "no size: {saved:?}");
    ensure!(saved[0].contains("1 names"), "{saved:?}");
    let gone = listed(b, "Live sessions", &client, "listed").await?;
    ensure!(
        gone.is_empty(),
        "a stopped bridge's session is still live: {gone:?}"
    );
    Ok(())
}

pub(crate) async fn a_checkpoint_over_the_cap_is_refused_with_its_size(
    b: &TestBackend,
) -> Result<()> {
    let client = unique_client_name();
    let cap = [("MCP_BRIDGE_CHECKPOINT_LIMIT", "1m")];
    let mut bridge = bridge_as(b, &client, &cap).await?;
    let small = bridge
        .run(
            1,
            "kept = 'x' * 1000\nimport mcp.runtime as r\nprint(r.checkpoint()['bytes'] < 2**20)",
        )
        .await?;
    ensure!(
        stdout(&small) == "True\n",
        "a small session fits under 1 MiB: {small}"
    );
    let big = bridge
        .run(
            2,
            "import mcp.runtime as r\nblob = bytes(3 * 2**20)\ntry:\n    r.checkpoint()\n\
             except r.MCPError as e:\n    print(e.kind, e)",
        )
        .await?;
    let out = stdout(&big);
    ensure!(out.starts_with("too_large "), "{big}");
    ensure!(out.contains("bytes a checkpoint may hold"), "{big}");
    ensure!(out.contains("MCP_BRIDGE_CHECKPOINT_LIMIT"), "{big}");
    bridge.finish(Ending::CloseStdin).await?;
    // The session was too large to save at exit too: the next bridge has the smaller one.
    let mut next = bridge_as(b, &client, &cap).await?;
    let reply = next.run(1, "print(len(kept), 'blob' in globals())").await?;
    ensure!(stdout(&reply) == "1000 False\n", "{reply}");
    next.finish(Ending::CloseStdin).await?;
    Ok(())
}
