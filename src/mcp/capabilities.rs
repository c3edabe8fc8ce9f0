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
    use crate::mcp::format::RunReport;

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

    /// The listing's output schema only says "an object": the resource is where an agent
    /// learns the structured result's fields, so it must name every one.
    #[test]
    fn the_resource_names_every_field_of_the_structured_result() {
        use sandbox_core::{Captured, RunOutcome, RunStatus};
        let outcome = RunOutcome {
            status: RunStatus::Raised,
            stdout: Captured::default(),
            stderr: Captured::default(),
            error: Some(sandbox_core::frame::GuestErrorInfo {
                kind: "ValueError".into(),
                message: "m".into(),
                traceback: "t".into(),
            }),
            elapsed: std::time::Duration::from_millis(1),
            files: Vec::new(),
            stdout_saved: Some("/workspace/out/stdout-run-1.txt".into()),
            stderr_saved: None,
        };
        let mut report = RunReport::new(&outcome, "default", vec!["time".into()], 30.0);
        report.files = crate::mcp::files::content_blocks(&[sandbox_core::frame::OutFile {
            path: "/workspace/out/a.txt".into(),
            size: 1,
            data: Some("YQ==".into()),
        }])
        .1;
        report.state_lost = true;
        report.notice = Some("n".into());
        report.unenforced = vec!["u".into()];
        let report = report.to_value();
        for field in report.as_object().expect("an object").keys() {
            assert!(
                CAPABILITIES_TEXT.contains(&format!("`{field}`")),
                "the capabilities resource does not name `{field}`"
            );
        }
    }
}
