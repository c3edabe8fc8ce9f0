//! Micro benchmarks of the metrics: what counting costs a call (a run, a proxied call), on
//! and off, and what one scrape costs with many tenants and servers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use mcp_server_code_execution_mode::metrics::{
    BridgeFacts, CallEnd, Metrics, RunEnd, SessionGauges,
};
use sandbox_core::RunKind;

/// Metrics for a shared bridge of `tenants` tenants.
fn metrics(tenants: usize) -> (Metrics, Vec<String>) {
    let names: Vec<String> = (0..tenants).map(|i| format!("team-{i}")).collect();
    let facts = BridgeFacts {
        backend: "wasi",
        transport: "http",
    };
    (Metrics::new(facts, names.iter().map(String::as_str)), names)
}

fn recording(c: &mut Criterion) {
    let (on, _) = metrics(20);
    let off = Metrics::off();
    let took = Duration::from_micros(420);
    let mut group = c.benchmark_group("metrics/record");
    group.bench_function("run, on", |b| {
        b.iter(|| on.run_finished(black_box("team-7"), RunEnd::Ran(RunKind::Completed), took));
    });
    group.bench_function("run, off", |b| {
        b.iter(|| off.run_finished(black_box("team-7"), RunEnd::Ran(RunKind::Completed), took));
    });
    group.bench_function("proxied call, on", |b| {
        b.iter(|| on.proxied_call(black_box("team-7"), "github", CallEnd::Ok, took));
    });
    group.finish();
}

fn scraping(c: &mut Criterion) {
    // 50 tenants, each with runs, calls to 10 servers and sessions.
    let (metrics, names) = metrics(50);
    for tenant in &names {
        metrics.run_finished(
            tenant,
            RunEnd::Ran(RunKind::Completed),
            Duration::from_millis(3),
        );
        for server in 0..10 {
            let server = format!("server-{server}");
            metrics.proxied_call(tenant, &server, CallEnd::Ok, Duration::from_millis(8));
        }
    }
    let gauges = SessionGauges {
        live: names.iter().map(|n| (n.clone(), 3)).collect(),
        suspended: names.iter().map(|n| (n.clone(), 1)).collect(),
        warm: 1,
    };
    c.bench_function("metrics/render 50 tenants x 10 servers", |b| {
        b.iter(|| black_box(metrics.render(&gauges)).len());
    });
}

mod group {
    #![allow(
        missing_docs,
        reason = "criterion's macros generate undocumented functions"
    )]
    use super::{recording, scraping};
    criterion::criterion_group!(benches, recording, scraping);
}

criterion_main!(group::benches);
