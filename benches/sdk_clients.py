"""Warm calls as clients built on the official Python MCP SDK see them.

    python3 benches/sdk_clients.py [BRIDGE_BIN] [BACKEND] [CALLS]

Run it with the interpreter of the SDK to measure (`pip install mcp`, 1.x or 2.x). It times
`run_python("pass")` calls over stdio, after a warm-up, three ways with the same client:

- through the bridge, with the SDK's validation of `structuredContent` against the tool's
  output schema (what a client does by default);
- through the bridge, with that validation switched off (what the schema costs);
- through an unsandboxed Python MCP server (the SDK's own FastMCP, MCPServer in 2.x, this
  script run as `serve`) whose `run_python` calls `exec` in its own process: the figure a client of SDK
  1.x should see the bridge within.

It prints one Markdown row per way: the SDK's version, then min / median / p95 / p99 in ms.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from importlib.metadata import version

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

WARM_UP = 20


def serve() -> None:
    """An unsandboxed MCP server: `run_python` runs the code in this very process."""
    try:
        from mcp.server.mcpserver import MCPServer as Server  # SDK 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP as Server  # SDK 1.x

    server = Server("in-process")
    scope: dict = {}

    @server.tool()
    def run_python(code: str) -> dict:
        """Runs Python code in this process."""
        exec(compile(code, "<run>", "exec"), scope)
        return {"status": "completed", "stdout": "", "stderr": ""}

    server.run("stdio")


def summary(times: list[float]) -> str:
    times = sorted(times)

    def at(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))]

    return f"{times[0]:.3f} | {at(0.5):.3f} | {at(0.95):.3f} | {at(0.99):.3f}"


async def time_calls(params: StdioServerParameters, calls: int, validate: bool) -> list[float]:
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()  # the output schemas the SDK validates against
            if not validate:
                async def skip(*_args: object, **_kwargs: object) -> None:
                    return None

                session._validate_tool_result = skip  # type: ignore[method-assign]
            for _ in range(WARM_UP):
                await session.call_tool("run_python", {"code": "pass"})
            times = []
            for _ in range(calls):
                started = time.perf_counter()
                await session.call_tool("run_python", {"code": "pass"})
                times.append((time.perf_counter() - started) * 1000)
            return times


async def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else "mcp-server-code-execution-mode"
    backend = sys.argv[2] if len(sys.argv) > 2 else "wasi"
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    env = {**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn"}
    bridge = StdioServerParameters(command=binary, args=["run", "--backend", backend], env=env)
    in_process = StdioServerParameters(
        command=sys.executable, args=[os.path.abspath(__file__), "serve"], env=env
    )
    sdk = f"SDK {version('mcp')}"
    ways = [
        (f"the bridge ({backend}), validated", bridge, True),
        (f"the bridge ({backend}), not validated", bridge, False),
        ("an unsandboxed in-process Python server, validated", in_process, True),
    ]
    for what, params, validate in ways:
        times = await time_calls(params, calls, validate)
        print(f"| {sdk} | {what} | {summary(times)} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    else:
        asyncio.run(main())
