//! `${VAR}` expansion (and VS Code's and opencode's own forms), paths relative to the config
//! file, and `envFile` dotenv files: what an entry's text means on this machine.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::discovery_env::DiscoveryEnv;
use super::known_clients::Format;

/// `{file:...}` substitutions read at most this much.
const MAX_SUBSTITUTED_FILE_BYTES: u64 = 64 << 10;

/// What parsing an entry needs to know about its file.
pub(super) struct EntryContext<'a> {
    pub(super) env: &'a DiscoveryEnv,
    pub(super) format: Format,
    pub(super) base_dir: &'a Path,
    pub(super) file_description: Option<&'a str>,
}

/// Expansion state for one entry: the warnings it produced.
pub(super) struct Expander<'a> {
    pub(super) ctx: &'a EntryContext<'a>,
    pub(super) warnings: Vec<String>,
}

impl Expander<'_> {
    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    pub(super) fn lookup(&mut self, name: &str, written: &str) -> String {
        if let Some(value) = self.ctx.env.var(name) {
            return value;
        }
        self.warn(format!(
            "{written} is not set; it expands to an empty string"
        ));
        String::new()
    }

    /// Expand `${...}` (and, in opencode files, `{env:...}` / `{file:...}`) in `text`.
    pub(super) fn expand(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        loop {
            let dollar = rest.find("${");
            let brace = (self.ctx.format == Format::OpenCode)
                .then(|| {
                    [rest.find("{env:"), rest.find("{file:")]
                        .into_iter()
                        .flatten()
                        .min()
                })
                .flatten();
            let (start, skip) = match (dollar, brace) {
                (Some(d), Some(b)) if b < d => (b, 1),
                (Some(d), _) => (d, 2),
                (None, Some(b)) => (b, 1),
                (None, None) => break,
            };
            let Some(len) = rest[start + skip..].find('}') else {
                break;
            };
            let inner = &rest[start + skip..start + skip + len];
            let written = &rest[start..=start + skip + len];
            out.push_str(&rest[..start]);
            let value = if skip == 2 {
                self.dollar(inner, written)?
            } else {
                self.opencode(inner, written)
            };
            out.push_str(&value);
            rest = &rest[start + skip + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The inside of `${...}`.
    fn dollar(&mut self, inner: &str, written: &str) -> Result<String, String> {
        if let Some(name) = inner.strip_prefix("env:") {
            return Ok(self.lookup(name, written));
        }
        if self.ctx.format.is_vscode() {
            match inner {
                "workspaceFolder" => return Ok(self.ctx.env.cwd.display().to_string()),
                "userHome" => {
                    if let Some(home) = &self.ctx.env.home {
                        return Ok(home.display().to_string());
                    }
                }
                _ => {}
            }
        }
        if let Some((name, default)) = inner.split_once(":-")
            && is_var_name(name)
        {
            return Ok(self
                .ctx
                .env
                .var(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()));
        }
        if is_var_name(inner) {
            return Ok(self.lookup(inner, written));
        }
        if inner.contains(':') {
            return Err(format!(
                "it uses {written}, which only the client that wrote the file can resolve \
                 (an interactive input or editor setting)"
            ));
        }
        Err(format!(
            "{written} is not a variable reference we understand"
        ))
    }

    /// The inside of opencode's `{env:...}` or `{file:...}`.
    fn opencode(&mut self, inner: &str, written: &str) -> String {
        if let Some(name) = inner.strip_prefix("env:") {
            return self.lookup(name, written);
        }
        let raw = inner.strip_prefix("file:").unwrap_or(inner);
        let path = resolve_path(self.ctx, raw);
        let read = std::fs::File::open(&path).and_then(|f| {
            let mut text = String::new();
            f.take(MAX_SUBSTITUTED_FILE_BYTES)
                .read_to_string(&mut text)?;
            Ok(text)
        });
        match read {
            Ok(text) => text.trim_end().to_string(),
            Err(e) => {
                self.warn(format!(
                    "{written}: cannot read {}: {e}; it expands to an empty string",
                    path.display()
                ));
                String::new()
            }
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A path from a config: `~/` is the home directory, relative is relative to the file.
pub(super) fn resolve_path(ctx: &EntryContext<'_>, raw: &str) -> PathBuf {
    if let (Some(rest), Some(home)) = (raw.strip_prefix("~/"), &ctx.env.home) {
        return home.join(rest);
    }
    if raw == "~"
        && let Some(home) = &ctx.env.home
    {
        return home.clone();
    }
    let path = Path::new(raw);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        ctx.base_dir.join(path)
    }
}

/// The `KEY=VALUE` lines of a dotenv file (VS Code's and Cursor's `envFile`): blank lines
/// and `#` comments skipped, an `export ` prefix and matching quotes around the value
/// removed, no expansion inside. An unreadable file is a warning, not a skipped entry.
pub(super) fn read_env_file(path: &Path, expander: &mut Expander<'_>) -> BTreeMap<String, String> {
    let read = std::fs::File::open(path).and_then(|f| {
        let mut text = String::new();
        f.take(MAX_SUBSTITUTED_FILE_BYTES)
            .read_to_string(&mut text)?;
        Ok(text)
    });
    let text = match read {
        Ok(text) => text,
        Err(e) => {
            expander.warn(format!(
                "its envFile {} cannot be read ({e}); its variables are not set",
                path.display()
            ));
            return BTreeMap::new();
        }
    };
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .into_iter()
            .find_map(|q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)));
        vars.insert(
            key.trim().to_string(),
            unquoted.unwrap_or(value).to_string(),
        );
    }
    vars
}
