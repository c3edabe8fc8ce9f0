//! The guest runtime: one Python program, embedded here, that every backend runs.
//!
//! Backends start the interpreter with [`interpreter_args`]; the session engine then sends
//! [`RUNTIME_SOURCE`] as the first frame (see `docs/frames.md`).

/// The small program passed with `-c`: reads the runtime source frame from stdin and runs it.
pub const BOOTSTRAP_SOURCE: &str = include_str!("../guest/bootstrap.py");

/// The guest runtime itself.
pub const RUNTIME_SOURCE: &str = include_str!("../guest/runtime.py");

/// Arguments after the interpreter's name: isolated mode, then the bootstrap.
pub fn interpreter_args() -> [&'static str; 3] {
    ["-I", "-c", BOOTSTRAP_SOURCE]
}
