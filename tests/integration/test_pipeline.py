"""The pipeline job end to end through the real Jobs API: Ray Data -> Ray Tune (ASHA over Ray Train
runs) -> registry -> Serve over HTTP -> a running drift monitor, on small data.

This is what ``make demo`` submits first, and what a user runs with ``ray job submit -- python -m
jobs.pipeline``. One submission covers the Tune path too (``tune=quick`` with two trials), so the
suite pays for one job.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import ray
import yaml
from ray.job_submission import JobStatus

from foundry import config
from foundry.datasets import generate
from foundry.demo.traffic import LABEL_COLUMNS
from foundry.drift.events import read_events
from foundry.models.predictor import Predictor
from foundry.runtime.jobs import metadata, submit
from foundry.serving.keys import key_digest
from tests import secrets_scan

KEY = "pipeline-test-key-" + uuid.uuid4().hex
MODEL = f"pipe-{uuid.uuid4().hex[:6]}"
JOB_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def pipeline(ray_cluster, job_client, serve_port):
    overrides = [*ray_cluster.overrides, f"model_name={MODEL}", "+experiment=quick",
                 "data.source.synthetic.rows=4000", "trainer.epochs=3", "trainer.num_workers=2",
                 "tune=quick", "tune.num_samples=2", "tune.trial_num_workers=2", "tune.max_concurrent_trials=2",
                 f"serve.app_name={MODEL}", f"serve.route_prefix=/{MODEL}", f"serve.http.port={serve_port}",
                 "serve.autoscaling.min_replicas=1", "serve.autoscaling.initial_replicas=1",
                 "serve.autoscaling.max_replicas=1", "serve.num_cpus=0.5", "serve.access_log=false",
                 "drift.monitor.num_cpus=0.25"]
    cfg = config.load(overrides)
    job = submit(job_client, "jobs.pipeline", overrides, metadata("pipeline", MODEL),
                 submission_id=f"pipeline-{MODEL}", env_vars={"FOUNDRY_API_KEY_SHA256": key_digest(KEY)})
    deadline = time.time() + JOB_TIMEOUT_S
    status = job_client.get_job_status(job.submission_id)
    while not status.is_terminal() and time.time() < deadline:
        time.sleep(2)
        status = job_client.get_job_status(job.submission_id)
    try:
        yield {"cfg": cfg, "submission_id": job.submission_id, "status": status,
               "logs": job_client.get_job_logs(job.submission_id),
               "registry": cfg.storage.layout.open_registry(),
               "url": f"http://127.0.0.1:{serve_port}/{MODEL}"}
    finally:
        from foundry.serving import control

        with contextlib.suppress(ValueError):  # not running
            ray.kill(ray.get_actor(f"foundry-monitor-{MODEL}", namespace="foundry"), no_restart=True)
        control.delete_app(MODEL, wait=False)


def test_the_job_succeeds_and_reports_every_stage(pipeline, job_client):
    assert pipeline["status"] == JobStatus.SUCCEEDED, pipeline["logs"][-5000:]
    logs = pipeline["logs"]
    for stage in ("[1/3] train", "[2/3] deploy", "[3/3] start the drift monitor", "pipeline done"):
        assert stage in logs, stage
    info = job_client.get_job_info(pipeline["submission_id"])
    assert info.metadata == {"job_name": "pipeline", "model": MODEL, "trigger": "manual"}
    assert KEY not in str(info.metadata) and KEY not in logs  # the key travels in env_vars only
    # The same submission id again is "already submitted", not a second job and not an error.
    assert submit(job_client, "jobs.pipeline", [], metadata("pipeline", MODEL),
                  submission_id=pipeline["submission_id"]).already_existed


def test_each_epoch_shows_once_in_the_job_log_without_ray_trains_report_chatter(pipeline):
    """Live progress: every training run's epochs (each Tune trial's) stream into the job's log as they end,
    each line once (Ray Train's print patch showed a printed line twice) and none folded by Ray's log
    deduplication into "[repeated Nx across cluster]", and none of Ray Train's "Reporting training result N:
    TrainingReport(...)" lines in between."""
    epochs = [m.group(1) for m in re.finditer(r"(\[[^\]\s]+\] epoch +\d+ +train_loss .*)$", pipeline["logs"], re.M)]
    assert epochs, pipeline["logs"][-3000:]
    repeated = {line: n for line, n in Counter(epochs).items() if n > 1}
    assert not repeated, repeated
    folded = [line for line in epochs if "repeated" in line]  # Ray's log deduplication, across trials
    assert not folded, folded
    assert "Reporting training result" not in pipeline["logs"]


def test_the_best_trial_is_registered_with_its_search_results_and_promoted(pipeline):
    assert pipeline["status"] == JobStatus.SUCCEEDED
    registry = pipeline["registry"]
    versions = registry.versions(MODEL)
    assert len(versions) == 1 and registry.alias(MODEL, "production") == versions[0].version
    meta = versions[0].metadata
    tuning = meta["tuning"]
    assert tuning["trials"] == 2 and tuning["failed"] == 0
    assert set(tuning["best_config"]) == {"model", "trainer"} and "lr" in tuning["best_config"]["trainer"]
    assert meta["training"]["num_workers"] == 2  # tune.trial_num_workers
    version_dir = registry.fetch(MODEL, versions[0].version)
    results = json.loads((version_dir / "tune_results.json").read_text())
    assert len(results["trials"]) == 2 and results["best"]["trial_id"] == tuning["best_trial"]
    ranked = sorted(results["trials"], key=lambda t: t["best_val_loss"])
    assert ranked[0]["trial_id"] == tuning["best_trial"]
    stored = yaml.safe_load((version_dir / "config.yaml").read_text())
    assert stored["trainer"]["lr"] == pytest.approx(tuning["best_config"]["trainer"]["lr"])
    assert stored["model"]["hidden_sizes"] == tuning["best_config"]["model"]["hidden_sizes"]
    assert meta["metrics"]["roc_auc"] > 0.65


def test_serve_answers_with_the_new_version_and_requires_the_key(pipeline):
    assert pipeline["status"] == JobStatus.SUCCEEDED
    version = pipeline["registry"].alias(MODEL, "production")
    rows = json.loads(generate("churn", "baseline", 5, seed=3).drop(columns=list(LABEL_COLUMNS)).to_json(orient="records"))
    with httpx.Client(base_url=pipeline["url"], timeout=30) as client:
        ok = client.post("/predict", json={"rows": rows}, headers={"X-API-Key": KEY})
        assert ok.status_code == 200, ok.text
        assert ok.json()["model_version"] == version and len(ok.json()["predictions"]) == 5
        assert client.post("/predict", json={"rows": rows}).status_code == 401


def test_the_monitor_watches_the_new_version(pipeline):
    assert pipeline["status"] == JobStatus.SUCCEEDED
    version = pipeline["registry"].alias(MODEL, "production")
    monitor = ray.get_actor(f"foundry-monitor-{MODEL}", namespace="foundry")
    status = ray.get(monitor.status.remote(), timeout=60)
    assert status["reference_version"] == version and status["controller"]["phase"] == "idle"
    started = [e for e in read_events(pipeline["cfg"].storage.root, MODEL) if e["kind"] == "monitor_started"]
    assert len(started) == 1 and started[0]["reference_version"] == version


def test_the_version_is_complete_and_loads_back_beating_chance(pipeline):
    assert pipeline["status"] == JobStatus.SUCCEEDED
    registry = pipeline["registry"]
    version = registry.get(MODEL, "production")
    assert set(version.files) >= {"model.safetensors", "model.json", "preprocessor.json", "config.yaml",
                                  "reference.parquet", "training_history.json", "drift_detectors.json", "drift_detectors.safetensors",
                                  "tune_results.json", "calibration.json"}
    meta = version.metadata
    # Probabilities calibrated on the validation split (the drift alarm's expected error relies on it).
    assert meta["calibration"]["temperature"] > 0 and meta["calibration"]["fitted_on"] == "validation split"
    assert meta["calibration"]["log_loss_after"] <= meta["calibration"]["log_loss_before"] + 1e-9
    assert meta["data"]["fingerprint"] and meta["data"]["rows"] == 4000
    assert sum(meta["data"]["split_rows"].values()) == 4000
    assert meta["lineage"]["trigger"] == "manual" and meta["lineage"]["code_version"]
    assert meta["lineage"]["ray_job_id"]  # trained inside the Jobs API job
    predictor = Predictor.from_dir(registry.fetch(MODEL, version.version))
    fresh = generate("churn", "baseline", 3000, seed=123)  # rows the model never saw
    pred = predictor.predict(fresh)
    y = fresh["churned"].to_numpy()
    accuracy = float((pred.index == y).mean())
    majority = max(y.mean(), 1 - y.mean())
    assert accuracy > majority + 0.02, (accuracy, majority)
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0, rtol=1e-5)
    reference = pd.read_parquet(registry.fetch(MODEL, version.version) / "reference.parquet")
    assert len(reference) > 500 and "churned" in reference.columns


