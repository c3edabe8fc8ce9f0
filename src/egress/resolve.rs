//! Names to addresses, on the host, checked before any connection.
//!
//! The proxy never hands a name to a connect call: it resolves the name itself, drops every
//! address [`AddressPolicy`] refuses, and connects to what is left. A name rebound between
//! two lookups to `127.0.0.1` therefore reaches nothing, since the address connected to is
//! the one just checked.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::address::{AddressPolicy, Forbidden};

/// What a refused address's message ends with: how `fetch` tells a refusal from a failure
/// in its HTTP client's error.
pub const FORBIDDEN_ADDRESS: &str = "which the sandbox may not reach";
/// How long a name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The name did not resolve.
    #[error("{host} did not resolve")]
    Lookup {
        /// The name.
        host: String,
        /// What the resolver said.
        #[source]
        source: std::io::Error,
    },
    /// The lookup took too long.
    #[error("looking up {host} took longer than {LOOKUP_TIMEOUT:?}")]
    LookupTimedOut {
        /// The name.
        host: String,
    },
    /// Every address the name has is refused.
    #[error("{host} is {why} ({address}), {FORBIDDEN_ADDRESS}")]
    Forbidden {
        /// The name or literal the request gave.
        host: String,
        /// The first refused address.
        address: IpAddr,
        /// Why it is refused.
        why: Forbidden,
    },
    /// Every allowed address refused or timed out.
    #[error("could not connect to {host}:{port}")]
    Connect {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The last attempt's error.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves `host` (a normalised name or address literal) to the addresses at `port` that
/// the policy allows, in the resolver's order. When it has none, the first refused one says
/// why.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    policy: &AddressPolicy,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let addresses: Vec<SocketAddr> = if let Ok(address) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(address, port)]
    } else {
        let lookup = tokio::net::lookup_host((host, port));
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(source)) => {
                return Err(ConnectError::Lookup {
                    host: host.into(),
                    source,
                });
            }
            Err(_) => return Err(ConnectError::LookupTimedOut { host: host.into() }),
        }
    };
    let mut refused = None;
    let allowed: Vec<SocketAddr> = addresses
        .into_iter()
        .filter(|address| match policy.check(address.ip()) {
            Ok(()) => true,
            Err(why) => {
                refused.get_or_insert((address.ip(), why));
                false
            }
        })
        .collect();
    match refused {
        Some((address, why)) if allowed.is_empty() => Err(ConnectError::Forbidden {
            host: host.into(),
            address,
            why,
        }),
        None if allowed.is_empty() => Err(ConnectError::Lookup {
            host: host.into(),
            source: std::io::ErrorKind::NotFound.into(),
        }),
        _ => Ok(allowed),
    }
}

/// Connects to the first address of `host` the policy allows ([`resolve_checked`]).
/// Returns the stream and the address it reached.
pub async fn connect_checked(
    host: &str,
    port: u16,
    policy: &AddressPolicy,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let mut last_error = std::io::Error::from(std::io::ErrorKind::NotFound);
    for address in resolve_checked(host, port, policy).await? {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, address));
            }
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = std::io::ErrorKind::TimedOut.into(),
        }
    }
    Err(ConnectError::Connect {
        host: host.into(),
        port,
        source: last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_is_refused_unless_opted_in() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = AddressPolicy::default();
        for host in ["127.0.0.1", "localhost"] {
            let error = connect_checked(host, port, &closed).await.unwrap_err();
            assert!(
                matches!(
                    error,
                    ConnectError::Forbidden {
                        why: Forbidden::Loopback,
                        ..
                    }
                ),
                "{host}: {error}"
            );
        }
        let open = AddressPolicy::parse("127.0.0.1").unwrap();
        let (_, reached) = connect_checked("localhost", port, &open).await.unwrap();
        assert_eq!(reached, SocketAddr::from(([127, 0, 0, 1], port)));
    }
}
