//! Tests of the ranked search: the tokenizer, the stemmer, and rankings of real tool docs.
use serde_json::json;

use super::*;

fn doc(server: &str, tool: &str, description: &str, params: &[(&str, &str)]) -> ToolDoc {
    let properties: Map<String, Value> = params
        .iter()
        .map(|(name, text)| {
            (
                (*name).to_string(),
                json!({"type": "string", "description": text}),
            )
        })
        .collect();
    ToolDoc {
        server: server.into(),
        server_alias: crate::proxy::alias::server_alias(server),
        tool: tool.into(),
        tool_alias: crate::proxy::alias::tool_alias(tool),
        description: description.into(),
        input_schema: json!({"type": "object", "properties": properties}),
        server_description: String::new(),
    }
}

/// Twenty tools as the reference MCP servers describe them.
fn realistic() -> SearchIndex {
    SearchIndex::new(vec![
        doc(
            "time",
            "get_current_time",
            "Get current time in a specific timezones",
            &[(
                "timezone",
                "IANA timezone name (e.g., 'America/New_York', 'Europe/London'). Use 'UTC' as \
             local timezone if no timezone provided by the user.",
            )],
        ),
        doc(
            "time",
            "convert_time",
            "Convert time between timezones",
            &[
                ("source_timezone", "Source IANA timezone name"),
                ("time", "Time to convert in 24-hour format (HH:MM)"),
                ("target_timezone", "Target IANA timezone name"),
            ],
        ),
        doc(
            "git",
            "git_status",
            "Shows the working tree status",
            &[("repo_path", "Path to the git repository")],
        ),
        doc(
            "git",
            "git_diff_unstaged",
            "Shows changes in the working directory that are \
            not yet staged",
            &[("repo_path", "")],
        ),
        doc(
            "git",
            "git_commit",
            "Records changes to the repository",
            &[("repo_path", ""), ("message", "Commit message")],
        ),
        doc(
            "git",
            "git_log",
            "Shows the commit logs",
            &[
                ("repo_path", ""),
                ("max_count", "Maximum number of commits to show"),
            ],
        ),
        doc(
            "git",
            "git_create_branch",
            "Creates a new branch from an optional base branch",
            &[("repo_path", ""), ("branch_name", ""), ("base_branch", "")],
        ),
        doc(
            "filesystem",
            "read_text_file",
            "Read the complete contents of a file from the \
            file system as text.",
            &[("path", ""), ("head", "First N lines"), ("tail", "")],
        ),
        doc(
            "filesystem",
            "write_file",
            "Create a new file or completely overwrite an \
            existing file with new content.",
            &[("path", ""), ("content", "")],
        ),
        doc(
            "filesystem",
            "list_directory",
            "Get a detailed listing of all files and \
            directories in a specified path.",
            &[("path", "")],
        ),
        doc(
            "filesystem",
            "search_files",
            "Recursively search for files and directories \
            matching a pattern.",
            &[("path", ""), ("pattern", ""), ("excludePatterns", "")],
        ),
        doc(
            "filesystem",
            "get_file_info",
            "Retrieve detailed metadata about a file or \
            directory: size, creation time, last modified time, permissions.",
            &[("path", "")],
        ),
        doc(
            "filesystem",
            "move_file",
            "Move or rename files and directories.",
            &[("source", ""), ("destination", "")],
        ),
        doc(
            "memory",
            "create_entities",
            "Create multiple new entities in the knowledge \
            graph",
            &[("entities", "")],
        ),
        doc(
            "memory",
            "create_relations",
            "Create multiple new relations between entities \
            in the knowledge graph. Relations should be in active voice",
            &[("relations", "")],
        ),
        doc(
            "memory",
            "search_nodes",
            "Search for nodes in the knowledge graph based on a \
            query",
            &[(
                "query",
                "The search query to match against entity names, types, \
            and observation content",
            )],
        ),
        doc(
            "memory",
            "read_graph",
            "Read the entire knowledge graph",
            &[],
        ),
        doc(
            "everything",
            "echo",
            "Echoes back the input",
            &[("message", "Message to echo")],
        ),
        doc(
            "everything",
            "add",
            "Adds two numbers",
            &[
                ("a", "First number"),
                (
                    "b",
                    "Second \
            number",
                ),
            ],
        ),
        doc(
            "everything",
            "longRunningOperation",
            "Demonstrates a long running operation \
            with progress updates",
            &[
                ("duration", "Duration of the operation in seconds"),
                ("steps", "Number of steps in the operation"),
            ],
        ),
    ])
}

