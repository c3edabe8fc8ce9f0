"""Offline checks of deploy/kubernetes/: no cluster runs here (docs/kubernetes.md says so).

- Every manifest validates strictly (unknown fields refused) against the Kubernetes API
  schemas with `kubernetes-validate` (tests/run.sh installs it; KUBERNETES_VALIDATE names it).
- The HAProxy configuration in the ConfigMap passes `haproxy -c`, and keeps sessions on
  their replica with the same rules as deploy/haproxy/haproxy.cfg, which
  tests/e2e/test_replicas.py runs for real.
- The bridge's Deployment names the image `image build --bridge` makes, its port and health
  path, and the restrictions the image is tested under (non-root, read-only root, no
  capabilities).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
BRIDGE_BIN = os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode")
VALIDATE = os.environ.get("KUBERNETES_VALIDATE") or shutil.which("kubernetes-validate")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
)


def configmap_haproxy_cfg() -> str:
    """The `haproxy.cfg: |` block of haproxy.yaml, unindented."""
    text = (ROOT / "deploy" / "kubernetes" / "haproxy.yaml").read_text()
    block = text.split("  haproxy.cfg: |\n", 1)[1].split("\n---", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines()) + "\n"


def session_rules(cfg: str) -> list[str]:
    return [
        line.strip() for line in cfg.splitlines()
        if line.strip().startswith(("stick", "option httpchk", "http-check", "option redispatch", "balance"))
    ]


class Manifests(unittest.TestCase):
    def test_every_manifest_validates_strictly_against_the_api_schemas(self) -> None:
        if not VALIDATE:
            self.skipTest("SKIP kubernetes: kubernetes-validate is not installed (pip install kubernetes-validate)")
        self.assertGreaterEqual(len(MANIFESTS), 3, MANIFESTS)
        done = subprocess.run(
            [VALIDATE, "--strict", *map(str, MANIFESTS)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        for kind in ("deployment/mcp-bridge", "service/mcp-bridge-replicas", "configmap/mcp-bridge-haproxy",
                     "deployment/mcp-bridge-haproxy", "service/mcp-bridge", "runtimeclass/gvisor"):
            self.assertIn(f"passed for resource {kind} ", done.stdout + done.stderr)

    def test_the_load_balancers_configuration_is_valid_and_keeps_sessions_like_the_tested_one(self) -> None:
        cfg = configmap_haproxy_cfg()
        tested = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
        self.assertEqual(session_rules(cfg), session_rules(tested))
        if not HAPROXY:
            self.skipTest("SKIP kubernetes haproxy -c: HAProxy is not installed")
        with tempfile.NamedTemporaryFile("w", suffix=".cfg") as file:
            file.write(cfg)
            file.flush()
            done = subprocess.run(
                [HAPROXY, "-c", "-f", file.name], env={**os.environ, "POD_NAMESPACE": "default"},
                capture_output=True, text=True, timeout=60, check=False,
            )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def test_the_bridge_deployment_runs_the_bridge_image_as_it_is_tested(self) -> None:
        text = (ROOT / "deploy" / "kubernetes" / "bridge.yaml").read_text()
        version = subprocess.run(
            [BRIDGE_BIN, "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()[-1]
        self.assertIn(f"image: localhost/mcp-server-code-execution-mode:{version}\n", text)
        for needed in ("containerPort: 8765", "path: /healthz", "runAsNonRoot: true",
                       "runAsUser: 65534", "readOnlyRootFilesystem: true", 'drop: ["ALL"]',
                       "allowPrivilegeEscalation: false", "mountPath: /var/lib/mcp-bridge",
                       "mountPath: /tmp", "name: MCP_BRIDGE_HTTP_TOKEN",
                       "name: MCP_BRIDGE_METRICS_LISTEN", "containerPort: 9464",
                       'prometheus.io/port: "9464"'):
            self.assertIn(needed, text)
        self.assertTrue(re.search(r"#\s*runtimeClassName: gvisor", text), "the gVisor option is offered")


if __name__ == "__main__":
    unittest.main()
