"""End-to-end: the bridge's own container image (`image build --bridge`) under podman.

The image is built the way a user builds it, run the way an ordinary pod runs it (non-root,
read-only root filesystem, every capability dropped, no new privileges), and driven with the
official Python SDK's streamable HTTP client. Skips, naming why, where podman cannot run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import unittest
import urllib.error
import urllib.request
import uuid
from contextlib import asynccontextmanager

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from sdk_compat import field, text_of

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
PODMAN = shutil.which("podman")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@asynccontextmanager
async def sdk_session(url: str, token: str):
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


class BridgeImage(unittest.IsolatedAsyncioTestCase):
    image: str

    @classmethod
    def setUpClass(cls) -> None:
        if not PODMAN or podman("info", check=False).returncode != 0:
            raise unittest.SkipTest("SKIP bridge image: podman is not installed or cannot run here")
        built = subprocess.run(
            [BRIDGE_BIN, "image", "build", "--bridge"],
            env={**os.environ, "MCP_BRIDGE_LOG_LEVEL": "warn"},
            capture_output=True, text=True, timeout=1800, check=False,
        )
        if built.returncode != 0:
            raise AssertionError(f"image build --bridge failed:\n{built.stderr}")
        cls.image = built.stdout.strip().splitlines()[-1]

    def start(self, *extra: str, env: dict[str, str] | None = None) -> tuple[str, str]:
        """Runs the image as an ordinary pod would; returns the container and its address."""
        name = f"mcp-bridge-test-{uuid.uuid4().hex[:8]}"
        args = [
            "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-p", "127.0.0.1::8765",
            # A volume of its own for saved sessions: a new one takes the owner (nobody)
            # and mode of the image's directory.
            "-v", f"{name}:/var/lib/mcp-bridge",
        ]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        podman(*args, *extra, self.image)
        self.addCleanup(podman, "volume", "rm", "-f", name, check=False)
        self.addCleanup(podman, "rm", "-f", name, check=False)
        port = podman("port", name, "8765/tcp").stdout.strip().rsplit(":", 1)[1]
        address = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while health(f"{address}/healthz") != 200:
            if time.monotonic() > deadline:
                self.fail(f"the bridge never became healthy:\n{podman('logs', name).stderr}")
            time.sleep(0.2)
        return name, address

    def test_the_image_runs_as_nobody_on_the_wasi_backend(self) -> None:
        config = podman("image", "inspect", self.image, "--format",
                        "{{.Config.User}} {{json .Config.Cmd}}").stdout
        self.assertTrue(config.startswith("65534:65534 "), config)
        self.assertIn('"--transport","http"', config)

    def test_without_a_token_it_refuses_to_serve_on_all_interfaces(self) -> None:
        done = podman("run", "--rm", "--read-only", self.image, timeout=60, check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("MCP_BRIDGE_HTTP_TOKEN", done.stderr)

    async def test_the_sdk_runs_code_in_it_and_sigterm_stops_it_cleanly(self) -> None:
        token = uuid.uuid4().hex
        name, address = self.start(env={"MCP_BRIDGE_HTTP_TOKEN": token})
        async with sdk_session(f"{address}/mcp", token) as session:
            tools = await session.list_tools()
            self.assertEqual([t.name for t in tools.tools], ["run_python"])
            await session.call_tool("run_python", {"code": "import numpy as np\nx = np.arange(10)"})
            reply = await session.call_tool(
                "run_python", {"code": "import sys\nprint(sys.platform, int(x.sum()))"}
            )
            self.assertFalse(field(reply, "is_error"), text_of(reply))
            self.assertEqual(field(reply, "structured_content")["stdout"], "wasi 45\n")
        # SIGTERM, and SIGKILL only after 30 s: a kill would show as exit code 137.
        podman("stop", "-t", "30", name, timeout=90)
        state = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        self.assertEqual(state, "0", podman("logs", name).stderr)
        self.assertIn("shutting down", podman("logs", name).stderr)


if __name__ == "__main__":
    unittest.main()
