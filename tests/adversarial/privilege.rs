//! Privilege: no capabilities, no root, and the syscalls that reach past the sandbox refused
//! (by the capability checks, our seccomp profile on every container backend, gVisor's own
//! kernel, or, on WASI, by there being no such call at all). Each step must fail, whatever
//! the reason.

use anyhow::{Result, ensure};

use crate::attack::{blocked, bridge, check_blocked, run, with_vars};
use crate::support::TestBackend;

/// Syscall numbers by machine, for the steps that call them directly.
const SYSCALLS: &str = r"
import platform
NR = {
    'x86_64': dict(init_module=175, delete_module=176, finit_module=313, add_key=248,
                   request_key=249, keyctl=250, bpf=321, perf_event_open=298, reboot=169,
                   swapon=167, acct=163, syslog=103, settimeofday=164, kexec_load=246,
                   open_by_handle_at=304, iopl=172, capset=126),
    'aarch64': dict(init_module=105, delete_module=106, finit_module=273, add_key=217,
                    request_key=218, keyctl=219, bpf=280, perf_event_open=241, reboot=142,
                    swapon=224, acct=89, syslog=116, settimeofday=170, kexec_load=104,
                    open_by_handle_at=265, capset=91),
}.get(platform.machine(), {})
def nr(name):
    if name not in NR:
        raise OSError(f'{name}: no such syscall on {platform.machine()}')
    return NR[name]
";

/// Attack `body` with the syscall table defined.
async fn syscalls(b: &TestBackend, body: &str) -> Result<()> {
    blocked(b, &format!("{SYSCALLS}\n{body}")).await?;
    Ok(())
}

pub(crate) async fn attack_capabilities(b: &TestBackend) -> Result<()> {
    syscalls(
        b,
        r"
def capabilities():
    caps = {l.split(':')[0]: int(l.split()[1], 16)
            for l in open('/proc/self/status') if l.startswith('Cap')}
    held = {k: hex(v) for k, v in caps.items() if v}
    if not caps or held:
        return held or 'no Cap lines'
    raise PermissionError('every capability set is empty: ' + ', '.join(caps))
attempt('capabilities held', capabilities)
def capset_all():
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)(*([0xffffffff] * 6))
    return syscall(nr('capset'), header, data)
attempt('capset everything', capset_all)
",
    )
    .await
}

