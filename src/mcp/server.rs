//! The rmcp server handler: lists and calls `run_python`, serves the capabilities resource.
//!
//! Two failure channels, as MCP intends: code that ran and failed (an exception, a timeout, a
//! sandbox that died) and arguments the caller can fix are tool results with `isError`, so
//! the agent reads the message; only requests that cannot be routed (an unknown tool, an
//! unknown resource) are protocol errors.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use rmcp::model::ProgressToken;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, Peer, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use sandbox_core::RunRequest;
use tracing::{Instrument, info_span};

use crate::checkpoints::durable::Resume;
use crate::config::Config;
use crate::mcp::capabilities::{CAPABILITIES_MIME, CAPABILITIES_URI, with_folders};
use crate::mcp::elicit::PeerAsker;
use crate::mcp::format::{NETWORK_KINDS, RestoredReport, RunReport};
use crate::mcp::progress::ProgressRelay;
use crate::mcp::roots::ClientRoots;
use crate::mcp::schema::check_arguments;
use crate::mcp::terminal;
use crate::mcp::tools::{RUN_PYTHON, SandboxFacts, read_run_args, run_python_tool};
use crate::mcp::{discovery, files};
use crate::metrics::{Refusal, RunEnd};
use crate::proxy::dispatch::Proxy;
use crate::proxy::guard::Caller;
use crate::sessions::{Scope, SessionError, Sessions};
use crate::state::State;
use crate::tenants::{QuotaRefusal, Tenant, durable_identity};

/// The tools `tools/list` shows: `run_python`, and the discovery tools when they are on.
fn published_tools(discovery_tools: bool, facts: SandboxFacts) -> Vec<Tool> {
    let mut tools = vec![run_python_tool(facts)];
    if discovery_tools {
        tools.extend(discovery::discovery_tools());
    }
    tools
}

/// The MCP server: one per client connection.
///
/// Its sandbox sessions live in one [`Scope`]. A bridge made with [`Bridge::scoped`] owns a
/// fresh scope and ends it (shutting its sandboxes down) when the last clone is dropped,
/// which is when its MCP session ends.
#[derive(Debug, Clone)]
pub struct Bridge {
    config: Arc<Config>,
    sessions: Arc<Sessions>,
    proxy: Arc<Proxy>,
    tools: Arc<[Tool]>,
    scope: Arc<ScopeGuard>,
    /// The client's MCP roots, granted to its sessions when `mount_roots` is on.
    roots: Arc<ClientRoots>,
}

/// Ends an owned scope on drop, and takes it off its tenant's list.
#[derive(Debug)]
struct ScopeGuard {
    scope: Scope,
    sessions: Arc<Sessions>,
    owned: bool,
    /// The tenant whose token opened this MCP session (bound by its first call).
    tenant: OnceLock<Arc<Tenant>>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        if let Some(tenant) = self.tenant.get() {
            tenant.remove_scope(self.scope);
        }
        if self.owned {
            self.sessions.end_scope(self.scope);
        }
    }
}

/// The tenant of calls that carry none: stdio, and HTTP without tokens.
static UNLIMITED: LazyLock<Arc<Tenant>> = LazyLock::new(|| Arc::new(Tenant::unlimited()));

impl Bridge {
    /// A server running code on `sessions` in their shared scope, reaching MCP servers
    /// through `proxy`: for a server with one client (stdio).
    pub fn new(config: Arc<Config>, sessions: Arc<Sessions>, proxy: Arc<Proxy>) -> Self {
        Self::with_scope(config, sessions, proxy, Scope::SHARED, false)
    }

    /// A server whose session names are its own: no other bridge sees its Python state, and
    /// its sandbox sessions are shut down once it (and every clone of it) is dropped.
    pub fn scoped(config: Arc<Config>, sessions: Arc<Sessions>, proxy: Arc<Proxy>) -> Self {
        Self::with_scope(config, sessions, proxy, Scope::fresh(), true)
    }

    fn with_scope(
        config: Arc<Config>,
        sessions: Arc<Sessions>,
        proxy: Arc<Proxy>,
        scope: Scope,
        owned: bool,
    ) -> Self {
        let guard = ScopeGuard {
            scope,
            sessions: sessions.clone(),
            owned,
            tenant: OnceLock::new(),
        };
        Self {
            tools: published_tools(config.discovery_tools, SandboxFacts::of(&config)).into(),
            config,
            sessions,
            proxy,
            scope: Arc::new(guard),
            roots: Arc::new(ClientRoots::new()),
        }
    }

