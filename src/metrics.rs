//! Prometheus metrics: what the bridge did and holds, per tenant, in the OpenMetrics text
//! format at `/metrics` on `MCP_BRIDGE_METRICS_LISTEN` (`docs/metrics.md` lists the series).
//!
//! # What it promises
//!
//! - **Recording costs a call next to nothing.** Each event is an atomic add on a series
//!   found under a read lock; nothing is written anywhere until a scrape.
//! - **Labels are bounded and say nothing secret.** A tenant is a tokens-file name (or
//!   `default`), a server a catalogue name, and statuses, outcomes and reasons are the fixed
//!   words of [`RunEnd`], [`CallEnd`] and [`Refusal`]. Never a token, a client's or session's
//!   name, code, arguments, hosts or values.
//! - **Gauges are read when scraped.** Live sessions come from the session table, suspended
//!   ones from the checkpoint store ([`SessionGauges`]), so they are never out of step with
//!   what `doctor` shows.
//! - **Every known tenant has every series from the start**, at zero, so `rate()` and
//!   alerts see the first refusal rather than a series appearing.

mod families;
mod serve;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use sandbox_core::RunKind;

use self::families::{
    CallLabels, Families, NetworkLabels, RefusalLabels, RunLabels, ServerLabel, TenantLabel,
    TrafficLabels,
};
pub use self::serve::{ENDPOINT, MetricsError, bind, serve};
use crate::checkpoints::identity::DEFAULT_TENANT;

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a `run_python` call ended, as `mcp_bridge_runs_total{status}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEnd {
    /// The run reached its sandbox and ended this way.
    Ran(RunKind),
    /// The session could not be started or resumed, or the tenant's state was unusable.
    NotStarted,
    /// The arguments were wrong (an unknown server, a bad session name).
    Rejected,
    /// A limit refused it before anything ran (see `mcp_bridge_refusals_total`).
    Refused,
}

impl RunEnd {
    /// Every status, in the order the docs list them.
    pub const ALL: [RunEnd; 8] = [
        RunEnd::Ran(RunKind::Completed),
        RunEnd::Ran(RunKind::Raised),
        RunEnd::Ran(RunKind::TimedOut),
        RunEnd::Ran(RunKind::Cancelled),
        RunEnd::Ran(RunKind::SandboxFailed),
        RunEnd::NotStarted,
        RunEnd::Rejected,
        RunEnd::Refused,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Ran(kind) => kind.name(),
            RunEnd::NotStarted => "not_started",
            RunEnd::Rejected => "rejected",
            RunEnd::Refused => "refused",
        }
    }

    /// How a run that reached its sandbox ended.
    pub fn of(status: &sandbox_core::RunStatus) -> Self {
        RunEnd::Ran(status.kind())
    }

    /// Whether the run's time goes into the duration histogram: not for calls turned away
    /// before any session was asked for, which would crowd its lowest bucket.
    fn is_timed(self) -> bool {
        !matches!(self, RunEnd::Rejected | RunEnd::Refused)
    }
}

/// Why something was refused, as `mcp_bridge_refusals_total{reason}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// An HTTP request without a token the bridge knows (`401`; its tenant is unknown, so
    /// the label is empty).
    Unauthorized,
    /// An MCP session used with another tenant's token.
    OtherTenantsSession,
    /// The tenant's `max_sessions`.
    MaxSessions,
    /// The tenant's `runs_per_minute`.
    RunsPerMinute,
    /// The tenant's `max_concurrent_runs`.
    MaxConcurrentRuns,
    /// The bridge's own session cap (`MCP_BRIDGE_MAX_SESSIONS`), with nothing to suspend.
    BridgeSessions,
    /// A proxied tool call the policy denied or the user declined.
    Policy,
    /// A network connection the egress policy or the session's budget refused.
    Network,
}

impl Refusal {
    /// Every reason, in the order the docs list them.
    pub const ALL: [Refusal; 8] = [
        Refusal::Unauthorized,
        Refusal::OtherTenantsSession,
        Refusal::MaxSessions,
        Refusal::RunsPerMinute,
        Refusal::MaxConcurrentRuns,
        Refusal::BridgeSessions,
        Refusal::Policy,
        Refusal::Network,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::OtherTenantsSession => "other_tenants_session",
            Refusal::MaxSessions => "max_sessions",
            Refusal::RunsPerMinute => "runs_per_minute",
            Refusal::MaxConcurrentRuns => "max_concurrent_runs",
            Refusal::BridgeSessions => "bridge_sessions",
            Refusal::Policy => "policy",
            Refusal::Network => "network",
        }
    }
}

/// How a proxied tool call ended, as `mcp_bridge_proxied_calls_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallEnd {
    /// The tool answered.
    Ok,
    /// The tool answered with `isError`.
    ToolError,
    /// The call failed: the server crashed, timed out or was unknown.
    Failed,
    /// The run ended before the answer came.
    Abandoned,
    /// Not made: the policy or the user refused it.
    Refused,
}

impl CallEnd {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallEnd::Ok => "ok",
            CallEnd::ToolError => "tool_error",
            CallEnd::Failed => "failed",
            CallEnd::Abandoned => "abandoned",
            CallEnd::Refused => "refused",
        }
    }
}

