//! The image sessions run: the configured one if the engine has it or can pull it, else a
//! local image imported from the shared Debian root filesystem (built on first use).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptions, CreateImageOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_rootfs::{ROOTFS_VERSION, Rootfs, SUITE};
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use crate::error::{ContainerError, ImageError};

/// Repository of the image we build.
pub const LOCAL_REPOSITORY: &str = "localhost/mcp-sandbox-python";

/// The name (`repository:tag`) of the image we build from the root filesystem.
pub fn local_image() -> String {
    format!("{LOCAL_REPOSITORY}:debian-{SUITE}-v{ROOTFS_VERSION}")
}

/// The paths under `overlay` (as `./relative`, parents before children) that `base` does
/// not have. A file `base` has too is an error: the image would hold two.
fn overlay_entries(base: &Path, overlay: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(
        base: &Path,
        overlay: &Path,
        relative: &Path,
        out: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        let mut entries =
            std::fs::read_dir(overlay.join(relative))?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = relative.join(entry.file_name());
            let in_base = std::fs::symlink_metadata(base.join(&path)).ok();
            let is_dir = entry.file_type()?.is_dir();
            match in_base {
                Some(found) if is_dir && found.is_dir() => {}
                Some(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{} is in the root filesystem already", path.display()),
                    ));
                }
                None => out.push(Path::new(".").join(&path)),
            }
            if is_dir {
                walk(base, overlay, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(base, overlay, Path::new(""), &mut out)?;
    Ok(out)
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
    import(client, &image, dir, None, None).await.map_err(fail)
}

/// Import `base` as one image named `image` (`repository:tag`), with `overlay`'s entries
/// that `base` lacks added over it (an archive may not name a path twice, so directories
/// both have keep `base`'s entry, and a file both have is refused), owners and modes as on
/// disk, and `settings` (none: the engine's defaults).
pub(crate) async fn import(
    client: &Docker,
    image: &str,
    base: &Path,
    overlay: Option<&Path>,
    settings: Option<&ImageSettings>,
) -> Result<(), ImageError> {
    let Some(settings) = settings else {
        return import_bare(client, image, base, overlay).await;
    };
    // The engines' import takes settings as Dockerfile lines, which podman's compatible API
    // reads one per query parameter and bollard sends joined into one: so the tree goes in
    // bare, under a name of its own, and a container made from it with the settings is
    // committed as `image` (both engines keep a container's settings in what they commit).
    let unconfigured = format!("{image}-unconfigured");
    import_bare(client, &unconfigured, base, overlay).await?;
    // The image this one replaces, if any: left without a name, it would keep its space.
    let replaced = client.inspect_image(image).await.ok().and_then(|i| i.id);
    let configured = configure(client, &unconfigured, image, settings).await;
    let remove = RemoveImageOptionsBuilder::default().force(true).build();
    if let Err(e) = client.remove_image(&unconfigured, Some(remove), None).await {
        warn!(image = %unconfigured, error = %e, "could not remove the unconfigured image");
    }
    if configured.is_ok()
        && let Some(old) = replaced
    {
        remove_if_unnamed(client, &old).await;
    }
    configured
}

/// Removes the image `id` when no name points at it any more (a rebuilt image's former
/// self); one a container still uses, or that still has a name, stays.
async fn remove_if_unnamed(client: &Docker, id: &str) {
    let Ok(old) = client.inspect_image(id).await else {
        return;
    };
    let named = old
        .repo_tags
        .iter()
        .flatten()
        .any(|tag| tag != "<none>:<none>");
    if named {
        return;
    }
    let remove = RemoveImageOptionsBuilder::default().build();
    if let Err(e) = client.remove_image(id, Some(remove), None).await {
        debug!(image = %id, error = %e, "the replaced image stays");
    }
}

/// Commits a container of `unconfigured` made with `settings` as `image`.
async fn configure(
    client: &Docker,
    unconfigured: &str,
    image: &str,
    settings: &ImageSettings,
) -> Result<(), ImageError> {
    let body = ContainerCreateBody {
        image: Some(unconfigured.to_owned()),
        user: Some(settings.user.clone()),
        working_dir: Some(settings.working_dir.clone()),
        env: Some(settings.env.clone()),
        exposed_ports: Some(settings.exposed_ports.clone()),
        entrypoint: Some(settings.entrypoint.clone()),
        cmd: Some(settings.cmd.clone()),
        ..ContainerCreateBody::default()
    };
    let created = client
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .map_err(ImageError::Configure)?;
    let (repo, tag) = split_name(image);
    let mut options = CommitContainerOptionsBuilder::default()
        .container(&created.id)
        .repo(repo);
    if let Some(tag) = tag {
        options = options.tag(tag);
    }
    // No settings in the commit's own body: both engines then take the container's.
    let committed = client
        .commit_container(options.build(), ContainerConfig::default())
        .await;
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    if let Err(e) = client.remove_container(&created.id, Some(remove)).await {
        warn!(container = %created.id, error = %e, "could not remove the container an image was committed from");
    }
    committed.map_err(ImageError::Configure)?;
    if !is_present(client, image).await {
        return Err(ImageError::Missing);
    }
    Ok(())
}

/// `repository[:tag]`, the tag being what follows the last `:` after the last `/`.
fn split_name(image: &str) -> (&str, Option<&str>) {
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => (
            &image[..name_start + colon],
            Some(&image[name_start + colon + 1..]),
        ),
        None => (image, None),
    }
}

