//! Files the code wrote under `/workspace/out/`, as MCP content: images as image content,
//! text as embedded text resources, other small files as embedded blobs, and anything sent
//! without its content (too large, over the run's budget, or saved output) as a resource
//! link the agent can read on purpose from its code.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{ContentBlock, Resource, ResourceContents};
use sandbox_core::frame::OutFile;
use serde::Serialize;

use crate::units::human_bytes;

/// Where the code puts files meant for the agent.
pub const OUT_DIR: &str = "/workspace/out/";

/// How a file came back, for the structured report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Its path inside the sandbox.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type, from its name and first bytes.
    pub mime: String,
    /// `image`, `text`, `blob` (content sent) or `link` (only named).
    pub sent: &'static str,
}

/// The content blocks and reports for a run's files. Paths outside [`OUT_DIR`] (a guest
/// that lies) and content that is not base64 are dropped.
pub fn content_blocks(files: &[OutFile]) -> (Vec<ContentBlock>, Vec<FileReport>) {
    let mut blocks = Vec::new();
    let mut reports = Vec::new();
    for file in files {
        if !file.path.starts_with(OUT_DIR) || file.path.split('/').any(|part| part == "..") {
            continue;
        }
        let uri = format!("file://{}", file.path);
        let bytes = file
            .data
            .as_deref()
            .and_then(|data| STANDARD.decode(data).ok());
        let mime = media_type(&file.path, bytes.as_deref());
        let sent = match (bytes, file.data.as_deref()) {
            (Some(_), Some(data)) if is_image(mime) => {
                blocks.push(ContentBlock::image(data, mime));
                "image"
            }
            (Some(bytes), Some(data)) => match String::from_utf8(bytes) {
                Ok(text) if is_text(mime) => {
                    blocks.push(ContentBlock::resource(
                        ResourceContents::TextResourceContents {
                            uri,
                            mime_type: Some(mime.into()),
                            text,
                            meta: None,
                        },
                    ));
                    "text"
                }
                _ => {
                    blocks.push(ContentBlock::resource(
                        ResourceContents::BlobResourceContents {
                            uri,
                            mime_type: Some(mime.into()),
                            blob: data.to_string(),
                            meta: None,
                        },
                    ));
                    "blob"
                }
            },
            _ => {
                blocks.push(ContentBlock::resource_link(link(file, &uri, mime)));
                "link"
            }
        };
        reports.push(FileReport {
            path: file.path.clone(),
            size: file.size,
            mime: mime.to_string(),
            sent,
        });
    }
    (blocks, reports)
}

fn link(file: &OutFile, uri: &str, mime: &str) -> Resource {
    let name = file.path.rsplit('/').next().unwrap_or_default().to_string();
    let mut resource = Resource::new(uri, name);
    resource.mime_type = Some(mime.to_string());
    resource.size = Some(file.size);
    resource.description = Some(format!(
        "{} in the sandbox; its content was not sent (too large for the reply): read it \
         from code in the same session",
        human_bytes(file.size)
    ));
    resource
}

fn is_image(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

fn is_text(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/json" | "application/xml" | "image/svg+xml"
        )
}

/// Media type from the first bytes (images), else from the extension.
fn media_type(path: &str, bytes: Option<&[u8]>) -> &'static str {
    if let Some(bytes) = bytes {
        let sniffed = [
            (&b"\x89PNG\r\n\x1a\n"[..], "image/png"),
            (&b"\xff\xd8\xff"[..], "image/jpeg"),
            (&b"GIF87a"[..], "image/gif"),
            (&b"GIF89a"[..], "image/gif"),
        ];
        if let Some((_, mime)) = sniffed.iter().find(|(magic, _)| bytes.starts_with(magic)) {
            return mime;
        }
        if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            return "image/webp";
        }
    }
    let extension = path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "html" | "htm" => "text/html",
        "py" => "text/x-python",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: Option<&[u8]>) -> OutFile {
        OutFile {
            path: path.into(),
            size: data.map_or(10 << 20, |d| d.len() as u64),
            data: data.map(|d| STANDARD.encode(d)),
        }
    }

    #[test]
    fn images_text_blobs_and_links() {
        let png = b"\x89PNG\r\n\x1a\nrest";
        let (blocks, reports) = content_blocks(&[
            file("/workspace/out/chart.png", Some(png)),
            file("/workspace/out/table.csv", Some(b"a,b\n1,2\n")),
            file("/workspace/out/data.bin", Some(&[0, 159, 146, 150])),
            file("/workspace/out/huge.parquet", None),
        ]);
        let sent: Vec<_> = reports.iter().map(|r| r.sent).collect();
        assert_eq!(sent, ["image", "text", "blob", "link"]);
        assert_eq!(reports[1].mime, "text/csv");
        let json = serde_json::to_value(&blocks).unwrap();
        assert_eq!(json[0]["type"], "image");
        assert_eq!(json[0]["mimeType"], "image/png");
        assert_eq!(json[1]["resource"]["text"], "a,b\n1,2\n");
        assert_eq!(
            json[1]["resource"]["uri"],
            "file:///workspace/out/table.csv"
        );
        assert!(json[2]["resource"]["blob"].is_string());
        assert_eq!(json[3]["type"], "resource_link");
        assert_eq!(json[3]["name"], "huge.parquet");
    }

    #[test]
    fn paths_outside_the_out_dir_and_bad_base64_are_not_trusted() {
        let lying = OutFile {
            path: "/etc/passwd".into(),
            size: 3,
            data: Some(STANDARD.encode(b"x")),
        };
        let escaping = file("/workspace/out/../../etc/shadow", Some(b"x"));
        assert!(content_blocks(&[lying, escaping]).0.is_empty());
        let garbled = OutFile {
            path: "/workspace/out/a.txt".into(),
            size: 3,
            data: Some("not base64!".into()),
        };
        let (blocks, reports) = content_blocks(&[garbled]);
        assert_eq!(reports[0].sent, "link");
        assert_eq!(blocks.len(), 1);
    }
}
