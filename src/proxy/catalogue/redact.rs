//! Credentials hidden from what we print: string helpers, a leaf.

/// Whether a variable, header or flag name looks like it holds a credential.
fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "key",
        "auth",
        "credential",
        "cookie",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Arguments with credential-looking values hidden: `--token=x` → `--token=***`, and the
/// word after `--api-key` → `***`.
pub(super) fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".to_string());
            hide_next = false;
            continue;
        }
        if arg.starts_with('-') {
            if let Some((flag, _)) = arg.split_once('=') {
                if looks_secret(flag) {
                    out.push(format!("{flag}=***"));
                    continue;
                }
            } else if looks_secret(arg) {
                hide_next = true;
            }
        }
        out.push(arg.clone());
    }
    out
}

/// A URL with its user info and query hidden (both often carry credentials).
pub(super) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?***"),
        None => (url, ""),
    };
    let redacted = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    format!("{redacted}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_arg_redaction() {
        assert_eq!(redact_url("https://h.example/mcp"), "https://h.example/mcp");
        assert_eq!(redact_url("https://a:b@h/x?y=1"), "https://***@h/x?***");
        assert_eq!(redact_url("http://h?x"), "http://h?***");
        let args: Vec<String> = [
            "--port",
            "1",
            "--password",
            "p",
            "-k=v",
            "--secret-file=f",
            "pos",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            redact_args(&args),
            [
                "--port",
                "1",
                "--password",
                "***",
                "-k=v",
                "--secret-file=***",
                "pos"
            ]
        );
    }
}
