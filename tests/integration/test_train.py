"""Training on the shared cluster: data -> Ray Train (2 workers) -> registry, in process and as a Ray job."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from foundry import config, storage
from foundry.datasets import generate
from foundry.job_submission import metadata, submit
from foundry.predictor import Predictor
from foundry.registry import Registry
from tests.conftest import REPO_ROOT

QUICK = ["+experiment=quick", "data.source.synthetic.rows=12000", "trainer.epochs=5"]


def _overrides(ray_cluster, model_name: str, *extra: str) -> list[str]:
    return [*ray_cluster.overrides, f"model_name={model_name}", *QUICK, *extra]


def _registry(ray_cluster) -> Registry:
    return Registry(storage.normalize(config.load(ray_cluster.overrides).storage.registry))


@pytest.fixture(scope="module")
def trained(ray_cluster):
    """One real training run with 2 workers, shared by the assertions below."""
    from foundry.train.workflow import train_and_register

    raw = config.compose(_overrides(ray_cluster, "churn-it", "trainer.num_workers=2"))
    outcome = train_and_register(config.to_typed(raw), OmegaConf.to_yaml(raw, resolve=True), say=lambda _: None)
    return outcome


def test_training_registers_a_complete_version(ray_cluster, trained):
    reg = _registry(ray_cluster)
    version = reg.get("churn-it", trained.version)
    assert set(version.files) >= {"model.safetensors", "model.json", "preprocessor.json", "config.yaml",
                                  "reference.parquet", "training_history.json"}
    meta = version.metadata
    assert meta["data"]["fingerprint"] and meta["data"]["rows"] == 12000
    assert sum(meta["data"]["split_rows"].values()) == 12000
    assert meta["training"]["num_workers"] == 2 and meta["training"]["epochs_run"] >= 1
    assert meta["lineage"]["trigger"] == "manual" and meta["lineage"]["code_version"]
    # First version of a model: nothing to beat, so it becomes production.
    assert trained.promoted and reg.alias("churn-it", "production") == trained.version


def test_registered_model_loads_back_and_beats_chance(ray_cluster, trained):
    reg = _registry(ray_cluster)
    predictor = Predictor.from_dir(reg.fetch("churn-it", "production"))
    fresh = generate("churn", "baseline", 3000, seed=123)  # rows the model never saw
    pred = predictor.predict(fresh)
    y = fresh["churned"].to_numpy()
    accuracy = float((pred.index == y).mean())
    majority = max(y.mean(), 1 - y.mean())
    assert accuracy > majority + 0.02, (accuracy, majority)
    assert trained.metrics["roc_auc"] > 0.75
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0, rtol=1e-5)
    reference = pd.read_parquet(reg.fetch("churn-it", trained.version) / "reference.parquet")
    assert len(reference) > 1000 and "churned" in reference.columns


def test_worse_model_is_registered_but_not_promoted(ray_cluster, trained):
    """if_better compares on the same test split: a 1-epoch tiny model must not replace production."""
    from foundry.train.workflow import train_and_register

    raw = config.compose(_overrides(ray_cluster, "churn-it", "trainer.num_workers=1", "trainer.epochs=1",
                                    "trainer.lr=0.00001", "model.hidden_sizes=[2]"))
    outcome = train_and_register(config.to_typed(raw), OmegaConf.to_yaml(raw, resolve=True), say=lambda _: None)
    reg = _registry(ray_cluster)
    assert not outcome.promoted, outcome.decision
    assert outcome.champion == trained.version
    assert reg.alias("churn-it", "production") == trained.version
    assert reg.get("churn-it", outcome.version).metadata["champion_at_training"]["version"] == trained.version


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
        [sys.executable, "-m", "jobs.train", *_overrides(ray_cluster, model_name),
         f"ray.address={ray_cluster.address}", f"data.source.path={bad}", "data.source.format=csv",
         "data.source.synthetic=null"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "monthly_charges" in proc.stderr and "not numeric" in proc.stderr
    assert "age" in proc.stderr and "above the allowed maximum" in proc.stderr
    assert model_name not in _registry(ray_cluster).models()


def test_train_job_through_jobs_api(ray_cluster, job_client):
    """What a user runs: `ray job submit --working-dir . -- python -m jobs.train ...`, with token auth."""
    from ray.job_submission import JobStatus

    model_name = f"job-{uuid.uuid4().hex[:6]}"
    job = submit(job_client, "jobs.train", _overrides(ray_cluster, model_name, "trainer.num_workers=2"),
                 metadata("train", model_name), submission_id=f"train-{model_name}")
    submission_id = job.submission_id
    # The same submission id again is "already submitted", not a second job and not an error.
    assert submit(job_client, "jobs.train", [], metadata("train", model_name),
                  submission_id=submission_id).already_existed
    info = job_client.get_job_info(submission_id)
    assert info.metadata["job_name"] == "train" and info.metadata["model"] == model_name
    deadline = time.time() + 600
    status = job_client.get_job_status(submission_id)
    while not status.is_terminal() and time.time() < deadline:
        time.sleep(2)
        status = job_client.get_job_status(submission_id)
    logs = job_client.get_job_logs(submission_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert f"registered {model_name} version" in logs
    versions = _registry(ray_cluster).versions(model_name)
    assert len(versions) == 1 and versions[0].metrics["roc_auc"] > 0.7
