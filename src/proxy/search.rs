//! Ranked search over tool documentation: what `search_tool_docs` answers.
//!
//! The reference keeps a tool when every query word appears in its server name, tool name or
//! description. Ours ranks with BM25 (`k1 = 1.2`, `b = 0.75`) over weighted fields, so a
//! query that half-matches still finds something, and the best match comes first:
//!
//! | field | weight |
//! |---|---|
//! | tool name and alias | 3.0 |
//! | parameter names (top-level `properties` keys of the input schema) | 2.0 |
//! | server name and alias | 1.5 |
//! | tool description | 1.0 |
//! | parameter descriptions | 0.75 |
//!
//! A term's frequency in a document is the weighted sum of its counts in each field, and the
//! document's length is the weighted sum of the field lengths (a simple form of BM25F).
//!
//! Tokens: maximal runs of ASCII letters and digits, split further at `camelCase` and
//! `HTTPServer`-style boundaries, lowercased, stopwords dropped, then a tiny stemmer
//! ([`stem`]) folds plurals and `-ing`/`-ed` forms. So `get_current_time`, `getCurrentTime`
//! and `get-current-time` all index as `get current time`.
//!
//! Trust: descriptions and schemas come from upstream servers, which may be large or odd;
//! indexing is linear in their size, never panics on any JSON, and only reads the
//! `properties` object of the top-level schema.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

const K1: f64 = 1.2;
const B: f64 = 0.75;

const WEIGHT_TOOL: f64 = 3.0;
const WEIGHT_PARAM: f64 = 2.0;
const WEIGHT_SERVER: f64 = 1.5;
const WEIGHT_DESCRIPTION: f64 = 1.0;
const WEIGHT_PARAM_DESCRIPTION: f64 = 0.75;

/// Words too common in tool docs to say anything about a tool.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "any", "are", "as", "at", "be", "been", "by", "can", "do", "does", "e", "eg",
    "for", "from", "g", "has", "have", "how", "i", "ie", "if", "in", "into", "is", "it", "its",
    "me", "my", "of", "on", "or", "our", "should", "so", "such", "than", "that", "the", "their",
    "then", "there", "these", "this", "those", "to", "was", "we", "were", "what", "when", "where",
    "which", "will", "with", "you", "your",
];

/// One tool as the search sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDoc {
    /// The server's configured name.
    pub server: String,
    /// The server's Python alias.
    pub server_alias: String,
    /// The tool's name as the server reports it.
    pub tool: String,
    /// The tool's Python alias.
    pub tool_alias: String,
    /// The tool's description (empty when the server gave none).
    pub description: String,
    /// The tool's JSON input schema.
    pub input_schema: Value,
}

/// The doc record of `query_tool_docs` / `search_tool_docs`: exactly
/// `{server, serverAlias, tool, toolAlias, description}`, plus `inputSchema` when `full`.
pub fn doc_record(doc: &ToolDoc, full: bool) -> Value {
    let mut record = Map::new();
    record.insert("server".into(), Value::String(doc.server.clone()));
    record.insert(
        "serverAlias".into(),
        Value::String(doc.server_alias.clone()),
    );
    record.insert("tool".into(), Value::String(doc.tool.clone()));
    record.insert("toolAlias".into(), Value::String(doc.tool_alias.clone()));
    record.insert("description".into(), Value::String(doc.description.clone()));
    if full {
        record.insert("inputSchema".into(), doc.input_schema.clone());
    }
    Value::Object(record)
}

/// Split text into search terms: alphanumeric runs, split at case changes, lowercased,
/// stopwords dropped, stemmed.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        for word in split_case(run) {
            let word = word.to_ascii_lowercase();
            if word.is_empty() || STOPWORDS.contains(&word.as_str()) {
                continue;
            }
            terms.push(stem(&word));
        }
    }
    terms
}

/// Split an ASCII alphanumeric run at `camelCase` (`getTime` → `get`, `Time`) and acronym
/// (`HTTPServer` → `HTTP`, `Server`) boundaries. Digits stay with the letters before them.
fn split_case(run: &str) -> Vec<&str> {
    let bytes = run.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..bytes.len() {
        let (prev, cur) = (bytes[i - 1], bytes[i]);
        let next_is_lower = bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        let lower_to_upper =
            (prev.is_ascii_lowercase() || prev.is_ascii_digit()) && cur.is_ascii_uppercase();
        let acronym_end = prev.is_ascii_uppercase() && cur.is_ascii_uppercase() && next_is_lower;
        if lower_to_upper || acronym_end {
            parts.push(&run[start..i]);
            start = i;
        }
    }
    if start < run.len() {
        parts.push(&run[start..]);
    }
    parts
}

