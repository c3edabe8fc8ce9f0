//! Micro benchmarks of the session engine with the real guest runtime (run by the host's
//! `python3`, see `sandbox_core::host_python`): a run's dispatch round trip, a run making
//! one call to the host, and a run whose guest builds proxies (signatures and docstrings
//! generated from JSON schemas) for a server of 50 tools.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_main};
use sandbox_core::frame::ServerRef;
use sandbox_core::host_python::HostPython;
use sandbox_core::rpc::{RpcError, RpcHandler};
use sandbox_core::{RunRequest, Sandbox, SandboxSpec, Session, SessionConfig};
use serde_json::{Map, Value, json};

/// A host that answers at once: 50 tools for `list_tools`, `{}` for anything else.
#[derive(Debug)]
struct InstantHost {
    tools: Value,
}

impl InstantHost {
    fn new() -> Self {
        let tools: Vec<Value> = (0..50)
            .map(|i| {
                json!({"name": format!("tool_{i}"), "description": format!("Tool number {i}."),
                    "inputSchema": {"type": "object", "required": ["owner", "repo"],
                        "properties": {
                            "owner": {"type": "string", "description": "Repository owner"},
                            "repo": {"type": "string", "description": "Repository name"},
                            "limit": {"type": "integer", "default": 10},
                            "labels": {"type": "array", "items": {"type": "string"}}}}})
            })
            .collect();
        Self {
            tools: Value::Array(tools),
        }
    }
}

#[async_trait]
impl RpcHandler for InstantHost {
    async fn call(&self, method: &str, _params: Map<String, Value>) -> Result<Value, RpcError> {
        Ok(if method == "list_tools" {
            self.tools.clone()
        } else {
            json!({})
        })
    }
}

fn engine(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    if !runtime.block_on(HostPython.probe()).is_available() {
        #[allow(clippy::print_stderr, reason = "the skip must be loud")]
        {
            eprintln!("SKIP session benchmarks: no python3 on PATH");
        }
        return;
    }
    let session = runtime
        .block_on(Session::start(
            &HostPython,
            &SandboxSpec::default(),
            &SessionConfig::default(),
        ))
        .expect("a session starts");
    let host: Arc<dyn RpcHandler> = Arc::new(InstantHost::new());
    let timeout = Duration::from_secs(30);

    let pass = RunRequest::code("pass", timeout);
    c.bench_function("session_run_pass", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(session.run(&pass, host.clone()).await) });
    });

    let call = RunRequest::code("import mcp.runtime as r\nr.memory_exists('x')", timeout);
    c.bench_function("session_run_one_host_call", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(session.run(&call, host.clone()).await) });
    });

    // A new alias each run makes the guest build the proxy (50 signatures) again.
    let mut alias = 0_u64;
    c.bench_function("session_run_building_a_50_tool_proxy", |b| {
        b.to_async(&runtime).iter(|| {
            alias += 1;
            let mut request = RunRequest::code("pass", timeout);
            request.servers = vec![ServerRef {
                name: "github".into(),
                alias: format!("github{alias}"),
            }];
            let (session, host) = (&session, host.clone());
            async move { black_box(session.run(&request, host).await) }
        });
    });
    runtime.block_on(session.shutdown());
}

mod group {
    #![allow(
        missing_docs,
        reason = "criterion's macros generate undocumented functions"
    )]
    use super::engine;
    criterion::criterion_group!(benches, engine);
}

criterion_main!(group::benches);
