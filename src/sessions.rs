//! Named sessions, a warm pool, and the reaper of idle sessions.
//!
//! A session name maps to one guest interpreter. Starting one takes a warm session from the
//! pool when there is one (and refills the pool in the background), else starts it cold. A
//! session whose guest died (timeout kill, crash) is replaced by the next call that names it.
//! Sessions idle past the idle timeout are shut down and forgotten.
//!
//! Names live in a [`Scope`]: the stdio server has one client and uses [`Scope::SHARED`];
//! the HTTP server gives each MCP session a scope of its own, so two clients that both use
//! the session `default` never see each other's Python state. Ending a scope shuts its
//! sessions down; the warm pool and the session cap are shared by all scopes.
//!
//! A scope may also have a durable identity ([`Sessions::set_identity`]: for stdio the
//! client's name, over HTTP the tenant and client). With checkpoints on, its sessions are
//! then saved when they are reaped, suspended or shut down, and resumed by the next call
//! that names them, in this process or the next (see [`crate::checkpoints`]). Saving a
//! session and resuming it never overlap: a name being saved is resumed only once saved.
//!
//! A scope may have a spec of its own ([`Sessions::set_scope_spec`]: a client's MCP roots
//! granted as mounts). The warm pool holds sessions of the process-wide spec only, so a
//! scope with its own spec never gets a pooled session: its new sessions start cold with its
//! spec. A new spec applies to the scope's next new session; running ones keep theirs.

mod activity;
mod demand;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sandbox_core::{
    NoCalls, RunRequest, Sandbox, SandboxError, SandboxSpec, Session, SessionConfig,
};
use tracing::{debug, info, warn};

use crate::checkpoints::durable::{self, Resume};
use crate::checkpoints::identity::tenant_of_identity;
use crate::checkpoints::listing::{self, LiveSession};
use crate::checkpoints::store::Store;
use crate::checkpoints::transfer::{CheckpointCalls, Target};
use crate::egress::Egress;
use crate::egress::sandbox::SessionNetwork;
use crate::metrics::SessionGauges;
use crate::packages::{GUEST_DIR as PACKAGES_GUEST_DIR, InstallCalls, Packages, SessionPackages};
use crate::proxy::dispatch::SessionServices;
use activity::Activity;
pub use activity::Running;
use demand::Demand;

/// Code a pooled session runs before it is handed out: import and start the event loop.
const WARM_UP: &str = "await __import__('asyncio').sleep(0)";

/// How long the bridge must have run nothing before the warm pool refills, so a refill
/// does not take CPU from a live call or its reply.
const REFILL_QUIET: Duration = Duration::from_millis(20);

/// Longest a refill waits for a quiet moment: a busy bridge still gets its pool back.
const REFILL_MAX_DEFER: Duration = Duration::from_secs(2);

/// Longest the startup packages (`MCP_BRIDGE_PACKAGES`) may take to install in a session.
const STARTUP_INSTALL_TIMEOUT: Duration = Duration::from_mins(5);

/// Longest a session may take to be saved when it is reaped or suspended.
const SAVE_TIMEOUT: Duration = Duration::from_mins(2);

/// Longest the sessions may take, together, to be saved when the bridge shuts down.
const SAVE_AT_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest a session may take to be restored.
const RESTORE_TIMEOUT: Duration = Duration::from_mins(2);

/// The name of the session used when a call names none.
pub const DEFAULT_SESSION: &str = "default";

/// A namespace of session names. Equal names in different scopes are different sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope(u64);

impl Scope {
    /// The one scope of a server with a single client (stdio).
    pub const SHARED: Scope = Scope(0);

    /// A scope no other caller has, for one MCP session.
    pub fn fresh() -> Scope {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Scope(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

type Key = (Scope, String);

/// Why a session could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The name is not acceptable.
    #[error(
        "invalid session name {0:?}: use 1 to 64 letters, digits, `-`, `_` or `.` (not `.` or `..` alone)"
    )]
    InvalidName(String),
    /// Too many sessions are alive.
    #[error("{0} sessions are already alive; reuse one or wait for idle ones to be reaped")]
    TooMany(usize),
    /// The sandbox could not start.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// How a session was obtained, for the result's metadata and for benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It was already running.
    Existing,
    /// Taken from the warm pool.
    Pool,
    /// Started for this call.
    Cold,
}

/// A started session and its packages directory (when installs are on).
#[derive(Debug)]
pub struct Started {
    /// The session.
    pub session: Session,
    /// Its packages directory, mounted read-only in its sandbox.
    pub packages: Option<Arc<SessionPackages>>,
    /// Its network (when hosts are allowed): its record, and its proxy while it lives.
    pub network: Option<SessionNetwork>,
}

struct Slot {
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// The packages directory of the current session.
    packages: Mutex<Option<Arc<SessionPackages>>>,
    last_used: Mutex<Instant>,
    /// Version of the saved tools the current session last received.
    saved_tools: Mutex<Option<u64>>,
    /// User code ran in the current session since it was started, restored or saved.
    changed: AtomicBool,
    /// What resuming the current session found, for the next reply to say.
    resumed: Mutex<Option<Resume>>,
    /// The current session's network, when hosts are allowed (its proxy lives as long).
    network: Mutex<Option<SessionNetwork>>,
}

