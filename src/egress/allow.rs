//! The hosts code may reach: `MCP_BRIDGE_ALLOW_HOSTS`.
//!
//! A list of entries separated by commas or spaces. An entry is a host name
//! (`api.example.com`), a wildcard for its subdomains (`*.example.com`, which does not match
//! `example.com` itself), or an IP address literal (`203.0.113.7`, `[2001:db8::1]`), each
//! with an optional port (`api.example.com:8443`). Without a port an entry allows 80 and
//! 443, the ports of HTTP and HTTPS. Names compare case-insensitively, a trailing dot
//! ignored. An address that a name resolves to is checked again on its own
//! ([`super::address`]): the list says which names, never which private networks.

use std::fmt;
use std::net::IpAddr;

/// The ports an entry without one allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// What an entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Exactly this name.
    Name(String),
    /// Any name that ends in `.` + this suffix.
    Subdomains(String),
    /// Exactly this address, written as a literal.
    Address(IpAddr),
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    /// `None`: [`DEFAULT_PORTS`].
    port: Option<u16>,
}

/// The parsed `MCP_BRIDGE_ALLOW_HOSTS`. Empty means no network at all, as without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Parses the setting's text. An error names the entry and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let entries = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// True when no host is allowed: the sandbox gets no network.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `host` (a name or an address literal, as a request names it) at `port`
    /// is on the list.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let Some(host) = normalise_host(host) else {
            return false;
        };
        let address = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| {
            let port_ok = entry
                .port
                .map_or(DEFAULT_PORTS.contains(&port), |p| p == port);
            port_ok
                && match (&entry.pattern, address) {
                    (Pattern::Address(allowed), Some(address)) => *allowed == address,
                    (Pattern::Name(name), None) => *name == host,
                    (Pattern::Subdomains(suffix), None) => host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                    _ => false,
                }
        })
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match &entry.pattern {
                Pattern::Name(name) => f.write_str(name)?,
                Pattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
                Pattern::Address(IpAddr::V6(v6)) => write!(f, "[{v6}]")?,
                Pattern::Address(v4) => write!(f, "{v4}")?,
            }
            if let Some(port) = entry.port {
                write!(f, ":{port}")?;
            }
        }
        Ok(())
    }
}

/// A host as requests name it, lower-cased, without brackets or a trailing dot; `None`
/// when it is not a plausible host name or address.
pub fn normalise_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.');
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| a.to_string());
    }
    if let Ok(address) = host.parse::<IpAddr>() {
        return Some(address.to_string());
    }
    is_host_name(host).then(|| host.to_ascii_lowercase())
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 bytes, 253 in all: what
/// DNS can carry. Anything else (spaces, `@`, `%`, control characters, non-ASCII) is
/// refused rather than guessed at.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn parse_entry(text: &str) -> Result<Entry, String> {
    let bad = |why: &str| Err(format!("`{text}` in MCP_BRIDGE_ALLOW_HOSTS: {why}"));
    let (host, port) = split_port(text).map_err(|why| format!("`{text}`: {why}"))?;
    let pattern = if let Some(suffix) = host.strip_prefix("*.") {
        match normalise_host(suffix) {
            Some(suffix) if suffix.parse::<IpAddr>().is_err() && suffix.contains('.') => {
                Pattern::Subdomains(suffix)
            }
            Some(_) => return bad("a wildcard needs a domain of two labels or more after `*.`"),
            None => return bad("not a host name after `*.`"),
        }
    } else if host.contains('*') {
        return bad("`*` may only stand first, as `*.domain`");
    } else {
        match normalise_host(host) {
            Some(name) => match name.parse::<IpAddr>() {
                Ok(address) => Pattern::Address(address),
                Err(_) => Pattern::Name(name),
            },
            None => return bad("not a host name or an IP address"),
        }
    };
    Ok(Entry { pattern, port })
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if text.starts_with('[') {
        match text.find(']') {
            Some(end) => (&text[..=end], text[end + 1..].strip_prefix(':')),
            None => return Err("an IPv6 address needs its closing `]`".into()),
        }
    } else if text.matches(':').count() > 1 {
        return Err("write an IPv6 address in brackets: [2001:db8::1]:443".into());
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("`{p}` is not a port (1 to 65535)")),
            Ok(port) => Ok(port),
        })
        .transpose()?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> AllowList {
        AllowList::parse(text).unwrap()
    }

    #[test]
    fn names_wildcards_addresses_and_ports() {
        let allow =
            list("api.example.com, *.files.example.org:8443 203.0.113.7 [2001:db8::1]:9000");
        assert!(allow.allows("api.example.com", 443));
        assert!(allow.allows("API.Example.COM.", 80));
        assert!(
            !allow.allows("api.example.com", 8080),
            "no port: only 80 and 443"
        );
        assert!(!allow.allows("evil-api.example.com", 443));
        assert!(!allow.allows("api.example.com.evil.net", 443));
        assert!(allow.allows("a.files.example.org", 8443));
        assert!(allow.allows("a.b.files.example.org", 8443));
        assert!(
            !allow.allows("files.example.org", 8443),
            "a wildcard is subdomains only"
        );
        assert!(!allow.allows("xfiles.example.org", 8443));
        assert!(!allow.allows("a.files.example.org", 443));
        assert!(allow.allows("203.0.113.7", 443));
        assert!(!allow.allows("203.0.113.8", 443));
        assert!(allow.allows("[2001:db8::1]", 9000));
        assert!(allow.allows("2001:db8:0::1", 9000));
        assert_eq!(
            allow.to_string(),
            "api.example.com,*.files.example.org:8443,203.0.113.7,[2001:db8::1]:9000"
        );
    }

    #[test]
    fn empty_is_no_network() {
        assert!(list("").is_empty());
        assert!(list(" , ").is_empty());
        assert!(!list("").allows("example.com", 443));
    }

    #[test]
    fn hosts_that_are_not_host_names_are_never_allowed() {
        let allow = list("*.example.com");
        for host in [
            "a b.example.com",
            "user@a.example.com",
            "a.example.com%00",
            "a\u{1b}.example.com",
            "ä.example.com",
            "",
            ".example.com",
            "a..example.com",
        ] {
            assert!(!allow.allows(host, 443), "{host:?}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, why) in [
            ("*", "may only stand first"),
            ("*.", "not a host name"),
            ("*.com", "two labels"),
            ("a.*.example.com", "may only stand first"),
            ("example.com:0", "not a port"),
            ("example.com:99999", "not a port"),
            ("2001:db8::1", "brackets"),
            ("[2001:db8::1", "closing"),
            ("exa mple.com:x", "not a port"),
            ("*.10.0.0.1", "two labels"),
        ] {
            let error = AllowList::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
