//! The effective configuration: flags over environment over defaults, validated as a whole.
//!
//! An invalid value stops start-up with a message naming where it came from (the flag or the
//! variable) and what it accepts; the server never starts with a half-understood config.

use std::path::PathBuf;
use std::time::Duration;

use sandbox_core::{SandboxSpec, SessionConfig};

use crate::cli::ConfigArgs;
use crate::env;
use crate::units::{parse_bytes, parse_duration};

/// Which sandbox backend runs the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `CPython` on WASI in wasmtime.
    Wasi,
    /// One container per session under Podman.
    Podman,
    /// One container per session under Docker.
    Docker,
    /// One container per session made directly with youki's libcontainer, no engine.
    Oci,
}

impl BackendKind {
    /// Every backend, in the order reports list them.
    pub const ALL: [Self; 4] = [Self::Wasi, Self::Podman, Self::Docker, Self::Oci];

    /// The backend's name in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wasi => "wasi",
            Self::Podman => "podman",
            Self::Docker => "docker",
            Self::Oci => "oci",
        }
    }

    /// Parse a backend name.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "wasi" => Ok(Self::Wasi),
            "podman" => Ok(Self::Podman),
            "docker" => Ok(Self::Docker),
            "oci" => Ok(Self::Oci),
            other => Err(format!(
                "unknown backend {other:?}; expected wasi, podman, docker or oci"
            )),
        }
    }

    /// True for the backends that run containers under an engine.
    pub fn is_container_engine(self) -> bool {
        matches!(self, Self::Podman | Self::Docker)
    }
}

/// How result text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Plain, minimal text.
    Compact,
    /// Token-Oriented Object Notation of the structured result.
    Toon,
    /// JSON of the structured result.
    Json,
}

impl OutputMode {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "compact" => Ok(Self::Compact),
            "toon" => Ok(Self::Toon),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown output mode {other:?}; expected compact, toon or json"
            )),
        }
    }
}

/// Everything the server needs to know, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sandbox backend.
    pub backend: BackendKind,
    /// Container image asked for (`None`: the locally built one).
    pub image: Option<String>,
    /// OCI runtime for the container engines (`runsc` for gVisor), if not the engine's default.
    pub oci_runtime: Option<String>,
    /// Default per-run timeout.
    pub timeout: Duration,
    /// Upper clamp of per-run timeouts.
    pub max_timeout: Duration,
    /// Limits and grants for every sandbox.
    pub spec: SandboxSpec,
    /// Idle time before a session is reaped.
    pub idle_timeout: Duration,
    /// Text form of results.
    pub output_mode: OutputMode,
    /// Per-stream output cap in bytes.
    pub output_limit: usize,
    /// Warm sessions kept ready.
    pub pool_size: usize,
    /// Most sessions alive at once.
    pub max_sessions: usize,
    /// Host state directory.
    pub state_dir: PathBuf,
    /// Log filter directive.
    pub log_level: String,
    /// Local python.wasm, if the user gave one.
    pub python_wasm: Option<PathBuf>,
    /// Server config files named on the command line (else `MCP_SERVERS_CONFIG`).
    pub servers_config: Vec<PathBuf>,
    /// Timeout of one call to an upstream MCP server.
    pub tool_timeout: Duration,
    /// Offer the discovery helpers as MCP tools too.
    pub discovery_tools: bool,
    /// Where each setting came from.
    pub origins: Vec<SettingOrigin>,
}

impl Config {
    /// Session settings derived from this config.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            output_limit: self.output_limit,
            ..SessionConfig::default()
        }
    }

    /// Clamp a requested run timeout (whole seconds) to `1..=max_timeout`.
    pub fn clamp_timeout(&self, requested_secs: Option<f64>) -> Duration {
        let requested = match requested_secs {
            Some(secs) if secs.is_finite() => Duration::from_secs_f64(secs.clamp(0.0, 1e9)),
            _ => self.timeout,
        };
        requested.clamp(
            Duration::from_secs(1),
            self.max_timeout.max(Duration::from_secs(1)),
        )
    }
}

/// Where a setting's text came from, for error messages.
struct Source {
    origin: String,
    text: String,
}