impl Slot {
    fn new() -> Self {
        Self {
            session: tokio::sync::Mutex::new(None),
            packages: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            saved_tools: Mutex::new(None),
            changed: AtomicBool::new(false),
            resumed: Mutex::new(None),
            network: Mutex::new(None),
        }
    }

    /// True while a call is starting or using this slot's session: its lock is held, or
    /// someone besides the slot holds the session. Busy sessions are never reaped, however
    /// long a start or a run takes.
    fn is_busy(&self) -> bool {
        match self.session.try_lock() {
            Err(_) => true,
            Ok(session) => session
                .as_ref()
                .is_some_and(|session| Arc::strong_count(session) > 1),
        }
    }
}

/// All sessions of one server.
pub struct Sessions {
    sandbox: Arc<dyn Sandbox>,
    spec: SandboxSpec,
    config: SessionConfig,
    /// How many warm sessions the pool should hold: the configured floor, raised by demand.
    demand: Demand,
    session_cap: usize,
    idle_timeout: Duration,
    named: Mutex<HashMap<Key, Arc<Slot>>>,
    /// Specs of the scopes that have their own (granted more than `spec`).
    scope_specs: Mutex<HashMap<Scope, SandboxSpec>>,
    pool: Mutex<Vec<Started>>,
    packages: Option<Arc<Packages>>,
    /// Where sessions are saved, when checkpoints are on.
    checkpoints: Option<Arc<Store>>,
    /// The durable identity of each scope that has one (checkpoints are kept under it).
    identities: Mutex<HashMap<Scope, String>>,
    /// Sessions being saved now, each with a lock held until it is saved.
    saving: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    refilling: AtomicBool,
    /// Runs in flight, for refills to wait for a quiet moment.
    activity: Activity,
    closed: AtomicBool,
    /// The way out to the network, when hosts are allowed.
    egress: OnceLock<Arc<Egress>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("backend", &self.sandbox.name())
            .finish_non_exhaustive()
    }
}

/// Check a session name before it is used anywhere.
pub fn validate_name(name: &str) -> Result<(), SessionError> {
    // `.` and `..` are path names, whatever uses the name later.
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SessionError::InvalidName(name.to_string()))
    }
}

