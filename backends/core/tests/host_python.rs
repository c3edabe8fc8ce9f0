//! The session engine against the real guest runtime, run by the host's own `python3` as a
//! plain child process. This is not an isolation backend (nothing is sandboxed); it lets the
//! engine's paths that WASI cannot reach be tested for real: the soft interrupt (SIGINT), a
//! guest that ignores it, a guest that exits, and a guest that forges frames.

use std::sync::Arc;
use std::time::Duration;

use sandbox_core::host_python::HostPython;
use sandbox_core::{NoCalls, RunRequest, RunStatus, Sandbox, SandboxSpec, Session, SessionConfig};

fn config() -> SessionConfig {
    SessionConfig {
        interrupt_grace: Duration::from_millis(500),
        ..SessionConfig::default()
    }
}

async fn session() -> Option<Session> {
    if !HostPython.probe().await.is_available() {
        #[allow(clippy::print_stderr, reason = "the skip must be loud")]
        {
            eprintln!("SKIP host-python: no python3 on PATH");
        }
        return None;
    }
    Some(
        Session::start(&HostPython, &SandboxSpec::default(), &config())
            .await
            .expect("starts"),
    )
}

/// Python that finds the session's frame marker (user code can: it lives in the same
/// interpreter) and binds it to `marker`, with `os` and `json` imported.
const FIND_MARKER: &str = r"import gc, os, json
def attributes(o):
    try:
        yield from vars(o).values()
    except TypeError:
        pass
    for name in getattr(type(o), '__slots__', ()):
        try:
            yield getattr(o, name)
        except Exception:
            pass
marker = next(v for o in gc.get_objects() for v in attributes(o)
              if isinstance(v, bytes) and v.startswith(b'\x00\x1bMCPB') and len(v) == 39)";

fn run(code: &str, timeout_ms: u64) -> RunRequest {
    RunRequest::code(code, Duration::from_millis(timeout_ms))
}

#[tokio::test]
async fn a_soft_interrupt_keeps_the_session_state() {
    let Some(session) = session().await else {
        return;
    };
    assert!(
        !session
            .run(&run("kept = 42", 5000), Arc::new(NoCalls))
            .await
            .is_error()
    );
    let outcome = session
        .run(&run("while True:\n    pass", 300), Arc::new(NoCalls))
        .await;
    assert_eq!(outcome.status, RunStatus::TimedOut { state_lost: false });
    assert_eq!(
        outcome.error.as_ref().map(|e| e.kind.as_str()),
        Some("KeyboardInterrupt")
    );
    let after = session
        .run(&run("print(kept)", 5000), Arc::new(NoCalls))
        .await;
    assert_eq!(after.stdout.text, "42\n");
    assert!(session.is_alive());
}

#[tokio::test]
async fn a_guest_that_ignores_the_interrupt_is_killed() {
    let Some(session) = session().await else {
        return;
    };
    let code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass";
    let outcome = session.run(&run(code, 300), Arc::new(NoCalls)).await;
    assert_eq!(outcome.status, RunStatus::TimedOut { state_lost: true });
    assert!(!session.is_alive());
    let after = session.run(&run("print(1)", 5000), Arc::new(NoCalls)).await;
    assert!(matches!(after.status, RunStatus::SandboxFailed { .. }));
}

#[tokio::test]
async fn a_guest_that_exits_mid_run_ends_the_session_with_a_reason() {
    let Some(session) = session().await else {
        return;
    };
    let outcome = session
        .run(&run("import os\nos._exit(7)", 5000), Arc::new(NoCalls))
        .await;
    let RunStatus::SandboxFailed { reason } = &outcome.status else {
        panic!("{:?}", outcome.status)
    };
    assert!(reason.contains("status 7"), "{reason}");
    assert!(outcome.state_lost());
}

