//! Packages on demand: `mcp.runtime.install` fetches wheels on the host, from the real
//! package index, for the sandbox's own interpreter; the sandbox stays offline and sees
//! them read-only, in its own session only. Each refusal names the package and the reason.

use anyhow::{Result, ensure};
use serde_json::json;

use crate::support::{TestBackend, TestBridge};

/// Long enough for pip to resolve and download on a slow day.
const INSTALL_TIMEOUT_SECS: u64 = 120;

/// Run `code` with room for an install; returns stdout, failing on an error reply.
async fn run_long(bridge: &TestBridge, code: &str, session: &str) -> Result<String> {
    let reply = bridge
        .call(json!({"code": code, "timeout": INSTALL_TIMEOUT_SECS, "session": session}))
        .await?;
    ensure!(!reply.is_error, "{code:?} failed: {}", reply.text);
    Ok(reply.stdout().to_string())
}

/// Install `requirement` in a fresh bridge (with `env`) and return `kind|message` of the
/// `MCPError` it raised.
async fn refusal(b: &TestBackend, env: &[(&str, &str)], requirement: &str) -> Result<String> {
    let bridge = b.bridge_with(env).await?;
    let code = format!(
        "import mcp, mcp.runtime as runtime\n\
         try:\n    runtime.install_sync({requirement:?})\n    print('installed')\n\
         except mcp.MCPError as e:\n    print(f'{{e.kind}}|{{e}}')"
    );
    run_long(&bridge, &code, "default").await
}

pub(crate) async fn install_adds_a_pure_python_package_to_this_session_only(
    b: &TestBackend,
) -> Result<()> {
    let bridge = b.bridge().await?;
    let out = run_long(
        &bridge,
        "import mcp.runtime as runtime\n\
         done = await runtime.install('humanize')\n\
         import humanize\n\
         print(humanize.intcomma(1234567), [p.split()[0] for p in done['installed']])\n\
         try:\n    open(humanize.__file__, 'a')\nexcept OSError:\n    print('read-only')",
        "default",
    )
    .await?;
    ensure!(
        out == "1,234,567 ['humanize']\nread-only\n",
        "the installed package did not work: {out:?}"
    );
    let other = run_long(
        &bridge,
        "try:\n    import humanize\n    print('shared')\nexcept ModuleNotFoundError:\n    \
         print('separate')",
        "other",
    )
    .await?;
    ensure!(other == "separate\n", "another session saw it: {other:?}");
    // What the sandbox already has is left out, not fetched again.
    let again = run_long(
        &bridge,
        "import mcp.runtime as runtime\nprint(runtime.install_sync('humanize')['installed'])",
        "default",
    )
    .await?;
    ensure!(
        again == "[]\n",
        "an installed package was fetched again: {again:?}"
    );
    Ok(())
}

pub(crate) async fn startup_packages_are_in_every_session(b: &TestBackend) -> Result<()> {
    let bridge = b
        .bridge_with(&[("MCP_BRIDGE_PACKAGES", "pyfiglet")])
        .await?;
    for session in ["default", "second"] {
        let out = run_long(
            &bridge,
            "import pyfiglet\nprint(len(pyfiglet.figlet_format('hi').splitlines()) > 2)",
            session,
        )
        .await?;
        ensure!(out == "True\n", "{session}: {out:?}");
    }
    Ok(())
}

pub(crate) async fn a_package_not_on_the_index_is_named(b: &TestBackend) -> Result<()> {
    let name = "no-such-project-mcp-bridge-7f3a9c";
    let out = refusal(b, &[], name).await?;
    ensure!(
        out.starts_with("not_found|") && out.contains(name),
        "expected not_found naming {name}: {out:?}"
    );
    Ok(())
}

pub(crate) async fn a_package_with_only_an_sdist_is_refused(b: &TestBackend) -> Result<()> {
    // docopt has only ever been published as a source distribution.
    let out = refusal(b, &[], "docopt").await?;
    ensure!(
        out.starts_with("sdist_only|") && out.contains("`docopt`"),
        "expected sdist_only naming docopt: {out:?}"
    );
    Ok(())
}

pub(crate) async fn a_package_without_a_wheel_for_this_platform_is_refused(
    b: &TestBackend,
) -> Result<()> {
    // orjson ships compiled wheels only (nothing WASI loads); pywin32 ships Windows wheels only.
    let (name, platform) = if b.is_container() {
        ("pywin32", "Linux")
    } else {
        ("orjson", "WebAssembly")
    };
    let out = refusal(b, &[], name).await?;
    ensure!(
        out.starts_with("no_wheel|")
            && out.contains(&format!("`{name}`"))
            && out.contains(platform),
        "expected no_wheel naming {name} and {platform}: {out:?}"
    );
    Ok(())
}

pub(crate) async fn an_install_over_the_size_cap_is_refused(b: &TestBackend) -> Result<()> {
    // pyfiglet's wheel alone is about 1 MB.
    let out = refusal(b, &[("MCP_BRIDGE_PACKAGE_CACHE", "16k")], "pyfiglet").await?;
    ensure!(
        out.starts_with("too_large|") && out.contains("`pyfiglet`"),
        "expected too_large naming pyfiglet: {out:?}"
    );
    Ok(())
}

pub(crate) async fn installs_can_be_turned_off(b: &TestBackend) -> Result<()> {
    let out = refusal(b, &[("MCP_BRIDGE_PACKAGE_INSTALL", "off")], "humanize").await?;
    ensure!(
        out.starts_with("disabled|") && out.contains("MCP_BRIDGE_PACKAGE_INSTALL"),
        "expected disabled: {out:?}"
    );
    Ok(())
}
