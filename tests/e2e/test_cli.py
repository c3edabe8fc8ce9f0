"""End-to-end: the command-line subcommands a user runs by hand."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest

BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")


class Doctor(unittest.TestCase):
    def test_doctor_reports_backends_caches_and_where_settings_came_from(self) -> None:
        with tempfile.TemporaryDirectory() as state:
            env = {**os.environ, "MCP_BRIDGE_TIMEOUT": "45s", "MCP_BRIDGE_STATE_DIR": state}
            done = subprocess.run(
                [BRIDGE_BIN, "doctor", "--json", "--memory", "256m"],
                env=env, capture_output=True, text=True, timeout=120, check=True,
            )
        report = json.loads(done.stdout)
        wasi = next(b for b in report["backends"] if b["backend"] == "wasi")
        self.assertTrue(wasi["available"], wasi)
        self.assertIn("CPython 3.15.0", wasi["detail"])  # the full interpreter, provisioned
        origins = {o["variable"]: o for o in report["configuration"]}
        self.assertEqual(origins["MCP_BRIDGE_TIMEOUT"]["from"], "environment")
        self.assertEqual(origins["MCP_BRIDGE_TIMEOUT"]["text"], "45s")
        self.assertEqual(origins["MCP_BRIDGE_MEMORY"]["from"], "flag")
        self.assertEqual(origins["MCP_BRIDGE_OUTPUT_MODE"]["from"], "default")

    def test_doctor_says_where_sandboxes_may_go_and_never_a_secret_value(self) -> None:
        secret = "doctor-must-not-print-this-4c1d"
        with tempfile.TemporaryDirectory() as state:
            env = {
                **os.environ,
                "MCP_BRIDGE_STATE_DIR": state,
                "MCP_BRIDGE_ALLOW_HOSTS": "api.example.com,*.example.org:8443",
                "MCP_BRIDGE_ALLOW_PRIVATE": "10.1.2.3",
                "MCP_BRIDGE_SECRETS": "DOCTOR_TOKEN@api.example.com",
                "DOCTOR_TOKEN": secret,
            }
            text = subprocess.run(
                [BRIDGE_BIN, "doctor"],
                env=env, capture_output=True, text=True, timeout=120, check=True,
            ).stdout
            report = json.loads(subprocess.run(
                [BRIDGE_BIN, "doctor", "--json", "--backend", "podman"],
                env=env, capture_output=True, text=True, timeout=120, check=True,
            ).stdout)
        self.assertNotIn(secret, text)
        self.assertIn("allowed hosts      api.example.com,*.example.org:8443", text)
        self.assertIn("a WASI sandbox has no sockets", text)  # the default backend
        self.assertIn("refused but for 10.1.2.3", text)
        self.assertIn("DOCTOR_TOKEN@api.example.com", text)
        self.assertIn("cannot carry them: use fetch", text)
        network = report["network"]
        self.assertEqual(network["ways"], ["fetch", "proxy"])
        self.assertEqual(network["allowed_private"], ["10.1.2.3/32"])
        self.assertNotIn(secret, json.dumps(report))

    def test_json_logs_are_one_object_per_line(self) -> None:
        with tempfile.TemporaryDirectory() as state:
            done = subprocess.run(
                [BRIDGE_BIN, "run"],
                env={**os.environ, "MCP_BRIDGE_LOG_FORMAT": "json", "MCP_BRIDGE_LOG_LEVEL": "info",
                     "MCP_BRIDGE_STATE_DIR": state},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
            )
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        self.assertTrue(lines, done.stderr)
        events = [json.loads(line) for line in lines]  # every line is one JSON object
        for event in events:
            self.assertTrue({"timestamp", "level", "target"} <= event.keys(), event)
        # No client on stdin: the fatal error that ends the run is a JSON line too.
        self.assertNotEqual(done.returncode, 0)
        self.assertTrue(any(e["level"] == "ERROR" and "MCP initialisation failed" in e.get("message", "")
                            for e in events), events)
        self.assertEqual(done.stdout, "")

    def test_an_invalid_setting_stops_start_up_naming_it(self) -> None:
        done = subprocess.run(
            [BRIDGE_BIN, "run"],
            env={**os.environ, "MCP_BRIDGE_MEMORY": "lots"},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("MCP_BRIDGE_MEMORY=lots is invalid", done.stderr)
        self.assertEqual(done.stdout, "")


if __name__ == "__main__":
    unittest.main()
