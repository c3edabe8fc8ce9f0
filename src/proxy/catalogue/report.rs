//! The `servers` report: every server, every file read and every entry skipped, secrets
//! hidden.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::types::{Catalogue, FileStatus, Transport, transport_summary};

fn redacted_pairs(map: &BTreeMap<String, String>) -> String {
    map.keys()
        .map(|k| format!("{k}=***"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `servers` subcommand's report: every server (name, alias, how it is reached with
/// secrets hidden, source), every file read, every entry skipped with why.
pub fn render_report(catalogue: &Catalogue) -> String {
    const MAX_COLUMN: usize = 48;
    let mut out = String::new();
    if catalogue.servers.is_empty() {
        out.push_str("No MCP servers found.\n");
    } else {
        let _ = writeln!(
            out,
            "{} (the first definition of a name wins):",
            plural(catalogue.servers.len(), "server", "servers")
        );
        let rows: Vec<[String; 4]> = catalogue
            .servers
            .iter()
            .map(|s| {
                [
                    s.name.clone(),
                    s.alias.clone(),
                    transport_summary(&s.transport),
                    s.source.display().to_string(),
                ]
            })
            .collect();
        let header = ["NAME", "ALIAS", "TRANSPORT", "SOURCE"].map(String::from);
        let widths: Vec<usize> = (0..3)
            .map(|col| {
                std::iter::once(&header)
                    .chain(&rows)
                    .map(|r| r[col].chars().count())
                    .max()
                    .unwrap_or(0)
                    .min(MAX_COLUMN)
            })
            .collect();
        let line = |row: &[String; 4]| {
            format!(
                "  {:w0$}  {:w1$}  {:w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        };
        let _ = writeln!(out, "{}", line(&header).trim_end());
        let indent = " ".repeat(widths[0] + widths[1] + 6);
        for (server, row) in catalogue.servers.iter().zip(&rows) {
            let _ = writeln!(out, "{}", line(row).trim_end());
            if let Some(description) = &server.description {
                let _ = writeln!(out, "{indent}description: {description}");
            }
            match &server.transport {
                Transport::Stdio { env, cwd, .. } => {
                    if !env.is_empty() {
                        let _ = writeln!(out, "{indent}env: {}", redacted_pairs(env));
                    }
                    if let Some(cwd) = cwd {
                        let _ = writeln!(out, "{indent}cwd: {}", cwd.display());
                    }
                }
                Transport::Remote { headers, .. } => {
                    if !headers.is_empty() {
                        let _ = writeln!(out, "{indent}headers: {}", redacted_pairs(headers));
                    }
                }
            }
            for warning in &server.warnings {
                let _ = writeln!(out, "{indent}warning: {warning}");
            }
        }
    }
    out.push('\n');
    if catalogue.files.is_empty() {
        out.push_str("No config files found.\n");
    } else {
        let _ = writeln!(
            out,
            "{} found:",
            plural(catalogue.files.len(), "config file", "config files")
        );
        for file in &catalogue.files {
            let status = match &file.status {
                FileStatus::Read { servers } => plural(*servers, "server", "servers"),
                FileStatus::Broken { why } => format!("skipped: {why}"),
            };
            let _ = writeln!(out, "  {}: {status}", file.path.display());
        }
    }
    if !catalogue.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n{} skipped:",
            plural(catalogue.skipped.len(), "entry", "entries")
        );
        for skipped in &catalogue.skipped {
            let _ = writeln!(
                out,
                "  {} in {}: {}",
                skipped.name,
                skipped.source.display(),
                skipped.why
            );
        }
    }
    out
}
