//! Files back to the agent: what the code writes under `/workspace/out/` comes back as MCP
//! content, and output cut by the cap is saved there to be read on purpose.

use anyhow::{Result, ensure};
use serde_json::Value;

use crate::support::TestBackend;

/// A 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn block<'a>(content: &'a [Value], kind: &str, key: &str, value: &str) -> Option<&'a Value> {
    content
        .iter()
        .find(|b| b["type"] == kind && (b[key] == value || b["resource"][key] == value))
}

pub(crate) async fn files_written_to_out_come_back(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let code = format!(
        "import base64\n\
         open('/workspace/out/chart.png', 'wb').write(base64.b64decode({PNG:?}))\n\
         open('/workspace/out/notes.md', 'w').write('# findings\\n')\n\
         open('/workspace/out/big.bin', 'wb').write(b'x' * (2 << 20))\n\
         print('written')"
    );
    let reply = bridge.run(&code).await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let image = block(&reply.content, "image", "mimeType", "image/png");
    ensure!(
        image.is_some_and(|i| i["data"] == PNG),
        "no PNG image: {:?}",
        reply.content
    );
    let notes = block(
        &reply.content,
        "resource",
        "uri",
        "file:///workspace/out/notes.md",
    );
    ensure!(
        notes.is_some_and(|n| n["resource"]["text"] == "# findings\n"),
        "no notes: {:?}",
        reply.content
    );
    let big = block(
        &reply.content,
        "resource_link",
        "uri",
        "file:///workspace/out/big.bin",
    );
    ensure!(
        big.is_some(),
        "no link to the big file: {:?}",
        reply.content
    );
    let sent: Vec<&str> = reply.structured["files"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| f["sent"].as_str()).collect())
        .unwrap_or_default();
    ensure!(sent == ["link", "image", "text"], "{}", reply.structured);
    // Only what a run created or changed comes back.
    let again = bridge
        .run("open('/workspace/out/notes.md', 'a').write('more\\n')")
        .await?;
    ensure!(
        again.file_paths() == ["/workspace/out/notes.md"],
        "{}",
        again.structured
    );
    Ok(())
}

pub(crate) async fn cut_output_is_saved_to_read_on_purpose(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run("print('x' * 200_000)").await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let saved = reply.structured["saved_output"]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        saved.starts_with("/workspace/out/stdout-run-"),
        "{}",
        reply.structured
    );
    ensure!(
        reply.text.contains(&saved),
        "the reply must name the file: {}",
        reply.text
    );
    let size = bridge
        .ok(&format!("print(len(open({saved:?}).read()))"))
        .await?;
    ensure!(size == "200001\n", "{size:?}");
    // Output that fits leaves no file behind.
    let small = bridge.run("print('short')").await?;
    ensure!(
        small.structured.get("saved_output").is_none(),
        "{}",
        small.structured
    );
    Ok(())
}