/// What a Dockerfile's `USER`, `WORKDIR`, `ENV`, `EXPOSE`, `ENTRYPOINT` and `CMD` say of an
/// image made here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSettings {
    /// `uid:gid` the image runs as.
    pub user: String,
    /// The working directory.
    pub working_dir: String,
    /// `NAME=value` variables.
    pub env: Vec<String>,
    /// Ports it listens on (`8765/tcp`).
    pub exposed_ports: Vec<String>,
    /// The program.
    pub entrypoint: Vec<String>,
    /// Its default arguments.
    pub cmd: Vec<String>,
}

/// [`import`] without settings.
async fn import_bare(
    client: &Docker,
    image: &str,
    base: &Path,
    overlay: Option<&Path>,
) -> Result<(), ImageError> {
    info!(image = %image, from = %base.display(), overlay = ?overlay, "importing a tree as a local image");
    let started = std::time::Instant::now();
    let mut command = tokio::process::Command::new("tar");
    command
        .args(["--numeric-owner", "-c", "-C"])
        .arg(base)
        .arg(".");
    // The overlay's new entries, one per line, from a file tar reads (`--no-recursion`:
    // exactly those).
    let list = match overlay {
        Some(overlay) => {
            let entries = overlay_entries(base, overlay).map_err(ImageError::Overlay)?;
            let mut list = tempfile::NamedTempFile::new().map_err(ImageError::Overlay)?;
            for entry in &entries {
                writeln!(list, "{}", entry.display()).map_err(ImageError::Overlay)?;
            }
            list.flush().map_err(ImageError::Overlay)?;
            command
                .args(["--no-recursion", "-C"])
                .arg(overlay)
                .arg("-T")
                .arg(list.path());
            Some(list)
        }
        None => None,
    };
    let mut tar = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(ImageError::SpawnTar)?;
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
        .repo(image);
    let mut progress = client.create_image(
        Some(options.build()),
        Some(bollard::body_try_stream(chunks)),
        None,
    );
    while let Some(step) = progress.next().await {
        step.map_err(ImageError::Import)?;
    }
    let status = tar.wait().await.map_err(ImageError::WaitTar)?;
    drop(list);
    if !status.success() {
        return Err(ImageError::TarStatus(status));
    }
    if !is_present(client, image).await {
        return Err(ImageError::Missing);
    }
    info!(image = %image, seconds = started.elapsed().as_secs_f64(), "local image ready");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_tag_not_at_a_registry_port() {
        assert_eq!(split_name("localhost/a:1.0"), ("localhost/a", Some("1.0")));
        assert_eq!(split_name("localhost:5000/a"), ("localhost:5000/a", None));
        assert_eq!(split_name("a"), ("a", None));
    }

    #[test]
    fn the_overlay_adds_only_what_the_base_lacks() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(base.path().join("opt")).unwrap();
        let overlay = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(overlay.path().join("usr/local/bin")).unwrap();
        std::fs::write(overlay.path().join("usr/local/bin/tool"), b"x").unwrap();
        std::fs::create_dir_all(overlay.path().join("opt/app/cache")).unwrap();
        std::fs::write(overlay.path().join("opt/app/cache/a"), b"a").unwrap();
        let entries = overlay_entries(base.path(), overlay.path()).unwrap();
        let shown: Vec<String> = entries.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            shown,
            [
                "./opt/app",
                "./opt/app/cache",
                "./opt/app/cache/a",
                "./usr/local/bin/tool"
            ]
        );
        std::fs::write(base.path().join("usr/local/bin/tool"), b"y").unwrap();
        let error = overlay_entries(base.path(), overlay.path()).unwrap_err();
        assert!(error.to_string().contains("usr/local/bin/tool"), "{error}");
    }
}
