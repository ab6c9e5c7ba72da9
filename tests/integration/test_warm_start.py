"""A warm-started training run (``trainer.warm_start_from``, what every drift retrain uses) starts
from the named version's preprocessor and weights, counts those weights as a candidate against
every epoch, and the promotion gate refuses a challenger that is no better.

The proof is byte-level: with a learning rate too small to change the validation loss, no epoch
beats the starting weights, so the new version's weights file must be the champion's, byte for byte.
A run that ignored the starting weights (random initialisation) or let the last epoch win would
register other weights; a gate that promoted on a tie would move the alias.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid

from foundry import config, datasets
from foundry.models.predictor import WEIGHTS_FILE
from tests.conftest import REPO_ROOT
from tests.versions import register_version


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_warm_start_begins_at_the_champion_and_the_gate_refuses_a_tie(ray_cluster, tmp_path):
    model = f"warm-{uuid.uuid4().hex[:6]}"
    base = [*ray_cluster.overrides, f"model_name={model}", "+experiment=quick"]
    cfg = config.load(base)
    registry = cfg.storage.layout.open_registry()
    v1 = register_version(registry, cfg, tmp_path / "v1")
    data = tmp_path / "rows.parquet"
    datasets.generate("churn", "baseline", 4000, seed=21).to_parquet(data, index=False)

    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train", *base, f"ray.address={ray_cluster.address}",
         "data.source.synthetic=null", f"data.source.path={data}", "data.source.format=parquet",
         "trainer.num_workers=1", "trainer.epochs=2", "trainer.lr=1e-12", f"trainer.warm_start_from={model}@production"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"warm start from {model} version {v1}" in proc.stdout

    versions = [mv for mv in registry.versions(model) if mv.version != v1]
    assert len(versions) == 1
    new = versions[0]
    meta = new.metadata
    warm = meta["training"]["warm_start"]
    assert warm["version"] == f"{model}@{v1}" and warm["kept_starting_weights"], warm
    assert warm["initial_val_loss"] > 0
    # It is the champion, so it keeps the champion's calibration: refitting the temperature on these rows
    # would let a recalibration alone pass for a better model.
    assert meta["calibration"]["fitted_on"] == f"kept from {v1} (its weights were kept)", meta["calibration"]
    assert _sha(registry.fetch(model, new.version) / WEIGHTS_FILE) == _sha(registry.fetch(model, v1) / WEIGHTS_FILE)
    # Same weights, same rows: no evidence of improvement, so the alias stays.
    assert registry.alias(model, "production") == v1
    assert meta["promotion"]["promoted"] is False
    gate = meta["promotion"]["gate"]
    assert gate["relative_improvement"] == 0 and gate["rows"] > 0, gate
    # A tie is conclusive: even the upper confidence bound of the gain is 0 (no retrain on these rows helps).
    assert gate["no_gain"] is True and "no gain to be had" in meta["promotion"]["decision"]


def test_warm_start_from_another_schema_is_a_config_error(ray_cluster, tmp_path):
    model = f"warm-{uuid.uuid4().hex[:6]}"
    base = [*ray_cluster.overrides, f"model_name={model}", "+experiment=quick"]
    registry = config.load(base).storage.layout.open_registry()
    register_version(registry, config.load(base), tmp_path / "v1")
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train", *base, f"ray.address={ray_cluster.address}", "data=churn_segment",
         f"trainer.warm_start_from={model}@production"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "trainer.warm_start_from" in proc.stderr and "another schema" in proc.stderr
    assert len(registry.versions(model)) == 1
