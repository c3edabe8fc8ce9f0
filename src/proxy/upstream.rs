//! Clients for the user's upstream MCP servers: started on demand, kept up, restarted after a
//! crash, shut down with the bridge.
//!
//! [`Upstreams`] holds one slot per configured server ([`UpstreamSpec`]). The first call that
//! names a server starts it (concurrent first callers share that one start), lists its tools,
//! and writes them to the on-disk tool cache; later calls reuse the connection.
//!
//! Discovery, docs and search ask [`Upstreams::listing`], which starts nothing when the server
//! is running or its cache is current. When neither holds, it starts the server only to list
//! it: the listing is cached, and the server is stopped again at once unless a call adopted
//! the connection in the meantime (a call that finds a running server marks it as kept). It
//! gets 100 ms to exit after its stdin closes, then `SIGTERM`: it has no work to finish. So
//! reading docs never leaves a server running that no call asked for, and a call that comes
//! while a listing start is under way shares that start instead of starting a second process.
//!
//! # What it guarantees
//! - **Our stdout stays ours.** A stdio server's stdout is its MCP channel to us; its stderr is
//!   read line by line into tracing (`info`, field `server`), never inherited.
//! - **Children get only what their spec gives them**: its `env` on top of [`BASE_ENV`], its
//!   `cwd`, stdin/stdout piped to us, their own process group.
//! - **No orphans.** [`Upstreams::shutdown`] closes each server's stdin (or deletes its HTTP
//!   session), waits briefly, then `SIGTERM`s and `SIGKILL`s its whole process group.
//!   Dropping the last [`Upstreams`] kills the groups at once. On Linux the children are
//!   also started with a parent-death signal, so a `SIGKILL`ed bridge takes them along (see
//!   the `stdio` module for how, and for the gaps).
//! - **Crashes are reported, not waited out.** If a server's process dies or its connection
//!   closes, the calls in flight fail at once with [`UpstreamError::Crashed`] (exit status
//!   and the last lines of stderr included), and the next call starts it again, after a
//!   short backoff that grows while it keeps failing; past two seconds of backoff, calls fail
//!   fast with [`UpstreamError::Backoff`] instead of waiting.
//! - **Every request is bounded**: `call_timeout` for each `tools/call` and `tools/list`
//!   (a timed-out call is cancelled at the server with `notifications/cancelled`), and the
//!   start timeout (default 60 s) for spawning and the handshake.
//! - **Every message is bounded**: a stdio server that sends a message over 16 MiB (say, a
//!   huge tool result) is stopped at once, the calls in flight fail with that reason, and the
//!   next call starts it again; the bridge never holds more than the cap of it.
//!
//! # Transports
//! stdio, and streamable HTTP: `http://` and `https://` (rustls), through rmcp's client on
//! reqwest, with the spec's headers on every request (marked sensitive, so never logged).
//! An HTTP request that cannot be sent (refused, reset) or that the server rejects at the
//! HTTP level (an unknown session after the server restarted) ends the session: the call
//! fails at once with [`UpstreamError::Crashed`], the next call opens a new session, and the
//! failed call is never retried (the server may have acted on it). The legacy HTTP+SSE
//! transport is refused with [`UpstreamError::Unsupported`]: rmcp removed its SSE client.
//!
//! # The tool cache
//! `<cache_dir>/<server>.json` (the name escaped to one plain file name) holds the server's
//! tools, its `serverInfo` (name, version, title, description), its `instructions`, and a
//! fingerprint of its spec: the command, the arguments, the names of the environment
//! variables, the working directory, the URL, the names of the headers. A file for another fingerprint is ignored. It is written
//! atomically each time a server is started and listed, and when its tools are listed again.

mod cache;
mod client_error;
mod connection;
mod error;
mod http_client;
mod message_cap;
mod stdio;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, JsonObject, Tool};
use tracing::{Instrument as _, debug, info_span, warn};

pub use self::cache::{Listing, ServerIdentity};
pub use self::client_error::{McpClientError, ServerEnded};
use self::connection::Connection;
pub use self::error::{RequestFailure, StartError, UpstreamError};
pub use self::stdio::BASE_ENV;
use crate::proxy::catalogue::RemoteKind;

