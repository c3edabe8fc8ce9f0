//! The words agents type, mapped to the words tool docs use.
//!
//! An agent asks for "commit history", "a folder", "remember a fact"; the git server says
//! `log`, the filesystem server says `directory`, the memory server says `create_entities`
//! and `observations`. [`related`] gives, for one query term, the terms a tool doc would use
//! for the same thing, so the search can find the tool the query means even when no word is
//! shared. The search weighs these related terms well below the query's own words (see the
//! parent module), so an exact match still wins over a related one.
//!
//! The table is directed (query word → doc words) and deliberately small: common verbs and
//! nouns of files, version control, memory, time and the web, each mapped only to words
//! that mean the same thing or name the usual tool for it (`stage` → `add`, as `git stage`
//! is `git add`). It never names a particular server's tool. Words are stemmed with the
//! search's own stemmer when the table is built, so `folders`, `remembering` and
//! `uncommitted` all find their entry.
//!
//! Trust: the table is ours; query terms are only looked up in it.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::stem;

/// Query word → the words tool docs use for the same thing.
const TABLE: &[(&str, &[&str])] = &[
    // Version control.
    ("history", &["log"]),
    ("log", &["history"]),
    ("uncommitted", &["unstaged", "diff"]),
    ("pending", &["unstaged", "staged", "diff"]),
    ("modification", &["change", "diff"]),
    ("stage", &["add"]),
    ("unstage", &["reset"]),
    ("switch", &["checkout"]),
    ("checkout", &["switch"]),
    ("undo", &["reset", "revert"]),
    ("revert", &["reset"]),
    ("compare", &["diff"]),
    ("difference", &["diff"]),
    ("repo", &["repository"]),
    ("repository", &["repo"]),
    // Files.
    ("folder", &["directory"]),
    ("dir", &["directory"]),
    ("rename", &["move"]),
    ("move", &["rename"]),
    ("remove", &["delete"]),
    ("erase", &["delete"]),
    ("delete", &["remove"]),
    ("find", &["search"]),
    ("locate", &["search", "find"]),
    ("lookup", &["search", "find"]),
    ("search", &["find"]),
    ("open", &["read"]),
    ("view", &["read"]),
    ("save", &["write", "store"]),
    ("store", &["save", "write"]),
    ("modify", &["edit", "update"]),
    ("update", &["edit", "modify"]),
    ("edit", &["modify", "update"]),
    ("copy", &["duplicate", "clone"]),
    ("make", &["create"]),
    ("new", &["create"]),
    ("metadata", &["info"]),
    ("detail", &["info"]),
    ("ls", &["list"]),
    // Memory and knowledge.
    ("remember", &["store", "save", "create", "record", "memory"]),
    ("memorize", &["store", "save", "create", "record", "memory"]),
    ("memorise", &["store", "save", "create", "record", "memory"]),
    ("recall", &["search", "read", "open", "memory"]),
    ("forget", &["delete", "remove"]),
    ("fact", &["observation", "entity", "knowledge"]),
    ("note", &["observation"]),
    ("link", &["relation"]),
    ("connect", &["relation"]),
    ("relate", &["relation"]),
    ("relationship", &["relation"]),
    // Time.
    ("now", &["current"]),
    ("date", &["time"]),
    ("clock", &["time"]),
    ("zone", &["timezone"]),
    // The web and messages.
    ("download", &["fetch"]),
    ("url", &["fetch"]),
    ("webpage", &["fetch", "url"]),
    ("website", &["fetch", "url"]),
    ("email", &["mail", "message"]),
    ("bug", &["issue"]),
    ("ticket", &["issue"]),
    ("run", &["execute"]),
    ("execute", &["run"]),
];

static STEMMED: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (word, related) in TABLE {
        let terms = map.entry(stem(word)).or_default();
        for term in related.iter().map(|w| stem(w)) {
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
    }
    map
});

/// The stemmed terms tool docs use for the stemmed query term `term` (empty when the table
/// has no entry for it).
pub(super) fn related(term: &str) -> &'static [String] {
    STEMMED.get(term).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_stemmed_both_ways() {
        assert_eq!(related(&stem("folders")), [stem("directory")]);
        assert_eq!(related(&stem("history")), [stem("log")]);
        assert!(related(&stem("remembering")).contains(&stem("create")));
        assert!(related(&stem("uncommitted")).contains(&stem("unstaged")));
        assert!(related("xyzzy").is_empty());
    }

    #[test]
    fn no_word_relates_to_itself() {
        for (word, related) in TABLE {
            let own = stem(word);
            assert!(
                related.iter().all(|w| stem(w) != own),
                "{word} lists itself"
            );
        }
    }
}
