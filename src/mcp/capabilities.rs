//! The manual: what the sandbox can do and how to use its helpers. One markdown template
//! (`capabilities.md`), filled in once at start-up for this bridge's backend, interpreter,
//! servers and output cap ([`manual`]), is kept in the session settings: every session gets
//! it for `mcp.runtime.capability_summary()`, and the bridge serves the same text as the
//! capabilities resource and by the `capability_summary` discovery tool. The
//! tool description ([`crate::mcp::tools::run_python_description`]) is its shortest form.

use std::fmt::Write as _;

use sandbox_core::frame::CatalogueEntry;

use crate::config::{BackendKind, Config};
use crate::mcp::tools::SandboxFacts;

/// URI of the capabilities resource.
pub const CAPABILITIES_URI: &str = "resource://mcp-server-code-execution-mode/capabilities";
/// The capabilities resource's media type, the same when listed and when read.
pub const CAPABILITIES_MIME: &str = "text/markdown";
/// The manual's template: `{{name}}` marks what [`manual`] fills in.
const TEMPLATE: &str = include_str!("capabilities.md");

/// The data stack the full WASI interpreter and our image carry, as the manual names it.
const DATA_STACK: &str = "numpy, pandas, scipy, scikit-learn, statsmodels, matplotlib, \
seaborn, sympy, networkx, openpyxl, lxml, beautifulsoup4, pyyaml, jinja2";

/// What the manual says of this bridge.
#[derive(Debug, Clone)]
pub struct ManualFacts {
    /// The backend sessions run on.
    pub backend: BackendKind,
    /// What its interpreter offers.
    pub sandbox: SandboxFacts,
    /// The configured servers, in catalogue order.
    pub servers: Vec<CatalogueEntry>,
    /// Bytes of output one copy of a reply carries, both streams together.
    pub output_cap: usize,
    /// Whether sessions are saved and resumed (`MCP_BRIDGE_CHECKPOINTS`).
    pub durable: bool,
    /// The hosts code may reach (`MCP_BRIDGE_ALLOW_HOSTS`), as the setting shows them;
    /// empty: no network.
    pub allowed_hosts: String,
    /// The names of the secrets the sandbox sees as placeholders.
    pub secrets: Vec<String>,
}

impl ManualFacts {
    /// The facts of `config`, with `servers` configured.
    pub fn of(config: &Config, servers: Vec<CatalogueEntry>) -> Self {
        Self {
            backend: config.backend,
            sandbox: SandboxFacts::of(config),
            servers,
            output_cap: config.session_config().output_limit,
            durable: config.checkpoints.enabled,
            allowed_hosts: config.egress.allow.to_string(),
            secrets: config
                .egress
                .secrets
                .placeholders()
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        }
    }
}

/// The manual for `facts`.
pub fn manual(facts: &ManualFacts) -> String {
    let backend = facts.backend.name();
    let interpreter = if facts.sandbox.data_stack {
        format!("Backend `{backend}`, with the data stack: {DATA_STACK}.")
    } else {
        format!(
            "Backend `{backend}`, whose interpreter promises the standard library only \
             (the slim WASI interpreter, or an image or interpreter of your own): a missing \
             module raises `ModuleNotFoundError` saying what to do."
        )
    };
    let packages = if facts.sandbox.packages {
        "More packages: `await mcp.runtime.install(\"name\", \"other==1.2\")` (or \
         `install_sync`) adds wheels from the package index for this session: pure-Python \
         ones on WASI, manylinux ones in containers."
    } else {
        "Installing packages is turned off here (`MCP_BRIDGE_PACKAGE_INSTALL=off`)."
    };
    let deadline = if facts.backend == BackendKind::Wasi {
        "On WASI that ends the session: its variables are lost, the reply says so, and the \
         next call starts afresh (from the session's last save, if it has one)."
    } else {
        "The code sees `KeyboardInterrupt` and the session keeps its variables; code that \
         ignores it is killed with its session."
    };
    let sessions = if facts.durable {
        "Sessions outlive the server: a session idle for a while, or still open when the \
         client or the server stops, is saved (variables, functions, classes, imported \
         modules, files under `/workspace`) and the next call naming it gets it back; the \
         reply then says from when, and names anything that could not be saved (open \
         files, sockets, generators, locks). `reset=true` throws the saved copy away.\n\n\
         ```python\n\
         import mcp.runtime as r\n\
         saved = r.checkpoint()              # save now: {session, bytes, saved, unsaveable, at}\n\
         print(saved[\"bytes\"], saved[\"unsaveable\"])\n\
         r.fork_session(\"experiment\")        # a copy: run_python(..., session=\"experiment\")\n\
         ```"
    } else {
        "Sessions end with the server here (`MCP_BRIDGE_CHECKPOINTS=off`)."
    };
    let network = if facts.allowed_hosts.is_empty() {
        "No network.".to_string()
    } else {
        let mut text = format!(
            "Network: HTTP and HTTPS to {} only, through the host: `r = await \
             mcp.runtime.fetch(url, method=\"GET\", headers=None, body=None)` (or \
             `fetch_sync`) gives `r.status`, `r.headers`, `r.body`, `r.text()`, `r.json()`; \
             `urllib.request.urlopen` goes the same way. Other hosts, and internal \
             addresses, are refused with the reason (`MCPError`, kind `not_allowed`); the \
             reply's `network` lists each connection.",
            facts.allowed_hosts
        );
        if facts.backend != BackendKind::Wasi {
            text.push_str(
                " `pip install`, `requests` and other clients that honour `HTTPS_PROXY` \
                 work too, through this session's proxy (HTTPS tunnels carry no secrets).",
            );
        }
        if !facts.secrets.is_empty() {
            let names: Vec<String> = facts.secrets.iter().map(|n| format!("`{n}`")).collect();
            let _ = write!(
                text,
                " Secrets {}: `os.environ` holds a placeholder, which the host replaces with \
                 the real value in headers of `fetch` requests to the hosts it belongs to \
                 (sent anywhere else, the request is refused).",
                names.join(", ")
            );
        }
        text
    };
    let servers = if facts.servers.is_empty() {
        "none yet (servers in your MCP clients' configs appear here)".to_string()
    } else {
        let names: Vec<String> = facts
            .servers
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect();
        names.join(", ")
    };
    let (example_server, example_alias) = facts
        .servers
        .first()
        .map_or(("name", "name"), |s| (s.name.as_str(), s.alias.as_str()));
    TEMPLATE
        .replace("{{interpreter}}", &interpreter)
        .replace("{{packages}}", packages)
        .replace("{{network}}", &network)
        .replace(
            "{{output_cap}}",
            &format!("{} KiB", facts.output_cap / 1024),
        )
        .replace("{{deadline}}", deadline)
        .replace("{{sessions}}", sessions)
        .replace("{{servers}}", &servers)
        .replace("{{example_server}}", example_server)
        .replace("{{example_alias}}", example_alias)
}