#[tokio::test]
async fn a_forged_frame_with_the_real_nonce_ends_only_that_session() {
    let Some(session) = session().await else {
        return;
    };
    // User code can find the nonce (it lives in the same interpreter); a frame it forges is
    // validated like any other: a result for another run is a protocol violation.
    let code = format!(
        "{FIND_MARKER}
body = json.dumps({{'type': 'result', 'id': 999, 'stdout': '', 'stderr': '', 'error': None}})
os.write(1, marker + len(body).to_bytes(4, 'big') + body.encode())
import time; time.sleep(5)"
    );
    let outcome = session.run(&run(&code, 10_000), Arc::new(NoCalls)).await;
    let RunStatus::SandboxFailed { reason } = &outcome.status else {
        panic!("{:?} {:?}", outcome.status, outcome.error)
    };
    assert!(reason.contains("protocol"), "{reason}");
    assert!(!session.is_alive());
}

#[tokio::test]
async fn output_written_with_a_malformed_frame_is_kept() {
    let Some(session) = session().await else {
        return;
    };
    // Found by the guest_frames fuzz target: bytes written in the same write as a frame that
    // breaks the protocol were dropped with the session, unlike bytes written just before.
    let code = format!(
        "{FIND_MARKER}
os.write(1, b'last words' + marker + (8).to_bytes(4, 'big') + b'not json')
import time; time.sleep(5)"
    );
    let outcome = session.run(&run(&code, 10_000), Arc::new(NoCalls)).await;
    let RunStatus::SandboxFailed { reason } = &outcome.status else {
        panic!("{:?} {:?}", outcome.status, outcome.error)
    };
    assert!(reason.contains("protocol"), "{reason}");
    assert!(
        outcome.stdout.text.contains("last words"),
        "{:?}",
        outcome.stdout
    );
}

#[tokio::test]
async fn output_beyond_the_cap_is_cut_on_the_host_too() {
    let Some(session) = session().await else {
        return;
    };
    let outcome = session
        .run(
            &run("import os\nos.write(1, b'x' * 500_000)", 5000),
            Arc::new(NoCalls),
        )
        .await;
    assert!(!outcome.is_error(), "{:?}", outcome.status);
    assert_eq!(outcome.stdout.text.len(), 64 * 1024);
    assert_eq!(outcome.stdout.cut_bytes(), 500_000 - 64 * 1024);
}

#[tokio::test]
async fn a_cancelled_run_is_interrupted_and_the_session_kept() {
    let Some(session) = session().await else {
        return;
    };
    assert!(
        !session
            .run(&run("kept = 7", 5000), Arc::new(NoCalls))
            .await
            .is_error()
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut request = run("while True:\n    pass", 60_000);
    request.cancel = Some(cancel.clone());
    let trigger = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let outcome = session.run(&request, Arc::new(NoCalls)).await;
    trigger.await.unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled { state_lost: false });
    let after = session
        .run(&run("print(kept)", 5000), Arc::new(NoCalls))
        .await;
    assert_eq!(after.stdout.text, "7\n");
}

/// A host that panics on every call.
#[derive(Debug)]
struct PanickingHost;

#[async_trait::async_trait]
impl sandbox_core::RpcHandler for PanickingHost {
    async fn call(
        &self,
        method: &str,
        _params: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, sandbox_core::RpcError> {
        panic!("a bug in the handler of `{method}`");
    }
}

#[tokio::test]
async fn a_handler_that_panics_fails_only_its_call() {
    let Some(session) = session().await else {
        return;
    };
    let code =
        "try:\n    save_memory('k', 1)\nexcept Exception as e:\n    print(type(e).__name__, e)";
    let outcome = session.run(&run(code, 5000), Arc::new(PanickingHost)).await;
    assert!(!outcome.is_error(), "{outcome:?}");
    assert!(
        outcome.stdout.text.starts_with("MCPError") && outcome.stdout.text.contains("panicked"),
        "{:?}",
        outcome.stdout.text
    );
    let after = session
        .run(&run("print('alive')", 5000), Arc::new(NoCalls))
        .await;
    assert_eq!(after.stdout.text, "alive\n");
}
