//! The HTTP proxy a sandbox reaches the network through.
//!
//! One proxy per session, on a unix socket only that session's sandbox can reach. It takes
//! `CONNECT host:port` (the tunnel HTTPS clients ask for: the bytes are passed through and
//! counted, never read) and plain `http://` requests in absolute form (forwarded, hop-by-hop
//! headers dropped, `Host` set from the checked URL, placeholders of secrets bound to the host
//! replaced). Every request is checked against the allow list by the name it gives, then the
//! name is resolved here and each address checked ([`super::resolve`]). Refusals answer
//! `403` with the reason as the status line's phrase, so `urllib` and pip show it.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tracing::debug;

use super::EgressPolicy;
use super::allow::normalise_host;
use super::ledger::{Connection, Ledger, Slot, head_bytes};
use super::resolve::connect_checked;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// A session's proxy, serving until dropped.
#[derive(Debug)]
pub struct SessionProxy {
    task: JoinHandle<()>,
}

impl Drop for SessionProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SessionProxy {
    /// Serves `listener` for one session under `policy`, recording into `ledger`.
    pub fn serve(listener: UnixListener, policy: Arc<EgressPolicy>, ledger: Arc<Ledger>) -> Self {
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            debug!(error = %e, "egress proxy stops accepting");
                            break;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                };
                let policy = Arc::clone(&policy);
                let ledger = Arc::clone(&ledger);
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let policy = Arc::clone(&policy);
                        let ledger = Arc::clone(&ledger);
                        async move { Ok::<_, Infallible>(handle(request, &policy, &ledger).await) }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                    if let Err(e) = served {
                        debug!(error = %e, "egress proxy connection ended");
                    }
                });
            }
        });
        Self { task }
    }
}

/// What a request asks to reach.
struct Target {
    host: String,
    port: u16,
}

async fn handle(
    request: Request<Incoming>,
    policy: &EgressPolicy,
    ledger: &Arc<Ledger>,
) -> Response<ProxyBody> {
    let via = if request.method() == Method::CONNECT {
        "connect"
    } else {
        "http"
    };
    let target = match target_of(&request) {
        Ok(target) => target,
        Err(why) => return refusal(StatusCode::BAD_REQUEST, &why),
    };
    let record = |allowed: bool, reason: Option<String>| Connection {
        allowed,
        reason,
        ..Connection::asked(via, target.host.clone(), target.port)
    };
    if let Err(why) = policy.admits(&target.host, target.port) {
        ledger.record(record(false, Some(why.clone())));
        return refusal(StatusCode::FORBIDDEN, &why);
    }
    let slot = match ledger.open() {
        Ok(slot) => slot,
        Err(over) => {
            ledger.record(record(false, Some(over.to_string())));
            return refusal(StatusCode::TOO_MANY_REQUESTS, &over.to_string());
        }
    };
    let (stream, address) =
        match connect_checked(&target.host, target.port, &policy.addresses).await {
            Ok(connected) => connected,
            Err(e) => {
                let why = sandbox_core::error_chain(&e);
                ledger.record(slot.finish(record(false, Some(why.clone()))));
                return refusal(StatusCode::FORBIDDEN, &why);
            }
        };
    let mut connection = record(true, None);
    connection.address = Some(address.to_string());
    if via == "connect" {
        tunnel(request, stream, slot, connection, Arc::clone(ledger))
    } else {
        forward(request, stream, slot, connection, policy, ledger).await
    }
}

/// The host and port a proxy request names: the authority of a CONNECT, the URL of a plain
/// request in absolute form.
fn target_of(request: &Request<Incoming>) -> Result<Target, String> {
    let uri = request.uri();
    let default_port = if request.method() == Method::CONNECT {
        None
    } else {
        match uri.scheme_str() {
            Some("http") => Some(80),
            Some("https") => {
                return Err("send https:// through a CONNECT tunnel (HTTPS_PROXY)".into());
            }
            _ => return Err("this is a proxy: send an absolute http:// URL or CONNECT".into()),
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "the request names no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL's authority are not passed on".into());
    }
    let Some(port) = authority.port_u16().or(default_port) else {
        return Err("CONNECT needs host:port".into());
    };
    let host = normalise_host(authority.host())
        .ok_or_else(|| format!("`{}` is not a host name", authority.host()))?;
    Ok(Target { host, port })
}

