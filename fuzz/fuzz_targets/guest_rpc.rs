//! The guest's calls to the host: an `rpc` frame payload, answered by the real handler of a
//! run (no upstream servers; saved tools and memory in a scratch state folder).
//!
//! Checked:
//! - answering never panics, and every error carries a documented kind;
//! - nothing is ever written outside `saved_tools/<name>.py`, `memory/<key>.json`,
//!   `user_tools.py` and `checkpoints/<scope>/<session>.ckpt` (names and keys cannot
//!   traverse paths), and no temporary file is left;
//! - a `memory save` that succeeded loads back the same value; a `save_tool` that succeeded
//!   is listed in the saved tools.
#![no_main]

use std::path::{Component, Path};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_server_code_execution_mode::checkpoints::store::Store;
use mcp_server_code_execution_mode::checkpoints::transfer::{CheckpointCalls, Stamp, Target};
use mcp_server_code_execution_mode::proxy::catalogue::Catalogue;
use mcp_server_code_execution_mode::proxy::dispatch::{Proxy, SessionServices};
use mcp_server_code_execution_mode::proxy::upstream::Upstreams;
use mcp_server_code_execution_mode::sessions::validate_name;
use mcp_server_code_execution_mode::state::{State, validate_key, validate_tool_name};
use mcp_server_code_execution_mode_fuzz::{clear_files, files_under, scratch_dir};
use sandbox_core::RpcHandler;
use sandbox_core::frame::{GuestFrame, parse_guest_frame};
use serde_json::{Map, Value, json};

/// The kinds `backends/core/docs/frames.md` documents, `install`'s included.
const KINDS: [&str; 13] = [
    "not_allowed",
    "unknown_server",
    "unknown_tool",
    "invalid_params",
    "upstream",
    "busy",
    "not_found",
    "internal",
    "disabled",
    "no_wheel",
    "sdist_only",
    "too_large",
    "install_failed",
];

struct World {
    runtime: tokio::runtime::Runtime,
    calls: Arc<dyn RpcHandler>,
    state_dir: &'static Path,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let state_dir = scratch_dir();
        let upstreams = Upstreams::new(
            Vec::new(),
            state_dir.join(".cache").join("tools"),
            Duration::from_secs(1),
        );
        let state = State::open(state_dir);
        let proxy = Proxy::new(Catalogue::default(), upstreams, state);
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            calls: proxy.calls_for_run(
                &[],
                SessionServices {
                    checkpoints: Some(checkpoint_calls(state_dir)),
                    ..SessionServices::default()
                },
            ),
            state_dir,
        }
    })
}

/// Checkpoint calls storing under `<state>/checkpoints`, as a session named `default`.
fn checkpoint_calls(state_dir: &Path) -> Arc<CheckpointCalls> {
    Arc::new(CheckpointCalls::new(Target {
        store: Arc::new(Store::new(state_dir.join("checkpoints"), 4 << 20)),
        scope: "stdio:fuzz".into(),
        session: "default".into(),
        stamp: Stamp {
            interpreter: "cpython-wasi 3.15.0".into(),
            backend: "wasi".into(),
            runtime: "runtime-fuzz".into(),
        },
    }))
}

/// Whether a file the state folder holds is one the layout allows.
fn allowed(file: &Path) -> bool {
    let parts: Vec<&str> = file
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str().unwrap_or("\u{0}"),
            _ => "\u{0}",
        })
        .collect();
    match parts.as_slice() {
        ["user_tools.py"] => true,
        ["saved_tools", name] => name
            .strip_suffix(".py")
            .is_some_and(|n| validate_tool_name(n).is_ok()),
        ["memory", key] => key
            .strip_suffix(".json")
            .is_some_and(|k| validate_key(k).is_ok()),
        ["checkpoints", scope, session] => {
            scope.len() == 64
                && session
                    .strip_suffix(".ckpt")
                    .is_some_and(|s| validate_name(s).is_ok())
        }
        _ => false,
    }
}

fn call(world: &World, method: &str, params: Map<String, Value>) -> Result<Value, String> {
    let answer = world.runtime.block_on(world.calls.call(method, params));
    answer.map_err(|e| {
        assert!(
            KINDS.contains(&e.kind.as_str()),
            "undocumented kind {:?}",
            e.kind
        );
        e.kind
    })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(GuestFrame::Rpc(frame)) = parse_guest_frame(data) else {
        return;
    };
    let world = world();
    let answer = call(world, &frame.method, frame.params.clone());

    for file in files_under(world.state_dir) {
        assert!(allowed(&file), "a call wrote {}", file.display());
    }
    if answer.is_ok() {
        let op = frame.params.get("op").and_then(Value::as_str);
        let key = frame.params.get("key").and_then(Value::as_str);
        let name = frame.params.get("name").and_then(Value::as_str);
        match (frame.method.as_str(), op, key, name) {
            ("memory", Some("save"), Some(key), _) => {
                let loaded = call(world, "memory", object(json!({"op": "load", "key": key})));
                assert_eq!(loaded.as_ref(), Ok(&frame.params["value"]));
            }
            ("save_tool", _, _, Some(name)) => {
                let file = world
                    .state_dir
                    .join("saved_tools")
                    .join(format!("{name}.py"));
                assert!(file.is_file(), "saved tool {name} is not on disk");
            }
            _ => {}
        }
    }
    clear_files(world.state_dir);
});
