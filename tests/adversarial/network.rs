//! Network egress and ingress: the sandbox has no network of its own (a network namespace
//! with only loopback, or no sockets at all on WASI). Where the test can, it listens on the
//! host and checks nothing arrived, whatever the guest believed.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixListener};

use anyhow::{Result, ensure};

use crate::attack::{blocked, blocked_on, bridge, run, with_vars};
use crate::host::{TcpTrap, UdpTrap, host_address, host_addresses, unique_token};
use crate::support::TestBackend;

/// Python list literal of the host's addresses.
fn py_addresses() -> String {
    let all: Vec<String> = host_addresses().iter().map(ToString::to_string).collect();
    serde_json::to_string(&all).expect("strings serialise")
}

async fn tcp_to_host(b: &TestBackend, hosts: &str) -> Result<()> {
    let trap = TcpTrap::open()?;
    let code = with_vars(
        &[
            ("HOSTS", hosts.to_string()),
            ("PORT", trap.port()?.to_string()),
        ],
        r"
import socket
for host in HOSTS:
    attempt(f'tcp {host}', lambda: socket.create_connection((host, PORT), timeout=2).getpeername())
",
    );
    blocked(b, &code).await?;
    trap.untouched()
}

pub(crate) async fn attack_tcp_to_host_loopback(b: &TestBackend) -> Result<()> {
    tcp_to_host(b, "['127.0.0.1', 'localhost', '::1', '0.0.0.0']").await
}

pub(crate) async fn attack_tcp_to_host_address(b: &TestBackend) -> Result<()> {
    // The host's outward address, the names engines give the host, the usual gateway and
    // slirp addresses.
    let mut hosts: Vec<String> = host_address().iter().map(ToString::to_string).collect();
    hosts.extend(
        [
            "host.containers.internal",
            "host.docker.internal",
            "10.0.2.2",
            "172.17.0.1",
            "10.88.0.1",
        ]
        .map(String::from),
    );
    tcp_to_host(b, &serde_json::to_string(&hosts)?).await
}

pub(crate) async fn attack_dns_resolution(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        r"
import socket
for name in ('example.com', 'example.org.', 'localhost.example'):
    attempt('getaddrinfo ' + name, lambda: socket.getaddrinfo(name, 443))
def raw_query(server):
    query = b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01'
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(query, (server, 53))
    return s.recvfrom(512)
servers = ['8.8.8.8', '1.1.1.1']
try:
    servers += [l.split()[1] for l in open('/etc/resolv.conf') if l.startswith('nameserver')]
except OSError:
    pass
for server in servers:
    attempt('raw query to ' + server, raw_query, server)
",
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_udp_to_host(b: &TestBackend) -> Result<()> {
    let trap = UdpTrap::open()?;
    let code = with_vars(
        &[
            ("HOSTS", py_addresses()),
            ("PORT", trap.port()?.to_string()),
        ],
        r"
import socket
def send(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = s.sendto(b'escaped', (host, PORT))
    if host.startswith('127.'):
        # Loopback is the sandbox's own: the datagram goes nowhere (the host's trap says).
        raise ConnectionRefusedError(f'sent {sent} bytes into the sandbox loopback')
    return sent
for host in HOSTS:
    attempt('udp ' + host, send, host)
",
    );
    blocked(b, &code).await?;
    // Give a datagram that did leave time to arrive.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    trap.untouched()
}

pub(crate) async fn attack_raw_sockets(b: &TestBackend) -> Result<()> {
    let outward = [host_address().map_or_else(|| "10.0.2.2".to_string(), |ip| ip.to_string())];
    let code = with_vars(
        &[("HOSTS", serde_json::to_string(&outward)?)],
        r"
import socket
AF_PACKET = getattr(socket, 'AF_PACKET', 17)
attempt('AF_PACKET raw', lambda: socket.socket(AF_PACKET, socket.SOCK_RAW, 0x0300))
attempt('AF_PACKET dgram', lambda: socket.socket(AF_PACKET, socket.SOCK_DGRAM, 0x0300))
attempt('raw icmp', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))
attempt('raw ip', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 255))
attempt('raw ipv6', lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58))
def ping(host):
    # Unprivileged ICMP sockets may exist (docker allows them); pinging the host may not.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 1)
    s.settimeout(2)
    s.sendto(b'\x08\x00\xf7\xff\x00\x00\x00\x00', (host, 0))
    return s.recvfrom(64)
for host in HOSTS:
    attempt('ping ' + host, ping, host)
",
    );
    blocked(b, &code).await?;
    Ok(())
}