def test_a_worse_challenger_is_registered_but_not_promoted(pipeline, ray_cluster):
    """if_better compares on the same test split: a 1-epoch tiny model must not replace production."""
    from omegaconf import OmegaConf

    from foundry.train.workflow import train_and_register

    assert pipeline["status"] == JobStatus.SUCCEEDED
    registry = pipeline["registry"]
    champion = registry.alias(MODEL, "production")
    raw = config.compose([*ray_cluster.overrides, f"ray.address={ray_cluster.address}", f"model_name={MODEL}",
                          "+experiment=quick", "data.source.synthetic.rows=4000", "trainer.num_workers=1",
                          "trainer.epochs=1", "trainer.lr=0.00001", "model.hidden_sizes=[2]", "drift.enabled=false"])
    outcome = train_and_register(config.to_typed(raw), OmegaConf.to_yaml(raw, resolve=True), say=lambda _: None)
    assert not outcome.promoted, outcome.decision
    assert outcome.champion == champion and registry.alias(MODEL, "production") == champion
    assert registry.get(MODEL, outcome.version).metadata["champion_at_training"]["version"] == champion
    assert registry.get(MODEL, outcome.version).metadata["tuning"] is None


def test_neither_the_api_key_nor_the_cluster_token_is_written_anywhere(pipeline, ray_cluster, job_client):
    """The key went to the job in its runtime_env and on to Serve and the monitor; the token is every
    client's. Neither may be in storage (registry, events, live rows, checkpoints), any Ray log of the
    session, or any job's entrypoint, metadata or log."""
    assert pipeline["status"] == JobStatus.SUCCEEDED
    roots = [Path(ray_cluster.storage_root), secrets_scan.session_dir() / "logs"]
    assert secrets_scan.leaks(KEY, roots, job_client) == []
    assert secrets_scan.leaks(secrets_scan.token(ray_cluster.config), roots, job_client) == []
