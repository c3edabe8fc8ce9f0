"""End-to-end policy and audit: per-tool allow / ask / deny for proxied calls, asked of the
user through MCP elicitation by the official Python MCP SDK client, and the audit log.

tests/run.sh installs the upstream servers and sets:
  BRIDGE_BIN      the binary under test
  UPSTREAMS_VENV  a venv with mcp-server-time
  NPM_PREFIX      an npm prefix with @modelcontextprotocol/server-filesystem
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest
from contextlib import asynccontextmanager
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
UPSTREAMS_VENV = os.environ.get("UPSTREAMS_VENV")
NPM_PREFIX = os.environ.get("NPM_PREFIX")
CACHE_DIR = os.environ.get(
    "MCP_BRIDGE_CACHE_DIR", str(Path.home() / ".cache" / "mcp-server-code-execution-mode")
)

# A value that must never reach the audit log.
SECRET = "s3cr3t-payload-4711"


class World:
    """A state dir with two servers (time, filesystem) and a policy file."""

    def __init__(self) -> None:
        if not (UPSTREAMS_VENV and NPM_PREFIX):
            raise unittest.SkipTest("UPSTREAMS_VENV and NPM_PREFIX are not set (tests/run.sh sets them)")
        self.tmp = tempfile.TemporaryDirectory(prefix="bridge-policy-")
        root = Path(self.tmp.name)
        self.home = root / "home"
        self.state = root / "state"
        self.files = root / "files"
        for d in (self.home, self.state, self.files):
            d.mkdir(parents=True)
        (self.files / "note.txt").write_text("original\n")
        npm_bin = Path(NPM_PREFIX) / "node_modules" / ".bin"
        self.servers = self.state / "servers.json"
        self.servers.write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "time": {"command": str(Path(UPSTREAMS_VENV) / "bin" / "mcp-server-time")},
                        "files": {
                            "command": str(npm_bin / "mcp-server-filesystem"),
                            "args": [str(self.files)],
                            # The entry's own policy: never move files.
                            "policy": {"tools": {"move_file": "deny"}},
                        },
                    }
                }
            )
        )
        self.policy = root / "policy.json"
        self.policy.write_text(
            json.dumps(
                {
                    "time": {"default": "allow", "tools": {"convert_*": "ask"}},
                    "files": {"tools": {"list_allowed_directories": "deny"}},
                }
            )
        )
        self.root = root

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "MCP_BRIDGE_STATE_DIR": str(self.state),
            "MCP_BRIDGE_CACHE_DIR": CACHE_DIR,
            "MCP_BRIDGE_TOOL_POLICY": str(self.policy),
            "MCP_BRIDGE_LOG_LEVEL": "warn",
            "MCP_BRIDGE_TOOL_TIMEOUT": "30s",
            **extra,
        }

    def audit(self) -> list[dict]:
        path = self.state / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def close(self) -> None:
        self.tmp.cleanup()


class Answers:
    """An elicitation callback that answers from a script and keeps what it was asked."""

    def __init__(self, *actions: str) -> None:
        self.actions = list(actions)
        self.messages: list[str] = []

    async def __call__(self, context, params):
        self.messages.append(params.message)
        action = self.actions.pop(0) if self.actions else "decline"
        return types.ElicitResult(action=action, content={} if action == "accept" else None)


@asynccontextmanager
async def bridge(world: World, elicitation=None, **env: str):
    params = StdioServerParameters(
        command=BRIDGE_BIN, args=["run"], env=world.env(**env), cwd=str(world.root)
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=elicitation) as session:
            await session.initialize()
            yield session


# Prints what each call did: its result's first text, or the refusal's kind and message.
CALL = """
import mcp
async def attempt(label, call):
    try:
        result = await call
        print(label, "OK", str(result)[:200].replace("\\n", " "))
    except mcp.MCPError as e:
        print(label, "REFUSED", e.kind, str(e).replace("\\n", " "))
