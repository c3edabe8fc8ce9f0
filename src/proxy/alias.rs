//! Python-safe aliases for server and tool names (the contract of `REFERENCE.md` §5).
//!
//! Agents reach a server `git-hub` as `mcp_git_hub` and its tool `list-repos` as
//! `mcp_git_hub.list_repos`, so every alias must be a valid Python identifier, stable for a
//! given list of names, and unique within its list. The rules, applied in this order:
//!
//! 1. lowercase the name (Unicode lowercase);
//! 2. replace each run of characters outside `[a-z0-9_]` with one `_`;
//! 3. an empty result becomes `_`;
//! 4. a leading digit gets a `_` in front (`2fa` → `_2fa`);
//! 5. tools only: a Python hard keyword gets a trailing `_` (`class` → `class_`);
//! 6. within one list, the first holder of an alias keeps it and later clashes are numbered
//!    `_2`, `_3`, … in list order, skipping numbers already taken (`a-b`, `a_b` →
//!    `a_b`, `a_b_2`).
//!
//! Server aliases get no keyword suffix: they are used as `mcp_<alias>`, which is never a
//! keyword. (A server named `if` is still reachable as `mcp_if`; only the module path
//! `mcp.servers.if` cannot be written in an `import` statement.)
//!
//! Nothing here is trusted input in a dangerous sense: names come from the user's configs and
//! from upstream servers, and every output is `[a-z0-9_]+` not starting with a digit, so it
//! can be pasted into generated Python without quoting.

use std::collections::HashSet;

/// Python's hard keywords. Soft keywords (`match`, `case`, `type`, `_`) are valid
/// identifiers and stay as they are.
const PYTHON_KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Whether `word` is a Python hard keyword (case-sensitive, as in Python).
pub fn is_python_keyword(word: &str) -> bool {
    PYTHON_KEYWORDS.contains(&word)
}

/// Rules 1–4: lowercase, collapse disallowed runs to `_`, never empty, no leading digit.
fn base_alias(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A server's alias before clash numbering: `Git Hub` → `git_hub`, `2fa` → `_2fa`.
pub fn server_alias(name: &str) -> String {
    base_alias(name)
}

/// A tool's alias before clash numbering: like [`server_alias`], and a Python keyword gets a
/// trailing `_` (`import` → `import_`).
pub fn tool_alias(name: &str) -> String {
    let mut alias = base_alias(name);
    if is_python_keyword(&alias) {
        alias.push('_');
    }
    alias
}

/// Number clashes among already-made aliases, in order: the first keeps its alias, later ones
/// get the first free `_2`, `_3`, ….
fn number_clashes(aliases: impl IntoIterator<Item = String>) -> Vec<String> {
    let aliases: Vec<String> = aliases.into_iter().collect();
    let mut taken: HashSet<String> = HashSet::with_capacity(aliases.len());
    let mut out = Vec::with_capacity(aliases.len());
    for alias in aliases {
        let mut unique = alias.clone();
        let mut number = 2_usize;
        // Ends: each try is a new string, and `taken` is finite.
        while taken.contains(&unique) {
            unique = format!("{alias}_{number}");
            number += 1;
        }
        taken.insert(unique.clone());
        out.push(unique);
    }
    out
}

/// Aliases for a list of server names, clashes numbered in list order.
pub fn assign_aliases<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    number_clashes(names.iter().map(|n| server_alias(n.as_ref())))
}

