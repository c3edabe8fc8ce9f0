"""End-to-end: `install-client` prints and writes MCP client configs, in a temporary HOME."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest
from pathlib import Path

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
NAME = "mcp-server-code-execution-mode"


class InstallClient(unittest.TestCase):
    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.home = Path(self._tmp.name)
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "MCP_BRIDGE_STATE_DIR": str(self.home / "MCPs"),
            "MCP_BRIDGE_LOG_LEVEL": "warn",
        }
        self.env.pop("MCP_SERVERS_CONFIG", None)
        self.env.pop("MCP_BRIDGE_ALLOW_SELF_SERVER", None)
        self.exe = os.path.realpath(subprocess.run(
            ["sh", "-c", f'command -v "{BRIDGE_BIN}"'], capture_output=True, text=True,
            check=True,
        ).stdout.strip())

    def tearDown(self) -> None:
        self._tmp.cleanup()

    def bridge(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BRIDGE_BIN, *args], env=self.env, cwd=self.home, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60, check=check,
        )

    def test_snippets_name_this_executable(self) -> None:
        for client, key, typed in [
            ("claude-desktop", "mcpServers", False),
            ("cursor", "mcpServers", False),
            ("windsurf", "mcpServers", False),
            ("vscode", "servers", True),
        ]:
            snippet = json.loads(self.bridge("install-client", client).stdout)
            expected = {"command": self.exe, "args": ["run"]}
            if typed:
                expected = {"type": "stdio", **expected}
            self.assertEqual(snippet, {key: {NAME: expected}}, client)
        code = self.bridge("install-client", "claude-code").stdout
        self.assertIn(f"claude mcp add --scope user {NAME} -- {self.exe} run", code)
        self.assertEqual(list(self.home.iterdir()), [], "printing writes nothing")

    def test_write_merges_keeps_others_and_discovery_skips_ours_as_self(self) -> None:
        cursor = self.home / ".cursor" / "mcp.json"
        cursor.parent.mkdir(parents=True)
        before = {"mcpServers": {"time": {"command": "mcp-server-time"}}, "other": [1, 2]}
        cursor.write_text(json.dumps(before))
        done = self.bridge("install-client", "cursor", "--write")
        self.assertIn(str(cursor), done.stdout)
        after = json.loads(cursor.read_text())
        self.assertEqual(list(after), ["mcpServers", "other"])
        self.assertEqual(list(after["mcpServers"]), ["time", NAME])
        self.assertEqual(after["mcpServers"]["time"], before["mcpServers"]["time"])
        self.assertEqual(after["other"], [1, 2])
        backups = list(cursor.parent.glob("mcp.json.bak-*"))
        self.assertEqual(len(backups), 1)
        self.assertEqual(json.loads(backups[0].read_text()), before)

        report = self.bridge("servers").stdout
        self.assertIn("time", report)
        self.assertIn(f"{NAME} in {cursor}: it would launch this bridge itself", report)

    def test_write_creates_missing_files(self) -> None:
        self.bridge("install-client", "vscode", "--write")
        written = json.loads((self.home / ".config/Code/User/mcp.json").read_text())
        self.assertEqual(written["servers"][NAME]["type"], "stdio")
        self.bridge("install-client", "claude-code", "--write")
        written = json.loads((self.home / ".claude.json").read_text())
        self.assertEqual(written["mcpServers"][NAME]["args"], ["run"])

    def test_a_file_that_is_not_json_is_refused_and_left_alone(self) -> None:
        config = self.home / ".codeium" / "windsurf" / "mcp_config.json"
        config.parent.mkdir(parents=True)
        config.write_text("{ not json")
        done = self.bridge("install-client", "windsurf", "--write", check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("is not valid JSON", done.stderr)
        self.assertEqual(config.read_text(), "{ not json")
        self.assertEqual(list(config.parent.glob("*.bak-*")), [])


if __name__ == "__main__":
    unittest.main()
