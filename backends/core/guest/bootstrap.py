# Passed as `python -I -S -c BOOTSTRAP`: read one host frame, the runtime as b"S" + UTF-8
# source or b"M" + marshal of its code object, and run it as the module `__mcp_runtime__`.
# Uses only modules loaded at start-up (`marshal` is builtin); reads fd 0 unbuffered.
# With `--connect DIR` (container backends), the standard streams are first moved onto the
# host's unix sockets `DIR/io.sock` (fds 0 and 1) and `DIR/err.sock` (fd 2).
# With `--init` (container backends: the interpreter would be its PID namespace's init, which
# the kernel shields from signals it has no handler for): fork; the parent stays as init,
# forwards the host's signals, reaps orphans and exits as the interpreter did (128 + signal).
# The init makes itself non-dumpable first (the sandbox's code runs as the same user, and
# could otherwise open its /proc/1/mem); the interpreter runs nothing until it hears that
# this worked, and the runtime learns it has this init as its PID namespace's init
# (`UNDER_OWN_INIT`: then an interrupted run ends every other process of the sandbox).
import sys, marshal
_init = sys.argv[1:2] == ["--init"]
if _init:
    del sys.argv[1]
    import os, signal
    _ready, _told = os.pipe()
    _child = os.fork()
    if _child:
        for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(_sig, lambda sig, _frame: os.kill(_child, sig))
        os.close(_ready)
        try:
            import ctypes
            if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) == 0:  # PR_SET_DUMPABLE, 0
                os.write(_told, b"1")
        except Exception:
            pass
        os.close(_told)
        while True:
            try:
                _pid, _status = os.wait()
            except ChildProcessError:
                os._exit(0)
            if _pid == _child:
                _code = os.waitstatus_to_exitcode(_status)
                os._exit(128 - _code if _code < 0 else _code)
    os.close(_told)
    del os, signal, _child, _told
if sys.argv[1:2] == ["--connect"]:
    import os, _socket
    for _fds, _name in (((0, 1), "io.sock"), ((2,), "err.sock")):
        _sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        _sock.connect(sys.argv[2] + "/" + _name)
        for _fd in _fds:
            os.dup2(_sock.fileno(), _fd)
        _sock.close()
    del os, _socket, _fds, _fd, _name, _sock
def _read(size, _raw=sys.stdin.buffer.raw):
    data = bytearray()
    while len(data) < size:
        chunk = _raw.read(size - len(data))
        if not chunk:
            raise SystemExit(0)
        data += chunk
    return data
def _load(payload):
    if payload[:1] == b"M":
        return marshal.loads(memoryview(payload)[1:])
    if payload[:1] == b"S":
        return compile(payload[1:].decode("utf-8"), "<mcp-runtime>", "exec")
    raise SystemExit(f"mcp-bootstrap: unknown runtime tag {bytes(payload[:1])!r}")
_runtime = sys.modules["__mcp_runtime__"] = type(sys)("__mcp_runtime__")
_code = _load(_read(int.from_bytes(_read(4), "big")))
if _init:
    import os
    if os.read(_ready, 1) != b"1":
        raise SystemExit("mcp-bootstrap: the init could not make itself non-dumpable")
    os.close(_ready)
    _runtime.UNDER_OWN_INIT = os.getppid() == 1  # the init of a PID namespace: a sandbox's
    del os, _ready
exec(_code, _runtime.__dict__)
_runtime.main()
