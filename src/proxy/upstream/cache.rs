//! The on-disk tool-list cache: one JSON file per server, keyed by a fingerprint of its spec.
//!
//! A file holds what a server said about itself when it was last started and listed: its
//! tools, its `serverInfo` (name, version, title, description) and its `instructions`.
//! Discovery, docs and search read it without starting anything; it is rewritten each time a
//! server is started and listed. Text from the server is stored bounded
//! ([`MAX_INSTRUCTIONS_CHARS`], [`MAX_IDENTITY_CHARS`]) but otherwise as sent: whoever shows
//! it cleans it (`proxy::describe`). A file whose fingerprint differs from the current spec (the user
//! changed the command, the arguments, the set of environment variables, the URL...) is
//! ignored. Files are replaced whole (`sandbox_core::atomic_file`), so a reader never sees
//! half a file, and they are size-checked before parsing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rmcp::model::{Implementation, Tool};
use sandbox_core::atomic_file::{Mode, write_atomic};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{UpstreamSpec, UpstreamTransport};
use crate::proxy::catalogue::RemoteKind;

/// Version of the file layout; bump it when the layout changes. 2 added `instructions` and
/// the `title` and `description` of `serverInfo`.
const FORMAT: u32 = 2;
/// Longest `instructions` kept, in characters; the rest is dropped.
pub(super) const MAX_INSTRUCTIONS_CHARS: usize = 4096;
/// Longest `serverInfo` field kept, in characters.
pub(super) const MAX_IDENTITY_CHARS: usize = 512;
/// Cache files larger than this are not parsed.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The fingerprint of a spec: what, when changed, may change the tool list.
///
/// It covers the transport kind, the command, its arguments, the names (not the values) of the
/// environment variables, the working directory, the URL, the names of the headers and the SSE
/// flag. Values of variables and headers are left out: they are often secrets, and rotating a
/// token does not change the tools.
pub(super) fn fingerprint(spec: &UpstreamSpec) -> String {
    let value = match &spec.transport {
        UpstreamTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => serde_json::json!({
            "stdio": {
                "command": command,
                "args": args,
                "env": env.keys().collect::<Vec<_>>(),
                "cwd": cwd.as_ref().map(|c| c.to_string_lossy()),
            }
        }),
        UpstreamTransport::Remote { url, headers, kind } => serde_json::json!({
            "remote": {
                "url": url,
                "headers": headers.keys().map(|k| k.to_ascii_lowercase()).collect::<Vec<_>>(),
                "sse": matches!(kind, RemoteKind::Sse),
            }
        }),
    };
    crate::digest::sha256_hex(value.to_string().as_bytes())
}

/// The cache file of a server: `<dir>/<name>.json`, with the name escaped so that any server
/// name gives one plain file inside `dir` (bytes other than ASCII letters, digits, `_`, `-`
/// and a non-leading `.` become `%XX`).
pub(super) fn file_for(dir: &Path, server: &str) -> PathBuf {
    let mut name = String::with_capacity(server.len() + 5);
    for (i, byte) in server.bytes().enumerate() {
        let plain =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if plain {
            name.push(char::from(byte));
        } else {
            let _ = write!(name, "%{byte:02X}");
        }
    }
    if name.is_empty() {
        name.push('%');
    }
    name.push_str(".json");
    dir.join(name)
}

/// The identity a server reported in its `initialize` answer (`serverInfo`), each field
/// bounded to [`MAX_IDENTITY_CHARS`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerIdentity {
    /// Its `name`.
    pub name: String,
    /// Its `version`.
    pub version: String,
    /// Its display `title`, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its `description`, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl From<&Implementation> for ServerIdentity {
    fn from(info: &Implementation) -> Self {
        let bounded = |text: &str| bound(text, MAX_IDENTITY_CHARS);
        Self {
            name: bounded(&info.name),
            version: bounded(&info.version),
            title: info.title.as_deref().map(bounded),
            description: info.description.as_deref().map(bounded),
        }
    }
}

/// What a server said about itself when it was last listed: live, or from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// Its tools.
    pub tools: Arc<Vec<Tool>>,
    /// Its `serverInfo`, if the server gave one.
    pub server_info: Option<ServerIdentity>,
    /// Its `instructions`, bounded to [`MAX_INSTRUCTIONS_CHARS`].
    pub instructions: Option<String>,
}

