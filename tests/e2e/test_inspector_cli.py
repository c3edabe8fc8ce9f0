"""End-to-end: the MCP Inspector's CLI mode drives the real bridge over stdio.

tests/run.sh installs `@modelcontextprotocol/inspector` and sets INSPECTOR to its
`mcp-inspector` executable, and BRIDGE_BIN to the binary under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import unittest

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
INSPECTOR = os.environ.get("INSPECTOR")


def inspect(*args: str) -> dict:
    if not INSPECTOR:
        raise unittest.SkipTest("INSPECTOR is not set (tests/run.sh installs the Inspector)")
    env = {**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn"}
    done = subprocess.run(
        [INSPECTOR, "--cli", BRIDGE_BIN, "run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"inspector failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)


class InspectorCli(unittest.TestCase):
    def test_lists_run_python(self) -> None:
        listed = inspect("--method", "tools/list")
        names = [tool["name"] for tool in listed["tools"]]
        self.assertEqual(names, ["run_python"])
        self.assertIn("outputSchema", listed["tools"][0])

    def test_calls_run_python(self) -> None:
        result = inspect(
            "--method", "tools/call", "--tool-name", "run_python", "--tool-arg", "code=print(6*7)"
        )
        self.assertEqual(result["structuredContent"]["stdout"], "42\n")
        self.assertFalse(result.get("isError", False))

    def test_reads_the_capabilities_resource(self) -> None:
        result = inspect(
            "--method",
            "resources/read",
            "--uri",
            "resource://mcp-server-code-execution-mode/capabilities",
        )
        self.assertIn("run_python", result["contents"][0]["text"])


if __name__ == "__main__":
    unittest.main()
