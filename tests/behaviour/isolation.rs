//! The sandbox's walls, as far as the behaviour suite checks them (the adversarial suite goes
//! further).

use anyhow::{Result, ensure};
use serde_json::json;

use crate::support::TestBackend;

pub(crate) async fn no_network(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let code = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 22), timeout=2)\n    print('connected')\nexcept Exception as e:\n    print('blocked', type(e).__name__)";
    let reply = bridge.run(code).await?;
    ensure!(
        reply.stdout().starts_with("blocked") || reply.structured["error"].is_object(),
        "{}",
        reply.text
    );
    ensure!(!reply.stdout().contains("connected"));
    Ok(())
}

pub(crate) async fn loopback_is_the_only_interface(b: &TestBackend) -> Result<()> {
    if !b.is_container() {
        // WASI guests have no sockets at all; `no_network` covers them.
        return Ok(());
    }
    let bridge = b.bridge().await?;
    // The sandbox talks to itself over 127.0.0.1 (a server and a client in one script),
    // and has no other interface.
    let code = r"
import socket
names = sorted(name for _, name in socket.if_nameindex())
server = socket.socket()
server.bind(('127.0.0.1', 0))
server.listen(1)
client = socket.create_connection(server.getsockname(), timeout=2)
peer, _ = server.accept()
client.sendall(b'ping')
print(names, peer.recv(4).decode())
";
    let out = bridge.ok(code).await?;
    ensure!(out.trim() == "['lo'] ping", "{out}");
    Ok(())
}

pub(crate) async fn empty_environment(b: &TestBackend) -> Result<()> {
    let bridge = b
        .bridge_with(&[("BRIDGE_TEST_SECRET", "s3cr3t-value")])
        .await?;
    let out = bridge
        .ok("import os\nprint('\\n'.join(sorted(os.environ)))")
        .await?;
    // Backends may set these, with fixed values; nothing else, and nothing of ours.
    let allowed = ["PATH", "LANG", "PYTHONDONTWRITEBYTECODE"];
    let unexpected: Vec<&str> = out
        .lines()
        .filter(|name| !name.is_empty() && !allowed.contains(name))
        .collect();
    ensure!(
        unexpected.is_empty(),
        "unexpected variables: {unexpected:?}"
    );
    Ok(())
}

pub(crate) async fn host_files_are_invisible(b: &TestBackend) -> Result<()> {
    let marker = std::env::temp_dir().join(format!("bridge-marker-{}", std::process::id()));
    std::fs::write(&marker, "host-secret")?;
    let bridge = b.bridge().await?;
    let code = format!(
        "import os\nfound = []\nfor p in [{:?}, '/etc/passwd', '/proc/1/environ', '/root']:\n    \
         try:\n        open(p).read(); found.append(p)\n    except Exception:\n        pass\nprint(found)",
        marker.display().to_string()
    );
    let out = bridge.ok(&code).await?;
    let _ = std::fs::remove_file(&marker);
    ensure!(
        !out.contains("bridge-marker"),
        "host marker readable: {out}"
    );
    Ok(())
}

pub(crate) async fn scratch_is_writable_and_private_per_session(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let write = "for d in ('/tmp', '/workspace'):\n    open(d + '/note.txt', 'w').write('mine')\nprint(open('/workspace/note.txt').read())";
    let reply = bridge
        .call(json!({"code": write, "session": "writer"}))
        .await?;
    ensure!(reply.stdout() == "mine\n", "{}", reply.text);
    let look =
        "import os\nprint(os.path.exists('/tmp/note.txt'), os.path.exists('/workspace/note.txt'))";
    let reply = bridge
        .call(json!({"code": look, "session": "reader"}))
        .await?;
    ensure!(reply.stdout() == "False False\n", "{}", reply.text);
    Ok(())
}

pub(crate) async fn root_is_not_writable(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let code = "ok = []\nfor p in ['/evil.txt', '/usr/evil.txt', '/etc/evil.txt']:\n    try:\n        open(p, 'w').write('x'); ok.append(p)\n    except Exception:\n        pass\nprint(ok)";
    let out = bridge.ok(code).await?;
    ensure!(out == "[]\n", "wrote outside scratch: {out}");
    Ok(())
}
