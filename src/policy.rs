//! Per-server, per-tool policy for proxied tool calls: `allow`, `ask` or `deny`.
//!
//! # Where a policy is written
//!
//! - In a server's config entry, under `policy`: a decision word (`"ask"`), or
//!   `{"default": "allow", "tools": {"delete_*": "ask", "write_file": "deny"}}`.
//! - In the policy file (`MCP_BRIDGE_TOOL_POLICY`): a JSON object whose keys are server
//!   names, and `*` for every server, each with a policy written the same way.
//!
//! In `tools`, a name without `*` or `?` is matched exactly; a pattern (`*` any run of
//! characters, `?` one) is tried in the order written, after the exact names. A source's
//! decision for a tool is its matching rule, else its `default`, else nothing.
//!
//! # Precedence: the stricter wins
//!
//! Every source that says something about a call (the entry, the file's key for the server,
//! the file's `*`) is heard, and the strictest decision wins: `deny` over `ask` over
//! `allow`. So neither the policy file nor a client's config can loosen what the other
//! tightens. Nothing said at all means `allow`, as without a policy.
//!
//! # Destructive tools
//!
//! With `MCP_BRIDGE_ASK_DESTRUCTIVE=1`, a tool whose upstream `tools/list` annotates it
//! `destructiveHint: true` is asked about, unless a source names it in `tools` (exactly or
//! by a pattern): then that rule stands, be it `allow` or `deny`. A `default` does not
//! count as naming a tool.
//!
//! # What it trusts
//!
//! The server name is one the run may use (checked before), the tool name comes from the
//! guest and is only matched, never trusted; the annotations come from the user's own
//! upstream server. Every word of a policy is checked when it is read: an unknown decision
//! or key is an error naming the file and the key, and the entry or the bridge does not
//! start with it.

pub mod ask;
mod file;
mod glob;
mod rules;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

pub use self::file::{EVERY_SERVER, PolicyFile};
pub use self::glob::Glob;
pub use self::rules::{Decision, RuleKey, Rules};

/// Why a policy could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("could not read the policy file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("the policy file {} is not valid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: serde_json::Error,
    },
    /// The file is bigger than any policy needs.
    #[error("the policy file {} is over {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        limit: u64,
    },
    /// A key or a word is not understood.
    #[error("{place}: {}{why}", key_part(key))]
    Invalid {
        /// The file (and server) it was written in.
        place: String,
        /// The key, such as `tools.write_file` (empty: the policy as a whole).
        key: String,
        /// What is wrong and what is accepted.
        why: String,
    },
}

fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

/// The policy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// The policy file, read and checked.
    pub file: Option<PolicyFile>,
    /// Ask before every tool annotated `destructiveHint: true`.
    pub ask_destructive: bool,
    /// Longest wait for an answer (never past the run's deadline).
    pub ask_timeout: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            file: None,
            ask_destructive: false,
            ask_timeout: Duration::from_mins(2),
        }
    }
}

/// One source of rules and where it was written.
#[derive(Debug, Clone)]
struct Source {
    rules: Rules,
    origin: String,
}

/// The policy of every server, compiled once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The sources of each server that has any (the file's `*` included).
    servers: HashMap<String, Vec<Source>>,
    /// The file's `*`, for servers with no source of their own.
    every: Vec<Source>,
    ask_destructive: bool,
    ask_timeout: Duration,
}

/// What the policy says about one call, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ruling<'a> {
    /// The decision.
    pub decision: Decision,
    /// The rule behind it.
    pub why: Why<'a>,
    /// The tool's `destructiveHint` can still turn this into `ask`: look it up.
    pub destructive_matters: bool,
}

/// The rule behind a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why<'a> {
    /// No policy says anything about this call.
    Unset,
    /// A source's rule.
    Rule {
        /// Where the source was written.
        origin: &'a str,
        /// Which rule.
        key: RuleKey<'a>,
    },
    /// `MCP_BRIDGE_ASK_DESTRUCTIVE` and the tool's `destructiveHint`.
    Destructive,
}

impl std::fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unset => f.write_str("no policy"),
            Self::Rule { origin, key } => write!(f, "{origin}, key `{key}`"),
            Self::Destructive => f.write_str(
                "MCP_BRIDGE_ASK_DESTRUCTIVE (the tool is annotated destructiveHint: true)",
            ),
        }
    }
}

impl Policy {
    /// The policy of `entries` (each server's name, its entry's rules and the file the entry
    /// is in) with the settings' file, destructive switch and ask timeout. A file key that
    /// names no configured server is warned about (a typo would otherwise go unnoticed).
    pub fn new<'a>(
        entries: impl IntoIterator<Item = (&'a str, Option<&'a Rules>, &'a std::path::Path)>,
        settings: &PolicySettings,
    ) -> Self {
        let mut servers: HashMap<String, Vec<Source>> = HashMap::new();
        let mut known = Vec::new();
        for (name, rules, path) in entries {
            known.push(name.to_owned());
            if let Some(rules) = rules {
                servers.entry(name.to_owned()).or_default().push(Source {
                    rules: rules.clone(),
                    origin: format!("the `policy` of its entry in {}", path.display()),
                });
            }
        }
        let mut every = Vec::new();
        if let Some(file) = &settings.file {
            for (key, rules) in &file.servers {
                let source = Source {
                    rules: rules.clone(),
                    origin: format!("the policy file {}, server `{key}`", file.path.display()),
                };
                if key == EVERY_SERVER {
                    every.push(source);
                } else if known.iter().any(|k| k == key) {
                    servers.entry(key.clone()).or_default().push(source);
                } else {
                    warn!(
                        file = %file.path.display(),
                        "the policy file names server `{key}`, which is not configured"
                    );
                }
            }
        }
        if !every.is_empty() {
            for sources in servers.values_mut() {
                sources.extend(every.iter().cloned());
            }
        }
        Self {
            servers,
            every,
            ask_destructive: settings.ask_destructive,
            ask_timeout: settings.ask_timeout,
        }
    }

