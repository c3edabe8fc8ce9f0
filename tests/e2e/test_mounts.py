"""End-to-end: a client's MCP roots become read-only folders at /data/<name>.

The official Python MCP SDK advertises roots (`list_roots_callback`) and drives the real
bridge over stdio with MCP_BRIDGE_MOUNT_ROOTS=1. The binary under test is named by
BRIDGE_BIN (tests/run.sh sets it).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import unittest
from contextlib import asynccontextmanager

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
CAPABILITIES = "resource://mcp-server-code-execution-mode/capabilities"


class Roots:
    """The roots the client answers `roots/list` with; tests change them mid-session."""

    def __init__(self, *dirs: pathlib.Path) -> None:
        self.dirs = list(dirs)
        self.asked = 0

    async def __call__(self, _context) -> types.ListRootsResult:
        self.asked += 1
        return types.ListRootsResult(
            roots=[types.Root(uri=d.as_uri(), name=d.name) for d in self.dirs]
        )


@asynccontextmanager
async def bridge(roots: Roots, **env: str):
    params = StdioServerParameters(
        command=BRIDGE_BIN,
        args=["run"],
        env={**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn", **env},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, list_roots_callback=roots) as session:
            await session.initialize()
            yield session


def folder(parent: str, name: str, text: str) -> pathlib.Path:
    """A directory `name` under `parent` holding `data.csv`, readable by any user."""
    path = pathlib.Path(parent) / name
    path.mkdir()
    (path / "data.csv").write_text(text)
    for p in (pathlib.Path(parent), path):
        p.chmod(0o755)
    return path


READ = """
try:
    print(open('/data/{name}/data.csv').read().strip())
except OSError as e:
    print('missing', type(e).__name__)
"""


class ClientRoots(unittest.IsolatedAsyncioTestCase):
    async def test_a_root_is_read_at_data_and_changes_reach_the_next_session(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            first = folder(tmp, "project-x", "a,b\n1,2")
            second = folder(tmp, "later", "c\n3")
            roots = Roots(first)
            async with bridge(roots, MCP_BRIDGE_MOUNT_ROOTS="1") as session:
                got = await session.call_tool("run_python", {"code": READ.format(name="project-x")})
                self.assertFalse(field(got, "is_error"), text_of(got))
                self.assertEqual(field(got, "structured_content")["stdout"], "a,b\n1,2\n")
                self.assertEqual(roots.asked, 1)

                write = await session.call_tool(
                    "run_python",
                    {"code": "open('/data/project-x/new.txt', 'w').write('x')"},
                )
                self.assertTrue(field(write, "is_error"), text_of(write))
                self.assertFalse((first / "new.txt").exists())

                manual = await session.read_resource(CAPABILITIES)
                self.assertIn("`/data/project-x`", manual.contents[0].text)

                # New roots reach the next new session; the running one keeps its mounts.
                roots.dirs = [first, second]
                await session.send_roots_list_changed()
                same = await session.call_tool("run_python", {"code": READ.format(name="later")})
                self.assertEqual(field(same, "structured_content")["stdout"].split()[0], "missing")
                fresh = await session.call_tool(
                    "run_python", {"code": READ.format(name="later"), "reset": True}
                )
                self.assertFalse(field(fresh, "is_error"), text_of(fresh))
                self.assertEqual(field(fresh, "structured_content")["stdout"], "c\n3\n")
                self.assertEqual(roots.asked, 2)

    async def test_roots_are_not_granted_unless_asked_for(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            roots = Roots(folder(tmp, "project-x", "a\n1"))
            async with bridge(roots) as session:
                got = await session.call_tool("run_python", {"code": READ.format(name="project-x")})
                self.assertFalse(field(got, "is_error"), text_of(got))
                self.assertEqual(field(got, "structured_content")["stdout"].split()[0], "missing")
                self.assertEqual(roots.asked, 0)


if __name__ == "__main__":
    unittest.main()
