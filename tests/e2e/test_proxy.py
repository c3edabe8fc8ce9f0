"""End-to-end proxying: real MCP servers, discovered from config files in several formats,
called from sandboxed Python through the bridge, driven by the official Python MCP SDK.

tests/run.sh installs the upstream servers and sets:
  BRIDGE_BIN      the binary under test
  UPSTREAMS_VENV  a venv with mcp-server-time and mcp-server-git
  NPM_PREFIX      an npm prefix with @modelcontextprotocol/server-{everything,memory,filesystem}
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import textwrap
import unittest
from contextlib import asynccontextmanager
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
UPSTREAMS_VENV = os.environ.get("UPSTREAMS_VENV")
NPM_PREFIX = os.environ.get("NPM_PREFIX")
CACHE_DIR = os.environ.get(
    "MCP_BRIDGE_CACHE_DIR", str(Path.home() / ".cache" / "mcp-server-code-execution-mode")
)


CRASHING_SERVER = textwrap.dedent(
    """
    import os
    try:
        from mcp.server.mcpserver import MCPServer as Server  # mcp 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

    app = Server("crasher")

    @app.tool()
    def ok(text: str) -> str:
        \"\"\"Answers normally.\"\"\"
        return "ok: " + text

    @app.tool()
    def crash() -> str:
        \"\"\"Kills the server mid-call.\"\"\"
        os._exit(3)

    app.run()
    """
)


class World:
    """A home, a project dir and a state dir with server configs in several formats."""

    def __init__(self) -> None:
        if not (UPSTREAMS_VENV and NPM_PREFIX):
            raise unittest.SkipTest("UPSTREAMS_VENV and NPM_PREFIX are not set (tests/run.sh sets them)")
        self.tmp = tempfile.TemporaryDirectory(prefix="bridge-proxy-")
        root = Path(self.tmp.name)
        self.home = root / "home"
        self.project = root / "project"
        self.state = root / "state"
        self.files = root / "files"
        self.repo = root / "repo"
        for d in (self.home, self.project / ".vscode", self.state, self.files, self.repo):
            d.mkdir(parents=True)
        (self.files / "hello.txt").write_text("hello from the filesystem server\n")
        subprocess.run(["git", "init", "-q", str(self.repo)], check=True)
        (self.repo / "README.md").write_text("repo\n")
        bin_dir = Path(UPSTREAMS_VENV) / "bin"
        npm_bin = Path(NPM_PREFIX) / "node_modules" / ".bin"
        crasher = root / "crasher.py"
        crasher.write_text(CRASHING_SERVER)
        # 1. The state dir, `mcpServers` JSON with a file-level description.
        (self.state / "servers.json").write_text(
            json.dumps(
                {
                    "description": "servers from the state dir",
                    "mcpServers": {
                        "time": {
                            "command": str(bin_dir / "mcp-server-time"),
                            "description": "the current time in any timezone",
                        },
                        "everything": {"command": str(npm_bin / "mcp-server-everything")},
                        "crasher": {
                            "command": str(bin_dir / "python"),
                            "args": [str(crasher)],
                        },
                    },
                }
            )
        )
        # 2. MCP_SERVERS_CONFIG, with ${VAR} expansion.
        self.explicit = root / "explicit.json"
        self.explicit.write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "memory": {
                            "command": str(npm_bin / "mcp-server-memory"),
                            "env": {"MEMORY_FILE_PATH": "${BRIDGE_TEST_ROOT}/memory.json"},
                        }
                    }
                }
            )
        )
        # 3. VS Code's `servers` format in the project directory.
        (self.project / ".vscode" / "mcp.json").write_text(
            json.dumps(
                {
                    "servers": {
                        "git": {
                            "type": "stdio",
                            "command": str(bin_dir / "mcp-server-git"),
                            "args": ["--repository", str(self.repo)],
                        }
                    }
                }
            )
        )
        # 4. Cursor's ~/.cursor/mcp.json, with ${env:VAR} expansion.
        (self.home / ".cursor").mkdir()
        (self.home / ".cursor" / "mcp.json").write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "filesystem": {
                            "command": str(npm_bin / "mcp-server-filesystem"),
                            "args": ["${env:BRIDGE_TEST_ROOT}/files"],
                        }
                    }
                }
            )
        )
        # 5. Codex's ~/.codex/config.toml (`mcp_servers` table).
        (self.home / ".codex").mkdir()
        (self.home / ".codex" / "config.toml").write_text(
            f'[mcp_servers.github]\ncommand = "{npm_bin / "mcp-server-github"}"\n'
        )
        # 6. Gemini's ~/.gemini/settings.json.
        (self.home / ".gemini").mkdir()
        (self.home / ".gemini" / "settings.json").write_text(
            json.dumps({"mcpServers": {"gdrive": {"command": str(npm_bin / "mcp-server-gdrive")}}})
        )
        # 7. Claude Code's ~/.claude.json, this project's entry; its `time` is shadowed by the
        # state dir's (read earlier), and reported as such.
        (self.home / ".claude.json").write_text(
            json.dumps(
                {
                    "projects": {
                        str(self.project): {
                            "mcpServers": {"time": {"command": "/nonexistent/time-server"}}
                        }
                    }
                }
            )
        )
        self.root = root

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "MCP_BRIDGE_STATE_DIR": str(self.state),
            "MCP_BRIDGE_CACHE_DIR": CACHE_DIR,
            "MCP_SERVERS_CONFIG": str(self.explicit),
            "MCP_BRIDGE_LOG_LEVEL": "warn",
            "BRIDGE_TEST_ROOT": str(self.root),
            "MCP_BRIDGE_TOOL_TIMEOUT": "20s",
        }

    def close(self) -> None:
        self.tmp.cleanup()


@asynccontextmanager
async def bridge(world: World, **env: str):
    params = StdioServerParameters(
        command=BRIDGE_BIN, args=["run"], env={**world.env(), **env}, cwd=str(world.project)
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def run(client, code: str, servers=(), **extra):
    arguments = {"code": code, "servers": list(servers), **extra}
    return await client.call_tool("run_python", arguments)


class Proxying(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        self.world = World()

    def tearDown(self) -> None:
        self.world.close()

    async def ok(self, client, code: str, servers=(), **extra) -> str:
        result = await run(client, code, servers, **extra)
        self.assertFalse(field(result, "is_error"), text_of(result))
        return field(result, "structured_content")["stdout"]

    async def test_discovery_lists_servers_from_every_format(self) -> None:
        async with bridge(self.world) as session:
            out = await self.ok(
                session,
                "import mcp.runtime as r\n"
                "print(sorted(r.discovered_servers()))\n"
                "print([d for d in r.discovered_servers(detailed=True) if d['name'] == 'time'])",
            )
            names, detailed = out.splitlines()
            self.assertEqual(
                eval(names),
                ["crasher", "everything", "filesystem", "gdrive", "git", "github", "memory", "time"],
            )
            self.assertIn("the current time in any timezone", detailed)

    def test_servers_subcommand_reports_sources_and_checks(self) -> None:
        done = subprocess.run(
            [BRIDGE_BIN, "servers", "--check"],
            env=self.world.env(),
            cwd=str(self.world.project),
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        report = done.stdout
        for name, source in [
            ("memory", "explicit.json"),
            ("git", ".vscode/mcp.json"),
            ("filesystem", ".cursor/mcp.json"),
            ("github", ".codex/config.toml"),
            ("gdrive", ".gemini/settings.json"),
            ("time", "servers.json"),
        ]:
            line = next((l for l in report.splitlines() if l.strip().startswith(name + " ")), "")
            self.assertIn(source, line, f"{name} should come from {source}:\n{report}")
        self.assertIn(".claude.json", report)  # the shadowed `time` entry is reported
        self.assertRegex(report, r"ok +time: 2 tools")
        self.assertRegex(report, r"failed +gdrive")

    async def test_time_server_through_a_typed_proxy(self) -> None:
        async with bridge(self.world) as session:
            out = await self.ok(
                session,
                "now = await mcp_time.get_current_time(timezone='UTC')\n"
                "print(now['timezone'])\n"
                "import inspect\n"
                "print(inspect.signature(mcp_time.get_current_time))\n"
                "print('timezone' in (mcp_time.get_current_time.__doc__ or ''))",
                servers=["time"],
            )
            lines = out.splitlines()
            self.assertEqual(lines[0], "UTC")
            self.assertIn("timezone", lines[1])
            self.assertEqual(lines[2], "True")

    async def test_many_servers_in_one_script(self) -> None:
        async with bridge(self.world) as session:
            code = textwrap.dedent(
                """
                echo = await mcp_everything.echo(message="hi")
                print("echo:", echo)
                await mcp_memory.create_entities(entities=[
                    {"name": "bridge", "entityType": "project", "observations": ["written in Rust"]}])
                graph = await mcp_memory.read_graph()
                print("entities:", [e["name"] for e in graph["entities"]])
                listing = await mcp_filesystem.list_allowed_directories()
                print("allowed:", "files" in str(listing))
                status = await mcp_git.git_status(repo_path=REPO)
                print("git:", "README.md" in str(status))
                """
            ).replace("REPO", repr(str(self.world.repo)))
            out = await self.ok(session, code, servers=["everything", "memory", "filesystem", "git"])
            self.assertIn("echo: Echo: hi", out)
            self.assertIn("entities: ['bridge']", out)
            self.assertIn("allowed: True", out)
            self.assertIn("git: True", out)

    async def test_fifty_calls_in_flight_from_one_run(self) -> None:
        async with bridge(self.world) as session:
            code = (
                "import asyncio\n"
                "replies = await asyncio.gather(*(mcp_everything.echo(message=str(i)) for i in range(50)))\n"
                "print(sorted(int(r.split(': ')[1]) for r in replies) == list(range(50)))"
            )
            self.assertEqual(await self.ok(session, code, servers=["everything"]), "True\n")

    async def test_errors_are_clear(self) -> None:
        async with bridge(self.world) as session:
            unknown = await run(session, "pass", servers=["nope"])
            self.assertTrue(field(unknown, "is_error"))
            self.assertIn("known servers:", text_of(unknown))
            self.assertIn("time", text_of(unknown))
            # A server the run did not name cannot be reached, even through the raw helper.
            out = await self.ok(
                session,
                "import mcp.runtime as r\n"
                "try:\n"
                "    await r.call_tool('time', 'get_current_time', {'timezone': 'UTC'})\n"
                "except r.MCPError as e:\n"
                "    print('refused:', e)",
            )
            self.assertIn("refused:", out)
            self.assertIn("not loaded for this run", out)
            # A tool error raises MCPError with the tool's message.
            out = await self.ok(
                session,
                "import mcp\n"
                "try:\n"
                "    await mcp_filesystem.read_text_file(path='/etc/passwd')\n"
                "except mcp.MCPError as e:\n"
                "    print('tool error:', 'denied' in str(e).lower() or 'outside' in str(e).lower())",
                servers=["filesystem"],
            )
            self.assertIn("tool error: True", out)

    async def test_search_ranks_the_right_tool_first(self) -> None:
        async with bridge(self.world) as session:
            out = await self.ok(
                session,
                "import mcp.runtime as r\n"
                "hits = r.search_tool_docs_sync('current time in a timezone', limit=3)\n"
                "print(hits[0]['server'], hits[0]['tool'])\n"
                "doc = r.query_tool_docs_sync('time', 'get_current_time', detail='full')\n"
                "print('inputSchema' in doc)",
            )
            first, full = out.splitlines()
            self.assertEqual(first, "time get_current_time")
            self.assertEqual(full, "True")

    async def test_a_crashing_upstream_gives_an_error_and_restarts(self) -> None:
        async with bridge(self.world) as session:
            out = await self.ok(
                session,
                "import mcp\n"
                "print(await mcp_crasher.ok(text='before'))\n"
                "try:\n"
                "    await mcp_crasher.crash()\n"
                "except mcp.MCPError as e:\n"
                "    print('crashed:', type(e).__name__)\n"
                "print(await mcp_crasher.ok(text='after'))",
                servers=["crasher"],
            )
            self.assertEqual(out, "ok: before\ncrashed: MCPError\nok: after\n")

    async def test_saved_tools_and_memory_cross_sessions(self) -> None:
        async with bridge(self.world) as session:
            await self.ok(
                session,
                "def double(x):\n    return 2 * x\n",
                session="one",
            )
            await self.ok(
                session,
                "save_tool(double)\nsave_memory('answer', {'value': 42})",
                session="one",
            )
            out = await self.ok(
                session,
                "print(double(21), load_memory('answer')['value'], 'answer' in list_memories())",
                session="two",
            )
            self.assertEqual(out, "42 42 True\n")

    async def test_opt_in_discovery_tools(self) -> None:
        async with bridge(self.world, MCP_BRIDGE_DISCOVERY_TOOLS="1") as session:
            tools = await session.list_tools()
            names = sorted(t.name for t in tools.tools)
            self.assertEqual(
                names,
                ["capability_summary", "discovered_servers", "query_tool_docs", "run_python",
                 "search_tool_docs"],
            )
            found = await session.call_tool("search_tool_docs", {"query": "echo a message"})
            self.assertFalse(field(found, "is_error"), text_of(found))
            first = field(found, "structured_content")["result"][0]
            self.assertEqual((first["server"], first["tool"]), ("everything", "echo"))

    async def test_servers_without_credentials_fail_clearly(self) -> None:
        async with bridge(self.world) as session:
            # GitHub's server starts without a token: its tools are listed, and a call fails
            # (no token, no network) with an MCPError instead of hanging.
            out = await self.ok(
                session,
                "import mcp\n"
                "print(len(await mcp_github.list_tools()) > 10)\n"
                "try:\n"
                "    await mcp_github.get_file_contents(owner='o', repo='r', path='p')\n"
                "    print('no error')\n"
                "except mcp.MCPError as e:\n"
                "    print('MCPError')",
                servers=["github"],
                timeout=60,
            )
            self.assertEqual(out, "True\nMCPError\n")
            # Google Drive's server exits at start without its credentials file: loading it
            # fails the run with a clear message naming the server.
            result = await run(session, "pass", servers=["gdrive"], timeout=60)
            self.assertTrue(field(result, "is_error"))
            self.assertIn("gdrive", text_of(result))

    async def test_a_streamable_http_upstream(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        everything = Path(NPM_PREFIX) / "node_modules" / ".bin" / "mcp-server-everything"
        server = subprocess.Popen(
            [str(everything), "streamableHttp"],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            (self.world.state / "remote.json").write_text(
                json.dumps(
                    {"mcpServers": {"remote": {"type": "http", "url": f"http://127.0.0.1:{port}/mcp"}}}
                )
            )
            import time as _time

            for _ in range(100):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                _time.sleep(0.1)
            async with bridge(self.world) as session:
                out = await self.ok(
                    session, "print(await mcp_remote.echo(message='over http'))", servers=["remote"]
                )
                self.assertEqual(out, "Echo: over http\n")
        finally:
            server.terminate()
            server.wait(timeout=10)


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


class NoOrphans(unittest.TestCase):
    """Upstream servers die with the bridge, even when the bridge is SIGKILLed."""

    def setUp(self) -> None:
        self.world = World()

    def tearDown(self) -> None:
        self.world.close()

    def test_upstreams_die_when_the_bridge_is_killed(self) -> None:
        import signal
        import time as _time

        bridge_proc = subprocess.Popen(
            [BRIDGE_BIN, "run"],
            env=self.world.env(),
            cwd=str(self.world.project),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

        def send(message: dict) -> None:
            bridge_proc.stdin.write((json.dumps(message) + "\n").encode())
            bridge_proc.stdin.flush()

        def answer(request_id: int) -> dict:
            while True:
                line = bridge_proc.stdout.readline()
                self.assertTrue(line, "the bridge closed its stdout")
                message = json.loads(line)
                if message.get("id") == request_id:
                    return message

        try:
            send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "orphan-test", "version": "0"}}})
            answer(1)
            send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "run_python", "arguments": {
                    "code": "await mcp_time.get_current_time(timezone='UTC')\n"
                            "await mcp_everything.echo(message='x')",
                    "servers": ["time", "everything"]}}})
            reply = answer(2)
            self.assertFalse(reply["result"].get("isError"), reply)
            upstreams = children_of(bridge_proc.pid)
            self.assertGreaterEqual(len(upstreams), 2, "the upstream servers should be running")
            bridge_proc.send_signal(signal.SIGKILL)
            bridge_proc.wait(timeout=10)
            deadline = _time.monotonic() + 10
            while any(alive(pid) for pid in upstreams) and _time.monotonic() < deadline:
                _time.sleep(0.1)
            self.assertEqual([pid for pid in upstreams if alive(pid)], [], "orphaned upstreams")
        finally:
            if bridge_proc.poll() is None:
                bridge_proc.kill()


if __name__ == "__main__":
    unittest.main()