    /// A protocol error naming the tools this server has.
    fn unknown_tool(&self, name: &str) -> McpError {
        let name = terminal::neutralise(name);
        let message = match &*self.tools {
            [one] => format!(
                "unknown tool `{name}`; this server has one tool, `{}`",
                one.name
            ),
            tools => {
                let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
                format!(
                    "unknown tool `{name}`; this server's tools are {}",
                    names.join(", ")
                )
            }
        };
        McpError::invalid_params(message, None)
    }

    /// The identity this bridge's sessions are saved under: the transport, the tenant (of a
    /// tokens file) and the client's name from `initialize`, so two different clients, or
    /// two tenants' clients of the same name, never resume each other's sessions.
    fn durable_identity(&self, peer: &Peer<RoleServer>, tenant: &Tenant) -> String {
        let client = peer
            .peer_info()
            .map(|info| info.client_info.name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unnamed client".to_string());
        let transport = if self.scope.owned { "http" } else { "stdio" };
        durable_identity(transport, tenant.name(), &client)
    }

    /// The tenant of this call: the one whose token the request carried (the HTTP
    /// transport's middleware marks it), bound to this MCP session by its first call; a
    /// later call with another tenant's token is refused.
    fn tenant_of(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<Tenant>, (Arc<Tenant>, String)> {
        let presented = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Tenant>>())
            .cloned()
            .unwrap_or_else(|| UNLIMITED.clone());
        let bound = self.scope.tenant.get_or_init(|| {
            presented.add_scope(self.scope());
            presented.clone()
        });
        if Arc::ptr_eq(bound, &presented) {
            Ok(presented)
        } else {
            Err((
                presented,
                "this MCP session was opened with another tenant's token; initialise an MCP \
                 session of your own"
                    .to_owned(),
            ))
        }
    }

    /// Whether `tenant` may have the session `name` of this scope: an existing one always,
    /// a new one within its `max_sessions` (counted over all its MCP sessions).
    fn tenant_admits_session(&self, tenant: &Tenant, name: &str) -> Result<(), QuotaRefusal> {
        if tenant.limits().max_sessions.is_none() || self.sessions.has(self.scope(), name) {
            return Ok(());
        }
        let live = tenant
            .scopes()
            .into_iter()
            .map(|scope| self.sessions.scope_len(scope))
            .sum();
        tenant.admits_session(live)
    }

    /// A tenant's own saved tools and memory (none of its own: the bridge's).
    fn tenant_state(&self, tenant: &Tenant) -> Result<Option<Arc<State>>, String> {
        if tenant.is_default() {
            return Ok(None);
        }
        tenant
            .state(&self.config.state_dir)
            .map(Some)
            .map_err(|why| {
                format!(
                    "tenant {}'s state directory is unusable: {why}",
                    tenant.name()
                )
            })
    }

    /// Who a run of `session` with `timeout` is for: this client, asked through `peer` when
    /// a call needs approval. The deadline is counted from now, a little before the run's own
    /// (which starts once the session is free), so an approval never outlasts the run.
    fn caller(
        &self,
        session: &str,
        timeout: Duration,
        peer: &Peer<RoleServer>,
        (tenant, state): (&Tenant, Option<Arc<State>>),
    ) -> Caller {
        Caller {
            session: session.to_owned(),
            scope: self.scope().to_string(),
            tenant: tenant.name().to_owned(),
            asker: Some(Arc::new(PeerAsker::new(peer.clone()))),
            deadline: tokio::time::Instant::now() + timeout,
            state,
        }
    }

    /// The scope of this bridge's sandbox sessions.
    pub fn scope(&self) -> Scope {
        self.scope.scope
    }

    /// Run code, with arguments already checked against the tool's input schema; `cancel`
    /// fires when the client cancels the request. Counted in the metrics by how it ended.
    async fn run_python(
        &self,
        params: &CallToolRequestParams,
        cancel: tokio_util::sync::CancellationToken,
        peer: &Peer<RoleServer>,
        progress: Option<(Peer<RoleServer>, ProgressToken)>,
        tenant: Arc<Tenant>,
    ) -> CallToolResult {
        let started = std::time::Instant::now();
        let (result, end) = self
            .run_python_once(params, cancel, peer, progress, &tenant)
            .await;
        self.proxy
            .metrics()
            .run_finished(tenant.name(), end, started.elapsed());
        result
    }

    /// A refusal by one of `tenant`'s limits: counted, and told to the client.
    fn quota_refused(&self, tenant: &Tenant, refusal: &QuotaRefusal) -> (CallToolResult, RunEnd) {
        let reason = match refusal {
            QuotaRefusal::ConcurrentRuns { .. } => Refusal::MaxConcurrentRuns,
            QuotaRefusal::RunsPerMinute { .. } => Refusal::RunsPerMinute,
            QuotaRefusal::Sessions { .. } => Refusal::MaxSessions,
        };
        self.proxy.metrics().refused(tenant.name(), reason);
        (error_result(refusal.to_string()), RunEnd::Refused)
    }

    /// [`Bridge::run_python`], saying how the call ended.
    async fn run_python_once(
        &self,
        params: &CallToolRequestParams,
        cancel: tokio_util::sync::CancellationToken,
        peer: &Peer<RoleServer>,
        progress: Option<(Peer<RoleServer>, ProgressToken)>,
        tenant: &Arc<Tenant>,
    ) -> (CallToolResult, RunEnd) {
        let args = match read_run_args(params.arguments.as_ref()) {
            Ok(args) => args,
            Err(message) => return (error_result(message), RunEnd::Rejected),
        };
        // The tenant's caps, before anything starts: runs at once and per minute, sessions.
        let _permit = match tenant.start_run() {
            Ok(permit) => permit,
            Err(refusal) => return self.quota_refused(tenant, &refusal),
        };
        if let Err(refusal) = self.tenant_admits_session(tenant, &args.session) {
            return self.quota_refused(tenant, &refusal);
        }
        let tenant_state = match self.tenant_state(tenant) {
            Ok(state) => state,
            Err(message) => return (error_result(message), RunEnd::NotStarted),
        };
        let servers = match self.proxy.server_refs(&args.servers) {
            Ok(servers) => servers,
            Err(message) => return (error_result(message), RunEnd::Rejected),
        };
        let timeout = self.config.clamp_timeout(args.timeout_secs);
        let scope = self.scope();
        self.sessions
            .set_identity(scope, self.durable_identity(peer, tenant));
        self.roots
            .refresh(&self.config, &self.sessions, scope, peer)
            .await;
        let (session, _origin) = match self.sessions.get(scope, &args.session, args.reset).await {
            Ok(found) => found,
            Err(e) => return self.session_unavailable(tenant, &e),
        };
        let saved_tools_source = match &tenant_state {
            Some(state) => state.saved_tools_source(),
            None => self.proxy.saved_tools(),
        };
        let saved_tools =
            self.sessions
                .saved_tools_update(scope, &args.session, saved_tools_source);
        let resumed = self.sessions.take_resumed(scope, &args.session);
        let services = self.sessions.services_of(scope, &args.session, &session);
        let mut network = services.network.as_ref().map(|(_, ledger)| ledger.clone());
        let calls = self.proxy.calls_of(
            self.caller(&args.session, timeout, peer, (tenant, tenant_state.clone())),
            &servers,
            services,
        );
        let (relay, output_stream) = match progress {
            Some((peer, token)) => {
                let (relay, sender) = ProgressRelay::start(peer, token);
                (Some(relay), Some(sender))
            }
            None => (None, None),
        };
        let request = RunRequest {
            code: args.code,
            servers,
            timeout,
            saved_tools,
            cancel: Some(cancel),
            output_stream,
            preparation: false,
            action: None,
        };
        let running = self.sessions.running();
        let mut outcome = session.try_run(&request, calls).await;
        let mut sandbox_notice = session.notice().map(str::to_owned);
        if outcome.is_none() {
            // The session died while this call waited behind another run (a timeout or a
            // cancellation killed it): run in a fresh one rather than fail a call that never ran.
            match self.sessions.get(scope, &args.session, false).await {
                Ok((fresh, _)) => {
                    let services = self.sessions.services_of(scope, &args.session, &fresh);
                    network = services.network.as_ref().map(|(_, ledger)| ledger.clone());
                    let calls = self.proxy.calls_of(
                        self.caller(&args.session, timeout, peer, (tenant, tenant_state.clone())),
                        &request.servers,
                        services,
                    );
                    outcome = fresh.try_run(&request, calls).await;
                    sandbox_notice = fresh.notice().map(str::to_owned);
                }
                Err(e) => return self.session_unavailable(tenant, &e),
            }
        }
        drop((request, running));
        if let Some(relay) = relay {
            relay.finish().await;
        }
        let Some(outcome) = outcome else {
            return (
                error_result(
                    "the session's sandbox stopped before the code could run; try again".into(),
                ),
                RunEnd::NotStarted,
            );
        };
        self.sessions.touch(scope, &args.session);
        // Replace what this call took from the warm pool, now that it no longer needs the CPU.
        self.sessions.refill();
        let mut report =
            RunReport::new(&outcome, &args.session, args.servers, timeout.as_secs_f64());
        if let Some(text) = sandbox_notice {
            report.add_notice(&text);
        }
        match resumed {
            Some(Resume::Restored(restored)) => {
                report.add_notice(&restored.notice());
                report.restored = Some(RestoredReport::of(&restored));
            }
            Some(Resume::Fresh(why)) => report.add_notice(&format!(
                "This session could not be restored: {why}. It started fresh."
            )),
            Some(Resume::Nothing) | None => {}
        }
        if let Some(ledger) = network {
            let summary = ledger.take(NETWORK_KINDS);
            report.network = summary.connections;
            report.network_omitted = summary.omitted;
        }
        let (file_blocks, file_reports) = files::content_blocks(&outcome.files);
        report.files = file_reports;
        report.unenforced = self.sessions.sandbox().unenforced_limits();
        let mut result = CallToolResult::structured(report.to_value());
        result.content = vec![ContentBlock::text(report.text(self.config.output_mode))];
        result.content.extend(file_blocks);
        result.is_error = Some(!report.ok);
        (result, RunEnd::of(&outcome.status))
    }

    /// A session that could not be had: the bridge's session cap (counted as a refusal), a
    /// bad name, or a sandbox that did not start.
    fn session_unavailable(
        &self,
        tenant: &Tenant,
        error: &SessionError,
    ) -> (CallToolResult, RunEnd) {
        let end = match error {
            SessionError::TooMany(_) => {
                self.proxy
                    .metrics()
                    .refused(tenant.name(), Refusal::BridgeSessions);
                RunEnd::Refused
            }
            SessionError::InvalidName(_) => RunEnd::Rejected,
            SessionError::Sandbox(_) => RunEnd::NotStarted,
        };
        (error_result(sandbox_core::error_chain(error)), end)
    }
}

/// A tool result with `isError` and one text.
fn error_result(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

impl Bridge {
    /// The answer to one call of a listed tool, before it is made safe for a terminal.
    async fn answer(
        &self,
        tool: &Tool,
        request: &CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        // The one check of every call's arguments, against the schema `tools/list` showed.
        if let Err(message) = check_arguments(tool, request.arguments.as_ref()) {
            return Ok(CallToolResult::error(vec![ContentBlock::text(message)]));
        }
        if request.name != RUN_PYTHON {
            let empty = rmcp::model::JsonObject::new();
            let args = request.arguments.as_ref().unwrap_or(&empty);
            return discovery::call(&self.proxy, self.sessions.manual(), &request.name, args)
                .await
                .ok_or_else(|| self.unknown_tool(&request.name));
        }
        let tenant = match self.tenant_of(&context) {
            Ok(tenant) => tenant,
            Err((presented, message)) => {
                self.proxy
                    .metrics()
                    .refused(presented.name(), Refusal::OtherTenantsSession);
                return Ok(error_result(message));
            }
        };
        let span = info_span!("request", tool = RUN_PYTHON, tenant = tenant.name());
        Ok(self
            .run_python(
                request,
                context.ct.clone(),
                &context.peer,
                context
                    .meta
                    .get_progress_token()
                    .map(|token| (context.peer.clone(), token)),
                tenant,
            )
            .instrument(span)
            .await)
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-server-code-execution-mode",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Use run_python to run Python in a persistent sandbox; read the capabilities \
                 resource or call mcp.runtime.capability_summary() inside it for the helpers.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(tool) = self.tools.iter().find(|tool| tool.name == request.name) else {
            return Err(self.unknown_tool(&request.name));
        };
        let mut result = self.answer(tool, &request, context).await?;
        // The one place every tool's answer passes: nothing in it may drive a terminal.
        terminal::neutralise_result(&mut result);
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let resource = Resource::new(CAPABILITIES_URI, "capabilities")
            .with_title("What the sandbox can do")
            .with_description("How to use run_python and the helpers inside the sandbox")
            .with_mime_type(CAPABILITIES_MIME);
        Ok(ListResourcesResult::with_all_items(vec![resource]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if request.uri != CAPABILITIES_URI {
            return Err(McpError::resource_not_found(
                format!(
                    "no resource {}; the one resource is {CAPABILITIES_URI}",
                    request.uri
                ),
                None,
            ));
        }
        let mut names: Vec<String> = self.config.mounts.iter().map(|m| m.name.clone()).collect();
        names.extend(self.roots.names().await);
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(
                with_folders(self.sessions.manual(), &names),
                CAPABILITIES_URI,
            )
            .with_mime_type(CAPABILITIES_MIME),
        ])
        .into())
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        self.roots.mark_stale().await;
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::JsonObject;
    use serde_json::{Value, json};

    use super::*;
    use crate::mcp::schema::KEYWORDS;

    /// A value of `schema` that the checker accepts: the first enum value, the minimum, one
    /// good item.
    fn valid(schema: &Value) -> Value {
        if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
            return first.clone();
        }
        let kind = match &schema["type"] {
            Value::Array(kinds) => kinds[0].as_str().expect("type names are strings"),
            kind => kind.as_str().expect("every property has a type"),
        };
        match kind {
            "string" => json!("x"),
            "boolean" => json!(true),
            "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(1)),
            "array" => json!([valid(&schema["items"])]),
            "object" => json!({}),
            other => panic!("no example for type {other}"),
        }
    }

