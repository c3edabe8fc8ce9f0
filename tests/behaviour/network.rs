//! The controlled way out: `mcp.runtime.fetch` and `urllib` reach the allowed hosts only,
//! through the host, with secrets the code never sees. A real HTTPS server of the test's
//! own, on loopback, opted in with `MCP_BRIDGE_ALLOW_PRIVATE`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::support::{TestBackend, TestBridge, suite_state_dir};

/// The value of the test's secret: it must reach the server and nothing else.
const SECRET: &str = "real-secret-value-5f1c9a";

/// An HTTPS server on 127.0.0.1 with a certificate for `localhost` and `127.0.0.1`, made
/// for this test; it logs what it receives to `log`.
struct EchoServer {
    child: Child,
    port: u16,
    /// The plain HTTP twin's port.
    plain: u16,
    /// The certificate authority the bridge must trust (its `SSL_CERT_FILE`).
    cert: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EchoServer {
    fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("mcp-echo-").tempdir()?;
        // Readable by a bridge running as another user (the rootless variants).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        // A certificate authority of the test's own, and a server certificate it signs
        // (webpki refuses a self-signed certificate used as the server's own).
        let ca = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca.key");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let csr = dir.path().join("server.csr");
        let extensions = dir.path().join("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        let openssl = |args: &[&std::ffi::OsStr]| -> Result<()> {
            let status = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running openssl to make the test server's certificate")?;
            ensure!(status.success(), "openssl {args:?} failed");
            Ok(())
        };
        let os = |s: &str| std::ffi::OsString::from(s);
        openssl(&[
            &os("req"),
            &os("-x509"),
            &os("-newkey"),
            &os("rsa:2048"),
            &os("-nodes"),
            &os("-days"),
            &os("1"),
            &os("-subj"),
            &os("/CN=mcp test ca"),
            &os("-keyout"),
            ca_key.as_os_str(),
            &os("-out"),
            ca.as_os_str(),
        ])?;
        openssl(&[
            &os("req"),
            &os("-newkey"),
            &os("rsa:2048"),
            &os("-nodes"),
            &os("-subj"),
            &os("/CN=localhost"),
            &os("-keyout"),
            key.as_os_str(),
            &os("-out"),
            csr.as_os_str(),
        ])?;
        openssl(&[
            &os("x509"),
            &os("-req"),
            &os("-in"),
            csr.as_os_str(),
            &os("-CA"),
            ca.as_os_str(),
            &os("-CAkey"),
            ca_key.as_os_str(),
            &os("-CAcreateserial"),
            &os("-days"),
            &os("1"),
            &os("-extfile"),
            extensions.as_os_str(),
            &os("-out"),
            cert.as_os_str(),
        ])?;
        std::fs::set_permissions(&ca, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let log = dir.path().join("received.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/echo_https_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the test's HTTPS server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("its stdout")?).read_line(&mut line)?;
        let mut ports = line.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(port)), Some(Ok(plain))) = (ports.next(), ports.next()) else {
            bail!("the test's server printed no ports: {line:?}");
        };
        Ok(Self {
            child,
            port,
            plain,
            cert: ca,
            log,
            _dir: dir,
        })
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A bridge that may reach `localhost` and `127.0.0.1` at this server's ports, with the
    /// secret `TEST_TOKEN` bound to `localhost` only.
    async fn bridge(&self, b: &TestBackend) -> Result<TestBridge> {
        let hosts = format!(
            "localhost:{0},127.0.0.1:{0},localhost:{1},127.0.0.1:{1}",
            self.port, self.plain
        );
        let secrets = format!(
            "TEST_TOKEN@localhost:{},localhost:{}",
            self.port, self.plain
        );
        b.bridge_with(&[
            ("MCP_BRIDGE_ALLOW_HOSTS", hosts.as_str()),
            ("MCP_BRIDGE_ALLOW_PRIVATE", "127.0.0.1"),
            ("MCP_BRIDGE_SECRETS", secrets.as_str()),
            ("TEST_TOKEN", SECRET),
            ("SSL_CERT_FILE", self.cert.to_str().context("cert path")?),
        ])
        .await
    }
}

fn refusals(reply: &crate::support::Reply) -> Vec<String> {
    reply.structured["network"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|c| c["allowed"] == Value::Bool(false))
                .map(|c| format!("{}:{}", c["host"].as_str().unwrap_or(""), c["port"]))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn fetch_and_urllib_reach_allowed_hosts_only(b: &TestBackend) -> Result<()> {
    let server = EchoServer::start()?;
    let bridge = server.bridge(b).await?;
    let port = server.port;
    let code = format!(
        r#"
import os, urllib.request, urllib.error
import mcp.runtime
r = await mcp.runtime.fetch("https://localhost:{port}/echo?x=1", method="POST",
                            headers={{"Authorization": "Bearer " + os.environ["TEST_TOKEN"]}},
                            body=b"hello")
print("fetch", r.status, r.ok, r.json()["method"], r.json()["body_bytes"], r.json()["host"])
print("placeholder", os.environ["TEST_TOKEN"].startswith("mcp-secret-test_token-"))
s = mcp.runtime.fetch_sync("https://127.0.0.1:{port}/plain")
print("sync", s.status, s.header("content-type"))
with urllib.request.urlopen("https://localhost:{port}/via-urllib") as u:
    print("urllib", u.status, u.read().startswith(b"{{"))
"#
    );
    let reply = bridge.run(&code).await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let out = reply.stdout();
    ensure!(
        out.contains(&format!("fetch 200 True POST 5 localhost:{port}")),
        "{out}"
    );
    ensure!(out.contains("placeholder True"), "{out}");
    ensure!(out.contains("sync 200 application/json"), "{out}");
    ensure!(out.contains("urllib 200 True"), "{out}");
    let received = server.received();
    ensure!(
        received.contains(&format!("Bearer {SECRET}")),
        "the secret never reached its host: {received}"
    );
    let connections = reply.structured["network"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Three requests, two of them alike (the same host and port): merged, with a count.
    ensure!(
        connections.len() == 2
            && connections
                .iter()
                .filter_map(|c| c["count"].as_u64())
                .sum::<u64>()
                == 3
            && connections
                .iter()
                .all(|c| c["allowed"] == Value::Bool(true) && c["via"] == "fetch"),
        "{}",
        reply.structured
    );
    ensure!(
        reply
            .text
            .contains(&format!("fetch localhost:{port} ×2 sent")),
        "{}",
        reply.text
    );

    // Refused: hosts not on the list, other loopback ports, the metadata address, an
    // IPv6-mapped loopback, the secret sent to a host it is not bound to, and a redirect
    // from an allowed host to a refused one.
    let code = format!(
        r#"
import os, urllib.request, urllib.error
import mcp.runtime
from mcp import MCPError
def attempt(label, url, headers=None):
    try:
        r = mcp.runtime.fetch_sync(url, headers=headers)
        print(label, "REACHED", r.status)
    except MCPError as e:
        print(label, "refused", e.kind, str(e).replace(chr(10), " "))
attempt("elsewhere", "https://example.invalid/")
attempt("port", "http://127.0.0.1:{other}/")
attempt("metadata", "http://169.254.169.254/latest/meta-data/")
attempt("mapped", "http://[::ffff:127.0.0.1]:{port}/")
attempt("secret", "https://127.0.0.1:{port}/leak", {{"X-Key": os.environ["TEST_TOKEN"]}})
attempt("scheme", "file:///etc/passwd")
try:
    urllib.request.urlopen("https://localhost:{port}/redirect?to=http://169.254.169.254/")
    print("redirect REACHED")
except urllib.error.URLError as e:
    print("redirect refused", e.reason)
"#,
        other = port + 1
    );
    let reply = bridge.run(&code).await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let out = reply.stdout();
    ensure!(!out.contains("REACHED"), "{out}");
    for (label, why) in [
        ("elsewhere", "not in MCP_BRIDGE_ALLOW_HOSTS"),
        ("port", "not in MCP_BRIDGE_ALLOW_HOSTS"),
        ("metadata", "not in MCP_BRIDGE_ALLOW_HOSTS"),
        ("mapped", "not in MCP_BRIDGE_ALLOW_HOSTS"),
        ("secret", "secret TEST_TOKEN"),
        ("scheme", "only http:// and https://"),
        ("redirect", "not in MCP_BRIDGE_ALLOW_HOSTS"),
    ] {
        ensure!(
            out.lines()
                .any(|line| line.starts_with(&format!("{label} refused")) && line.contains(why)),
            "{label}: expected a refusal naming {why:?} in {out}"
        );
    }
    let refused = refusals(&reply);
    ensure!(
        refused.iter().any(|r| r.starts_with("169.254.169.254")) && refused.len() >= 5,
        "{refused:?}"
    );
    ensure!(
        !server.received().contains("/leak"),
        "the request with a misplaced secret reached the server"
    );

    // The value is nowhere the code, the client or the logs can see.
    let reply = bridge
        .run("import os\nprint(sorted(os.environ.items()))")
        .await?;
    ensure!(!reply.text.contains(SECRET), "{}", reply.text);
    let audit = std::fs::read_to_string(suite_state_dir(b).join("audit.jsonl")).unwrap_or_default();
    ensure!(
        audit.contains("\"event\":\"network\""),
        "no network lines in the audit log"
    );
    ensure!(!audit.contains(SECRET), "the audit log holds the secret");
    Ok(())
}

pub(crate) async fn allowed_names_of_loopback_reach_nothing_unless_opted_in(
    b: &TestBackend,
) -> Result<()> {
    let server = EchoServer::start()?;
    let hosts = format!("localhost:{}", server.port);
    let bridge = b
        .bridge_with(&[
            ("MCP_BRIDGE_ALLOW_HOSTS", hosts.as_str()),
            ("SSL_CERT_FILE", server.cert.to_str().context("cert path")?),
        ])
        .await?;
    // `localhost` is allowed by name, but it resolves to loopback, which is not opted in:
    // the same as a name rebound to 127.0.0.1.
    let code = format!(
        "import mcp.runtime\nfrom mcp import MCPError\ntry:\n    mcp.runtime.fetch_sync('https://localhost:{}/')\n    print('REACHED')\n\
         except MCPError as e:\n    print(e.kind, e)",
        server.port
    );
    let reply = bridge.run(&code).await?;
    ensure!(
        reply.stdout().contains("loopback") && !reply.stdout().contains("REACHED"),
        "{}",
        reply.text
    );
    ensure!(server.received().is_empty(), "{}", server.received());
    Ok(())
}

pub(crate) async fn without_an_allow_list_there_is_no_network(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge
        .run(
            "import urllib.request, urllib.error, mcp.runtime\nfrom mcp import MCPError\n\
             try:\n    mcp.runtime.fetch_sync('https://example.com/')\nexcept MCPError as e:\n    print('fetch', e.kind, e)\n\
             try:\n    urllib.request.urlopen('http://example.com/', timeout=5)\nexcept urllib.error.URLError as e:\n    print('urllib', e.reason)",
        )
        .await?;
    let out = reply.stdout();
    if !out.contains("fetch not_allowed") || !out.contains("MCP_BRIDGE_ALLOW_HOSTS") {
        bail!("{}", reply.text);
    }
    ensure!(
        out.contains("urllib") && out.contains("no network"),
        "{out}"
    );
    Ok(())
}

pub(crate) async fn clients_that_honour_the_proxy_variables_reach_allowed_hosts_only(
    b: &TestBackend,
) -> Result<()> {
    let server = EchoServer::start()?;
    let bridge = server.bridge(b).await?;
    if !b.is_container() {
        // No sockets: `fetch` and `urllib` are the way out, and no proxy is named.
        let reply = bridge
            .run("import os\nprint(sorted(k for k in os.environ if 'proxy' in k.lower()))")
            .await?;
        ensure!(reply.stdout().trim() == "[]", "{}", reply.text);
        return Ok(());
    }
    let ca = serde_json::to_string(&std::fs::read_to_string(&server.cert)?)?;
    let (port, plain) = (server.port, server.plain);
    let code = format!(
        r#"
import http.client, json, os, socket, ssl
ca_file = "/tmp/test-ca.pem"
with open(ca_file, "w") as f:
    f.write({ca})
context = ssl.create_default_context(cafile=ca_file)
proxy = os.environ["HTTPS_PROXY"]
assert proxy == os.environ["HTTP_PROXY"] == os.environ["https_proxy"], os.environ
proxy_host, proxy_port = proxy.removeprefix("http://").rsplit(":", 1)
proxy_port = int(proxy_port)

def tunnel(label, host, port):
    c = http.client.HTTPSConnection(proxy_host, proxy_port, context=context, timeout=10)
    c.set_tunnel(host, port)
    try:
        c.request("GET", "/through-the-tunnel")
        r = c.getresponse()
        print(label, "REACHED", r.status, json.loads(r.read())["host"])
    except OSError as e:
        print(label, "refused", str(e).replace(chr(10), " "))
    finally:
        c.close()

tunnel("tunnel", "localhost", {port})
tunnel("elsewhere", "example.invalid", 443)
tunnel("port", "127.0.0.1", {other})
tunnel("metadata", "169.254.169.254", 80)

def plain_http(label, url, token):
    c = http.client.HTTPConnection(proxy_host, proxy_port, timeout=10)
    try:
        c.request("GET", url, headers={{"Authorization": "Bearer " + token}})
        r = c.getresponse()
        body = r.read()
        print(label, r.status, r.reason, json.loads(body)["path"] if r.status == 200 else "")
    finally:
        c.close()

plain_http("plain", "http://localhost:{plain}/plain-proxied", os.environ["TEST_TOKEN"])
plain_http("misplaced", "http://127.0.0.1:{plain}/misplaced", os.environ["TEST_TOKEN"])

# A header split by the sandbox's own bytes, sent raw to the proxy.
with socket.create_connection((proxy_host, proxy_port), timeout=10) as s:
    s.sendall(b"GET http://localhost:{plain}/split HTTP/1.1\r\nHost: localhost\r\n"
              b"X-A: one\rX-Injected: two\r\n\r\n")
    print("split", s.recv(200).split(b"\r\n")[0].decode())

# Nothing leaves but through the proxy.
for label, address in (("direct", ("1.1.1.1", 443)), ("host", ("127.0.0.1", {port}))):
    try:
        socket.create_connection(address, timeout=3).close()
        print(label, "REACHED")
    except OSError as e:
        print(label, "refused", type(e).__name__)
for label, family, kind, proto in (("raw", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                   ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0)):
    try:
        socket.socket(family, kind, proto).close()
        print(label, "REACHED")
    except OSError as e:
        print(label, "refused", type(e).__name__)
"#,
        other = port + 1
    );
    let reply = bridge.run(&code).await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let out = reply.stdout();
    ensure!(
        out.contains(&format!("tunnel REACHED 200 localhost:{port}")),
        "{out}"
    );
    ensure!(out.contains("plain 200 OK /plain-proxied"), "{out}");
    for (label, why) in [
        ("elsewhere", "403"),
        ("port", "403"),
        ("metadata", "403"),
        ("direct", ""),
        ("host", ""),
        ("raw", ""),
        ("packet", ""),
    ] {
        ensure!(
            out.lines()
                .any(|line| line.starts_with(&format!("{label} refused")) && line.contains(why)),
            "{label}: expected a refusal with {why:?} in {out}"
        );
    }
    ensure!(
        out.lines()
            .any(|line| line.starts_with("misplaced 403") && line.contains("TEST_TOKEN")),
        "{out}"
    );
    ensure!(
        out.lines()
            .any(|line| line.starts_with("split HTTP/1.1 400")),
        "a split header was not refused: {out}"
    );
    let received = server.received();
    ensure!(
        received.contains("/plain-proxied") && received.contains(&format!("Bearer {SECRET}")),
        "the proxied request or its secret never arrived: {received}"
    );
    for never in ["/misplaced", "/split", "X-Injected"] {
        ensure!(
            !received.contains(never),
            "{never} reached the server: {received}"
        );
    }
    ensure!(!reply.text.contains(SECRET), "{}", reply.text);
    let connections = reply.structured["network"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let via = |kind: &str, allowed: bool| {
        connections
            .iter()
            .any(|c| c["via"] == kind && c["allowed"] == Value::Bool(allowed))
    };
    ensure!(
        via("connect", true) && via("connect", false) && via("http", true),
        "{}",
        reply.structured
    );
    Ok(())
}

/// The package index the host's pip uses, as pip's own configuration names it: the index
/// URL, the hosts it serves from (the default index keeps its files on a second host), and
/// the certificate bundle pip is told to trust, if any.
struct HostIndex {
    url: String,
    hosts: Vec<String>,
    cert: Option<PathBuf>,
}

impl HostIndex {
    /// Asks the host's pip; `None` when there is no pip to ask.
    fn of_host_pip() -> Option<Self> {
        let script = r#"
import json, os, urllib.parse
from pip._internal.configuration import Configuration
from pip._internal.models.index import PyPI
config = Configuration(isolated=False)
config.load()
items = dict(config.items())
index = next((v for k, v in items.items() if k.endswith(".index-url")), None) or PyPI.simple_url
cert = next((v for k, v in items.items() if k.endswith(".cert")), None)
hosts = {urllib.parse.urlsplit(index).hostname}
if index.rstrip("/") == PyPI.simple_url.rstrip("/"):
    hosts.add(PyPI.file_storage_domain)
print(json.dumps({"index": index, "hosts": sorted(hosts), "cert": cert}))
"#;
        let output = Command::new("python3")
            .args(["-c", script])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let found: Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(Self {
            url: found["index"].as_str()?.to_string(),
            hosts: found["hosts"]
                .as_array()?
                .iter()
                .filter_map(|h| Some(h.as_str()?.to_string()))
                .collect(),
            cert: found["cert"].as_str().map(PathBuf::from),
        })
    }

    /// Every address the hosts resolve to here, or why they do not resolve.
    fn addresses(&self) -> Result<Vec<String>, String> {
        use std::net::ToSocketAddrs;
        let mut addresses = Vec::new();
        for host in &self.hosts {
            let resolved = (host.as_str(), 443)
                .to_socket_addrs()
                .map_err(|e| format!("{host} does not resolve: {e}"))?;
            addresses.extend(resolved.map(|a| a.ip().to_string()));
        }
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }
}

fn skip(b: &TestBackend, why: &str) {
    #[allow(clippy::print_stderr, reason = "the skip must be loud")]
    {
        eprintln!(
            "SKIP pip_installs_from_the_index_alone on {}: {why}",
            b.name
        );
    }
}

pub(crate) async fn pip_installs_from_the_index_alone(b: &TestBackend) -> Result<()> {
    if !b.is_container() {
        skip(
            b,
            "a WASI sandbox has no sockets, so no pip; packages come through \
             mcp.runtime.install (the packages tests)",
        );
        return Ok(());
    }
    let Some(index) = HostIndex::of_host_pip() else {
        skip(b, "the host has no pip to name its package index");
        return Ok(());
    };
    let addresses = match index.addresses() {
        Ok(addresses) => addresses,
        Err(why) => {
            skip(b, &format!("no package index is reachable: {why}"));
            return Ok(());
        }
    };
    // The index's certificate bundle, when the host's pip names one (a proxy of the
    // machine's own may sign for the index), granted read-only at /data/certs.
    let certs = tempfile::Builder::new().prefix("mcp-certs-").tempdir()?;
    std::fs::set_permissions(
        certs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let cert = index
        .cert
        .clone()
        .or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from))
        .filter(|path| path.is_file());
    if let Some(cert) = &cert {
        let copy = certs.path().join("ca.pem");
        std::fs::copy(cert, &copy)?;
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    }
    let hosts = index.hosts.join(",");
    // Opted in only in case the machine resolves the index to a range refused by default
    // (a local mirror, say); the list still names the index's hosts alone.
    let private = addresses.join(",");
    let mounts = format!("certs={}", certs.path().display());
    let mut settings = vec![
        ("MCP_BRIDGE_ALLOW_HOSTS", hosts.as_str()),
        ("MCP_BRIDGE_ALLOW_PRIVATE", private.as_str()),
    ];
    if cert.is_some() {
        settings.push(("MCP_BRIDGE_MOUNTS", mounts.as_str()));
    }
    let bridge = b.bridge_with(&settings).await?;
    let code = format!(
        r#"
import os, subprocess, sys
env = dict(os.environ)
if os.path.exists("/data/certs/ca.pem"):
    env["PIP_CERT"] = "/data/certs/ca.pem"
def pip(*args):
    return subprocess.run(["pip", *args], capture_output=True, text=True, env=env,
                          timeout=150)
r = pip("install", "--no-deps", "--retries", "1", "--index-url", {index}, "iniconfig")
print("install", r.returncode, r.stderr[-1500:].replace(chr(10), " "))
import iniconfig
print("imported", iniconfig.__file__)
r = pip("install", "--no-deps", "--retries", "0", "--timeout", "5",
        "--index-url", "https://example.invalid/simple", "anything")
print("elsewhere", r.returncode)
"#,
        index = serde_json::to_string(&index.url)?
    );
    let reply = bridge
        .call(serde_json::json!({ "code": code, "timeout": 240 }))
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let out = reply.stdout();
    ensure!(out.contains("install 0"), "{}", reply.text);
    ensure!(
        out.contains("imported /tmp/pip-packages/iniconfig"),
        "{}",
        reply.text
    );
    ensure!(
        out.lines()
            .any(|line| line.starts_with("elsewhere ") && !line.ends_with(" 0")),
        "{out}"
    );
    let connections = reply.structured["network"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        connections.iter().any(|c| c["allowed"] == Value::Bool(true)
            && c["via"] == "connect"
            && index.hosts.iter().any(|h| c["host"] == h.as_str())),
        "{}",
        reply.structured
    );
    ensure!(
        connections
            .iter()
            .filter(|c| c["allowed"] == Value::Bool(true))
            .all(|c| index.hosts.iter().any(|h| c["host"] == h.as_str())),
        "a connection went beyond the index: {}",
        reply.structured
    );
    ensure!(
        connections
            .iter()
            .any(|c| c["allowed"] == Value::Bool(false) && c["host"] == "example.invalid"),
        "{}",
        reply.structured
    );
    Ok(())
}

pub(crate) async fn each_session_is_capped_in_connections_and_bytes(b: &TestBackend) -> Result<()> {
    let server = EchoServer::start()?;
    let hosts = format!("localhost:{0},localhost:{1}", server.port, server.plain);
    let bridge = b
        .bridge_with(&[
            ("MCP_BRIDGE_ALLOW_HOSTS", hosts.as_str()),
            ("MCP_BRIDGE_ALLOW_PRIVATE", "127.0.0.1"),
            ("MCP_BRIDGE_EGRESS_CONNECTIONS", "2"),
            ("MCP_BRIDGE_EGRESS_BYTES", "200k"),
            ("SSL_CERT_FILE", server.cert.to_str().context("cert path")?),
        ])
        .await?;
    // Three requests at once, each held open by the server for a second: two go, one is
    // refused for connections. Then 150 kB fits, and the next 150 kB runs out of bytes.
    let (port, plain) = (server.port, server.plain);
    let proxied = b.is_container();
    let code = format!(
        r#"
import asyncio, http.client, mcp.runtime
from mcp import MCPError
PROXIED = {proxied}
def through_proxy(path):
    c = http.client.HTTPConnection("127.0.0.1", 3128, timeout=20)
    try:
        c.request("GET", "http://localhost:{plain}" + path)
        r = c.getresponse()
        body = r.read()
        return f"{{r.status}} {{len(body)}}" if r.status == 200 else f"refused {{r.status}} {{r.reason}}"
    except (OSError, http.client.HTTPException) as e:
        return f"cut {{type(e).__name__}}"
    finally:
        c.close()
async def by_fetch(path):
    try:
        r = await mcp.runtime.fetch("https://localhost:{port}" + path)
        return f"{{r.status}} {{len(r.body)}}"
    except MCPError as e:
        return f"refused {{e}}"
async def one(path):
    if PROXIED:
        return await asyncio.to_thread(through_proxy, path)
    return await by_fetch(path)
held = await asyncio.gather(*(one("/slow?s=1") for _ in range(3)))
print("held", sorted(h.split()[0] for h in held))
print("first", await one("/big?n=150000"))
print("second", await one("/big?n=150000"))
print("after", await one("/plain"))
"#,
        proxied = if proxied { "True" } else { "False" }
    );
    let reply = bridge
        .call(serde_json::json!({ "code": code, "timeout": 60 }))
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let out = reply.stdout();
    ensure!(
        out.contains("held ['200', '200', 'refused']"),
        "three at once under a cap of two: {out}"
    );
    ensure!(out.contains("first 200 150000"), "{out}");
    ensure!(
        out.lines().any(|l| l.starts_with("second ")
            && (l.contains("cut")
                || l.contains("refused")
                || l.contains("MCP_BRIDGE_EGRESS_BYTES"))),
        "the second 150 kB went past a 200 kB budget: {out}"
    );
    ensure!(
        out.lines()
            .any(|l| l.starts_with("after refused") && !l.contains(" 200 ")),
        "{out}"
    );
    let refusals = refusals(&reply);
    ensure!(refusals.len() >= 2, "{}", reply.structured);
    Ok(())
}