/// How long spawning (or connecting) plus the MCP handshake may take, by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_mins(1);
/// First backoff after a failure; it doubles with each further failure in a row.
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A call waits out a backoff up to this long; a longer one fails the call at once.
const BACKOFF_WAIT_MAX: Duration = Duration::from_secs(2);
/// How many similar tool names an [`UpstreamError::UnknownTool`] suggests.
const SIMILAR_TOOLS: usize = 5;
/// How many server names an [`UpstreamError::UnknownServer`] lists.
const KNOWN_SERVERS: usize = 10;

/// One upstream MCP server, as the bridge will reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// The server's name (the key of its entry in the client config).
    pub name: String,
    /// How to reach it.
    pub transport: UpstreamTransport,
}

/// How to reach an upstream server: the catalogue's [`Transport`](crate::proxy::catalogue::Transport),
/// whose `Debug` shows env and header names, never their values.
pub use crate::proxy::catalogue::Transport as UpstreamTransport;

/// The upstream servers of one bridge. Cheap to clone: clones share the servers.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("servers", &self.inner.servers.keys().collect::<Vec<_>>())
            .field("cache_dir", &self.inner.cache_dir)
            .field("call_timeout", &self.inner.call_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    servers: BTreeMap<String, Server>,
    cache_dir: PathBuf,
    call_timeout: Duration,
    start_timeout_ms: AtomicU64,
    closed: AtomicBool,
}

/// One configured server and its connection, if it is up.
struct Server {
    spec: UpstreamSpec,
    name: Arc<str>,
    fingerprint: String,
    cache_file: PathBuf,
    live: Mutex<Option<Arc<Connection>>>,
    cached: cache::Memo,
    /// Held while a start is under way, so that concurrent first callers share it.
    starting: tokio::sync::Mutex<()>,
    health: Mutex<Health>,
}

/// Failures in a row, for the backoff. Reset by any successful request.
#[derive(Default)]
struct Health {
    failures: u32,
    last_failure: Option<Instant>,
    last_error: String,
}

impl Server {
    fn live(&self) -> Option<Arc<Connection>> {
        self.live
            .lock()
            .expect("live lock")
            .clone()
            .filter(|c| c.is_alive())
    }

    /// The live connection for a user: a call (`keep`) marks it kept, under the same lock
    /// that [`Upstreams::release`] takes, so a connection is never stopped under a call.
    fn live_for(&self, keep: bool) -> Option<Arc<Connection>> {
        let live = self.live.lock().expect("live lock");
        let connection = live.clone().filter(|c| c.is_alive())?;
        if keep {
            connection.keep();
        }
        Some(connection)
    }

    fn note_failure(&self, error: &UpstreamError) -> u32 {
        let mut health = self.health.lock().expect("health lock");
        health.failures = health.failures.saturating_add(1);
        health.last_failure = Some(Instant::now());
        health.last_error = sandbox_core::error_chain(error);
        health.failures
    }

    fn note_success(&self) {
        let mut health = self.health.lock().expect("health lock");
        if health.failures != 0 {
            *health = Health::default();
        }
    }

    /// Time to wait before the next start, and the failures behind it.
    fn backoff(&self) -> Option<(Duration, u32, String)> {
        let health = self.health.lock().expect("health lock");
        let last = health.last_failure?;
        let exponent = health.failures.saturating_sub(1).min(16);
        let delay = BACKOFF_START.saturating_mul(1 << exponent).min(BACKOFF_MAX);
        let remaining = delay.checked_sub(last.elapsed())?;
        Some((remaining, health.failures, health.last_error.clone()))
    }
}

