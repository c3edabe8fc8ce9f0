"""Times and profiles the guest runtime's handling of a run, inside the real sandbox.

    python3 benches/guest_profile.py [BRIDGE_BIN] [BACKEND] [RUNS]

Needs the official MCP Python SDK (`pip install mcp`). A first run finds the runtime's
`Session` object and wraps its run handler: RUNS runs of `pass` are timed by the guest's own
clock (the median is printed), then RUNS more run under `cProfile`, whose top functions and
the callers of the system calls are printed. Used for docs/profile.md.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

WRAP = r'''
import cProfile, gc, io, pstats, time
_session = next(o for o in gc.get_objects() if type(o).__name__ == "Session" and hasattr(o, "_on_run"))
_handle, _times, _profile, _mode = _session._on_run, [], cProfile.Profile(), {"profile": False}
def _timed(frame, _handle=_handle):
    if _mode["profile"]:
        _profile.enable()
        try:
            return _handle(frame)
        finally:
            _profile.disable()
    started = time.perf_counter()
    try:
        return _handle(frame)
    finally:
        _times.append(time.perf_counter() - started)
_session._on_run = _timed
'''
MEDIAN = 'print(f"in the guest, a run of pass: {sorted(_times)[len(_times) // 2] * 1000:.3f} ms median of {len(_times)}")'
PROFILE = '_mode["profile"] = True'
REPORT = r'''
_mode["profile"] = False
_text = io.StringIO()
_stats = pstats.Stats(_profile, stream=_text)
_stats.sort_stats("tottime").print_stats(15)
_stats.print_callers("stat|write|compile")
print(_text.getvalue())
'''


async def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "mcp-server-code-execution-mode"
    backend = sys.argv[2] if len(sys.argv) > 2 else "wasi"
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    params = StdioServerParameters(
        command=binary, args=["run", "--backend", backend],
        env={**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn"},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

            async def run(code: str) -> str:
                result = await session.call_tool("run_python", {"code": code})
                content = getattr(result, "structured_content", None) or result.structuredContent
                return content["stdout"] + content["stderr"]

            await run(WRAP)
            for _ in range(runs):
                await run("pass")
            print(await run(MEDIAN))
            await run(PROFILE)
            for _ in range(runs):
                await run("pass")
            print(await run(REPORT))


if __name__ == "__main__":
    asyncio.run(main())
