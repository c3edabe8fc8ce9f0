//! Reading and checking the tokens file (the format is in the module above).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{MIN_TOKEN_LEN, Tenant, Tenants};

/// The largest tokens file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What a tenant may use at once; `None` is not capped for the tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Live sandbox sessions, over all of the tenant's MCP sessions.
    pub max_sessions: Option<usize>,
    /// Runs started in any minute.
    pub runs_per_minute: Option<usize>,
    /// Runs in progress at once.
    pub max_concurrent_runs: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDocument {
    tenants: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    tokens: Vec<String>,
    #[serde(flatten)]
    limits: Limits,
}

/// Why the tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenantsFileError {
    /// It could not be read.
    #[error("cannot read the tokens file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It is larger than anyone's list of tokens.
    #[error("the tokens file {0} is larger than 1 MiB")]
    TooLarge(PathBuf),
    /// It is not the expected JSON.
    #[error("the tokens file {path} is not valid: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tenant and key (never a token).
        why: String,
    },
}

/// Reads and checks the tokens file at `path`.
pub fn read(path: &Path) -> Result<Tenants, TenantsFileError> {
    let read_error = |source| TenantsFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(TenantsFileError::TooLarge(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(&text).map_err(|why| TenantsFileError::Invalid {
        path: path.to_path_buf(),
        why,
    })
}

/// Checks the document `text`; the error names the tenant and key at fault.
pub(super) fn parse(text: &str) -> Result<Tenants, String> {
    // serde's messages quote the values they reject, which could be a token: say where
    // instead.
    let document: FileDocument = serde_json::from_str(text).map_err(|e| {
        format!(
            "expected {{\"tenants\": {{NAME: {{\"tokens\": [...], limits...}}}}}} (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if document.tenants.is_empty() {
        return Err("it names no tenants".to_owned());
    }
    let mut seen = HashSet::new();
    let mut tenants = Vec::new();
    for (name, entry) in document.tenants {
        check_name(&name)?;
        let entry: TenantEntry = serde_json::from_value(entry).map_err(|e| {
            let what = e.to_string();
            // Unknown keys and wrong types are safe to name; token values never appear in
            // these messages because `tokens` takes any string.
            format!("tenant {name:?}: {what}")
        })?;
        for (limit, value) in [
            ("max_sessions", entry.limits.max_sessions),
            ("runs_per_minute", entry.limits.runs_per_minute),
            ("max_concurrent_runs", entry.limits.max_concurrent_runs),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "tenant {name:?}: {limit} is 0, which refuses everything; leave it out for no cap"
                ));
            }
        }
        if entry.tokens.is_empty() {
            return Err(format!("tenant {name:?} has no tokens"));
        }
        let mut digests = Vec::new();
        for (index, token) in entry.tokens.iter().enumerate() {
            let digest = digest_of(token)
                .map_err(|why| format!("tenant {name:?}, token {}: {why}", index + 1))?;
            if !seen.insert(digest) {
                return Err(format!(
                    "tenant {name:?}, token {}: the same token is given twice",
                    index + 1
                ));
            }
            digests.push(digest);
        }
        tenants.push((Arc::new(Tenant::new(name, entry.limits)), digests));
    }
    Ok(Tenants::new(tenants))
}

/// A tenant name: what saved state is filed under, so a plain file name.
fn check_name(name: &str) -> Result<(), String> {
    if name == super::DEFAULT_TENANT {
        return Err(format!(
            "tenant name {name:?} is reserved for the single token's clients (MCP_BRIDGE_HTTP_TOKEN)"
        ));
    }
    let fine = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "tenant name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting \
             with '.'"
        ))
    }
}

/// The SHA-256 of a token, from `sha256:HEX` or the token itself.
fn digest_of(token: &str) -> Result<[u8; 32], String> {
    if let Some(hex_digest) = token.strip_prefix("sha256:") {
        return decode_digest(hex_digest)
            .ok_or_else(|| "a sha256: token needs 64 hex digits".to_owned());
    }
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "shorter than {MIN_TOKEN_LEN} characters: too easy to guess"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space or a control character".to_owned());
    }
    Ok(Sha256::digest(token.as_bytes()).into())
}

/// 64 hex digits as 32 bytes.
fn decode_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0_u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_two_tenants_reads_with_limits_and_hashed_tokens() {
        let hashed = format!("sha256:{}", crate::digest::sha256_hex(b"hashed-token-of-b"));
        let text = format!(
            r#"{{"tenants": {{
                "team-a": {{"tokens": ["plain-token-of-team-a"], "max_sessions": 3,
                            "runs_per_minute": 60, "max_concurrent_runs": 2}},
                "b": {{"tokens": ["{hashed}"]}}
            }}}}"#
        );
        let tenants = parse(&text).unwrap();
        assert_eq!(tenants.names(), ["team-a", "b"]);
        let a = tenants.admit("plain-token-of-team-a").unwrap();
        assert_eq!(a.limits().max_sessions, Some(3));
        assert_eq!(a.limits().runs_per_minute, Some(60));
        assert_eq!(tenants.admit("hashed-token-of-b").unwrap().name(), "b");
        assert_eq!(tenants.get("b").unwrap().limits(), &Limits::default());
    }

    #[test]
    fn mistakes_are_named_and_no_token_is_ever_quoted() {
        let secret = "a-secret-token-value";
        for (text, says) in [
            (r#"{"tenants": {}}"#.to_owned(), "no tenants"),
            (r#"{"tenant": {}}"#.to_owned(), "expected"),
            (
                r#"{"tenants": {"../x": {"tokens": ["a-secret-token-value"]}}}"#.to_owned(),
                "tenant name",
            ),
            (
                r#"{"tenants": {"a": {"tokens": []}}}"#.to_owned(),
                "no tokens",
            ),
            (
                r#"{"tenants": {"a": {"tokens": ["short"]}}}"#.to_owned(),
                "shorter than 16",
            ),
            (
                r#"{"tenants": {"a": {"tokens": ["sha256:abc"]}}}"#.to_owned(),
                "64 hex digits",
            ),
            (
                format!(r#"{{"tenants": {{"a": {{"tokens": ["{secret}"], "max_runs": 1}}}}}}"#),
                "max_runs",
            ),
            (
                format!(r#"{{"tenants": {{"a": {{"tokens": ["{secret}"], "max_sessions": 0}}}}}}"#),
                "is 0",
            ),
            (
                format!(
                    r#"{{"tenants": {{"a": {{"tokens": ["{secret}"]}}, "b": {{"tokens": ["{secret}"]}}}}}}"#
                ),
                "given twice",
            ),
            (
                format!(r#"{{"tenants": {{"a": {{"tokens": ["{secret}", 3]}}}}}}"#),
                "tenant \"a\"",
            ),
        ] {
            let Err(why) = parse(&text) else {
                panic!("{text} was accepted");
            };
            assert!(why.contains(says), "{text}: {why}");
            assert!(!why.contains(secret), "{why}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = read(Path::new("/nonexistent/tokens.json")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/tokens.json"));
    }
}
