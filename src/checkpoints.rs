//! Durable sessions (issue 17, in progress): a session's state written to the host as opaque
//! bytes, to resume it after a restart, an idle reap or a suspension, and to fork it.
//!
//! Today the file format ([`format`]: a header the host reads and checks, and the payload
//! the sandbox serialised, which the host never interprets) and the store ([`store`]: one
//! file per session and scope, private, atomic, capped, pruned by age) are here; the guest's
//! side and the triggers (idle reap, shutdown, suspension, resume) come next.

pub mod format;
pub mod store;
