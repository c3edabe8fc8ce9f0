//! The policy and the audit log around one proxied tool call: may it be made (allowed,
//! denied, or asked of the user), and one audit line saying what became of it.
//!
//! What it trusts: the server is one the run may use (checked before); the tool name and
//! the arguments come from the guest and are only matched, measured and shown to the user,
//! escaped and cut ([`question`]). What it promises:
//!
//! - A call the policy denies, or that needs approval it did not get (declined, cancelled,
//!   no answer in time, a client that cannot ask), is never made; the guest gets an error of
//!   kind `denied` or `declined` whose message says why.
//! - An approval is never waited for past the run's deadline (less [`ASK_MARGIN`], so the
//!   guest still gets its answer before the run is interrupted): the deadline keeps running
//!   while the user thinks.
//! - Every call is one audit line, even one whose run ended while it was being decided or
//!   made (decision `cancelled`, or outcome `abandoned`), and one count in the metrics
//!   (`mcp_bridge_proxied_calls_total`, by tenant, server and outcome).
//! - With no policy and the audit off, a call costs one check of an empty table.

use std::sync::Arc;
use std::time::Duration;

use sandbox_core::RpcError;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::audit::{self, Audit, Outcome, ToolCall};
use crate::metrics::{CallEnd, Metrics};
use crate::policy::ask::{Answer, Asker, question};
use crate::policy::{Decision, Policy, Why};
use crate::proxy::upstream::{UpstreamError, Upstreams};
use crate::units::format_duration;

/// How long before the run's deadline an approval stops being waited for.
pub const ASK_MARGIN: Duration = Duration::from_secs(1);

/// Who a run's calls come from: its session, its client's scope, how to ask its user.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The session's name.
    pub session: String,
    /// The client's scope, as the audit log writes it.
    pub scope: String,
    /// The client's tenant, as the metrics label it.
    pub tenant: String,
    /// How to ask the client's user (`None`: there is no client to ask, `ask` is refused).
    pub asker: Option<Arc<dyn Asker>>,
    /// When the run must be over.
    pub deadline: Instant,
    /// The saved tools and memory this caller's runs use, when not the bridge's own (a
    /// tenant's).
    pub state: Option<Arc<crate::state::State>>,
}

impl Caller {
    /// Calls with no client behind them (host checks, fuzzing): nothing can be asked.
    pub fn nobody() -> Self {
        Self {
            session: String::new(),
            scope: String::new(),
            tenant: crate::tenants::DEFAULT_TENANT.to_string(),
            asker: None,
            deadline: Instant::now() + Duration::from_hours(24),
            state: None,
        }
    }
}

/// A call that may be made, and how it was decided.
#[derive(Debug)]
pub struct Approval {
    /// `allowed` or `asked-accepted`.
    pub decision: audit::Decision,
    /// Why, when it was asked.
    pub reason: Option<String>,
}

/// A call that may not be made.
#[derive(Debug)]
pub struct Refusal {
    /// How the audit log records it.
    pub decision: audit::Decision,
    /// The reason the audit log records.
    pub reason: String,
    /// What the guest gets.
    pub error: RpcError,
}

/// Decide whether `tool` of `server` may be called with `arguments` by `caller`'s run:
/// the policy, the tool's `destructiveHint` when it matters, and the user when it says ask.
pub async fn approve(
    policy: &Policy,
    upstreams: &Upstreams,
    caller: &Caller,
    server: &str,
    tool: &str,
    arguments: &Map<String, Value>,
) -> Result<Approval, Refusal> {
    let ruling = policy.decide(server, tool);
    let allowed = Ok(Approval {
        decision: audit::Decision::Allowed,
        reason: None,
    });
    let (mut decision, mut why) = (ruling.decision, ruling.why);
    if decision == Decision::Deny {
        return Err(Refusal {
            decision: audit::Decision::Denied,
            reason: format!("denied by {why}"),
            error: RpcError::new(
                "denied",
                format!("the tool `{tool}` of server `{server}` is denied by {why}"),
            ),
        });
    }
    if decision == Decision::Allow && !ruling.destructive_matters {
        return allowed;
    }
    // Ask only about a tool the server has, and look at its annotations when they matter.
    match upstreams.destructive_hint(server, tool).await {
        // An unknown tool: the call reports it, with the names of similar ones.
        Ok(None) => return allowed,
        Ok(Some(true)) if ruling.destructive_matters => {
            decision = Decision::Ask;
            why = Why::Destructive;
        }
        Ok(Some(_)) => {}
        Err(e) => return Err(unreachable_server(&e)),
    }
    if decision == Decision::Allow {
        return allowed;
    }
    ask(policy, caller, server, tool, arguments, why).await
}

fn unreachable_server(error: &UpstreamError) -> Refusal {
    let reason = sandbox_core::error_chain(error);
    Refusal {
        decision: audit::Decision::Error,
        error: RpcError::new(error.kind(), reason.clone()),
        reason,
    }
}

