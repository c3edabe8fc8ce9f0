# Passed as `python -I -S -c BOOTSTRAP`: read one host frame, the runtime as b"S" + UTF-8
# source or b"M" + marshal of its code object, and run it as the module `__mcp_runtime__`.
# Uses only modules loaded at start-up (`marshal` is builtin); reads fd 0 unbuffered.
import sys, marshal
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
exec(_load(_read(int.from_bytes(_read(4), "big"))), _runtime.__dict__)
_runtime.main()
