//! Calls from the guest to the host (`rpc` frames), answered by a handler the caller of a
//! run provides. The session engine validates the frame's shape and the run it belongs to;
//! the handler validates the method, its parameters and what the run may reach.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most calls one session may have in flight at once.
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

/// Why a call failed, as the guest sees it (`kind` is one of the kinds in `docs/frames.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// Machine-readable kind: `not_allowed`, `unknown_server`, `unknown_tool`,
    /// `invalid_params`, `upstream`, `busy`, `not_found`, `internal`; for `install` also
    /// `disabled`, `no_wheel`, `sdist_only`, `too_large`, `install_failed`.
    pub kind: String,
    /// A sentence for the user.
    pub message: String,
}

impl RpcError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}

/// Serves the calls of one run.
#[async_trait]
pub trait RpcHandler: Send + Sync + std::fmt::Debug {
    /// Answer one call. `params` is the frame's `params` object.
    async fn call(&self, method: &str, params: Map<String, Value>) -> Result<Value, RpcError>;
}

/// A handler that serves nothing: every call is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCalls;

#[async_trait]
impl RpcHandler for NoCalls {
    async fn call(&self, method: &str, _params: Map<String, Value>) -> Result<Value, RpcError> {
        Err(RpcError::new(
            "not_allowed",
            format!("`{method}` is not available here"),
        ))
    }
}
