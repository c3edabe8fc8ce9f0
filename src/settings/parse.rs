//! The parsers and computed defaults of the settings table: text in, a value or a sentence
//! saying what is accepted out.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::kinds::BackendKind;
use crate::units::parse_bytes;

/// Separates the values of a repeated flag in one text (a NUL never occurs in an argument
/// or a variable).
pub(super) const REPEAT_SEPARATOR: char = '\0';

/// `1/true/yes/on` or `0/false/no/off`.
pub(super) fn switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "expected 1/true/yes/on or 0/false/no/off, got {text:?}"
        )),
    }
}

/// A whole number.
pub(super) fn count(text: &str) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .map_err(|_| format!("expected a whole number, got {text:?}"))
}

/// WASI engine settings (`opt=speed,bounds=guard,tick=10ms`, any key left out for its
/// default), in their canonical form. A build without the WASI backend keeps the text.
#[cfg_attr(
    not(feature = "backend-wasi"),
    allow(
        clippy::unnecessary_wraps,
        reason = "the table's parsers return a Result; only the WASI build can refuse"
    )
)]
pub(super) fn wasi_engine(text: &str) -> Result<String, String> {
    #[cfg(feature = "backend-wasi")]
    return text
        .parse::<sandbox_wasi::EngineTuning>()
        .map(|tuning| tuning.to_string())
        .map_err(|error| error.to_string());
    #[cfg(not(feature = "backend-wasi"))]
    Ok(text.trim().to_string())
}

/// The WASI engine's default settings, written out.
pub(super) fn default_wasi_engine() -> String {
    wasi_engine("").unwrap_or_default()
}

/// Warm sessions: at most [`MAX_POOL_SIZE`](super::MAX_POOL_SIZE).
pub(super) fn pool_size(text: &str) -> Result<u32, String> {
    match count(text)? {
        n if n <= super::MAX_POOL_SIZE => Ok(n),
        n => Err(format!(
            "{n} is more than the {} warm sessions we allow",
            super::MAX_POOL_SIZE
        )),
    }
}

/// Live sessions: at least one.
pub(super) fn max_sessions(text: &str) -> Result<u32, String> {
    match count(text)? {
        0 => Err("at least one session must be allowed".into()),
        n => Ok(n),
    }
}

/// The output cap: 1k to 16m.
pub(super) fn output_limit(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        n if (1024..=(16 << 20)).contains(&n) => Ok(n),
        n => Err(format!("{n} bytes is outside 1k..=16m")),
    }
}

/// A positive number of cores.
pub(super) fn cpus(text: &str) -> Result<Option<f64>, String> {
    match text.trim().parse::<f64>() {
        Ok(cpus) if cpus.is_finite() && cpus > 0.0 => Ok(Some(cpus)),
        _ => Err(format!(
            "expected a positive number of cores like 1 or 0.5, got {text:?}"
        )),
    }
}

/// `uid:gid`.
pub(super) fn user(text: &str) -> Result<(u32, u32), String> {
    let err = || format!("expected uid:gid like 65534:65534, got {text:?}");
    let (uid, gid) = text.trim().split_once(':').ok_or_else(err)?;
    Ok((
        uid.parse().map_err(|_| err())?,
        gid.parse().map_err(|_| err())?,
    ))
}

/// A log level, or per-module directives.
pub(super) fn log_level(text: &str) -> Result<String, String> {
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
pub(super) fn engine(text: &str) -> Result<Option<BackendKind>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" | "" => Ok(None),
        "podman" => Ok(Some(BackendKind::Podman)),
        "docker" => Ok(Some(BackendKind::Docker)),
        _ => Err(format!("expected auto, podman or docker, got {text:?}")),
    }
}

/// A name without spaces (an image, a runtime, a mirror).
pub(super) fn name(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        Err(format!("expected a name without spaces, got {text:?}"))
    } else {
        Ok(Some(text.to_string()))
    }
}

/// A path, as given.
pub(super) fn path(text: &str) -> Result<Option<PathBuf>, String> {
    match text {
        "" => Err("expected a path, got an empty text".into()),
        _ => Ok(Some(PathBuf::from(text))),
    }
}

/// The state directory.
pub(super) fn state_dir(text: &str) -> Result<PathBuf, String> {
    path(text).map(|p| p.expect("path gives a path"))
}