/// Reads settings with flag-over-environment precedence.
struct Resolver<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
    origins: Vec<SettingOrigin>,
}

/// Where one setting's value came from (for `doctor`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettingOrigin {
    /// The environment variable that names the setting.
    pub variable: String,
    /// The text given, when one was (`None`: the default).
    pub text: Option<String>,
    /// `default`, `environment` or `flag`.
    pub from: &'static str,
}

impl Resolver<'_> {
    fn get(&self, flag: Option<&str>, flag_name: &str, var: &str) -> Option<Source> {
        if let Some(text) = flag {
            return Some(Source {
                origin: format!("--{flag_name} {text}"),
                text: text.into(),
            });
        }
        (self.lookup)(var)
            .filter(|v| !v.trim().is_empty())
            .map(|text| Source {
                origin: format!("{var}={text}"),
                text,
            })
    }

    fn parse<T>(
        &mut self,
        flag: Option<&str>,
        flag_name: &str,
        var: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        let source = self.get(flag, flag_name, var);
        if !var.is_empty() {
            self.origins.push(SettingOrigin {
                variable: var.to_string(),
                text: source.as_ref().map(|s| s.text.clone()),
                from: match (&source, flag) {
                    (None, _) => "default",
                    (Some(_), Some(_)) => "flag",
                    (Some(_), None) => "environment",
                },
            });
        }
        match source {
            None => default,
            Some(source) => match parse(&source.text) {
                Ok(value) => value,
                Err(why) => {
                    self.errors
                        .push(format!("{} is invalid: {why}", source.origin));
                    default
                }
            },
        }
    }
}

fn parse_flag(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "expected 1/true/yes/on or 0/false/no/off, got {text:?}"
        )),
    }
}

fn parse_count(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .map_err(|_| format!("expected a whole number, got {text:?}"))
}

fn parse_cpus(text: &str) -> Result<Option<f64>, String> {
    match text.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && cpus > 0.0 => Ok(Some(cpus)),
        _ => Err(format!(
            "expected a positive number of cores like 1 or 0.5, got {text:?}"
        )),
    }
}

fn parse_user(text: &str) -> Result<(u32, u32), String> {
    let err = || format!("expected uid:gid like 65534:65534, got {text:?}");
    let (uid, gid) = text.trim().split_once(':').ok_or_else(err)?;
    Ok((
        uid.parse().map_err(|_| err())?,
        gid.parse().map_err(|_| err())?,
    ))
}

fn parse_log_level(text: &str) -> Result<String, String> {
    let level = text.trim().to_ascii_lowercase();
    let level = if level == "warning" {
        "warn".to_string()
    } else {
        level
    };
    // Each directive trimmed: tracing-subscriber (0.3.23) slices a directive with leading
    // whitespace at the wrong offsets, so `warn, sandbox_core=debug` filtered a target
    // named ` sandbox_co`, and a non-ASCII character there made it panic.
    let directives = text.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => Ok(level),
        // Per-module directives such as `warn,sandbox_core=trace`; no span or field filters
        // (`[...]`, `{...}`): they compile regexes, and an odd one takes seconds to parse.
        _ if text.contains('=')
            && !text.contains(['[', '{'])
            && tracing_subscriber::EnvFilter::try_new(&directives).is_ok() =>
        {
            Ok(directives)
        }
        _ => Err(format!(
            "expected error, warn, info, debug or trace (or directives like \
             warn,sandbox_core=debug), got {text:?}"
        )),
    }
}

/// The reference's engine choice: `auto` leaves the backend as configured.
fn parse_engine(text: &str) -> Result<Option<BackendKind>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" | "" => Ok(None),
        "podman" => Ok(Some(BackendKind::Podman)),
        "docker" => Ok(Some(BackendKind::Docker)),
        _ => Err(format!("expected auto, podman or docker, got {text:?}")),
    }
}

fn parse_name(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        Err(format!("expected a name without spaces, got {text:?}"))
    } else {
        Ok(Some(text.to_string()))
    }
}

/// Resolve the configuration from flags and the process environment.
pub fn resolve(args: &ConfigArgs) -> Result<Config, String> {
    resolve_with(args, &|name| std::env::var(name).ok())
}

