//! The checkpoint file: a magic line, a JSON header the host can read, and the guest's opaque
//! payload, checked by length and SHA-256.
//!
//! ```text
//! MCPCKPT1\n
//! <u32 big-endian header length><header JSON>
//! <payload: header.payload_bytes bytes>
//! ```
//!
//! Trust: the payload is what a sandbox serialised (pickles, a tar of `/workspace`); the host
//! never interprets it, only stores it and hands it back to a sandbox of the same kind. The
//! header is parsed by the host, so it is bounded ([`MAX_HEADER_BYTES`]) and every field is
//! checked; a file that fails any check is [`FormatError`], never a panic.

use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;

/// The first bytes of every checkpoint file.
pub const MAGIC: &[u8] = b"MCPCKPT1\n";
/// The largest header read.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// What the host knows of a checkpoint without reading its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// When it was taken, seconds since the Unix epoch.
    pub created_at_unix: u64,
    /// The durable identity of the scope it belongs to (`stdio:<client>`), for listings.
    #[serde(default)]
    pub scope: String,
    /// The interpreter that wrote the payload, e.g. `CPython 3.15.0`: only the same one may
    /// read it back.
    pub interpreter: String,
    /// The backend the session ran on.
    pub backend: String,
    /// The guest runtime's version (a hash of its source).
    pub runtime: String,
    /// The names the payload holds.
    pub names: Vec<String>,
    /// Names that could not be saved, each with why.
    pub unsaveable: Vec<String>,
    /// Length of the payload.
    pub payload_bytes: u64,
    /// SHA-256 of the payload, lowercase hex.
    pub payload_sha256: String,
}

/// Why a checkpoint file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// It does not start with [`MAGIC`].
    #[error("it is not a checkpoint file (wrong magic)")]
    NotACheckpoint,
    /// It ends before its header or payload does.
    #[error("it is truncated: {0}")]
    Truncated(&'static str),
    /// Its header is too large or not the JSON expected.
    #[error("its header is unreadable: {0}")]
    BadHeader(String),
    /// Its payload does not match the header's length or digest.
    #[error("its payload does not match its header ({0})")]
    PayloadMismatch(&'static str),
}

/// The file for `header` and `payload`. `header`'s length and digest are set from `payload`.
pub fn encode(mut header: Header, payload: &[u8]) -> Vec<u8> {
    header.payload_bytes = payload.len() as u64;
    header.payload_sha256 = sha256_hex(payload);
    let json = serde_json::to_vec(&header).expect("headers serialise");
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + json.len() + payload.len());
    out.extend_from_slice(MAGIC);
    let length = u32::try_from(json.len()).expect("headers are small");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(payload);
    out
}

/// The header of a file, read from its first bytes only (for listings).
pub fn decode_header(bytes: &[u8]) -> Result<(Header, usize), FormatError> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or(FormatError::NotACheckpoint)?;
    let (length, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(FormatError::Truncated("no header length"))?;
    let length = u32::from_be_bytes(*length) as usize;
    if length > MAX_HEADER_BYTES {
        return Err(FormatError::BadHeader(format!(
            "{length} bytes, more than {MAX_HEADER_BYTES}"
        )));
    }
    let json = rest
        .get(..length)
        .ok_or(FormatError::Truncated("the header is cut short"))?;
    let header: Header =
        serde_json::from_slice(json).map_err(|e| FormatError::BadHeader(e.to_string()))?;
    Ok((header, MAGIC.len() + 4 + length))
}

/// The header and payload of a whole file, the payload checked against the header.
pub fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), FormatError> {
    let (header, start) = decode_header(bytes)?;
    let payload = &bytes[start..];
    if (payload.len() as u64) < header.payload_bytes {
        return Err(FormatError::Truncated("the payload is cut short"));
    }
    if payload.len() as u64 != header.payload_bytes {
        return Err(FormatError::PayloadMismatch("bytes after the payload"));
    }
    if sha256_hex(payload) != header.payload_sha256 {
        return Err(FormatError::PayloadMismatch("its SHA-256 differs"));
    }
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            created_at_unix: 1_800_000_000,
            scope: "stdio:test".into(),
            interpreter: "CPython 3.15.0".into(),
            backend: "wasi".into(),
            runtime: "abc123".into(),
            names: vec!["df".into(), "fit".into()],
            unsaveable: vec!["f: an open file".into()],
            payload_bytes: 0,
            payload_sha256: String::new(),
        }
    }

    #[test]
    fn a_file_round_trips() {
        let file = encode(header(), b"opaque bytes");
        let (read, payload) = decode(&file).expect("reads back");
        assert_eq!(payload, b"opaque bytes");
        assert_eq!(read.payload_bytes, 12);
        assert_eq!(read.names, header().names);
        assert_eq!(decode_header(&file).expect("header").0, read);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let file = encode(header(), b"opaque bytes");
        for cut in 0..file.len() {
            assert!(decode(&file[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_changed_payload_byte_is_caught() {
        let mut file = encode(header(), b"opaque bytes");
        let last = file.len() - 1;
        file[last] ^= 1;
        assert_eq!(
            decode(&file).unwrap_err(),
            FormatError::PayloadMismatch("its SHA-256 differs")
        );
    }

    #[test]
    fn garbage_and_huge_headers_are_refused() {
        assert_eq!(decode(b"garbage").unwrap_err(), FormatError::NotACheckpoint);
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&huge).unwrap_err(),
            FormatError::BadHeader(_)
        ));
        let mut not_json = MAGIC.to_vec();
        not_json.extend_from_slice(&3u32.to_be_bytes());
        not_json.extend_from_slice(b"{x}");
        assert!(matches!(
            decode(&not_json).unwrap_err(),
            FormatError::BadHeader(_)
        ));
    }
}
