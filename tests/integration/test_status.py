"""``python -m foundry.ops.status`` shows the cluster, jobs and registry of the running platform."""

from __future__ import annotations

import subprocess
import sys
import uuid

from foundry import config
from tests.conftest import REPO_ROOT


def test_status_shows_nodes_and_registered_models(ray_cluster, tmp_path):
    model = f"status-{uuid.uuid4().hex[:6]}"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "weights.bin").write_bytes(b"\x00" * 16)
    registry = config.load(ray_cluster.overrides).storage.layout.open_registry()
    version = registry.register(model, artifacts, {"metrics": {"roc_auc": 0.8125}, "primary_metric": "roc_auc"})
    registry.set_alias(model, "production", version.version)

    proc = subprocess.run([sys.executable, "-m", "foundry.ops.status", *ray_cluster.overrides],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for section in ("== cluster", "== serve", "== named actors", "== recent jobs", "== registry"):
        assert section in out
    assert "nodes: 1 head" in out
    assert ray_cluster.dashboard_url in out
    assert model in out and version.version in out and "roc_auc=0.8125" in out
