//! The host side of the frame protocol (described in full in `docs/frames.md`).
//!
//! What we trust: nothing the guest sends. Every guest frame is found by its per-session
//! marker, its declared length is checked against a cap *before* anything is buffered, and
//! its payload must parse as one of the [`GuestFrame`] shapes. Bytes outside frames are stray
//! output, returned as such and never interpreted.
//!
//! What we guarantee: memory held by a [`FrameScanner`] is bounded by the frame cap plus the
//! marker length, whatever the guest writes.

use memchr::memmem;
use serde::{Deserialize, Serialize};

// The guest runtime spells the marker, the nonce length and the frame caps again in Python
// (`guest/runtime/prelude.py`); a test in `guest.rs` checks its values against these.

/// Bytes before the nonce in a guest frame marker.
const MARKER_PREFIX: &[u8] = b"\x00\x1bMCPB";
/// Byte after the nonce in a guest frame marker.
const MARKER_SUFFIX: u8 = 0x1f;
/// Length of the nonce in hex characters.
pub const NONCE_LEN: usize = 32;
/// Length of the big-endian length prefix.
const LEN_BYTES: usize = 4;
/// Absolute ceiling on any frame, whatever the configured output limit.
pub const FRAME_CEILING: usize = 64 * 1024 * 1024;

/// A protocol violation by the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame declared more bytes than allowed.
    #[error("a frame of {declared} bytes exceeds the {limit}-byte cap")]
    Oversized {
        /// Declared payload length.
        declared: usize,
        /// The cap.
        limit: usize,
    },
    /// A frame's payload is not one of the known shapes.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A well-formed frame arrived when the session did not expect it.
    #[error("unexpected frame: {0}")]
    Unexpected(String),
}

/// The per-session random value that delimits guest frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh random nonce.
    pub fn random() -> Self {
        let bytes: [u8; NONCE_LEN / 2] = rand::random();
        Self(
            bytes
                .iter()
                .fold(String::with_capacity(NONCE_LEN), |mut hex, b| {
                    use std::fmt::Write as _;
                    let _ = write!(hex, "{b:02x}");
                    hex
                }),
        )
    }
    /// The nonce as the hex text sent in the `hello` frame.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The full marker that precedes every guest frame.
    pub fn marker(&self) -> Vec<u8> {
        let mut marker = Vec::with_capacity(MARKER_PREFIX.len() + NONCE_LEN + 1);
        marker.extend_from_slice(MARKER_PREFIX);
        marker.extend_from_slice(self.0.as_bytes());
        marker.push(MARKER_SUFFIX);
        marker
    }
}

/// One entry of the server catalogue the host sends to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The server's configured name.
    pub name: String,
    /// Its Python alias.
    pub alias: String,
    /// What it does, from its config.
    pub description: String,
}

/// Frames the host sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostFrame<'a> {
    /// Sent once after the runtime source.
    Hello {
        /// The session's marker nonce.
        nonce: &'a str,
        /// Servers the configuration knows.
        catalogue: &'a [CatalogueEntry],
        /// Output cap of a run in bytes, both streams together.
        output_limit: u64,
        /// The manual `mcp.runtime.capability_summary()` returns.
        #[serde(skip_serializing_if = "str::is_empty")]
        manual: &'a str,
        /// Opaque state for the runtime.
        state: serde_json::Value,
    },
    /// Execute code.
    Run {
        /// Run id, echoed in the result.
        id: u64,
        /// Python source.
        code: &'a str,
        /// Servers this run may use.
        servers: &'a [ServerRef],
        /// The run's deadline in milliseconds.
        timeout_ms: u64,
        /// The user's saved tools, when they changed since this session last got them.
        #[serde(skip_serializing_if = "Option::is_none")]
        saved_tools: Option<&'a str>,
        /// Send stdout in `output` frames while the run goes on.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        stream_output: bool,
        /// Send both streams in `output` frames, head and latest bytes, so that what the run
        /// wrote survives a kill (backends without a soft interrupt).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        keep_output: bool,
        /// A runtime operation to do instead of running `code`: `checkpoint` or `restore`.
        #[serde(skip_serializing_if = "Option::is_none")]
        action: Option<&'a str>,
    },
    /// The answer to one guest `rpc`.
    RpcResult {
        /// The guest's rpc id.
        id: u64,
        /// The result, when the call succeeded.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<&'a serde_json::Value>,
        /// The error, when it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a crate::rpc::RpcError>,
    },
}