fn top(index: &SearchIndex, query: &str, n: usize) -> Vec<String> {
    index
        .search(query, n)
        .into_iter()
        .map(|(_, d)| format!("{}.{}", d.server, d.tool))
        .collect()
}

#[test]
fn tokens_split_snake_camel_kebab_and_acronyms() {
    assert_eq!(tokenize("get_current_time"), ["get", "current", "time"]);
    assert_eq!(tokenize("getCurrentTime"), ["get", "current", "time"]);
    assert_eq!(tokenize("get-current-time"), ["get", "current", "time"]);
    assert_eq!(tokenize("HTTPServer"), ["http", "server"]);
    // Terms come out stemmed: `parse` is `pars`, like `parsing` and `parsed`.
    assert_eq!(tokenize("parseJSON2Yaml"), ["pars", "json2", "yaml"]);
    assert_eq!(tokenize("parsing"), tokenize("parsed"));
    assert_eq!(tokenize("The time, in a zone!"), ["time", "zone"]);
    assert_eq!(tokenize("ünï 日本 x"), ["n", "x"]);
}

#[test]
fn stemmer_folds_common_forms() {
    let same = [
        ("files", "file"),
        ("entries", "entry"),
        ("matches", "match"),
        ("boxes", "box"),
        ("processes", "process"),
        ("listing", "list"),
        ("running", "run"),
        ("created", "create"),
        ("creating", "create"),
        ("caches", "cache"),
        ("timezones", "timezone"),
        ("updates", "updated"),
        ("writing", "write"),
        ("directories", "directory"),
    ];
    for (a, b) in same {
        assert_eq!(stem(a), stem(b), "{a} / {b}");
    }
    // Left alone: short words, and words whose ending is not a suffix here.
    for word in [
        "time", "git", "status", "string", "analysis", "address", "thing",
    ] {
        assert_eq!(stem(word), word, "{word}");
    }
    assert_ne!(stem("string"), stem("str"));
}

#[test]
fn current_time_query_finds_get_current_time_first() {
    let index = realistic();
    let results = top(&index, "current time timezone", 3);
    assert_eq!(results[0], "time.get_current_time", "{results:?}");
    assert_eq!(results[1], "time.convert_time", "{results:?}");
}

#[test]
fn realistic_queries_rank_sensibly() {
    let index = realistic();
    let cases = [
        ("git commit", "git.git_commit"),
        ("commit history log", "git.git_log"),
        ("read file contents", "filesystem.read_text_file"),
        ("list directory", "filesystem.list_directory"),
        ("rename file", "filesystem.move_file"),
        ("knowledge graph relations", "memory.create_relations"),
        ("add numbers", "everything.add"),
        (
            "long running operation progress",
            "everything.longRunningOperation",
        ),
        ("convert timezones", "time.convert_time"),
        // Parameter names count: only `git_create_branch` has `base_branch`.
        ("base branch", "git.git_create_branch"),
        // camelCase and plural in the query still match.
        ("excludePatterns", "filesystem.search_files"),
    ];
    for (query, expected) in cases {
        let results = top(&index, query, 3);
        assert_eq!(
            results.first().map(String::as_str),
            Some(expected),
            "{query}: {results:?}"
        );
    }
}

#[test]
fn tool_name_outweighs_description() {
    let index = SearchIndex::new(vec![
        doc("a", "helper", "Can echo text back and do other things", &[]),
        doc("b", "echo", "Repeats the input", &[]),
    ]);
    assert_eq!(top(&index, "echo", 2), ["b.echo", "a.helper"]);
}

#[test]
fn parameter_names_outweigh_description() {
    let index = SearchIndex::new(vec![
        doc("a", "one", "Takes a timezone", &[("x", "")]),
        doc("b", "two", "Takes an argument", &[("timezone", "")]),
    ]);
    assert_eq!(top(&index, "timezone", 2), ["b.two", "a.one"]);
}

#[test]
fn server_name_counts() {
    let index = realistic();
    let results = index.search("memory", 20);
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|(_, d)| d.server == "memory"));
}

