//! The host's side of the checkpoint calls (`docs/frames.md`, "Runtime actions"): bytes the
//! guest sends in `checkpoint_*` calls go to the [`Store`]; a stored checkpoint goes back in
//! answers to `restore_*` calls.
//!
//! Trust: everything here comes from a sandbox. Chunks must arrive in order (by offset), a
//! checkpoint may not outgrow the store's cap (refused as soon as it would), and the names
//! the guest reports are bounded before they reach a header. The bytes themselves are never
//! interpreted.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sandbox_core::RpcError;
use serde_json::{Map, Value, json};
use tracing::info;

use super::format::Header;
use super::store::Store;
use crate::sessions::validate_name;

/// Bytes of payload per `restore_chunk` answer.
const RESTORE_CHUNK: usize = 4 << 20;
/// Room left for the header under the cap (headers of thousands of names fit).
const HEADER_ALLOWANCE: u64 = 64 << 10;
/// Most names a header keeps of each list the guest reports.
const MAX_NAMES: usize = 10_000;
/// Longest name (with its reason) a header keeps.
const MAX_NAME_CHARS: usize = 300;

/// What identifies the guest that wrote a checkpoint: only the same kind may read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The interpreter, e.g. `cpython-wasi 3.13.1`.
    pub interpreter: String,
    /// The backend.
    pub backend: String,
    /// The guest runtime's version.
    pub runtime: String,
}

impl Stamp {
    /// Why a checkpoint with `header` may not be loaded by a guest of this stamp, if it may
    /// not.
    pub fn refuses(&self, header: &Header) -> Option<String> {
        let differs = |what: &str, theirs: &str, ours: &str| {
            (theirs != ours).then(|| {
                format!("it was saved by another {what} ({theirs}; this session runs {ours})")
            })
        };
        differs("interpreter", &header.interpreter, &self.interpreter)
            .or_else(|| differs("backend", &header.backend, &self.backend))
            .or_else(|| differs("runtime version", &header.runtime, &self.runtime))
    }
}

/// Where the checkpoints of one session go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The store.
    pub store: Arc<Store>,
    /// The durable identity of the session's scope.
    pub scope: String,
    /// The session's name.
    pub session: String,
    /// The guest's stamp, written into each header.
    pub stamp: Stamp,
}

/// What a checkpoint call stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The session it was stored as.
    pub session: String,
    /// Payload bytes.
    pub bytes: u64,
    /// Names it holds.
    pub names: usize,
    /// Names that could not be saved, with why.
    pub unsaveable: Vec<String>,
}

#[derive(Debug)]
struct Upload {
    session: String,
    bytes: Vec<u8>,
}

/// The `checkpoint_*` calls of one run: a checkpoint of the run's session (a runtime action,
/// or `mcp.runtime.checkpoint()`) or a copy of it under another name (`fork_session`).
#[derive(Debug)]
pub struct CheckpointCalls {
    target: Target,
    upload: Mutex<Option<Upload>>,
    saved: Mutex<Option<Saved>>,
}

