//! The settings whose values are one of a fixed list: which backend, which output mode,
//! which WASI interpreter. A leaf: the table, the configuration and the backends all name
//! these.

use std::fmt;

/// A fixed list of named values: the enum, its one list ([`BackendKind::ALL`]), the names in
/// the same order (for `--help`), a case-insensitive parser and `Display`.
macro_rules! choices {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $( $(#[$variant_doc:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_doc])* $variant, )+
        }

        impl $name {
            /// Every value, in the order reports list them: the one list of them.
            pub const ALL: [Self; [$($text),+].len()] = [$(Self::$variant),+];

            /// The names of [`ALL`](Self::ALL), in order.
            pub const NAMES: [&'static str; [$($text),+].len()] = [$($text),+];

            /// The value's name in configuration and reports.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }

            /// Parse a name (any case); the error lists the names.
            pub fn parse(text: &str) -> Result<Self, String> {
                let wanted = text.trim().to_ascii_lowercase();
                Self::ALL
                    .into_iter()
                    .find(|value| value.name() == wanted)
                    .ok_or_else(|| {
                        format!(
                            "unknown {} {wanted:?}; expected one of {}",
                            $what,
                            Self::NAMES.join(", ")
                        )
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

choices! {
    /// Which sandbox backend runs the code.
    BackendKind, "backend" {
        /// `CPython` on WASI in wasmtime.
        Wasi => "wasi",
        /// One container per session under Podman.
        Podman => "podman",
        /// One container per session under Docker.
        Docker => "docker",
        /// One container per session made directly with youki's libcontainer, no engine.
        Oci => "oci",
    }
}

impl BackendKind {
    /// True for the backends that run containers under an engine.
    pub fn is_container_engine(self) -> bool {
        matches!(self, Self::Podman | Self::Docker)
    }
}

choices! {
    /// How result text is written.
    OutputMode, "output mode" {
        /// Plain, minimal text.
        Compact => "compact",
        /// Token-Oriented Object Notation of the structured result.
        Toon => "toon",
        /// JSON of the structured result.
        Json => "json",
    }
}

choices! {
    /// How log lines are written (to stderr).
    LogFormat, "log format" {
        /// One line of text per event.
        Text => "text",
        /// One JSON object per line (timestamp, level, target, fields), for log collectors.
        Json => "json",
    }
}

choices! {
    /// Which pinned interpreter the WASI backend runs (the names of `python_wasm::Flavour`;
    /// a test keeps the two lists equal).
    WasiPython, "WASI interpreter" {
        /// `CPython` 3.12 with the standard library only: 26 MB, compiles in seconds.
        Slim => "slim",
        /// `CPython` 3.15 with numpy, pandas, scipy, scikit-learn, matplotlib and more.
        Full => "full",
    }
}