/// A deliberately tiny stemmer for lowercase ASCII words. It folds the forms tool docs use
/// most (`files`/`file`, `entries`/`entry`, `matches`/`match`, `listing`/`list`,
/// `created`/`create`) onto one term; words of three letters or fewer are left alone.
///
/// Steps: plural (`-ies` → `-y`, `-sses` → `-ss`, `-es` after `x`/`ch`/`sh`/`z`/`ss`, else a
/// final `-s` unless the word ends in `ss`, `us` or `is`); then `-ing` or `-ed` when at least
/// four letters remain (a doubled final consonant is undone: `running` → `run`); then a final
/// `-e` when at least four letters remain (`create` and `creating` both give `creat`).
pub fn stem(word: &str) -> String {
    if word.len() <= 3 || !word.is_ascii() {
        return word.to_string();
    }
    let mut w = word.to_string();
    if let Some(base) = w.strip_suffix("ies").filter(|b| b.len() >= 2) {
        w = format!("{base}y");
    } else if w.ends_with("sses") {
        w.truncate(w.len() - 2);
    } else if let Some(base) = w.strip_suffix("es").filter(|b| {
        ["x", "ch", "sh", "z", "ss"]
            .iter()
            .any(|end| b.ends_with(end))
    }) {
        w = base.to_string();
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.truncate(w.len() - 1);
    }
    for suffix in ["ing", "ed"] {
        if let Some(base) = w.strip_suffix(suffix).filter(|b| b.len() >= 4) {
            let mut base = base.to_string();
            let b = base.as_bytes();
            let n = b.len();
            if b[n - 1] == b[n - 2] && !b"aeioulsz".contains(&b[n - 1]) {
                base.truncate(n - 1);
            }
            w = base;
            break;
        }
    }
    if w.len() >= 5 && w.ends_with('e') {
        w.truncate(w.len() - 1);
    }
    w
}

/// One indexed document: weighted term frequencies and weighted length.
#[derive(Debug, Clone)]
struct Indexed {
    freqs: HashMap<String, f64>,
    length: f64,
}

/// A BM25 index over tool docs. Build once per catalogue change; searching is cheap.
#[derive(Debug, Clone)]
pub struct SearchIndex {
    docs: Vec<ToolDoc>,
    indexed: Vec<Indexed>,
    /// How many documents contain each term.
    doc_freq: HashMap<String, usize>,
    avg_length: f64,
}

impl SearchIndex {
    /// Index `docs`. Their order breaks ties in search results.
    pub fn new(docs: Vec<ToolDoc>) -> Self {
        let indexed: Vec<Indexed> = docs.iter().map(index_doc).collect();
        let mut doc_freq: HashMap<String, usize> = HashMap::new();
        for doc in &indexed {
            for term in doc.freqs.keys() {
                *doc_freq.entry(term.clone()).or_default() += 1;
            }
        }
        let total: f64 = indexed.iter().map(|d| d.length).sum();
        let avg_length = if indexed.is_empty() {
            0.0
        } else {
            total / count_f64(indexed.len())
        };
        Self {
            docs,
            indexed,
            doc_freq,
            avg_length,
        }
    }

    /// The indexed docs, in the order given.
    pub fn docs(&self) -> &[ToolDoc] {
        &self.docs
    }

    /// The best `limit` docs for `query`, best first, with their scores. Docs that share no
    /// term with the query are never returned; an empty query (or one made only of
    /// stopwords and punctuation) returns nothing. Equal scores keep index order.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(f64, &ToolDoc)> {
        let mut seen = HashSet::new();
        let terms: Vec<String> = tokenize(query)
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect();
        if terms.is_empty() || limit == 0 || self.docs.is_empty() {
            return Vec::new();
        }
        let n = count_f64(self.docs.len());
        let idf: Vec<(String, f64)> = terms
            .into_iter()
            .filter_map(|term| {
                let df = count_f64(*self.doc_freq.get(&term)?);
                Some((term, (1.0 + (n - df + 0.5) / (df + 0.5)).ln()))
            })
            .collect();
        let mut scored: Vec<(f64, usize)> = self
            .indexed
            .iter()
            .enumerate()
            .filter_map(|(i, doc)| {
                let norm = if self.avg_length > 0.0 {
                    K1 * (1.0 - B + B * doc.length / self.avg_length)
                } else {
                    K1
                };
                let score: f64 = idf
                    .iter()
                    .filter_map(|(term, idf)| {
                        let tf = *doc.freqs.get(term)?;
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                (score > 0.0).then_some((score, i))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(limit)
            .map(|(score, i)| (score, &self.docs[i]))
            .collect()
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "document counts are far below 2^52"
)]
fn count_f64(n: usize) -> f64 {
    n as f64
}

/// Terms of a name and its alias, each term once when both give it.
fn name_terms(name: &str, alias: &str) -> Vec<String> {
    let mut terms = tokenize(name);
    let known: HashSet<String> = terms.iter().cloned().collect();
    terms.extend(tokenize(alias).into_iter().filter(|t| !known.contains(t)));
    terms
}

fn index_doc(doc: &ToolDoc) -> Indexed {
    let mut fields: Vec<(f64, Vec<String>)> = vec![
        (WEIGHT_TOOL, name_terms(&doc.tool, &doc.tool_alias)),
        (WEIGHT_SERVER, name_terms(&doc.server, &doc.server_alias)),
        (WEIGHT_DESCRIPTION, tokenize(&doc.description)),
    ];
    if let Some(properties) = doc
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
    {
        let mut names = Vec::new();
        let mut descriptions = Vec::new();
        for (name, schema) in properties {
            names.extend(tokenize(name));
            if let Some(text) = schema.get("description").and_then(Value::as_str) {
                descriptions.extend(tokenize(text));
            }
        }
        fields.push((WEIGHT_PARAM, names));
        fields.push((WEIGHT_PARAM_DESCRIPTION, descriptions));
    }
    let mut freqs: HashMap<String, f64> = HashMap::new();
    let mut length = 0.0;
    for (weight, terms) in fields {
        length += weight * count_f64(terms.len());
        for term in terms {
            *freqs.entry(term).or_default() += weight;
        }
    }
    Indexed { freqs, length }
}

#[cfg(test)]
mod tests {
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
}