/// Answers 200 and passes bytes both ways until either side closes or the budget ends.
fn tunnel(
    request: Request<Incoming>,
    stream: tokio::net::TcpStream,
    slot: Slot,
    connection: Connection,
    ledger: Arc<Ledger>,
) -> Response<ProxyBody> {
    tokio::spawn(async move {
        let mut connection = connection;
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let mut near = slot.near(TokioIo::new(upgraded));
                let mut far = slot.far(stream);
                if let Err(e) = tokio::io::copy_bidirectional(&mut near, &mut far).await {
                    connection.reason = Some(format!("ended: {e}"));
                }
            }
            Err(e) => connection.reason = Some(format!("the tunnel never opened: {e}")),
        }
        ledger.record(slot.finish(connection));
    });
    Response::new(empty())
}

/// Sends a plain HTTP request on to its host over `stream` and streams the answer back.
async fn forward(
    request: Request<Incoming>,
    stream: tokio::net::TcpStream,
    slot: Slot,
    mut connection: Connection,
    policy: &EgressPolicy,
    ledger: &Arc<Ledger>,
) -> Response<ProxyBody> {
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    strip_hop_by_hop(&mut parts.headers);
    let host = if connection.port == 80 {
        connection.host.clone()
    } else {
        format!("{}:{}", connection.host, connection.port)
    };
    if let Err(why) =
        policy
            .secrets
            .replace_in(&mut parts.headers, &connection.host, connection.port)
    {
        connection.allowed = false;
        connection.reason = Some(why.clone());
        ledger.record(slot.finish(connection));
        return refusal(StatusCode::FORBIDDEN, &why);
    }
    if let Ok(value) = HeaderValue::from_str(&host) {
        parts.headers.insert(header::HOST, value);
    }
    parts.uri = match path.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => return refusal(StatusCode::BAD_REQUEST, "the path is not a valid URI"),
    };
    let up = Arc::new(slot);
    up.count_up(head_bytes(parts.method.as_str(), &path, &parts.headers));
    let counting = Arc::clone(&up);
    let body = body
        .map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counting.count_up(data.len() as u64);
            }
            frame
        })
        .map_err(|e| Box::new(e) as BoxError)
        .boxed();
    let request = Request::from_parts(parts, body);
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(up.far(stream))).await;
    let (mut sender, driver) = match handshake {
        Ok(pair) => pair,
        Err(e) => {
            let why = format!("the connection failed: {e}");
            connection.reason = Some(why.clone());
            ledger.record(up.finish(connection));
            return refusal(StatusCode::BAD_GATEWAY, &why);
        }
    };
    let driving = tokio::spawn(driver);
    match sender.send_request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let ledger = Arc::clone(ledger);
            // The record is made when the answer's body has been passed on (or dropped).
            let done = RecordOnDrop {
                slot: Arc::clone(&up),
                connection: Some(connection),
                ledger,
                _driving: driving,
            };
            let body = body
                .map_frame(move |frame| {
                    let _ = &done;
                    frame
                })
                .map_err(|e| Box::new(e) as BoxError)
                .boxed();
            Response::from_parts(parts, body)
        }
        Err(e) => {
            let why = format!("the request failed: {e}");
            connection.reason = Some(why.clone());
            ledger.record(up.finish(connection));
            refusal(StatusCode::BAD_GATEWAY, &why)
        }
    }
}

/// Records a forwarded request's connection when its answer is done with.
struct RecordOnDrop {
    slot: Arc<Slot>,
    connection: Option<Connection>,
    ledger: Arc<Ledger>,
    _driving: JoinHandle<Result<(), hyper::Error>>,
}

impl Drop for RecordOnDrop {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.ledger.record(self.slot.finish(connection));
        }
    }
}