    /// Whether any call may need more than a plain allow.
    pub fn is_active(&self) -> bool {
        self.ask_destructive || !self.servers.is_empty() || !self.every.is_empty()
    }

    /// The longest wait for an answer.
    pub fn ask_timeout(&self) -> Duration {
        self.ask_timeout
    }

    /// What the policy says about `tool` of `server`, before its annotations are looked at.
    pub fn decide(&self, server: &str, tool: &str) -> Ruling<'_> {
        let unset = Ruling {
            decision: Decision::Allow,
            why: Why::Unset,
            destructive_matters: self.ask_destructive,
        };
        if self.servers.is_empty() && self.every.is_empty() {
            return unset;
        }
        let sources = self.servers.get(server).unwrap_or(&self.every);
        let mut ruling = unset;
        let mut named = false;
        let mut decided = false;
        for source in sources {
            let Some((decision, key)) = source.rules.rule_for(tool) else {
                continue;
            };
            named |= matches!(key, RuleKey::Tool(_));
            if !decided || decision > ruling.decision {
                ruling.decision = decision;
                ruling.why = Why::Rule {
                    origin: &source.origin,
                    key,
                };
                decided = true;
            }
        }
        ruling.destructive_matters =
            self.ask_destructive && !named && ruling.decision == Decision::Allow;
        ruling
    }

    /// One line per source of `server`'s policy, for `servers` and `doctor`.
    pub fn describe(&self, server: &str) -> Vec<String> {
        let sources = self.servers.get(server).unwrap_or(&self.every);
        let mut lines: Vec<String> = sources
            .iter()
            .map(|s| format!("{} ({})", s.rules.summary(), s.origin))
            .collect();
        if self.ask_destructive {
            lines.push("destructive tools ask (MCP_BRIDGE_ASK_DESTRUCTIVE)".into());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn rules(value: &serde_json::Value) -> Rules {
        Rules::parse(value, "t").unwrap()
    }

    fn policy(entry: Option<&Rules>, file: &str, ask_destructive: bool) -> Policy {
        let settings = PolicySettings {
            file: (!file.is_empty())
                .then(|| PolicyFile::parse(Path::new("/policy.json"), file).unwrap()),
            ask_destructive,
            ..PolicySettings::default()
        };
        let entries = [
            ("files", entry, Path::new("/servers.json")),
            ("other", None, Path::new("/servers.json")),
        ];
        Policy::new(entries, &settings)
    }

    #[test]
    fn no_policy_allows_everything_without_looking_at_annotations() {
        let p = policy(None, "", false);
        assert!(!p.is_active());
        let ruling = p.decide("files", "write_file");
        assert_eq!(ruling.decision, Decision::Allow);
        assert_eq!(ruling.why, Why::Unset);
        assert!(!ruling.destructive_matters);
    }

    #[test]
    fn the_stricter_of_entry_and_file_wins() {
        let entry = rules(&json!({"default": "allow", "tools": {"write_file": "deny"}}));
        let p = policy(
            Some(&entry),
            r#"{"files": {"tools": {"write_file": "allow", "read_*": "ask"}}}"#,
            false,
        );
        let write = p.decide("files", "write_file");
        assert_eq!(write.decision, Decision::Deny);
        assert!(write.why.to_string().contains("its entry in /servers.json"));
        assert!(write.why.to_string().contains("`tools.write_file`"));
        let read = p.decide("files", "read_file");
        assert_eq!(read.decision, Decision::Ask);
        assert!(
            read.why
                .to_string()
                .contains("/policy.json, server `files`")
        );
        assert_eq!(p.decide("files", "list").decision, Decision::Allow);
        assert_eq!(p.decide("other", "write_file").decision, Decision::Allow);
    }

    #[test]
    fn the_star_key_covers_every_server() {
        let p = policy(
            Some(&rules(&json!({"tools": {"x": "allow"}}))),
            r#"{"*": {"default": "ask"}}"#,
            false,
        );
        assert_eq!(p.decide("other", "anything").decision, Decision::Ask);
        // The entry's explicit allow is heard, and the stricter `*` default still wins.
        assert_eq!(p.decide("files", "x").decision, Decision::Ask);
    }

    #[test]
    fn destructive_hints_matter_unless_a_rule_names_the_tool() {
        let p = policy(
            Some(&rules(
                &json!({"default": "allow", "tools": {"write_file": "allow", "move_*": "deny"}}),
            )),
            "",
            true,
        );
        assert!(p.decide("files", "create_directory").destructive_matters);
        assert!(p.decide("other", "anything").destructive_matters);
        assert!(!p.decide("files", "write_file").destructive_matters);
        let moved = p.decide("files", "move_file");
        assert_eq!(moved.decision, Decision::Deny);
        assert!(!moved.destructive_matters);
    }
}
