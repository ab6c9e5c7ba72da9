"""A real data set that a package ships (scikit-learn's breast cancer table: 569 patients, 30 measured
features whose names hold spaces, a binary diagnosis), brought the way a user brings their own: a CSV and
a data yaml in a folder outside the repository. It trains with ``--config-dir`` and retrains from the
registered version alone (``--from-version``), as the drift loop's retrain jobs do."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from foundry.storage.layout import StorageLayout

MODEL = "cancer"


def _data_yaml(path, columns: list[str]) -> dict:
    return {"name": MODEL, "task": "binary", "label": "diagnosis", "classes": [0, 1],
            "source": {"path": str(path), "format": "csv"},
            "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 3, "key": "patient"},
            "validation": {"min_rows": 100, "max_null_fraction": 0.0}, "reference_rows": 200,
            "features": [{"name": c, "type": "numeric", "min": 0} for c in columns]}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cancer-home")
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.insert(0, "patient", range(84_000, 84_000 + len(frame)))  # an integer id key
    frame.to_csv(folder / "cancer.csv", index=False)
    (folder / "conf" / "data").mkdir(parents=True)
    features = [c for c in frame.columns if c not in ("patient", "diagnosis")]
    (folder / "conf" / "data" / f"{MODEL}.yaml").write_text(yaml.safe_dump(_data_yaml(folder / "cancer.csv", features)))
    return folder


def _train(ray_cluster, cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.train", *args, *ray_cluster.overrides,
                           f"ray.address={ray_cluster.address}"], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_real_data_set_trains_from_a_users_folder_and_retrains_from_the_registry(ray_cluster, home):
    first = _train(ray_cluster, home, "--config-dir", str(home / "conf"), f"data={MODEL}", "model=mlp_small",
                   "trainer.num_workers=1", "trainer.epochs=20", "trainer.batch_size=32", "trainer.lr=0.01")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    registry = StorageLayout(ray_cluster.storage_root).open_registry()
    v1 = registry.alias(MODEL, "production")
    meta = registry.get(MODEL, v1).metadata
    assert meta["metrics"]["roc_auc"] > 0.95, meta["metrics"]  # a real signal, learnt through the platform
    assert meta["drift_detectors"]["built"]
    reference = pd.read_parquet(registry.fetch(MODEL, v1) / "reference.parquet")
    assert len(reference) == 200 and "mean radius" in reference.columns

    # No config folder any more: the stored config carries the schema (30 columns with spaces in their names).
    # Two workers keeping in step by local SGD (averaged every 2 steps and at each epoch's end), on data
    # that is not the bundled generator's: the averaged model must keep the real signal.
    again = _train(ray_cluster, home / "conf" / "data", "--from-version", MODEL, "trainer.epochs=5",
                   "trainer.num_workers=2", "trainer.average_every_steps=2")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    versions = [mv.version for mv in registry.versions(MODEL)]
    assert len(versions) == 2 and versions[0] == v1
    retrained = registry.get(MODEL, versions[1]).metadata
    assert retrained["champion_at_training"]["version"] == v1 and retrained["training"]["epochs_run"] <= 5
    sync = retrained["training"]["sync"]
    assert sync["strategy"] == "local_sgd" and sync["average_every_steps"] == 2 and sync["steps"] > 0, sync
    assert retrained["metrics"]["roc_auc"] > 0.95, retrained["metrics"]
