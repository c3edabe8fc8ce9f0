//! `mcp.runtime.fetch`: an HTTP request the host makes for a sandbox, under the policy.
//!
//! WASI sandboxes have no sockets, so this is their only way out; container sandboxes may
//! use it too, and must for a secret (the proxy cannot rewrite a tunnel). The host's
//! client follows no redirects (the guest's `urllib` handler asks again for the new URL,
//! which is checked like the first), uses no proxy of the host's, resolves names through
//! [`CheckedResolver`] so it connects only to checked addresses, and verifies TLS against
//! the host's trust store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::EgressPolicy;
use super::address::AddressPolicy;
use super::allow::normalise_host;
use super::ledger::{Connection, Ledger, head_bytes};
use super::resolve::{FORBIDDEN_ADDRESS, resolve_checked};

/// The most a response body may hold; larger bodies are cut and flagged.
pub const MAX_BODY: usize = 32 << 20;
/// How long one request may take, all told.
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);

/// A request from the sandbox.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest {
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, possibly empty.
    pub body: Vec<u8>,
}

/// The answer, as the sandbox gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// The status code.
    pub status: u16,
    /// The status's reason phrase.
    pub reason: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
    /// True when the body was longer than [`MAX_BODY`] and was cut.
    pub truncated: bool,
}

/// Why a fetch was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The policy refuses it.
    #[error("{0}")]
    Refused(String),
    /// The request was made and failed.
    #[error("the request to {host} failed: {reason}")]
    Failed {
        /// The host.
        host: String,
        /// What happened, with causes.
        reason: String,
    },
}

/// Resolves names for the fetch client and keeps only addresses the policy allows.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    addresses: AddressPolicy,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let addresses = self.addresses.clone();
        Box::pin(async move {
            // The port is the client's to set; only the addresses matter here.
            let allowed = resolve_checked(name.as_str(), 0, &addresses).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Makes requests for sandboxes under one policy.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl Fetcher {
    /// A fetcher for `policy`.
    pub fn new(policy: Arc<EgressPolicy>) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .dns_resolver(Arc::new(CheckedResolver {
                addresses: policy.addresses.clone(),
            }))
            .build()
            .map_err(|e| FetchError::Invalid(format!("the HTTP client could not start: {e}")))?;
        Ok(Self { client, policy })
    }

    /// Makes `request` for a session whose network use `ledger` records.
    pub async fn fetch(
        &self,
        request: FetchRequest,
        ledger: &Arc<Ledger>,
    ) -> Result<FetchResponse, FetchError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| FetchError::Invalid(format!("`{}` is not a URL: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Invalid(format!(
                "only http:// and https:// URLs can be fetched, not {}:",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError::Invalid(
                "credentials in the URL are not sent; put them in a header".into(),
            ));
        }
        let host = url
            .host_str()
            .and_then(normalise_host)
            .ok_or_else(|| FetchError::Invalid(format!("`{}` names no host", request.url)))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let mut connection = Connection::asked("fetch", host.clone(), port);
        let refuse = |mut connection: Connection, why: String| {
            connection.reason = Some(why.clone());
            ledger.record(connection);
            FetchError::Refused(why)
        };
        if let Err(why) = self.policy.admits(&host, port) {
            return Err(refuse(connection, why));
        }
        if let Ok(address) = host.parse::<std::net::IpAddr>()
            && let Err(why) = self.policy.addresses.check(address)
        {
            let why = format!("{host} is {why}, which the sandbox may not reach");
            return Err(refuse(connection, why));
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| FetchError::Invalid(format!("`{}` is not a method", request.method)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FetchError::Invalid(format!("`{name}` is not a header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                FetchError::Invalid(format!(
                    "the value of header {name} holds characters a header cannot carry"
                ))
            })?;
            headers.append(name, value);
        }
        if let Err(why) = self.policy.secrets.replace_in(&mut headers, &host, port) {
            return Err(refuse(connection, why));
        }
        let slot = match ledger.open() {
            Ok(slot) => slot,
            Err(over) => return Err(refuse(connection, over.to_string())),
        };
        slot.count_up(
            request.body.len() as u64 + head_bytes(method.as_str(), &request.url, &headers),
        );
        let started = Instant::now();
        let sent = self
            .client
            .request(method, url)
            .headers(headers)
            .body(request.body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                let reason = self.policy.secrets.redact(&sandbox_core::error_chain(&e));
                connection.reason = Some(reason.clone());
                // The resolver refused every address: a refusal, not a failure.
                let refused = reason.contains(FORBIDDEN_ADDRESS);
                connection.allowed = !refused;
                ledger.record(slot.finish(connection));
                return Err(if refused {
                    FetchError::Refused(reason)
                } else {
                    FetchError::Failed { host, reason }
                });
            }
        };
        connection.allowed = true;
        connection.address = response.remote_addr().map(|a| a.to_string());
        let status = response.status();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        // A body the budget or the connection cut short is an error, never a short body:
        // only the size cap (MAX_BODY) gives a partial body, and says so (`truncated`).
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if !slot.count_down(chunk.len() as u64) {
                        let why = format!(
                            "the body was cut: {}",
                            super::ledger::OverBudget::Bytes(ledger.limits().bytes)
                        );
                        connection.reason = Some(why.clone());
                        ledger.record(slot.finish(connection));
                        return Err(FetchError::Refused(why));
                    }
                    let room = MAX_BODY - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if chunk.len() > room {
                        truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = format!(
                        "the body was cut: {}",
                        self.policy.secrets.redact(&sandbox_core::error_chain(&e))
                    );
                    connection.reason = Some(reason.clone());
                    ledger.record(slot.finish(connection));
                    return Err(FetchError::Failed { host, reason });
                }
            }
        }
        tracing::debug!(host, elapsed = ?started.elapsed(), "fetched");
        ledger.record(slot.finish(connection));
        Ok(FetchResponse {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
            headers,
            body,
            truncated,
        })
    }
}

