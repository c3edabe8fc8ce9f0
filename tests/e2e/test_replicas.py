"""End-to-end: three bridge replicas behind HAProxy (deploy/haproxy/haproxy.cfg).

Real parts: Debian's HAProxy with the committed configuration, three `run --transport http`
processes sharing one state directory, and 50 official Python SDK clients at once. One
replica is killed (SIGKILL) mid-test: its clients get an error and initialise again onto
another replica; the others see nothing; a named session saved on the dead replica resumes
on another. Skips, naming why, where HAProxy is not installed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import Implementation
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
)
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
CLIENTS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Client:
    """One SDK client with its own MCP session, which it can open again."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.stack: AsyncExitStack | None = None
        self.session: ClientSession | None = None

    async def open(self) -> None:
        await self.close()
        stack = AsyncExitStack()
        http = await stack.enter_async_context(create_mcp_http_client())
        read, write, *_ = await stack.enter_async_context(
            streamable_http_client(self.url, http_client=http)
        )
        session = await stack.enter_async_context(
            ClientSession(read, write, client_info=Implementation(name=self.name, version="0"))
        )
        await session.initialize()
        self.stack, self.session = stack, session

    async def close(self) -> None:
        if self.stack is not None:
            stack, self.stack, self.session = self.stack, None, None
            try:
                await stack.aclose()
            except Exception:  # noqa: BLE001 - a dead replica's session cannot close cleanly
                pass

    async def run(self, code: str, session: str = "default", timeout: int = 30) -> str:
        assert self.session is not None
        arguments = {"code": code, "session": session, "timeout": timeout}
        reply = await asyncio.wait_for(
            self.session.call_tool("run_python", arguments), timeout + 30
        )
        if field(reply, "is_error"):
            raise RuntimeError(text_of(reply))
        return field(reply, "structured_content")["stdout"]


class Replicas(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        if not HAPROXY:
            self.skipTest("SKIP replicas: HAProxy is not installed (apt-get install haproxy)")
        state = tempfile.TemporaryDirectory()
        self.addCleanup(state.cleanup)
        self.ports = [free_port() for _ in range(3)]
        self.replicas: list[subprocess.Popen[bytes]] = []
        for port in self.ports:
            log = tempfile.TemporaryFile()
            self.addCleanup(log.close)
            replica = subprocess.Popen(
                [BRIDGE_BIN, "run", "--transport", "http", "--listen", f"127.0.0.1:{port}"],
                env={
                    **os.environ,
                    "MCP_BRIDGE_STATE_DIR": state.name,
                    "MCP_BRIDGE_WASI_PYTHON": "slim",
                    # The slim interpreter installs cloudpickle with the host's pip to save
                    # and restore sessions. Three replicas run pip at once; a real Python, not
                    # a version manager's shim (pyenv rehashes after each pip, and two
                    # rehashes at once fail each other).
                    "MCP_BRIDGE_PIP_PYTHON": sys.executable,
                    "MCP_BRIDGE_LOG_LEVEL": "warn",
                },
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )
            self.addCleanup(self.stop, replica)
            self.replicas.append(replica)
        for port in self.ports:
            wait_until(lambda port=port: answers(f"http://127.0.0.1:{port}/healthz"), f"replica :{port}")
        listen, stats = free_port(), free_port()
        self.url = f"http://127.0.0.1:{listen}/mcp"
        self.stats_url = f"http://127.0.0.1:{stats}/stats;csv"
        env = {
            **os.environ,
            "MCP_LISTEN": f"127.0.0.1:{listen}",
            "MCP_STATS": f"127.0.0.1:{stats}",
            **{f"MCP_REPLICA_{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(self.ports)},
        }
        haproxy = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(CONFIG)], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.addCleanup(self.stop, haproxy)
        wait_until(lambda: self.servers_up() == 3, "HAProxy to see three healthy replicas")

    @staticmethod
    def stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stats(self) -> dict[str, dict[str, str]]:
        with urllib.request.urlopen(self.stats_url, timeout=5) as response:
            text = response.read().decode().lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows if row["pxname"] == "bridges"}

    def servers_up(self) -> int:
        try:
            stats = self.stats()
        except OSError:
            return 0
        return sum(1 for name, row in stats.items() if name.startswith("replica") and row["status"] == "UP")

    async def test_sessions_stay_on_their_replica_and_a_dead_one_costs_only_its_clients(self) -> None:
        clients = [Client(self.url, f"client-{i}") for i in range(CLIENTS)]
        try:
            await asyncio.gather(*(c.open() for c in clients))
            # State kept across calls: every request of a session reached the replica that
            # created it (another would answer 404 for an id it does not know).
            await asyncio.gather(*(c.run(f"x = {i}") for i, c in enumerate(clients)))
            seen = await asyncio.gather(*(c.run("print(x)") for c in clients))
            self.assertEqual(seen, [f"{i}\n" for i in range(CLIENTS)])
            per_replica = {name: int(row["stot"]) for name, row in self.stats().items()
                           if name.startswith("replica")}
            self.assertTrue(all(count > 0 for count in per_replica.values()), per_replica)

            # A named session saved on every replica, then one replica dies without warning.
            # (Saving imports the pickler in each new session: a few at a time on two cores.)
            few = asyncio.Semaphore(6)

            async def save(i: int, client: Client) -> str:
                async with few:
                    code = f"kept = {i} * 10\nimport mcp.runtime\nmcp.runtime.checkpoint()"
                    return await client.run(code, "work", timeout=120)

            await asyncio.gather(*(save(i, c) for i, c in enumerate(clients)))
            self.replicas[1].kill()
            self.replicas[1].wait()
            wait_until(lambda: self.servers_up() == 2, "HAProxy to mark the dead replica down")

            outcomes = await asyncio.gather(*(c.run("print(x)") for c in clients), return_exceptions=True)
            lost = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
            kept = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, BaseException)]
            # Round robin gave the dead replica about a third of the clients.
            self.assertTrue(0 < len(lost) < CLIENTS, outcomes)
            for i in kept:
                self.assertEqual(outcomes[i], f"{i}\n")

            # Its clients initialise again, onto a live replica, and carry on; the named
            # session they saved there comes back from the shared state directory.
            await asyncio.gather(*(clients[i].open() for i in lost))
            fresh = await asyncio.gather(*(clients[i].run("print('again')") for i in lost))
            self.assertEqual(fresh, ["again\n"] * len(lost))
            async def resume(i: int) -> str:
                async with few:
                    return await clients[i].run("print(kept)", "work", timeout=120)

            resumed = await asyncio.gather(*(resume(i) for i in lost))
            self.assertEqual(resumed, [f"{i * 10}\n" for i in lost])
            # The others never noticed.
            still = await asyncio.gather(*(clients[i].run("print(x)") for i in kept))
            self.assertEqual(still, [f"{i}\n" for i in kept])
        finally:
            await asyncio.gather(*(c.close() for c in clients))


if __name__ == "__main__":
    unittest.main()