impl CheckpointCalls {
    /// Calls storing checkpoints for `target`.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            upload: Mutex::new(None),
            saved: Mutex::new(None),
        }
    }

    /// Whether `method` is one of these calls.
    pub fn serves(method: &str) -> bool {
        method.starts_with("checkpoint_")
    }

    /// What the last commit of this run stored, if any.
    pub fn saved(&self) -> Option<Saved> {
        self.saved.lock().expect("saved lock").clone()
    }

    /// Answer one `checkpoint_*` call.
    pub async fn call(&self, method: &str, params: &Map<String, Value>) -> Result<Value, RpcError> {
        match method {
            "checkpoint_begin" => self.begin(params),
            "checkpoint_chunk" => self.chunk(params),
            "checkpoint_commit" => self.commit(params).await,
            other => Err(RpcError::new(
                "invalid_params",
                format!("unknown method `{other}`"),
            )),
        }
    }

    fn begin(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let session = match params.get("session") {
            None | Some(Value::Null) => self.target.session.clone(),
            Some(Value::String(name)) => {
                validate_name(name).map_err(|e| RpcError::new("invalid_params", e.to_string()))?;
                name.clone()
            }
            Some(_) => {
                return Err(RpcError::new(
                    "invalid_params",
                    "`session` must be a session name or null",
                ));
            }
        };
        *self.upload.lock().expect("upload lock") = Some(Upload {
            session,
            bytes: Vec::new(),
        });
        Ok(json!({ "limit": self.payload_limit() }))
    }

    /// The most payload bytes a checkpoint may have: the store's cap, less room for an
    /// ordinary header (a larger one is still refused by the store, with the size named).
    fn payload_limit(&self) -> u64 {
        let limit = self.target.store.limit();
        limit.saturating_sub(HEADER_ALLOWANCE.min(limit / 2))
    }

    fn chunk(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let offset = params.get("offset").and_then(Value::as_u64);
        let data = params.get("data").and_then(Value::as_str);
        let (Some(offset), Some(data)) = (offset, data) else {
            return Err(RpcError::new(
                "invalid_params",
                "checkpoint_chunk takes `offset` (an integer) and `data` (base64)",
            ));
        };
        let mut upload = self.upload.lock().expect("upload lock");
        let Some(current) = upload.as_mut() else {
            return Err(RpcError::new(
                "invalid_params",
                "checkpoint_chunk before checkpoint_begin",
            ));
        };
        if offset != current.bytes.len() as u64 {
            *upload = None;
            return Err(RpcError::new(
                "invalid_params",
                "checkpoint chunks must come in order; the checkpoint was dropped",
            ));
        }
        let decoded = BASE64
            .decode(data)
            .map_err(|e| RpcError::new("invalid_params", format!("bad base64: {e}")))?;
        let total = current.bytes.len() as u64 + decoded.len() as u64;
        let limit = self.payload_limit();
        if total > limit {
            *upload = None;
            return Err(RpcError::new(
                "too_large",
                format!(
                    "the checkpoint is over {total} bytes, more than the {limit} allowed \
                     (MCP_BRIDGE_CHECKPOINT_LIMIT)"
                ),
            ));
        }
        current.bytes.extend_from_slice(&decoded);
        Ok(Value::Null)
    }

    async fn commit(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let upload = self.upload.lock().expect("upload lock").take();
        let Some(upload) = upload else {
            return Err(RpcError::new(
                "invalid_params",
                "checkpoint_commit before checkpoint_begin",
            ));
        };
        let announced = params.get("bytes").and_then(Value::as_u64);
        if announced != Some(upload.bytes.len() as u64) {
            return Err(RpcError::new(
                "invalid_params",
                format!(
                    "the checkpoint announced {announced:?} bytes but {} came",
                    upload.bytes.len()
                ),
            ));
        }
        let names = bounded_names(params.get("saved"));
        let unsaveable = bounded_names(params.get("unsaveable"));
        let created_at_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = Header {
            created_at_unix,
            scope: self.target.scope.clone(),
            interpreter: self.target.stamp.interpreter.clone(),
            backend: self.target.stamp.backend.clone(),
            runtime: self.target.stamp.runtime.clone(),
            names: names.clone(),
            unsaveable: unsaveable.clone(),
            payload_bytes: 0,
            payload_sha256: String::new(),
        };
        let store = self.target.store.clone();
        let scope = self.target.scope.clone();
        let session = upload.session.clone();
        let payload = upload.bytes;
        let bytes = payload.len() as u64;
        tokio::task::spawn_blocking(move || store.save(&scope, &session, header, &payload))
            .await
            .map_err(|e| RpcError::new("internal", format!("saving failed: {e}")))?
            .map_err(|e| {
                let kind = match e {
                    super::store::StoreError::TooLarge { .. } => "too_large",
                    _ => "internal",
                };
                RpcError::new(kind, sandbox_core::error_chain(&e))
            })?;
        info!(session = %upload.session, bytes, "checkpoint saved");
        *self.saved.lock().expect("saved lock") = Some(Saved {
            session: upload.session.clone(),
            bytes,
            names: names.len(),
            unsaveable: unsaveable.clone(),
        });
        Ok(json!({
            "session": upload.session,
            "bytes": bytes,
            "saved": names,
            "unsaveable": unsaveable,
            "at": crate::units::format_utc(created_at_unix),
        }))
    }
}

