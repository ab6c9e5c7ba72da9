"""Experiment tracking end to end (``tracking.mlflow.enabled=true``, foundry/train/tracking.py): a tiny
model trained and registered on the shared cluster is one MLflow run in a local folder, with the
model/trainer params, every epoch's metrics (logged by the Ray Train controller's callback), the test
metrics and the registered version as a tag; a Tune search adds one child run per trial. Read back with
MLflow's own client."""

from __future__ import annotations

import uuid

import pytest

from foundry import config
from foundry.train import tracking

pytest.importorskip("mlflow")

TINY = ["+experiment=quick", "data.source.synthetic.rows=4000", "trainer.num_workers=1", "drift.enabled=false",
        "promotion.policy=always", "tracking.mlflow.enabled=true"]


def _train(ray_cluster, tmp_path, *overrides: str):
    from omegaconf import OmegaConf

    from foundry.train.workflow import train_and_register

    model = f"tracked-{uuid.uuid4().hex[:6]}"
    raw = config.compose([*ray_cluster.overrides, f"ray.address={ray_cluster.address}", f"model_name={model}",
                          *TINY, f"tracking.mlflow.uri={tmp_path / 'mlruns'}", *overrides])
    cfg = config.to_typed(raw)
    outcome = train_and_register(cfg, OmegaConf.to_yaml(raw, resolve=True), say=lambda _: None)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(cfg.tracking.mlflow, cfg.storage.root))
    experiment = client.get_experiment_by_name(model)  # tracking.mlflow.experiment: null -> model_name
    assert experiment is not None
    return cfg, outcome, client, client.search_runs([experiment.experiment_id])


def _epochs(client, run_id: str, key: str = "val_loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_a_training_job_is_one_mlflow_run(ray_cluster, tmp_path):
    cfg, outcome, client, runs = _train(ray_cluster, tmp_path, "trainer.epochs=3")
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.tags["foundry.version"] == outcome.version
    assert run.data.tags["foundry.promoted"] == "true" and run.data.tags["foundry.trigger"] == "manual"
    assert run.info.run_name == run.data.tags["foundry.run_name"]
    assert run.data.params == tracking.flatten_params(cfg.model, cfg.trainer)
    assert run.data.params["trainer.epochs"] == "3"
    registry = cfg.storage.layout.open_registry()
    epochs_run = registry.get(cfg.model_name, outcome.version).metadata["training"]["epochs_run"]
    for key in tracking.EPOCH_METRICS:  # every epoch, from the controller's callback as it ended
        assert _epochs(client, run.info.run_id, key) == list(range(epochs_run)), key
    for key, value in outcome.metrics.items():
        assert run.data.metrics[f"test_{key}"] == pytest.approx(value)
    assert not list(client.list_artifacts(run.info.run_id))  # the registry holds the model, MLflow nothing


def test_a_tune_search_nests_one_run_per_trial(ray_cluster, tmp_path):
    cfg, outcome, client, runs = _train(
        ray_cluster, tmp_path, "trainer.epochs=2", "tune=quick", "tune.num_samples=2", "tune.max_concurrent_trials=2")
    (job,) = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get(tracking.PARENT_TAG) == job.info.run_id]
    assert len(trials) == 2 and len(runs) == 3
    assert job.data.tags["foundry.version"] == outcome.version and job.info.status == "FINISHED"
    (best,) = [t for t in trials if t.data.tags.get("foundry.best_trial") == "true"]
    for trial in trials:
        assert trial.info.run_name == f"{job.info.run_name}-{trial.data.tags[tracking.TRIAL_TAG]}"
        assert trial.data.params["trainer.checkpoint_every_s"] == "0.0"  # the config the trial trained with
        assert _epochs(client, trial.info.run_id)[0] == 0
    # The job's run: the best trial's config and epochs, then the test metrics.
    assert set(job.data.params) == set(best.data.params)
    assert {k for k, v in job.data.params.items() if best.data.params[k] != v} <= {"trainer.checkpoint_every_s"}
    assert _epochs(client, job.info.run_id) == _epochs(client, best.info.run_id)
    assert "test_log_loss" in job.data.metrics
