//! A bare guest: the session's run handler swapped for one that does only what any guest
//! runtime must, so that `bench floor` and `bench proxy` can show how much of a call is our
//! runtime's own and how much the transport and the interpreter cost whatever runs there.
//!
//! The bare handler takes two runs and leaves every other to the real one:
//! - `pass`: it compiles and execs the code and sends a fixed quiet result (no output
//!   capture, no result assembly, no check of the output directory, no event loop);
//! - code that starts with [`BARE_CALL`]: it compiles the code (top-level `await` allowed,
//!   as any runtime must before it can run it), then, instead of running it, sends one
//!   `call_tool` rpc frame, reads frames until its answer, and sends the same fixed result
//!   (no proxy object, no coroutine, no event loop).
//!
//! It counts the runs it took, so a bench can tell when a change in the run frame made the
//! real handler take them instead. It reaches the runtime's `Session` the way
//! `benches/guest_profile.py` does.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{self, Client};

/// The first line of a run's code that the bare handler answers with one proxied call.
pub(crate) const BARE_CALL: &str = "# bare call\n";

/// The bare handler. `{call!r}` is filled with the `call_tool` rpc's params as JSON, in a
/// Python string (`null`: no calls), `{bare_call!r}` with [`BARE_CALL`] the same way. A
/// call that fails is answered all the same and noted in `_bare_failures`.
const HANDLER: &str = r#"
import gc
_bare_session = next(o for o in gc.get_objects() if type(o).__name__ == "Session" and hasattr(o, "_on_run"))
_bare_full = _bare_session._on_run
_bare_runs = [0]
_bare_failures = []
_bare_runtime = type(_bare_session)._run.__globals__
_bare_call_params = _bare_runtime["decode_json"]({call!r})
_bare_quiet = ('{"type":"result","id":%d,"stdout":"","stderr":"","stdout_cut":0,"stderr_cut":0,'
               '"stdout_cut_at":null,"stderr_cut_at":null,"error":null,"duration_ms":0.0,'
               '"files":[],"stdout_saved":null,"stderr_saved":null}')
def _bare(frame, _session=_bare_session, _globals={}, _full=_bare_full, _runs=_bare_runs,
          _encode=_bare_runtime["encode_frame"], _parse=_bare_runtime["parse_frame"],
          _prefix={bare_call!r}):
    code = frame.get("code")
    if "action" in frame or "saved_tools" in frame or not isinstance(code, str):
        return _full(frame)
    if code == "pass":
        exec(compile(code, "<bare>", "exec"), _globals)
    elif code.startswith(_prefix) and _bare_call_params is not None:
        compile(code, "<bare>", "exec", flags=0x2000, dont_inherit=True)  # PyCF_ALLOW_TOP_LEVEL_AWAIT
        calls = _session.calls
        call_id = calls.last_id = calls.last_id + 1
        _session._send(_encode({"type": "rpc", "id": call_id, "run": frame["id"],
                                "method": "call_tool", "params": _bare_call_params}))
        while True:
            answer = _parse(_session._reader.read())
            if answer.get("type") == "rpc_result" and answer.get("id") == call_id:
                break
            calls.deferred.append(answer)
        if answer.get("error") is not None:
            _bare_failures.append(repr(answer["error"])[:500])
    else:
        return _full(frame)
    _session._send((_bare_quiet % frame["id"]).encode())
    _runs[0] += 1
def _bare_off():
    _bare_session._on_run = _bare_full
    return _bare_runs[0], _bare_failures[:1]
_bare_session._on_run = _bare
"#;

/// Installs the bare handler in the session `bridge` talks to; `call` is the `call_tool`
/// params its [`BARE_CALL`] runs send (`{"server", "tool", "arguments"}`), if any.
pub(crate) async fn install(bridge: &Client, call: Option<&Value>) -> Result<()> {
    let code = handler(call)?;
    client::run_python_ok(bridge, json!({"code": code})).await?;
    Ok(())
}

/// [`HANDLER`] with `call` (the params of the calls it makes, if any) filled in.
fn handler(call: Option<&Value>) -> Result<String> {
    let call = serde_json::to_string(call.unwrap_or(&Value::Null))?;
    Ok(HANDLER
        .replace("{call!r}", &python_string(&call))
        .replace("{bare_call!r}", &python_string(BARE_CALL)))
}

/// Puts the real handler back; fails unless the bare one took at least `expected` runs and
/// every call it made succeeded.
pub(crate) async fn remove(bridge: &Client, expected: usize) -> Result<()> {
    let code = "taken, failed = _bare_off()\nprint(taken)\nprint(*failed)";
    let result = client::run_python_ok(bridge, json!({ "code": code })).await?;
    let stdout = client::stdout_of(&result);
    let (taken, failed) = stdout.split_once('\n').unwrap_or((&stdout, ""));
    let taken: usize = taken
        .trim()
        .parse()
        .with_context(|| format!("the bare handler's count: the guest printed {stdout:?}"))?;
    if !failed.trim().is_empty() {
        bail!("a bare guest's call failed: {}", failed.trim());
    }
    if taken < expected {
        bail!(
            "the bare run handler took {taken} of {expected} runs: the run frame carries more \
             now"
        );
    }
    Ok(())
}

/// `text` as a Python string literal (JSON's escapes are Python's, for the text JSON makes).
pub(crate) fn python_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::handler;

    #[test]
    fn the_call_params_and_the_prefix_reach_the_handler_as_python_strings() {
        let params = json!({"server": "time", "tool": "now", "arguments": {"on": true}});
        let code = handler(Some(&params)).expect("a handler");
        assert!(code.contains(
            r#"["decode_json"]("{\"server\":\"time\",\"tool\":\"now\",\"arguments\":{\"on\":true}}")"#
        ));
        assert!(code.contains(r##"_prefix="# bare call\n"):"##));
        assert!(!code.contains("!r}"));
        let code = handler(None).expect("a handler");
        assert!(code.contains(r#"["decode_json"]("null")"#));
    }
}