pub(crate) async fn attack_setuid_root(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        r"
import os
attempt('setuid 0', lambda: os.setuid(0))
attempt('seteuid 0', lambda: os.seteuid(0))
attempt('setreuid 0', lambda: os.setreuid(0, 0))
attempt('setresuid 0', lambda: os.setresuid(0, 0, 0))
attempt('libc setuid 0', lambda: checked('setuid', libc().setuid(0)))
def root_now():
    if os.geteuid() == 0 or os.getuid() == 0:
        return 'uid 0'
    raise PermissionError(f'still uid {os.getuid()}')
attempt('uid 0 now', root_now)
",
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_setgid_root(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        r"
import os
attempt('setgid 0', lambda: os.setgid(0))
attempt('setegid 0', lambda: os.setegid(0))
attempt('setresgid 0', lambda: os.setresgid(0, 0, 0))
attempt('setgroups [0]', lambda: os.setgroups([0]))
attempt('setgroups [] ', lambda: os.setgroups([]))
",
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_mount(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        r"
import os
for d in ('/tmp/m1', '/tmp/m2', '/tmp/m3', '/tmp/m4'):
    os.makedirs(d, exist_ok=True)
def mount(source, target, fstype, flags=0):
    return checked('mount', libc().mount(source, target, fstype, flags, None))
attempt('tmpfs', mount, b'none', b'/tmp/m1', b'tmpfs')
attempt('proc', mount, b'proc', b'/tmp/m2', b'proc')
attempt('bind /', mount, b'/', b'/tmp/m3', None, 4096)
attempt('sysfs', mount, b'sysfs', b'/tmp/m4', b'sysfs')
attempt('umount /proc', lambda: checked('umount', libc().umount2(b'/proc', 2)))
",
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_ptrace(b: &TestBackend) -> Result<()> {
    // The host's processes (this test's, for one) are not even visible. The sandbox's own
    // other processes (its init, PID 1, forked from the interpreter before the code ran, and
    // any helper) run as the same user: tracing them, or opening their `/proc/PID/mem`, is
    // refused too (seccomp refuses `ptrace` and `process_vm_*`; the init is not dumpable).
    let code = with_vars(
        &[
            ("HOST_PIDS", format!("[{}]", std::process::id())),
            (
                "HOST_PARENT",
                std::os::unix::process::parent_id().to_string(),
            ),
        ],
        r"
import os, sys
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for pid in HOST_PIDS + [HOST_PARENT]:
    attempt(f'see host pid {pid}', lambda: open(f'/proc/{pid}/cmdline').read())
    attempt(f'signal host pid {pid}', lambda: os.kill(pid, 0))
    attempt(f'attach host pid {pid}', lambda: checked('ptrace', libc().ptrace(PTRACE_ATTACH, pid, 0, 0)))
    attempt(f'seize host pid {pid}', lambda: checked('ptrace', libc().ptrace(PTRACE_SEIZE, pid, 0, 0)))
try:
    others = sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid())
except OSError:
    others = []
print('sandbox pids', others)
def read_memory(pid):
    # The init was forked from this interpreter, so `None` lies at the same address there.
    local = ctypes.create_string_buffer(16)
    iov = lambda address: (ctypes.c_void_p * 2)(address, 16)
    return checked('process_vm_readv', libc().process_vm_readv(pid, iov(ctypes.addressof(local)), 1, iov(id(None)), 1, 0))
for pid in others:
    attempt(f'open /proc/{pid}/mem', lambda: os.open(f'/proc/{pid}/mem', os.O_RDONLY))
    attempt(f'open /proc/{pid}/mem to write', lambda: os.open(f'/proc/{pid}/mem', os.O_RDWR))
    attempt(f'read /proc/{pid}/maps', lambda: open(f'/proc/{pid}/maps').read()[:80])
    attempt(f'read /proc/{pid}/environ', lambda: open(f'/proc/{pid}/environ', 'rb').read()[:80])
    attempt(f'attach sandbox pid {pid}', lambda: checked('ptrace', libc().ptrace(PTRACE_ATTACH, pid, 0, 0)))
    attempt(f'seize sandbox pid {pid}', lambda: checked('ptrace', libc().ptrace(PTRACE_SEIZE, pid, 0, 0)))
    attempt(f'process_vm_readv sandbox pid {pid}', read_memory, pid)
",
    );
    let bridge = bridge(b, &[]).await?;
    let reply = run(&bridge, &code).await?;
    if b.name == "podman_gvisor" {
        // gVisor's `/proc` (2022) checks only the user for a non-dumpable process's `maps`,
        // `environ` and the like: they show the init's layout and its (the sandbox's own)
        // environment. Its memory and tracing stay refused. A known gap, in SECURITY.md.
        let out = reply.stdout();
        let unexpected: Vec<&str> = out
            .lines()
            .filter(|l| {
                l.starts_with("BREACH")
                    && !l.starts_with("BREACH read /proc/1/maps")
                    && !l.starts_with("BREACH read /proc/1/environ")
            })
            .collect();
        ensure!(unexpected.is_empty(), "{unexpected:#?}");
        if out.contains("BREACH read /proc/1/") {
            #[allow(clippy::print_stderr, reason = "a known gap must be loud")]
            {
                eprintln!("GAP podman_gvisor: the init's /proc/1/maps and environ are readable");
            }
        }
    } else {
        check_blocked(&reply)?;
    }
    if b.is_container() {
        // The init must have been there to attack.
        ensure!(
            reply.stdout().contains("blocked open /proc/1/mem"),
            "{}",
            reply.text
        );
    }
    bridge.alive().await
}

pub(crate) async fn attack_unshare(b: &TestBackend) -> Result<()> {
    let bridge = bridge(b, &[]).await?;
    let reply = run(
        &bridge,
        r"
import os
CLONE = dict(user=0x10000000, mount=0x00020000, net=0x40000000, pid=0x20000000,
             uts=0x04000000, ipc=0x08000000, cgroup=0x02000000)
def unshare(flag):
    return checked('unshare', libc().unshare(flag))
for name in ('mount', 'net', 'pid', 'uts', 'ipc', 'cgroup'):
    attempt('unshare ' + name, unshare, CLONE[name])
def setns(kind):
    fd = os.open(f'/proc/1/ns/{kind}', os.O_RDONLY)
    return checked('setns', libc().setns(fd, 0))
for kind in ('mnt', 'net', 'pid'):
    attempt('setns ' + kind, setns, kind)
# `clone` with a namespace flag (fork's own call, raw: the C library's wrapper would run
# the child in Python), and `clone3`, whose flags a filter cannot read.
import platform
CLONE_NR = {'x86_64': 56, 'aarch64': 220}.get(platform.machine())
def clone_into(flag):
    pid = checked('clone', libc().syscall(CLONE_NR, flag | 17, 0, 0, 0, 0))  # | SIGCHLD
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
for name in ('user', 'net', 'mount', 'pid'):
    attempt('clone into a new ' + name + ' namespace', clone_into, CLONE[name])
attempt('clone3', lambda: checked('clone3', libc().syscall(435, None, 0)))
# Last: a user namespace, then what it would be for (a mount of one's own).
if attempt('unshare user', unshare, CLONE['user'] | CLONE['mount']) is not None:
    os.makedirs('/tmp/userns-mount', exist_ok=True)
    print('in a user namespace; mounting tmpfs over /etc there:',
          libc().mount(b'none', b'/etc', b'tmpfs', 0, None))
",
    )
    .await?;
    // Refused everywhere: by our seccomp profile on podman, docker and oci (and, applied by
    // gVisor's kernel, under gVisor), by the missing `os` calls on WASI.
    check_blocked(&reply)?;
    bridge.alive().await
}

pub(crate) async fn attack_chroot(b: &TestBackend) -> Result<()> {
    blocked(
        b,
        r"
import os
os.makedirs('/tmp/jail', exist_ok=True)
attempt('chroot', lambda: os.chroot('/tmp/jail'))
def classic_escape():
    fd = os.open('/', os.O_RDONLY)
    os.chroot('/tmp/jail')
    os.fchdir(fd)
    for _ in range(64):
        os.chdir('..')
    os.chroot('.')
    return os.listdir('/')
attempt('chroot escape', classic_escape)
",
    )
    .await?;
    Ok(())
}

pub(crate) async fn attack_kernel_modules(b: &TestBackend) -> Result<()> {
    syscalls(
        b,
        r"
image = lambda: ctypes.create_string_buffer(b'\x7fELF' + b'\0' * 60)
attempt('init_module', lambda: syscall(nr('init_module'), image(), 64, b''))
attempt('finit_module', lambda: syscall(nr('finit_module'), 0, b'', 0))
attempt('delete_module', lambda: syscall(nr('delete_module'), b'ext4', 0))
attempt('kexec_load', lambda: syscall(nr('kexec_load'), 0, 0, None, 0))
",
    )
    .await
}

pub(crate) async fn attack_keyctl(b: &TestBackend) -> Result<()> {
    // Keyrings are not namespaced per container: a key the sandbox user could add would be
    // seen by every sandbox (and host process) of that user.
    let bridge = bridge(b, &[]).await?;
    let reply = run(
        &bridge,
        &format!("{SYSCALLS}\n{}", r"
KEY_SPEC_SESSION, KEY_SPEC_USER = -3, -4
attempt('add_key user', lambda: syscall(nr('add_key'), b'user', b'adv', b'v', 1, KEY_SPEC_USER))
attempt('add_key session', lambda: syscall(nr('add_key'), b'user', b'adv', b'v', 1, KEY_SPEC_SESSION))
attempt('request_key', lambda: syscall(nr('request_key'), b'user', b'adv', None, KEY_SPEC_USER))
attempt('join a named keyring', lambda: syscall(nr('keyctl'), 1, b'adversarial-shared'))
"),
    )
    .await?;
    // Refused everywhere, `keyctl` included: podman's default profile allowed it (joining a
    // named keyring worked); ours refuses it on every container backend.
    check_blocked(&reply)?;
    bridge.alive().await
}

pub(crate) async fn attack_bpf_and_perf(b: &TestBackend) -> Result<()> {
    syscalls(
        b,
        r"
def words(*values):
    return (ctypes.c_uint32 * 32)(*values)
# BPF_MAP_TYPE_ARRAY, key 4, value 4, 16 entries
attempt('bpf map create', lambda: syscall(nr('bpf'), 0, words(2, 4, 4, 16), 128))
attempt('bpf prog load', lambda: syscall(nr('bpf'), 5, words(), 128))
# PERF_TYPE_SOFTWARE, size 128, config 0 (cpu clock), on every process of a CPU
attempt('perf_event_open cpu-wide', lambda: syscall(nr('perf_event_open'), words(1, 128), -1, 0, -1, 0))
",
    )
    .await
}

pub(crate) async fn attack_host_wide_syscalls(b: &TestBackend) -> Result<()> {
    syscalls(
        b,
        r"
import os
attempt('reboot', lambda: syscall(nr('reboot'), 0xfee1dead, 672274793, 0x4321fedc, None))
attempt('sethostname', lambda: checked('sethostname', libc().sethostname(b'pwned', 5)))
attempt('settimeofday', lambda: syscall(nr('settimeofday'), (ctypes.c_long * 2)(0, 0), None))
attempt('swapon', lambda: syscall(nr('swapon'), b'/tmp/swap', 0))
attempt('acct', lambda: syscall(nr('acct'), b'/tmp/acct'))
def kernel_log():
    buf = ctypes.create_string_buffer(4096)
    n = syscall(nr('syslog'), 3, buf, 4096)
    if n > 0 and b'gVisor' in buf.raw[:n] or n == 0:
        raise PermissionError('only the sandbox kernel log: ' + repr(buf.raw[:80]))
    return buf.raw[:n]
attempt('read the kernel log', kernel_log)
attempt('/dev/kmsg', lambda: os.read(os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK), 4096))
# The shocker escape: open the host's root inode by handle.
handle = lambda: ctypes.create_string_buffer(b'\x08\x00\x00\x00\x01\x00\x00\x00' + b'\x02' + b'\0' * 7)
attempt('open_by_handle_at', lambda: syscall(nr('open_by_handle_at'), -100, handle(), 0))
attempt('iopl', lambda: syscall(nr('iopl'), 3))
",
    )
    .await
}

pub(crate) async fn attack_setuid_binaries(b: &TestBackend) -> Result<()> {
    // With no new privileges, a setuid-root program runs with the caller's rights.
    blocked(
        b,
        r"
import os, subprocess
def is_setuid(path):
    try:
        return os.stat(path).st_mode & 0o4000
    except OSError:
        return False
setuid = [os.path.join(d, f) for d in ('/bin', '/usr/bin', '/sbin', '/usr/sbin')
          if os.path.isdir(d) for f in os.listdir(d) if is_setuid(os.path.join(d, f))]
print('setuid programs:', setuid)
def as_root(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    if r.returncode == 0 and 'uid=0' in r.stdout:
        return r.stdout
    raise PermissionError(f'exit {r.returncode}: {(r.stdout + r.stderr)[:120]}')
attempt('su', as_root, ['su', '-c', 'id', 'root'])
attempt('mount', as_root, ['sh', '-c', 'mount -t tmpfs none /tmp && id'])
attempt('newgrp', as_root, ['sh', '-c', 'echo id | newgrp root'])
",
    )
    .await?;
    Ok(())
}
