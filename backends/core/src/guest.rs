//! The guest runtime: one Python program, kept as parts in `guest/runtime/` and embedded
//! here joined, that every backend runs.
//!
//! Backends start the interpreter with [`interpreter_args`]; the session engine then sends
//! [`RUNTIME_SOURCE`] as the first frame (see `docs/frames.md`).

/// The small program passed with `-c`: reads the runtime frame (source or bytecode) from
/// stdin and runs it.
pub const BOOTSTRAP_SOURCE: &str = include_str!("../guest/bootstrap.py");

/// The guest runtime itself: the parts in `guest/runtime/`, joined by `build.rs` in the order
/// `guest/runtime/ORDER` lists them into one module (one namespace, one file name when
/// compiled: `<mcp-runtime>`).
pub const RUNTIME_SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/runtime.py"));

/// Memory the bootstrap's `--init` (the interpreter's forked parent, PID 1 of a container)
/// keeps beside the interpreter. Container backends set the per-process data limit this far
/// below the memory cap, so a memory bomb in the interpreter gets a `MemoryError` before the
/// cgroup's OOM killer ends the sandbox.
pub const INIT_HEADROOM_BYTES: u64 = 12 << 20;

/// Arguments after the interpreter's name: isolated mode, no `site`, then the bootstrap.
pub fn interpreter_args() -> [&'static str; 4] {
    ["-I", "-S", "-c", BOOTSTRAP_SOURCE]
}

/// The program that compiles the runtime: reads its source from stdin and writes
/// `marshal.dumps` of the code object to stdout. Run it in a fresh interpreter that runs
/// nothing else; the output is what [`crate::Sandbox::compiled_runtime`] returns.
pub const COMPILE_RUNTIME_SOURCE: &str = "import sys, marshal\n\
    sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.buffer.read().decode(), \
    '<mcp-runtime>', 'exec')))";

/// The first frame's payload: the runtime as bytecode (`M` + marshal) when the backend has
/// it compiled, else as source (`S` + UTF-8).
pub fn runtime_payload(compiled: Option<&[u8]>) -> Vec<u8> {
    match compiled {
        Some(bytecode) => [b"M".as_slice(), bytecode].concat(),
        None => [b"S".as_slice(), RUNTIME_SOURCE.as_bytes()].concat(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use serde_json::Value;

    use super::*;
    use crate::frame::{FRAME_CEILING, FRAME_SLACK, NONCE_LEN, Nonce};
    use crate::rpc::MAX_CALLS_IN_FLIGHT;

    /// Runs the host's `python3 -I -S` with `args` and `input` on stdin, and returns its
    /// stdout; `None`, after saying so, when there is no `python3`.
    fn python3(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
        let Ok(mut child) = Command::new("python3")
            .args(["-I", "-S"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            #[allow(clippy::print_stderr, reason = "the skip must be loud")]
            {
                eprintln!("SKIP: no python3 on PATH");
            }
            return None;
        };
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input)
            .expect("python3 reads its stdin");
        let output = child.wait_with_output().expect("python3 runs");
        assert!(
            output.status.success(),
            "python3 {args:?}: {}",
            output.status
        );
        Some(output.stdout)
    }

    #[test]
    fn python_tests_join_the_runtime_as_the_build_does() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/guest/join_runtime.py");
        let Some(joined) = python3(&[script], b"") else {
            return;
        };
        assert!(
            joined == RUNTIME_SOURCE.as_bytes(),
            "guest/join_runtime.py and build.rs join the runtime's parts differently"
        );
    }

    /// Evaluates the runtime (without starting it) and reads its module-level `names`:
    /// integers as numbers, bytes as lists of numbers, sets of characters as sorted strings.
    fn runtime_constants(names: &[&str]) -> Option<Value> {
        const READ_CONSTANTS: &str = "import json, sys\n\
            runtime = {'__name__': '__mcp_runtime__'}\n\
            exec(compile(sys.stdin.buffer.read().decode(), '<mcp-runtime>', 'exec'), runtime)\n\
            def plain(value):\n    \
                if isinstance(value, bytes):\n        return list(value)\n    \
                if isinstance(value, frozenset):\n        return ''.join(sorted(value))\n    \
                return value\n\
            print(json.dumps({name: plain(runtime[name]) for name in sys.argv[1:]}))";
        let args: Vec<&str> = ["-c", READ_CONSTANTS]
            .iter()
            .chain(names)
            .copied()
            .collect();
        let stdout = python3(&args, RUNTIME_SOURCE.as_bytes())?;
        Some(serde_json::from_slice(&stdout).expect("the program prints JSON"))
    }

    #[test]
    fn runtime_protocol_constants_match_the_host() {
        let Some(python) = runtime_constants(&[
            "NONCE_LENGTH",
            "NONCE_DIGITS",
            "MARKER_PREFIX",
            "MARKER_SUFFIX",
            "FRAME_CAP_SLACK",
            "FRAME_CAP_CEILING",
            "MAX_IN_FLIGHT",
        ]) else {
            return;
        };
        let number = |name: &str| {
            usize::try_from(python[name].as_u64().expect("an integer")).expect("fits usize")
        };
        let bytes = |name: &str| -> Vec<u8> {
            serde_json::from_value(python[name].clone()).expect("a list of bytes")
        };
        for (guest, host, value) in [
            ("NONCE_LENGTH", "frame::NONCE_LEN", NONCE_LEN),
            ("FRAME_CAP_SLACK", "frame::FRAME_SLACK", FRAME_SLACK),
            ("FRAME_CAP_CEILING", "frame::FRAME_CEILING", FRAME_CEILING),
            (
                "MAX_IN_FLIGHT",
                "rpc::MAX_CALLS_IN_FLIGHT",
                MAX_CALLS_IN_FLIGHT,
            ),
        ] {
            assert_eq!(
                number(guest),
                value,
                "the runtime's {guest} differs from {host}"
            );
        }
        let nonce = Nonce::random();
        let digits = python["NONCE_DIGITS"].as_str().expect("a string");
        assert!(
            nonce.as_str().chars().all(|c| digits.contains(c)),
            "{nonce:?}"
        );
        let guest_marker = [
            bytes("MARKER_PREFIX"),
            nonce.as_str().as_bytes().to_vec(),
            bytes("MARKER_SUFFIX"),
        ]
        .concat();
        assert_eq!(
            guest_marker,
            nonce.marker(),
            "the runtime's MARKER_PREFIX + nonce + MARKER_SUFFIX differs from Nonce::marker"
        );
    }
}