"""


def lines_of(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        label, _, rest = line.partition(" ")
        found[label] = rest
    return found


class Policy(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        self.world = World()

    def tearDown(self) -> None:
        self.world.close()

    async def run_code(self, client, code: str, servers) -> dict[str, str]:
        result = await client.call_tool(
            "run_python", {"code": CALL + code, "servers": list(servers), "timeout": 60}
        )
        self.assertFalse(field(result, "is_error"), text_of(result))
        return lines_of(field(result, "structured_content")["stdout"])

    def audit_of(self, tool: str) -> list[dict]:
        return [l for l in self.world.audit() if l.get("tool") == tool]

    async def test_ask_is_put_to_the_user_who_accepts_then_declines(self) -> None:
        answers = Answers("accept", "decline")
        async with bridge(self.world, elicitation=answers) as client:
            out = await self.run_code(
                client,
                "await attempt('now', mcp_time.get_current_time(timezone='UTC'))\n"
                f"args = dict(source_timezone='UTC', time='12:00', target_timezone='Asia/Tokyo')\n"
                "await attempt('first', mcp_time.convert_time(**args))\n"
                "await attempt('second', mcp_time.convert_time(**args))\n",
                ["time"],
            )
        self.assertTrue(out["now"].startswith("OK"), out)
        self.assertTrue(out["first"].startswith("OK"), out)
        self.assertIn("Asia/Tokyo", out["first"])
        self.assertTrue(out["second"].startswith("REFUSED declined"), out)
        self.assertIn("the user declined", out["second"])
        self.assertIn("convert_*", out["second"])  # the rule behind the ask is named
        # Only the `ask` tool was asked about, twice; the question names server, tool, arguments.
        self.assertEqual(len(answers.messages), 2, answers.messages)
        question = answers.messages[0]
        self.assertIn("`convert_time`", question)
        self.assertIn("`time`", question)
        self.assertIn('"target_timezone":"Asia/Tokyo"', question)
        # The audit log: one line per call, in order, with the decisions.
        decisions = [(l["tool"], l["decision"], l["outcome"]) for l in self.world.audit()]
        self.assertEqual(
            decisions,
            [
                ("get_current_time", "allowed", "ok"),
                ("convert_time", "asked-accepted", "ok"),
                ("convert_time", "declined", "not_run"),
            ],
        )
        first = self.audit_of("convert_time")[0]
        self.assertEqual(first["server"], "time")
        self.assertEqual(first["session"], "default")
        self.assertEqual(first["event"], "tool_call")
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertGreater(first["argument_bytes"], 40)
        self.assertGreater(first["result_bytes"], 0)
        self.assertGreaterEqual(first["duration_ms"], 0)
        mode = (self.world.state / "audit.jsonl").stat().st_mode & 0o777
        self.assertEqual(mode, 0o600)

    async def test_a_client_without_elicitation_gets_a_clear_refusal(self) -> None:
        async with bridge(self.world) as client:
            out = await self.run_code(
                client,
                "await attempt('ask', mcp_time.convert_time(source_timezone='UTC', time='12:00', "
                "target_timezone='Europe/Paris'))\n"
                "await attempt('plain', mcp_time.get_current_time(timezone='UTC'))\n",
                ["time"],
            )
        self.assertTrue(out["ask"].startswith("REFUSED denied"), out)
        self.assertIn("cannot ask its user (no elicitation support)", out["ask"])
        self.assertIn("`convert_time` of server `time` needs approval", out["ask"])
        self.assertTrue(out["plain"].startswith("OK"), out)
        [line] = self.audit_of("convert_time")
        self.assertEqual((line["decision"], line["outcome"]), ("denied", "not_run"))
        self.assertIn("no elicitation", line["reason"])

    async def test_deny_in_the_entry_and_in_the_file(self) -> None:
        answers = Answers()
        async with bridge(self.world, elicitation=answers) as client:
            out = await self.run_code(
                client,
                "await attempt('move', mcp_files.move_file(source='note.txt', destination='moved.txt'))\n"
                "await attempt('dirs', mcp_files.list_allowed_directories())\n",
                ["files"],
            )
        self.assertTrue(out["move"].startswith("REFUSED denied"), out)
        self.assertIn("`policy` of its entry in", out["move"])
        self.assertIn("`tools.move_file`", out["move"])
        self.assertTrue(out["dirs"].startswith("REFUSED denied"), out)
        self.assertIn("policy.json, server `files`", out["dirs"])
        self.assertEqual(answers.messages, [])  # deny never asks
        self.assertTrue((self.world.files / "note.txt").exists())
        self.assertFalse((self.world.files / "moved.txt").exists())
        for tool in ("move_file", "list_allowed_directories"):
            [line] = self.audit_of(tool)
            self.assertEqual(line["decision"], "denied")

    async def test_destructive_tools_of_the_filesystem_server_ask(self) -> None:
        answers = Answers("accept", "decline")
        note = self.world.files / "note.txt"
        async with bridge(self.world, elicitation=answers, MCP_BRIDGE_ASK_DESTRUCTIVE="1") as client:
            out = await self.run_code(
                client,
                f"await attempt('read', mcp_files.read_text_file(path={str(note)!r}))\n"
                f"await attempt('write', mcp_files.write_file(path={str(note)!r}, content={SECRET!r}))\n"
                f"await attempt('edit', mcp_files.edit_file(path={str(note)!r}, "
                f"edits=[dict(oldText={SECRET!r}, newText='edited')]))\n"
                f"await attempt('mkdir', mcp_files.create_directory(path={str(self.world.files / 'sub')!r}))\n"
                f"await attempt('move', mcp_files.move_file(source={str(note)!r}, "
                f"destination={str(self.world.files / 'moved.txt')!r}))\n",
                ["files"],
            )
        self.assertTrue(out["read"].startswith("OK"), out)
        self.assertTrue(out["write"].startswith("OK"), out)
        self.assertTrue(out["edit"].startswith("REFUSED declined"), out)
        self.assertIn("destructiveHint", out["edit"])
        self.assertTrue(out["mkdir"].startswith("OK"), out)  # not annotated destructive
        # Named by the entry's policy: its rule stands, nobody is asked.
        self.assertTrue(out["move"].startswith("REFUSED denied"), out)
        self.assertEqual(len(answers.messages), 2, answers.messages)
        self.assertIn("`write_file`", answers.messages[0])
        self.assertIn("`edit_file`", answers.messages[1])
        self.assertEqual(note.read_text(), SECRET)  # written, then not edited
        self.assertTrue((self.world.files / "sub").is_dir())
        decisions = {(l["tool"], l["decision"]) for l in self.world.audit()}
        self.assertEqual(
            decisions,
            {
                ("read_text_file", "allowed"),
                ("write_file", "asked-accepted"),
                ("edit_file", "declined"),
                ("create_directory", "allowed"),
                ("move_file", "denied"),
            },
        )
        # Sizes, never values.
        self.assertNotIn(SECRET, (self.world.state / "audit.jsonl").read_text())

    def test_an_unknown_decision_stops_start_up_naming_the_file_and_key(self) -> None:
        self.world.policy.write_text(json.dumps({"time": {"tools": {"convert_time": "maybe"}}}))
        done = subprocess.run(
            [BRIDGE_BIN, "servers"],
            env=self.world.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertNotEqual(done.returncode, 0, done.stdout)
        self.assertIn(str(self.world.policy), done.stderr)
        self.assertIn("`tools.convert_time`", done.stderr)
        self.assertIn('"maybe"', done.stderr)


if __name__ == "__main__":
    unittest.main()
