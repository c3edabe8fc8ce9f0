//! Serving the guest's calls (`rpc` frames) for one run.
//!
//! What is trusted: nothing in the call. Every call is checked here: the method must be
//! known, its parameters must have the documented shape, and `list_tools` / `call_tool` may
//! only name servers the run listed in its `servers` argument. Documentation (`query_tool_docs`,
//! `search_tool_docs`, `describe_servers`) covers every discovered server, since reading docs
//! starts nothing the run could use: it is answered from the tool cache, and a server with no
//! current cache is started only to be listed, then stopped (`Upstreams::listing`).
//! Persistence (`save_tool`, `memory`) goes through [`State`], which validates names and
//! sizes before anything touches a path. `install` goes to the session's
//! [`SessionPackages`], which checks every requirement and fact; without one (installs off)
//! it is refused as `disabled`. A `call_tool` also passes the [`Policy`] (allowed, denied,
//! or asked of the run's client) and leaves one line in the audit log ([`guard`]).

use std::sync::Arc;

use async_trait::async_trait;
use rmcp::model::Tool;
use sandbox_core::frame::{CatalogueEntry, ServerRef};
use sandbox_core::{RpcError, RpcHandler};
use serde_json::{Map, Value, json};
use tracing::warn;

use crate::audit::{Audit, Outcome};
use crate::checkpoints::transfer::CheckpointCalls;
use crate::egress::Egress;
use crate::egress::ledger::Ledger;
use crate::metrics::Metrics;
use crate::packages::{PackageError, SessionPackages};
use crate::policy::Policy;
use crate::proxy::alias::assign_tool_aliases;
use crate::proxy::catalogue::Catalogue;
use crate::proxy::describe::{searchable_description, server_description};
use crate::proxy::guard::{self, CallRecord, Caller};
use crate::proxy::search::{SearchIndex, ToolDoc, doc_record};
use crate::proxy::upstream::{Listing, UpstreamSpec, Upstreams};
use crate::state::{State, StateError};

/// Most results `search_tool_docs` returns.
const MAX_SEARCH_LIMIT: u64 = 20;

/// Everything proxying needs, one per process.
#[derive(Debug)]
pub struct Proxy {
    catalogue: Catalogue,
    upstreams: Upstreams,
    /// The host state, or why its directory could not be opened (told to each call that
    /// needs it).
    state: Result<State, StateError>,
    /// What tool calls may do without asking.
    policy: Policy,
    /// Where each tool call is recorded.
    audit: Audit,
    /// Where each tool call is counted (set once, by [`Proxy::set_metrics`]).
    metrics: std::sync::OnceLock<Metrics>,
}

impl Proxy {
    /// Proxying over the servers of `catalogue`, with host state in `state`; no policy (every
    /// call allowed) and no audit log.
    pub fn new(
        catalogue: Catalogue,
        upstreams: Upstreams,
        state: Result<State, StateError>,
    ) -> Arc<Self> {
        Self::guarded(catalogue, upstreams, state, Policy::default(), Audit::off())
    }

