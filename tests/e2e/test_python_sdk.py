"""End-to-end: the official Python MCP SDK drives the real bridge over stdio.

The binary under test is named by BRIDGE_BIN (tests/run.sh sets it).
"""

from __future__ import annotations

import asyncio
import json
import os
import unittest
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")


@asynccontextmanager
async def bridge(**env: str):
    params = StdioServerParameters(
        command=BRIDGE_BIN,
        args=["run"],
        env={**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn", **env},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            yield session


class PythonSdkClient(unittest.IsolatedAsyncioTestCase):
    async def test_initialize_lists_one_tool_and_the_capabilities_resource(self) -> None:
        params = StdioServerParameters(
            command=BRIDGE_BIN, args=["run"], env={**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn"}
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                self.assertEqual(field(init, "server_info").name, "mcp-server-code-execution-mode")
                tools = await session.list_tools()
                self.assertEqual([t.name for t in tools.tools], ["run_python"])
                tool = tools.tools[0]
                self.assertIn("code", field(tool, "input_schema")["properties"])
                self.assertIsNotNone(field(tool, "output_schema"))
                resources = await session.list_resources()
                uris = [str(r.uri) for r in resources.resources]
                self.assertIn("resource://mcp-server-code-execution-mode/capabilities", uris)
                read_back = await session.read_resource(uris[0])
                self.assertIn("run_python", read_back.contents[0].text)

    async def test_state_errors_and_timeouts(self) -> None:
        async with bridge() as session:
            await session.initialize()
            first = await session.call_tool("run_python", {"code": "x = 20\nprint('set')"})
            self.assertFalse(field(first, "is_error"), text_of(first))
            self.assertEqual(field(first, "structured_content")["stdout"], "set\n")

            kept = await session.call_tool("run_python", {"code": "print(x + 22)"})
            self.assertFalse(field(kept, "is_error"), text_of(kept))
            self.assertEqual(text_of(kept).strip(), "42")

            failed = await session.call_tool("run_python", {"code": "raise ValueError('nope')"})
            self.assertTrue(field(failed, "is_error"))
            self.assertEqual(field(failed, "structured_content")["error"]["type"], "ValueError")
            self.assertIn("nope", text_of(failed))

            slow = await session.call_tool(
                "run_python", {"code": "while True:\n    pass", "timeout": 1}
            )
            self.assertTrue(field(slow, "is_error"))
            self.assertEqual(field(slow, "structured_content")["status"], "timed_out")
            self.assertIn("Timed out", text_of(slow))

            after = await session.call_tool("run_python", {"code": "print('working')"})
            self.assertFalse(field(after, "is_error"), text_of(after))
            self.assertEqual(field(after, "structured_content")["stdout"], "working\n")

    async def test_top_level_await_and_json_output_mode(self) -> None:
        async with bridge(MCP_BRIDGE_OUTPUT_MODE="json") as session:
            await session.initialize()
            code = "import asyncio\nprint(sum(await asyncio.gather(*(asyncio.sleep(0, i) for i in range(5)))))"
            result = await session.call_tool("run_python", {"code": code})
            self.assertFalse(field(result, "is_error"), text_of(result))
            self.assertEqual(json.loads(text_of(result))["stdout"], "10\n")

    async def test_parallel_sessions(self) -> None:
        async with bridge() as session:
            await session.initialize()
            calls = [
                session.call_tool(
                    "run_python", {"code": f"name = 's{i}'\nprint(name)", "session": f"s{i}"}
                )
                for i in range(4)
            ]
            results = await asyncio.gather(*calls)
            self.assertEqual(
                [field(r, "structured_content")["stdout"] for r in results],
                [f"s{i}\n" for i in range(4)],
            )


if __name__ == "__main__":
    unittest.main()
