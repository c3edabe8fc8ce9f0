//! Leaks between sessions: each session is its own sandbox (its own container, or its own
//! WASI instance and scratch directory), within one bridge and across bridges.

use anyhow::{Result, ensure};
use serde_json::json;

use crate::attack::{bridge, check_blocked, run_in, with_vars};
use crate::host::unique_token;
use crate::support::{TestBackend, TestBridge};

/// Session `a` of `owner` plants `token` in files and a global.
async fn plant(owner: &TestBridge, token: &str) -> Result<()> {
    let code = with_vars(
        &[("TOKEN", serde_json::to_string(token)?)],
        r"
import os
SECRET = TOKEN
for d in ('/tmp', '/workspace', '/dev/shm'):
    try:
        with open(f'{d}/secret.txt', 'w') as f:
            f.write(TOKEN)
    except OSError:
        pass
print('planted')
",
    );
    let reply = run_in(owner, "a", &code, 10).await?;
    ensure!(reply.stdout().contains("planted"), "{}", reply.text);
    Ok(())
}

/// Session `b` of `thief` looks for what starts with `prefix` everywhere it can.
async fn steal(thief: &TestBridge, prefix: &str) -> Result<()> {
    let code = with_vars(
        &[("PREFIX", serde_json::to_string(prefix)?)],
        r"
import gc, glob, os, sys
def found(value):
    return isinstance(value, str) and value.startswith(PREFIX) and len(value) > len(PREFIX)
def read_files():
    hits = []
    for pattern in ('/tmp/*', '/workspace/*', '/dev/shm/*', '/proc/*/root/tmp/*',
                    '/proc/*/root/workspace/*', '/proc/*/cwd/*'):
        for path in glob.glob(pattern):
            try:
                if found(open(path).read()):
                    hits.append(path)
            except OSError:
                pass
    if hits:
        return hits
    raise FileNotFoundError('no file of the other session')
attempt('files', read_files)
attempt('global', lambda: SECRET)
def scan_objects():
    hits = [o for o in gc.get_objects() if found(o)]
    hits += [v for m in list(sys.modules.values()) for v in vars(m).values() if found(v)]
    if hits:
        return hits
    raise LookupError('no object of the other session')
attempt('objects', scan_objects)
def other_processes():
    mine = {os.getpid(), os.getppid(), 1}
    others = []
    for pid in os.listdir('/proc'):
        if pid.isdigit() and int(pid) not in mine:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read()
            if b'mcp' in cmd or b'python' in cmd:
                others.append((pid, cmd[:80]))
    if others:
        return others
    raise LookupError('no process of another session')
attempt('processes', other_processes)
",
    );
    let reply = run_in(thief, "b", &code, 10).await?;
    check_blocked(&reply)?;
    thief.alive().await
}

pub(crate) async fn attack_files_of_another_session(b: &TestBackend) -> Result<()> {
    let bridge = bridge(b, &[]).await?;
    let token = unique_token("session-file");
    plant(&bridge, &token).await?;
    steal(&bridge, "adv-session-file-").await
}

pub(crate) async fn attack_globals_of_another_session(b: &TestBackend) -> Result<()> {
    let bridge = bridge(b, &[]).await?;
    let token = unique_token("session-global");
    plant(&bridge, &token).await?;
    steal(&bridge, "adv-session-global-").await?;
    // The owner still has it.
    let reply = run_in(&bridge, "a", "print(SECRET)", 10).await?;
    ensure!(reply.stdout().trim() == token, "{}", reply.text);
    Ok(())
}

pub(crate) async fn attack_kill_another_session(b: &TestBackend) -> Result<()> {
    let bridge = bridge(b, &[]).await?;
    let token = unique_token("session-kill");
    plant(&bridge, &token).await?;
    let reply = bridge
        .call(json!({"session": "b", "timeout": 10, "code": r"
import os, signal
try:
    os.kill(-1, signal.SIGKILL)
    for pid in range(2, 4096):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    print('signalled everything in reach')
except (AttributeError, OSError) as e:
    print('blocked', e)
"}))
        .await?;
    ensure!(
        reply.stdout().contains("signalled") || reply.stdout().contains("blocked"),
        "{}",
        reply.text
    );
    let owner = run_in(&bridge, "a", "print(SECRET)", 10).await?;
    ensure!(
        owner.stdout().trim() == token,
        "session b's kill reached session a: {}",
        owner.text
    );
    bridge.alive().await
}

pub(crate) async fn attack_across_bridges(b: &TestBackend) -> Result<()> {
    let first = bridge(b, &[]).await?;
    let second = bridge(b, &[]).await?;
    let token = unique_token("bridge");
    plant(&first, &token).await?;
    steal(&second, "adv-bridge-").await?;
    first.alive().await
}
