"""End-to-end: the bridge's Prometheus metrics (`MCP_BRIDGE_METRICS_LISTEN`), scraped by a
real Prometheus (Debian's package) and checked through Prometheus's own query API.

One HTTP bridge with a tokens file, a proxied server (mcp-server-time) under a policy that
denies one tool, and one allowed host; the official SDK's HTTP client makes runs that
complete, raise and are refused, proxied calls that are made and denied, a refused
connection, a live session and a suspended one. Every count is then read back from
Prometheus, which scrapes the bridge each second.

tests/run.sh installs Prometheus (as root) and sets:
  BRIDGE_BIN      the binary under test
  UPSTREAMS_VENV  a venv with mcp-server-time
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
from pathlib import Path

from sdk_compat import field, text_of
from test_http import http_bridge, post, sdk_session
from test_tenants import bearer, stdout

PROMETHEUS = shutil.which("prometheus")
UPSTREAMS_VENV = os.environ.get("UPSTREAMS_VENV")
METRICS_AT = re.compile(r"metrics on (http://\S+/metrics)")

TOKEN_A = "metrics-team-a-token-0a1b2c"
TOKEN_B = "metrics-team-b-token-3d4e5f"
TOKEN_RATE = "metrics-rate-token-6a7b8c9d"

TEAM_A_CODE = """
import mcp.runtime
now = await mcp_time.get_current_time(timezone="UTC")
print("time ok" if "datetime" in str(now) else now)
try:
    await mcp_time.convert_time(source_timezone="UTC", time="12:00", target_timezone="UTC")
except Exception as e:
    print("denied:", type(e).__name__, e)
try:
    mcp.runtime.fetch_sync("http://elsewhere.invalid/")
except Exception as e:
    print("refused:", type(e).__name__, e)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