/// A list of strings from the guest, bounded in count and length (anything else dropped).
fn bounded_names(value: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_str)
        .take(MAX_NAMES)
        .map(|name| name.chars().take(MAX_NAME_CHARS).collect())
        .collect()
}

/// The `restore_*` calls of one `restore` run: a stored payload handed back in chunks.
#[derive(Debug)]
pub struct RestoreCalls {
    payload: Vec<u8>,
    failed: Mutex<Option<Vec<String>>>,
}

impl RestoreCalls {
    /// Calls handing `payload` to the guest.
    pub fn new(payload: Vec<u8>) -> Self {
        Self {
            payload,
            failed: Mutex::new(None),
        }
    }

    /// The names the guest could not restore, once it said (`restore_done`).
    pub fn failed(&self) -> Option<Vec<String>> {
        self.failed.lock().expect("failed lock").clone()
    }
}

impl RestoreCalls {
    /// Whether `method` is one of these calls.
    pub fn serves(method: &str) -> bool {
        method.starts_with("restore_")
    }

    /// Answer one `restore_*` call.
    pub fn call(&self, method: &str, params: &Map<String, Value>) -> Result<Value, RpcError> {
        match method {
            "restore_begin" => Ok(json!({ "bytes": self.payload.len() })),
            "restore_chunk" => {
                let offset = params
                    .get("offset")
                    .and_then(Value::as_u64)
                    .and_then(|o| usize::try_from(o).ok())
                    .filter(|o| *o < self.payload.len())
                    .ok_or_else(|| {
                        RpcError::new(
                            "invalid_params",
                            "restore_chunk takes an `offset` inside the checkpoint",
                        )
                    })?;
                let end = (offset + RESTORE_CHUNK).min(self.payload.len());
                Ok(json!({ "data": BASE64.encode(&self.payload[offset..end]) }))
            }
            "restore_done" => {
                *self.failed.lock().expect("failed lock") =
                    Some(bounded_names(params.get("failed")));
                Ok(Value::Null)
            }
            other => Err(RpcError::new(
                "invalid_params",
                format!("unknown method `{other}`"),
            )),
        }
    }
}

/// The calls of a runtime action run: the checkpoint or restore calls, and `install` (for
/// an interpreter that must fetch cloudpickle first) when the session has a packages
/// directory. Nothing else is served.
#[derive(Debug, Default)]
pub struct ActionCalls {
    /// The checkpoint calls, in a `checkpoint` action.
    pub checkpoint: Option<Arc<CheckpointCalls>>,
    /// The restore calls, in a `restore` action.
    pub restore: Option<Arc<RestoreCalls>>,
    /// Where `install` goes, if anywhere.
    pub install: Option<Arc<dyn sandbox_core::RpcHandler>>,
}

