//! One line saying what a server is for: the `description` that `discovered_servers`,
//! `describe_server` and the discovery tools show.
//!
//! Where it comes from, first that has one:
//! 1. the user's own `description` in the client config, as written;
//! 2. the server's `instructions` (its `initialize` answer): the first sentence of its first
//!    line of prose (Markdown headings are skipped unless nothing else is there);
//! 3. the `description` of its `serverInfo`;
//! 4. a line made from its `serverInfo` and tools: `mcp-git 2026.10.19, 12 tools: git_status,
//!    git_diff_unstaged, …`.
//!
//! What it trusts: nothing from the server. Its text is cleaned ([`clean`]: control and
//! invisible formatting characters become spaces, runs of whitespace one space) and bounded
//! to [`MAX_CHARS`] characters, cut at a word with `…`. The user's own description is theirs
//! and shown as they wrote it.

use std::fmt::Write as _;

use crate::proxy::upstream::Listing;

/// Longest description made from a server's own words, in characters.
pub const MAX_CHARS: usize = 200;

/// The description of a server: `configured` (the user's) if given, else one made from what
/// the server said about itself (`listing`), else empty.
pub fn server_description(configured: Option<&str>, listing: Option<&Listing>) -> String {
    if let Some(text) = configured.map(str::trim).filter(|t| !t.is_empty()) {
        return text.to_owned();
    }
    let Some(listing) = listing else {
        return String::new();
    };
    if let Some(text) = listing.instructions.as_deref().and_then(first_sentence) {
        return text;
    }
    let info = listing.server_info.as_ref();
    if let Some(text) = info
        .and_then(|i| i.description.as_deref())
        .map(|d| bounded(&clean(d)))
        .filter(|d| !d.is_empty())
    {
        return text;
    }
    made_up(listing)
}

/// The words a server uses about itself, for the search to match: the user's description, else
/// the server's cleaned `instructions` or `serverInfo` description (never the made-up line,
/// whose tool names the search indexes already).
pub fn searchable_description(configured: Option<&str>, listing: Option<&Listing>) -> String {
    if let Some(text) = configured.filter(|t| !t.trim().is_empty()) {
        return text.to_owned();
    }
    let Some(listing) = listing else {
        return String::new();
    };
    let own = listing.instructions.as_deref().or_else(|| {
        listing
            .server_info
            .as_ref()
            .and_then(|i| i.description.as_deref())
    });
    own.map(clean).unwrap_or_default()
}

/// `text` with control and invisible formatting characters (zero-width, bidirectional
/// overrides, byte-order marks) turned into spaces, runs of whitespace made one space, and
/// trimmed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() || is_invisible(c) {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Unicode formatting characters that change how text looks or reads without showing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// The first sentence of the first line of prose in `instructions`, cleaned and bounded;
/// `None` when there is no text at all.
fn first_sentence(instructions: &str) -> Option<String> {
    let lines = || {
        instructions
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
    };
    let line = lines()
        .find(|l| !l.starts_with('#'))
        .or_else(|| lines().next())?;
    let line = clean(line.trim_start_matches(['#', '-', '*', '>', ' ']));
    if line.is_empty() {
        return None;
    }
    let end = line
        .char_indices()
        .find(|&(i, c)| matches!(c, '.' | '!' | '?') && line[i + 1..].starts_with(' '))
        .map_or(line.len(), |(i, c)| i + c.len_utf8());
    Some(bounded(&line[..end]))
}

/// `text` cut to [`MAX_CHARS`] characters at a word boundary, with `…` when cut.
fn bounded(text: &str) -> String {
    let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) else {
        return text.to_owned();
    };
    let head = &text[..cut];
    let head = head.rfind(' ').map_or(head, |space| &head[..space]);
    format!("{}…", head.trim_end_matches([' ', ',', ';', ':']))
}