/// Aliases for one server's tool names, clashes numbered in list order.
pub fn assign_tool_aliases<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    number_clashes(names.iter().map(|n| tool_alias(n.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_identifier(alias: &str) -> bool {
        !alias.is_empty()
            && !alias.starts_with(|c: char| c.is_ascii_digit())
            && alias
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }

    #[test]
    fn server_names_are_lowercased_and_runs_collapse() {
        assert_eq!(server_alias("time"), "time");
        assert_eq!(server_alias("Git-Hub"), "git_hub");
        assert_eq!(server_alias("my server (beta)"), "my_server_beta_");
        assert_eq!(server_alias("a--.--b"), "a_b");
        assert_eq!(server_alias("already_snake_2"), "already_snake_2");
        assert_eq!(server_alias("@scope/pkg"), "_scope_pkg");
    }

    #[test]
    fn underscores_are_kept_not_collapsed() {
        // Only runs of *disallowed* characters collapse; existing underscores stay.
        assert_eq!(server_alias("a__b"), "a__b");
        assert_eq!(server_alias("a_-b"), "a__b");
    }

    #[test]
    fn leading_digit_is_prefixed() {
        assert_eq!(server_alias("2fa"), "_2fa");
        assert_eq!(server_alias("42"), "_42");
        assert_eq!(server_alias("-2fa"), "_2fa");
    }

    #[test]
    fn empty_and_all_symbol_names_become_underscore() {
        assert_eq!(server_alias(""), "_");
        assert_eq!(server_alias("!!!"), "_");
        assert_eq!(tool_alias(""), "_");
    }

    #[test]
    fn non_ascii_letters_are_replaced() {
        assert_eq!(server_alias("Über-Tool"), "_ber_tool");
        assert_eq!(server_alias("日本"), "_");
    }

    #[test]
    fn tool_keywords_get_a_trailing_underscore() {
        assert_eq!(tool_alias("import"), "import_");
        assert_eq!(tool_alias("class"), "class_");
        assert_eq!(tool_alias("from"), "from_");
        assert_eq!(tool_alias("lambda"), "lambda_");
        // Lowercasing happens first: `None` becomes `none`, which is no keyword.
        assert_eq!(tool_alias("None"), "none");
        // Soft keywords are valid identifiers.
        assert_eq!(tool_alias("match"), "match");
        assert_eq!(tool_alias("type"), "type");
        // Servers are reached as `mcp_<alias>`, so keywords need no suffix there.
        assert_eq!(server_alias("import"), "import");
    }

    #[test]
    fn tool_names_follow_the_same_rules() {
        assert_eq!(tool_alias("get_current_time"), "get_current_time");
        assert_eq!(tool_alias("list-repos"), "list_repos");
        assert_eq!(tool_alias("getCurrentTime"), "getcurrenttime");
        assert_eq!(tool_alias("3d.render"), "_3d_render");
    }

    #[test]
    fn clashes_are_numbered_in_order() {
        assert_eq!(
            assign_aliases(&["a-b", "a_b", "A B", "c"]),
            ["a_b", "a_b_2", "a_b_3", "c"]
        );
    }

    #[test]
    fn numbering_skips_aliases_already_taken() {
        // The third name's own alias is `a_b_2`, already given to the second.
        assert_eq!(
            assign_aliases(&["a_b", "a-b", "a_b_2"]),
            ["a_b", "a_b_2", "a_b_2_2"]
        );
        // A natural `x_2` first, then two `x`: the second `x` skips to `x_3`.
        assert_eq!(assign_aliases(&["x_2", "x", "X"]), ["x_2", "x", "x_3"]);
    }

    #[test]
    fn tool_clashes_keep_keyword_suffix() {
        assert_eq!(
            assign_tool_aliases(&["class", "Class", "get-x", "get_x"]),
            ["class_", "class__2", "get_x", "get_x_2"]
        );
    }

    #[test]
    fn every_alias_is_a_python_identifier() {
        let names = [
            "",
            "0",
            "__",
            "a b",
            "ünïcödé",
            "if",
            "def",
            "x".repeat(300).as_str(),
            "9-lives",
            "🙂",
            "tab\tname",
            "CamelCase",
        ]
        .map(String::from);
        for alias in assign_aliases(&names) {
            assert!(is_identifier(&alias), "{alias:?}");
        }
        for alias in assign_tool_aliases(&names) {
            assert!(is_identifier(&alias), "{alias:?}");
            assert!(!is_python_keyword(&alias), "{alias:?}");
        }
    }

    /// Names that stress each rule: case folding that lands in or out of ASCII (the Kelvin
    /// sign `K` lowercases to `k`, `İ` to `i` and a combining dot), non-ASCII digits, NUL,
    /// digits first, keywords, empty, dashes, dots, and aliases that clash in list order.
    const TRICKY_NAMES: [&str; 44] = [
        "",
        "time",
        "Git-Hub",
        "my server (beta)",
        "a--.--b",
        "a.b.c",
        "@scope/pkg",
        "2fa",
        "42",
        "-2fa",
        "9-lives",
        "a__b",
        "a_-b",
        "Über-Tool",
        "日本",
        "ünïcödé",
        "🙂",
        "\u{212a}elvin",
        "\u{130}stanbul",
        "ΑΣ",
        "ẞ",
        "٣",
        "１２３",
        "Ⅻ",
        "a\0b",
        "\0",
        "import",
        "class",
        "None",
        "True",
        "match",
        "type",
        "_",
        "__",
        "if",
        "tab\tname",
        "new\nline",
        "CamelCase",
        "a-b",
        "a_b",
        "A B",
        "a_b_2",
        "x_2",
        "X",
    ];

    /// The guest runtime's own alias functions (it makes aliases when a frame lacks them), run
    /// by the host's `python3` over `names`: each name alone as a server and as a tool, and
    /// the whole list as a run's servers and as one server's tools. `None` without python3.
    fn guest_aliases(names: &[&str]) -> Option<serde_json::Value> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};

        // `run_servers` is what the runtime does with a run's servers, the loop what
        // `build_proxy` does with tool records that carry no alias.
        const PROGRAM: &str = "import json, sys\n\
            given = json.load(sys.stdin)\n\
            runtime = {'__name__': '__mcp_runtime__'}\n\
            exec(compile(given['source'], '<mcp-runtime>', 'exec'), runtime)\n\
            alias_of, names = runtime['alias_of'], given['names']\n\
            taken, tools = set(), []\n\
            for name in names:\n    \
                tools.append(alias_of(name, taken, keyword_suffix=True))\n    \
                taken.add(tools[-1])\n\
            print(json.dumps({\n    \
                'server': [alias_of(name) for name in names],\n    \
                'tool': [alias_of(name, keyword_suffix=True) for name in names],\n    \
                'servers': [alias for _, alias in runtime['run_servers'](names)],\n    \
                'tools': tools,\n\
            }))";
        let Ok(mut child) = Command::new("python3")
            .args(["-I", "-S", "-c", PROGRAM])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            #[allow(clippy::print_stderr, reason = "the skip must be loud")]
            {
                eprintln!("SKIP guest aliases: no python3 on PATH");
            }
            return None;
        };
        let input = serde_json::json!({
            "source": sandbox_core::guest::RUNTIME_SOURCE,
            "names": names,
        });
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.to_string().as_bytes())
            .expect("python3 reads its stdin");
        let output = child.wait_with_output().expect("python3 runs");
        assert!(output.status.success(), "python3: {}", output.status);
        Some(serde_json::from_slice(&output.stdout).expect("the program prints JSON"))
    }

    #[test]
    fn guest_runtime_makes_the_same_aliases() {
        let Some(guest) = guest_aliases(&TRICKY_NAMES) else {
            return;
        };
        let strings = |key: &str| -> Vec<String> {
            serde_json::from_value(guest[key].clone()).expect("a list of strings")
        };
        for ((name, server), tool) in TRICKY_NAMES
            .iter()
            .zip(strings("server"))
            .zip(strings("tool"))
        {
            assert_eq!(server, server_alias(name), "server {name:?}");
            assert_eq!(tool, tool_alias(name), "tool {name:?}");
        }
        assert_eq!(strings("servers"), assign_aliases(&TRICKY_NAMES));
        assert_eq!(strings("tools"), assign_tool_aliases(&TRICKY_NAMES));
    }

    #[test]
    fn aliases_are_unique_within_a_list() {
        let names: Vec<String> = (0..50)
            .map(|i| ["a", "A", "a!", "a_2"][i % 4].into())
            .collect();
        let aliases = assign_aliases(&names);
        let unique: HashSet<&String> = aliases.iter().collect();
        assert_eq!(unique.len(), aliases.len());
    }
}