#[async_trait::async_trait]
impl sandbox_core::RpcHandler for ActionCalls {
    async fn call(&self, method: &str, params: Map<String, Value>) -> Result<Value, RpcError> {
        match (&self.checkpoint, &self.restore, &self.install) {
            (Some(checkpoint), _, _) if CheckpointCalls::serves(method) => {
                checkpoint.call(method, &params).await
            }
            (_, Some(restore), _) if RestoreCalls::serves(method) => restore.call(method, &params),
            (_, _, Some(install)) if method == "install" => install.call(method, params).await,
            _ => Err(RpcError::new(
                "not_allowed",
                format!("`{method}` is not available while a session is saved or restored"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &std::path::Path, limit: u64) -> Target {
        Target {
            store: Arc::new(Store::new(dir.to_path_buf(), limit)),
            scope: "stdio:test".into(),
            session: "default".into(),
            stamp: Stamp {
                interpreter: "cpython 3.13".into(),
                backend: "wasi".into(),
                runtime: "r1".into(),
            },
        }
    }

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn chunks_in_order_are_stored_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let calls = CheckpointCalls::new(target(dir.path(), 4 << 20));
        calls
            .call("checkpoint_begin", &params(json!({"session": "copy"})))
            .await
            .unwrap();
        for (offset, part) in [(0, "abc"), (3, "def")] {
            let data = BASE64.encode(part);
            calls
                .call(
                    "checkpoint_chunk",
                    &params(json!({"offset": offset, "data": data})),
                )
                .await
                .unwrap();
        }
        let answer = calls
            .call(
                "checkpoint_commit",
                &params(json!({"bytes": 6, "saved": ["x"], "unsaveable": ["f: an open file"]})),
            )
            .await
            .unwrap();
        assert_eq!(answer["session"], "copy");
        assert_eq!(calls.saved().unwrap().bytes, 6);
        let store = Store::new(dir.path().to_path_buf(), 4 << 20);
        let (header, payload) = store.load("stdio:test", "copy").unwrap().unwrap();
        assert_eq!(payload, b"abcdef");
        assert_eq!(header.unsaveable, ["f: an open file"]);

        let restore = RestoreCalls::new(payload);
        let begun = restore.call("restore_begin", &Map::new()).unwrap();
        assert_eq!(begun["bytes"], 6);
        let chunk = restore
            .call("restore_chunk", &params(json!({"offset": 2})))
            .unwrap();
        assert_eq!(
            BASE64.decode(chunk["data"].as_str().unwrap()).unwrap(),
            b"cdef"
        );
        assert!(
            restore
                .call("restore_chunk", &params(json!({"offset": 6})))
                .is_err()
        );
    }

    #[tokio::test]
    async fn out_of_order_oversized_and_badly_named_checkpoints_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 8; // half for the header, 4 bytes of payload
        let calls = CheckpointCalls::new(target(dir.path(), limit));
        let bad_name = calls
            .call("checkpoint_begin", &params(json!({"session": "../x"})))
            .await
            .unwrap_err();
        assert_eq!(bad_name.kind, "invalid_params");
        calls
            .call("checkpoint_begin", &params(json!({"session": null})))
            .await
            .unwrap();
        let skipped = calls
            .call(
                "checkpoint_chunk",
                &params(json!({"offset": 1, "data": "YQ=="})),
            )
            .await
            .unwrap_err();
        assert!(skipped.message.contains("in order"), "{skipped}");
        calls
            .call("checkpoint_begin", &params(json!({})))
            .await
            .unwrap();
        let data = BASE64.encode("12345");
        let over = calls
            .call(
                "checkpoint_chunk",
                &params(json!({"offset": 0, "data": data})),
            )
            .await
            .unwrap_err();
        assert_eq!(over.kind, "too_large");
        assert!(over.message.contains("MCP_BRIDGE_CHECKPOINT_LIMIT"));
        assert!(
            calls
                .call("checkpoint_commit", &params(json!({"bytes": 0})))
                .await
                .is_err(),
            "the refused upload was dropped"
        );
    }

    #[test]
    fn a_checkpoint_of_another_kind_is_refused_with_the_difference_named() {
        let stamp = Stamp {
            interpreter: "cpython 3.13".into(),
            backend: "wasi".into(),
            runtime: "r1".into(),
        };
        let mut header = Header {
            created_at_unix: 0,
            scope: String::new(),
            interpreter: "cpython 3.13".into(),
            backend: "wasi".into(),
            runtime: "r1".into(),
            names: Vec::new(),
            unsaveable: Vec::new(),
            payload_bytes: 0,
            payload_sha256: String::new(),
        };
        assert_eq!(stamp.refuses(&header), None);
        header.backend = "podman".into();
        let why = stamp.refuses(&header).unwrap();
        assert!(why.contains("another backend (podman"), "{why}");
    }
}