/// The first `max` characters of `text`.
pub(super) fn bound(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheFile {
    format: u32,
    server: String,
    fingerprint: String,
    server_info: Option<ServerIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instructions: Option<String>,
    listed_at_unix: u64,
    tools: Vec<Tool>,
}

/// The last file read, to answer again without parsing while the file is unchanged.
#[derive(Default)]
pub(super) struct Memo(Mutex<Option<Stamped>>);

/// A listing read from a file, with the file's modification time and length.
type Stamped = (SystemTime, u64, Arc<Listing>);

impl Memo {
    /// [`read`], parsing the file only when its modification time or length changed.
    pub(super) fn read(&self, path: &Path, fingerprint: &str) -> Option<Arc<Listing>> {
        let metadata = std::fs::metadata(path).ok()?;
        let stamp = (metadata.modified().ok()?, metadata.len());
        let mut memo = self.0.lock().expect("cache memo lock");
        if let Some((modified, len, listing)) = memo.as_ref()
            && (*modified, *len) == stamp
        {
            return Some(listing.clone());
        }
        let listing = Arc::new(read(path, fingerprint)?);
        *memo = Some((stamp.0, stamp.1, listing.clone()));
        Some(listing)
    }
}

/// The cached listing of a server, if the file exists, parses, and matches `fingerprint`.
pub(super) fn read(path: &Path, fingerprint: &str) -> Option<Listing> {
    let metadata = std::fs::metadata(path).ok()?;
    if metadata.len() > MAX_FILE_BYTES {
        warn!(path = %path.display(), bytes = metadata.len(), "tool cache file too large; ignored");
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let file: CacheFile = match serde_json::from_slice(&bytes) {
        Ok(file) => file,
        Err(e) => {
            debug!(path = %path.display(), error = %e, "unreadable tool cache file; ignored");
            return None;
        }
    };
    if file.format != FORMAT || file.fingerprint != fingerprint {
        debug!(path = %path.display(), "tool cache is for another spec or layout; ignored");
        return None;
    }
    Some(Listing {
        tools: Arc::new(file.tools),
        server_info: file.server_info,
        instructions: file
            .instructions
            .map(|text| bound(&text, MAX_INSTRUCTIONS_CHARS)),
    })
}

/// Write the listing of a server, atomically (`sandbox_core::atomic_file`). Failures are
/// logged, not returned: the cache is an optimisation.
pub(super) async fn write(path: PathBuf, server: String, fingerprint: String, listing: &Listing) {
    let listed_at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let file = CacheFile {
        format: FORMAT,
        server,
        fingerprint,
        server_info: listing.server_info.clone(),
        instructions: listing
            .instructions
            .as_deref()
            .map(|text| bound(text, MAX_INSTRUCTIONS_CHARS)),
        listed_at_unix,
        tools: listing.tools.as_ref().clone(),
    };
    let bytes = match serde_json::to_vec_pretty(&file) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(error = %e, "cannot serialise the tool cache");
            return;
        }
    };
    let Some(dir) = path.parent().map(Path::to_path_buf) else {
        return;
    };
    let target = path.clone();
    let written = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        write_atomic(&target, &bytes, Mode::Masked(0o666))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "cannot write the tool cache");
    } else {
        debug!(path = %path.display(), "tool cache written");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn stdio(command: &str, env: &[(&str, &str)]) -> UpstreamSpec {
        UpstreamSpec {
            name: "s".into(),
            transport: UpstreamTransport::Stdio {
                command: command.into(),
                args: vec!["-x".into()],
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                cwd: None,
            },
        }
    }

    #[test]
    fn fingerprint_ignores_env_values_but_not_keys() {
        let a = fingerprint(&stdio("uvx", &[("TOKEN", "one")]));
        assert_eq!(a, fingerprint(&stdio("uvx", &[("TOKEN", "two")])));
        assert_ne!(a, fingerprint(&stdio("uvx", &[("OTHER", "one")])));
        assert_ne!(a, fingerprint(&stdio("npx", &[("TOKEN", "one")])));
        let remote = UpstreamSpec {
            name: "s".into(),
            transport: UpstreamTransport::Remote {
                url: "http://127.0.0.1/mcp".into(),
                headers: BTreeMap::new(),
                kind: RemoteKind::Http,
            },
        };
        assert_ne!(a, fingerprint(&remote));
    }

    #[test]
    fn file_names_stay_inside_the_directory() {
        let dir = Path::new("/cache");
        assert_eq!(file_for(dir, "time"), Path::new("/cache/time.json"));
        assert_eq!(file_for(dir, "a.b"), Path::new("/cache/a.b.json"));
        assert_eq!(file_for(dir, ".."), Path::new("/cache/%2E..json"));
        assert_eq!(file_for(dir, "a/b"), Path::new("/cache/a%2Fb.json"));
        assert_eq!(file_for(dir, ""), Path::new("/cache/%.json"));
        assert_ne!(file_for(dir, "%2F"), file_for(dir, "/"));
    }

    fn listing(instructions: Option<&str>) -> Listing {
        let mut info = Implementation::new("srv", "1.0");
        info.title = Some("A server".into());
        info.description = Some("x".repeat(MAX_IDENTITY_CHARS + 10));
        Listing {
            tools: Arc::new(vec![Tool::new(
                "t",
                "does t",
                Arc::new(serde_json::Map::new()),
            )]),
            server_info: Some(ServerIdentity::from(&info)),
            instructions: instructions.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_listing_round_trips_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file_for(dir.path(), "s");
        let long = "é".repeat(MAX_INSTRUCTIONS_CHARS + 5);
        let written = listing(Some(&long));
        write(path.clone(), "s".into(), "f".into(), &written).await;
        let read_back = read(&path, "f").expect("the file answers");
        assert_eq!(read_back.tools, written.tools);
        let info = read_back.server_info.expect("serverInfo kept");
        assert_eq!(info.title.as_deref(), Some("A server"));
        assert_eq!(
            info.description.map(|d| d.chars().count()),
            Some(MAX_IDENTITY_CHARS)
        );
        assert_eq!(
            read_back.instructions.map(|i| i.chars().count()),
            Some(MAX_INSTRUCTIONS_CHARS)
        );
        assert!(read(&path, "another").is_none(), "another fingerprint");
    }

    #[test]
    fn a_file_of_the_old_layout_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file_for(dir.path(), "s");
        let old = serde_json::json!({"format": 1, "server": "s", "fingerprint": "f",
            "serverInfo": {"name": "srv", "version": "1"}, "listedAtUnix": 0, "tools": []});
        std::fs::write(&path, old.to_string()).expect("write");
        assert!(read(&path, "f").is_none());
    }
}