async fn ask(
    policy: &Policy,
    caller: &Caller,
    server: &str,
    tool: &str,
    arguments: &Map<String, Value>,
    why: Why<'_>,
) -> Result<Approval, Refusal> {
    let needs = format!("the tool `{tool}` of server `{server}` needs approval ({why})");
    let Some(asker) = caller.asker.as_ref().filter(|a| a.can_ask()) else {
        return Err(Refusal {
            decision: audit::Decision::Denied,
            reason: format!("needs approval ({why}); the client cannot ask (no elicitation)"),
            error: RpcError::new(
                "denied",
                format!(
                    "{needs}, and this client cannot ask its user (no elicitation support); \
                     the call was not made"
                ),
            ),
        });
    };
    let left = caller
        .deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(ASK_MARGIN);
    let timeout = policy.ask_timeout().min(left);
    if timeout.is_zero() {
        return Err(Refusal {
            decision: audit::Decision::Timeout,
            reason: format!("needs approval ({why}); the run had no time left to ask"),
            error: RpcError::new(
                "declined",
                format!(
                    "{needs}, and the run has no time left to wait for an answer; run it \
                     again with a longer timeout"
                ),
            ),
        });
    }
    let refused = |decision, reason: String, told: String| Refusal {
        decision,
        reason,
        error: RpcError::new("declined", told),
    };
    match asker.ask(question(server, tool, arguments), timeout).await {
        Answer::Accepted => Ok(Approval {
            decision: audit::Decision::AskedAccepted,
            reason: Some(format!("asked: {why}")),
        }),
        Answer::Declined => Err(refused(
            audit::Decision::Declined,
            format!("asked ({why}); the user declined"),
            format!("{needs}: the user declined it; the call was not made"),
        )),
        Answer::Cancelled => Err(refused(
            audit::Decision::Declined,
            format!("asked ({why}); the user cancelled"),
            format!("{needs}: the user dismissed the request; the call was not made"),
        )),
        Answer::TimedOut => Err(refused(
            audit::Decision::Timeout,
            format!(
                "asked ({why}); no answer within {}",
                format_duration(timeout)
            ),
            format!(
                "{needs}: no answer came within {}; the call was not made",
                format_duration(timeout)
            ),
        )),
        Answer::Failed(failure) => Err(refused(
            audit::Decision::Error,
            format!("asked ({why}); asking failed: {failure}"),
            format!("{needs}, and asking the user failed ({failure}); the call was not made"),
        )),
    }
}

/// The audit line and the metrics count of one call, written when it is finished, or when
/// it is dropped (the run ended first).
#[derive(Debug)]
pub struct CallRecord<'a> {
    audit: &'a Audit,
    metrics: &'a Metrics,
    caller: &'a Caller,
    server: &'a str,
    tool: &'a str,
    started: Instant,
    argument_bytes: u64,
    decided: Option<(audit::Decision, Option<String>)>,
    written: bool,
}

impl<'a> CallRecord<'a> {
    /// The record of a call that arrived at `started`; its arguments are measured only when
    /// the audit is on.
    pub fn new(
        (audit, metrics): (&'a Audit, &'a Metrics),
        caller: &'a Caller,
        server: &'a str,
        tool: &'a str,
        arguments: &Map<String, Value>,
        started: Instant,
    ) -> Self {
        Self {
            audit,
            metrics,
            caller,
            server,
            tool,
            started,
            argument_bytes: if audit.is_on() {
                audit::json_size(arguments)
            } else {
                0
            },
            decided: None,
            written: false,
        }
    }

    /// The call may be made.
    pub fn approved(&mut self, approval: Approval) {
        self.decided = Some((approval.decision, approval.reason));
    }

    /// The call was refused: write its line.
    pub fn refused(mut self, refusal: &Refusal) {
        self.decided = Some((refusal.decision, Some(refusal.reason.clone())));
        self.write(Outcome::NotRun, 0);
    }

    /// The call was made: write its line.
    pub fn finished(mut self, outcome: Outcome, result: Option<&Value>) {
        let bytes = match result {
            Some(result) if self.audit.is_on() => audit::json_size(result),
            _ => 0,
        };
        self.write(outcome, bytes);
    }

    fn write(&mut self, outcome: Outcome, result_bytes: u64) {
        if self.written {
            return;
        }
        self.written = true;
        let (decision, reason) = self
            .decided
            .take()
            .unwrap_or((audit::Decision::Cancelled, None));
        let took = self.started.elapsed();
        self.metrics.proxied_call(
            &self.caller.tenant,
            self.server,
            call_end(decision, outcome),
            took,
        );
        if !self.audit.is_on() {
            return;
        }
        let event = audit::Event::ToolCall(ToolCall {
            server: self.server.to_owned(),
            tool: self.tool.to_owned(),
            decision,
            reason,
            outcome,
            duration_ms: took.as_secs_f64() * 1000.0,
            argument_bytes: self.argument_bytes,
            result_bytes,
        });
        self.audit
            .record(&self.caller.session, &self.caller.scope, event);
    }
}

/// How the metrics count a call: refused when the policy or the user said no, else what
/// became of it (a call whose run ended before it was decided is abandoned).
fn call_end(decision: audit::Decision, outcome: Outcome) -> CallEnd {
    use audit::Decision as D;
    match (decision, outcome) {
        (D::Denied | D::Declined | D::Timeout | D::Error, _) => CallEnd::Refused,
        (_, Outcome::Ok) => CallEnd::Ok,
        (_, Outcome::ToolError) => CallEnd::ToolError,
        (_, Outcome::Failed) => CallEnd::Failed,
        (_, Outcome::Abandoned | Outcome::NotRun) => CallEnd::Abandoned,
    }
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        let outcome = if self.decided.is_some() {
            Outcome::Abandoned
        } else {
            Outcome::NotRun
        };
        self.write(outcome, 0);
    }
}