    /// Proxying as [`Proxy::new`], with tool calls under `policy` and recorded in `audit`.
    pub fn guarded(
        catalogue: Catalogue,
        upstreams: Upstreams,
        state: Result<State, StateError>,
        policy: Policy,
        audit: Audit,
    ) -> Arc<Self> {
        Arc::new(Self {
            catalogue,
            upstreams,
            state,
            policy,
            audit,
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// From now on, counts every tool call in `metrics`. Only the first call counts.
    pub fn set_metrics(&self, metrics: Metrics) {
        let _ = self.metrics.set(metrics);
    }

    /// Where tool calls are counted.
    pub fn metrics(&self) -> &Metrics {
        static OFF: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::off);
        self.metrics.get().unwrap_or(&OFF)
    }

    /// The policy tool calls are under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Each server's policy, one block per server that has one (empty when none does), for
    /// the `servers` subcommand.
    pub fn policy_report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for entry in &self.catalogue.servers {
            let lines = self.policy.describe(&entry.name);
            if lines.is_empty() {
                continue;
            }
            if out.is_empty() {
                out.push_str("\nTool policy (the stricter wins; no rule: allow):\n");
            }
            let _ = writeln!(out, "  {}:", entry.name);
            for line in lines {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }

    /// The upstream specs for the servers of a catalogue.
    pub fn upstream_specs(catalogue: &Catalogue) -> Vec<UpstreamSpec> {
        catalogue
            .servers
            .iter()
            .map(|entry| UpstreamSpec {
                name: entry.name.clone(),
                transport: entry.transport.clone(),
            })
            .collect()
    }

    /// The discovered servers.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The catalogue as the guest's `hello` frame carries it, each description as far as it
    /// is known without starting anything (see [`describe`](crate::proxy::describe)).
    pub fn hello_catalogue(&self) -> Vec<CatalogueEntry> {
        self.catalogue
            .servers
            .iter()
            .map(|s| CatalogueEntry {
                name: s.name.clone(),
                alias: s.alias.clone(),
                description: server_description(
                    s.description.as_deref(),
                    self.upstreams.cached_listing(&s.name).as_deref(),
                ),
            })
            .collect()
    }

    /// `{name, alias, description}` of each of `servers` (every discovered server when
    /// `None`), in catalogue order. A server without a description of the user's is described
    /// from what it said about itself ([`Upstreams::listing`]: cached, or started only to be
    /// listed, all at once); one that cannot be listed gets an empty description.
    pub async fn describe_servers(&self, servers: Option<&[String]>) -> Result<Value, RpcError> {
        if let Some(unknown) = servers
            .into_iter()
            .flatten()
            .find(|name| self.catalogue.get(name).is_none())
        {
            return Err(RpcError::new(
                "unknown_server",
                self.unknown_server(unknown),
            ));
        }
        let wanted: Vec<_> = self
            .catalogue
            .servers
            .iter()
            .filter(|s| servers.is_none_or(|names| names.contains(&s.name)))
            .collect();
        let to_list: Vec<String> = wanted
            .iter()
            .filter(|s| s.description.is_none())
            .map(|s| s.name.clone())
            .collect();
        let mut listed = to_list
            .iter()
            .zip(self.upstreams.listings(&to_list).await)
            .filter_map(|(name, outcome)| match outcome {
                Ok(listing) => Some((name.clone(), listing)),
                Err(e) => {
                    warn!(server = %name, "no description: {}", sandbox_core::error_chain(&e));
                    None
                }
            })
            .collect::<std::collections::HashMap<_, _>>();
        Ok(Value::Array(
            wanted
                .iter()
                .map(|s| {
                    let listing = listed.remove(&s.name);
                    let description =
                        server_description(s.description.as_deref(), listing.as_deref());
                    json!({"name": s.name, "alias": s.alias, "description": description})
                })
                .collect(),
        ))
    }

    /// The servers a run names, with their aliases; an unknown name is an error that lists
    /// the known ones.
    pub fn server_refs(&self, names: &[String]) -> Result<Vec<ServerRef>, String> {
        let mut refs: Vec<ServerRef> = Vec::new();
        for name in names {
            let Some(entry) = self.catalogue.get(name) else {
                return Err(self.unknown_server(name));
            };
            if !refs.iter().any(|r| r.name == entry.name) {
                refs.push(ServerRef {
                    name: entry.name.clone(),
                    alias: entry.alias.clone(),
                });
            }
        }
        Ok(refs)
    }

    fn unknown_server(&self, name: &str) -> String {
        let known = self.catalogue.names();
        if known.is_empty() {
            format!(
                "unknown server `{name}`: no MCP servers are configured for this bridge (run \
                 `mcp-server-code-execution-mode servers` to see where it looks)"
            )
        } else {
            format!(
                "unknown server `{name}`; known servers: {}",
                known.join(", ")
            )
        }
    }

    /// The user's saved tools, with a version that changes whenever they do.
    pub fn saved_tools(&self) -> Option<(u64, String)> {
        self.state.as_ref().ok().and_then(State::saved_tools_source)
    }

    /// The handler for the calls of one run that may use `servers`, in a session that
    /// has `services`, with no client behind it ([`Caller::nobody`]: a call the policy
    /// says to ask about is refused).
    pub fn calls_for_run(
        self: &Arc<Self>,
        servers: &[ServerRef],
        services: SessionServices,
    ) -> Arc<dyn RpcHandler> {
        self.calls_of(Caller::nobody(), servers, services)
    }

    /// [`Proxy::calls_for_run`] for a run of `caller`: its session and client, who is asked
    /// when the policy says so.
    pub fn calls_of(
        self: &Arc<Self>,
        caller: Caller,
        servers: &[ServerRef],
        services: SessionServices,
    ) -> Arc<dyn RpcHandler> {
        Arc::new(RunCalls {
            proxy: self.clone(),
            allowed: servers.iter().map(|s| s.name.clone()).collect(),
            services,
            caller,
        })
    }

    /// The audit log the proxy writes to, for the other parts that write to it.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Stop every upstream server this process started, and write what the audit log holds.
    pub async fn shutdown(&self) {
        self.upstreams.shutdown().await;
        let audit = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    }

    /// The live `tools/list` of one discovered server (starting it if needed).
    pub async fn server_tools(&self, server: &str) -> Result<Vec<Tool>, RpcError> {
        if self.catalogue.get(server).is_none() {
            return Err(RpcError::new("unknown_server", self.unknown_server(server)));
        }
        self.upstreams
            .list_tools(server)
            .await
            .map_err(|e| upstream_error(&e))
    }

    /// Call a tool of a discovered server directly from the host (benchmarks, checks).
    pub async fn call_direct(
        &self,
        server: &str,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<rmcp::model::CallToolResult, RpcError> {
        self.upstreams
            .call_tool(server, tool, arguments)
            .await
            .map_err(|e| upstream_error(&e))
    }

    /// What any discovered server said about itself: from the running server or the schema
    /// cache when it is current, else by starting the server only to list it.
    async fn listing_of(&self, server: &str) -> Result<Arc<Listing>, RpcError> {
        if self.catalogue.get(server).is_none() {
            return Err(RpcError::new("unknown_server", self.unknown_server(server)));
        }
        self.upstreams
            .listing(server)
            .await
            .map_err(|e| upstream_error(&e))
    }

    /// Doc records of one discovered server's tools, or of one tool (by name or alias).
    pub async fn query_docs(
        &self,
        server: &str,
        tool: Option<&str>,
        full: bool,
    ) -> Result<Value, RpcError> {
        let docs = self.docs_of(server, &*self.listing_of(server).await?);
        let Some(tool) = tool else {
            return Ok(Value::Array(
                docs.iter().map(|d| doc_record(d, full)).collect(),
            ));
        };
        docs.iter()
            .find(|d| d.tool == tool || d.tool_alias == tool)
            .map(|d| doc_record(d, full))
            .ok_or_else(|| {
                let known: Vec<&str> = docs.iter().map(|d| d.tool.as_str()).collect();
                RpcError::new(
                    "unknown_tool",
                    format!(
                        "server `{server}` has no tool `{tool}`; its tools: {}",
                        known.join(", ")
                    ),
                )
            })
    }

    /// Doc records of the tools best matching `query` across every discovered server.
    pub async fn search_docs(
        &self,
        query: &str,
        limit: u64,
        full: bool,
    ) -> Result<Value, RpcError> {
        let limit = usize::try_from(limit.clamp(1, MAX_SEARCH_LIMIT)).expect("at most 20");
        let names: Vec<String> = self
            .catalogue
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut docs = Vec::new();
        for (name, outcome) in names.iter().zip(self.upstreams.listings(&names).await) {
            match outcome {
                Ok(listing) => docs.extend(self.docs_of(name, &listing)),
                Err(e) => warn!(
                    server = %name,
                    "left out of the search: {}",
                    sandbox_core::error_chain(&e)
                ),
            }
        }
        let index = SearchIndex::new(docs);
        Ok(Value::Array(
            index
                .search(query, limit)
                .into_iter()
                .map(|(_, doc)| doc_record(doc, full))
                .collect(),
        ))
    }

    /// The doc of each tool of `listing`, the listing of `server`.
    fn docs_of(&self, server: &str, listing: &Listing) -> Vec<ToolDoc> {
        let entry = self.catalogue.get(server);
        let server_alias = entry.map(|e| e.alias.clone()).unwrap_or_default();
        let server_description =
            searchable_description(entry.and_then(|e| e.description.as_deref()), Some(listing));
        let tools = &listing.tools;
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        let aliases = assign_tool_aliases(&names);
        tools
            .iter()
            .zip(aliases)
            .map(|(tool, tool_alias)| ToolDoc {
                server: server.to_string(),
                server_alias: server_alias.clone(),
                tool: tool.name.to_string(),
                tool_alias,
                description: tool.description.as_deref().unwrap_or_default().to_string(),
                input_schema: Value::Object((*tool.input_schema).clone()),
                server_description: server_description.clone(),
            })
            .collect()
    }
}

/// What a session's runs may use besides its sandbox and the servers they name.
#[derive(Debug, Default)]
pub struct SessionServices {
    /// Its packages directory (`None`: installs are off).
    pub packages: Option<Arc<SessionPackages>>,
    /// Where it is saved (`None`: checkpoints are off, or its scope has no identity).
    pub checkpoints: Option<Arc<CheckpointCalls>>,
    /// Its way out to the network and its record there (`None`: no host is allowed).
    pub network: Option<(Arc<Egress>, Arc<Ledger>)>,
}

/// The calls of one run.
#[derive(Debug)]
struct RunCalls {
    proxy: Arc<Proxy>,
    allowed: Vec<String>,
    services: SessionServices,
    caller: Caller,
}

#[async_trait]
impl RpcHandler for RunCalls {
    async fn call(&self, method: &str, params: Map<String, Value>) -> Result<Value, RpcError> {
        match method {
            "list_tools" => self.list_tools(&params).await,
            "call_tool" => self.call_tool(params).await,
            "query_tool_docs" => self.query_tool_docs(&params).await,
            "search_tool_docs" => self.search_tool_docs(&params).await,
            "describe_servers" => self.describe_servers(&params).await,
            "save_tool" => {
                let state = self.state()?;
                state
                    .save_tool_rpc(&Value::Object(params))
                    .map_err(|e| state_error(&e))
            }
            "memory" => {
                let state = self.state()?;
                state
                    .memory_rpc(&Value::Object(params))
                    .map_err(|e| state_error(&e))
            }
            "fetch" => match &self.services.network {
                Some((egress, ledger)) => crate::egress::fetch::rpc(egress, ledger, &params).await,
                None => Err(RpcError::new(
                    "not_allowed",
                    "this sandbox has no network: the bridge allows no host \
                     (MCP_BRIDGE_ALLOW_HOSTS)",
                )),
            },
            "install" => match &self.services.packages {
                Some(packages) => packages
                    .install(&params)
                    .await
                    .map_err(|e| crate::packages::rpc_error(&e)),
                None => Err(crate::packages::rpc_error(&PackageError::Disabled)),
            },
            method if CheckpointCalls::serves(method) => match &self.services.checkpoints {
                Some(checkpoints) => checkpoints.call(method, &params).await,
                None => Err(RpcError::new(
                    "disabled",
                    "sessions are not saved here: checkpoints are off (MCP_BRIDGE_CHECKPOINTS)",
                )),
            },
            other => Err(RpcError::new(
                "invalid_params",
                format!("unknown method `{other}`"),
            )),
        }
    }
}

impl RunCalls {
    fn state(&self) -> Result<&State, RpcError> {
        if let Some(state) = &self.caller.state {
            return Ok(state);
        }
        self.proxy.state.as_ref().map_err(|why| {
            RpcError::new(
                "internal",
                format!(
                    "the state directory is unusable: {}",
                    sandbox_core::error_chain(why)
                ),
            )
        })
    }

    /// A server this run may use.
    fn allowed_server<'a>(&self, params: &'a Map<String, Value>) -> Result<&'a str, RpcError> {
        let server = string_param(params, "server")?;
        if self.proxy.catalogue.get(server).is_none() {
            return Err(RpcError::new(
                "unknown_server",
                self.proxy.unknown_server(server),
            ));
        }
        if !self.allowed.iter().any(|a| a == server) {
            return Err(RpcError::new(
                "not_allowed",
                format!(
                    "server `{server}` was not loaded for this run; pass servers=[\"{server}\"] \
                     to run_python"
                ),
            ));
        }
        Ok(server)
    }

    async fn list_tools(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let server = self.allowed_server(params)?;
        let tools = self
            .proxy
            .upstreams
            .list_tools(server)
            .await
            .map_err(|e| upstream_error(&e))?;
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        let aliases = assign_tool_aliases(&names);
        let records: Vec<Value> = tools
            .iter()
            .zip(aliases)
            .map(|(tool, alias)| {
                let mut record = json!({
                    "name": tool.name,
                    "alias": alias,
                    "description": tool.description.as_deref().unwrap_or_default(),
                    "inputSchema": Value::Object((*tool.input_schema).clone()),
                });
                if let Some(output) = &tool.output_schema {
                    record["outputSchema"] = Value::Object((**output).clone());
                }
                record
            })
            .collect();
        Ok(Value::Array(records))
    }

    async fn call_tool(&self, mut params: Map<String, Value>) -> Result<Value, RpcError> {
        let started = tokio::time::Instant::now();
        let server = self.allowed_server(&params)?.to_string();
        let tool = string_param(&params, "tool")?.to_string();
        let arguments = match params.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments,
            Some(_) => {
                return Err(RpcError::new(
                    "invalid_params",
                    "`arguments` must be an object",
                ));
            }
        };
        let proxy = &self.proxy;
        let mut record = CallRecord::new(
            (&proxy.audit, proxy.metrics()),
            &self.caller,
            &server,
            &tool,
            &arguments,
            started,
        );
        if proxy.policy.is_active() {
            let approval = guard::approve(
                &proxy.policy,
                &proxy.upstreams,
                &self.caller,
                &server,
                &tool,
                &arguments,
            )
            .await;
            match approval {
                Ok(approval) => record.approved(approval),
                Err(refusal) => {
                    record.refused(&refusal);
                    return Err(refusal.error);
                }
            }
        } else {
            record.approved(guard::Approval {
                decision: crate::audit::Decision::Allowed,
                reason: None,
            });
        }
        let result = match proxy.upstreams.call_tool(&server, &tool, arguments).await {
            Ok(result) => result,
            Err(e) => {
                record.finished(Outcome::Failed, None);
                return Err(upstream_error(&e));
            }
        };
        let outcome = if result.is_error == Some(true) {
            Outcome::ToolError
        } else {
            Outcome::Ok
        };
        let value = serde_json::to_value(result)
            .map_err(|e| RpcError::new("internal", format!("could not encode the result: {e}")));
        record.finished(outcome, value.as_ref().ok());
        value
    }

    async fn query_tool_docs(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let tool = match params.get("tool") {
            None | Some(Value::Null) => None,
            Some(Value::String(tool)) => Some(tool.as_str()),
            Some(_) => return Err(RpcError::new("invalid_params", "`tool` must be a string")),
        };
        self.proxy
            .query_docs(
                string_param(params, "server")?,
                tool,
                detail_is_full(params)?,
            )
            .await
    }

    async fn search_tool_docs(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(5);
        self.proxy
            .search_docs(
                string_param(params, "query")?,
                limit,
                detail_is_full(params)?,
            )
            .await
    }

    async fn describe_servers(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let not_names = || RpcError::new("invalid_params", "`servers` must be a list of strings");
        let servers = match params.get("servers") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => Some(
                names
                    .iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(not_names)?,
            ),
            Some(_) => return Err(not_names()),
        };
        self.proxy.describe_servers(servers.as_deref()).await
    }
}

