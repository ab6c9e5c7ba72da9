"""The training job refuses bad data: exit code 3, every problem named, nothing written to the registry.

Training itself (Ray Data -> Ray Train with 2 workers -> registry, through the Jobs API) is covered
by ``test_pipeline.py``, whose job trains the same way, and by the retrain job of
``test_self_healing.py``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

from foundry import config, storage
from foundry.datasets import generate
from foundry.registry import Registry
from tests.conftest import REPO_ROOT

QUICK = ["+experiment=quick", "data.source.synthetic.rows=12000", "trainer.epochs=5"]


def _write_bad_data(tmp_path) -> str:
    df = generate("churn", "baseline", 3000, seed=5)
    df["monthly_charges"] = df["monthly_charges"].astype(object)
    df.loc[:9, "monthly_charges"] = "twelve"
    df.loc[20:24, "age"] = 150
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return str(path)


def test_bad_data_fails_the_job_and_writes_nothing(ray_cluster, tmp_path):
    bad = _write_bad_data(tmp_path)
    model_name = f"bad-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train", *ray_cluster.overrides, f"model_name={model_name}", *QUICK,
         f"ray.address={ray_cluster.address}", f"data.source.path={bad}", "data.source.format=csv",
         "data.source.synthetic=null"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "monthly_charges" in proc.stderr and "not numeric" in proc.stderr
    assert "age" in proc.stderr and "above the allowed maximum" in proc.stderr
    registry = Registry(storage.normalize(config.load(ray_cluster.overrides).storage.registry))
    assert model_name not in registry.models()
