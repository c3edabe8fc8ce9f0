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
//! | nested parameter names (`properties` of a parameter, or of its array `items`) | 1.0 |
//! | parameter descriptions | 0.75 |
//! | server description (the user's, or the server's own `instructions`) | 0.5 |
//! | nested parameter descriptions | 0.5 |
//!
//! A term's frequency in a document is the weighted sum of its counts in each field, and the
//! document's length is the weighted sum of the field lengths (a simple form of BM25F).
//!
//! Query expansion: each query term also brings the terms tool docs use for the same thing
//! (the [`thesaurus`]: `history` → `log`, `folder` → `directory`, `remember` → `store`,
//! `create`, `add`...), each weighted [`RELATED_WEIGHT`] of a query term, so a tool found
//! through a related word ranks below one that matches the query's own words equally well. A
//! document's score is the sum over query terms of `weight × idf × tf (k1 + 1) / (tf + norm)`.
//!
//! Tokens: maximal runs of ASCII letters and digits, split further at `camelCase` and
//! `HTTPServer`-style boundaries, lowercased, stopwords dropped, then a tiny stemmer
//! ([`stem`]) folds plurals and `-ing`/`-ed` forms. So `get_current_time`, `getCurrentTime`
//! and `get-current-time` all index as `get current time`.
//!
//! Quality is measured, not assumed: the tests rank a judged query set over the real tool
//! lists of four reference servers (`search/upstream_tools.json`) and check each query's
//! tool comes first.
//!
//! Trust: descriptions and schemas come from upstream servers, which may be large or odd;
//! indexing is linear in their size, never panics on any JSON, and reads only the
//! `properties` object of the top-level schema and, one level down, each parameter's own
//! `properties` or its `items.properties`.

mod thesaurus;

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

const K1: f64 = 1.2;
const B: f64 = 0.75;

const WEIGHT_TOOL: f64 = 3.0;
const WEIGHT_PARAM: f64 = 2.0;
const WEIGHT_SERVER: f64 = 1.5;
const WEIGHT_DESCRIPTION: f64 = 1.0;
const WEIGHT_NESTED_PARAM: f64 = 1.0;
const WEIGHT_PARAM_DESCRIPTION: f64 = 0.75;
const WEIGHT_SERVER_DESCRIPTION: f64 = 0.5;
const WEIGHT_NESTED_PARAM_DESCRIPTION: f64 = 0.5;
/// How much a term found through the [`thesaurus`] counts, against 1 for a query's own term.
pub const RELATED_WEIGHT: f64 = 0.4;

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
    /// What the server is for, in words (the user's description or the server's own
    /// `instructions`; empty when there is none). Searched, never part of a doc record.
    pub server_description: String,
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
        if limit == 0 || self.docs.is_empty() {
            return Vec::new();
        }
        let query = Query::new(query);
        let n = count_f64(self.docs.len());
        let idf: Vec<(&str, f64)> = query
            .terms
            .iter()
            .filter_map(|(term, weight)| {
                let df = count_f64(*self.doc_freq.get(term)?);
                Some((
                    term.as_str(),
                    weight * (1.0 + (n - df + 0.5) / (df + 0.5)).ln(),
                ))
            })
            .collect();
        // Concepts no document knows (typos, words no tool uses) weigh on every document
        // alike: they are left out of the coverage.
        let known: Vec<&Vec<String>> = query
            .concepts
            .iter()
            .filter(|terms| terms.iter().any(|t| self.doc_freq.contains_key(t)))
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
                        let tf = *doc.freqs.get(*term)?;
                        Some(idf * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .sum();
                let covered = known
                    .iter()
                    .filter(|terms| terms.iter().any(|t| doc.freqs.contains_key(t)))
                    .count();
                let score = score * count_f64(covered) / count_f64(known.len().max(1));
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

/// A query as the index scores it.
#[derive(Debug)]
struct Query {
    /// Each term once: the query's own with weight 1, then the [`thesaurus`] terms they
    /// bring that the query does not have, with [`RELATED_WEIGHT`].
    terms: Vec<(String, f64)>,
    /// One per distinct query term: that term and its related terms. A document covers a
    /// concept when it has any of them.
    concepts: Vec<Vec<String>>,
}

impl Query {
    fn new(query: &str) -> Self {
        let mut terms: Vec<(String, f64)> = Vec::new();
        let mut concepts = Vec::new();
        for term in tokenize(query) {
            if terms.iter().any(|(t, _)| *t == term) {
                continue;
            }
            terms.push((term.clone(), 1.0));
            let mut concept = vec![term.clone()];
            concept.extend(thesaurus::related(&term).iter().cloned());
            concepts.push(concept);
        }
        for concept in &concepts {
            for related in &concept[1..] {
                if !terms.iter().any(|(t, _)| t == related) {
                    terms.push((related.clone(), RELATED_WEIGHT));
                }
            }
        }
        Self { terms, concepts }
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "document counts are far below 2^52"
)]
fn count_f64(n: usize) -> f64 {
    n as f64
}

/// The `properties` object of a schema, if it has one.
fn properties_of(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

/// Terms of a schema's `description`, if it is a string.
fn description_terms(schema: &Value) -> Vec<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(tokenize)
        .unwrap_or_default()
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
        (WEIGHT_SERVER_DESCRIPTION, tokenize(&doc.server_description)),
    ];
    if let Some(properties) = properties_of(&doc.input_schema) {
        let (mut names, mut descriptions) = (Vec::new(), Vec::new());
        let (mut nested_names, mut nested_descriptions) = (Vec::new(), Vec::new());
        for (name, schema) in properties {
            names.extend(tokenize(name));
            descriptions.extend(description_terms(schema));
            let nested = properties_of(schema)
                .or_else(|| schema.get("items").and_then(properties_of))
                .into_iter()
                .flatten();
            for (name, schema) in nested {
                nested_names.extend(tokenize(name));
                nested_descriptions.extend(description_terms(schema));
            }
        }
        fields.push((WEIGHT_PARAM, names));
        fields.push((WEIGHT_PARAM_DESCRIPTION, descriptions));
        fields.push((WEIGHT_NESTED_PARAM, nested_names));
        fields.push((WEIGHT_NESTED_PARAM_DESCRIPTION, nested_descriptions));
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
mod tests;
