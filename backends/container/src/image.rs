//! The image sessions run: the configured one if the engine has it or can pull it, else a
//! local image imported from the shared Debian root filesystem (built on first use).

use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_rootfs::{ROOTFS_VERSION, Rootfs, SUITE};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use crate::error::{ContainerError, ImageError};

/// Repository of the image we build.
pub const LOCAL_REPOSITORY: &str = "localhost/mcp-sandbox-python";

/// The name (`repository:tag`) of the image we build from the root filesystem.
pub fn local_image() -> String {
    format!("{LOCAL_REPOSITORY}:debian-{SUITE}-v{ROOTFS_VERSION}")
}

/// True when the engine has `image` locally.
pub(crate) async fn is_present(client: &Docker, image: &str) -> bool {
    client.inspect_image(image).await.is_ok()
}

/// The image to run: `wanted` if present or pullable, else the local image (built if
/// missing). Returns the name to run.
pub(crate) async fn ensure(
    client: &Docker,
    wanted: Option<&str>,
    rootfs: &Rootfs,
) -> Result<String, ContainerError> {
    if let Some(wanted) = wanted {
        if is_present(client, wanted).await {
            return Ok(wanted.to_string());
        }
        match pull(client, wanted).await {
            Ok(()) => return Ok(wanted.to_string()),
            Err(why) => warn!(
                image = wanted,
                why = %sandbox_core::error_chain(&why),
                fallback = %local_image(),
                "the configured image is not present and cannot be pulled; using the locally built image"
            ),
        }
    }
    let local = local_image();
    if !is_present(client, &local).await {
        build(client, rootfs).await?;
    }
    Ok(local)
}

async fn pull(client: &Docker, image: &str) -> Result<(), ImageError> {
    let options = CreateImageOptionsBuilder::default()
        .from_image(image)
        .build();
    let mut progress = client.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        step.map_err(ImageError::Pull)?;
    }
    Ok(())
}

/// Build the root filesystem if needed and import it as [`local_image`].
pub(crate) async fn build(client: &Docker, rootfs: &Rootfs) -> Result<(), ContainerError> {
    let image = local_image();
    let fail = |source: ImageError| ContainerError::Image {
        image: image.clone(),
        source,
    };
    let dir = rootfs
        .ensure()
        .await
        .map_err(|e| fail(ImageError::Rootfs(e)))?;
    info!(image = %image, from = %dir.display(), "importing the root filesystem as a local image");
    let started = std::time::Instant::now();
    let mut tar = tokio::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .args(["-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(ImageError::SpawnTar(e)))?;
    let stdout = tar.stdout.take().expect("piped");
    let chunks = futures_util::stream::unfold(stdout, |mut stdout| async move {
        let mut buffer = vec![0_u8; 256 * 1024];
        match stdout.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), stdout))
            }
            Err(e) => Some((Err(e), stdout)),
        }
    });
    // The tag goes inside `repo`, which both engines honour (podman 4 ignores `tag`).
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(&image)
        .build();
    let mut progress =
        client.create_image(Some(options), Some(bollard::body_try_stream(chunks)), None);
    while let Some(step) = progress.next().await {
        step.map_err(|e| fail(ImageError::Import(e)))?;
    }
    let status = tar.wait().await.map_err(|e| fail(ImageError::WaitTar(e)))?;
    if !status.success() {
        return Err(fail(ImageError::TarStatus(status)));
    }
    if !is_present(client, &image).await {
        return Err(fail(ImageError::Missing));
    }
    info!(image = %image, seconds = started.elapsed().as_secs_f64(), "local image ready");
    Ok(())
}
