//! The durable identity a client's sessions are saved under, and the tenant it names.
//!
//! `<transport>:<client>` for the default tenant, `<transport>:tenant=<name>:<client>` for a
//! tokens file's tenant. The client's name (the client's own choice, from `initialize`) is
//! written with `%` and `:` escaped, so it never contains the separator: no client name can
//! make an identity that reads as another tenant's (a default client calling itself
//! `tenant=team-a:agent` gets `http:tenant=team-a%3Aagent`, not team-a's `agent`).

/// The tenant a bridge serves when there is no tokens file: every client of a single-token
/// or loopback bridge (and of stdio).
pub const DEFAULT_TENANT: &str = "default";

/// The identity of `client`'s sessions over `transport` (`stdio`, `http`), for `tenant`.
pub fn durable_identity(transport: &str, tenant: &str, client: &str) -> String {
    let client = escape(client);
    if tenant == DEFAULT_TENANT {
        format!("{transport}:{client}")
    } else {
        format!("{transport}:tenant={tenant}:{client}")
    }
}

/// The tenant an identity made by [`durable_identity`] names ([`DEFAULT_TENANT`] for any
/// other string).
pub fn tenant_of_identity(identity: &str) -> &str {
    identity
        .split_once(':')
        .and_then(|(_, rest)| rest.strip_prefix("tenant="))
        .and_then(|rest| rest.split_once(':'))
        .map_or(DEFAULT_TENANT, |(tenant, _)| tenant)
}

/// `client` with `%` and `:` percent-escaped.
fn escape(client: &str) -> String {
    let mut out = String::with_capacity(client.len());
    for c in client.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_name_their_tenant() {
        assert_eq!(
            durable_identity("stdio", "default", "claude"),
            "stdio:claude"
        );
        assert_eq!(
            durable_identity("http", "team-a", "claude"),
            "http:tenant=team-a:claude"
        );
        assert_eq!(tenant_of_identity("stdio:claude"), "default");
        assert_eq!(tenant_of_identity("http:tenant=team-a:claude"), "team-a");
        assert_eq!(tenant_of_identity(""), "default");
        assert_eq!(tenant_of_identity("http:tenant=team-a"), "default");
    }

    #[test]
    fn no_client_name_reads_as_another_tenant() {
        let forged = durable_identity("http", "default", "tenant=team-a:claude");
        assert_ne!(forged, durable_identity("http", "team-a", "claude"));
        assert_eq!(tenant_of_identity(&forged), "default");
        let tenant_client = durable_identity("http", "team-a", "x:tenant=b:y");
        assert_eq!(tenant_of_identity(&tenant_client), "team-a");
        // Escaping keeps distinct names distinct.
        assert_ne!(
            durable_identity("http", "default", "a%3Ab"),
            durable_identity("http", "default", "a:b")
        );
    }
}
