"""End-to-end: the official Python MCP SDK sees a run's stdout as progress notifications
while the run goes on, and files the code writes to /workspace/out/ as MCP content.

The binary under test is named by BRIDGE_BIN (tests/run.sh sets it).
"""

from __future__ import annotations

import os
import time
import unittest
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@asynccontextmanager
async def bridge():
    params = StdioServerParameters(
        command=BRIDGE_BIN,
        args=["run"],
        env={**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn"},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


class ProgressAndFiles(unittest.IsolatedAsyncioTestCase):
    async def test_stdout_arrives_as_progress_while_the_run_goes_on(self) -> None:
        seen: list[tuple[float, float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((time.monotonic(), progress, message))

        async with bridge() as session:
            code = (
                "import time\n"
                "for step in range(3):\n"
                "    print(f'step {step}')\n"
                "    time.sleep(0.4)\n"
            )
            started = time.monotonic()
            result = await session.call_tool(
                "run_python", {"code": code}, progress_callback=on_progress
            )
            ended = time.monotonic()
            self.assertFalse(field(result, "is_error"), text_of(result))
            self.assertEqual(
                field(result, "structured_content")["stdout"], "step 0\nstep 1\nstep 2\n"
            )
            text = "".join(message or "" for _, _, message in seen)
            self.assertEqual(text, "step 0\nstep 1\nstep 2\n")
            self.assertEqual([p for _, p, _ in seen], sorted(p for _, p, _ in seen))
            # The first line came long before the run ended.
            self.assertLess(seen[0][0] - started, (ended - started) - 0.5, seen)

            # No progress token, no notifications: the result alone.
            seen.clear()
            quiet = await session.call_tool("run_python", {"code": "print('quiet')"})
            self.assertEqual(field(quiet, "structured_content")["stdout"], "quiet\n")
            self.assertEqual(seen, [])

    async def test_files_in_out_come_back_as_content(self) -> None:
        async with bridge() as session:
            code = (
                "import base64\n"
                f"open('/workspace/out/dot.png', 'wb').write(base64.b64decode({PNG!r}))\n"
                "open('/workspace/out/table.csv', 'w').write('a,b\\n1,2\\n')\n"
            )
            result = await session.call_tool("run_python", {"code": code})
            self.assertFalse(field(result, "is_error"), text_of(result))
            kinds = [block.type for block in result.content]
            self.assertEqual(kinds, ["text", "image", "resource"], result.content)
            image = result.content[1]
            self.assertEqual((field(image, "mime_type"), image.data), ("image/png", PNG))
            resource = result.content[2].resource
            self.assertEqual(str(resource.uri), "file:///workspace/out/table.csv")
            self.assertEqual(resource.text, "a,b\n1,2\n")


if __name__ == "__main__":
    unittest.main()