#[test]
fn empty_stopword_and_unknown_queries_return_nothing() {
    let index = realistic();
    assert!(index.search("", 5).is_empty());
    assert!(index.search("   ,;!? ", 5).is_empty());
    assert!(index.search("the of and", 5).is_empty());
    assert!(index.search("xyzzy plugh", 5).is_empty());
    assert!(index.search("time", 0).is_empty());
    assert!(SearchIndex::new(Vec::new()).search("time", 5).is_empty());
}

#[test]
fn unknown_words_do_not_hide_known_ones() {
    let index = realistic();
    assert_eq!(top(&index, "xyzzy commit", 1), ["git.git_commit"]);
}

#[test]
fn limit_caps_and_scores_descend() {
    let index = realistic();
    let results = index.search("file directory path", 4);
    assert_eq!(results.len(), 4);
    assert!(results.windows(2).all(|w| w[0].0 >= w[1].0));
    assert!(results.iter().all(|(score, _)| *score > 0.0));
}

#[test]
fn odd_schemas_are_tolerated() {
    let mut odd = doc("s", "t", "", &[]);
    for schema in [
        json!(null),
        json!([1, 2]),
        json!({"properties": 3}),
        json!("x"),
    ] {
        odd.input_schema = schema;
        let index = SearchIndex::new(vec![odd.clone()]);
        assert_eq!(index.search("t", 5).len(), 1);
    }
}

#[test]
fn records_have_exactly_the_contract_fields() {
    let d = doc("My Server", "class", "Does things", &[("x", "")]);
    let summary = doc_record(&d, false);
    let keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["server", "serverAlias", "tool", "toolAlias", "description"]
    );
    assert_eq!(
        summary,
        json!({"server": "My Server", "serverAlias": "my_server", "tool": "class",
               "toolAlias": "class_", "description": "Does things"})
    );
    let full = doc_record(&d, true);
    let keys: Vec<&String> = full.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "server",
            "serverAlias",
            "tool",
            "toolAlias",
            "description",
            "inputSchema"
        ]
    );
    assert_eq!(full["inputSchema"], d.input_schema);
}

/// The tools of the time, git, filesystem and memory servers, exactly as they list them
/// (`upstream_tools.json`, dumped from the tool cache of a real run).
fn upstream_tools() -> SearchIndex {
    let servers: Vec<Value> =
        serde_json::from_str(include_str!("upstream_tools.json")).expect("fixture parses");
    let mut docs = Vec::new();
    for server in &servers {
        let name = server["server"].as_str().expect("server name");
        for tool in server["tools"].as_array().expect("tools") {
            let tool_name = tool["name"].as_str().expect("tool name");
            docs.push(ToolDoc {
                server: name.into(),
                server_alias: crate::proxy::alias::server_alias(name),
                tool: tool_name.into(),
                tool_alias: crate::proxy::alias::tool_alias(tool_name),
                description: tool["description"].as_str().unwrap_or_default().into(),
                input_schema: tool["inputSchema"].clone(),
                server_description: String::new(),
            });
        }
    }
    SearchIndex::new(docs)
}

/// What an agent types, and the one tool it means: the judged set of the agent-flow test
/// (`tests/e2e/agent_flow.py`, `JUDGED_QUERIES`), kept identical.
const JUDGED: &[(&str, &str)] = &[
    ("commit history", "git.git_log"),
    ("current time in a timezone", "time.get_current_time"),
    ("convert a time between timezones", "time.convert_time"),
    ("remember a fact", "memory.create_entities"),
    ("list files in a folder", "filesystem.list_directory"),
    ("read a text file", "filesystem.read_text_file"),
    ("write a file", "filesystem.write_file"),
    ("show uncommitted changes", "git.git_diff_unstaged"),
    ("stage files for commit", "git.git_add"),
    ("switch to another branch", "git.git_checkout"),
    ("working tree status", "git.git_status"),
    ("search the knowledge graph", "memory.search_nodes"),
    (
        "link two entities with a relation",
        "memory.create_relations",
    ),
    ("move or rename a file", "filesystem.move_file"),
    ("find files matching a pattern", "filesystem.search_files"),
];

