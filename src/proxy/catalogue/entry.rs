//! One server entry of a config file, parsed into how to reach it (stdio or remote) with
//! its text expanded, or the reason it is skipped.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::expand::{EntryContext, Expander, read_env_file, resolve_path};
use super::known_clients::Format;
use super::types::{RemoteKind, Transport, json_kind};
use crate::policy::Rules;

/// A string-ish JSON scalar as text (configs write ports and flags as numbers or booleans).
fn scalar_text(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("{what} is {}, not a string", json_kind(other))),
    }
}

/// A `{KEY: value}` object, or a list of `KEY=VALUE` strings.
fn string_map(
    value: &Value,
    what: &str,
    expander: &mut Expander<'_>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (key, value) in map {
                let text = scalar_text(value, &format!("{what} `{key}`"))?;
                out.insert(key.clone(), expander.expand(&text)?);
            }
        }
        Value::Array(items) => {
            for item in items {
                let text = scalar_text(item, &format!("an item of {what}"))?;
                let Some((key, value)) = text.split_once('=') else {
                    return Err(format!("{what} item {text:?} is not KEY=VALUE"));
                };
                out.insert(key.to_string(), expander.expand(value)?);
            }
        }
        other => return Err(format!("{what} is {}, not an object", json_kind(other))),
    }
    Ok(out)
}

/// What one entry says, once parsed.
pub(super) struct ParsedEntry {
    /// How to reach the server.
    pub(super) transport: Transport,
    /// Its `description`, else the file's.
    pub(super) description: Option<String>,
    /// Things the user should know.
    pub(super) warnings: Vec<String>,
    /// Its `policy` for tool calls.
    pub(super) policy: Option<Rules>,
}

/// One entry's transport, description, warnings and policy, or why it is skipped. An
/// invalid `policy` skips the entry: a server never runs without the policy its user wrote.
pub(super) fn parse_entry(ctx: &EntryContext<'_>, value: &Value) -> Result<ParsedEntry, String> {
    let Some(entry) = value.as_object() else {
        return Err(format!("the entry is {}, not an object", json_kind(value)));
    };
    if entry.get("disabled").and_then(Value::as_bool) == Some(true) {
        return Err("it is disabled in its config (`disabled: true`)".into());
    }
    if entry.get("enabled").and_then(Value::as_bool) == Some(false) {
        return Err("it is disabled in its config (`enabled: false`)".into());
    }
    let description = entry
        .get("description")
        .and_then(Value::as_str)
        .or(ctx.file_description)
        .map(str::to_string);
    let mut expander = Expander {
        ctx,
        warnings: Vec::new(),
    };
    let kind = match entry.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.trim().to_ascii_lowercase()),
        Some(other) => return Err(format!("`type` is {}, not a string", json_kind(other))),
    };
    let url_key = ["url", "serverUrl", "httpUrl"]
        .into_iter()
        .find(|k| entry.contains_key(*k));
    let transport = match kind.as_deref() {
        Some("stdio" | "local") => stdio(ctx, entry, &mut expander)?,
        Some("http" | "streamable-http" | "streamable_http" | "streamablehttp" | "remote") => {
            remote(entry, url_key, Some(RemoteKind::Http), &mut expander)?
        }
        Some("sse") => remote(entry, url_key, Some(RemoteKind::Sse), &mut expander)?,
        Some(other) => {
            return Err(format!(
                "its type {other:?} is unknown; expected stdio, http or sse"
            ));
        }
        None if entry.contains_key("command") => stdio(ctx, entry, &mut expander)?,
        None if url_key.is_some() => {
            let kind = match url_key {
                Some("httpUrl") => Some(RemoteKind::Http),
                Some("url") if ctx.format == Format::Gemini => Some(RemoteKind::Sse),
                _ => None,
            };
            remote(entry, url_key, kind, &mut expander)?
        }
        None => return Err("it has neither a `command` nor a `url`".into()),
    };
    let policy = match entry.get("policy") {
        None | Some(Value::Null) => None,
        Some(policy) => {
            Some(Rules::parse(policy, "its `policy`").map_err(|e| sandbox_core::error_chain(&e))?)
        }
    };
    Ok(ParsedEntry {
        transport,
        description,
        warnings: expander.warnings,
        policy,
    })
}

