//! The capabilities resource: what the sandbox can do and how to use its helpers, one
//! markdown text (`capabilities.md`) served as an MCP resource and by the
//! `capability_summary` discovery tool.

/// URI of the capabilities resource.
pub const CAPABILITIES_URI: &str = "resource://mcp-server-code-execution-mode/capabilities";
/// Text of the capabilities resource.
pub const CAPABILITIES_TEXT: &str = include_str!("capabilities.md");

/// The capabilities text for a client whose sandboxes have the host folders `names` at
/// `/data/<name>`: one line more than [`CAPABILITIES_TEXT`] when there are any.
pub(crate) fn capabilities_text(names: &[String]) -> std::borrow::Cow<'static, str> {
    if names.is_empty() {
        return CAPABILITIES_TEXT.into();
    }
    let paths: Vec<String> = names.iter().map(|name| format!("`/data/{name}`")).collect();
    format!(
        "{CAPABILITIES_TEXT}- Host folders to read (never written): {}.\n",
        paths.join(", ")
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_folders_add_one_line() {
        assert_eq!(capabilities_text(&[]), CAPABILITIES_TEXT);
        let text = capabilities_text(&["sales".into(), "logs".into()]);
        let added = text
            .strip_prefix(CAPABILITIES_TEXT)
            .expect("the text, then more");
        assert_eq!(
            added,
            "- Host folders to read (never written): `/data/sales`, `/data/logs`.\n"
        );
    }
}