/// Queries written with the judged set but not used to tune the ranking, and the tool each
/// means: a check that the judged set was not learnt by heart. (The ranking before query
/// expansion and coverage scored MRR 0.64 here; the judged set, 0.82.)
const HELD_OUT: &[(&str, &str)] = &[
    ("make a new folder", "filesystem.create_directory"),
    ("show the last commits", "git.git_log"),
    ("undo staging", "git.git_reset"),
    ("start a new branch", "git.git_create_branch"),
    ("forget an entity", "memory.delete_entities"),
    ("file size and permissions", "filesystem.get_file_info"),
    ("edit lines of a file", "filesystem.edit_file"),
    ("what time is it in Tokyo", "time.get_current_time"),
    (
        "read several files at once",
        "filesystem.read_multiple_files",
    ),
    ("add a note to a person", "memory.add_observations"),
    ("compare two branches", "git.git_diff"),
    (
        "which folders can I access",
        "filesystem.list_allowed_directories",
    ),
];

/// Each query's rank of its tool (1 = first, `None` = not in the top 10), and the mean
/// reciprocal rank.
fn ranks(index: &SearchIndex, set: &[(&str, &str)]) -> (Vec<(String, Option<usize>)>, f64) {
    let mut ranks = Vec::new();
    let mut sum = 0.0;
    for (query, wanted) in set {
        let found = top(index, query, 10);
        let rank = found.iter().position(|f| f == wanted).map(|i| i + 1);
        if let Some(rank) = rank {
            sum += 1.0 / count_f64(rank);
        }
        ranks.push(((*query).to_string(), rank));
    }
    (ranks, sum / count_f64(set.len()))
}

#[test]
fn every_judged_query_ranks_its_tool_first() {
    let index = upstream_tools();
    assert_eq!(
        index.docs().len(),
        2 + 12 + 14 + 9,
        "the fixture's tool count"
    );
    for (query, wanted) in JUDGED {
        let found = top(&index, query, 3);
        assert_eq!(
            found.first().map(String::as_str),
            Some(*wanted),
            "{query}: {found:?}"
        );
    }
    let (ranks, mrr) = ranks(&index, JUDGED);
    assert!((mrr - 1.0).abs() < f64::EPSILON, "MRR {mrr}: {ranks:?}");
}

#[test]
fn held_out_queries_rank_their_tool_near_the_top() {
    let index = upstream_tools();
    let (ranks, mrr) = ranks(&index, HELD_OUT);
    for (query, rank) in &ranks {
        assert!(rank.is_some_and(|r| r <= 5), "{query}: rank {rank:?}");
    }
    assert!(mrr >= 0.8, "MRR {mrr}: {ranks:?}");
}

#[test]
fn an_exact_word_outranks_a_related_one() {
    // `folder` relates to `directory`; a tool that says `folder` itself comes first.
    let index = SearchIndex::new(vec![
        doc("a", "list_directory", "Lists a directory", &[]),
        doc("b", "list_folder", "Lists a folder", &[]),
    ]);
    assert_eq!(
        top(&index, "list folder", 2),
        ["b.list_folder", "a.list_directory"]
    );
    // And a related word alone still finds the tool.
    assert_eq!(top(&index, "directory", 2), ["a.list_directory"]);
}

#[test]
fn nested_parameter_names_count() {
    let mut nested = doc("m", "create", "Creates things", &[]);
    nested.input_schema = json!({"type": "object", "properties": {"items": {"type": "array",
        "items": {"type": "object", "properties": {"observations": {"type": "array"}}}}}});
    let index = SearchIndex::new(vec![doc("m", "other", "Other things", &[]), nested]);
    assert_eq!(top(&index, "observations", 2), ["m.create"]);
}

#[test]
fn the_server_description_is_searched() {
    let mut described = doc("notes", "put", "Stores a value", &[]);
    described.server_description = "Keeps the team's meeting minutes".into();
    let index = SearchIndex::new(vec![doc("kv", "put", "Stores a value", &[]), described]);
    assert_eq!(top(&index, "meeting minutes", 2), ["notes.put"]);
}

#[test]
fn covering_more_of_the_query_outranks_matching_less_more_often() {
    // `a` says `branch` three times but never `compare`; `b` covers both words once.
    let index = SearchIndex::new(vec![
        doc("g", "branch_tool", "Branch and branch branches", &[]),
        doc("g", "other", "Compare a branch", &[]),
    ]);
    assert_eq!(
        top(&index, "compare branch", 2),
        ["g.other", "g.branch_tool"]
    );
}
