//! Writing outside `/tmp` and `/workspace`: the root filesystem is read-only, the places
//! engines leave writable by default are sealed, and links lead nowhere on the host.
//! (`/dev/shm` and `/dev/mqueue` stay writable on container backends on purpose: POSIX
//! shared memory and message queues, private to the sandbox's IPC namespace and bounded;
//! see SECURITY.md.)

use anyhow::{Result, ensure};

use crate::attack::{blocked, with_vars};
use crate::host::unique_token;
use crate::support::TestBackend;

/// Attack code trying to create a file in each of `dirs` (a Python list literal).
fn write_into(dirs: &str) -> String {
    with_vars(
        &[("DIRS", dirs.to_string())],
        r"
import os
for d in DIRS:
    path = d.rstrip('/') + '/adversarial-write'
    attempt('write ' + d, lambda: open(path, 'w').write('x') and os.path.getsize(path))
",
    )
}

pub(crate) async fn attack_write_system_directories(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        &write_into(
            "['/', '/etc', '/usr', '/usr/lib/python3', '/home', '/root', '/var', '/bin', \
             '/lib', '/opt', '/srv', '/sys', '/proc', '/proc/sys/kernel', '/boot']",
        ),
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_write_engine_scratch_directories(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        &write_into(
            "['/run', '/run/mcp', '/run/lock', '/var/tmp', '/var/lib', '/var/cache', '/dev', \
             '/var/log']",
        ),
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_write_through_symlinks(b: &TestBackend) -> Result<()> {
    // Victims on the host that must not come to exist: one in `/tmp` (next to WASI's scratch
    // directories, reachable by `../` from them if anything were), one in the build tree.
    let name = unique_token("victim");
    let victims = [
        std::path::PathBuf::from("/tmp").join(&name),
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name),
    ];
    let paths: Vec<String> = victims.iter().map(|p| p.display().to_string()).collect();
    let code = with_vars(
        &[
            ("VICTIMS", serde_json::to_string(&paths)?),
            ("NAME", serde_json::to_string(&name)?),
        ],
        r"
import os
links = []
for i, v in enumerate(VICTIMS):
    link(v, f'/tmp/abs{i}')
    links.append(f'/tmp/abs{i}')
for depth in range(1, 6):
    link('../' * depth + NAME, f'/workspace/rel{depth}')
    links.append(f'/workspace/rel{depth}')
link('/etc/adversarial-write', '/tmp/etc-link')
def write_via_etc_link():
    if not os.path.islink('/tmp/etc-link'):
        raise PermissionError('the link was never made')
    return open('/tmp/etc-link', 'w').write('x')
attempt('write /etc via a link', write_via_etc_link)
# Inside a container `/tmp/<name>` is the sandbox's own file, which is no escape: whether
# the host's victims came to exist is checked on the host.
for link in links:
    try:
        with open(link, 'w') as f:
            f.write('pwned')
        print('wrote inside the sandbox', link, os.path.realpath(link))
    except OSError as e:
        print('blocked', link, '|', e)
",
    );
    let reply = blocked(b, &code).await?;
    for victim in &victims {
        ensure!(
            !victim.exists(),
            "the sandbox created {} on the host: {}",
            victim.display(),
            reply.text
        );
    }
    Ok(())
}

pub(crate) async fn attack_remount_root_read_write(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        r"
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
attempt('remount / rw', lambda: checked('mount', libc().mount(None, b'/', None, MS_REMOUNT, None)))
attempt('remount bind rw', lambda: checked('mount', libc().mount(None, b'/', None, MS_REMOUNT | MS_BIND, None)))
attempt('then write /etc', lambda: open('/etc/adversarial-write', 'w').write('x'))
",
    )
    .await?;
    Ok(())
}
