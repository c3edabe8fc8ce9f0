//! The settings whose values are one of a fixed list: which backend, which output mode. A
//! leaf: the table, the configuration and the backends all name these.

use std::fmt;

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
    /// Every backend, in the order reports list them: the one list of backends.
    pub const ALL: [Self; 4] = [Self::Wasi, Self::Podman, Self::Docker, Self::Oci];

    /// The names of [`ALL`](Self::ALL), in order.
    pub const NAMES: [&'static str; 4] = {
        let mut names = [""; Self::ALL.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The backend's name in configuration and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Wasi => "wasi",
            Self::Podman => "podman",
            Self::Docker => "docker",
            Self::Oci => "oci",
        }
    }

    /// Parse a backend name (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown backend {wanted:?}; expected one of {}",
                    Self::NAMES.join(", ")
                )
            })
    }

    /// True for the backends that run containers under an engine.
    pub fn is_container_engine(self) -> bool {
        matches!(self, Self::Podman | Self::Docker)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::Compact, Self::Toon, Self::Json];

    /// The names of [`ALL`](Self::ALL), in order.
    pub const NAMES: [&'static str; 3] = {
        let mut names = [""; Self::ALL.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].name();
            i += 1;
        }
        names
    };

    /// The mode's name in configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Compact => "compact",
            Self::Toon => "toon",
            Self::Json => "json",
        }
    }

    /// Parse a mode name (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        let wanted = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown output mode {wanted:?}; expected {}",
                    Self::NAMES.join(", ")
                )
            })
    }
}