impl Upstreams {
    /// The servers of `specs` (none started yet), with their tool cache in `cache_dir`
    /// (`<cache_dir>/<server>.json`) and `call_timeout` for each request. A name that appears
    /// twice keeps its first spec.
    pub fn new(specs: Vec<UpstreamSpec>, cache_dir: PathBuf, call_timeout: Duration) -> Self {
        let mut servers = BTreeMap::new();
        for spec in specs {
            if servers.contains_key(&spec.name) {
                warn!(server = %spec.name, "MCP server configured twice; the first entry is used");
                continue;
            }
            let server = Server {
                name: Arc::from(spec.name.as_str()),
                fingerprint: cache::fingerprint(&spec),
                cache_file: cache::file_for(&cache_dir, &spec.name),
                live: Mutex::new(None),
                cached: cache::Memo::default(),
                starting: tokio::sync::Mutex::new(()),
                health: Mutex::new(Health::default()),
                spec,
            };
            servers.insert(server.spec.name.clone(), server);
        }
        let start_timeout_ms = duration_ms(DEFAULT_START_TIMEOUT);
        Self {
            inner: Arc::new(Inner {
                servers,
                cache_dir,
                call_timeout,
                start_timeout_ms: AtomicU64::new(start_timeout_ms),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Set how long starting a server (spawn or connect, plus the MCP handshake) may take
    /// (default [`DEFAULT_START_TIMEOUT`]). Applies to every clone.
    pub fn with_start_timeout(self, timeout: Duration) -> Self {
        self.inner
            .start_timeout_ms
            .store(duration_ms(timeout), Ordering::Relaxed);
        self
    }

    /// The configured server names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.servers.keys().map(String::as_str)
    }

    /// The spec of a server.
    pub fn spec(&self, server: &str) -> Option<&UpstreamSpec> {
        self.inner.servers.get(server).map(|s| &s.spec)
    }

    /// The process id of a running stdio server; it leads its own process group, so this is
    /// also the group's id. `None` when the server is not running or is remote.
    pub fn process_id(&self, server: &str) -> Option<u32> {
        self.inner.servers.get(server)?.live()?.pid()
    }

    /// The `serverInfo` name and version a running server reported.
    pub fn server_info(&self, server: &str) -> Option<(String, String)> {
        let connection = self.inner.servers.get(server)?.live()?;
        connection
            .server_info()
            .map(|i| (i.name.clone(), i.version.clone()))
    }

    /// The tools of a server, starting it if it is not running; it then stays up, as for a
    /// call.
    pub async fn list_tools(&self, server: &str) -> Result<Vec<Tool>, UpstreamError> {
        let entry = self.server(server)?;
        let connection = self.connection(entry, true).await?;
        if !connection.tools_stale() {
            return Ok(connection.tools().as_ref().clone());
        }
        let tools = self.relist(entry, &connection).await?;
        Ok(tools.as_ref().clone())
    }

    /// The tools of a server without starting anything: those of the running server, else
    /// those of the on-disk cache if it was written for the current spec.
    pub fn cached_tools(&self, server: &str) -> Option<Vec<Tool>> {
        Some(self.cached_listing(server)?.tools.as_ref().clone())
    }

    /// What a server said about itself, without starting anything: the running server's
    /// answer, else the on-disk cache's if it was written for the current spec.
    pub fn cached_listing(&self, server: &str) -> Option<Arc<Listing>> {
        let entry = self.inner.servers.get(server)?;
        if let Some(connection) = entry.live() {
            return Some(Arc::new(listing_of(&connection)));
        }
        entry.cached.read(&entry.cache_file, &entry.fingerprint)
    }

    /// What a server said about itself, for docs and discovery: [`Upstreams::cached_listing`]
    /// when it answers; else the server is started only to be listed (and cached), then
    /// stopped again unless a call adopted it meanwhile.
    pub async fn listing(&self, server: &str) -> Result<Arc<Listing>, UpstreamError> {
        let entry = self.server(server)?;
        if let Some(listing) = self.cached_listing(server) {
            return Ok(listing);
        }
        let connection = self.connection(entry, false).await?;
        let listing = Arc::new(listing_of(&connection));
        self.release(entry, &connection).await;
        Ok(listing)
    }

    /// [`Upstreams::listing`] of several servers at once (their starts overlap), in order.
    /// Each runs to its end as a task of its own, so a caller that gives up never leaves a
    /// server started for a listing running.
    pub async fn listings(&self, servers: &[String]) -> Vec<Result<Arc<Listing>, UpstreamError>> {
        let tasks: Vec<_> = servers
            .iter()
            .map(|server| {
                let (upstreams, server) = (self.clone(), server.clone());
                tokio::spawn(async move { upstreams.listing(&server).await })
            })
            .collect();
        let mut found = Vec::with_capacity(tasks.len());
        for (task, server) in tasks.into_iter().zip(servers) {
            found.push(match task.await {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: the runtime is shutting down.
                Err(_) => Err(UpstreamError::ShutDown {
                    server: server.clone(),
                }),
            });
        }
        found
    }

    /// Stop a connection started only to be listed, unless a call adopted it.
    async fn release(&self, entry: &Server, connection: &Arc<Connection>) {
        let unused = {
            let mut live = entry.live.lock().expect("live lock");
            let ours = live.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection));
            if ours && !connection.is_kept() {
                live.take()
            } else {
                None
            }
        };
        if let Some(unused) = unused {
            debug!(server = %entry.name, "listed for docs; stopping it");
            unused.close_within(connection::LISTED_EXIT_GRACE).await;
        }
    }

    /// Call a tool of a server, starting the server if it is not running. A tool that ran and
    /// failed is an `Ok` result with `isError` set.
    pub async fn call_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: JsonObject,
    ) -> Result<CallToolResult, UpstreamError> {
        let entry = self.server(server)?;
        let connection = self.connection(entry, true).await?;
        if !connection.tools().iter().any(|t| t.name == tool) {
            // The list may be stale: ask again before calling the tool unknown.
            let tools = self.relist(entry, &connection).await?;
            if !tools.iter().any(|t| t.name == tool) {
                return Err(UpstreamError::UnknownTool {
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                    similar: similar_names(tool, tools.iter().map(|t| t.name.as_ref())),
                    total: tools.len(),
                });
            }
        }
        let span = info_span!("upstream_call", server, tool);
        let outcome = connection
            .call_tool(tool, arguments, self.inner.call_timeout)
            .instrument(span)
            .await;
        self.settle(entry, &connection, outcome, Some(tool))
    }

