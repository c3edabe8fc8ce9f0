"""End-to-end: the bridge over MCP streamable HTTP (`run --transport http`).

Real clients: the official Python MCP SDK's streamable HTTP client and the MCP Inspector's CLI
mode, plus plain HTTP requests for what the clients do not expose (status codes, DELETE).
BRIDGE_BIN names the binary under test and INSPECTOR the Inspector (tests/run.sh sets both).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from contextlib import asynccontextmanager, contextmanager

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import Implementation
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
INSPECTOR = os.environ.get("INSPECTOR")
LISTENING = re.compile(r"listening on (http://\S+/mcp)")
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "0"},
    },
}


class Server:
    """A running `run --transport http` process and what it wrote to stderr."""

    def __init__(self, proc: subprocess.Popen[str], url: str, log: list[str]) -> None:
        self.proc, self.url, self._log = proc, url, log

    def log(self) -> str:
        return "".join(self._log)

    def wait_for_log(self, needle: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> float:
        """SIGTERM the server and wait for it to exit cleanly; the seconds it took."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the bridge did not stop within 15 s of SIGTERM")
        if self.proc.returncode != 0:
            raise AssertionError(f"the bridge exited with {self.proc.returncode}:\n{self.log()}")
        return time.monotonic() - started


@contextmanager
def http_bridge(*args: str, token: str | None = None):
    """Start the bridge on a free loopback port; on exit, SIGTERM it and check it stops."""
    env = {**os.environ, "MCP_BRIDGE_LOG_LEVEL": "info"}
    env.pop("MCP_BRIDGE_HTTP_TOKEN", None)
    if token is not None:
        env["MCP_BRIDGE_HTTP_TOKEN"] = token
    proc = subprocess.Popen(
        [BRIDGE_BIN, "run", "--transport", "http", "--listen", "127.0.0.1:0", *args],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:
        for line in proc.stderr:
            log.append(line)
            match = LISTENING.search(line)
            if match and not found.is_set():
                url.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not found.wait(60) or not url:
            proc.kill()
            raise AssertionError(f"the bridge did not report its address:\n{''.join(log)}")
        server = Server(proc, url[0], log)
        yield server
        server.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        proc.stderr.close()


@asynccontextmanager
async def sdk_session(url: str, headers: dict[str, str] | None = None, client: str | None = None):
    info = Implementation(name=client, version="0") if client else None
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, client_info=info) as session:
                await session.initialize()
                yield session


def post(url: str, body: dict, headers: dict[str, str] | None = None):
    """POST one JSON-RPC message; (status, headers, JSON-RPC messages in the reply)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
            status, reply_headers = response.status, response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers, []
    messages = []
    if reply_headers.get_content_type() == "application/json":
        messages = [json.loads(text)] if text else []
    else:
        for line in text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                messages.append(json.loads(line[5:]))
    return status, reply_headers, messages


def open_session(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Initialize an MCP session by hand, with `extra` headers (a token) on every request;
    the headers later requests of it carry."""
    status, headers, messages = post(url, INIT, extra)
    assert status == 200, status
    assert messages[0]["result"]["serverInfo"]["name"] == "mcp-server-code-execution-mode"
    session = {
        **(extra or {}),
        "Mcp-Session-Id": headers["Mcp-Session-Id"],
        "MCP-Protocol-Version": "2025-06-18",
    }
    status, _, _ = post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    assert status == 202, status
    return session


