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
//! A scope may have a spec of its own ([`Sessions::set_scope_spec`]: a client's MCP roots
//! granted as mounts). The warm pool holds sessions of the process-wide spec only, so a
//! scope with its own spec never gets a pooled session: its new sessions start cold with its
//! spec. A new spec applies to the scope's next new session; running ones keep theirs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sandbox_core::{
    NoCalls, RunRequest, Sandbox, SandboxError, SandboxSpec, Session, SessionConfig,
};
use tracing::{debug, info, warn};

use crate::packages::{GUEST_DIR as PACKAGES_GUEST_DIR, InstallCalls, Packages, SessionPackages};

/// Code a pooled session runs before it is handed out: import and start the event loop.
const WARM_UP: &str = "await __import__('asyncio').sleep(0)";

/// Longest the startup packages (`MCP_BRIDGE_PACKAGES`) may take to install in a session.
const STARTUP_INSTALL_TIMEOUT: Duration = Duration::from_mins(5);

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
}

struct Slot {
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// The packages directory of the current session.
    packages: Mutex<Option<Arc<SessionPackages>>>,
    last_used: Mutex<Instant>,
    /// Version of the saved tools the current session last received.
    saved_tools: Mutex<Option<u64>>,
}

impl Slot {
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
    pool_size: usize,
    session_cap: usize,
    idle_timeout: Duration,
    named: Mutex<HashMap<Key, Arc<Slot>>>,
    /// Specs of the scopes that have their own (granted more than `spec`).
    scope_specs: Mutex<HashMap<Scope, SandboxSpec>>,
    pool: Mutex<Vec<Started>>,
    packages: Option<Arc<Packages>>,
    refilling: AtomicBool,
    closed: AtomicBool,
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
    /// session gets a packages directory of its own.
    pub fn new(
        sandbox: Arc<dyn Sandbox>,
        spec: SandboxSpec,
        config: SessionConfig,
        pool_size: usize,
        max_sessions: usize,
        idle_timeout: Duration,
        packages: Option<Arc<Packages>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            sandbox,
            spec,
            config,
            pool_size,
            session_cap: max_sessions,
            idle_timeout,
            named: Mutex::new(HashMap::new()),
            scope_specs: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            packages,
            refilling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
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
    pub async fn get(
        self: &Arc<Self>,
        scope: Scope,
        name: &str,
        reset: bool,
    ) -> Result<(Arc<Session>, Origin), SessionError> {
        validate_name(name)?;
        let key = (scope, name.to_string());
        let slot = {
            let mut named = self.named.lock().expect("sessions lock");
            let count = named.len();
            if !named.contains_key(&key) && count >= self.session_cap {
                return Err(SessionError::TooMany(count));
            }
            named
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        session: tokio::sync::Mutex::new(None),
                        packages: Mutex::new(None),
                        last_used: Mutex::new(Instant::now()),
                        saved_tools: Mutex::new(None),
                    })
                })
                .clone()
        };
        *slot.last_used.lock().expect("slot lock") = Instant::now();
        let mut current = slot.session.lock().await;
        if let Some(old) = current.take_if(|s| reset || !s.is_alive()) {
            debug!(session = name, %scope, reset, "replacing session");
            tokio::spawn(async move { old.shutdown().await });
        }
        if let Some(session) = current.as_ref() {
            return Ok((session.clone(), Origin::Existing));
        }
        let own_spec = self
            .scope_specs
            .lock()
            .expect("scope specs lock")
            .get(&scope)
            .cloned();
        let (started, origin) = match own_spec {
            Some(spec) => (self.start_with_packages(&spec).await?, Origin::Cold),
            None => self.fresh().await?,
        };
        let session = Arc::new(started.session);
        *current = Some(session.clone());
        *slot.packages.lock().expect("slot lock") = started.packages;
        *slot.saved_tools.lock().expect("slot lock") = None;
        Ok((session, origin))
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

    /// Mark a session used now (after a run), so the reaper measures idleness from the end.
    pub fn touch(&self, scope: Scope, name: &str) {
        let key = (scope, name.to_string());
        if let Some(slot) = self.named.lock().expect("sessions lock").get(&key) {
            *slot.last_used.lock().expect("slot lock") = Instant::now();
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
        match warm {
            Some(started) => Ok((started, Origin::Pool)),
            None => Ok((self.start_with_packages(&self.spec).await?, Origin::Cold)),
        }
    }

    /// Start a session now, bypassing the pool.
    pub async fn start_cold(&self) -> Result<Session, SandboxError> {
        Ok(self.start_with_packages(&self.spec).await?.session)
    }

    /// Make the backend ready now (`provision`) for sessions as this pool starts them: with
    /// installs on, each has a packages directory mounted, so the spec prepared for has one.
    pub async fn prepare(&self) -> Result<(), SandboxError> {
        let (spec, _dir) = self.with_packages_dir(&self.spec)?;
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

    /// Start a session on `base` with a packages directory of its own (when installs are
    /// on), and install the startup packages in it.
    async fn start_with_packages(&self, base: &SandboxSpec) -> Result<Started, SandboxError> {
        let (spec, dir) = self.with_packages_dir(base)?;
        let (Some(packages), Some(dir)) = (&self.packages, dir) else {
            let session = Session::start(self.sandbox.as_ref(), &spec, &self.config).await?;
            return Ok(Started {
                session,
                packages: None,
            });
        };
        let session = Session::start(self.sandbox.as_ref(), &spec, &self.config).await?;
        if let Some(code) = packages.startup_code() {
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
            packages: Some(dir),
        })
    }

    /// Top the warm pool up in the background (one refill at a time). Cheap when it is full.
    pub fn refill(self: &Arc<Self>) {
        if self.pool_size == 0 || self.pool.lock().expect("pool lock").len() >= self.pool_size {
            return;
        }
        if self.closed.load(Ordering::Acquire) || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let have = this.pool.lock().expect("pool lock").len();
                if have >= this.pool_size {
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
        let started = self.start_with_packages(&self.spec).await?;
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

    /// Number of warm sessions ready now.
    pub fn warm_count(&self) -> usize {
        self.pool.lock().expect("pool lock").len()
    }

    /// Shut down and forget sessions idle for longer than the idle timeout.
    pub async fn reap_idle(&self) {
        let now = Instant::now();
        let idle: Vec<(Key, Arc<Slot>)> = {
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
                .filter_map(|key| named.remove(&key).map(|slot| (key, slot)))
                .collect()
        };
        for ((scope, name), slot) in idle {
            if let Some(session) = slot.session.lock().await.take() {
                info!(session = name, %scope, "reaping idle session");
                session.shutdown().await;
            }
        }
    }

    /// Forget every session of `scope` now; the caller shuts them down.
    fn take_scope(&self, scope: Scope) -> Vec<Arc<Slot>> {
        self.set_scope_spec(scope, None);
        let mut named = self.named.lock().expect("sessions lock");
        let keys: Vec<Key> = named.keys().filter(|(s, _)| *s == scope).cloned().collect();
        keys.iter().filter_map(|key| named.remove(key)).collect()
    }

    /// Number of sessions alive (or starting) in `scope`.
    pub fn scope_len(&self, scope: Scope) -> usize {
        let named = self.named.lock().expect("sessions lock");
        named.keys().filter(|(s, _)| *s == scope).count()
    }

    /// Shut down every session of `scope` (its MCP session ended), waiting until they are
    /// gone. A run still going in one of them is stopped.
    pub async fn shutdown_scope(&self, scope: Scope) {
        let slots = self.take_scope(scope);
        if !slots.is_empty() {
            info!(%scope, sessions = slots.len(), "ending the sessions of a closed scope");
        }
        for slot in slots {
            let session = slot.session.lock().await.take();
            if let Some(session) = session {
                session.shutdown().await;
            }
        }
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

    /// Shut every session down (on exit), removing their scratch space.
    pub async fn shutdown_all(&self) {
        self.closed.store(true, Ordering::Release);
        // Let a refill in progress finish starting its session, so it is shut down too.
        for _ in 0..100 {
            if !self.refilling.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let slots: Vec<Arc<Slot>> = self
            .named
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(_, s)| s)
            .collect();
        let warm: Vec<Started> = self.pool.lock().expect("pool lock").drain(..).collect();
        // In parallel: a container backend takes a round trip to the engine per removal.
        let mut stopping = tokio::task::JoinSet::new();
        for slot in slots {
            if let Some(session) = slot.session.lock().await.take() {
                stopping.spawn(async move { session.shutdown().await });
            }
        }
        for started in warm {
            stopping.spawn(async move { started.session.shutdown().await });
        }
        while stopping.join_next().await.is_some() {}
    }
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
        sessions.refill();
        for _ in 0..300 {
            if sessions.warm_count() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the pool never warmed a session");
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