    /// Whether `tool` of `server` is annotated `destructiveHint: true`, starting the server
    /// if it is not running (a call will need it anyway); `None` when the server has no such
    /// tool, even after listing its tools again.
    pub async fn destructive_hint(
        &self,
        server: &str,
        tool: &str,
    ) -> Result<Option<bool>, UpstreamError> {
        let entry = self.server(server)?;
        let connection = self.connection(entry, true).await?;
        let hint = |tools: &[Tool]| {
            tools.iter().find(|t| t.name == tool).map(|t| {
                t.annotations
                    .as_ref()
                    .and_then(|a| a.destructive_hint)
                    .unwrap_or(false)
            })
        };
        if let Some(found) = hint(&connection.tools()) {
            return Ok(Some(found));
        }
        let tools = self.relist(entry, &connection).await?;
        Ok(hint(&tools))
    }

    /// Stop every server: close its stdin (or HTTP session), wait briefly, then `SIGTERM` and
    /// `SIGKILL` its process group. Calls after this fail with [`UpstreamError::ShutDown`].
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let mut closing = tokio::task::JoinSet::new();
        for entry in self.inner.servers.values() {
            let connection = entry.live.lock().expect("live lock").take();
            if let Some(connection) = connection {
                closing.spawn(async move { connection.close().await });
            }
        }
        while closing.join_next().await.is_some() {}
    }

    fn server(&self, server: &str) -> Result<&Server, UpstreamError> {
        self.inner
            .servers
            .get(server)
            .ok_or_else(|| UpstreamError::UnknownServer {
                server: server.to_owned(),
                known: self
                    .names()
                    .take(KNOWN_SERVERS)
                    .map(str::to_owned)
                    .collect(),
            })
    }

    fn closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// The live connection of a server, starting it (once, for all concurrent callers). A
    /// call passes `keep`, so the connection stays up; a docs listing does not, and then
    /// [`Upstreams::release`]s it.
    async fn connection(
        &self,
        entry: &Server,
        keep: bool,
    ) -> Result<Arc<Connection>, UpstreamError> {
        let shut_down = || UpstreamError::ShutDown {
            server: entry.spec.name.clone(),
        };
        if self.closed() {
            return Err(shut_down());
        }
        if let UpstreamTransport::Remote {
            kind: RemoteKind::Sse,
            ..
        } = entry.spec.transport
        {
            return Err(UpstreamError::Unsupported {
                server: entry.spec.name.clone(),
                detail: "the legacy HTTP+SSE transport is not supported (rmcp removed its SSE \
                         client); point the entry at the server's streamable HTTP endpoint \
                         (often `/mcp`) instead"
                    .to_owned(),
            });
        }
        if let Some(connection) = entry.live_for(keep) {
            return Ok(connection);
        }
        let _starting = entry.starting.lock().await;
        if let Some(connection) = entry.live_for(keep) {
            return Ok(connection);
        }
        if self.closed() {
            return Err(shut_down());
        }
        let dead = entry.live.lock().expect("live lock").take();
        if let Some(dead) = dead {
            dead.discard();
        }
        if let Some((remaining, failures, last_error)) = entry.backoff() {
            if remaining > BACKOFF_WAIT_MAX {
                return Err(UpstreamError::Backoff {
                    server: entry.spec.name.clone(),
                    failures,
                    retry_in: remaining,
                    last_error,
                });
            }
            tokio::time::sleep(remaining).await;
        }

        let connection = match self.start(entry).await {
            Ok(connection) => connection,
            Err(source) => {
                let failures = entry.health.lock().expect("health lock").failures + 1;
                let error = UpstreamError::Start {
                    server: entry.spec.name.clone(),
                    attempt: failures,
                    source,
                };
                entry.note_failure(&error);
                warn!(server = %entry.name, "{}", sandbox_core::error_chain(&error));
                return Err(error);
            }
        };
        if keep {
            connection.keep();
        }
        *entry.live.lock().expect("live lock") = Some(connection.clone());
        if self.closed() {
            // shutdown() ran during the start and may have missed this connection.
            let ours = entry.live.lock().expect("live lock").take();
            if let Some(ours) = ours {
                ours.close().await;
            }
            return Err(shut_down());
        }
        self.write_cache(entry, &connection).await;
        Ok(connection)
    }

    /// Spawn or connect, initialise, list the tools.
    async fn start(&self, entry: &Server) -> Result<Arc<Connection>, StartError> {
        let timeout = Duration::from_millis(self.inner.start_timeout_ms.load(Ordering::Relaxed));
        let name = entry.name.clone();
        let list_timeout = self.inner.call_timeout;
        let start = async {
            match &entry.spec.transport {
                UpstreamTransport::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                } => {
                    Connection::start_stdio(name, command, args, env, cwd.as_deref(), list_timeout)
                        .await
                }
                UpstreamTransport::Remote { url, headers, .. } => {
                    Connection::start_remote(name, url, headers, list_timeout).await
                }
            }
        }
        .instrument(info_span!("upstream_start", server = %entry.name));
        match tokio::time::timeout(timeout, start).await {
            Ok(result) => result,
            Err(_) => Err(StartError::Timeout { after: timeout }),
        }
    }

    /// List a server's tools again and refresh the cache.
    async fn relist(
        &self,
        entry: &Server,
        connection: &Arc<Connection>,
    ) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        let outcome = connection.relist_tools(self.inner.call_timeout).await;
        let tools = self.settle(entry, connection, outcome, None)?;
        self.write_cache(entry, connection).await;
        Ok(tools)
    }

    /// Turn a request's outcome into our result, keeping the server's health up to date.
    fn settle<T>(
        &self,
        entry: &Server,
        connection: &Arc<Connection>,
        outcome: Result<T, RequestFailure>,
        tool: Option<&str>,
    ) -> Result<T, UpstreamError> {
        match outcome {
            Ok(value) => {
                entry.note_success();
                Ok(value)
            }
            Err(failure) => {
                let error = failure.into_error(&entry.spec.name, tool);
                if matches!(error, UpstreamError::Crashed { .. }) && !self.closed() {
                    // Count each death once, however many calls were in flight.
                    let mut live = entry.live.lock().expect("live lock");
                    if live.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
                        *live = None;
                        drop(live);
                        connection.discard();
                        entry.note_failure(&error);
                        warn!(server = %entry.name, "{}", sandbox_core::error_chain(&error));
                    }
                } else if matches!(error, UpstreamError::Crashed { .. }) {
                    // Shutting down: the "crash" is the shutdown itself.
                    return Err(UpstreamError::ShutDown {
                        server: entry.spec.name.clone(),
                    });
                }
                Err(error)
            }
        }
    }

    async fn write_cache(&self, entry: &Server, connection: &Connection) {
        cache::write(
            entry.cache_file.clone(),
            entry.spec.name.clone(),
            entry.fingerprint.clone(),
            &listing_of(connection),
        )
        .await;
    }
}

