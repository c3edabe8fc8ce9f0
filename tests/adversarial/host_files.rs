//! Reading the host's files: a marker the test plants on the host (in the build tree's temp
//! dir and in the host's `/tmp`) must stay out of reach whatever path, link or descriptor
//! the code tries.

use anyhow::Result;

use crate::attack::{blocked, bridge, check_blocked, run, with_vars};
use crate::host::Marker;
use crate::support::TestBackend;

/// Plant a marker, run `body` (which sees `PATHS`, the marker files' host paths), and
/// check every step was blocked, the content never came back and the marker is intact.
async fn marker_attack(b: &TestBackend, body: &str) -> Result<()> {
    let marker = Marker::plant()?;
    let reply = blocked(b, &with_vars(&[("PATHS", marker.py_paths())], body)).await?;
    marker.absent_from(&reply.text)?;
    marker.absent_from(&reply.structured.to_string())?;
    marker.intact()
}

pub(crate) async fn attack_read_host_marker_files(b: &TestBackend) -> Result<()> {
    marker_attack(
        b,
        r"
import os
def listed(p):
    if os.path.basename(p) in os.listdir(os.path.dirname(p)):
        return 'listed'
    raise FileNotFoundError('not listed')
for p in PATHS:
    attempt('open', lambda: open(p).read())
    attempt('os.open', lambda: os.read(os.open(p, os.O_RDONLY), 4096))
    attempt('stat', lambda: os.stat(p))
    attempt('listing', listed, p)
",
    )
    .await
}

pub(crate) async fn attack_read_proc_1_environ(b: &TestBackend) -> Result<()> {
    // PID 1 must be the sandbox's own (an init, or nothing on WASI), never the host's: its
    // environment and root hold nothing of the host's.
    marker_attack(
        b,
        r"
import os
def host_init_environ():
    env = open('/proc/1/environ', 'rb').read()
    if b'PATH=/usr/local/bin:/usr/bin:/bin' in env or not env:
        raise PermissionError('only the sandbox init: ' + repr(env[:200]))
    return env
attempt('/proc/1/environ', host_init_environ)
for p in PATHS:
    attempt('/proc/1/root', lambda: open('/proc/1/root' + p).read())
    attempt('/proc/1/cwd', lambda: open('/proc/1/cwd/../../../..' + p).read())
",
    )
    .await
}

pub(crate) async fn attack_symlink_to_root(b: &TestBackend) -> Result<()> {
    marker_attack(
        b,
        r"
import os
link('/', '/tmp/root')
link('../../../../../../../..', '/workspace/up')
for p in PATHS:
    attempt('via /tmp/root', lambda: open('/tmp/root' + p).read())
    attempt('via ../ link', lambda: open('/workspace/up' + p).read())
",
    )
    .await
}

pub(crate) async fn attack_symlink_through_proc_self_root(b: &TestBackend) -> Result<()> {
    marker_attack(
        b,
        r"
import os
link('/proc/self/root/..', '/tmp/self-root')
for p in PATHS:
    attempt('via link', lambda: open('/tmp/self-root/../..' + p).read())
    attempt('directly', lambda: open('/proc/self/root/../../..' + p).read())
    attempt('thread root', lambda: open('/proc/thread-self/root' + p).read())
",
    )
    .await
}

pub(crate) async fn attack_symlink_to_host_paths(b: &TestBackend) -> Result<()> {
    marker_attack(
        b,
        r"
import os
for i, p in enumerate(PATHS):
    link(p, f'/tmp/link{i}')
    link(os.path.dirname(p), f'/workspace/dir{i}')
    attempt('file link', lambda: open(f'/tmp/link{i}').read())
    attempt('dir link', lambda: open(f'/workspace/dir{i}/' + os.path.basename(p)).read())
    attempt('realpath', lambda: open(os.path.realpath(f'/tmp/link{i}')).read())
",
    )
    .await
}

pub(crate) async fn attack_dotdot_traversal(b: &TestBackend) -> Result<()> {
    marker_attack(
        b,
        r"
import os
up = '../' * 16
for p in PATHS:
    attempt('from /tmp', lambda: open('/tmp/' + up + p.lstrip('/')).read())
    attempt('from /workspace', lambda: open('/workspace/' + up + p.lstrip('/')).read())
    attempt('relative', lambda: os.chdir('/tmp') or open(up + p.lstrip('/')).read())
    fd = os.open('/workspace', os.O_RDONLY)
    attempt('dir_fd', lambda: os.read(os.open(up + p.lstrip('/'), os.O_RDONLY, dir_fd=fd), 99))
",
    )
    .await
}

pub(crate) async fn attack_hardlink_to_host_file(b: &TestBackend) -> Result<()> {
    marker_attack(
        b,
        r"
import os
for i, p in enumerate(PATHS):
    attempt('link', lambda: os.link(p, f'/tmp/hard{i}') or open(f'/tmp/hard{i}').read())
    attempt('rename', lambda: os.rename(p, f'/tmp/moved{i}') or open(f'/tmp/moved{i}').read())
    attempt('unlink', lambda: os.unlink(p))
",
    )
    .await
}

pub(crate) async fn attack_mountinfo_names_no_marker(b: &TestBackend) -> Result<()> {
    let marker = Marker::plant()?;
    let bridge = bridge(b, &[]).await?;
    let reply = run(
        &bridge,
        r"
for table in ('/proc/self/mountinfo', '/proc/mounts', '/proc/1/mountinfo'):
    try:
        print(open(table).read())
    except OSError as e:
        print('blocked', table, '|', e)
",
    )
    .await?;
    anyhow::ensure!(!reply.is_error, "{}", reply.text);
    for name in marker.names() {
        anyhow::ensure!(
            !reply.stdout().contains(&name),
            "the mount table names the host's {name}"
        );
    }
    bridge.alive().await
}

pub(crate) async fn attack_inherited_descriptors(b: &TestBackend) -> Result<()> {
    // Every descriptor the sandbox starts with (WASI's preopens, the channel's sockets) is
    // tried as a base for reaching the marker.
    let marker = Marker::plant()?;
    let bridge = bridge(b, &[]).await?;
    let code = with_vars(
        &[("PATHS", marker.py_paths())],
        r"
import os, stat
up = '../' * 16
tried = 0
for fd in range(0, 64):
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        continue
    tried += 1
    if stat.S_ISDIR(mode):
        for p in PATHS:
            attempt(f'fd {fd}', lambda: os.read(os.open(up + p.lstrip('/'), os.O_RDONLY, dir_fd=fd), 99))
    else:
        attempt(f'fd {fd} as a dir', lambda: os.listdir(fd))
print('descriptors', tried)
",
    );
    let reply = run(&bridge, &code).await?;
    check_blocked(&reply)?;
    marker.absent_from(&reply.text)?;
    bridge.alive().await?;
    marker.intact()
}
