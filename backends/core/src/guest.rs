//! The guest runtime: one Python program, embedded here, that every backend runs.
//!
//! Backends start the interpreter with [`interpreter_args`]; the session engine then sends
//! [`RUNTIME_SOURCE`] as the first frame (see `docs/frames.md`).

/// The small program passed with `-c`: reads the runtime frame (source or bytecode) from
/// stdin and runs it.
pub const BOOTSTRAP_SOURCE: &str = include_str!("../guest/bootstrap.py");

/// The guest runtime itself.
pub const RUNTIME_SOURCE: &str = include_str!("../guest/runtime.py");

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