fn string_param<'a>(params: &'a Map<String, Value>, name: &str) -> Result<&'a str, RpcError> {
    match params.get(name) {
        Some(Value::String(value)) => Ok(value),
        _ => Err(RpcError::new(
            "invalid_params",
            format!("`{name}` must be a string"),
        )),
    }
}

fn detail_is_full(params: &Map<String, Value>) -> Result<bool, RpcError> {
    match params.get("detail").and_then(Value::as_str) {
        None | Some("summary") => Ok(false),
        Some("full") => Ok(true),
        Some(other) => Err(RpcError::new(
            "invalid_params",
            format!("`detail` must be \"summary\" or \"full\", not {other:?}"),
        )),
    }
}

fn upstream_error(error: &crate::proxy::upstream::UpstreamError) -> RpcError {
    RpcError::new(error.kind(), sandbox_core::error_chain(error))
}

fn state_error(error: &crate::state::StateError) -> RpcError {
    RpcError::new(error.kind(), sandbox_core::error_chain(error))
}

impl Proxy {
    /// Discover the configured servers and open the state directory, as `config` says.
    /// Nothing is started: upstream servers start when a run first asks for them.
    pub fn from_config(config: &crate::config::Config) -> Arc<Self> {
        let env = crate::proxy::catalogue::DiscoveryEnv::from_config(config);
        let catalogue = Catalogue::discover(&env);
        for skipped in &catalogue.skipped {
            warn!(server = %skipped.name, source = %skipped.source.display(), "skipped: {}", skipped.why);
        }
        let upstreams = Upstreams::new(
            Self::upstream_specs(&catalogue),
            config.state_dir.join(".cache").join("tools"),
            config.tool_timeout,
        );
        let state = State::open(&config.state_dir);
        if let Err(why) = &state {
            warn!(
                "saved tools and memory are unavailable: {}",
                sandbox_core::error_chain(why)
            );
        }
        let entries = catalogue
            .servers
            .iter()
            .map(|e| (e.name.as_str(), e.policy.as_ref(), e.source.as_path()));
        let policy = Policy::new(entries, &config.policy);
        let audit = if config.audit.enabled {
            Audit::start(&config.state_dir, config.audit.limit)
        } else {
            Audit::off()
        };
        Self::guarded(catalogue, upstreams, state, policy, audit)
    }

    /// Start every server and report its tool count or its error (for `servers --check`).
    pub async fn check_report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for entry in &self.catalogue.servers {
            let line = match self.upstreams.list_tools(&entry.name).await {
                Ok(tools) => format!("ok      {}: {} tools", entry.name, tools.len()),
                Err(e) => format!("failed  {}: {}", entry.name, sandbox_core::error_chain(&e)),
            };
            let _ = writeln!(out, "{line}");
        }
        if self.catalogue.servers.is_empty() {
            out.push_str("no servers to check\n");
        }
        out
    }
}
