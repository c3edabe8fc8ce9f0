//! Plots come back: `plt.show()` and figures left open at the end of a run return as PNG
//! image content, a figure the code saved under `/workspace/out/` comes back once, and
//! matplotlib has a writable config dir (no warning about a temporary one).

use anyhow::{Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::support::{Reply, TestBackend};

/// The PNG images of a reply, decoded.
fn png_images(reply: &Reply) -> Vec<Vec<u8>> {
    reply
        .content
        .iter()
        .filter(|block| block["type"] == "image" && block["mimeType"] == "image/png")
        .filter_map(|block| block["data"].as_str())
        .filter_map(|data| STANDARD.decode(data).ok())
        .collect()
}

/// Width and height from a PNG's header.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let header = png.get(..24)?;
    if &header[..8] != b"\x89PNG\r\n\x1a\n" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
    Some((word(16), word(20)))
}

pub(crate) async fn plt_show_returns_the_figure_as_an_image(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("matplotlib") {
        return Ok(());
    }
    let bridge = b.bridge().await?;
    let reply = bridge
        .run(
            "import matplotlib.pyplot as plt\n\
             fig, ax = plt.subplots(figsize=(4, 3))\n\
             ax.plot([1, 2, 3], [2, 4, 1])\n\
             plt.show()\n\
             print('open after show:', plt.get_fignums())",
        )
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(
        reply.stdout() == "open after show: []\n",
        "show() closes what it sent: {:?}",
        reply.stdout()
    );
    ensure!(
        !reply.stderr().contains("MPLCONFIGDIR"),
        "matplotlib must have a writable config dir: {}",
        reply.stderr()
    );
    let images = png_images(&reply);
    ensure!(images.len() == 1, "one image: {:?}", reply.structured);
    ensure!(
        png_size(&images[0]) == Some((400, 300)),
        "a 4x3 inch figure at 100 dpi: {:?}",
        png_size(&images[0])
    );
    // Numbered per session: the next figure does not overwrite the first.
    let again = bridge.run("plt.plot([3, 1]); plt.show()").await?;
    ensure!(!again.is_error, "{}", again.text);
    ensure!(
        again.file_paths() == ["/workspace/out/figure-2.png"],
        "{}",
        again.structured
    );
    Ok(())
}

pub(crate) async fn figures_left_open_come_back_once(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("matplotlib") {
        return Ok(());
    }
    let bridge = b.bridge().await?;
    // Two figures left open: both come back, in order, and are closed.
    let reply = bridge
        .run(
            "import matplotlib.pyplot as plt\n\
             plt.figure(); plt.bar(['a', 'b'], [1, 2])\n\
             plt.figure(); plt.scatter([1, 2], [3, 4])",
        )
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(png_images(&reply).len() == 2, "{:?}", reply.structured);
    let open = bridge.ok("print(plt.get_fignums())").await?;
    ensure!(open == "[]\n", "sent figures are closed: {open:?}");
    // A figure the code saves under /workspace/out/ comes back as that file only.
    let saved = bridge
        .run(
            "fig = plt.figure(); plt.plot([1, 2])\n\
             fig.savefig('/workspace/out/chart.png')",
        )
        .await?;
    ensure!(!saved.is_error, "{}", saved.text);
    ensure!(
        saved.file_paths() == ["/workspace/out/chart.png"],
        "{}",
        saved.structured
    );
    ensure!(png_images(&saved).len() == 1, "{:?}", saved.structured);
    // A run that raises still returns the figure it drew.
    let raised = bridge
        .run("plt.plot([5, 6]); raise ValueError('after plotting')")
        .await?;
    ensure!(raised.is_error, "{}", raised.text);
    ensure!(png_images(&raised).len() == 1, "{:?}", raised.structured);
    let no_figures: Value = bridge.run("x = 1").await?.structured["files"].clone();
    ensure!(no_figures.is_null(), "nothing left to send: {no_figures}");
    Ok(())
}