    /// A value of the wrong type for `schema`.
    fn mistyped(schema: &Value) -> Value {
        if schema["type"] == "string" {
            json!(7)
        } else {
            json!("7")
        }
    }

    fn keywords_are_understood(schema: &Value, at: &str) {
        let Value::Object(map) = schema else { return };
        for (key, value) in map {
            assert!(
                KEYWORDS.contains(&key.as_str()),
                "{at} uses `{key}`, which the argument checker does not understand"
            );
            match key.as_str() {
                "properties" => {
                    for (name, property) in value.as_object().expect("properties is an object") {
                        keywords_are_understood(property, &format!("{at}.{name}"));
                    }
                }
                "items" => keywords_are_understood(value, &format!("{at}[]")),
                _ => {}
            }
        }
    }

    #[test]
    fn every_published_schema_round_trips_through_the_checker() {
        let tools = published_tools(true, SandboxFacts::default());
        assert_eq!(tools.len(), 5);
        for tool in &tools {
            let schema = Value::Object((*tool.input_schema).clone());
            keywords_are_understood(&schema, &tool.name);
            let properties = schema["properties"].as_object().expect("an object schema");
            let call: JsonObject = properties
                .iter()
                .map(|(name, property)| (name.clone(), valid(property)))
                .collect();
            assert_eq!(check_arguments(tool, Some(&call)), Ok(()), "{}", tool.name);
            for (name, property) in properties {
                let mut bad = call.clone();
                bad.insert(name.clone(), mistyped(property));
                let error = check_arguments(tool, Some(&bad)).expect_err(name);
                assert!(error.starts_with(&format!("`{name}` must be ")), "{error}");
                if let Some(minimum) = property.get("minimum").and_then(Value::as_f64) {
                    bad.insert(name.clone(), json!(minimum - 1.0));
                    let error = check_arguments(tool, Some(&bad)).expect_err(name);
                    assert!(error.contains("at least"), "{error}");
                }
            }
            if schema["additionalProperties"] == false {
                let mut bad = call.clone();
                bad.insert("unheard_of".into(), json!(1));
                let error = check_arguments(tool, Some(&bad)).expect_err("an unknown argument");
                assert!(
                    error.starts_with("unknown argument `unheard_of`"),
                    "{error}"
                );
            }
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten() {
                let name = name.as_str().expect("required names are strings");
                let mut bad = call.clone();
                bad.remove(name);
                let error = check_arguments(tool, Some(&bad)).expect_err(name);
                assert!(
                    error.starts_with(&format!("missing required argument `{name}`")),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn the_run_python_schema_refuses_a_lone_server_name() {
        let call = json!({"code": "pass", "servers": "time"});
        let error = check_arguments(&run_python_tool(SandboxFacts::default()), call.as_object())
            .unwrap_err();
        assert!(
            error.contains("`servers` must be a list of strings"),
            "{error}"
        );
    }
}
