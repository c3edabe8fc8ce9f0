//! MCP over streamable HTTP: rmcp's `StreamableHttpService` mounted at [`ENDPOINT`] in axum.
//!
//! What it trusts and what it guarantees:
//! - **Who may call.** With a token ([`crate::settings::HTTP_TOKEN`]) every request must carry
//!   `Authorization: Bearer <token>`; the comparison takes the same time whatever the guess.
//!   A missing or wrong token gets `401` with `WWW-Authenticate: Bearer`. Without a token,
//!   only a loopback address may be served: [`HttpOptions::validate`] refuses any other,
//!   because whoever reaches the port could run code here.
//! - **DNS rebinding.** rmcp checks `Host` against an allow-list (loopback names by default)
//!   and `Origin` against another; both answer `403`. We give it the loopback origins (any
//!   port, http or https) plus `--allow-origin`, and switch its Origin check on (rmcp leaves
//!   it off for an empty list). A request without `Origin` (not from a browser) passes.
//! - **Isolation between clients.** Each MCP session gets its own [`Bridge`] (made by the
//!   factory given to [`serve`]), whose sandbox sessions are in a scope of their own; they
//!   are shut down when the MCP session ends (`DELETE`, or rmcp's idle expiry) and on shutdown.
//!   rmcp serves a request of the sessionless 2026-07-28 revision with a bridge of its own,
//!   dropped after the reply: such a client's calls share no state at all.
//! - **Health.** [`HEALTH`] answers without a token, and `503` from the moment shutdown
//!   begins, so a load balancer stops sending new clients before the process goes.
//! - **Shutdown.** When the shutdown future resolves, the listener stops accepting, rmcp's
//!   cancellation token ends every MCP session and stream, and in-flight connections get
//!   [`DRAIN_TIMEOUT`] to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::{Metrics, Refusal};
use crate::settings;
use crate::tenants::{Tenant, Tenants};

/// Path of the MCP endpoint.
pub const ENDPOINT: &str = "/mcp";

/// Path of the health endpoint, for load balancers and orchestrators: `200 ok` while
/// serving, `503` once shutdown has begun. It needs no token and says nothing else.
pub const HEALTH: &str = "/healthz";

/// Address served when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// How long in-flight connections may take to finish after shutdown is asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Origins always allowed: a page served from this machine.
const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// `Host` values always allowed (any port).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Settings of the HTTP transport.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    pub listen: Option<SocketAddr>,
    /// Bearer token every request must carry, if any (its bearer is the default tenant).
    pub token: Option<String>,
    /// Tenants whose tokens are also accepted, each request marked with its tenant.
    pub tenants: Option<Arc<Tenants>>,
    /// Browser origins accepted besides loopback ones (`scheme://host[:port|:*]` or `null`).
    pub allow_origins: Vec<String>,
    /// `Host` values accepted besides loopback names (`host` or `host:port`).
    pub allow_hosts: Vec<String>,
    /// Where requests refused for want of a known token are counted.
    pub metrics: Metrics,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tenants", &self.tenants)
            .field("allow_origins", &self.allow_origins)
            .field("allow_hosts", &self.allow_hosts)
            .field("metrics", &self.metrics.is_on())
            .finish()
    }
}

/// Why the HTTP transport could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without a token: anyone who reaches it could run code on \
         this machine. Set {var} or {file} (clients then send `Authorization: Bearer \
         <token>`), or listen on a loopback address such as 127.0.0.1",
        var = settings::HTTP_TOKEN.about().env,
        file = settings::HTTP_TOKENS_FILE.about().env
    )]
    PublicWithoutToken(SocketAddr),
    /// The token variable is set but empty.
    #[error("{var} is set but empty; unset it or give it a value", var = settings::HTTP_TOKEN.about().env)]
    EmptyToken,
    /// An `--allow-origin` value that is not an origin.
    #[error(
        "--allow-origin {0:?} is not an origin: use scheme://host[:port] (`:*` for any port) \
         or `null`"
    )]
    BadOrigin(String),
    /// Binding the listening socket failed.
    #[error("listening on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