/// A server a run may use, with its Python alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRef {
    /// The server's configured name.
    pub name: String,
    /// Its alias (`mcp_<alias>` in the sandbox).
    pub alias: String,
}

/// Frames the guest sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestFrame {
    /// The runtime is up.
    Ready(ReadyFrame),
    /// A run finished.
    Result(ResultFrame),
    /// A call to the host.
    Rpc(RpcFrame),
    /// Stdout written so far by a run that asked for streaming.
    Output(OutputFrame),
}

/// Payload of an `output` frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutputFrame {
    /// The run it belongs to.
    pub run: u64,
    /// The stream (`stdout` or `stderr`).
    pub stream: String,
    /// The text.
    pub text: String,
    /// Bytes of the stream the guest dropped just before `text` (kept output only).
    #[serde(default)]
    pub skipped: u64,
}

/// Payload of an `rpc` frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RpcFrame {
    /// Guest-chosen id, echoed in the answer.
    pub id: u64,
    /// The run the call belongs to.
    pub run: u64,
    /// What is called.
    pub method: String,
    /// Its parameters (an object).
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Payload of a `ready` frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReadyFrame {
    /// Python version, e.g. `3.12.0`.
    pub python: String,
    /// Implementation and platform, e.g. `cpython-wasi`.
    pub implementation: String,
}

/// Payload of a `result` frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResultFrame {
    /// The run's id.
    pub id: u64,
    /// Captured stdout (head and tail when cut).
    pub stdout: String,
    /// Captured stderr (head and tail when cut).
    pub stderr: String,
    /// Bytes of stdout dropped between head and tail.
    #[serde(default)]
    pub stdout_cut: u64,
    /// Bytes of stderr dropped between head and tail.
    #[serde(default)]
    pub stderr_cut: u64,
    /// Byte offset in `stdout` where the cut happened.
    #[serde(default)]
    pub stdout_cut_at: Option<u64>,
    /// Byte offset in `stderr` where the cut happened.
    #[serde(default)]
    pub stderr_cut_at: Option<u64>,
    /// The exception, if the code failed.
    pub error: Option<GuestErrorInfo>,
    /// How long the code ran, as measured by the guest.
    #[serde(default)]
    pub duration_ms: f64,
    /// Files the code created or changed under `/workspace/out/` during the run.
    #[serde(default)]
    pub files: Vec<OutFile>,
    /// Where the whole stdout was saved when the cap cut it (a file under `/workspace/out/`).
    #[serde(default)]
    pub stdout_saved: Option<String>,
    /// Where the whole stderr was saved when the cap cut it.
    #[serde(default)]
    pub stderr_saved: Option<String>,
}

/// A file the code wrote under `/workspace/out/` during a run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OutFile {
    /// Its path inside the sandbox.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content in base64, when it was small enough to send back.
    #[serde(default)]
    pub data: Option<String>,
}

/// Extra room in every guest frame's cap for the files a result carries back (base64 of
/// at most 4 MiB): the cap is `2 × output_limit + FRAME_SLACK`.
pub const FRAME_SLACK: usize = 7 << 20;

/// An exception raised by user code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct GuestErrorInfo {
    /// Exception type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Exception message.
    pub message: String,
    /// Traceback showing user frames only.
    pub traceback: String,
}

/// Encode a host frame: length prefix and JSON.
pub fn encode_host_frame(frame: &HostFrame<'_>) -> Vec<u8> {
    let payload = serde_json::to_vec(frame).expect("host frames always serialise");
    encode_raw(&payload)
}

