"""The guest runtime: runs agent-written Python for the host, one session per process.

The host starts `python -I -S -c BOOTSTRAP`, sends this program (source or bytecode) as the
first frame, then talks to `main()` over stdin/stdout with the frame protocol in
`backends/core/docs/frames.md`: `hello` -> `ready`, then any number of `run` -> `result`;
during a run, `rpc` -> `rpc_result` calls to the host back the MCP proxies (`mcp_<alias>`,
`mcp.servers.<alias>`), the `mcp.runtime` helpers, `save_tool` and the memory helpers.

It is kept as parts (this file is the first; `ORDER` lists them all), joined into one module
before it is sent. Rules every part keeps:
- Frames go to fd 1 through `os.write` with the session's marker, never through
  `sys.stdout`, so nothing user code does to `sys.stdout` can corrupt them.
- User code never breaks the frame loop: every exception it raises, `SystemExit` and
  `KeyboardInterrupt` included, becomes the `error` of its run.
- Start-up is import-light (imports are slow on WASI): it uses only modules the interpreter
  has already loaded (or builtin / frozen ones: `_json`, `_sitebuiltins`), not `os`, `json`,
  `re`, `types` or `signal`. `asyncio`, `traceback` and `linecache` load on first use, and a
  successful run imports nothing (the tool proxies get their signatures when something
  imports `inspect`, as `asyncio` does).
- Standard library only; it must also run on the CPython 3.12 WASI build (no threads,
  sockets, signals delivery, `os.dup2`, `fcntl`, ...).
"""

import _thread
import builtins
import codecs
import io
import sys
import time

try:  # `os` is frozen but not free to import (os.path, stat, _collections_abc)
    import posix as _os

    DEVNULL = "/dev/null"
except ImportError:  # pragma: no cover - not a POSIX platform
    import os as _os

    DEVNULL = _os.devnull

REAL_SLEEP = time.sleep  # `time.sleep` is replaced while a run keeps its output
# Set by the bootstrap's `--init` when that init is PID 1: the PID namespace is a container's
# of ours, so "every other process" means the sandbox's, never the host's.
UNDER_OWN_INIT = globals().get("UNDER_OWN_INIT") is True
PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT (3.8+); _ast is slow to load
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
ModuleType = type(sys)  # types.ModuleType, without importing types
FunctionType = type(lambda: None)  # types.FunctionType
# The host has its own copies of MARKER_*, NONCE_*, FRAME_CAP_* and MAX_IN_FLIGHT (frame.rs,
# rpc.rs); a test in sandbox-core (guest.rs) checks these values against them.
MARKER_PREFIX = b"\x00\x1bMCPB"
MARKER_SUFFIX = b"\x1f"
NONCE_DIGITS = frozenset("0123456789abcdef")
NONCE_LENGTH = 32
FRAME_CAP_SLACK = 7 << 20  # the host's frame cap: 2 * output_limit + this (room for files), ...
RPC_FRAME_SLACK = 1 << 20  # calls to the host stay within 2 * output_limit + this
FRAME_CAP_CEILING = 64 << 20  # ... and never more than this
STREAM_FRAME_TEXT = 8 << 10  # most stdout text in one `output` frame
STREAM_RUN_BUDGET = 256 << 10  # most stdout text streamed per run
STREAM_RUN_FRAMES = 500  # most `output` frames per run
STREAM_EAGER_FRAMES = 20  # frames sent at once; later ones at most every STREAM_INTERVAL
STREAM_INTERVAL = 0.05
OUT_DIR = "/workspace/out"  # files written here come back with the run's result
OUT_FILES_LISTED = 64  # files listed per run
OUT_FILE_ATTACHED = 1 << 20  # largest file sent back with its content
OUT_ATTACH_BUDGET = 4 << 20  # content sent back per run
OUT_SCAN_ENTRIES = 2000  # directory entries looked at per scan
MESSAGE_LIMIT = 16 * 1024  # bytes of an error message we send
TRACEBACK_LIMIT = 64 * 1024  # bytes of a traceback we send
READ_CHUNK = 1 << 16
MAX_IN_FLIGHT = 64  # calls to the host in flight per session; the host refuses more
# WASI (and Emscripten) builds deliver no signals and have no socketpair.
NO_SIGNALS_OR_SOCKETS = sys.platform in ("wasi", "emscripten")

# Bound once, so user code that monkeypatches `os` cannot break the frame loop.
_read = _os.read
_write = _os.write
