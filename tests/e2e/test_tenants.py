"""End-to-end: tenants of one HTTP bridge (`MCP_BRIDGE_HTTP_TOKENS_FILE`), through the
official Python SDK's streamable HTTP client.

Each tenant's saved tools, memory and saved sessions are its own; each limit refuses with
an error naming it; a tenant cannot use another's MCP session; tokens never reach the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import unittest

from sdk_compat import field, text_of
from test_http import http_bridge, open_session, post, run_python, sdk_session

TOKEN_A = "tenant-a-token-3f9c1e7d5b"
TOKEN_B = "tenant-b-token-8a2d4c6e0f"
TOKEN_RATE = "tenant-rate-token-11aa22bb"
TOKEN_SESSIONS = "tenant-sessions-token-33cc44dd"
# MCP_BRIDGE_HTTP_TOKEN: its bearer is the tenant `default`.
TOKEN_DEFAULT = "the-single-default-token-55ee"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stdout(result) -> str:
    if field(result, "is_error"):
        raise AssertionError(text_of(result))
    return field(result, "structured_content")["stdout"]


class Tenants(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        tokens = os.path.join(folder.name, "tokens.json")
        with open(tokens, "w") as file:
            json.dump({"tenants": {
                "team-a": {"tokens": [TOKEN_A], "max_concurrent_runs": 1},
                # Written as its SHA-256: the file need not hold the token itself.
                "team-b": {"tokens": ["sha256:" + hashlib.sha256(TOKEN_B.encode()).hexdigest()]},
                "rate": {"tokens": [TOKEN_RATE], "runs_per_minute": 3},
                "sessions": {"tokens": [TOKEN_SESSIONS], "max_sessions": 2},
            }}, file)
        # http_bridge passes this process's environment on to the bridge.
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        self.state = os.path.join(folder.name, "state")
        os.environ["MCP_BRIDGE_STATE_DIR"] = self.state
        os.environ["MCP_BRIDGE_HTTP_TOKENS_FILE"] = tokens
        self.bridge = http_bridge(token=TOKEN_DEFAULT)
        self.server = self.bridge.__enter__()
        self.addCleanup(self.bridge.__exit__, None, None, None)
        self.url = self.server.url

    async def test_a_token_not_in_the_file_is_refused(self) -> None:
        status, headers, _ = post(self.url, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  bearer("not-a-token-of-anyone-000"))
        self.assertEqual(status, 401)
        self.assertIn("invalid_token", headers["WWW-Authenticate"])

    async def test_saved_tools_memory_and_sessions_are_each_tenants_own(self) -> None:
        async with sdk_session(self.url, bearer(TOKEN_A), client="shared-name") as a:
            stdout(await a.call_tool("run_python", {"code": (
                "@save_tool\ndef double(x):\n    return 2 * x\n"
                "save_memory('colour', 'teal')\n"
                "kept = 41\nimport mcp.runtime\nmcp.runtime.checkpoint()"
            ), "session": "work"}))
        async with sdk_session(self.url, bearer(TOKEN_B), client="shared-name") as b:
            seen = stdout(await b.call_tool("run_python", {"code": (
                "print(memory_exists('colour'), list_memories(), 'double' in globals())\n"
                "print('kept' in globals())"
            ), "session": "work"}))
            self.assertEqual(seen, "False [] False\nFalse\n")
        async with sdk_session(self.url, bearer(TOKEN_A), client="shared-name") as a:
            seen = stdout(await a.call_tool("run_python", {"code": (
                "print(load_memory('colour'), double(21), kept + 1)"
            ), "session": "work"}))
            self.assertEqual(seen, "teal 42 42\n")
        self.assertTrue(os.path.isdir(os.path.join(self.state, "tenants", "team-a")))
        self.assertNotIn(TOKEN_A, self.server.log())
        self.assertNotIn(TOKEN_B, self.server.log())

    async def test_no_client_name_reaches_another_tenants_saved_session(self) -> None:
        async with sdk_session(self.url, bearer(TOKEN_A), client="agent") as a:
            stdout(await a.call_tool("run_python", {"code": (
                "secret = 'of team-a'\nimport mcp.runtime\nmcp.runtime.checkpoint()"
            ), "session": "work"}))
        # The single token's client names itself as team-a's identity would read.
        async with sdk_session(self.url, bearer(TOKEN_DEFAULT),
                               client="tenant=team-a:agent") as forged:
            seen = stdout(await forged.call_tool("run_python", {
                "code": "print('secret' in globals())", "session": "work"}))
            self.assertEqual(seen, "False\n")
        async with sdk_session(self.url, bearer(TOKEN_A), client="agent") as a:
            seen = stdout(await a.call_tool("run_python", {
                "code": "print(secret)", "session": "work"}))
            self.assertEqual(seen, "of team-a\n")

    async def test_concurrent_runs_are_capped_naming_the_limit(self) -> None:
        async with sdk_session(self.url, bearer(TOKEN_A)) as a:
            slow = asyncio.ensure_future(
                a.call_tool("run_python", {"code": "import time\ntime.sleep(3)", "session": "slow"})
            )
            await asyncio.sleep(1)
            refused = await a.call_tool("run_python", {"code": "print(1)", "session": "other"})
            self.assertTrue(field(refused, "is_error"))
            self.assertIn("max_concurrent_runs", text_of(refused))
            self.assertIn("team-a", text_of(refused))
            stdout(await slow)
            # Once the first run is over, the next one runs.
            self.assertEqual(stdout(await a.call_tool("run_python", {"code": "print(2)"})), "2\n")

    async def test_runs_per_minute_are_capped_naming_the_limit(self) -> None:
        async with sdk_session(self.url, bearer(TOKEN_RATE)) as r:
            for n in range(3):
                self.assertEqual(stdout(await r.call_tool("run_python", {"code": f"print({n})"})), f"{n}\n")
            refused = await r.call_tool("run_python", {"code": "print(3)"})
            self.assertTrue(field(refused, "is_error"))
            self.assertIn("runs_per_minute", text_of(refused))

    async def test_live_sessions_are_capped_over_all_of_a_tenants_mcp_sessions(self) -> None:
        async with sdk_session(self.url, bearer(TOKEN_SESSIONS)) as first:
            stdout(await first.call_tool("run_python", {"code": "pass", "session": "one"}))
            async with sdk_session(self.url, bearer(TOKEN_SESSIONS)) as second:
                stdout(await second.call_tool("run_python", {"code": "pass", "session": "two"}))
                refused = await second.call_tool("run_python", {"code": "pass", "session": "three"})
                self.assertTrue(field(refused, "is_error"))
                self.assertIn("max_sessions", text_of(refused))
                # A session it already has is always reachable.
                stdout(await second.call_tool("run_python", {"code": "pass", "session": "two"}))

    async def test_a_tenant_cannot_use_another_tenants_mcp_session(self) -> None:
        headers = open_session(self.url, bearer(TOKEN_A))
        _, _, mine = post(self.url, run_python("print('mine')"), headers)
        self.assertFalse(mine[0]["result"].get("isError"), mine)
        stolen = {**headers, **bearer(TOKEN_B)}
        _, _, theirs = post(self.url, run_python("print('stolen')", 3), stolen)
        result = theirs[0]["result"]
        self.assertTrue(result["isError"])
        self.assertIn("another tenant's token", json.dumps(result))


if __name__ == "__main__":
    unittest.main()
