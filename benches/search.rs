//! Micro benchmarks of tool search: building the index over a large catalogue and ranking
//! a query against it (what `search_tool_docs` costs the host per call).

use std::hint::black_box;

use criterion::{Criterion, criterion_main};
use mcp_server_code_execution_mode::proxy::search::{SearchIndex, ToolDoc};
use serde_json::json;

/// A catalogue the size of a busy set-up: 20 servers of 25 tools with real-looking text.
fn catalogue() -> Vec<ToolDoc> {
    let verbs = ["create", "list", "get", "update", "delete", "search"];
    let nouns = [
        "issue",
        "pull request",
        "file",
        "branch",
        "comment",
        "event",
        "user",
    ];
    let mut docs = Vec::new();
    for server in 0..20 {
        for tool in 0..25 {
            let verb = verbs[tool % verbs.len()];
            let noun = nouns[(tool + server) % nouns.len()];
            docs.push(ToolDoc {
                server: format!("server-{server}"),
                server_alias: format!("server_{server}"),
                tool: format!("{verb}_{}", noun.replace(' ', "_")),
                tool_alias: format!("{verb}_{}_{tool}", noun.replace(' ', "_")),
                description: format!(
                    "{verb} a {noun} in the repository or workspace; returns the {noun} \
                     with its identifier, timestamps and the user who changed it last"
                ),
                input_schema: json!({"type": "object", "properties": {
                    "owner": {"type": "string"}, "repo": {"type": "string"},
                    "title": {"type": "string"}, "limit": {"type": "integer"}}}),
                server_description: format!("Tools for the {noun}s of server {server}"),
            });
        }
    }
    docs
}

fn search(c: &mut Criterion) {
    let docs = catalogue();
    c.bench_function("search_index_build_500_tools", |b| {
        b.iter(|| SearchIndex::new(black_box(docs.clone())));
    });
    let index = SearchIndex::new(docs);
    c.bench_function("search_rank_query_500_tools", |b| {
        b.iter(|| {
            index
                .search(black_box("open a pull request on a repository"), 5)
                .len()
        });
    });
}

mod group {
    #![allow(
        missing_docs,
        reason = "criterion's macros generate undocumented functions"
    )]
    use super::search;
    criterion::criterion_group!(benches, search);
}

criterion_main!(group::benches);