/// `name version, N tools: a, b, …` from the server's identity and tools.
fn made_up(listing: &Listing) -> String {
    let info = listing.server_info.as_ref();
    let name = info
        .map(|i| i.title.as_deref().unwrap_or(&i.name))
        .map(clean)
        .unwrap_or_default();
    let version = info.map(|i| clean(&i.version)).unwrap_or_default();
    let count = listing.tools.len();
    let mut text = [name, version]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !text.is_empty() {
        text.push_str(", ");
    }
    let plural = if count == 1 { "" } else { "s" };
    let _ = write!(text, "{count} tool{plural}");
    let names: Vec<String> = listing.tools.iter().map(|t| clean(&t.name)).collect();
    if !names.is_empty() {
        text.push_str(": ");
        text.push_str(&names.join(", "));
    }
    bounded(&text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::Tool;

    use super::*;
    use crate::proxy::upstream::ServerIdentity;

    fn listing(
        names: &[&str],
        instructions: Option<&str>,
        info: Option<ServerIdentity>,
    ) -> Listing {
        Listing {
            tools: Arc::new(
                names
                    .iter()
                    .map(|n| Tool::new((*n).to_owned(), "", Arc::new(serde_json::Map::new())))
                    .collect(),
            ),
            server_info: info,
            instructions: instructions.map(str::to_owned),
        }
    }

    fn identity(name: &str, title: Option<&str>, description: Option<&str>) -> ServerIdentity {
        ServerIdentity {
            name: name.into(),
            version: "1.2".into(),
            title: title.map(str::to_owned),
            description: description.map(str::to_owned),
        }
    }

    #[test]
    fn the_users_description_comes_first_as_written() {
        let l = listing(&["a"], Some("Server text."), None);
        assert_eq!(
            server_description(Some("  My notes  "), Some(&l)),
            "My notes"
        );
        assert_eq!(searchable_description(Some("Mine"), Some(&l)), "Mine");
    }

    #[test]
    fn instructions_give_their_first_sentence_of_prose() {
        let text = "# Git server\n\nUse these tools to read and change a git repository. \
                    Always pass repo_path.\nMore.";
        let l = listing(
            &["a"],
            Some(text),
            Some(identity("g", None, Some("ignored"))),
        );
        assert_eq!(
            server_description(None, Some(&l)),
            "Use these tools to read and change a git repository."
        );
        // Only a heading: its words.
        let l = listing(&[], Some("## Weather\n"), None);
        assert_eq!(server_description(None, Some(&l)), "Weather");
        // A version number is not a sentence end.
        let l = listing(&[], Some("Version 2.5 tools for maps"), None);
        assert_eq!(
            server_description(None, Some(&l)),
            "Version 2.5 tools for maps"
        );
    }

    #[test]
    fn server_text_is_cleaned_and_bounded() {
        let hostile = format!(
            "Reads\u{0}files\u{202E}\u{1b}[31m fast\t\u{b} {}",
            "word ".repeat(100)
        );
        let l = listing(&[], Some(&hostile), None);
        let text = server_description(None, Some(&l));
        assert!(text.starts_with("Reads files [31m fast word"), "{text}");
        assert!(text.chars().count() <= MAX_CHARS + 1, "{text}");
        assert!(text.ends_with("word…"), "{text}");
        assert!(!text.chars().any(|c| c.is_control() || is_invisible(c)));
    }

    #[test]
    fn without_instructions_the_server_info_speaks() {
        let l = listing(
            &["x"],
            None,
            Some(identity("n", None, Some("Maps and routes"))),
        );
        assert_eq!(server_description(None, Some(&l)), "Maps and routes");
        assert_eq!(searchable_description(None, Some(&l)), "Maps and routes");
        let l = listing(
            &["git_status", "git_log"],
            Some("  \n"),
            Some(identity("mcp-git", None, None)),
        );
        assert_eq!(
            server_description(None, Some(&l)),
            "mcp-git 1.2, 2 tools: git_status, git_log"
        );
        assert_eq!(searchable_description(None, Some(&l)), "");
        let l = listing(&["one"], None, Some(identity("n", Some("Nice Name"), None)));
        assert_eq!(
            server_description(None, Some(&l)),
            "Nice Name 1.2, 1 tool: one"
        );
        let l = listing(&[], None, None);
        assert_eq!(server_description(None, Some(&l)), "0 tools");
        assert_eq!(server_description(None, None), "");
    }

    #[test]
    fn a_long_tool_list_is_cut_at_a_name() {
        let names: Vec<String> = (0..60).map(|i| format!("tool_{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let l = listing(&names, None, Some(identity("big", None, None)));
        let text = server_description(None, Some(&l));
        assert!(
            text.starts_with("big 1.2, 60 tools: tool_0, tool_1,"),
            "{text}"
        );
        assert!(text.ends_with('…') && !text.ends_with(",…"), "{text}");
        assert!(text.chars().count() <= MAX_CHARS + 1);
    }
}
