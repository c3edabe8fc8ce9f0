//! The platform wheels are chosen for: the sandbox interpreter's Python version, and which
//! wheels it can load.
//!
//! The interpreter reports its own facts at install time (version, platform, machine, C
//! library), so a new root filesystem or interpreter needs no constant changed here. They are
//! checked strictly, and the backend bounds what they may say: a WASI sandbox gets
//! pure-Python wheels whatever its guest claims; a Linux container gets manylinux wheels for
//! its machine and C library.

use std::fmt;

/// Which wheels a backend's interpreters can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Pure-Python wheels only (`py3-none-any`): CPython on WASI loads no native code.
    PureOnly,
    /// CPython on glibc Linux: pure wheels and manylinux wheels for its machine.
    Linux,
}

impl Family {
    /// The family of a backend, by its name.
    pub fn of_backend(backend: &str) -> Self {
        if backend == "wasi" {
            Self::PureOnly
        } else {
            Self::Linux
        }
    }
}

/// What wheels are chosen for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `(3, minor)`.
    pub python: (u32, u32),
    /// The wheels it loads.
    pub platform: Platform,
}

/// The platform part of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// Pure-Python wheels.
    Pure,
    /// manylinux wheels up to this glibc, for this machine.
    Manylinux {
        /// glibc `(major, minor)`.
        glibc: (u32, u32),
        /// `x86_64` or `aarch64`.
        machine: &'static str,
    },
}

/// What the guest says about its interpreter.
#[derive(Debug, Clone, Default)]
pub struct GuestFacts<'a> {
    /// `3.15`.
    pub python: &'a str,
    /// `os.uname().machine`, when it has one.
    pub machine: Option<&'a str>,
    /// `os.confstr("CS_GNU_LIBC_VERSION")`: `glibc 2.36`.
    pub libc: Option<&'a str>,
}

impl Target {
    /// The target of a guest of `family`, from what it says of itself.
    pub fn new(family: Family, facts: &GuestFacts<'_>) -> Result<Self, String> {
        let python = parse_pair(facts.python, "3.")
            .filter(|(major, minor)| *major == 3 && (8..=40).contains(minor))
            .ok_or_else(|| format!("{:?} is not a Python version we know", facts.python))?;
        let platform = match family {
            Family::PureOnly => Platform::Pure,
            Family::Linux => {
                let machine = match facts.machine {
                    Some("x86_64") => "x86_64",
                    Some("aarch64") => "aarch64",
                    other => return Err(format!("machine {other:?} has no manylinux wheels")),
                };
                let glibc = facts
                    .libc
                    .and_then(|libc| libc.strip_prefix("glibc "))
                    .and_then(|version| parse_pair(version, ""))
                    .filter(|(major, minor)| *major == 2 && (17..=99).contains(minor))
                    .ok_or_else(|| format!("C library {:?} has no manylinux wheels", facts.libc))?;
                Platform::Manylinux { glibc, machine }
            }
        };
        Ok(Self { python, platform })
    }

    /// pip's options that choose wheels for this target (with `--only-binary=:all:`).
    pub fn pip_args(&self) -> Vec<String> {
        let (major, minor) = self.python;
        let mut args = vec![
            "--only-binary=:all:".to_string(),
            format!("--python-version={major}.{minor}"),
        ];
        match &self.platform {
            Platform::Pure => args.extend([
                "--platform=any".to_string(),
                "--implementation=py".to_string(),
                "--abi=none".to_string(),
            ]),
            Platform::Manylinux { glibc, machine } => args.extend([
                // pip also accepts every older manylinux tag for this one.
                format!("--platform=manylinux_{}_{}_{machine}", glibc.0, glibc.1),
                "--implementation=cp".to_string(),
                format!("--abi=cp{major}{minor}"),
            ]),
        }
        args
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.python;
        match &self.platform {
            Platform::Pure => write!(
                f,
                "CPython {major}.{minor} on WebAssembly (WASI), which loads pure-Python wheels only"
            ),
            Platform::Manylinux { glibc, machine } => write!(
                f,
                "CPython {major}.{minor} on Linux {machine} with glibc {}.{} (manylinux wheels)",
                glibc.0, glibc.1
            ),
        }
    }
}

fn parse_pair(text: &str, prefix: &str) -> Option<(u32, u32)> {
    if !text.starts_with(prefix) {
        return None;
    }
    let (major, minor) = text.split_once('.')?;
    let small = |part: &str| {
        (!part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    Some((small(major)?, small(minor)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(python: &'a str, machine: &'a str, libc: &'a str) -> GuestFacts<'a> {
        GuestFacts {
            python,
            machine: Some(machine),
            libc: Some(libc),
        }
    }

    #[test]
    fn a_wasi_guest_gets_pure_wheels_whatever_it_claims() {
        let target = Target::new(Family::PureOnly, &facts("3.15", "x86_64", "glibc 2.36")).unwrap();
        assert_eq!(target.platform, Platform::Pure);
        assert!(target.pip_args().contains(&"--platform=any".to_string()));
        assert!(target.to_string().contains("3.15"));
    }

    #[test]
    fn a_linux_guest_gets_manylinux_wheels_for_its_machine_and_glibc() {
        let target = Target::new(Family::Linux, &facts("3.11", "x86_64", "glibc 2.36")).unwrap();
        let args = target.pip_args();
        assert!(args.contains(&"--platform=manylinux_2_36_x86_64".to_string()));
        assert!(args.contains(&"--abi=cp311".to_string()));
    }

    #[test]
    fn odd_facts_are_refused() {
        for (python, machine, libc) in [
            ("3", "x86_64", "glibc 2.36"),
            ("2.7", "x86_64", "glibc 2.36"),
            ("3.11.2", "x86_64", "glibc 2.36"),
            ("3.11", "riscv64", "glibc 2.36"),
            ("3.11", "x86_64", "musl 1.2"),
            ("3.11", "x86_64", "glibc 2.36 --platform=win_amd64"),
        ] {
            assert!(
                Target::new(Family::Linux, &facts(python, machine, libc)).is_err(),
                "{python} {machine} {libc}"
            );
        }
    }
}
