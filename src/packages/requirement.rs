//! Requirement strings and distribution facts from the guest, checked strictly.
//!
//! What is trusted: nothing. A requirement reaches pip's command line, so only a small
//! subset of PEP 508 is accepted: a project name, optional extras and optional version
//! specifiers, without spaces, markers, URLs, paths or options. Names and versions that the
//! guest says it already has are checked the same way before they are written into files
//! that pip reads.

use std::fmt;

/// Longest requirement we accept, in bytes.
pub const MAX_REQUIREMENT_LEN: usize = 200;
/// Longest project name (PyPI's own limit is lower).
const MAX_NAME_LEN: usize = 100;
/// Longest version text.
const MAX_VERSION_LEN: usize = 64;

/// One checked requirement: `name`, `name[extra]`, `name==1.2`, `name>=1,<2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    text: String,
    name: String,
}

impl Requirement {
    /// Check `text` and keep it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty requirement".into());
        }
        if text.len() > MAX_REQUIREMENT_LEN {
            return Err(format!(
                "a requirement of {} bytes (at most {MAX_REQUIREMENT_LEN})",
                text.len()
            ));
        }
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(text.len());
        let name = &text[..name_end];
        check_name(name).map_err(|why| format!("{text:?}: {why}"))?;
        let mut rest = &text[name_end..];
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else {
                return Err(format!("{text:?}: an unclosed `[`"));
            };
            for extra in after[..close].split(',') {
                check_name(extra).map_err(|why| format!("{text:?}: extra {why}"))?;
            }
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            for spec in rest.split(',') {
                check_specifier(spec).map_err(|why| format!("{text:?}: {why}"))?;
            }
        }
        Ok(Self {
            text: text.to_string(),
            name: canonical_name(name),
        })
    }

    /// The requirement as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The project's canonical name (PEP 503: lowercase, runs of `-_.` as one `-`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A PEP 508 project name: letters and digits, with `.`, `_`, `-` inside.
pub fn check_name(name: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid project name"))
    }
}

/// A version as pip writes it: letters, digits and `.`, `!`, `+`, `_`, `-`, starting with a
/// digit (`v` prefixes and such are refused: they never come from installed metadata).
pub fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '!' | '+' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{version:?} is not a version"))
    }
}

/// One version specifier: an operator and a version, `*` allowed after `==` and `!=`.
fn check_specifier(spec: &str) -> Result<(), String> {
    const OPERATORS: [&str; 8] = ["===", "==", "!=", "~=", "<=", ">=", "<", ">"];
    let Some(op) = OPERATORS.iter().find(|op| spec.starts_with(**op)) else {
        return Err(format!(
            "{spec:?} is not a version specifier like ==1.2 or >=1,<2 (markers, URLs, \
             paths and spaces are not accepted)"
        ));
    };
    let version = &spec[op.len()..];
    let version = match version.strip_suffix(".*") {
        Some(prefix) if matches!(*op, "==" | "!=") => prefix,
        _ => version,
    };
    check_version(version).map_err(|why| format!("in {spec:?}: {why}"))
}

/// PEP 503's normal form of a project name.
pub fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator {
                out.push('-');
            }
            in_separator = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_separator = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_extras_and_specifiers_are_accepted() {
        for good in [
            "humanize",
            "Py_Figlet",
            "zope.interface",
            "requests[socks,security]",
            "pyfiglet==1.0.2",
            "numpy>=1.24,<3",
            "foo~=1.4.2",
            "foo==1.*",
            "foo!=2.0.post1",
            "foo===1.0+local.7",
            "a",
        ] {
            assert!(Requirement::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn anything_that_could_reach_pip_as_more_than_a_requirement_is_refused() {
        for bad in [
            "",
            " humanize",
            "humanize ",
            "-r/etc/passwd",
            "--index-url=http://x",
            "-e.",
            "./local",
            "/abs/path.whl",
            "file:///tmp/x.whl",
            "pkg @ https://example.invalid/x.whl",
            "pkg@https://example.invalid/x.whl",
            "pkg; sys_platform=='linux'",
            "pkg>=1 ; python_version>'3'",
            "pkg>= 1",
            "pkg[extra",
            "pkg[bad extra]",
            "pkg==",
            "pkg>=1.*",
            "pkg=1",
            "pkg\n--pre",
            "pkg==1\0",
            "_leading",
            "trailing-",
            "ünïcode",
            &"a".repeat(201),
        ] {
            assert!(Requirement::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_compared_in_their_canonical_form() {
        assert_eq!(
            Requirement::parse("Py_Figlet==1").unwrap().name(),
            "py-figlet"
        );
        assert_eq!(canonical_name("zope..Interface"), "zope-interface");
        assert_eq!(canonical_name("scikit_learn"), "scikit-learn");
    }

    #[test]
    fn versions_from_the_guest_are_checked() {
        for good in [
            "2.5.2",
            "2026.9.29",
            "2.9.0.post0",
            "1.0rc1",
            "1!2.0+local_1",
        ] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "v1", "1 2", "1\n", "1;x", "1,2", "1#x"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }
}