/// The manual for a client whose sandboxes have the host folders `names` at `/data/<name>`:
/// one line more than `manual` when there are any (the sandbox's own
/// `capability_summary()` adds the same line for the folders it sees).
pub(crate) fn with_folders(manual: &str, names: &[String]) -> String {
    if names.is_empty() {
        return manual.to_string();
    }
    let paths: Vec<String> = names.iter().map(|name| format!("`/data/{name}`")).collect();
    format!(
        "{manual}\nHost folders to read (never written): {}.\n",
        paths.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::format::RunReport;

    fn facts(backend: BackendKind, data_stack: bool, servers: &[(&str, &str)]) -> ManualFacts {
        ManualFacts {
            backend,
            sandbox: SandboxFacts {
                data_stack,
                packages: true,
            },
            servers: servers
                .iter()
                .map(|(name, alias)| CatalogueEntry {
                    name: (*name).into(),
                    alias: (*alias).into(),
                    description: String::new(),
                })
                .collect(),
            output_cap: 32 << 10,
            durable: true,
            allowed_hosts: String::new(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn the_manual_is_filled_in_for_this_bridge() {
        let text = manual(&facts(
            BackendKind::Wasi,
            true,
            &[("time", "time"), ("my-git", "my_git")],
        ));
        assert!(!text.contains("{{"), "{text}");
        assert!(
            text.contains("Configured here: `time`, `my-git`."),
            "{text}"
        );
        assert!(text.contains("# servers=[\"time\"]\n"), "{text}");
        assert!(text.contains("help(mcp_time)"), "{text}");
        assert!(text.contains("capped (32 KiB)"), "{text}");
        assert!(text.contains("On WASI that ends the session"), "{text}");
        assert!(text.contains("scikit-learn"), "{text}");
        let plain = manual(&facts(BackendKind::Podman, false, &[]));
        assert!(plain.contains("standard library only"), "{plain}");
        assert!(plain.contains("KeyboardInterrupt"), "{plain}");
        assert!(plain.contains("Configured here: none yet"), "{plain}");
    }

    #[test]
    fn awaitable_helpers_are_shown_with_await() {
        let text = manual(&facts(BackendKind::Wasi, true, &[]));
        for helper in ["search_tool_docs(", "install(", "list_tools("] {
            for (at, _) in text.match_indices(&format!("r.{helper}")) {
                let before = &text[..at];
                assert!(
                    before.ends_with("await "),
                    "`{helper}` without await: {text}"
                );
            }
        }
    }

    #[test]
    fn granted_folders_add_one_line() {
        assert_eq!(with_folders("m\n", &[]), "m\n");
        assert_eq!(
            with_folders("m\n", &["sales".into(), "logs".into()]),
            "m\n\nHost folders to read (never written): `/data/sales`, `/data/logs`.\n"
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
                TEMPLATE.contains(&format!("`{field}`")),
                "the capabilities resource does not name `{field}`"
            );
        }
    }
}
