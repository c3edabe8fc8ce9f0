//! Secrets the code uses without seeing: `MCP_BRIDGE_SECRETS`.
//!
//! `NAME@host1,host2` binds the host environment variable `NAME` to those hosts (the allow
//! list's syntax: names, `*.` wildcards, ports). Entries are separated by spaces or `;`.
//! The sandbox's environment gets a placeholder for `NAME`, a random token, never the value.
//! When the host makes a request for the sandbox (`mcp.runtime.fetch`, or a plain `http://`
//! request through the proxy), a placeholder in a header is replaced by the value if the
//! request goes to a host bound to that secret; sent anywhere else, the request is refused
//! and reported. HTTPS tunnelled through the proxy (CONNECT) is encrypted end to end, so
//! the host cannot see its headers, let alone rewrite them: secrets work through `fetch`.
//!
//! The value is held here only; it is never written to the sandbox, a reply, a log or a
//! checkpoint (a checkpoint can hold the placeholder, which is worthless elsewhere).

use http::header::{HeaderMap, HeaderValue};

use super::allow::AllowList;

/// One bound secret.
#[derive(Clone)]
struct Secret {
    name: String,
    value: String,
    placeholder: String,
    hosts: AllowList,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("hosts", &self.hosts.to_string())
            .finish_non_exhaustive()
    }
}

/// The parsed `MCP_BRIDGE_SECRETS`, with each value read from the host's environment.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    secrets: Vec<Secret>,
}

impl PartialEq for Secrets {
    fn eq(&self, other: &Self) -> bool {
        self.spec() == other.spec()
    }
}

impl Secrets {
    /// Parses the setting, reading each value with `lookup` (the host's environment).
    pub fn parse(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut secrets: Vec<Secret> = Vec::new();
        for entry in text
            .split(|c: char| c == ';' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let Some((name, hosts)) = entry.split_once('@') else {
                return Err(format!(
                    "`{entry}` in MCP_BRIDGE_SECRETS: write NAME@host1,host2"
                ));
            };
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || name.as_bytes()[0].is_ascii_digit()
            {
                return Err(format!(
                    "`{name}` in MCP_BRIDGE_SECRETS is not an environment variable's name"
                ));
            }
            if secrets.iter().any(|s| s.name == name) {
                return Err(format!("`{name}` is bound twice in MCP_BRIDGE_SECRETS"));
            }
            let hosts = AllowList::parse(hosts)?;
            if hosts.is_empty() {
                return Err(format!("`{name}` in MCP_BRIDGE_SECRETS names no host"));
            }
            let value = lookup(name).ok_or_else(|| {
                format!("MCP_BRIDGE_SECRETS binds `{name}`, which is not set in the environment")
            })?;
            if value.is_empty() || HeaderValue::from_str(&value).is_err() {
                return Err(format!(
                    "the value of `{name}` (MCP_BRIDGE_SECRETS) cannot go in an HTTP header: \
                     it is empty or holds control characters"
                ));
            }
            secrets.push(Secret {
                name: name.to_string(),
                placeholder: placeholder(name),
                value,
                hosts,
            });
        }
        Ok(Self { secrets })
    }

    /// True when no secret is bound.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `NAME@hosts` of each secret, as `doctor` shows the setting (never a value).
    pub fn spec(&self) -> String {
        self.secrets
            .iter()
            .map(|s| format!("{}@{}", s.name, s.hosts))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The sandbox's environment entries: each name with its placeholder.
    pub fn placeholders(&self) -> Vec<(String, String)> {
        self.secrets
            .iter()
            .map(|s| (s.name.clone(), s.placeholder.clone()))
            .collect()
    }

    /// Replaces placeholders in `headers` for a request to `host` at `port`. A placeholder
    /// of a secret not bound to that host refuses the request, naming the secret.
    pub fn replace_in(&self, headers: &mut HeaderMap, host: &str, port: u16) -> Result<(), String> {
        if self.secrets.is_empty() {
            return Ok(());
        }
        for value in headers.values_mut() {
            let Ok(text) = value.to_str() else {
                continue;
            };
            let mut replaced: Option<String> = None;
            for secret in &self.secrets {
                let current = replaced.as_deref().unwrap_or(text);
                if !current.contains(&secret.placeholder) {
                    continue;
                }
                if !secret.hosts.allows(host, port) {
                    return Err(format!(
                        "the request to {host} carries the placeholder of secret {}, which is \
                         bound to {} only",
                        secret.name, secret.hosts
                    ));
                }
                replaced = Some(current.replace(&secret.placeholder, &secret.value));
            }
            if let Some(replaced) = replaced {
                let mut new = HeaderValue::from_str(&replaced)
                    .map_err(|_| "a header with a secret is not a valid header".to_string())?;
                new.set_sensitive(true);
                *value = new;
            }
        }
        Ok(())
    }

    /// Hides every secret's value in `text` (for error messages that could echo one).
    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |text, s| {
            text.replace(&s.value, &s.placeholder)
        })
    }
}

/// A random token that stands for `name` in the sandbox: recognisable, and worthless.
fn placeholder(name: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!(
        "mcp-secret-{}-{}",
        name.to_ascii_lowercase(),
        crate::digest::hex(&bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn secrets() -> Secrets {
        Secrets::parse("API_TOKEN@api.example.com;OTHER@*.other.net:8443", |name| {
            Some(format!("real-{name}"))
        })
        .unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn placeholders_are_replaced_only_for_bound_hosts() {
        let secrets = secrets();
        let env = secrets.placeholders();
        let token = &env.iter().find(|(n, _)| n == "API_TOKEN").unwrap().1;
        assert!(!token.contains("real"), "{token}");
        let mut sent = headers(&format!("Bearer {token}"));
        secrets
            .replace_in(&mut sent, "api.example.com", 443)
            .unwrap();
        assert_eq!(sent["authorization"], "Bearer real-API_TOKEN");
        assert!(sent["authorization"].is_sensitive());
        let mut elsewhere = headers(&format!("Bearer {token}"));
        let error = secrets
            .replace_in(&mut elsewhere, "evil.example.net", 443)
            .unwrap_err();
        assert!(
            error.contains("API_TOKEN") && !error.contains("real-"),
            "{error}"
        );
        let mut wrong_port = headers(token);
        assert!(
            secrets
                .replace_in(&mut wrong_port, "api.example.com", 8080)
                .is_err()
        );
        let mut plain = headers("Bearer nothing");
        secrets
            .replace_in(&mut plain, "evil.example.net", 443)
            .unwrap();
        assert_eq!(plain["authorization"], "Bearer nothing");
    }

    #[test]
    fn values_are_never_shown() {
        let secrets = secrets();
        let shown = format!("{secrets:?} {}", secrets.spec());
        assert!(!shown.contains("real-"), "{shown}");
        assert_eq!(
            secrets.spec(),
            "API_TOKEN@api.example.com OTHER@*.other.net:8443"
        );
        assert!(!secrets.redact("x real-OTHER y").contains("real-"));
    }

    #[test]
    fn bad_bindings_are_named() {
        let lookup = |name: &str| (name != "UNSET").then(|| "v".to_string());
        for (text, why) in [
            ("NOHOSTS", "NAME@host1"),
            ("1X@a.com", "not an environment variable"),
            ("X@", "names no host"),
            ("UNSET@a.com", "not set in the environment"),
            ("X@a.com X@b.com", "bound twice"),
        ] {
            let error = Secrets::parse(text, lookup).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
        let newline = Secrets::parse("X@a.com", |_| Some("a\r\nInjected: 1".into()));
        assert!(newline.unwrap_err().contains("control characters"));
    }
}