impl Sessions {
    /// Sessions on `sandbox` with the given limits and policies; with `packages`, each
    /// session gets a packages directory of its own; with `checkpoints`, sessions of scopes
    /// with an identity are saved there and resumed from there.
    #[allow(
        clippy::too_many_arguments,
        reason = "one constructor, called from main and tests"
    )]
    pub fn new(
        sandbox: Arc<dyn Sandbox>,
        spec: SandboxSpec,
        config: SessionConfig,
        pool_size: usize,
        max_sessions: usize,
        idle_timeout: Duration,
        packages: Option<Arc<Packages>>,
        checkpoints: Option<Arc<Store>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sandbox,
            spec,
            config,
            demand: Demand::new(pool_size, Instant::now()),
            session_cap: max_sessions,
            idle_timeout,
            named: Mutex::new(HashMap::new()),
            scope_specs: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            packages,
            checkpoints,
            identities: Mutex::new(HashMap::new()),
            saving: Mutex::new(HashMap::new()),
            refilling: AtomicBool::new(false),
            activity: Activity::new(),
            closed: AtomicBool::new(false),
            egress: OnceLock::new(),
        })
    }

    /// Gives every session started from now on a way out to the network under `egress`.
    pub fn set_egress(&self, egress: Arc<Egress>) {
        let _ = self.egress.set(egress);
    }

    /// What the runs of the session called `name` in `scope` may use besides its
    /// sandbox: its packages, where it is saved, its network.
    pub fn services_of(&self, scope: Scope, name: &str, session: &Session) -> SessionServices {
        let network = {
            let named = self.named.lock().expect("sessions lock");
            named.get(&(scope, name.to_string())).and_then(|slot| {
                let network = slot.network.lock().expect("slot lock");
                network.as_ref().map(|network| Arc::clone(network.ledger()))
            })
        };
        SessionServices {
            packages: self.packages_of(scope, name),
            checkpoints: self.checkpoint_calls(scope, name, session),
            network: network.and_then(|ledger| {
                let egress = self.egress.get()?;
                Some((Arc::clone(egress), ledger))
            }),
        }
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.sandbox.name()
    }

    /// The manual every session gets (`capability_summary()`), which is also the
    /// capabilities resource.
    pub fn manual(&self) -> &str {
        &self.config.manual
    }

    /// The backend itself.
    pub fn sandbox(&self) -> &Arc<dyn Sandbox> {
        &self.sandbox
    }

    /// The session called `name` in `scope`, started (or restarted, with `reset`) as needed.
    ///
    /// A session started for a name that has a checkpoint is restored from it first (what
    /// that found is in [`Sessions::take_resumed`]); `reset` discards the checkpoint. When
    /// `max_sessions` are alive, the least recently used idle one is saved and shut down to
    /// make room (suspended), if checkpoints are on; else the call is refused.
    pub async fn get(
        self: &Arc<Self>,
        scope: Scope,
        name: &str,
        reset: bool,
    ) -> Result<(Arc<Session>, Origin), SessionError> {
        validate_name(name)?;
        let key = (scope, name.to_string());
        loop {
            let (slot, suspended) = self.slot_for(&key)?;
            if let Some((ticket, victim)) = suspended {
                // Saved in the background: this call does not wait for another session's save.
                let this = self.clone();
                tokio::spawn(async move { this.save_and_stop(ticket, victim, SAVE_TIMEOUT).await });
            }
            *slot.last_used.lock().expect("slot lock") = Instant::now();
            let mut current = slot.session.lock().await;
            if !self.is_current(&key, &slot) {
                continue; // reaped or suspended while this call waited: take the name's new slot
            }
            if let Some(old) = current.take_if(|s| reset || !s.is_alive()) {
                debug!(session = name, %scope, reset, "replacing session");
                tokio::spawn(async move { old.shutdown().await });
            }
            if let Some(session) = current.as_ref() {
                return Ok((session.clone(), Origin::Existing));
            }
            if reset {
                self.discard_checkpoint(&key).await;
            }
            let (started, origin, resumed) = self.start_resumed(&key, reset).await?;
            let session = Arc::new(started.session);
            *current = Some(session.clone());
            *slot.packages.lock().expect("slot lock") = started.packages;
            if let Some(network) = &started.network {
                let identity = self.identity(scope).unwrap_or_default();
                network.name(name, &scope.to_string(), tenant_of_identity(&identity));
            }
            *slot.network.lock().expect("slot lock") = started.network;
            *slot.saved_tools.lock().expect("slot lock") = None;
            slot.changed.store(false, Ordering::Release);
            *slot.resumed.lock().expect("slot lock") = resumed;
            drop(current);
            self.publish_live();
            return Ok((session, origin));
        }
    }

    /// The slot of `key`, made if new; with it, the slot suspended to make room, if one was.
    #[allow(clippy::type_complexity, reason = "a private pair")]
    fn slot_for(
        &self,
        key: &Key,
    ) -> Result<(Arc<Slot>, Option<(SaveTicket, Arc<Slot>)>), SessionError> {
        let mut named = self.named.lock().expect("sessions lock");
        if let Some(slot) = named.get(key) {
            return Ok((slot.clone(), None));
        }
        let mut suspended = None;
        if named.len() >= self.session_cap {
            let victim = self
                .checkpoints
                .as_ref()
                .and_then(|_| least_recently_used_idle(&named));
            let Some(victim) = victim else {
                return Err(SessionError::TooMany(named.len()));
            };
            let slot = named.remove(&victim).expect("the victim is named");
            info!(session = victim.1, scope = %victim.0, "suspending the least recently used session");
            suspended = Some((self.mark_saving(victim), slot));
        }
        let slot = Arc::new(Slot::new());
        named.insert(key.clone(), slot.clone());
        Ok((slot, suspended))
    }

    /// A new session for `key`, restored from its checkpoint when it has one (and `reset`
    /// is not asked), with what resuming found.
    async fn start_resumed(
        self: &Arc<Self>,
        key: &Key,
        reset: bool,
    ) -> Result<(Started, Origin, Option<Resume>), SessionError> {
        let (scope, name) = key;
        let (started, origin) = self.start_in(*scope).await?;
        let (Some(store), Some(identity), false) =
            (&self.checkpoints, self.identity(*scope), reset)
        else {
            return Ok((started, origin, None));
        };
        // A save of this name still going (it was just suspended or reaped) ends first.
        let saving = self.saving.lock().expect("saving lock").get(key).cloned();
        if let Some(saving) = saving {
            let _saved = saving.lock().await;
        }
        let install = started
            .packages
            .clone()
            .map(|dir| Arc::new(InstallCalls(dir)) as Arc<dyn sandbox_core::RpcHandler>);
        let resumed = durable::resume(
            &started.session,
            store,
            (&identity, name),
            RESTORE_TIMEOUT,
            install,
        )
        .await;
        match resumed {
            Resume::Nothing => Ok((started, origin, None)),
            restored @ Resume::Restored(_) => Ok((started, origin, Some(restored))),
            fresh @ Resume::Fresh(_) => {
                // It may hold part of the checkpoint: start over, clean.
                started.session.shutdown().await;
                let (clean, origin) = self.start_in(*scope).await?;
                Ok((clean, origin, Some(fresh)))
            }
        }
    }

    /// Whether `slot` is still the slot of `key` (not reaped, suspended or ended meanwhile).
    fn is_current(&self, key: &Key, slot: &Arc<Slot>) -> bool {
        self.named
            .lock()
            .expect("sessions lock")
            .get(key)
            .is_some_and(|named| Arc::ptr_eq(named, slot))
    }

    /// A new session for `scope`: with the scope's own spec, else from the pool.
    async fn start_in(self: &Arc<Self>, scope: Scope) -> Result<(Started, Origin), SandboxError> {
        let own_spec = self
            .scope_specs
            .lock()
            .expect("scope specs lock")
            .get(&scope)
            .cloned();
        match own_spec {
            Some(spec) => Ok((self.start_with_services(&spec).await?, Origin::Cold)),
            None => self.fresh().await,
        }
    }

    /// Remove the checkpoint of `key`, if it has one (`reset`).
    async fn discard_checkpoint(&self, key: &Key) {
        let (Some(store), Some(identity)) = (&self.checkpoints, self.identity(key.0)) else {
            return;
        };
        let (store, name) = (store.clone(), key.1.clone());
        let discarded = tokio::task::spawn_blocking(move || store.discard(&identity, &name)).await;
        match discarded {
            Ok(Ok(true)) => info!(session = key.1, "checkpoint discarded (reset)"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(
                session = key.1,
                "could not discard a checkpoint: {}",
                sandbox_core::error_chain(&e)
            ),
            Err(e) => warn!(session = key.1, "could not discard a checkpoint: {e}"),
        }
    }

    /// What resuming the session called `name` in `scope` found, once: for the reply of the
    /// call that started it.
    pub fn take_resumed(&self, scope: Scope, name: &str) -> Option<Resume> {
        let named = self.named.lock().expect("sessions lock");
        named
            .get(&(scope, name.to_string()))?
            .resumed
            .lock()
            .expect("slot lock")
            .take()
    }

    /// Give `scope` a durable identity: its sessions are then saved under it and resumed
    /// from it (when checkpoints are on).
    pub fn set_identity(&self, scope: Scope, identity: String) {
        self.identities
            .lock()
            .expect("identities lock")
            .insert(scope, identity);
    }

    fn identity(&self, scope: Scope) -> Option<String> {
        self.identities
            .lock()
            .expect("identities lock")
            .get(&scope)
            .cloned()
    }

    /// Where the session called `name` in `scope` is saved, when it can be: for
    /// `mcp.runtime.checkpoint()` and `fork_session()` in its runs.
    pub fn checkpoint_calls(
        &self,
        scope: Scope,
        name: &str,
        session: &Session,
    ) -> Option<Arc<CheckpointCalls>> {
        Some(Arc::new(CheckpointCalls::new(
            self.target(scope, name, session)?,
        )))
    }

    /// Where `session`, the session called `name` in `scope`, is saved: `None` when
    /// checkpoints are off or the scope has no identity.
    fn target(&self, scope: Scope, name: &str, session: &Session) -> Option<Target> {
        Some(Target {
            store: self.checkpoints.clone()?,
            scope: self.identity(scope)?,
            session: name.to_string(),
            stamp: durable::stamp_of(session),
        })
    }

    /// Note that a save of `key` begins: a resume of the name waits until the ticket is
    /// given back ([`Sessions::save_and_stop`]).
    fn mark_saving(&self, key: Key) -> SaveTicket {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let guard = lock.clone().try_lock_owned().expect("a new lock is free");
        self.saving
            .lock()
            .expect("saving lock")
            .insert(key.clone(), lock.clone());
        SaveTicket {
            key,
            lock,
            _guard: guard,
        }
    }

    /// Save the session of a slot already taken out of `named` (when checkpoints are on, its
    /// scope has an identity, and user code changed it since it was last saved), then shut
    /// it down.
    async fn save_and_stop(&self, ticket: SaveTicket, slot: Arc<Slot>, timeout: Duration) {
        let session = slot.session.lock().await.take();
        if let Some(session) = session {
            if slot.changed.load(Ordering::Acquire) && session.is_alive() {
                let packages = slot.packages.lock().expect("slot lock").clone();
                self.save(&ticket.key, &session, timeout, packages).await;
            }
            session.shutdown().await;
        }
        {
            let mut saving = self.saving.lock().expect("saving lock");
            if saving
                .get(&ticket.key)
                .is_some_and(|lock| Arc::ptr_eq(lock, &ticket.lock))
            {
                saving.remove(&ticket.key);
            }
        }
        if !self.closed.load(Ordering::Acquire) {
            self.publish_live();
        }
    }

    /// Publish the live sessions for `doctor` and `sessions` (in the background; failures
    /// are logged).
    fn publish_live(&self) {
        let Some(store) = self.checkpoints.clone() else {
            return;
        };
        let now = std::time::SystemTime::now();
        let sessions: Vec<LiveSession> = {
            let named = self.named.lock().expect("sessions lock");
            let identities = self.identities.lock().expect("identities lock");
            named
                .iter()
                .filter_map(|((scope, name), slot)| {
                    let current = slot.session.try_lock().ok()?;
                    let session = current.as_ref()?;
                    let idle = slot.last_used.lock().expect("slot lock").elapsed();
                    Some(LiveSession {
                        scope: identities.get(scope).cloned().unwrap_or_default(),
                        session: name.clone(),
                        backend: session.backend().to_string(),
                        last_used_unix: now
                            .checked_sub(idle)
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_secs()),
                        memory_bytes: session.try_usage().and_then(|u| u.memory_bytes),
                    })
                })
                .collect()
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = listing::publish(&store, sessions) {
                debug!("could not publish the live sessions: {e}");
            }
        });
    }

    /// Save `session`, the session of `key` (whose packages directory is `packages`), within
    /// `timeout`; failures are logged.
    async fn save(
        &self,
        key: &Key,
        session: &Session,
        timeout: Duration,
        packages: Option<Arc<SessionPackages>>,
    ) {
        let (scope, name) = key;
        let Some(target) = self.target(*scope, name, session) else {
            return;
        };
        let started = Instant::now();
        let install =
            packages.map(|dir| Arc::new(InstallCalls(dir)) as Arc<dyn sandbox_core::RpcHandler>);
        match tokio::time::timeout(timeout, durable::save(session, target, timeout, install)).await
        {
            Ok(Ok(saved)) => info!(
                session = name,
                %scope,
                bytes = saved.bytes,
                names = saved.names,
                unsaveable = saved.unsaveable.len(),
                elapsed = ?started.elapsed(),
                "session saved"
            ),
            Ok(Err(e)) => warn!(session = name, %scope, "{}", sandbox_core::error_chain(&e)),
            Err(_) => {
                warn!(
                    session = name,
                    %scope,
                    "saving the session took longer than {timeout:?}; not saved"
                );
            }
        }
    }

    /// Give `scope`'s next new sessions `spec` instead of the process-wide one (`None`: back
    /// to the shared spec and the warm pool). Sessions already running keep theirs.
    pub fn set_scope_spec(&self, scope: Scope, spec: Option<SandboxSpec>) {
        let mut specs = self.scope_specs.lock().expect("scope specs lock");
        match spec {
            Some(spec) => specs.insert(scope, spec),
            None => specs.remove(&scope),
        };
    }

    /// The saved tools' source if the session called `name` in `scope` has not received this
    /// version yet (and note that it now has).
    pub fn saved_tools_update(
        &self,
        scope: Scope,
        name: &str,
        saved: Option<(u64, String)>,
    ) -> Option<String> {
        let (version, source) = saved?;
        let named = self.named.lock().expect("sessions lock");
        let mut seen = named
            .get(&(scope, name.to_string()))?
            .saved_tools
            .lock()
            .expect("slot lock");
        if *seen == Some(version) {
            return None;
        }
        *seen = Some(version);
        Some(source)
    }

    /// The packages directory of the session called `name` in `scope`, if it has one.
    pub fn packages_of(&self, scope: Scope, name: &str) -> Option<Arc<SessionPackages>> {
        let named = self.named.lock().expect("sessions lock");
        let slot = named.get(&(scope, name.to_string()))?;
        slot.packages.lock().expect("slot lock").clone()
    }

    /// Mark a session used now (after a run of user code): the reaper measures idleness from
    /// the end, and the session has changed since it was last saved.
    pub fn touch(&self, scope: Scope, name: &str) {
        let key = (scope, name.to_string());
        if let Some(slot) = self.named.lock().expect("sessions lock").get(&key) {
            *slot.last_used.lock().expect("slot lock") = Instant::now();
            slot.changed.store(true, Ordering::Release);
        }
    }

    /// A new session: from the pool if one is warm, else started now. The pool is not
    /// refilled here, so a refill never competes with the caller's first run for CPU; call
    /// [`Sessions::refill`] once the run is done.
    pub async fn fresh(self: &Arc<Self>) -> Result<(Started, Origin), SandboxError> {
        let superseded = self.sandbox.is_prepared().await;
        let (warm, stale) = {
            let mut pool = self.pool.lock().expect("pool lock");
            pool.retain(|warm| warm.session.is_alive());
            // Sessions warmed on a stand-in (they carry its notice) while the configured
            // sandbox was being prepared are not handed out once it is ready.
            let stale: Vec<Started> = if superseded {
                pool.extract_if(.., |warm| warm.session.notice().is_some())
                    .collect()
            } else {
                Vec::new()
            };
            (pool.pop(), stale)
        };
        if !stale.is_empty() {
            info!(
                sessions = stale.len(),
                "dropping warm sessions of the stand-in: the configured interpreter is ready"
            );
            for started in stale {
                tokio::spawn(async move { started.session.shutdown().await });
            }
        }
        if let Some(started) = warm {
            return Ok((started, Origin::Pool));
        }
        self.demand.missed(Instant::now());
        Ok((self.start_with_services(&self.spec).await?, Origin::Cold))
    }

    /// Start a session now, bypassing the pool.
    pub async fn start_cold(&self) -> Result<Session, SandboxError> {
        Ok(self.start_with_services(&self.spec).await?.session)
    }

    /// Make the backend ready now (`provision`) for sessions as this pool starts them: each
    /// has its packages directory and its network's socket mounted (when those are on), so
    /// the spec prepared for has them too.
    pub async fn prepare(&self) -> Result<(), SandboxError> {
        let (spec, _dir) = self.with_packages_dir(&self.spec)?;
        let (spec, _network) = self.with_network(&spec)?;
        self.sandbox.prepare(&spec).await
    }

    /// `base` with a packages directory of its own mounted, when installs are on.
    fn with_packages_dir(
        &self,
        base: &SandboxSpec,
    ) -> Result<(SandboxSpec, Option<Arc<SessionPackages>>), SandboxError> {
        let Some(packages) = &self.packages else {
            return Ok((base.clone(), None));
        };
        let dir = Arc::new(
            packages
                .open_session()
                .map_err(|e| SandboxError::Spec(sandbox_core::error_chain(&e)))?,
        );
        let spec = base.with_read_only_mount(dir.host_dir(), PACKAGES_GUEST_DIR)?;
        Ok((spec, Some(dir)))
    }

    /// `base` with a network of its own granted, when hosts are allowed: a proxy whose
    /// socket is mounted, on backends whose sandboxes have sockets.
    fn with_network(
        &self,
        base: &SandboxSpec,
    ) -> Result<(SandboxSpec, Option<SessionNetwork>), SandboxError> {
        let Some(egress) = self.egress.get() else {
            return Ok((base.clone(), None));
        };
        let network = egress
            .open_session(self.sandbox.has_sockets())
            .map_err(|e| SandboxError::Spec(format!("could not open the session's proxy: {e}")))?;
        Ok((network.grant(base)?, Some(network)))
    }

    /// Start a session on `base` with a packages directory (when installs are on) and a
    /// network (when hosts are allowed) of its own, and install the startup packages.
    async fn start_with_services(&self, base: &SandboxSpec) -> Result<Started, SandboxError> {
        let (spec, dir) = self.with_packages_dir(base)?;
        let (spec, network) = self.with_network(&spec)?;
        let session = Session::start(self.sandbox.as_ref(), &spec, &self.config).await?;
        if let (Some(packages), Some(dir)) = (&self.packages, &dir)
            && let Some(code) = packages.startup_code()
        {
            let outcome = session
                .run(
                    &RunRequest::preparation(code, STARTUP_INSTALL_TIMEOUT),
                    Arc::new(InstallCalls(dir.clone())),
                )
                .await;
            if outcome.is_error() {
                session.shutdown().await;
                let why = outcome
                    .error
                    .map_or_else(|| format!("{:?}", outcome.status), |e| e.message);
                return Err(SandboxError::GuestGone(format!(
                    "installing MCP_BRIDGE_PACKAGES in a new session failed: {why}"
                )));
            }
        }
        Ok(Started {
            session,
            packages: dir,
            network,
        })
    }

    /// Counts a run as in flight until the guard is dropped: the warm pool refills only
    /// once no run has been in flight for a moment.
    pub fn running(&self) -> Running<'_> {
        self.activity.start()
    }

    /// Top the warm pool up to its target in the background (one refill at a time, each
    /// once the bridge is quiet: see [`Sessions::running`]). Cheap when it is full.
    pub fn refill(self: &Arc<Self>) {
        if self.pool.lock().expect("pool lock").len() >= self.pool_target() {
            return;
        }
        if self.closed.load(Ordering::Acquire) || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                this.activity
                    .until_quiet(REFILL_QUIET, REFILL_MAX_DEFER)
                    .await;
                let have = this.pool.lock().expect("pool lock").len();
                if have >= this.pool_target() || this.closed.load(Ordering::Acquire) {
                    break;
                }
                match this.start_warm().await {
                    Ok(started) if this.closed.load(Ordering::Acquire) => {
                        // Shut down while this one was starting: it must not outlive us.
                        started.session.shutdown().await;
                        break;
                    }
                    Ok(session) => this.pool.lock().expect("pool lock").push(session),
                    Err(e) => {
                        warn!(
                            "could not warm a session: {}",
                            sandbox_core::error_chain(&e)
                        );
                        break;
                    }
                }
            }
            this.refilling.store(false, Ordering::Release);
        });
    }

    /// Start a session for the pool and load what most code needs first (`asyncio`, which
    /// top-level `await` and every MCP proxy use), without binding any name in its globals.
    async fn start_warm(&self) -> Result<Started, SandboxError> {
        let started = self.start_with_services(&self.spec).await?;
        let session = &started.session;
        let outcome = session
            .run(
                &RunRequest::preparation(WARM_UP, Duration::from_secs(30)),
                Arc::new(NoCalls),
            )
            .await;
        if outcome.is_error() {
            session.shutdown().await;
            return Err(SandboxError::GuestGone(format!(
                "warming a session failed: {:?}",
                outcome.status
            )));
        }
        Ok(started)
    }

    /// How many warm sessions the pool holds when it is full: `MCP_BRIDGE_POOL_SIZE`, plus
    /// one for each recent new session that found the pool empty (`sessions/demand.rs`).
    pub fn pool_target(&self) -> usize {
        self.demand.target(Instant::now())
    }

    /// Shut down warm sessions beyond the pool's target (the oldest first), once the demand
    /// that raised it has passed.
    async fn trim_pool(&self) {
        let surplus: Vec<Started> = {
            let mut pool = self.pool.lock().expect("pool lock");
            let excess = pool.len().saturating_sub(self.pool_target());
            pool.drain(..excess).collect()
        };
        if !surplus.is_empty() {
            debug!(
                sessions = surplus.len(),
                "shutting down warm sessions beyond the pool's target"
            );
        }
        for started in surplus {
            started.session.shutdown().await;
        }
    }

    /// Number of warm sessions ready now.
    pub fn warm_count(&self) -> usize {
        self.pool.lock().expect("pool lock").len()
    }

    /// Shut down warm sessions above the pool's target; then save (when checkpoints are
    /// on), shut down and forget sessions idle for longer than the idle timeout.
    pub async fn reap_idle(&self) {
        self.trim_pool().await;
        let now = Instant::now();
        let idle: Vec<(SaveTicket, Arc<Slot>)> = {
            let mut named = self.named.lock().expect("sessions lock");
            let expired: Vec<Key> = named
                .iter()
                .filter(|(_, slot)| {
                    now.duration_since(*slot.last_used.lock().expect("slot lock"))
                        > self.idle_timeout
                        && !slot.is_busy()
                })
                .map(|(key, _)| key.clone())
                .collect();
            expired
                .into_iter()
                .filter_map(|key| {
                    let slot = named.remove(&key)?;
                    Some((self.mark_saving(key), slot))
                })
                .collect()
        };
        for (ticket, slot) in idle {
            info!(session = ticket.key.1, scope = %ticket.key.0, "reaping idle session");
            self.save_and_stop(ticket, slot, SAVE_TIMEOUT).await;
        }
    }

    /// Forget every session of `scope` now; the caller saves them and shuts them down.
    fn take_scope(&self, scope: Scope) -> Vec<(SaveTicket, Arc<Slot>)> {
        self.set_scope_spec(scope, None);
        let mut named = self.named.lock().expect("sessions lock");
        let keys: Vec<Key> = named.keys().filter(|(s, _)| *s == scope).cloned().collect();
        keys.into_iter()
            .filter_map(|key| {
                let slot = named.remove(&key)?;
                Some((self.mark_saving(key), slot))
            })
            .collect()
    }

    /// Whether a session called `name` is alive (or starting) in `scope`.
    pub fn has(&self, scope: Scope, name: &str) -> bool {
        let named = self.named.lock().expect("sessions lock");
        named.contains_key(&(scope, name.to_string()))
    }

    /// What a metrics scrape reads: the sessions alive (or starting) here by tenant, the
    /// saved sessions that no running bridge on this state directory has live, by tenant,
    /// and the warm pool. Blocking: it reads the checkpoint store's headers.
    pub fn gauges(&self) -> SessionGauges {
        let mut gauges = SessionGauges {
            warm: i64::try_from(self.warm_count()).unwrap_or(i64::MAX),
            ..SessionGauges::default()
        };
        let here: Vec<(String, String)> = {
            let named = self.named.lock().expect("sessions lock");
            let identities = self.identities.lock().expect("identities lock");
            named
                .keys()
                .map(|(scope, name)| {
                    let identity = identities.get(scope).cloned().unwrap_or_default();
                    (identity, name.clone())
                })
                .collect()
        };
        for (identity, _) in &here {
            *gauges
                .live
                .entry(tenant_of_identity(identity).to_string())
                .or_default() += 1;
        }
        let Some(store) = &self.checkpoints else {
            return gauges;
        };
        let mut live: std::collections::HashSet<(String, String)> = here.into_iter().collect();
        for file in listing::live(store) {
            live.extend(file.sessions.into_iter().map(|s| (s.scope, s.session)));
        }
        match store.list_all() {
            Ok(saved) => {
                for stored in saved {
                    let key = (stored.header.scope, stored.session);
                    if !live.contains(&key) {
                        *gauges
                            .suspended
                            .entry(tenant_of_identity(&key.0).to_string())
                            .or_default() += 1;
                    }
                }
            }
            Err(e) => debug!("metrics: the saved sessions could not be listed: {e}"),
        }
        gauges
    }

    /// Number of sessions alive (or starting) in `scope`.
    pub fn scope_len(&self, scope: Scope) -> usize {
        let named = self.named.lock().expect("sessions lock");
        named.keys().filter(|(s, _)| *s == scope).count()
    }

    /// Save and shut down every session of `scope` (its MCP session ended), waiting until
    /// they are gone; then forget the scope's identity.
    pub async fn shutdown_scope(&self, scope: Scope) {
        let slots = self.take_scope(scope);
        if !slots.is_empty() {
            info!(%scope, sessions = slots.len(), "ending the sessions of a closed scope");
        }
        for (ticket, slot) in slots {
            self.save_and_stop(ticket, slot, SAVE_TIMEOUT).await;
        }
        self.identities
            .lock()
            .expect("identities lock")
            .remove(&scope);
    }

    /// [`Sessions::shutdown_scope`] in the background, for callers that cannot wait (a
    /// `Drop`). Does nothing when the scope has no sessions or there is no tokio runtime.
    pub fn end_scope(self: &Arc<Self>, scope: Scope) {
        self.set_scope_spec(scope, None);
        if self.scope_len(scope) == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move { this.shutdown_scope(scope).await });
    }

    /// Delete checkpoints older than `max_age` now and every hour, in the background (never
    /// on the start-up path), until the process ends.
    pub fn spawn_pruner(self: &Arc<Self>, max_age: Duration) {
        let Some(store) = self.checkpoints.clone() else {
            return;
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_hours(1));
            loop {
                tick.tick().await;
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.prune(max_age)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(removed)) => info!(removed, "old checkpoints deleted"),
                    Ok(Err(e)) => warn!(
                        "pruning checkpoints failed: {}",
                        sandbox_core::error_chain(&e)
                    ),
                    Err(e) => warn!("pruning checkpoints failed: {e}"),
                }
            }
        });
    }

    /// Run the reaper until the process ends.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        let period =
            (self.idle_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(this) = this.upgrade() else { break };
                this.reap_idle().await;
            }
        });
    }

    /// Save every session that changed (on exit, together within a bounded time), then shut
    /// every session down, removing their scratch space.
    pub async fn shutdown_all(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        // Let a refill in progress finish starting its session, so it is shut down too.
        for _ in 0..100 {
            if !self.refilling.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let slots: Vec<(SaveTicket, Arc<Slot>)> = {
            let mut named = self.named.lock().expect("sessions lock");
            named
                .drain()
                .map(|(key, slot)| (self.mark_saving(key), slot))
                .collect()
        };
        let warm: Vec<Started> = self.pool.lock().expect("pool lock").drain(..).collect();
        // In parallel: a container backend takes a round trip to the engine per removal.
        let mut stopping = tokio::task::JoinSet::new();
        for (ticket, slot) in slots {
            let this = self.clone();
            stopping.spawn(async move {
                this.save_and_stop(ticket, slot, SAVE_AT_EXIT_TIMEOUT).await;
            });
        }
        for started in warm {
            stopping.spawn(async move { started.session.shutdown().await });
        }
        while stopping.join_next().await.is_some() {}
        if let Some(store) = self.checkpoints.clone() {
            let _ = tokio::task::spawn_blocking(move || listing::publish(&store, Vec::new())).await;
        }
    }
}

