//! Running an attack and judging it. Attack code calls `attempt(what, fn, *args)` for each
//! thing it tries: a step that raises prints `blocked <what> | <why>`, a step that returns
//! prints `BREACH <what> | <result>`. A test passes when no step got through, at least one
//! ran, and the server answers a follow-up call.

use std::fmt::Write as _;

use anyhow::{Result, ensure};
use serde_json::json;

use crate::support::{Reply, TestBackend, TestBridge};

/// Python put before every attack.
const PRELUDE: &str = r"
def report(what, error, result=None):
    if error is not None:
        print('blocked', what, '|', type(error).__name__, str(error)[:160], flush=True)
        return None
    print('BREACH', what, '|', repr(result)[:400], flush=True)
    return result

def attempt(what, fn, *args):
    try:
        result = fn(*args)
    except BaseException as e:
        return report(what, e)
    return report(what, None, result)

async def attempt_await(what, awaitable):
    try:
        result = await awaitable
    except BaseException as e:
        return report(what, e)
    return report(what, None, result)

def forge(payload, length=None):
    # Write a frame with the session's real marker straight to the protocol stream.
    import os
    marker = host_calls().writer._marker
    data = payload if isinstance(payload, bytes) else payload.encode()
    size = len(data) if length is None else length
    os.write(1, marker + size.to_bytes(4, 'big') + data)

try:
    import ctypes
except ImportError:  # WASI: no ctypes, so no syscalls of one's choosing at all
    class NoCtypes:
        def __getattr__(self, name):
            raise ImportError('no ctypes here')
    ctypes = NoCtypes()

def libc():
    return ctypes.CDLL(None, use_errno=True)

def link(target, path):
    # Make a symlink; a sandbox that refuses even that has blocked the attack early.
    import os
    try:
        os.symlink(target, path)
    except OSError as e:
        print('blocked symlink', repr(target), '|', e)

def checked(name, result):
    import os
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f'{name}: {os.strerror(errno)}')
    return result

def syscall(number, *args):
    return checked(f'syscall {number}', libc().syscall(number, *args))

def host_calls():
    # The runtime's own channel to the host, as hostile code can reach it.
    import mcp.runtime as runtime
    for cell in runtime.save_tool.__closure__ or ():
        if type(cell.cell_contents).__name__ == 'HostCalls':
            return cell.cell_contents
    raise LookupError('the runtime hides its host channel')
";

/// Limits that make bombs end fast.
pub(crate) const SMALL_CAPS: [(&str, &str); 3] = [
    ("MCP_BRIDGE_MEMORY", "128m"),
    ("MCP_BRIDGE_PIDS", "32"),
    ("MCP_BRIDGE_TIMEOUT", "10"),
];

/// A bridge with small caps (plus `env`) for one attack.
pub(crate) async fn bridge(b: &TestBackend, env: &[(&str, &str)]) -> Result<TestBridge> {
    let mut all: Vec<(&str, &str)> = SMALL_CAPS.to_vec();
    all.extend_from_slice(env);
    b.bridge_with(&all).await
}

/// Run attack `code` (after the prelude) in `session` with a deadline of `timeout` seconds.
pub(crate) async fn run_in(
    bridge: &TestBridge,
    session: &str,
    code: &str,
    timeout: u64,
) -> Result<Reply> {
    bridge
        .call(
            json!({"code": format!("{PRELUDE}\n{code}"), "session": session,
            "timeout": timeout}),
        )
        .await
}

/// Run attack `code` in the default session.
pub(crate) async fn run(bridge: &TestBridge, code: &str) -> Result<Reply> {
    run_in(bridge, "default", code, 10).await
}

/// Every step was blocked, at least one ran, and the server still serves.
pub(crate) fn check_blocked(reply: &Reply) -> Result<()> {
    let out = reply.stdout();
    let breaches: Vec<&str> = out.lines().filter(|l| l.starts_with("BREACH")).collect();
    ensure!(breaches.is_empty(), "the attack got through: {breaches:#?}");
    ensure!(
        out.lines().any(|l| l.starts_with("blocked")),
        "the attack did not run: {}",
        reply.text
    );
    Ok(())
}

/// Run attack `code` on a fresh small-capped bridge; every step must be blocked and the
/// server keep serving. Returns the reply for further checks.
pub(crate) async fn blocked(b: &TestBackend, code: &str) -> Result<Reply> {
    let bridge = bridge(b, &[]).await?;
    blocked_on(&bridge, code).await
}

/// [`blocked`] on a bridge the test started.
pub(crate) async fn blocked_on(bridge: &TestBridge, code: &str) -> Result<Reply> {
    let reply = run(bridge, code).await?;
    check_blocked(&reply)?;
    bridge.alive().await?;
    Ok(reply)
}

/// The run ended in an error (a Python exception, a deadline, a cap or a dead sandbox), not
/// in success, and the server still serves.
pub(crate) async fn stopped(bridge: &TestBridge, reply: &Reply) -> Result<()> {
    ensure!(
        reply.is_error,
        "the attack ran to completion: {}",
        reply.text
    );
    bridge.alive().await
}

/// `body` preceded by Python assignments of `vars` (name, Python literal).
pub(crate) fn with_vars(vars: &[(&str, String)], body: &str) -> String {
    let mut code = String::new();
    for (name, value) in vars {
        let _ = writeln!(code, "{name} = {value}");
    }
    code.push_str(body);
    code
}
