//! Benchmarks of what the guards around a sandbox's way out add to each request, in a
//! release build. Run with `cargo bench --bench egress`.
//!
//! - `egress`: one `GET` round trip to a small keep-alive HTTP/1.1 server on 127.0.0.1,
//!   directly over TCP and through the session's egress proxy (its unix socket, the allow
//!   list, the address check, the ledger): a plain absolute-form request on a fresh proxy
//!   connection and on a kept-alive one, and a `CONNECT` tunnel opened for each request or
//!   opened once and reused. The target is at most 0.3 ms added to a request's median.
//! - `tool_policy`: the decision for an allowed proxied tool call with a policy of ten
//!   servers' rules (globs among them) and a policy file, against no policy at all. The
//!   target is at most 0.05 ms added per call.

use std::convert::Infallible;
use std::future::Future as _;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_main};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mcp_server_code_execution_mode::egress::EgressPolicy;
use mcp_server_code_execution_mode::egress::address::AddressPolicy;
use mcp_server_code_execution_mode::egress::allow::AllowList;
use mcp_server_code_execution_mode::egress::ledger::{Ledger, Limits};
use mcp_server_code_execution_mode::egress::proxy::SessionProxy;
use mcp_server_code_execution_mode::egress::secrets::Secrets;
use mcp_server_code_execution_mode::policy::{Policy, PolicyFile, PolicySettings, Rules};
use mcp_server_code_execution_mode::proxy::guard::{self, Caller};
use mcp_server_code_execution_mode::proxy::upstream::Upstreams;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::runtime::Runtime;

/// What the origin server answers every request with.
const BODY: &[u8] = br#"{"ok":true,"items":[1,2,3]}"#;

/// Starts a keep-alive HTTP/1.1 server on 127.0.0.1 that answers every request `200` with
/// [`BODY`], and returns its port.
async fn origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

/// An HTTP/1.1 client connection over `io`, its driver running as a task (which ends when
/// the sender is dropped).
async fn client<T>(io: T) -> SendRequest<Empty<Bytes>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("a client connection");
    tokio::spawn(connection.with_upgrades());
    sender
}

/// A `GET` of the origin's `/`, in origin form (`/`) or, for the proxy, absolute form
/// (`http://127.0.0.1:port/`).
fn get(port: u16, absolute: bool) -> Request<Empty<Bytes>> {
    let authority = format!("127.0.0.1:{port}");
    let uri = if absolute {
        format!("http://{authority}/")
    } else {
        "/".to_string()
    };
    Request::get(uri)
        .header(header::HOST, authority)
        .body(Empty::new())
        .expect("a valid request")
}

/// Sends `request` once the connection is ready for it (a kept-alive one is after the
/// previous answer) and reads the whole answer, checking it is the origin's.
async fn round_trip(sender: &mut SendRequest<Empty<Bytes>>, request: Request<Empty<Bytes>>) {
    sender.ready().await.expect("the connection stays open");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    assert_eq!(&body[..], BODY);
}

/// A connection to the proxy at `socket`, tunnelled with `CONNECT` to the origin, with an
/// HTTP/1.1 client over the tunnel.
async fn tunnel(socket: &Path, port: u16) -> SendRequest<Empty<Bytes>> {
    let stream = UnixStream::connect(socket).await.expect("the proxy");
    let mut proxy = client(TokioIo::new(stream)).await;
    let authority = format!("127.0.0.1:{port}");
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri(authority.as_str())
        .header(header::HOST, authority.as_str())
        .body(Empty::new())
        .expect("a valid CONNECT");
    let response = proxy.send_request(connect).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK, "{response:?}");
    let upgraded = hyper::upgrade::on(response).await.expect("the tunnel");
    client(upgraded).await
}

/// A session's proxy under a policy that allows the origin and opts 127.0.0.1 in, with
/// caps the bench never reaches. Holds the socket's directory.
struct Proxied {
    socket: std::path::PathBuf,
    _proxy: SessionProxy,
    _dir: tempfile::TempDir,
}

/// Starts the proxy for the origin at `port` (inside the runtime).
fn proxied(port: u16) -> Proxied {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("egress.sock");
    let policy = Arc::new(EgressPolicy {
        allow: AllowList::parse(&format!("127.0.0.1:{port}")).expect("a valid allow list"),
        addresses: AddressPolicy::parse("127.0.0.1").expect("a valid opt-in"),
        secrets: Secrets::default(),
        limits: Limits {
            bytes: 1 << 50,
            connections: 1 << 16,
        },
    });
    let ledger = Ledger::new(policy.limits);
    let listener = UnixListener::bind(&socket).expect("the proxy's socket");
    Proxied {
        socket,
        _proxy: SessionProxy::serve(listener, policy, ledger),
        _dir: dir,
    }
}

/// Times `iters` runs of `one` inside `runtime`, as a client on the runtime's thread pool
/// would see them.
fn timed(runtime: &Runtime, iters: u64, mut one: impl AsyncFnMut()) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..iters {
            one().await;
        }
        started.elapsed()
    })
}