/// A save in progress: while it is held, a resume of its session waits.
struct SaveTicket {
    key: Key,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// The least recently used session that is not busy, if any.
fn least_recently_used_idle(named: &HashMap<Key, Arc<Slot>>) -> Option<Key> {
    named
        .iter()
        .filter(|(_, slot)| !slot.is_busy())
        .min_by_key(|(_, slot)| *slot.last_used.lock().expect("slot lock"))
        .map(|(key, _)| key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_core::host_python::HostPython;
    use sandbox_core::{Probe, StartedGuest};

    /// The host's `python3` as a guest, standing in (with a notice) until `ready` is set.
    #[derive(Debug, Default)]
    struct StandInUntilReady {
        ready: AtomicBool,
    }

    #[async_trait::async_trait]
    impl Sandbox for StandInUntilReady {
        fn name(&self) -> &'static str {
            "stand-in-until-ready"
        }

        async fn probe(&self) -> Probe {
            HostPython.probe().await
        }

        async fn is_prepared(&self) -> bool {
            self.ready.load(Ordering::Acquire)
        }

        async fn start(&self, spec: &SandboxSpec) -> Result<StartedGuest, SandboxError> {
            let mut guest = HostPython.start(spec).await?;
            if !self.ready.load(Ordering::Acquire) {
                guest.notice = Some("running on the stand-in".into());
            }
            Ok(guest)
        }
    }

    async fn warmed(sessions: &Arc<Sessions>) {
        warmed_to(sessions, 1).await;
    }

    async fn warmed_to(sessions: &Arc<Sessions>, count: usize) {
        sessions.refill();
        for _ in 0..600 {
            if sessions.warm_count() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the pool warmed {} sessions, not {count}",
            sessions.warm_count()
        );
    }

    #[tokio::test]
    async fn a_burst_that_finds_the_pool_empty_finds_it_warm_the_next_time() {
        let sessions = Sessions::new(
            Arc::new(HostPython),
            SandboxSpec::default(),
            SessionConfig::default(),
            1,
            16,
            Duration::from_mins(5),
            None,
            None,
        );
        assert_eq!(sessions.pool_target(), 1);
        let burst = |sessions: Arc<Sessions>| async move {
            let mut starting = tokio::task::JoinSet::new();
            for _ in 0..3 {
                let sessions = sessions.clone();
                starting.spawn(async move { sessions.fresh().await.unwrap() });
            }
            let mut origins = Vec::new();
            while let Some(done) = starting.join_next().await {
                let (started, origin) = done.unwrap();
                started.session.shutdown().await;
                origins.push(origin);
            }
            origins
        };
        let first = burst(sessions.clone()).await;
        assert_eq!(first, [Origin::Cold; 3], "the pool had not been filled");
        assert_eq!(sessions.pool_target(), 4, "the floor and one per miss");
        warmed_to(&sessions, 4).await;
        let second = burst(sessions.clone()).await;
        assert_eq!(second, [Origin::Pool; 3]);
        assert_eq!(sessions.pool_target(), 4, "no miss, no growth");
        sessions.shutdown_all().await;
    }

    #[tokio::test]
    async fn warm_stand_in_sessions_are_dropped_once_the_sandbox_is_ready() {
        let sandbox = Arc::new(StandInUntilReady::default());
        let sessions = Sessions::new(
            sandbox.clone(),
            SandboxSpec::default(),
            SessionConfig::default(),
            1,
            8,
            Duration::from_mins(5),
            None,
            None,
        );
        warmed(&sessions).await;
        let (started, origin) = sessions.fresh().await.unwrap();
        assert_eq!(origin, Origin::Pool);
        assert!(started.session.notice().is_some());
        started.session.shutdown().await;

        warmed(&sessions).await;
        sandbox.ready.store(true, Ordering::Release);
        let (started, origin) = sessions.fresh().await.unwrap();
        assert_eq!(
            origin,
            Origin::Cold,
            "the stand-in's warm session was handed out"
        );
        assert_eq!(started.session.notice(), None);
        assert_eq!(sessions.warm_count(), 0);
        started.session.shutdown().await;
        sessions.shutdown_all().await;
    }

    #[test]
    fn session_names_are_checked_before_use() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("a-b_c.1").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "x y", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
