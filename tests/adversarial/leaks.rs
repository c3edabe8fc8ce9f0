//! Information leaks: nothing of the host's identity, environment or paths reaches the code.

use anyhow::{Result, ensure};

use crate::attack::run;
use crate::host::{host_name, host_user, unique_token};
use crate::support::TestBackend;

pub(crate) async fn attack_bridge_secret_env(b: &TestBackend) -> Result<()> {
    let secret = unique_token("secret");
    let bridge = crate::attack::bridge(
        b,
        &[
            ("ADVERSARIAL_SECRET", secret.as_str()),
            ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ],
    )
    .await?;
    let reply = run(
        &bridge,
        r"
import os
print(dict(os.environ))
print(os.environb if hasattr(os, 'environb') else '')
try:
    pids = [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self']
except OSError:
    pids = []
for pid in pids:
    for name in ('environ', 'cmdline'):
        try:
            print(pid, name, open(f'/proc/{pid}/{name}', 'rb').read())
        except OSError as e:
            print('blocked', pid, name, '|', e)
",
    )
    .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    for text in [reply.text.as_str(), &reply.structured.to_string()] {
        ensure!(
            !text.contains(&secret),
            "the bridge's secret reached the sandbox"
        );
    }
    ensure!(
        !reply.stdout().contains("ADVERSARIAL_SECRET"),
        "{}",
        reply.text
    );
    bridge.alive().await
}

pub(crate) async fn attack_host_name_and_user(b: &TestBackend) -> Result<()> {
    let bridge = crate::attack::bridge(b, &[]).await?;
    let reply = run(
        &bridge,
        r"
import os, socket
def show(what, fn):
    try:
        print(f'{what}={fn()}')
    except Exception as e:
        print(f'{what}!{type(e).__name__}')
show('hostname', lambda: socket.gethostname())
show('nodename', lambda: os.uname().nodename)
show('etc_hostname', lambda: open('/etc/hostname').read().strip())
show('proc_hostname', lambda: open('/proc/sys/kernel/hostname').read().strip())
show('user', lambda: __import__('pwd').getpwuid(os.getuid()).pw_name)
show('getpass', lambda: __import__('getpass').getuser())
show('login', lambda: os.getlogin())
show('env_user', lambda: os.environ['USER'])
show('home', lambda: os.path.expanduser('~'))
",
    )
    .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let (host, user) = (host_name()?, host_user()?);
    let home = std::env::var("HOME").unwrap_or_default();
    for line in reply.stdout().lines() {
        let Some((what, value)) = line.split_once('=') else {
            continue;
        };
        match what {
            "hostname" | "nodename" | "etc_hostname" | "proc_hostname" => {
                ensure!(value != host, "the host's name leaked as {what}: {value}");
            }
            "user" | "getpass" | "login" | "env_user" => {
                ensure!(value != user, "the host's user leaked as {what}: {value}");
            }
            "home" => ensure!(
                value != home || home == "/",
                "the host's home leaked: {value}"
            ),
            _ => {}
        }
    }
    bridge.alive().await
}

pub(crate) async fn attack_host_paths(b: &TestBackend) -> Result<()> {
    // The bridge's state directory, cache and working directory are host paths: none of
    // them may show up in anything the code can look at.
    let state = tempfile::Builder::new()
        .prefix(&unique_token("state"))
        .tempdir()?;
    crate::support::hand_to_bridge_user(b, state.path())?;
    let state_dir = state.path().display().to_string();
    let bridge = crate::attack::bridge(b, &[("MCP_BRIDGE_STATE_DIR", &state_dir)]).await?;
    let code = r"
import os, sys, traceback
import mcp.runtime as runtime
runtime.save_memory('probe', {'x': 1})
print(runtime.get_memory_info())
print(runtime.capability_summary())
print(sys.path, sys.executable, sys.argv, os.getcwd())
print(getattr(runtime, '__file__', None), getattr(sys.modules.get('__mcp_runtime__'), '__file__', None))
try:
    runtime.load_memory('../escape')
except Exception:
    traceback.print_exc(file=sys.stdout)
try:
    runtime.call_tool('nope', 'nothing', {})
except Exception:
    traceback.print_exc(file=sys.stdout)
";
    let reply = run(&bridge, code).await?;
    ensure!(!reply.is_error, "{}", reply.text);
    let mut host_paths = vec![state_dir.clone()];
    host_paths.extend(std::env::var("HOME").ok().filter(|h| h.len() > 1));
    host_paths.push(env!("CARGO_MANIFEST_DIR").to_string());
    for path in host_paths {
        ensure!(
            !reply.text.contains(&path),
            "the host path {path} leaked into the sandbox: {}",
            reply.text
        );
    }
    bridge.alive().await
}
