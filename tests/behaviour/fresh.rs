//! A fresh session is fresh: whatever its interpreter started from (a snapshot with the
//! scientific stack imported, on WASI), it sees nothing another session did and draws its
//! own random numbers.

use anyhow::{Result, ensure};
use serde_json::json;

use crate::support::{TestBackend, TestBridge};

/// Prints one draw of `random` and, where numpy is there, one of `numpy.random`.
const DRAWS: &str = "import random\n\
try:\n    import numpy\nexcept ImportError:\n    numpy = None\n\
print(random.random(), numpy.random.rand() if numpy else '')";

async fn in_session(bridge: &TestBridge, session: &str, code: &str) -> Result<String> {
    let reply = bridge
        .call(json!({"code": code, "session": session}))
        .await?;
    ensure!(
        reply.structured["error"].is_null(),
        "{session}: {}",
        reply.text
    );
    Ok(reply.stdout().trim().to_owned())
}

pub(crate) async fn fresh_sessions_share_no_state_and_no_random_seed(
    b: &TestBackend,
) -> Result<()> {
    let bridge = b.bridge().await?;
    let first = in_session(&bridge, "one", DRAWS).await?;
    let second = in_session(&bridge, "two", DRAWS).await?;
    ensure!(
        first != second,
        "two fresh sessions drew the same numbers: {first}"
    );
    let seeded = "secret = 42\nimport random\nrandom.seed(7)\n\
        try:\n    import numpy\n    numpy.random.seed(7)\nexcept ImportError:\n    pass";
    in_session(&bridge, "one", seeded).await?;
    let after_seed = in_session(&bridge, "one", DRAWS).await?;
    let third = in_session(
        &bridge,
        "three",
        &format!("print('secret' in globals())\n{DRAWS}"),
    )
    .await?;
    let (seen, draws) = third.split_once('\n').unwrap_or((&third, ""));
    ensure!(seen == "False", "a fresh session sees another's variable");
    ensure!(
        draws != after_seed && draws != second,
        "a fresh session drew another session's numbers: {draws}"
    );
    // Seeding still makes a session repeatable.
    in_session(&bridge, "three", seeded).await?;
    ensure!(in_session(&bridge, "three", DRAWS).await? == after_seed);
    Ok(())
}

pub(crate) async fn the_data_stack_imports_in_a_fresh_session(b: &TestBackend) -> Result<()> {
    if b.name == "wasi_slim" {
        // The slim interpreter is the standard library only, by design.
        return Ok(());
    }
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import pandas, numpy\nprint(pandas.DataFrame({'a': [1, 2, 3]})['a'].sum(), numpy.arange(4).sum())")
        .await?;
    ensure!(out.trim() == "6 6", "{out}");
    Ok(())
}

/// On `wasi` (the full interpreter), a session starts from the snapshot `provision` made, so
/// the stack is in memory before any code runs, and matplotlib is the session's all the same:
/// its figure backend and a config dir that exists (the hooks that set them up at import
/// never fired). Other backends import on demand; there is nothing to check.
pub(crate) async fn wasi_sessions_start_from_the_snapshot(b: &TestBackend) -> Result<()> {
    if b.name != "wasi" {
        return Ok(());
    }
    let bridge = b.bridge().await?;
    let out = bridge
        .ok("import sys\n\
             preloaded = [m for m in ('numpy', 'pandas', 'matplotlib.pyplot') if m in sys.modules]\n\
             import os, matplotlib\n\
             print(preloaded, matplotlib.get_backend(), os.path.isdir(matplotlib.get_configdir()))")
        .await?;
    ensure!(
        out.trim() == "['numpy', 'pandas', 'matplotlib.pyplot'] module://mcp_figures True",
        "a full WASI session did not start from the snapshot with matplotlib taken over \
         (does `provision` make the snapshot of this layout?): {out}"
    );
    Ok(())
}
