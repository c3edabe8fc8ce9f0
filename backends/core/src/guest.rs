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

    use super::*;

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
}
