//! The metric families and their label sets: the one place a series' name, help and labels
//! are written.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{CallEnd, Refusal, RunEnd};

/// Upper bounds of the duration buckets, in seconds: a warm call (under a millisecond) to
/// the longest run a client may ask for (five minutes).
const DURATION_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A histogram family whose members all have [`DURATION_BUCKETS`].
type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

/// `{tenant}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TenantLabel {
    tenant: String,
}

impl TenantLabel {
    pub(super) fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
        }
    }
}

/// `{tenant, status}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RunLabels {
    tenant: String,
    status: &'static str,
}

impl RunLabels {
    pub(super) fn new(tenant: &str, end: RunEnd) -> Self {
        Self {
            tenant: tenant.to_string(),
            status: end.as_str(),
        }
    }
}

/// `{tenant, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefusalLabels {
    tenant: String,
    reason: &'static str,
}

impl RefusalLabels {
    pub(super) fn new(tenant: &str, reason: Refusal) -> Self {
        Self {
            tenant: tenant.to_string(),
            reason: reason.as_str(),
        }
    }
}

/// `{tenant, server, outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CallLabels {
    tenant: String,
    server: String,
    outcome: &'static str,
}

impl CallLabels {
    pub(super) fn new(tenant: &str, server: &str, end: CallEnd) -> Self {
        Self {
            tenant: tenant.to_string(),
            server: server.to_string(),
            outcome: end.as_str(),
        }
    }
}

/// `{server}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServerLabel {
    server: String,
}

impl ServerLabel {
    pub(super) fn new(server: &str) -> Self {
        Self {
            server: server.to_string(),
        }
    }
}

/// `{tenant, outcome}` of a network connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NetworkLabels {
    tenant: String,
    outcome: &'static str,
}

impl NetworkLabels {
    pub(super) fn new(tenant: &str, allowed: bool) -> Self {
        Self {
            tenant: tenant.to_string(),
            outcome: if allowed { "allowed" } else { "refused" },
        }
    }
}

/// `{tenant, direction}` of network bytes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TrafficLabels {
    tenant: String,
    direction: &'static str,
}

impl TrafficLabels {
    pub(super) fn new(tenant: &str, direction: &'static str) -> Self {
        Self {
            tenant: tenant.to_string(),
            direction,
        }
    }
}

/// Every family the bridge records.
#[derive(Debug)]
pub(super) struct Families {
    pub(super) runs: Family<RunLabels, Counter>,
    pub(super) run_seconds: Durations<TenantLabel>,
    pub(super) refusals: Family<RefusalLabels, Counter>,
    pub(super) proxied_calls: Family<CallLabels, Counter>,
    pub(super) proxied_call_seconds: Durations<ServerLabel>,
    pub(super) network_connections: Family<NetworkLabels, Counter>,
    pub(super) network_bytes: Family<TrafficLabels, Counter>,
    pub(super) sessions_live: Family<TenantLabel, Gauge>,
    pub(super) sessions_suspended: Family<TenantLabel, Gauge>,
    pub(super) pool_warm: Gauge,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(duration_histogram),
            refusals: Family::default(),
            proxied_calls: Family::default(),
            proxied_call_seconds: Family::new_with_constructor(duration_histogram),
            network_connections: Family::default(),
            network_bytes: Family::default(),
            sessions_live: Family::default(),
            sessions_suspended: Family::default(),
            pool_warm: Gauge::default(),
        }
    }
}

impl Families {
    /// Register every family in `registry` under its `mcp_bridge_` name (counters get
    /// `_total`, durations `_seconds`, in the text).
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "mcp_bridge_runs",
            "run_python calls, by tenant and how they ended",
            self.runs.clone(),
        );
        registry.register_with_unit(
            "mcp_bridge_run_duration",
            "Time of a run_python call from its arrival to its answer, session start included",
            Unit::Seconds,
            self.run_seconds.clone(),
        );
        registry.register(
            "mcp_bridge_refusals",
            "Requests, runs, proxied calls and connections refused, by tenant and reason",
            self.refusals.clone(),
        );
        registry.register(
            "mcp_bridge_proxied_calls",
            "Tool calls of MCP servers made for sandboxes, by tenant, server and outcome",
            self.proxied_calls.clone(),
        );
        registry.register_with_unit(
            "mcp_bridge_proxied_call_duration",
            "Time of a proxied tool call, approval included, by server",
            Unit::Seconds,
            self.proxied_call_seconds.clone(),
        );
        registry.register(
            "mcp_bridge_network_connections",
            "Network connections sandboxes asked for, by tenant and outcome",
            self.network_connections.clone(),
        );
        registry.register_with_unit(
            "mcp_bridge_network",
            "Bytes of sandboxes' network connections, by tenant and direction",
            Unit::Bytes,
            self.network_bytes.clone(),
        );
        registry.register(
            "mcp_bridge_sessions_live",
            "Sandbox sessions alive in this bridge, by tenant",
            self.sessions_live.clone(),
        );
        registry.register(
            "mcp_bridge_sessions_suspended",
            "Saved sessions in the state directory that no running bridge has live, by tenant \
             (replicas sharing the directory report the same number)",
            self.sessions_suspended.clone(),
        );
        registry.register(
            "mcp_bridge_pool_warm_sessions",
            "Started sessions waiting in the warm pool",
            self.pool_warm.clone(),
        );
    }
}
