//! Durable sessions (issue 17, in progress): a session's state written to the host as opaque
//! bytes, to resume it after a restart, an idle reap or a suspension, and to fork it.
//!
//! Today only the file format is here ([`format`]): a header the host reads and checks, and
//! the payload the sandbox serialised, which the host never interprets. The store (one file
//! per session under `$MCP_BRIDGE_STATE_DIR/checkpoints/<scope>/`), the guest's side and the
//! triggers come next.

pub mod format;