fn stdio(
    ctx: &EntryContext<'_>,
    entry: &Map<String, Value>,
    expander: &mut Expander<'_>,
) -> Result<Transport, String> {
    let mut words: Vec<String> = match entry.get("command") {
        Some(Value::String(command)) => vec![command.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| scalar_text(item, "an item of `command`"))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`command` is {}, not a string", json_kind(other))),
        None => return Err("it is a stdio server without a `command`".into()),
    };
    match entry.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                words.push(scalar_text(item, "an item of `args`")?);
            }
        }
        Some(other) => return Err(format!("`args` is {}, not a list", json_kind(other))),
    }
    let mut words = words
        .iter()
        .map(|w| expander.expand(w))
        .collect::<Result<Vec<String>, String>>()?
        .into_iter();
    let command = words.next().unwrap_or_default();
    if command.trim().is_empty() {
        return Err("its `command` is empty".into());
    }
    let command = if command.starts_with("~/") {
        resolve_path(ctx, &command).display().to_string()
    } else {
        command
    };
    let mut env = BTreeMap::new();
    match entry.get("envFile") {
        None | Some(Value::Null) => {}
        Some(Value::String(path)) => {
            let path = resolve_path(ctx, &expander.expand(path)?);
            env.extend(read_env_file(&path, expander));
        }
        Some(other) => return Err(format!("`envFile` is {}, not a string", json_kind(other))),
    }
    for key in ["env", "environment"] {
        if let Some(value) = entry.get(key) {
            env.extend(string_map(value, &format!("`{key}`"), expander)?);
        }
    }
    let cwd = match entry.get("cwd") {
        None | Some(Value::Null) => None,
        Some(Value::String(cwd)) if cwd.trim().is_empty() => None,
        Some(Value::String(cwd)) => Some(resolve_path(ctx, &expander.expand(cwd)?)),
        Some(other) => return Err(format!("`cwd` is {}, not a string", json_kind(other))),
    };
    Ok(Transport::Stdio {
        command,
        args: words.collect(),
        env,
        cwd,
    })
}

fn remote(
    entry: &Map<String, Value>,
    url_key: Option<&str>,
    kind: Option<RemoteKind>,
    expander: &mut Expander<'_>,
) -> Result<Transport, String> {
    let Some(key) = url_key else {
        return Err("it is a remote server without a `url`".into());
    };
    let url = match &entry[key] {
        Value::String(url) => expander.expand(url.trim())?,
        other => return Err(format!("`{key}` is {}, not a string", json_kind(other))),
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("its url {url:?} is not an http:// or https:// URL"));
    }
    let mut headers = BTreeMap::new();
    for key in ["headers", "http_headers"] {
        if let Some(value) = entry.get(key) {
            headers.extend(string_map(value, &format!("`{key}`"), expander)?);
        }
    }
    // Codex: headers whose values come from named variables.
    if let Some(value) = entry.get("env_http_headers") {
        let Some(map) = value.as_object() else {
            return Err("`env_http_headers` is not an object".into());
        };
        for (header, var) in map {
            let var = scalar_text(var, &format!("`env_http_headers` `{header}`"))?;
            let value = expander.lookup(&var, &format!("${{{var}}}"));
            headers.insert(header.clone(), value);
        }
    }
    if let Some(var) = entry.get("bearer_token_env_var") {
        let var = scalar_text(var, "`bearer_token_env_var`")?;
        let token = expander.lookup(&var, &format!("${{{var}}}"));
        headers.insert("Authorization".into(), format!("Bearer {token}"));
    }
    let kind = kind.unwrap_or_else(|| {
        let path = lower.split(['?', '#']).next().unwrap_or_default();
        if path.trim_end_matches('/').ends_with("/sse") {
            RemoteKind::Sse
        } else {
            RemoteKind::Http
        }
    });
    Ok(Transport::Remote { url, headers, kind })
}
