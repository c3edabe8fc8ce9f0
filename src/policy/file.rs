//! The policy file (`MCP_BRIDGE_TOOL_POLICY`): a JSON object whose keys are server names (or
//! `*`, every server) and whose values are policies as a server entry writes them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::PolicyError;
use super::rules::Rules;

/// The biggest policy file read.
const MAX_BYTES: u64 = 1 << 20;

/// The key that applies to every server.
pub const EVERY_SERVER: &str = "*";

/// A parsed policy file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Each key's rules: server names, and [`EVERY_SERVER`].
    pub servers: BTreeMap<String, Rules>,
}

impl PolicyFile {
    /// Read and check the file at `path`: every decision word, every key.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let read = |source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        file.take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_BYTES {
            return Err(PolicyError::TooLarge {
                path: path.to_path_buf(),
                limit: MAX_BYTES,
            });
        }
        Self::parse(path, &text)
    }

    /// Check the text of a policy file read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(text).map_err(|source| PolicyError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let Value::Object(map) = value else {
            return Err(PolicyError::Invalid {
                place: path.display().to_string(),
                key: String::new(),
                why: "expected an object whose keys are server names (or `*`)".into(),
            });
        };
        let mut servers = BTreeMap::new();
        for (server, value) in &map {
            let place = format!("{}, server `{server}`", path.display());
            servers.insert(server.clone(), Rules::parse(value, &place)?);
        }
        Ok(Self {
            path: path.to_path_buf(),
            servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Decision;

    #[test]
    fn servers_and_the_star_key_are_read() {
        let file = PolicyFile::parse(
            Path::new("/p.json"),
            r#"{"files": {"tools": {"write_*": "ask"}}, "*": "deny"}"#,
        )
        .unwrap();
        assert_eq!(
            file.servers["files"].rule_for("write_file").map(|r| r.0),
            Some(Decision::Ask)
        );
        assert_eq!(file.servers["*"].default, Some(Decision::Deny));
    }

    #[test]
    fn errors_name_the_file_the_server_and_the_key() {
        let error = PolicyFile::parse(
            Path::new("/p.json"),
            r#"{"files": {"tools": {"write_file": "nope"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("/p.json, server `files`") && error.contains("`tools.write_file`"),
            "{error}"
        );
        let error = PolicyFile::parse(Path::new("/p.json"), "[1]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/p.json"), "{error}");
        let missing = PolicyFile::load(Path::new("/surely/not/here.json")).unwrap_err();
        assert!(
            missing.to_string().contains("/surely/not/here.json"),
            "{missing}"
        );
    }
}
