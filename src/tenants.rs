//! Tenants of a shared HTTP bridge: who a bearer token belongs to, and what each may use.
//!
//! # The tokens file (`MCP_BRIDGE_HTTP_TOKENS_FILE`)
//!
//! ```json
//! {
//!   "tenants": {
//!     "team-a": {
//!       "tokens": ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
//!       "max_sessions": 8,
//!       "runs_per_minute": 120,
//!       "max_concurrent_runs": 4
//!     },
//!     "ci": { "tokens": ["a-long-random-token-for-ci-jobs"] }
//!   }
//! }
//! ```
//!
//! A token is written as its SHA-256 (`sha256:` and 64 hex digits, so the file need not hold
//! secrets) or plainly (at least [`MIN_TOKEN_LEN`] characters). Each limit is optional; one
//! left out is not capped for the tenant (the bridge's own caps still hold). Every word is
//! checked when the file is read: an unknown key, a bad name, a short token or one given to
//! two tenants is an error naming it, and the bridge does not start.
//!
//! # What it guarantees
//!
//! - A presented token is compared with every known one, in constant time each, whatever
//!   matches: the time taken does not say which tenant, or how much of a token, was right.
//! - Tokens are never logged or shown: [`Tenant`] and [`Tenants`] print names only.
//! - Each refusal ([`QuotaRefusal`]) names the tenant, the limit and its value.

mod file;
mod quota;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sessions::Scope;
use crate::state::State;

pub use crate::checkpoints::identity::{DEFAULT_TENANT, durable_identity, tenant_of_identity};
pub use file::{Limits, TenantsFileError, read as read_file};
pub use quota::{QuotaRefusal, RunPermit};

/// The shortest token accepted when written plainly.
pub const MIN_TOKEN_LEN: usize = 16;

/// One tenant: its name, limits, and what it uses now.
#[derive(Debug)]
pub struct Tenant {
    name: String,
    limits: Limits,
    usage: quota::Usage,
    /// The sandbox scopes (one per MCP session) of its clients now.
    scopes: Mutex<Vec<Scope>>,
    /// Its saved tools and memory, opened on first use.
    state: OnceLock<Result<Arc<State>, String>>,
}

impl Tenant {
    /// A tenant named `name` with `limits`.
    pub fn new(name: impl Into<String>, limits: Limits) -> Self {
        Self {
            name: name.into(),
            limits,
            usage: quota::Usage::default(),
            scopes: Mutex::new(Vec::new()),
            state: OnceLock::new(),
        }
    }

    /// Whether this is the tenant of a bridge without a tokens file (or the single token's),
    /// whose state is the bridge's own.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_TENANT
    }

    /// Notes that `scope` (an MCP session's sandbox sessions) is this tenant's.
    pub fn add_scope(&self, scope: Scope) {
        let mut scopes = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }

    /// Forgets `scope` (its MCP session ended).
    pub fn remove_scope(&self, scope: Scope) {
        self.scopes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| *s != scope);
    }

    /// The scopes of this tenant's MCP sessions now.
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Its saved tools and memory: `<state_dir>/tenants/<name>`, opened once.
    pub fn state(&self, state_dir: &Path) -> Result<Arc<State>, String> {
        self.state
            .get_or_init(|| {
                State::open(state_dir.join("tenants").join(&self.name))
                    .map(Arc::new)
                    .map_err(|e| sandbox_core::error_chain(&e))
            })
            .clone()
    }

    /// The tenant of a bridge without a tokens file: no limits of its own.
    pub fn unlimited() -> Self {
        Self::new(DEFAULT_TENANT, Limits::default())
    }

    /// Its name, from the tokens file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admits one run now, or says which limit refuses it: at most
    /// [`Limits::max_concurrent_runs`] at once and [`Limits::runs_per_minute`] in any
    /// minute. The run counts as running until the permit is dropped.
    pub fn start_run(self: &Arc<Self>) -> Result<RunPermit, QuotaRefusal> {
        quota::start_run(self)
    }

    /// Whether one more live session is allowed, given `live` sessions of this tenant now.
    pub fn admits_session(&self, live: usize) -> Result<(), QuotaRefusal> {
        match self.limits.max_sessions {
            Some(max) if live >= max => Err(QuotaRefusal::Sessions {
                tenant: self.name.clone(),
                max,
            }),
            _ => Ok(()),
        }
    }
}

/// Every tenant of a tokens file, and the digests of their tokens.
pub struct Tenants {
    tokens: Vec<([u8; 32], Arc<Tenant>)>,
    tenants: Vec<Arc<Tenant>>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("tenants", &self.names())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Tenants {
    /// Tenants with the given token digests (SHA-256 of each token).
    pub(crate) fn new(tenants: Vec<(Arc<Tenant>, Vec<[u8; 32]>)>) -> Self {
        let tokens = tenants
            .iter()
            .flat_map(|(tenant, digests)| digests.iter().map(|d| (*d, tenant.clone())))
            .collect();
        Self {
            tokens,
            tenants: tenants.into_iter().map(|(tenant, _)| tenant).collect(),
        }
    }

    /// The tenant whose token is `token`, comparing against every token in constant time.
    pub fn admit(&self, token: &str) -> Option<Arc<Tenant>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (known, tenant) in &self.tokens {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// The tenants' names, in the file's order.
    pub fn names(&self) -> Vec<&str> {
        self.tenants.iter().map(|t| t.name()).collect()
    }

    /// The tenant named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.iter().find(|t| t.name() == name)
    }
}

/// Tenants from the text of a tokens file, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn parse_for_tests(text: &str) -> Tenants {
    file::parse(text).expect("a valid tokens file")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Tenants {
        let a = Arc::new(Tenant::new("a", Limits::default()));
        let b = Arc::new(Tenant::new("b", Limits::default()));
        let digest = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        Tenants::new(vec![
            (
                a,
                vec![digest("token-of-tenant-a-1"), digest("token-of-tenant-a-2")],
            ),
            (b, vec![digest("token-of-tenant-b-1")]),
        ])
    }

    #[test]
    fn a_token_admits_its_own_tenant_and_nothing_else_does() {
        let tenants = tenants();
        assert_eq!(tenants.admit("token-of-tenant-a-2").unwrap().name(), "a");
        assert_eq!(tenants.admit("token-of-tenant-b-1").unwrap().name(), "b");
        assert!(tenants.admit("token-of-tenant-b-").is_none());
        assert!(tenants.admit("").is_none());
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let shown = format!("{:?}", tenants());
        assert!(shown.contains("\"a\""), "{shown}");
        assert!(!shown.contains("token-of"), "{shown}");
    }

    #[test]
    fn the_session_cap_counts_live_sessions() {
        let tenant = Tenant::new(
            "t",
            Limits {
                max_sessions: Some(2),
                ..Limits::default()
            },
        );
        assert!(tenant.admits_session(1).is_ok());
        let refused = tenant.admits_session(2).unwrap_err().to_string();
        assert!(
            refused.contains("tenant t") && refused.contains("max_sessions"),
            "{refused}"
        );
        assert!(Tenant::unlimited().admits_session(10_000).is_ok());
    }
}
