//! One source of policy (a server entry's `policy`, or one key of the policy file): its
//! default and its tool rules, parsed strictly.

use std::collections::HashMap;

use serde_json::Value;

use super::PolicyError;
use super::glob::Glob;

/// What a policy says about a call. Ordered by strictness: `Allow < Ask < Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// Call it.
    Allow,
    /// Ask the client's user first.
    Ask,
    /// Refuse it.
    Deny,
}

impl Decision {
    /// The words a policy is written with.
    pub const WORDS: [&'static str; 3] = ["allow", "ask", "deny"];

    /// The decision a word names (case-insensitive).
    pub fn parse(word: &str) -> Option<Self> {
        match word.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(Self::Allow),
            "ask" => Some(Self::Ask),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }

    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Ask => "ask",
            Self::Deny => "deny",
        }
    }
}

/// The rules of one source: a default, exact tool names, patterns in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// For a tool no rule names.
    pub default: Option<Decision>,
    exact: HashMap<String, Decision>,
    patterns: Vec<(String, Glob, Decision)>,
}

/// Which rule of a source decided, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKey<'a> {
    /// The source's `default`.
    Default,
    /// `tools.<name or pattern>`.
    Tool(&'a str),
}

impl std::fmt::Display for RuleKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Tool(key) => write!(f, "tools.{key}"),
        }
    }
}

impl Rules {
    /// Parse a policy: a decision word (the default for every tool), or an object
    /// `{"default": word, "tools": {name or pattern: word}}`. `place` names where it was
    /// written (for errors, which also name the key).
    pub fn parse(value: &Value, place: &str) -> Result<Self, PolicyError> {
        let invalid = |key: &str, why: String| PolicyError::Invalid {
            place: place.to_owned(),
            key: key.to_owned(),
            why,
        };
        let word = |value: &Value, key: &str| -> Result<Decision, PolicyError> {
            let text = value
                .as_str()
                .ok_or_else(|| invalid(key, format!("expected one of {}", words())))?;
            Decision::parse(text).ok_or_else(|| {
                invalid(
                    key,
                    format!("{text:?} is not a decision; expected one of {}", words()),
                )
            })
        };
        let mut rules = Self::default();
        let map = match value {
            Value::String(_) => {
                rules.default = Some(word(value, "default")?);
                return Ok(rules);
            }
            Value::Object(map) => map,
            _ => {
                return Err(invalid(
                    "",
                    format!(
                        "expected a decision word or an object with `default` and `tools`; \
                         the decisions are {}",
                        words()
                    ),
                ));
            }
        };
        for (key, value) in map {
            match key.as_str() {
                "default" => rules.default = Some(word(value, "default")?),
                "tools" => {
                    let Value::Object(tools) = value else {
                        return Err(invalid(
                            "tools",
                            "expected an object of tool names (or patterns) to decisions".into(),
                        ));
                    };
                    for (name, value) in tools {
                        let decision = word(value, &format!("tools.{name}"))?;
                        if Glob::is_pattern(name) {
                            rules
                                .patterns
                                .push((name.clone(), Glob::new(name), decision));
                        } else {
                            rules.exact.insert(name.clone(), decision);
                        }
                    }
                }
                other => {
                    return Err(invalid(
                        other,
                        "unknown key; a policy has `default` and `tools`".into(),
                    ));
                }
            }
        }
        Ok(rules)
    }

    /// The rule for `tool`: its exact name first, then the first pattern that matches, then
    /// the default. `None` when the source says nothing about it.
    pub fn rule_for(&self, tool: &str) -> Option<(Decision, RuleKey<'_>)> {
        if let Some((name, decision)) = self.exact.get_key_value(tool) {
            return Some((*decision, RuleKey::Tool(name)));
        }
        if let Some((name, _, decision)) = self.patterns.iter().find(|(_, g, _)| g.matches(tool)) {
            return Some((*decision, RuleKey::Tool(name)));
        }
        self.default.map(|d| (d, RuleKey::Default))
    }

    /// Every decision this source can give, for summaries (`default`, then the rules).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(default) = self.default {
            parts.push(format!("default {}", default.word()));
        }
        let mut exact: Vec<_> = self.exact.iter().collect();
        exact.sort();
        for (name, decision) in exact {
            parts.push(format!("{name} {}", decision.word()));
        }
        for (name, _, decision) in &self.patterns {
            parts.push(format!("{name} {}", decision.word()));
        }
        parts.join(", ")
    }
}

fn words() -> String {
    Decision::WORDS.join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules(value: &Value) -> Rules {
        Rules::parse(value, "test.json").expect("valid")
    }

    #[test]
    fn exact_names_win_over_patterns_and_patterns_go_in_order() {
        let r = rules(&json!({
            "default": "allow",
            "tools": {"delete_*": "ask", "*_file": "deny", "delete_file": "allow"}
        }));
        assert_eq!(
            r.rule_for("delete_file"),
            Some((Decision::Allow, RuleKey::Tool("delete_file")))
        );
        assert_eq!(
            r.rule_for("delete_dir"),
            Some((Decision::Ask, RuleKey::Tool("delete_*")))
        );
        assert_eq!(
            r.rule_for("write_file"),
            Some((Decision::Deny, RuleKey::Tool("*_file")))
        );
        assert_eq!(
            r.rule_for("read_dir"),
            Some((Decision::Allow, RuleKey::Default))
        );
        assert_eq!(rules(&json!({"tools": {"x": "deny"}})).rule_for("y"), None);
    }

    #[test]
    fn a_word_alone_is_the_default() {
        assert_eq!(
            rules(&json!("ASK")).rule_for("anything"),
            Some((Decision::Ask, RuleKey::Default))
        );
    }

    #[test]
    fn unknown_words_and_keys_name_the_place_and_the_key() {
        for (value, key, says) in [
            (
                json!({"tools": {"write_file": "maybe"}}),
                "tools.write_file",
                "\"maybe\"",
            ),
            (json!({"default": "permit"}), "default", "\"permit\""),
            (json!("yes"), "default", "\"yes\""),
            (json!({"tools": {"x": 1}}), "tools.x", "allow, ask, deny"),
            (json!({"rules": {}}), "rules", "unknown key"),
            (json!({"tools": ["x"]}), "tools", "object"),
        ] {
            let error = Rules::parse(&value, "/etc/policy.json").unwrap_err();
            let text = error.to_string();
            assert!(text.contains("/etc/policy.json"), "{text}");
            assert!(text.contains(&format!("`{key}`")), "{text}");
            assert!(text.contains(says), "{text}");
        }
    }

    #[test]
    fn decisions_are_ordered_by_strictness() {
        assert!(Decision::Allow < Decision::Ask && Decision::Ask < Decision::Deny);
    }
}