/// Attack code connecting a unix socket to each of `paths` (Python expression of a list).
fn unix_connects(paths: &str) -> String {
    with_vars(
        &[("PATHS", paths.to_string())],
        r"
import socket
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(path)
    return s.getpeername()
for path in PATHS:
    attempt('connect ' + repr(path), connect, path)
",
    )
}

pub(crate) async fn attack_container_engine_sockets(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        &unix_connects(
            "['/run/podman/podman.sock', '/var/run/docker.sock', '/run/docker.sock', \
             '/run/containerd/containerd.sock', '/run/user/0/podman/podman.sock', \
             '/var/run/dbus/system_bus_socket', '/proc/1/root/var/run/docker.sock']",
        ),
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_bridge_channel_sockets(b: &TestBackend) -> Result<()> {
    // The session's own channel sockets are removed once connected; other sessions' and
    // the host's socket directories are not in the sandbox's view at all.
    blocked(
        b,
        &unix_connects(
            "['/run/mcp/io.sock', '/run/mcp/err.sock'] + __import__('glob').glob('/tmp/mcp-*/**/*.sock', \
             recursive=True) + __import__('glob').glob('/run/mcp/*')",
        ),
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_abstract_unix_socket(b: &TestBackend) -> Result<()> {
    // Abstract sockets belong to a network namespace: the host's are out of reach.
    let name = unique_token("abstract");
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
    listener.set_nonblocking(true)?;
    let reply = blocked(
        b,
        &unix_connects(&format!("['\\0{name}', '\\0/tmp/.X11-unix/X0', '\\0dbus']")),
    )
    .await?;
    match listener.accept() {
        Ok(_) => anyhow::bail!("the sandbox reached a host abstract socket: {}", reply.text),
        Err(e) => ensure!(e.kind() == std::io::ErrorKind::WouldBlock, "{e}"),
    }
    Ok(())
}

pub(crate) async fn attack_listen_for_inbound(b: &TestBackend) -> Result<()> {
    // A server in the sandbox is reachable from nowhere on the host.
    let bridge = bridge(b, &[]).await?;
    let reply = run(
        &bridge,
        r"
import socket
def listen():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('0.0.0.0', 0))
    s.listen(8)
    s.setblocking(False)
    return s
server = None
try:
    server = listen()
    print('listening', server.getsockname()[1])
except OSError as e:
    print('blocked listen |', e)
",
    )
    .await?;
    let port = reply
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("listening "))
        .map(str::parse::<u16>)
        .transpose()?;
    if let Some(port) = port {
        for ip in host_addresses() {
            let reached = std::net::TcpStream::connect_timeout(
                &(ip, port).into(),
                std::time::Duration::from_secs(1),
            );
            ensure!(
                reached.is_err(),
                "the host reached the sandbox's server at {ip}:{port}"
            );
        }
        blocked_on(
            &bridge,
            "attempt('anything arrived', lambda: server.accept())",
        )
        .await?;
    } else {
        ensure!(
            reply.stdout().starts_with("blocked listen"),
            "{}",
            reply.text
        );
        bridge.alive().await?;
    }
    Ok(())
}

pub(crate) async fn attack_egress_to_host_services(b: &TestBackend) -> Result<()> {
    // The allow list even names the host's own addresses and the metadata service; without
    // MCP_BRIDGE_ALLOW_PRIVATE the bridge still refuses every one of them, however it is
    // spelled, through the proxy (containers) and through `fetch` (every backend).
    let trap = TcpTrap::open()?;
    let port = trap.port()?;
    let outward = host_address().map_or_else(|| "127.0.0.2".to_string(), |ip| ip.to_string());
    let hosts = format!(
        "127.0.0.1:{port},localhost:{port},{outward}:{port},[::1]:{port},2130706433:{port},\
         127.1:{port},0x7f000001:{port},169.254.169.254,metadata.google.internal,localhost.:{port}"
    );
    let bridge = bridge(b, &[("MCP_BRIDGE_ALLOW_HOSTS", &hosts)]).await?;
    let code = with_vars(
        &[
            ("PORT", port.to_string()),
            ("OUTWARD", serde_json::to_string(&outward)?),
        ],
        r"
import socket, mcp.runtime
def ask(request):
    with socket.create_connection(('127.0.0.1', 3128), timeout=3) as s:
        s.sendall(request)
        status = s.recv(4096).split(b'\r\n', 1)[0]
    if b' 2' in status[:13] or b' 3' in status[:13]:
        return status
    raise OSError(status.decode(errors='replace'))
targets = [f'127.0.0.1:{PORT}', f'localhost:{PORT}', f'[::1]:{PORT}', f'0.0.0.0:{PORT}',
           f'2130706433:{PORT}', f'127.1:{PORT}', f'0x7f000001:{PORT}', f'localhost.:{PORT}',
           f'[::ffff:127.0.0.1]:{PORT}', f'[::ffff:7f00:1]:{PORT}', f'{OUTWARD}:{PORT}',
           '169.254.169.254:80', '[fd00:ec2::254]:80', 'metadata.google.internal:80']
for target in targets:
    attempt('connect ' + target, ask, f'CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n'.encode())
    attempt('get ' + target, ask, f'GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n'.encode())
    attempt('fetch ' + target, mcp.runtime.fetch_sync, f'http://{target}/')
# The target is the request's URL, never its Host header; one message, read one way.
attempt('origin form', ask, f'GET / HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\r\n'.encode())
attempt('smuggled', ask, (f'GET http://127.0.0.1:{PORT}/ HTTP/1.1\r\nHost: x\r\n'
                          'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n').encode())
attempt('userinfo', ask, f'CONNECT user@127.0.0.1:{PORT} HTTP/1.1\r\n\r\n'.encode())
",
    );
    blocked_on(&bridge, &code).await?;
    trap.untouched()
}

pub(crate) async fn attack_header_injection_around_a_placeholder(b: &TestBackend) -> Result<()> {
    // A secret bound to an allowed host (a listener on the host, opted in): code tries to
    // smuggle extra header lines, or the placeholder's value, through names and values with
    // line breaks, by `fetch`, `urllib` and raw requests to the proxy. Every one is refused
    // before a connection is made, so the listener sees nothing.
    let trap = TcpTrap::open()?;
    let port = trap.port()?;
    let hosts = format!("127.0.0.1:{port}");
    let secrets = format!("TRAP_TOKEN@127.0.0.1:{port}");
    let bridge = bridge(
        b,
        &[
            ("MCP_BRIDGE_ALLOW_HOSTS", &hosts),
            ("MCP_BRIDGE_ALLOW_PRIVATE", "127.0.0.1"),
            ("MCP_BRIDGE_SECRETS", &secrets),
            ("TRAP_TOKEN", "trap-secret-value-91ab"),
        ],
    )
    .await?;
    let code = with_vars(
        &[("PORT", port.to_string())],
        r"
import os, socket, urllib.request, mcp.runtime
token = os.environ['TRAP_TOKEN']
url = f'http://127.0.0.1:{PORT}/'
for label, headers in (
    ('value CRLF', {'Authorization': token + '\r\nX-Injected: 1'}),
    ('value LF', {'Authorization': token + '\nX-Injected: 1'}),
    ('value CR', {'Authorization': token + '\rX-Injected: 1'}),
    ('value NUL', {'Authorization': token + '\x00'}),
    ('name CRLF', {'X-A\r\nAuthorization': token}),
    ('name colon', {'X-A: ' + token: 'x'}),
):
    attempt('fetch ' + label, mcp.runtime.fetch_sync, url, 'GET', headers)
    attempt('urllib ' + label, lambda h=headers: urllib.request.urlopen(urllib.request.Request(url, headers=h), timeout=3).status)
def raw(request):
    with socket.create_connection(('127.0.0.1', 3128), timeout=3) as s:
        s.sendall(request)
        status = s.recv(4096).split(b'\r\n', 1)[0]
    if b' 2' in status[:13]:
        return status
    raise OSError(status.decode(errors='replace'))
# (A bare LF is a line end to the proxy's parser: the request is then two ordinary
# headers, sent on with CRLF, and no value carries a line break; not an injection.)
for label, extra in (('bare CR', '\r'), ('obs-fold', '\r\n ')):
    request = (f'GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}{extra}X-Injected: 1\r\n\r\n')
    attempt('proxy ' + label, raw, request.encode())
",
    );
    blocked_on(&bridge, &code).await?;
    trap.untouched()
}