/// Encode raw bytes (the runtime source) with a length prefix.
pub fn encode_raw(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("host frames are far below 4 GiB");
    let mut out = Vec::with_capacity(LEN_BYTES + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What the scanner found in the guest's stdout.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanEvent {
    /// Bytes outside any frame.
    Stray(Vec<u8>),
    /// A complete, valid frame.
    Frame(Box<GuestFrame>),
}

/// Splits the guest's stdout into frames and stray output.
#[derive(Debug)]
pub struct FrameScanner {
    finder: memmem::Finder<'static>,
    marker_len: usize,
    max_frame: usize,
    pending: Vec<u8>,
}

impl FrameScanner {
    /// A scanner for frames delimited by `nonce`, each at most `max_frame` bytes
    /// (clamped to [`FRAME_CEILING`]).
    pub fn new(nonce: &Nonce, max_frame: usize) -> Self {
        let marker = nonce.marker();
        Self {
            marker_len: marker.len(),
            finder: memmem::Finder::new(&marker).into_owned(),
            max_frame: max_frame.min(FRAME_CEILING),
            pending: Vec::new(),
        }
    }

    /// Feed bytes read from the guest's stdout; found events are appended to `events`.
    /// An error is final: the session must end.
    pub fn push(&mut self, data: &[u8], events: &mut Vec<ScanEvent>) -> Result<(), FrameError> {
        self.pending.extend_from_slice(data);
        loop {
            let Some(start) = self.finder.find(&self.pending) else {
                // Keep only what could be the start of a marker; the rest is stray.
                let keep = self.partial_marker_suffix();
                let stray_end = self.pending.len() - keep;
                if stray_end > 0 {
                    events.push(ScanEvent::Stray(self.pending[..stray_end].to_vec()));
                    self.pending.drain(..stray_end);
                }
                return Ok(());
            };
            // Bytes before a marker are stray output whatever follows it, even a frame that
            // ends the session: emitting them first makes the events independent of how the
            // guest's writes were split into reads.
            if start > 0 {
                events.push(ScanEvent::Stray(self.pending[..start].to_vec()));
                self.pending.drain(..start);
            }
            let header_end = self.marker_len + LEN_BYTES;
            if self.pending.len() < header_end {
                return Ok(());
            }
            let len_bytes: [u8; LEN_BYTES] = self.pending[self.marker_len..header_end]
                .try_into()
                .expect("slice has LEN_BYTES bytes");
            let declared = u32::from_be_bytes(len_bytes) as usize;
            if declared > self.max_frame {
                return Err(FrameError::Oversized {
                    declared,
                    limit: self.max_frame,
                });
            }
            if self.pending.len() < header_end + declared {
                return Ok(());
            }
            let frame = parse_guest_frame(&self.pending[header_end..header_end + declared])?;
            events.push(ScanEvent::Frame(Box::new(frame)));
            self.pending.drain(..header_end + declared);
        }
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of the marker.
    fn partial_marker_suffix(&self) -> usize {
        let marker = self.finder.needle();
        let max = (self.marker_len - 1).min(self.pending.len());
        (1..=max)
            .rev()
            .find(|&n| self.pending[self.pending.len() - n..] == marker[..n])
            .unwrap_or(0)
    }
}

/// Parse and validate one guest frame payload.
pub fn parse_guest_frame(payload: &[u8]) -> Result<GuestFrame, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(nonce: &Nonce, json: &str) -> Vec<u8> {
        let mut out = nonce.marker();
        out.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
        out.extend_from_slice(json.as_bytes());
        out
    }

    const READY: &str = r#"{"type":"ready","python":"3.12.0","implementation":"cpython-wasi"}"#;

    fn scan_all(scanner: &mut FrameScanner, chunks: &[&[u8]]) -> Vec<ScanEvent> {
        let mut events = Vec::new();
        for chunk in chunks {
            scanner.push(chunk, &mut events).unwrap();
        }
        events
    }

    fn stray_text(events: &[ScanEvent]) -> Vec<u8> {
        events
            .iter()
            .filter_map(|e| match e {
                ScanEvent::Stray(b) => Some(b.clone()),
                ScanEvent::Frame(_) => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn frames_between_stray_bytes_are_found_byte_by_byte() {
        let nonce = Nonce::random();
        let mut input = b"hello \x00\x1bMC raw".to_vec();
        input.extend(frame(&nonce, READY));
        input.extend_from_slice(b"tail");
        let mut scanner = FrameScanner::new(&nonce, 1024);
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let events = scan_all(&mut scanner, &chunks);
        let frames = events
            .iter()
            .filter(|e| matches!(e, ScanEvent::Frame(_)))
            .count();
        assert_eq!(frames, 1);
        assert_eq!(stray_text(&events), b"hello \x00\x1bMC rawtail");
    }

    #[test]
    fn a_frame_with_another_nonce_is_stray_output() {
        let nonce = Nonce::random();
        let forged = frame(&Nonce::random(), READY);
        let mut scanner = FrameScanner::new(&nonce, 1024);
        let events = scan_all(&mut scanner, &[&forged]);
        assert!(events.iter().all(|e| matches!(e, ScanEvent::Stray(_))));
        assert_eq!(stray_text(&events), forged);
    }

    #[test]
    fn oversized_frames_fail_before_buffering() {
        let nonce = Nonce::random();
        let mut header = nonce.marker();
        header.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut scanner = FrameScanner::new(&nonce, 1024);
        let mut events = Vec::new();
        let err = scanner.push(&header, &mut events).unwrap_err();
        assert!(matches!(err, FrameError::Oversized { .. }));
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        let nonce = Nonce::random();
        let mut scanner = FrameScanner::new(&nonce, 1024);
        let mut events = Vec::new();
        for bad in [
            r#"{"type":"nope"}"#,
            "not json",
            r#"{"type":"result","id":-1}"#,
        ] {
            let mut scanner2 = FrameScanner::new(&nonce, 1024);
            assert!(
                scanner2.push(&frame(&nonce, bad), &mut events).is_err(),
                "{bad}"
            );
        }
        assert!(scanner.push(&frame(&nonce, READY), &mut events).is_ok());
    }

    #[test]
    fn stray_bytes_before_a_bad_frame_are_emitted_however_the_bytes_arrive() {
        // Found by the `guest_frames` fuzz target: read at once, the stray bytes before a
        // malformed or oversized frame were lost with the error; read in pieces, they were not.
        let nonce = Nonce::random();
        let mut malformed = b"last words".to_vec();
        malformed.extend(frame(&nonce, "not json"));
        let mut oversized = b"last words".to_vec();
        oversized.extend(nonce.marker());
        oversized.extend_from_slice(&u32::MAX.to_be_bytes());
        for input in [malformed, oversized] {
            for chunk in [input.len(), 1] {
                let mut scanner = FrameScanner::new(&nonce, 1024);
                let mut events = Vec::new();
                let error = input
                    .chunks(chunk)
                    .find_map(|c| scanner.push(c, &mut events).err());
                assert!(error.is_some(), "chunks of {chunk}");
                assert_eq!(stray_text(&events), b"last words", "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn pending_bytes_stay_bounded_without_markers() {
        let nonce = Nonce::random();
        let mut scanner = FrameScanner::new(&nonce, 1024);
        let mut events = Vec::new();
        for _ in 0..1000 {
            scanner.push(&[0u8; 4096], &mut events).unwrap();
            assert!(scanner.pending.len() < 64);
        }
    }

    #[test]
    fn host_frames_carry_a_length_prefix() {
        let encoded = encode_host_frame(&HostFrame::Run {
            id: 7,
            code: "pass",
            servers: &[],
            timeout_ms: 1000,
            saved_tools: None,
            stream_output: false,
            keep_output: false,
            action: None,
        });
        let len = u32::from_be_bytes(encoded[..4].try_into().unwrap()) as usize;
        assert_eq!(len, encoded.len() - 4);
        let json: serde_json::Value = serde_json::from_slice(&encoded[4..]).unwrap();
        assert_eq!(json["type"], "run");
        assert_eq!(json["id"], 7);
    }
}