class Prometheus:
    """A Prometheus scraping `target` (host:port) every second, with its query API."""

    def __init__(self, target: str, folder: Path) -> None:
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: bridge\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(folder / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def query(self, expression: str) -> list[dict]:
        answer = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        if answer.get("status") != "success":
            raise AssertionError(f"{expression}: {answer}")
        return answer["data"]["result"]

    def value(self, expression: str) -> float | None:
        """The single value `expression` has now, or None when it has no series."""
        try:
            result = self.query(expression)
        except OSError:
            return None
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{expression} has {len(result)} series: {result}")
        return float(result[0]["value"][1])

    async def wait_for(self, expression: str, expected: float, timeout: float = 30) -> None:
        """Until `expression` is `expected` (Prometheus scrapes each second)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = await asyncio.to_thread(self.value, expression)
            if seen == expected:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{expression} is {seen}, not {expected}, after {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Metrics(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        if PROMETHEUS is None:
            raise unittest.SkipTest(
                "Debian's prometheus is not installed (tests/run.sh installs it when run as root)"
            )
        if not UPSTREAMS_VENV:
            raise unittest.SkipTest("UPSTREAMS_VENV is not set (tests/run.sh sets it)")
        folder = tempfile.TemporaryDirectory(prefix="bridge-metrics-")
        self.addCleanup(folder.cleanup)
        root = Path(folder.name)
        tokens = root / "tokens.json"
        tokens.write_text(json.dumps({"tenants": {
            "team-a": {"tokens": [TOKEN_A]},
            "team-b": {"tokens": [TOKEN_B], "max_sessions": 4},
            "rate": {"tokens": [TOKEN_RATE], "runs_per_minute": 1},
        }}))
        servers = root / "servers.json"
        servers.write_text(json.dumps({"mcpServers": {
            "time": {"command": str(Path(UPSTREAMS_VENV) / "bin" / "mcp-server-time")},
        }}))
        policy = root / "policy.json"
        policy.write_text(json.dumps({"time": {"tools": {"convert_time": "deny"}}}))
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update({
            "MCP_BRIDGE_STATE_DIR": str(root / "state"),
            "MCP_BRIDGE_HTTP_TOKENS_FILE": str(tokens),
            "MCP_SERVERS_CONFIG": str(servers),
            "MCP_BRIDGE_TOOL_POLICY": str(policy),
            "MCP_BRIDGE_ALLOW_HOSTS": "allowed.invalid",
            "MCP_BRIDGE_METRICS_LISTEN": "127.0.0.1:0",
            "MCP_BRIDGE_TOOL_TIMEOUT": "30s",
        })
        bridge = http_bridge()
        self.server = bridge.__enter__()
        self.addCleanup(bridge.__exit__, None, None, None)
        self.assertTrue(self.server.wait_for_log("metrics on http://"), self.server.log())
        self.metrics_url = METRICS_AT.search(self.server.log()).group(1)
        target = urllib.parse.urlsplit(self.metrics_url).netloc
        self.prometheus = Prometheus(target, root)
        self.addCleanup(self.prometheus.stop)

    async def test_prometheus_reads_runs_sessions_calls_and_refusals_per_tenant(self) -> None:
        prom = self.prometheus
        url = self.server.url
        # Before anything happens, every tenant of the file has its series, at zero.
        await prom.wait_for('up{job="bridge"}', 1)
        await prom.wait_for('mcp_bridge_refusals_total{tenant="team-b",reason="max_sessions"}', 0)
        await prom.wait_for('mcp_bridge_info{backend="wasi",transport="http"}', 1)

        status, _, _ = post(url, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                            bearer("nobody-s-token-000000000"))
        self.assertEqual(status, 401)

        async with sdk_session(url, bearer(TOKEN_B), client="b") as b:
            stdout(await b.call_tool("run_python", {"code": "kept = 1", "session": "later"}))
        # team-b's client is gone: its session was saved, and no bridge has it live.
        async with sdk_session(url, bearer(TOKEN_RATE), client="r") as r:
            stdout(await r.call_tool("run_python", {"code": "print(1)"}))
            refused = await r.call_tool("run_python", {"code": "print(2)"})
            self.assertTrue(field(refused, "is_error"))
            self.assertIn("runs_per_minute", text_of(refused))
        async with sdk_session(url, bearer(TOKEN_A), client="a") as a:
            seen = stdout(await a.call_tool("run_python", {"code": TEAM_A_CODE, "servers": ["time"]}))
            lines = seen.splitlines()
            self.assertEqual(lines[0], "time ok")
            self.assertIn("the tool `convert_time` of server `time` is denied by the policy",
                          lines[1])
            self.assertIn("elsewhere.invalid:80 is not in MCP_BRIDGE_ALLOW_HOSTS", lines[2])
            stdout(await a.call_tool("run_python", {"code": "print('again')"}))
            raised = await a.call_tool("run_python", {"code": "1/0"})
            self.assertTrue(field(raised, "is_error"))

            # While team-a's client holds its session, Prometheus sees it live.
            checks = {
                'mcp_bridge_sessions_live{tenant="team-a"}': 1,
                'mcp_bridge_sessions_live{tenant="team-b"}': 0,
                'mcp_bridge_sessions_suspended{tenant="team-b"}': 1,
                'mcp_bridge_runs_total{tenant="team-a",status="completed"}': 2,
                'mcp_bridge_runs_total{tenant="team-a",status="raised"}': 1,
                'mcp_bridge_runs_total{tenant="rate",status="completed"}': 1,
                'mcp_bridge_runs_total{tenant="rate",status="refused"}': 1,
                'mcp_bridge_refusals_total{tenant="rate",reason="runs_per_minute"}': 1,
                'mcp_bridge_refusals_total{tenant="",reason="unauthorized"}': 1,
                'mcp_bridge_proxied_calls_total{tenant="team-a",server="time",outcome="ok"}': 1,
                'mcp_bridge_proxied_calls_total{tenant="team-a",server="time",outcome="refused"}': 1,
                'mcp_bridge_refusals_total{tenant="team-a",reason="policy"}': 1,
                'mcp_bridge_network_connections_total{tenant="team-a",outcome="refused"}': 1,
                'mcp_bridge_refusals_total{tenant="team-a",reason="network"}': 1,
                'mcp_bridge_run_duration_seconds_count{tenant="team-a"}': 3,
                'mcp_bridge_run_duration_seconds_bucket{tenant="team-a",le="+Inf"}': 3,
                'mcp_bridge_proxied_call_duration_seconds_count{server="time"}': 1,
                'sum(mcp_bridge_refusals_total{tenant="team-b"})': 0,
            }
            for expression, expected in checks.items():
                await prom.wait_for(expression, expected)
            # Durations are real: the three runs took some time, less than the deadline.
            total = prom.value('mcp_bridge_run_duration_seconds_sum{tenant="team-a"}')
            self.assertTrue(0 < total < 90, total)
        # Its MCP session ended: its session is saved, no longer live.
        await prom.wait_for('mcp_bridge_sessions_live{tenant="team-a"}', 0)
        await prom.wait_for('mcp_bridge_sessions_suspended{tenant="team-a"}', 1)
        # Labels never carry a token or a client's name.
        with urllib.request.urlopen(self.metrics_url, timeout=10) as answer:
            text = answer.read().decode()
            self.assertTrue(answer.headers["Content-Type"].startswith("application/openmetrics-text"))
        for secret in (TOKEN_A, TOKEN_B, TOKEN_RATE, '"a"', '"b"', "later"):
            self.assertNotIn(secret, text)


class StdioMetrics(unittest.IsolatedAsyncioTestCase):
    """The stdio transport serves the same endpoint; everything is the default tenant's."""

    async def test_a_stdio_bridge_counts_its_runs_as_the_default_tenants(self) -> None:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        port = free_port()
        folder = tempfile.TemporaryDirectory(prefix="bridge-metrics-stdio-")
        self.addCleanup(folder.cleanup)
        env = {**os.environ, "MCP_BRIDGE_STATE_DIR": folder.name,
               "MCP_BRIDGE_METRICS_LISTEN": f"127.0.0.1:{port}", "MCP_BRIDGE_LOG_LEVEL": "warn"}
        params = StdioServerParameters(command=os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode"),
                                       args=["run"], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                stdout(await session.call_tool("run_python", {"code": "x = 1"}))
                failed = await session.call_tool("run_python", {"code": "raise KeyError(x)"})
                self.assertTrue(field(failed, "is_error"))
                url = f"http://127.0.0.1:{port}/metrics"
                text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        for line in ('mcp_bridge_info{version=', 'transport="stdio"} 1',
                     'mcp_bridge_runs_total{tenant="default",status="completed"} 1\n',
                     'mcp_bridge_runs_total{tenant="default",status="raised"} 1\n',
                     'mcp_bridge_sessions_live{tenant="default"} 1\n',
                     'mcp_bridge_run_duration_seconds_count{tenant="default"} 2\n'):
            self.assertIn(line, text)


if __name__ == "__main__":
    unittest.main()