/// What the session gauges read at a scrape: sessions by tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionGauges {
    /// This bridge's live sandbox sessions, by tenant.
    pub live: BTreeMap<String, i64>,
    /// Saved sessions in the state directory that no running bridge has live, by tenant.
    pub suspended: BTreeMap<String, i64>,
    /// Warm sessions waiting in the pool.
    pub warm: i64,
}

/// Where the bridge's metrics go: its families, or nowhere. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    families: Families,
    /// The tenants every series is made for up front.
    tenants: Vec<String>,
    /// One scrape at a time: each sets the gauges, then encodes.
    scrape: Mutex<()>,
}

/// What identifies this bridge in `mcp_bridge_info`.
#[derive(Debug, Clone, Copy)]
pub struct BridgeFacts<'a> {
    /// The backend (`wasi`, `podman`, ...).
    pub backend: &'a str,
    /// The MCP transport (`stdio`, `http`).
    pub transport: &'a str,
}

impl Metrics {
    /// Metrics that record nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// Metrics for a bridge whose tenants are `tenants` (besides [`DEFAULT_TENANT`], which
    /// is always there).
    pub fn new<'a>(facts: BridgeFacts<'_>, tenants: impl IntoIterator<Item = &'a str>) -> Self {
        let families = Families::default();
        let mut registry = Registry::default();
        registry.register(
            "mcp_bridge",
            "This bridge: its version, backend and transport",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("backend", facts.backend.to_string()),
                ("transport", facts.transport.to_string()),
            ]),
        );
        families.register(&mut registry);
        let mut names = vec![DEFAULT_TENANT.to_string()];
        names.extend(
            tenants
                .into_iter()
                .filter(|t| *t != DEFAULT_TENANT)
                .map(str::to_string),
        );
        for tenant in &names {
            for status in RunEnd::ALL {
                drop(families.runs.get_or_create(&RunLabels::new(tenant, status)));
            }
            for reason in Refusal::ALL {
                drop(
                    families
                        .refusals
                        .get_or_create(&RefusalLabels::new(tenant, reason)),
                );
            }
            drop(
                families
                    .run_seconds
                    .get_or_create(&TenantLabel::new(tenant)),
            );
        }
        Self {
            inner: Some(Arc::new(Inner {
                registry,
                families,
                tenants: names,
                scrape: Mutex::new(()),
            })),
        }
    }

    /// Whether anything is recorded.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// A `run_python` call of `tenant` ended as `end`, `took` after it arrived.
    pub fn run_finished(&self, tenant: &str, end: RunEnd, took: Duration) {
        let Some(inner) = &self.inner else { return };
        inner
            .families
            .runs
            .get_or_create(&RunLabels::new(tenant, end))
            .inc();
        if end.is_timed() {
            inner
                .families
                .run_seconds
                .get_or_create(&TenantLabel::new(tenant))
                .observe(took.as_secs_f64());
        }
    }

    /// Something of `tenant` (empty when unknown) was refused for `reason`.
    pub fn refused(&self, tenant: &str, reason: Refusal) {
        let Some(inner) = &self.inner else { return };
        inner
            .families
            .refusals
            .get_or_create(&RefusalLabels::new(tenant, reason))
            .inc();
    }

    /// A proxied call of `tenant` to `server` ended as `end`, `took` after it arrived
    /// (including any wait for approval).
    pub fn proxied_call(&self, tenant: &str, server: &str, end: CallEnd, took: Duration) {
        let Some(inner) = &self.inner else { return };
        let families = &inner.families;
        families
            .proxied_calls
            .get_or_create(&CallLabels::new(tenant, server, end))
            .inc();
        if end == CallEnd::Refused {
            self.refused(tenant, Refusal::Policy);
        } else {
            families
                .proxied_call_seconds
                .get_or_create(&ServerLabel::new(server))
                .observe(took.as_secs_f64());
        }
    }

    /// A sandbox of `tenant` made (`allowed`) or was refused a network connection, which
    /// carried `sent` and `received` bytes.
    pub fn network_connection(&self, tenant: &str, allowed: bool, sent: u64, received: u64) {
        let Some(inner) = &self.inner else { return };
        let families = &inner.families;
        families
            .network_connections
            .get_or_create(&NetworkLabels::new(tenant, allowed))
            .inc();
        for (direction, bytes) in [("sent", sent), ("received", received)] {
            if bytes > 0 {
                families
                    .network_bytes
                    .get_or_create(&TrafficLabels::new(tenant, direction))
                    .inc_by(bytes);
            }
        }
        if !allowed {
            self.refused(tenant, Refusal::Network);
        }
    }

    /// The OpenMetrics text of every series, with the session gauges set from `gauges`
    /// (every known tenant at zero unless counted). Empty when the metrics are off.
    pub fn render(&self, gauges: &SessionGauges) -> String {
        let Some(inner) = &self.inner else {
            return String::new();
        };
        let _one_at_a_time = inner.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let families = &inner.families;
        for (family, counts) in [
            (&families.sessions_live, &gauges.live),
            (&families.sessions_suspended, &gauges.suspended),
        ] {
            family.clear();
            for tenant in &inner.tenants {
                family.get_or_create(&TenantLabel::new(tenant)).set(0);
            }
            for (tenant, count) in counts {
                family.get_or_create(&TenantLabel::new(tenant)).set(*count);
            }
        }
        families.pool_warm.set(gauges.warm);
        let mut text = String::new();
        encode(&mut text, &inner.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests;