/// Resolve the configuration from flags and an environment lookup (for tests).
pub fn resolve_with(
    args: &ConfigArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, String> {
    let mut r = Resolver {
        lookup,
        errors: Vec::new(),
        origins: Vec::new(),
    };
    let backend = r.parse(
        args.backend.as_deref(),
        "backend",
        env::BACKEND,
        BackendKind::Wasi,
        BackendKind::parse,
    );
    let backend_chosen = r
        .get(args.backend.as_deref(), "backend", env::BACKEND)
        .is_some();
    // The reference's engine choice picks the container backend unless one is named.
    let engine = r.parse(None, "", env::RUNTIME, None, parse_engine);
    let backend = match engine {
        Some(engine) if !backend_chosen => engine,
        Some(engine) if backend.is_container_engine() && engine != backend => {
            r.errors.push(format!(
                "{} asks for {} but the backend is {}; set one of them",
                env::RUNTIME,
                engine.name(),
                backend.name()
            ));
            backend
        }
        _ => backend,
    };
    let image = r.parse(args.image.as_deref(), "image", env::IMAGE, None, parse_name);
    let oci_runtime = r.parse(
        args.oci_runtime.as_deref(),
        "oci-runtime",
        env::OCI_RUNTIME,
        None,
        parse_name,
    );
    let timeout = r.parse(
        args.timeout.as_deref(),
        "timeout",
        env::TIMEOUT,
        Duration::from_secs(30),
        parse_duration,
    );
    let max_timeout = r.parse(
        args.max_timeout.as_deref(),
        "max-timeout",
        env::MAX_TIMEOUT,
        Duration::from_mins(2),
        parse_duration,
    );
    let memory = r.parse(
        args.memory.as_deref(),
        "memory",
        env::MEMORY,
        512 << 20,
        parse_bytes,
    );
    let pids = r.parse(args.pids.as_deref(), "pids", env::PIDS, 128, parse_count);
    let cpus = r.parse(args.cpus.as_deref(), "cpus", env::CPUS, None, parse_cpus);
    let user = r.parse(
        args.user.as_deref(),
        "user",
        env::CONTAINER_USER,
        (65534, 65534),
        parse_user,
    );
    let idle_timeout = r.parse(
        args.idle_timeout.as_deref(),
        "idle-timeout",
        env::IDLE_TIMEOUT,
        Duration::from_mins(5),
        parse_duration,
    );
    let output_mode = r.parse(
        args.output_mode.as_deref(),
        "output-mode",
        env::OUTPUT_MODE,
        OutputMode::Compact,
        OutputMode::parse,
    );
    let output_limit = r.parse(
        args.output_limit.as_deref(),
        "output-limit",
        env::OUTPUT_LIMIT,
        64 << 10,
        |t| match parse_bytes(t)? {
            n if (1024..=(16 << 20)).contains(&n) => Ok(n),
            n => Err(format!("{n} bytes is outside 1k..=16m")),
        },
    );
    let pool_size = r.parse(
        args.pool_size.as_deref(),
        "pool-size",
        env::POOL_SIZE,
        1,
        |t| match parse_count(t)? {
            n if n <= 16 => Ok(n),
            n => Err(format!("{n} is more than the 16 warm sessions we allow")),
        },
    );
    let max_sessions = r.parse(
        args.max_sessions.as_deref(),
        "max-sessions",
        env::MAX_SESSIONS,
        64,
        |t| match parse_count(t)? {
            0 => Err("at least one session must be allowed".into()),
            n => Ok(n),
        },
    );
    let tool_timeout = r.parse(
        args.tool_timeout.as_deref(),
        "tool-timeout",
        env::TOOL_TIMEOUT,
        Duration::from_mins(1),
        parse_duration,
    );
    let discovery_tools =
        args.discovery_tools || r.parse(None, "", env::DISCOVERY_TOOLS, false, parse_flag);
    let log_level = r.parse(
        args.log_level.as_deref(),
        "log-level",
        env::LOG_LEVEL,
        "info".into(),
        parse_log_level,
    );
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| {
            lookup(env::STATE_DIR)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| dirs::home_dir().map(|home| home.join("MCPs")))
        .unwrap_or_else(|| PathBuf::from("MCPs"));
    let python_wasm = args.python_wasm.clone().or_else(|| {
        lookup(env::PYTHON_WASM)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });

    if timeout > max_timeout {
        r.errors.push(format!(
            "the default timeout ({timeout:?}) is above the maximum ({max_timeout:?}); raise {} \
             or lower {}",
            env::MAX_TIMEOUT,
            env::TIMEOUT
        ));
    }
    let spec = SandboxSpec::builder()
        .memory_bytes(memory)
        .pids(pids)
        .cpus(cpus)
        .user(user.0, user.1)
        .build()
        .map_err(|e| format!("{} / {}: {e}", env::MEMORY, env::PIDS));
    let spec = match spec {
        Ok(spec) => Some(spec),
        Err(e) => {
            r.errors.push(e);
            None
        }
    };
    if !r.errors.is_empty() {
        return Err(r.errors.join("\n"));
    }
    Ok(Config {
        backend,
        image,
        oci_runtime,
        timeout,
        max_timeout,
        spec: spec.expect("checked above"),
        idle_timeout,
        output_mode,
        output_limit: usize::try_from(output_limit).expect("at most 16 MiB"),
        pool_size: pool_size as usize,
        max_sessions: max_sessions as usize,
        state_dir,
        log_level,
        python_wasm,
        servers_config: args.servers_config.clone(),
        tool_timeout,
        discovery_tools,
        origins: r.origins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        resolve_with(&ConfigArgs::default(), &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_the_reference() {
        let config = with_env(&[]).unwrap();
        assert_eq!(config.backend, BackendKind::Wasi);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.max_timeout, Duration::from_mins(2));
        assert_eq!(config.spec.memory_bytes(), 512 << 20);
        assert_eq!(config.output_mode, OutputMode::Compact);
        assert_eq!(config.output_limit, 64 << 10);
    }

    #[test]
    fn the_references_own_readme_value_works() {
        let config = with_env(&[("MCP_BRIDGE_TIMEOUT", "30s")]).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(30));
    }

    #[test]
    fn invalid_values_name_the_variable_and_what_it_accepts() {
        let err = with_env(&[
            ("MCP_BRIDGE_TIMEOUT", "soon"),
            ("MCP_BRIDGE_OUTPUT_MODE", "xml"),
        ])
        .unwrap_err();
        assert!(err.contains("MCP_BRIDGE_TIMEOUT=soon is invalid"), "{err}");
        assert!(err.contains("30s"), "{err}");
        assert!(err.contains("MCP_BRIDGE_OUTPUT_MODE=xml"), "{err}");
        let err = with_env(&[("MCP_BRIDGE_MEMORY", "1k")]).unwrap_err();
        assert!(err.contains("MCP_BRIDGE_MEMORY"), "{err}");
    }

    #[test]
    fn log_directives_are_trimmed_one_by_one() {
        // Found by the `env_config` fuzz target: a directive with leading whitespace and a
        // non-ASCII character made tracing-subscriber's parser panic.
        let config = with_env(&[("MCP_BRIDGE_LOG_LEVEL", " warn,  sandbox_core=debug ")]).unwrap();
        assert_eq!(config.log_level, "warn,sandbox_core=debug");
        let hostile = "warn,\u{c}5\u{7ac2a}=debug";
        assert_eq!(
            parse_log_level(hostile).as_deref(),
            Ok("warn,5\u{7ac2a}=debug")
        );
    }

    #[test]
    fn flags_override_the_environment() {
        let args = ConfigArgs {
            timeout: Some("5".into()),
            ..ConfigArgs::default()
        };
        let config = resolve_with(&args, &|name| {
            (name == "MCP_BRIDGE_TIMEOUT").then(|| "bad".into())
        })
        .unwrap();
        assert_eq!(config.timeout, Duration::from_secs(5));
    }

    #[test]
    fn run_timeouts_are_clamped() {
        let config = with_env(&[]).unwrap();
        assert_eq!(config.clamp_timeout(None), Duration::from_secs(30));
        assert_eq!(config.clamp_timeout(Some(0.0)), Duration::from_secs(1));
        assert_eq!(config.clamp_timeout(Some(10_000.0)), Duration::from_mins(2));
    }
}
