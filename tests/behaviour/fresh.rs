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