/// Drops the headers that describe one hop, not the request: `Connection` and what it
/// names, `Proxy-*`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// An answer the proxy makes itself: the reason in the status line (as `urllib` shows it
/// for a failed tunnel) and in the body.
fn refusal(status: StatusCode, why: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("{why}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let phrase: String = why
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::try_from(phrase).expect("printable ASCII"));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    // A refused client starts afresh: hyper closes the connection after this answer.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::address::AddressPolicy;
    use crate::egress::allow::AllowList;
    use crate::egress::ledger::Limits;
    use crate::egress::secrets::Secrets;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, UnixStream};

    /// A loopback HTTP server that answers with the Host and Authorization it got.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let header = |name| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|v: &HeaderValue| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let text = format!(
                            "host={} auth={} proxy-auth={}",
                            header(header::HOST),
                            header(header::AUTHORIZATION),
                            header(header::PROXY_AUTHORIZATION)
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        port
    }

    struct Fixture {
        socket: std::path::PathBuf,
        ledger: Arc<Ledger>,
        token: String,
        _proxy: SessionProxy,
        _dir: tempfile::TempDir,
    }

    fn proxy(allow: &str, private: &str, port: u16) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("egress.sock");
        let secrets = Secrets::parse(&format!("TOKEN@127.0.0.1:{port}"), |_| {
            Some("the-real-value".into())
        })
        .unwrap();
        let token = secrets.placeholders()[0].1.clone();
        let policy = Arc::new(EgressPolicy {
            allow: AllowList::parse(allow).unwrap(),
            addresses: AddressPolicy::parse(private).unwrap(),
            secrets,
            limits: Limits {
                bytes: 1 << 20,
                connections: 4,
            },
        });
        let ledger = Ledger::new(policy.limits);
        let listener = UnixListener::bind(&socket).unwrap();
        let proxy = SessionProxy::serve(listener, policy, Arc::clone(&ledger));
        Fixture {
            socket,
            ledger,
            token,
            _proxy: proxy,
            _dir: dir,
        }
    }

    async fn exchange(socket: &std::path::Path, request: &str) -> String {
        let mut stream = UnixStream::connect(socket).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn plain_requests_reach_allowed_hosts_with_secrets_swapped_in() {
        let port = echo_server().await;
        let f = proxy(&format!("127.0.0.1:{port}"), "127.0.0.1", port);
        let answer = exchange(
            &f.socket,
            &format!(
                "GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: elsewhere.example\r\n\
                 Authorization: Bearer {}\r\nProxy-Authorization: Basic eA==\r\n\
                 Connection: close\r\n\r\n",
                f.token
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains(&format!(
                "host=127.0.0.1:{port} auth=Bearer the-real-value proxy-auth=-"
            )),
            "{answer}"
        );
        let log = f.ledger.take(usize::MAX).connections;
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(
            log[0].allowed && log[0].via == "http" && log[0].bytes_down > 0,
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn tunnels_reach_allowed_hosts_and_nothing_else() {
        let port = echo_server().await;
        let f = proxy(&format!("127.0.0.1:{port}"), "127.0.0.1", port);
        let answer = exchange(
            &f.socket,
            &format!(
                "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n\
                 GET / HTTP/1.1\r\nHost: inside\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("host=inside"), "{answer}");
        for (request, why) in [
            (
                format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", port + 1),
                "not in MCP_BRIDGE_ALLOW_HOSTS",
            ),
            (
                "CONNECT evil.example:443 HTTP/1.1\r\n\r\n".to_string(),
                "not in MCP_BRIDGE_ALLOW_HOSTS",
            ),
            (
                "CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n".to_string(),
                "not in",
            ),
            (
                "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_string(),
                "not in",
            ),
            (
                "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
                "this is a proxy",
            ),
        ] {
            let answer = exchange(&f.socket, &request).await;
            assert!(answer.starts_with("HTTP/1.1 4"), "{request}: {answer}");
            assert!(answer.contains(why), "{request}: {answer}");
        }
    }

    #[tokio::test]
    async fn allowed_names_of_internal_addresses_reach_nothing() {
        let port = echo_server().await;
        // `localhost` is on the list, but its addresses are loopback and not opted in.
        let f = proxy(&format!("localhost:{port}"), "", port);
        let answer = exchange(
            &f.socket,
            &format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("loopback"), "{answer}");
        let log = f.ledger.take(usize::MAX).connections;
        assert!(!log[0].allowed && log[0].reason.as_deref().unwrap().contains("loopback"));
    }

    #[tokio::test]
    async fn secrets_sent_to_other_hosts_are_refused() {
        let port = echo_server().await;
        let f = proxy(
            &format!("127.0.0.1:{port},localhost:{port}"),
            "127.0.0.1,::1",
            port,
        );
        let answer = exchange(
            &f.socket,
            &format!(
                "GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost\r\nX-Key: {}\r\n\r\n",
                f.token
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(
            answer.contains("secret TOKEN") && !answer.contains("the-real-value"),
            "{answer}"
        );
    }
}