/// A program: a name looked up on `PATH`, or a path.
pub(super) fn program(text: &str) -> Result<PathBuf, String> {
    path(text.trim()).map(|p| p.expect("path gives a path"))
}

/// Paths: one from the variable, one per flag from the command line.
pub(super) fn paths(text: &str) -> Result<Vec<PathBuf>, String> {
    text.split(REPEAT_SEPARATOR)
        .filter(|p| !p.trim().is_empty())
        .map(state_dir)
        .collect()
}

/// Host directories to grant: `name=/host/dir`, checked for syntax and names here, on disk
/// in [`crate::config`].
pub(super) fn mounts(text: &str) -> Result<Vec<crate::mounts::MountRequest>, String> {
    crate::mounts::parse_list(text).map_err(|e| e.to_string())
}

/// Requirements separated by white space (or given one per flag), each checked as
/// `mcp.runtime.install` checks it.
pub(super) fn requirements(text: &str) -> Result<Vec<String>, String> {
    text.split(|c: char| c == REPEAT_SEPARATOR || c.is_whitespace())
        .filter(|r| !r.is_empty())
        .map(|r| crate::packages::requirement::Requirement::parse(r).map(|_| r.to_string()))
        .collect()
}

/// A size cap (the wheel cache, a checkpoint): at least 1k.
pub(super) fn size_cap(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        n if n >= 1024 => Ok(n),
        n => Err(format!("{n} bytes is below the 1k minimum")),
    }
}

/// A secret, kept as given (an empty one is refused where it is used, with its own reason).
#[allow(
    clippy::unnecessary_wraps,
    reason = "the table's parsers return a Result"
)]
pub(super) fn token(text: &str) -> Result<Option<String>, String> {
    Ok(Some(text.to_string()))
}

/// An address to listen on: `IP:PORT` (`[::1]:9464` for IPv6; port 0 picks a free one).
pub(super) fn socket_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("expected an address such as 127.0.0.1:9464, got {text:?}"))
}

/// `~/MCPs`, the reference's state directory.
pub(super) fn default_state_dir() -> PathBuf {
    dirs::home_dir().map_or_else(|| PathBuf::from("MCPs"), |home| home.join("MCPs"))
}

/// The Python of the environment the binary was installed into, when there is one (a wheel
/// puts it beside that environment's `python3`, which has pip as a dependency of ours: `uvx`
/// and `pipx` make environments without pip), else `python3` from `PATH`.
pub(super) fn default_pip_python() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| sibling_python(&exe))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// `python3` beside `exe` in a virtual environment's `bin` (one with `pyvenv.cfg` above it).
fn sibling_python(exe: &std::path::Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    let python = bin.join("python3");
    let environment = bin.parent()?;
    (python.is_file() && environment.join("pyvenv.cfg").is_file()).then_some(python)
}

/// `mcp-server-code-execution-mode` in the platform's cache directory (`~/.cache`).
pub(super) fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("mcp-server-code-execution-mode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pip_python_is_the_one_of_the_binarys_own_environment() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = bin.join("mcp-server-code-execution-mode");
        std::fs::write(&exe, "").unwrap();
        // A bin directory with a python3 but not a virtual environment: not taken.
        std::fs::write(bin.join("python3"), "").unwrap();
        assert_eq!(sibling_python(&exe), None);
        std::fs::write(root.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(sibling_python(&exe), Some(bin.join("python3")));
    }

    #[test]
    fn log_directives_are_trimmed_one_by_one() {
        // Found by the `env_config` fuzz target: a directive with leading whitespace and a
        // non-ASCII character made tracing-subscriber's parser panic.
        assert_eq!(
            log_level(" warn,  sandbox_core=debug ").as_deref(),
            Ok("warn,sandbox_core=debug")
        );
        let hostile = "warn,\u{c}5\u{7ac2a}=debug";
        assert_eq!(log_level(hostile).as_deref(), Ok("warn,5\u{7ac2a}=debug"));
    }

    #[test]
    fn repeated_paths_keep_their_order() {
        assert_eq!(
            paths("a.json\0b.json"),
            Ok(vec![PathBuf::from("a.json"), PathBuf::from("b.json")])
        );
        assert_eq!(paths("only.json"), Ok(vec![PathBuf::from("only.json")]));
    }
}