impl HttpOptions {
    /// The address to listen on: `--listen`, else [`DEFAULT_LISTEN`].
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default address parses"))
    }

    /// Check the options before anything starts: a token is required off loopback, an empty
    /// token is a mistake, and each extra origin must be one.
    pub fn validate(&self) -> Result<(), HttpError> {
        if self.token.as_deref() == Some("") {
            return Err(HttpError::EmptyToken);
        }
        let addr = self.listen_addr();
        if !addr.ip().is_loopback() && self.token.is_none() && self.tenants.is_none() {
            return Err(HttpError::PublicWithoutToken(addr));
        }
        for origin in &self.allow_origins {
            if !is_origin(origin) {
                return Err(HttpError::BadOrigin(origin.clone()));
            }
        }
        Ok(())
    }

    /// rmcp's settings: Host and Origin allow-lists, and the token that ends every session.
    fn server_config(
        &self,
        bound: SocketAddr,
        cancel: CancellationToken,
    ) -> StreamableHttpServerConfig {
        let origins = LOOPBACK_ORIGINS
            .iter()
            .map(ToString::to_string)
            .chain(self.allow_origins.iter().cloned());
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(cancel)
            .with_allowed_origins(origins)
            .enforce_origin_validation();
        let ip = bound.ip();
        if ip.is_loopback() {
            return config.with_allowed_hosts(
                LOOPBACK_HOSTS
                    .iter()
                    .copied()
                    .chain(self.allow_hosts.iter().map(String::as_str)),
            );
        }
        // Off loopback a token is required (see `validate`), which already stops a rebound
        // page; the Host check then only narrows which names reach us.
        if ip.is_unspecified() && self.allow_hosts.is_empty() {
            warn!(
                "listening on all interfaces without --allow-host: any Host header is accepted \
                 (the token still guards every request)"
            );
            return config.disable_allowed_hosts();
        }
        let hosts = LOOPBACK_HOSTS
            .iter()
            .map(ToString::to_string)
            .chain((!ip.is_unspecified()).then(|| ip.to_string()))
            .chain(self.allow_hosts.iter().cloned());
        config.with_allowed_hosts(hosts)
    }
}

