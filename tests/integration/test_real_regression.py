"""A regression model on a real data set that a package ships (scikit-learn's diabetes table: 442 patients,
age, sex and 8 measurements, disease progression a year later), brought as a user brings their own (a CSV
with an integer id and a data yaml in a folder outside the repository), trained, served, drifted and healed
through the public commands only.

What only a regression model exercises: numeric labels through ``/feedback`` (the traffic generator sent
every label as a string, which ``/feedback`` rightly refuses for a regression model with 422, and the
refusals were dropped unseen: the monitor saw no label at all), the labelled alarm's large-error rate
on a small reference (100 rows: foundry/drift/alarm.py, exact order-statistic bound), the squared-error
promotion gate, and the rollout of a numeric predictor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes

from foundry.demo.traffic import TrafficGenerator, mean_abs_error
from foundry.drift.events import read_events
from foundry.storage.layout import StorageLayout
from tests.healing import EPISODE_ENDS, MONITOR, SERVE, run_module

MODEL = "diabetes"
LABEL = "progression"
API_KEY = "regression-key-" + "Jb2sVh0kWq3nE8rLx5TzYc"
HEAL_TIMEOUT_S = 480
RETRAIN = ['drift.retrain.overrides=["trainer.num_workers=1","trainer.epochs=30","trainer.batch_size=32",'
           '"trainer.lr=0.01"]', "drift.retrain.min_labelled_rows=800"]
MEASURED = ["age", "bmi", "bp", "s1", "s2", "s3", "s5", "s6"]


def _data_yaml(path) -> dict:
    return {"name": MODEL, "task": "regression", "label": LABEL,
            "source": {"path": str(path), "format": "csv"},
            "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1, "key": "patient_id"},
            "validation": {"min_rows": 100, "max_null_fraction": 0.0}, "reference_rows": 100,
            "features": [*({"name": c, "type": "numeric", "min": 0} for c in [*MEASURED, "s4"]),
                         {"name": "sex", "type": "categorical", "values": ["1", "2"]}]}


def patients(frame: pd.DataFrame, rows: int, seed: int, worse_for_high_bmi: float = 0.0) -> pd.DataFrame:
    """``rows`` patients drawn from the table with 2% measurement noise; ``worse_for_high_bmi``: the
    progression of every patient with a BMI above 26 is that much higher (a concept shift: the same
    measurements, another outcome)."""
    rng = np.random.default_rng(seed)
    out = frame.sample(rows, replace=True, random_state=seed).drop(columns=["patient_id"]).reset_index(drop=True)
    for c in MEASURED:
        out[c] = (out[c] * rng.normal(1.0, 0.02, rows)).round(3)
    out[LABEL] = out[LABEL] + worse_for_high_bmi * (out["bmi"] > 26)
    return out


@pytest.fixture(scope="module")
def served(ray_cluster, serve_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("diabetes-home")
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": LABEL})
    frame["sex"] = frame["sex"].astype(int)
    frame.insert(0, "patient_id", range(5000, 5000 + len(frame)))  # an integer id key
    frame.to_csv(home / "diabetes.csv", index=False)
    (home / "conf" / "data").mkdir(parents=True)
    (home / "conf" / "data" / f"{MODEL}.yaml").write_text(yaml.safe_dump(_data_yaml(home / "diabetes.csv")))
    env = {**os.environ, "FOUNDRY_API_KEY": API_KEY}
    root = [f"storage.root={ray_cluster.storage_root}"]
    trained = run_module("jobs.train", ["--config-dir", str(home / "conf"), f"data={MODEL}", *ray_cluster.overrides,
                                        f"ray.address={ray_cluster.address}", "model=mlp_small", "trainer.num_workers=1",
                                        "trainer.epochs=60", "trainer.batch_size=32", "trainer.lr=0.01",
                                        f"serve.http.port={serve_port}", f"serve.app_name={MODEL}",
                                        f"serve.route_prefix=/{MODEL}", *SERVE, *MONITOR, *RETRAIN],
                         env, timeout=600, cwd=home)
    for module in ("serve_apps.deploy", "jobs.monitor"):
        run_module(module, ["--from-version", MODEL, *root], env, cwd=home)
    registry = StorageLayout(ray_cluster.storage_root).open_registry()
    traffic = TrafficGenerator(f"http://127.0.0.1:{serve_port}/{MODEL}", API_KEY, rows_per_request=20, concurrency=2)
    try:
        yield {"frame": frame, "registry": registry, "traffic": traffic, "trained": trained,
               "v1": registry.alias(MODEL, "production"), "storage_root": ray_cluster.storage_root}
    finally:
        traffic.close()
        subprocess.run([sys.executable, "-m", "jobs.monitor", "--from-version", MODEL, *root, "--stop"],
                       cwd=home, env=env, capture_output=True, timeout=120)
        from foundry.serving import control

        control.delete_app(MODEL, wait=False)


def test_a_real_regression_model_drifts_retrains_on_numeric_labels_and_heals(served):
    v1, registry, traffic = served["v1"], served["registry"], served["traffic"]
    meta = registry.get(MODEL, v1).metadata
    assert meta["task"] == "regression" and meta["metrics"]["r2"] > 0.3, meta["metrics"]  # a real signal

    traffic.send_frame(patients(served["frame"], 600, seed=1), LABEL, phase="baseline")
    traffic.flush_labels()
    assert traffic.log.labels_sent == 600 and traffic.log.labels_refused == 0, traffic.log.label_errors
    kinds = [e["kind"] for e in read_events(served["storage_root"], MODEL)]
    assert "drift_detected" not in kinds

    deadline, seed = time.monotonic() + HEAL_TIMEOUT_S, 100
    while time.monotonic() < deadline and not EPISODE_ENDS & set(kinds):
        traffic.send_frame(patients(served["frame"], 200, seed=seed, worse_for_high_bmi=150.0), LABEL,
                           phase="drift", rate_rows_per_s=250)
        seed += 1
        kinds = [e["kind"] for e in read_events(served["storage_root"], MODEL)]
    traffic.send_frame(patients(served["frame"], 400, seed=seed, worse_for_high_bmi=150.0), LABEL, phase="drift")
    traffic.flush_labels()

    events = read_events(served["storage_root"], MODEL)
    story = ["drift_detected", "retrain_submitted", "retrain_finished", "promoted", "rolled_out", "rebased"]
    assert [e["kind"] for e in events if e["kind"] in story] == story, [(e["kind"], e["message"]) for e in events]
    assert traffic.log.labels_refused == 0, traffic.log.label_errors
    detected = next(e for e in events if e["kind"] == "drift_detected")
    assert "labelled error" in detected["message"], detected["message"]
    new = registry.alias(MODEL, "production")
    assert new != v1 and registry.get(MODEL, new).metadata["lineage"]["parent_version"] == v1
    before = [r for r in traffic.log.records if r.phase == "drift" and r.version == v1]
    after = [r for r in traffic.log.records if r.phase == "drift" and r.version == new]
    assert after, "no drifted request was answered by the new version"
    assert mean_abs_error(after) < 0.8 * mean_abs_error(before), (mean_abs_error(before), mean_abs_error(after))
    assert not traffic.log.failed(), traffic.log.failed()[:3]
    print(f"\ndiabetes (regression): mean absolute error on the drifted rows {mean_abs_error(before):.1f} "
          f"-> {mean_abs_error(after):.1f} after the heal")
