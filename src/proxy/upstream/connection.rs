//! One live connection to an upstream server: an rmcp client over a stdio child or an HTTP
//! session, how it is watched for death, and how it is closed.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject, Tool,
};
use rmcp::service::{NotificationContext, Peer, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use super::client_error::McpClientError;
use super::http_client::{Rejection, SessionAwareClient};
use super::message_cap::{MAX_MESSAGE_BYTES, MessageCap};
use super::stdio::{self, ProcessGroup, StderrTail};
use super::{RequestFailure, StartError};

/// How long a closing stdio server gets to exit after its stdin closed, before `SIGTERM`.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a server started only to be listed gets to exit after its stdin closed, before
/// `SIGTERM` (it has no work to finish).
pub(super) const LISTED_EXIT_GRACE: Duration = Duration::from_millis(100);
/// How long it gets after `SIGTERM`, before `SIGKILL`.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// How long a caller that saw the transport close waits for the exit status to explain it.
const DEATH_DETAIL_WAIT: Duration = Duration::from_secs(1);
/// How long the exit report waits for the rest of stderr (the pipe may be held by others).
const STDERR_DRAIN: Duration = Duration::from_millis(150);

type Death = Option<Arc<str>>;

/// Our side of the MCP session: answers the server's requests with rmcp's defaults (no
/// sampling, no elicitation, no roots) and notes when its tool list changes.
struct Handler {
    info: ClientConfig,
    server: Arc<str>,
    tools_stale: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        debug!(server = %self.server, "tool list changed");
        self.tools_stale.store(true, Ordering::Release);
    }
}

/// A started, initialised server.
pub(super) struct Connection {
    server: Arc<str>,
    peer: Peer<RoleClient>,
    ct: CancellationToken,
    death: watch::Receiver<Death>,
    death_tx: Arc<watch::Sender<Death>>,
    /// For stdio servers: becomes `true` when the process has exited (and was reaped).
    exited: Option<watch::Receiver<bool>>,
    group: Option<Arc<ProcessGroup>>,
    server_info: Option<Implementation>,
    /// The `instructions` of its `initialize` answer, bounded.
    instructions: Option<String>,
    /// Whether a call (not only a listing for docs) uses this connection: a connection
    /// started only to be listed is stopped once listed unless this became `true`. Read and
    /// written under the server's `live` lock.
    kept: AtomicBool,
    tools: RwLock<Arc<Vec<Tool>>>,
    tools_stale: Arc<AtomicBool>,
    relist: tokio::sync::Mutex<()>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// For HTTP servers: set when the server rejected our session (see `http_client`).
    rejection: Option<Rejection>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("pgid", &self.group.as_ref().map(|g| g.id()))
            .finish_non_exhaustive()
    }
}

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
    )
}

/// Record `detail` as the cause of death unless one is already recorded.
fn set_death(tx: &watch::Sender<Death>, detail: impl Into<Arc<str>>) {
    let detail = detail.into();
    tx.send_if_modified(|death| {
        if death.is_none() {
            *death = Some(detail);
            true
        } else {
            false
        }
    });
}