/// `scheme://host[:port|:*]` with an http(s) scheme, or `null`.
fn is_origin(value: &str) -> bool {
    if value == "null" {
        return true;
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.strip_suffix(":*").unwrap_or(rest);
    matches!(scheme, "http" | "https")
        && !authority.is_empty()
        && !authority.contains('/')
        && authority.parse::<http::uri::Authority>().is_ok()
}

/// The bearer token, kept as its digest so comparing takes the same time whatever is sent.
#[derive(Clone)]
struct Bearer(Arc<[u8; 32]>);

impl Bearer {
    fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `given` is this token.
    fn admits(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        digest.ct_eq(self.0.as_ref()).into()
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(header: Option<&HeaderValue>) -> Option<&str> {
    header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Who may call: the single token (the default tenant) and the tenants' tokens.
#[derive(Clone)]
struct Auth {
    bearer: Option<Bearer>,
    tenants: Option<Arc<Tenants>>,
    default: Arc<Tenant>,
    metrics: Metrics,
}

impl Auth {
    /// The tenant a request's `Authorization` header names, if any token matches. Both
    /// lists are always checked, so the time taken does not say which one matched.
    fn tenant(&self, header: Option<&HeaderValue>) -> Option<Arc<Tenant>> {
        let token = bearer_token(header)?;
        let by_file = self.tenants.as_ref().and_then(|t| t.admit(token));
        let by_token = self.bearer.as_ref().is_some_and(|b| b.admits(token));
        by_file.or_else(|| by_token.then(|| self.default.clone()))
    }
}

/// Lets a request through with its tenant in its extensions (where the bridge finds it,
/// through rmcp's `http::request::Parts`), or answers `401`.
async fn require_bearer(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    if let Some(tenant) = auth.tenant(request.headers().get(header::AUTHORIZATION)) {
        request.extensions_mut().insert(tenant);
        return next.run(request).await;
    }
    // Whose request it was is unknown: the refusal is counted under no tenant.
    auth.metrics.refused("", Refusal::Unauthorized);
    let challenge = if request.headers().contains_key(header::AUTHORIZATION) {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        "a bearer token is required\n",
    )
        .into_response()
}

/// `GET` [`HEALTH`]: whether this server still takes new work.
async fn health(State(cancel): State<CancellationToken>) -> Response {
    if cancel.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// The axum app: the MCP endpoint at [`ENDPOINT`], behind the token check when a token is
/// set, and [`HEALTH`] outside it. `bound` is the address actually listened on (it decides the Host allow-list);
/// cancelling `cancel` ends every MCP session. `make_server` is called for each new MCP
/// session (and by rmcp for short-lived lookups), so it must be cheap.
pub fn router<S, F>(
    options: &HttpOptions,
    bound: SocketAddr,
    make_server: F,
    cancel: CancellationToken,
) -> Router
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let service = StreamableHttpService::new(
        move || Ok(make_server()),
        Arc::new(LocalSessionManager::default()),
        options.server_config(bound, cancel.clone()),
    );
    let router = Router::new().route_service(ENDPOINT, service);
    let router = if options.token.is_some() || options.tenants.is_some() {
        let auth = Auth {
            bearer: options.token.as_deref().map(Bearer::new),
            tenants: options.tenants.clone(),
            default: Arc::new(Tenant::unlimited()),
            metrics: options.metrics.clone(),
        };
        router.layer(middleware::from_fn_with_state(auth, require_bearer))
    } else {
        router
    };
    router.merge(
        Router::new()
            .route(HEALTH, axum::routing::get(health))
            .with_state(cancel),
    )
}

/// Bind the listening socket (after [`HttpOptions::validate`]).
pub async fn bind(options: &HttpOptions) -> Result<TcpListener, HttpError> {
    options.validate()?;
    let addr = options.listen_addr();
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serve MCP on `listener` until `shutdown` resolves, then end every MCP session and let
/// in-flight connections finish (at most [`DRAIN_TIMEOUT`]). Logs
/// `listening on http://ADDR/mcp` once bound.
pub async fn serve<S, F>(
    listener: TcpListener,
    options: &HttpOptions,
    make_server: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> S + Send + Sync + 'static,
{
    let bound = listener.local_addr().map_err(HttpError::Serve)?;
    let cancel = CancellationToken::new();
    let app = router(options, bound, make_server, cancel.clone());
    info!(
        token = options.token.is_some(),
        "listening on http://{bound}{ENDPOINT}"
    );
    let stop = cancel.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        info!("shutting down: no new connections; ending MCP sessions");
        stop.cancel();
    });
    let drained = async {
        cancel.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result.map_err(HttpError::Serve),
        () = drained => {
            warn!("connections still open {DRAIN_TIMEOUT:?} after shutdown; closing them");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

    #[derive(Debug, Clone)]
    struct Nothing;
    impl ServerHandler for Nothing {}

    /// Serve `options` on a free port (loopback unless `options` says otherwise); the
    /// loopback address of the endpoint.
    async fn start(options: HttpOptions) -> (String, CancellationToken) {
        let options = HttpOptions {
            listen: Some(options.listen.unwrap_or("127.0.0.1:0".parse().unwrap())),
            ..options
        };
        let listener = bind(&options).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            serve(listener, &options, || Nothing, async move {
                stopped.cancelled().await;
            })
            .await
            .unwrap();
        });
        (format!("http://127.0.0.1:{port}{ENDPOINT}"), stop)
    }

    async fn initialize(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INIT);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    #[tokio::test]
    async fn token_is_required_and_checked() {
        let (url, stop) = start(HttpOptions {
            token: Some("s3cret".into()),
            ..HttpOptions::default()
        })
        .await;
        let missing = initialize(&url, &[]).await;
        assert_eq!(missing.status(), 401);
        assert_eq!(missing.headers()["www-authenticate"], "Bearer");
        let wrong = initialize(&url, &[("authorization", "Bearer nope")]).await;
        assert_eq!(wrong.status(), 401);
        assert!(
            wrong.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let basic = initialize(&url, &[("authorization", "Basic s3cret")]).await;
        assert_eq!(basic.status(), 401);
        let right = initialize(&url, &[("authorization", "Bearer s3cret")]).await;
        assert_eq!(right.status(), 200);
        assert!(right.headers().contains_key("mcp-session-id"));
        stop.cancel();
    }

    #[tokio::test]
    async fn health_needs_no_token_and_turns_unavailable_at_shutdown() {
        let options = HttpOptions {
            token: Some("s3cret".into()),
            ..HttpOptions::default()
        };
        let cancel = CancellationToken::new();
        let app = router(
            &options,
            "127.0.0.1:0".parse().unwrap(),
            || Nothing,
            cancel.clone(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{HEALTH}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let up = reqwest::get(&url).await.unwrap();
        assert_eq!(up.status(), 200);
        assert_eq!(up.text().await.unwrap(), "ok\n");
        cancel.cancel();
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 503);
    }

    #[tokio::test]
    async fn foreign_origins_and_hosts_are_refused() {
        let (url, stop) = start(HttpOptions {
            allow_origins: vec!["https://app.example:443".into()],
            ..HttpOptions::default()
        })
        .await;
        let none = initialize(&url, &[]).await;
        assert_eq!(none.status(), 200);
        for origin in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "http://[::1]:9",
            "https://app.example",
        ] {
            let ok = initialize(&url, &[("origin", origin)]).await;
            assert_eq!(ok.status(), 200, "{origin}");
        }
        for origin in [
            "http://evil.example",
            "https://app.example:8443",
            "http://localhost.evil.example",
        ] {
            let refused = initialize(&url, &[("origin", origin)]).await;
            assert_eq!(refused.status(), 403, "{origin}");
        }
        let rebound = initialize(&url, &[("host", "evil.example:8765")]).await;
        assert_eq!(rebound.status(), 403);
        stop.cancel();
    }

    #[tokio::test]
    async fn off_loopback_the_allowed_hosts_are_named() {
        let (url, stop) = start(HttpOptions {
            listen: Some("0.0.0.0:0".parse().unwrap()),
            token: Some("t".into()),
            allow_hosts: vec!["bridge.example".into()],
            ..HttpOptions::default()
        })
        .await;
        let auth = ("authorization", "Bearer t");
        let named = initialize(&url, &[auth, ("host", "bridge.example:1234")]).await;
        assert_eq!(named.status(), 200);
        let other = initialize(&url, &[auth, ("host", "evil.example")]).await;
        assert_eq!(other.status(), 403);
        stop.cancel();
    }

    #[test]
    fn public_addresses_need_a_token() {
        let public = HttpOptions {
            listen: Some("0.0.0.0:8765".parse().unwrap()),
            ..HttpOptions::default()
        };
        assert!(matches!(
            public.validate(),
            Err(HttpError::PublicWithoutToken(_))
        ));
        let with_token = HttpOptions {
            token: Some("t".into()),
            ..public.clone()
        };
        assert!(with_token.validate().is_ok());
        let empty = HttpOptions {
            token: Some(String::new()),
            ..HttpOptions::default()
        };
        assert!(matches!(empty.validate(), Err(HttpError::EmptyToken)));
        assert!(HttpOptions::default().validate().is_ok());
        assert!(
            HttpOptions {
                listen: Some("[::1]:0".parse().unwrap()),
                ..HttpOptions::default()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn allowed_origins_are_checked_at_start() {
        for good in [
            "https://a.example",
            "http://a.example:8080",
            "http://a:*",
            "null",
            "http://[::1]:3",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "a.example",
            "ftp://a.example",
            "https://",
            "https://a.example/path",
            "*",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_is_compared_whole() {
        let bearer = Bearer::new("abc");
        let value = |v: &'static str| HeaderValue::from_static(v);
        let admits =
            |v: &'static str| bearer_token(Some(&value(v))).is_some_and(|t| bearer.admits(t));
        assert!(admits("Bearer abc"));
        assert!(admits("bearer abc"));
        assert!(!admits("Bearer ab"));
        assert!(!admits("Bearer abcd"));
        assert!(!admits("abc"));
        assert!(bearer_token(None).is_none());
    }

    #[test]
    fn a_tenants_token_names_its_tenant_and_the_single_token_the_default() {
        let tenants = crate::tenants::parse_for_tests(
            r#"{"tenants": {"team-a": {"tokens": ["token-of-team-a-0123"]}}}"#,
        );
        let auth = Auth {
            bearer: Some(Bearer::new("the-single-token-0123")),
            tenants: Some(Arc::new(tenants)),
            default: Arc::new(Tenant::unlimited()),
            metrics: Metrics::off(),
        };
        let header = |v: &'static str| HeaderValue::from_static(v);
        let name = |v| auth.tenant(Some(&header(v))).map(|t| t.name().to_owned());
        assert_eq!(
            name("Bearer token-of-team-a-0123").as_deref(),
            Some("team-a")
        );
        assert_eq!(
            name("Bearer the-single-token-0123").as_deref(),
            Some("default")
        );
        assert_eq!(name("Bearer nobody-s-token-000000"), None);
    }
}