def run_python(code: str, request_id: int = 2) -> dict:
    """A `tools/call` of run_python."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": code}},
    }


def delete(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, method="DELETE", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


class PythonSdkOverHttp(unittest.IsolatedAsyncioTestCase):
    async def test_runs_python_and_keeps_state_within_a_session(self) -> None:
        with http_bridge() as server:
            async with sdk_session(server.url) as session:
                tools = await session.list_tools()
                self.assertEqual([t.name for t in tools.tools], ["run_python"])
                first = await session.call_tool("run_python", {"code": "x = 20\nprint('set')"})
                self.assertFalse(field(first, "is_error"), text_of(first))
                kept = await session.call_tool("run_python", {"code": "print(x + 22)"})
                self.assertEqual(field(kept, "structured_content")["stdout"], "42\n")
            # Leaving the client sends DELETE; the session's sandboxes go with it.
            ended = await asyncio.to_thread(
                server.wait_for_log, "ending the sessions of a closed scope"
            )
            self.assertTrue(ended, server.log())

    async def test_two_mcp_sessions_never_share_python_state(self) -> None:
        with http_bridge() as server:
            async with sdk_session(server.url) as a, sdk_session(server.url) as b:
                # Both use the default session name, at the same time.
                set_a, set_b = await asyncio.gather(
                    a.call_tool("run_python", {"code": "secret = 'a'"}),
                    b.call_tool("run_python", {"code": "print(globals().get('secret'))"}),
                )
                self.assertFalse(field(set_a, "is_error"), text_of(set_a))
                self.assertEqual(field(set_b, "structured_content")["stdout"], "None\n")
                await b.call_tool("run_python", {"code": "secret = 'b'"})
                read_a, read_b = await asyncio.gather(
                    a.call_tool("run_python", {"code": "print(secret)"}),
                    b.call_tool("run_python", {"code": "print(secret)"}),
                )
                self.assertEqual(field(read_a, "structured_content")["stdout"], "a\n")
                self.assertEqual(field(read_b, "structured_content")["stdout"], "b\n")

    async def test_a_saved_session_comes_back_to_its_client_and_no_other(self) -> None:
        def stdout(result) -> str:
            return field(result, "structured_content")["stdout"]

        with tempfile.TemporaryDirectory() as state:
            with http_bridge("--state-dir", state) as server:
                async with sdk_session(server.url, client="alice") as alice:
                    await alice.call_tool(
                        "run_python", {"session": "work", "code": "secret = 'alice'"}
                    )
                # Ending the MCP session saved it; another client using the same session
                # name gets a fresh one, never alice's.
                self.assertTrue(
                    await asyncio.to_thread(server.wait_for_log, "session saved"), server.log()
                )
                async with sdk_session(server.url, client="bob") as bob:
                    seen = await bob.call_tool(
                        "run_python",
                        {"session": "work", "code": "print(globals().get('secret'))"},
                    )
                    self.assertEqual(stdout(seen), "None\n", text_of(seen))
                    self.assertNotIn("restored", field(seen, "structured_content"))
            # A new server on the same state directory gives alice hers back.
            with http_bridge("--state-dir", state) as server:
                async with sdk_session(server.url, client="alice") as alice:
                    back = await alice.call_tool(
                        "run_python", {"session": "work", "code": "print(secret)"}
                    )
                    self.assertEqual(stdout(back), "alice\n", text_of(back))
                    restored = field(back, "structured_content")["restored"]
                    self.assertEqual(restored["names"], ["secret"])

    async def test_a_token_is_required_when_set(self) -> None:
        with http_bridge(token="e2e-s3cret") as server:
            status, headers, _ = await asyncio.to_thread(post, server.url, INIT)
            self.assertEqual(status, 401)
            self.assertTrue(headers["WWW-Authenticate"].startswith("Bearer"))
            wrong = {"Authorization": "Bearer wrong"}
            status, _, _ = await asyncio.to_thread(post, server.url, INIT, wrong)
            self.assertEqual(status, 401)
            auth = {"Authorization": "Bearer e2e-s3cret"}
            async with sdk_session(server.url, auth) as session:
                result = await session.call_tool("run_python", {"code": "print(6 * 7)"})
                self.assertEqual(field(result, "structured_content")["stdout"], "42\n")


class RawHttp(unittest.TestCase):
    def test_a_foreign_origin_is_refused(self) -> None:
        with http_bridge("--allow-origin", "https://app.example:443") as server:
            status, _, _ = post(server.url, INIT, {"Origin": "http://evil.example"})
            self.assertEqual(status, 403)
            status, _, _ = post(server.url, INIT, {"Origin": "http://localhost:5173"})
            self.assertEqual(status, 200)
            status, _, _ = post(server.url, INIT, {"Origin": "https://app.example"})
            self.assertEqual(status, 200)

    def test_delete_ends_the_mcp_session_and_its_sandboxes(self) -> None:
        with http_bridge() as server:
            session = open_session(server.url)
            status, _, messages = post(server.url, run_python("print('alive')"), session)
            self.assertEqual(status, 200)
            self.assertEqual(messages[-1]["result"]["structuredContent"]["stdout"], "alive\n")
            self.assertIn(delete(server.url, session), (200, 202, 204))
            self.assertTrue(
                server.wait_for_log("ending the sessions of a closed scope"), server.log()
            )
            status, _, _ = post(server.url, run_python("print('gone')", 3), session)
            self.assertEqual(status, 404)

    def test_sigterm_with_a_session_open_stops_cleanly(self) -> None:
        with http_bridge() as server:
            session = open_session(server.url)
            status, _, _ = post(server.url, run_python("y = 1"), session)
            self.assertEqual(status, 200)
            self.assertLess(server.stop(), 10)
            self.assertIn("shutting down", server.log())

    def test_a_public_address_needs_a_token(self) -> None:
        env = {**os.environ}
        env.pop("MCP_BRIDGE_HTTP_TOKEN", None)
        done = subprocess.run(
            [BRIDGE_BIN, "run", "--transport", "http", "--listen", "0.0.0.0:0"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            check=False,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("MCP_BRIDGE_HTTP_TOKEN", done.stderr)

    def test_http_flags_without_http_are_an_error(self) -> None:
        done = subprocess.run(
            [BRIDGE_BIN, "run", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("these flags need --transport http: --listen", done.stderr)


class InspectorOverHttp(unittest.TestCase):
    def inspect(self, url: str, *args: str) -> dict:
        if not INSPECTOR:
            raise unittest.SkipTest("INSPECTOR is not set (tests/run.sh installs the Inspector)")
        done = subprocess.run(
            [INSPECTOR, "--cli", url, "--transport", "http", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"inspector failed ({done.returncode}): {done.stderr}")
        return json.loads(done.stdout)

    def test_lists_and_calls_run_python(self) -> None:
        with http_bridge(token="insp") as server:
            auth = ("--header", "Authorization: Bearer insp")
            listed = self.inspect(server.url, *auth, "--method", "tools/list")
            self.assertEqual([t["name"] for t in listed["tools"]], ["run_python"])
            result = self.inspect(
                server.url, *auth, "--method", "tools/call", "--tool-name", "run_python",
                "--tool-arg", "code=print(6*7)",
            )
            self.assertEqual(result["structuredContent"]["stdout"], "42\n")
            self.assertFalse(result.get("isError", False))


if __name__ == "__main__":
    unittest.main()
