"""End-to-end: the wheel, installed and started the way users start the reference.

The reference's client snippet runs `uvx mcp-server-code-execution-mode run` with
`MCP_BRIDGE_*` variables in `env`; pointed at our wheel (`uvx --from <wheel> ...`) it must
work unchanged, and so must `pipx`. tests/run.sh builds the wheel from the release build
(maturin) and names it, uvx and pipx in BRIDGE_WHEEL, UVX and PIPX.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import unittest
import zipfile
from contextlib import asynccontextmanager

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from sdk_compat import field, text_of

WHEEL = os.environ.get("BRIDGE_WHEEL")
UVX = os.environ.get("UVX") or shutil.which("uvx")
PIPX = os.environ.get("PIPX") or shutil.which("pipx")
NAME = "mcp-server-code-execution-mode"


def need(what: str | None, why: str) -> str:
    if not what:
        raise unittest.SkipTest(f"SKIP wheel: {why}")
    return what


def podman_works() -> bool:
    podman = shutil.which("podman")
    if not podman:
        return False
    done = subprocess.run([podman, "info"], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


@asynccontextmanager
async def client(command: str, args: list[str], env: dict[str, str]):
    # What an MCP client does with a config entry: the command, its args, and `env` over the
    # client's own environment.
    params = StdioServerParameters(command=command, args=args, env={**os.environ, **env})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


class Wheel(unittest.TestCase):
    def test_the_wheel_holds_the_server_alone_and_asks_for_pip(self) -> None:
        wheel = need(WHEEL, "BRIDGE_WHEEL is not set (tests/run.sh builds it with maturin)")
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
            text = archive.read(metadata).decode()
        scripts = [n for n in names if ".data/scripts/" in n]
        self.assertEqual([n.rsplit("/", 1)[1] for n in scripts], [NAME], names)
        self.assertIn(f"Name: {NAME}", text)
        self.assertIn("Requires-Dist: pip", text)
        # The bench and its charting crates stay out: one executable, no other binaries.
        self.assertFalse([n for n in names if "bench" in n], names)


class Uvx(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.wheel = need(WHEEL, "BRIDGE_WHEEL is not set (tests/run.sh builds it with maturin)")
        self.uvx = need(UVX, "no uvx (tests/run.sh installs uv with pip)")
        self.args = ["--from", self.wheel, NAME, "run"]

    async def test_the_references_snippet_runs_unchanged_on_the_default_backend(self) -> None:
        with tempfile.TemporaryDirectory() as state:
            env = {
                "MCP_BRIDGE_STATE_DIR": state,
                "MCP_BRIDGE_OUTPUT_MODE": "toon",
                "MCP_BRIDGE_TIMEOUT": "40",
                "MCP_BRIDGE_LOG_LEVEL": "warn",
            }
            async with client(self.uvx, self.args, env) as session:
                tools = await session.list_tools()
                self.assertEqual([t.name for t in tools.tools], ["run_python"])
                first = await session.call_tool("run_python", {"code": "x = 6 * 7"})
                self.assertFalse(field(first, "is_error"), text_of(first))
                reply = await session.call_tool(
                    "run_python", {"code": "import sys\nprint(sys.platform, x)"}
                )
                self.assertFalse(field(reply, "is_error"), text_of(reply))
                self.assertEqual(field(reply, "structured_content")["stdout"], "wasi 42\n")
                # MCP_BRIDGE_OUTPUT_MODE=toon reached the server: the text is TOON, not plain.
                self.assertIn("stdout:", text_of(reply))

    async def test_the_references_snippet_with_its_podman_runtime(self) -> None:
        if not podman_works():
            self.skipTest("SKIP wheel with podman: podman is not installed or cannot run here")
        with tempfile.TemporaryDirectory() as state:
            env = {"MCP_BRIDGE_RUNTIME": "podman", "MCP_BRIDGE_STATE_DIR": state}
            async with client(self.uvx, self.args, env) as session:
                reply = await session.call_tool(
                    "run_python", {"code": "import sys, os\nprint(sys.platform, os.getuid())"}
                )
                self.assertFalse(field(reply, "is_error"), text_of(reply))
                self.assertEqual(field(reply, "structured_content")["stdout"], "linux 65534\n")

    def test_pip_is_the_one_of_the_environment_uvx_made(self) -> None:
        # uvx makes environments without pip; the wheel asks for it, and the server runs the
        # environment's own Python for pip (the interpreter download, mcp.runtime.install).
        done = subprocess.run(
            [self.uvx, "--from", self.wheel, NAME, "doctor", "--json"],
            capture_output=True, text=True, timeout=300, check=True,
        )
        origins = {o["variable"]: o for o in json.loads(done.stdout)["configuration"]}
        python = origins["MCP_BRIDGE_PIP_PYTHON"]["value"]
        self.assertTrue(python.endswith("/bin/python3"), python)
        self.assertNotEqual(os.path.dirname(python), os.path.dirname(shutil.which("python3") or ""))
        pip = subprocess.run(
            [python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60,
            check=False,
        )
        self.assertEqual(pip.returncode, 0, pip.stderr)


class Pipx(unittest.IsolatedAsyncioTestCase):
    async def test_pipx_installs_a_command_that_serves(self) -> None:
        wheel = need(WHEEL, "BRIDGE_WHEEL is not set (tests/run.sh builds it with maturin)")
        pipx = need(PIPX, "no pipx (tests/run.sh installs it with pip)")
        with tempfile.TemporaryDirectory() as home:
            env = {
                **os.environ,
                "PIPX_HOME": os.path.join(home, "pipx"),
                "PIPX_BIN_DIR": os.path.join(home, "bin"),
                "PIPX_MAN_DIR": os.path.join(home, "man"),
            }
            subprocess.run(
                [pipx, "install", wheel], env=env, capture_output=True, text=True, timeout=600,
                check=True,
            )
            command = os.path.join(home, "bin", NAME)
            version = subprocess.run(
                [command, "--version"], capture_output=True, text=True, timeout=60, check=True
            )
            self.assertIn(NAME, version.stdout)
            async with client(command, ["run"], {"MCP_BRIDGE_STATE_DIR": home}) as session:
                reply = await session.call_tool("run_python", {"code": "print(sum(range(10)))"})
                self.assertFalse(field(reply, "is_error"), text_of(reply))
                self.assertEqual(field(reply, "structured_content")["stdout"], "45\n")


if __name__ == "__main__":
    unittest.main()