impl Connection {
    /// Spawn a stdio server, initialise it and list its tools.
    pub(super) async fn start_stdio(
        server: Arc<str>,
        command: &str,
        args: &[String],
        env: &std::collections::BTreeMap<String, String>,
        cwd: Option<&Path>,
        list_timeout: Duration,
    ) -> Result<Arc<Self>, StartError> {
        let spawned = stdio::spawn(command, args, env, cwd).await?;
        let stdio::Spawned {
            mut child,
            stdin,
            stdout,
            stderr,
            group,
        } = spawned;
        let pid = group.id();
        let group = Arc::new(group);
        // Until the connection owns the group: if this start fails or is abandoned (the start
        // timeout drops this future), nothing of the child may be left running.
        let guard = KillOnDrop(Some(group.clone()));
        let ct = CancellationToken::new();
        let (death_tx, death) = watch::channel::<Death>(None);
        let death_tx = Arc::new(death_tx);
        let (exited_tx, exited) = watch::channel(false);
        let tail = StderrTail::default();

        let stderr_task = tokio::spawn(stdio::pump_stderr(server.clone(), stderr, tail.clone()));
        // The monitor owns the child: it reaps it, reports how it ended, and kills what it
        // left behind in its group.
        {
            let (server, death_tx, group, ct) =
                (server.clone(), death_tx.clone(), group.clone(), ct.clone());
            tokio::spawn(async move {
                let status = child.wait().await;
                let _ = tokio::time::timeout(STDERR_DRAIN, stderr_task).await;
                let how = format!(
                    "{}{}",
                    stdio::describe_exit(status),
                    stdio::tail_text(&tail)
                );
                info!(server = %server, pid, "{how}");
                let _ = exited_tx.send(true);
                set_death(&death_tx, how);
                ct.cancel();
                // What the leader left behind in its group: orphans now.
                group.terminate(TERM_GRACE).await;
            });
        }

        let tools_stale = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            info: client_config(),
            server: server.clone(),
            tools_stale: tools_stale.clone(),
        };
        // A message over the cap ends the session at once, with the reason as its death.
        let stdout = {
            let (server, death_tx) = (server.clone(), death_tx.clone());
            MessageCap::new(stdout, MAX_MESSAGE_BYTES, move || {
                warn!(server = %server, limit = MAX_MESSAGE_BYTES, "message too large; stopping the server");
                set_death(
                    &death_tx,
                    format!(
                        "it sent a message larger than {} MiB, more than the bridge accepts \
                         (a tool result that large is refused); the server was stopped and the \
                         next call starts it again",
                        MAX_MESSAGE_BYTES >> 20
                    ),
                );
            })
        };
        let running = match handler.serve_with_ct((stdout, stdin), ct.clone()).await {
            Ok(running) => running,
            Err(e) => {
                // The process may have died: its exit status and stderr say why.
                let mut death = death.clone();
                let how = tokio::time::timeout(DEATH_DETAIL_WAIT, death.wait_for(Option::is_some))
                    .await
                    .ok()
                    .and_then(|d| d.ok().and_then(|d| d.clone()));
                ct.cancel();
                group.kill();
                let error = McpClientError::from(e);
                return Err(StartError::Handshake(match how {
                    Some(how) => error.ended(how),
                    None => error,
                }));
            }
        };
        let connection = Self::finish(
            server,
            running,
            ct,
            death,
            death_tx,
            Some(exited),
            Some(group),
            tools_stale,
            None,
        );
        guard.disarm();
        connection.list_initial(list_timeout).await?;
        Ok(connection)
    }

    /// Connect to a streamable-HTTP server, initialise the session and list its tools.
    pub(super) async fn start_remote(
        server: Arc<str>,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        list_timeout: Duration,
    ) -> Result<Arc<Self>, StartError> {
        let mut custom = HashMap::new();
        for (name, value) in headers {
            let name = http::HeaderName::try_from(name.as_str()).map_err(|source| {
                StartError::HeaderName {
                    name: name.clone(),
                    source,
                }
            })?;
            let mut value = http::HeaderValue::try_from(value.as_str()).map_err(|source| {
                StartError::HeaderValue {
                    name: name.to_string(),
                    source,
                }
            })?;
            value.set_sensitive(true);
            if ["accept", "mcp-session-id", "last-event-id"].contains(&name.as_str()) {
                warn!(server = %server, header = %name, "header is managed by the MCP client; ignored");
                continue;
            }
            custom.insert(name, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(url)
            .custom_headers(custom)
            .reinit_on_expired_session(true);
        let rejection = Rejection::default();
        let client = SessionAwareClient::new(rejection.clone()).map_err(StartError::HttpClient)?;
        let transport = StreamableHttpClientTransport::with_client(client, config);
        let ct = CancellationToken::new();
        let (death_tx, death) = watch::channel::<Death>(None);
        let tools_stale = Arc::new(AtomicBool::new(false));
        let handler = Handler {
            info: client_config(),
            server: server.clone(),
            tools_stale: tools_stale.clone(),
        };
        let running = handler
            .serve_with_ct(transport, ct.clone())
            .await
            .map_err(|e| StartError::OpenSession {
                url: url.to_owned(),
                source: e.into(),
            })?;
        let connection = Self::finish(
            server,
            running,
            ct,
            death,
            Arc::new(death_tx),
            None,
            None,
            tools_stale,
            Some(rejection),
        );
        connection.list_initial(list_timeout).await?;
        Ok(connection)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "private constructor shared by two transports"
    )]
    fn finish(
        server: Arc<str>,
        running: RunningService<RoleClient, Handler>,
        ct: CancellationToken,
        death: watch::Receiver<Death>,
        death_tx: Arc<watch::Sender<Death>>,
        exited: Option<watch::Receiver<bool>>,
        group: Option<Arc<ProcessGroup>>,
        tools_stale: Arc<AtomicBool>,
        rejection: Option<Rejection>,
    ) -> Arc<Self> {
        let peer = running.peer().clone();
        let peer_info = peer.peer_info();
        let server_info = peer_info.as_ref().and_then(|info| info.server_info.clone());
        let instructions = peer_info
            .as_ref()
            .and_then(|info| info.instructions.as_deref())
            .map(|text| super::cache::bound(text, super::cache::MAX_INSTRUCTIONS_CHARS));
        info!(
            server = %server,
            name = server_info.as_ref().map_or("?", |i| i.name.as_str()),
            version = server_info.as_ref().map_or("?", |i| i.version.as_str()),
            "MCP server started"
        );
        // The supervisor owns the rmcp service loop and notes when it ends.
        let supervisor = {
            let (server, death_tx, mut exited, group) = (
                server.clone(),
                death_tx.clone(),
                exited.clone(),
                group.clone(),
            );
            tokio::spawn(
                async move {
                    let reason = running.waiting().await;
                    debug!(?reason, "MCP session ended");
                    if let Some(exited) = exited.as_mut() {
                        // A stdio server: its exit status explains the end best.
                        let waited =
                            tokio::time::timeout(DEATH_DETAIL_WAIT, exited.wait_for(|e| *e));
                        if waited.await.is_err() {
                            set_death(&death_tx, "the server closed its stdout but kept running");
                            if let Some(group) = group {
                                group.kill();
                            }
                        }
                    } else {
                        set_death(&death_tx, "the connection to the server closed");
                    }
                }
                .instrument(tracing::info_span!("upstream", server = %server)),
            )
        };
        Arc::new(Self {
            server,
            peer,
            ct,
            death,
            death_tx,
            exited,
            group,
            server_info,
            instructions,
            kept: AtomicBool::new(false),
            tools: RwLock::new(Arc::new(Vec::new())),
            tools_stale,
            relist: tokio::sync::Mutex::new(()),
            supervisor: Mutex::new(Some(supervisor)),
            rejection,
        })
    }

    async fn list_initial(self: &Arc<Self>, timeout: Duration) -> Result<(), StartError> {
        match self.relist_tools(timeout).await {
            Ok(_) => Ok(()),
            Err(failure) => {
                self.ct.cancel();
                if let Some(group) = &self.group {
                    group.kill();
                }
                Err(StartError::ListTools(failure))
            }
        }
    }

    /// Whether the connection is still usable.
    pub(super) fn is_alive(&self) -> bool {
        self.death.borrow().is_none()
    }

    /// The process (group) id of a stdio server.
    pub(super) fn pid(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.id())
    }

    /// The identity the server reported in its `initialize` answer.
    pub(super) fn server_info(&self) -> Option<&Implementation> {
        self.server_info.as_ref()
    }

    /// The `instructions` the server gave in its `initialize` answer (bounded).
    pub(super) fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// Mark the connection as used by a call: it stays up (see [`Connection::is_kept`]).
    pub(super) fn keep(&self) {
        self.kept.store(true, Ordering::Release);
    }

    /// Whether a call uses the connection, so that it stays up after a docs listing.
    pub(super) fn is_kept(&self) -> bool {
        self.kept.load(Ordering::Acquire)
    }

    /// The tools as last listed.
    pub(super) fn tools(&self) -> Arc<Vec<Tool>> {
        self.tools.read().expect("tools lock").clone()
    }

    /// Whether the server said its tool list changed since it was listed.
    pub(super) fn tools_stale(&self) -> bool {
        self.tools_stale.load(Ordering::Acquire)
    }

    /// List the tools again (one listing at a time) and keep the answer.
    pub(super) async fn relist_tools(
        &self,
        timeout: Duration,
    ) -> Result<Arc<Vec<Tool>>, RequestFailure> {
        let _one_at_a_time = self.relist.lock().await;
        self.tools_stale.store(false, Ordering::Release);
        let tools = Arc::new(self.request(self.peer.list_all_tools(), timeout).await?);
        *self.tools.write().expect("tools lock") = tools.clone();
        Ok(tools)
    }

    /// Call a tool.
    pub(super) async fn call_tool(
        &self,
        tool: &str,
        arguments: JsonObject,
        timeout: Duration,
    ) -> Result<CallToolResult, RequestFailure> {
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        self.request(self.peer.call_tool(params), timeout).await
    }

    /// Run one request against the connection's death and a timeout. Dropping rmcp's request
    /// future on timeout sends `notifications/cancelled` to the server.
    async fn request<T>(
        &self,
        request: impl Future<Output = Result<T, ServiceError>>,
        timeout: Duration,
    ) -> Result<T, RequestFailure> {
        let mut death = self.death.clone();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, request) => outcome,
            died = death.wait_for(Option::is_some) => {
                let how = died.ok().and_then(|d| d.clone());
                let how = how.unwrap_or_else(|| "the connection ended".into());
                return Err(RequestFailure::Ended { how });
            }
        };
        match outcome {
            Err(_elapsed) => Err(RequestFailure::Timeout { after: timeout }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(ServiceError::McpError(error))) => {
                let rejected = self
                    .rejection
                    .as_ref()
                    .and_then(|r| r.lock().expect("rejection lock").take());
                if let Some(rejected) = rejected {
                    let how: Arc<str> = format!(
                        "it rejected our session ({rejected}); the next call opens a new one"
                    )
                    .into();
                    set_death(&self.death_tx, how.clone());
                    return Err(RequestFailure::Ended { how });
                }
                Err(RequestFailure::Refused(Box::new(error)))
            }
            Ok(Err(error)) => {
                let closed = matches!(error, ServiceError::TransportClosed)
                    || self.peer.is_transport_closed();
                if !closed && self.rejection.is_some() {
                    // HTTP: a request that could not be sent (refused, reset, 5xx) ends this
                    // session; the next call connects again.
                    // The reason is text: every call in flight on the session reports it.
                    let how: Arc<str> =
                        format!("the HTTP request failed ({})", McpClientError::from(error)).into();
                    set_death(&self.death_tx, how.clone());
                    Err(RequestFailure::Ended { how })
                } else if closed {
                    // Let the exit status (or the supervisor) say what happened.
                    let how =
                        tokio::time::timeout(DEATH_DETAIL_WAIT, death.wait_for(Option::is_some))
                            .await
                            .ok()
                            .and_then(|d| d.ok().and_then(|d| d.clone()));
                    let how = how.unwrap_or_else(|| {
                        let how: Arc<str> =
                            format!("the connection closed ({})", McpClientError::from(error))
                                .into();
                        set_death(&self.death_tx, how.clone());
                        how
                    });
                    Err(RequestFailure::Ended { how })
                } else {
                    Err(RequestFailure::Client(error.into()))
                }
            }
        }
    }

    /// Close gracefully: end the MCP session (a stdio server sees its stdin close; an HTTP
    /// session is deleted), give a stdio server [`EXIT_GRACE`] to exit, then `SIGTERM` and
    /// `SIGKILL` its whole process group.
    pub(super) async fn close(&self) {
        self.close_within(EXIT_GRACE).await;
    }

    /// [`Connection::close`], giving a stdio server `exit_grace` to exit after its stdin
    /// closed. A server that was only listed has no work to finish: it gets
    /// [`LISTED_EXIT_GRACE`], so that a docs listing does not wait on a slow exit.
    pub(super) async fn close_within(&self, exit_grace: Duration) {
        set_death(&self.death_tx, "the bridge shut the server down");
        self.ct.cancel();
        if let (Some(exited), Some(group)) = (&self.exited, &self.group) {
            let mut exited = exited.clone();
            let _ = tokio::time::timeout(exit_grace, exited.wait_for(|e| *e)).await;
            group.terminate(TERM_GRACE).await;
        }
        let supervisor = self.supervisor.lock().expect("supervisor lock").take();
        if let Some(supervisor) = supervisor
            && tokio::time::timeout(EXIT_GRACE, supervisor).await.is_err()
        {
            debug!(server = %self.server, "MCP session did not end in time");
        }
        info!(server = %self.server, "MCP server stopped");
    }

    /// Throw a dead connection away: make sure nothing of it is left running.
    pub(super) fn discard(&self) {
        self.ct.cancel();
        if let Some(group) = &self.group {
            group.kill();
        }
    }
}

/// Kills a process group when dropped, unless disarmed.
struct KillOnDrop(Option<Arc<ProcessGroup>>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            group.kill();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.ct.cancel();
        if let Some(group) = &self.group {
            group.kill();
        }
    }
}
