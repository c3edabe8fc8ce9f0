//! What discovery reads from the outside world: the home and working directories, the state
//! dir, the explicit config files, environment variables and this executable's path.
//!
//! Only [`DiscoveryEnv::from_process`] looks at the real process; everything else in
//! discovery sees the world through a [`DiscoveryEnv`], so tests inject all of it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A lookup of environment variables (`None` when unset).
pub type VarLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything discovery reads from the outside world, injectable for tests.
#[derive(Clone)]
pub struct DiscoveryEnv {
    /// The user's home directory (home-based sources are skipped when `None`).
    pub home: Option<PathBuf>,
    /// The directory project-local configs are found in.
    pub cwd: PathBuf,
    /// The bridge's state directory.
    pub state_dir: PathBuf,
    /// Explicit config files or folders, read first, in order.
    pub explicit: Vec<PathBuf>,
    /// Environment variables, for `${VAR}` expansion in entries and `$XDG_CONFIG_HOME`.
    pub vars: VarLookup,
    /// This executable, for the recursion guard.
    pub self_exe: Option<PathBuf>,
    /// Keep entries that would launch this bridge (the recursion guard is off).
    pub allow_self_server: bool,
}

impl fmt::Debug for DiscoveryEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryEnv")
            .field("home", &self.home)
            .field("cwd", &self.cwd)
            .field("state_dir", &self.state_dir)
            .field("explicit", &self.explicit)
            .field("self_exe", &self.self_exe)
            .field("allow_self_server", &self.allow_self_server)
            .finish_non_exhaustive()
    }
}

impl DiscoveryEnv {
    /// The real process: its home, working directory, variables (for `${VAR}` in entries)
    /// and executable, with the settings the configuration resolved (`servers_config`: the
    /// `--servers-config` files, else `MCP_SERVERS_CONFIG`).
    pub fn from_process(
        state_dir: PathBuf,
        servers_config: &[PathBuf],
        allow_self_server: bool,
    ) -> Self {
        Self {
            home: dirs::home_dir(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            state_dir,
            explicit: servers_config.to_vec(),
            vars: Arc::new(|name| std::env::var(name).ok()),
            self_exe: std::env::current_exe().ok(),
            allow_self_server,
        }
    }

    /// The real process as the configuration describes it.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::from_process(
            config.state_dir.clone(),
            &config.servers_config,
            config.allow_self_server,
        )
    }

    pub(super) fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name)
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub(crate) fn config_home(&self) -> Option<PathBuf> {
        self.var("XDG_CONFIG_HOME")
            .filter(|p| Path::new(p).is_absolute())
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// Where desktop applications keep their settings: `~/Library/Application Support` on
    /// macOS, the XDG config home elsewhere.
    pub(crate) fn app_config_home(&self) -> Option<PathBuf> {
        if cfg!(target_os = "macos") {
            self.home
                .as_ref()
                .map(|h| h.join("Library").join("Application Support"))
        } else {
            self.config_home()
        }
    }

    pub(super) fn self_server_allowed(&self) -> bool {
        self.allow_self_server
    }
}