/// One request's round trip, direct and through the proxy (group `egress`).
fn egress(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let port = runtime.block_on(origin());
    let proxy = {
        let _inside = runtime.enter();
        proxied(port)
    };
    let socket = proxy.socket.as_path();
    let direct_connection = || async move {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the origin");
        client(TokioIo::new(stream)).await
    };
    let proxy_connection = || async move {
        let stream = UnixStream::connect(socket).await.expect("the proxy");
        client(TokioIo::new(stream)).await
    };

    let mut group = c.benchmark_group("egress");
    group.bench_function("direct_fresh_connection", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, async || {
                let mut sender = direct_connection().await;
                round_trip(&mut sender, get(port, false)).await;
            })
        });
    });
    group.bench_function("direct_keep_alive", |b| {
        let mut sender = runtime.block_on(direct_connection());
        b.iter_custom(|iters| {
            timed(&runtime, iters, async || {
                round_trip(&mut sender, get(port, false)).await;
            })
        });
    });
    group.bench_function("proxy_http_fresh_connection", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, async || {
                let mut sender = proxy_connection().await;
                round_trip(&mut sender, get(port, true)).await;
            })
        });
    });
    group.bench_function("proxy_http_keep_alive", |b| {
        let mut sender = runtime.block_on(proxy_connection());
        b.iter_custom(|iters| {
            timed(&runtime, iters, async || {
                round_trip(&mut sender, get(port, true)).await;
            })
        });
    });
    group.bench_function("proxy_connect_per_request", |b| {
        b.iter_custom(|iters| {
            timed(&runtime, iters, async || {
                let mut sender = tunnel(socket, port).await;
                round_trip(&mut sender, get(port, false)).await;
            })
        });
    });
    group.bench_function("proxy_connect_reused", |b| {
        let mut sender = runtime.block_on(tunnel(socket, port));
        b.iter_custom(|iters| {
            timed(&runtime, iters, async || {
                round_trip(&mut sender, get(port, false)).await;
            })
        });
    });
    group.finish();
}

/// The rules of each of the ten configured servers: a default and a handful of names and
/// patterns, none of which names the benchmarked tool.
fn server_rules() -> Value {
    json!({"default": "allow", "tools": {
        "delete_*": "ask", "write_*": "ask", "*_admin*": "deny", "move_?ile": "deny",
        "create_issue": "allow", "drop_table": "deny"}})
}

/// The policy file: rules for every server (`*`) and one server of its own.
const POLICY_FILE: &str = r#"{"*": {"tools": {"exec*": "deny", "*secret*": "deny",
    "shell": "deny"}}, "server-3": "ask"}"#;

/// Runs the guard as a proxied call does: one check of the policy, and the decision when
/// there is one. An allowed call never waits, so the decision is polled once.
fn allowed(
    policy: &Policy,
    upstreams: &Upstreams,
    caller: &Caller,
    arguments: &Map<String, Value>,
) -> bool {
    if !policy.is_active() {
        return true;
    }
    let approval = pin!(guard::approve(
        policy,
        upstreams,
        caller,
        "server-7",
        black_box("read_file"),
        arguments,
    ));
    match approval.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(approval) => approval.is_ok(),
        Poll::Pending => panic!("an allowed call waited"),
    }
}

/// The guard's decision for an allowed tool call, with and without a policy (group
/// `tool_policy`).
fn tool_policy(c: &mut Criterion) {
    let servers: Vec<(String, Rules)> = (0..10)
        .map(|i| {
            let rules = Rules::parse(&server_rules(), "bench").expect("valid rules");
            (format!("server-{i}"), rules)
        })
        .collect();
    let entries = Path::new("/bench/servers.json");
    let settings = PolicySettings {
        file: Some(
            PolicyFile::parse(Path::new("/bench/policy.json"), POLICY_FILE)
                .expect("a valid policy file"),
        ),
        ..PolicySettings::default()
    };
    let on = Policy::new(
        servers
            .iter()
            .map(|(name, r)| (name.as_str(), Some(r), entries)),
        &settings,
    );
    let off = Policy::new(
        servers
            .iter()
            .map(|(name, _)| (name.as_str(), None, entries)),
        &PolicySettings::default(),
    );
    assert!(on.is_active() && !off.is_active());
    let cache = tempfile::tempdir().expect("a temporary directory");
    let upstreams = Upstreams::new(
        Vec::new(),
        cache.path().to_path_buf(),
        Duration::from_secs(30),
    );
    let caller = Caller::nobody();
    let arguments = json!({"path": "/workspace/notes.md", "limit": 100});
    let arguments = arguments.as_object().expect("an object");
    assert!(allowed(&on, &upstreams, &caller, arguments));

    let mut group = c.benchmark_group("tool_policy");
    group.bench_function("allowed_call_no_policy", |b| {
        b.iter(|| allowed(black_box(&off), &upstreams, &caller, arguments));
    });
    group.bench_function("allowed_call_10_servers_rules", |b| {
        b.iter(|| allowed(black_box(&on), &upstreams, &caller, arguments));
    });
    group.finish();
}

mod group {
    #![allow(
        missing_docs,
        reason = "criterion's macros generate undocumented functions"
    )]
    use super::{egress, tool_policy};
    criterion::criterion_group!(benches, egress, tool_policy);
}

criterion_main!(group::benches);