/// What a live server said about itself.
fn listing_of(connection: &Connection) -> Listing {
    Listing {
        tools: connection.tools(),
        server_info: connection.server_info().map(ServerIdentity::from),
        instructions: connection.instructions().map(str::to_owned),
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The names closest to `wanted`, best first: equal up to case and `-`/`_`, then by edit
/// distance.
fn similar_names<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let normal = |s: &str| s.to_lowercase().replace('-', "_");
    let wanted_normal = normal(wanted);
    let mut scored: Vec<(usize, &str)> = names
        .map(|name| {
            let n = normal(name);
            let score = if n == wanted_normal {
                0
            } else {
                1 + edit_distance(&n, &wanted_normal)
            };
            (score, name)
        })
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(SIMILAR_TOOLS)
        .map(|(_, name)| name.to_owned())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_names_prefer_aliases_then_edit_distance() {
        let names = ["get_current_time", "convert_time", "echo", "get-env", "add"];
        let similar = similar_names("get_env", names.into_iter());
        assert_eq!(similar[0], "get-env");
        assert_eq!(similar.len(), 5);
        assert_eq!(similar_names("get_time", names.into_iter())[0], "get-env");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn debug_hides_secret_values() {
        let spec = UpstreamSpec {
            name: "s".into(),
            transport: UpstreamTransport::Stdio {
                command: "x".into(),
                args: vec![],
                env: BTreeMap::from([("TOKEN".to_owned(), "hunter2".to_owned())]),
                cwd: None,
            },
        };
        let text = format!("{spec:?}");
        assert!(
            text.contains("TOKEN") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn unknown_server_lists_known_ones() {
        let upstreams = Upstreams::new(vec![], std::env::temp_dir(), Duration::from_secs(1));
        let error = upstreams.list_tools("nope").await.unwrap_err();
        assert_eq!(error.kind(), "unknown_server");
    }

    #[tokio::test]
    async fn a_missing_command_is_a_start_error_then_backoff() {
        let spec = UpstreamSpec {
            name: "missing".into(),
            transport: UpstreamTransport::Stdio {
                command: "surely-not-a-command-here".into(),
                args: vec![],
                env: BTreeMap::new(),
                cwd: None,
            },
        };
        let dir = std::env::temp_dir();
        let upstreams = Upstreams::new(vec![spec], dir, Duration::from_secs(1));
        let first = upstreams.list_tools("missing").await.unwrap_err();
        assert!(
            matches!(first, UpstreamError::Start { attempt: 1, .. }),
            "{first}"
        );
        let text = sandbox_core::error_chain(&first);
        assert!(
            text.starts_with(
                "MCP server `missing` failed to start: `surely-not-a-command-here` was not found \
                 on PATH ("
            ),
            "{text}"
        );
        for _ in 0..4 {
            let _ = upstreams.list_tools("missing").await;
        }
        let later = upstreams.list_tools("missing").await.unwrap_err();
        assert!(matches!(later, UpstreamError::Backoff { .. }), "{later}");
        assert!(later.to_string().contains("keeps failing"), "{later}");
    }

    #[tokio::test]
    async fn sse_is_unsupported_with_a_reason() {
        let spec = UpstreamSpec {
            name: "legacy".into(),
            transport: UpstreamTransport::Remote {
                url: "http://127.0.0.1:9/sse".into(),
                headers: BTreeMap::new(),
                kind: RemoteKind::Sse,
            },
        };
        let upstreams = Upstreams::new(vec![spec], std::env::temp_dir(), Duration::from_secs(1));
        let error = upstreams.list_tools("legacy").await.unwrap_err();
        assert!(
            matches!(error, UpstreamError::Unsupported { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("SSE"), "{error}");
    }
}
