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

/// The bare handler; `{call}` is the `call_tool` rpc's params as JSON (`null`: no calls).
const HANDLER: &str = r##"
import gc
_bare_session = next(o for o in gc.get_objects() if type(o).__name__ == "Session" and hasattr(o, "_on_run"))
_bare_full = _bare_session._on_run
_bare_runs = [0]
_bare_runtime = type(_bare_session)._run.__globals__
_bare_call_params = _bare_runtime["decode_json"]({call!r})
_bare_quiet = ('{"type":"result","id":%d,"stdout":"","stderr":"","stdout_cut":0,"stderr_cut":0,'
               '"stdout_cut_at":null,"stderr_cut_at":null,"error":null,"duration_ms":0.0,'
               '"files":[],"stdout_saved":null,"stderr_saved":null}')
def _bare(frame, _session=_bare_session, _globals={}, _full=_bare_full, _runs=_bare_runs,
          _encode=_bare_runtime["encode_frame"], _parse=_bare_runtime["parse_frame"]):
    code = frame.get("code")
    if "action" in frame or "saved_tools" in frame:
        return _full(frame)
    if code == "pass":
        exec(compile(code, "<bare>", "exec"), _globals)
    elif code.startswith("# bare call\n") and _bare_call_params is not None:
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
            raise RuntimeError(f"the bare call failed: {answer['error']}")
    else:
        return _full(frame)
    _session._send((_bare_quiet % frame["id"]).encode())
    _runs[0] += 1
def _bare_off():
    _bare_session._on_run = _bare_full
    return _bare_runs[0]
_bare_session._on_run = _bare
"##;

/// Installs the bare handler in the session `bridge` talks to; `call` is the `call_tool`
/// params its [`BARE_CALL`] runs send (`{"server", "tool", "arguments"}`), if any.
pub(crate) async fn install(bridge: &Client, call: Option<&Value>) -> Result<()> {
    let call = serde_json::to_string(call.unwrap_or(&Value::Null))?;
    let code = HANDLER.replace("{call!r}", &python_string(&call));
    client::run_python_ok(bridge, json!({"code": code})).await?;
    Ok(())
}

/// Puts the real handler back; fails unless the bare one took at least `expected` runs.
pub(crate) async fn remove(bridge: &Client, expected: usize) -> Result<()> {
    let result = client::run_python_ok(bridge, json!({"code": "print(_bare_off())"})).await?;
    let stdout = client::stdout_of(&result);
    let taken: usize = stdout
        .trim()
        .parse()
        .with_context(|| format!("the bare handler's count: the guest printed {stdout:?}"))?;
    if taken < expected {
        bail!(
            "the bare run handler took {taken} of {expected} runs: the run frame carries more \
             now"
        );
    }
    Ok(())
}

/// `text` as a Python string literal (JSON's escapes are Python's, for the text JSON makes).
fn python_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::{HANDLER, python_string};

    #[test]
    fn the_call_params_reach_the_handler_as_a_python_string() {
        let params = r#"{"server":"time","tool":"now","arguments":{"tz":"UTC","on":true}}"#;
        let code = HANDLER.replace("{call!r}", &python_string(params));
        assert!(code.contains(
            r#"["decode_json"]("{\"server\":\"time\",\"tool\":\"now\",\"arguments\":{\"tz\":\"UTC\",\"on\":true}}")"#
        ));
    }
}