/// The `fetch` rpc: `{url, method, headers: [[name, value], …], body: base64 | null}` in,
/// `{status, reason, headers, body: base64, truncated}` out. A refusal is `not_allowed`
/// with the reason; a failed request is `fetch_failed`.
pub async fn rpc(
    egress: &super::Egress,
    ledger: &Arc<Ledger>,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Value, sandbox_core::RpcError> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use sandbox_core::RpcError;
    use serde_json::{Value, json};

    let invalid = |why: &str| RpcError::new("invalid_params", why);
    let url = params
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`url` must be a string"))?;
    let method = match params.get("method") {
        None | Some(Value::Null) => "GET",
        Some(Value::String(method)) => method.as_str(),
        Some(_) => return Err(invalid("`method` must be a string")),
    };
    let headers = match params.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(name), Value::String(value)]) => {
                    Ok((name.clone(), value.clone()))
                }
                _ => Err(invalid("`headers` must be a list of [name, value] strings")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("`headers` must be a list of [name, value] strings")),
    };
    let body = match params.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(data)) => STANDARD
            .decode(data)
            .map_err(|_| invalid("`body` must be base64"))?,
        Some(_) => return Err(invalid("`body` must be base64 or null")),
    };
    let request = FetchRequest {
        url: url.to_string(),
        method: method.to_string(),
        headers,
        body,
    };
    match egress.fetcher().fetch(request, ledger).await {
        Ok(response) => Ok(json!({
            "status": response.status,
            "reason": response.reason,
            "headers": response.headers,
            "body": STANDARD.encode(&response.body),
            "truncated": response.truncated,
        })),
        Err(FetchError::Refused(why)) => Err(RpcError::new("not_allowed", why)),
        Err(FetchError::Invalid(why)) => Err(RpcError::new("invalid_params", why)),
        Err(e @ FetchError::Failed { .. }) => {
            Err(RpcError::new("fetch_failed", sandbox_core::error_chain(&e)))
        }
    }
}
