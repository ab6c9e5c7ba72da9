"""Experiment tracking (foundry/train/tracking.py): the ``tracking.mlflow`` keys are checked naming the key,
the params are the model/trainer config as Hydra overrides write it, and the driver's side of a run
(params, epochs, test metrics, tags) reads back from a local MLflow folder. No Ray cluster needed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

from foundry import config
from foundry.errors import ConfigError
from foundry.train import tracking

ON = "tracking.mlflow.enabled=true"


def test_tracking_is_off_by_default_and_off_tracks_nothing():
    cfg = config.load([])
    assert cfg.tracking.mlflow.enabled is False and cfg.tracking.mlflow.uri is None
    tracker = tracking.start(cfg.tracking.mlflow, cfg.storage.root, cfg.model_name, "run", {}, say=None)
    assert not tracker.enabled and tracker.train_callbacks() == [] and tracker.tune_callbacks(cfg) == []
    tracker.log_params(cfg.model, cfg.trainer)  # no-ops
    tracker.end()


def test_off_imports_no_mlflow():
    # Importing MLflow costs ~0.5 s of every training job's driver (time to heal): off must not pay it.
    code = ("import sys\nfrom foundry import config\nfrom foundry.train import tracking\n"
            "cfg = config.load([])\n"
            "t = tracking.start(cfg.tracking.mlflow, cfg.storage.root, cfg.model_name, 'run', {}, say=None)\n"
            "t.set_tags({'a': 1}); t.log_params(cfg.model, cfg.trainer); t.log_test_metrics({'accuracy': 0.5})\n"
            "t.log_history([]); t.end()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("overrides, key, words", [
    ([ON, "storage.root=s3://bucket/foundry"], "tracking.mlflow.uri", "storage.root"),
    ([ON, "tracking.mlflow.uri=gs://bucket/mlruns"], "tracking.mlflow.uri", "object store"),
    ([ON, "tracking.mlflow.uri=''"], "tracking.mlflow.uri", "must not be empty"),
    ([ON, "tracking.mlflow.experiment=' '"], "tracking.mlflow.experiment", "non-empty"),
])
def test_bad_tracking_settings_name_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as err:
        config.load(overrides)
    assert str(err.value).startswith(key) and words in str(err.value)


def test_good_tracking_settings_pass_and_off_is_never_checked():
    remote = config.load([ON, "storage.root=s3://bucket/foundry", "tracking.mlflow.uri=http://mlflow:5000"])
    assert remote.tracking.mlflow.uri == "http://mlflow:5000"
    assert config.load(["storage.root=s3://bucket/foundry"]).tracking.mlflow.enabled is False
    named = config.load([ON, "tracking.mlflow.experiment=churn-experiments"])
    assert named.tracking.mlflow.experiment == "churn-experiments"
    with pytest.raises(ConfigError, match="enabld"):
        config.load(["tracking.mlflow.enabld=true"])


def test_the_uri_defaults_to_a_folder_under_storage_root(tmp_path, monkeypatch):
    m = config.MlflowTrackingConfig(enabled=True)
    assert tracking.tracking_uri(m, str(tmp_path)) == (tmp_path / "mlruns").as_uri()
    monkeypatch.chdir(tmp_path)  # a relative folder is made absolute: Ray's controller runs elsewhere
    assert tracking.tracking_uri(dataclasses.replace(m, uri="runs"), "/x") == (tmp_path / "runs").as_uri()
    for uri in ("http://mlflow:5000", "https://m.example.com", "file:///srv/mlruns", "databricks"):
        assert tracking.tracking_uri(dataclasses.replace(m, uri=uri), "/x") == uri


def test_params_are_every_model_and_trainer_key_as_an_override_writes_it():
    cfg = config.load(["model.hidden_sizes=[32,16]", "trainer.lr=0.002", "trainer.warm_start_from=null"])
    params = tracking.flatten_params(cfg.model, cfg.trainer)
    expected = {f"model.{f.name}" for f in dataclasses.fields(config.ModelConfig)}
    expected |= {f"trainer.{f.name}" for f in dataclasses.fields(config.TrainerConfig)}
    assert set(params) == expected
    assert params["model.hidden_sizes"] == "[32, 16]" and params["trainer.lr"] == "0.002"
    assert params["trainer.use_gpu"] == "false" and params["trainer.warm_start_from"] == "null"
    assert all(isinstance(v, str) for v in params.values())
    # Each param is an override that gives back the same config.
    again = config.load([f"{k}={v}" for k, v in params.items()])
    assert again.model == cfg.model and again.trainer == cfg.trainer


def test_a_trials_params_are_the_config_it_trains_with():
    cfg = config.load(["tune=quick", "tune.trial_num_workers=2"])
    params = tracking.trial_params(cfg, {"model": {"hidden_sizes": [64, 32]}, "trainer": {"lr": 0.01}})
    assert params["model.hidden_sizes"] == "[64, 32]" and params["trainer.lr"] == "0.01"
    assert params["trainer.num_workers"] == "2" and params["trainer.checkpoint_every_s"] == "0.0"
    bad = tracking.trial_params(cfg, {"model": {"dropout": 7.0}})  # invalid: the trial fails; its run says why
    assert bad == {"model.dropout": "7.0"}


def test_an_epoch_report_becomes_metrics_at_its_epoch():
    report = {"epoch": 3, "train_loss": 0.5, "val_loss": 0.6, "best_val_loss": 0.55, "best_epoch": 2,
              "rows_per_s": 1e4, "early_stopped": False, "ended_at": 1.7e9, "checkpoint_path": "/x"}
    step, values = tracking.epoch_metrics(report)
    assert step == 3 and set(values) == set(tracking.EPOCH_METRICS) and values["best_epoch"] == 2.0


def test_enabled_without_mlflow_names_the_key_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    m = config.MlflowTrackingConfig(enabled=True)
    with pytest.raises(ConfigError) as err:
        tracking.start(m, "/tmp/x", "churn", "run", {}, say=None)
    assert "tracking.mlflow.enabled" in str(err.value) and "foundry[tracking]" in str(err.value)


def _history(n: int) -> list[dict]:
    now = time.time()
    return [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.1 / (e + 1), "best_val_loss": 1.1 / (e + 1),
             "best_epoch": e, "rows_per_s": 100.0, "early_stopped": False, "ended_at": now + e} for e in range(n)]


def test_the_drivers_side_of_a_run_reads_back(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = config.load([ON, f"storage.root={tmp_path}"])
    said = []
    tracker = tracking.start(cfg.tracking.mlflow, cfg.storage.root, cfg.model_name, "churn-run-1",
                             {"foundry.trigger": "manual", "foundry.drift_episode": None}, say=said.append)
    assert tracker.enabled and "churn-run-1" in said[0]
    tracker.log_params(cfg.model, cfg.trainer)
    (callback,) = tracker.train_callbacks()
    for report in _history(3):  # what Ray Train's controller hands the callback after each epoch
        callback.after_report(None, [report, report], None)
    tracker.log_test_metrics({"log_loss": 0.4, "accuracy": 0.8, "rows": 100})
    tracker.set_tags({"foundry.version": "v0001"})
    tracker.end()

    client = MlflowClient(tracking.tracking_uri(cfg.tracking.mlflow, cfg.storage.root))
    experiment = client.get_experiment_by_name(cfg.model_name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "churn-run-1" and run.info.status == "FINISHED"
    assert run.data.params == tracking.flatten_params(cfg.model, cfg.trainer)
    assert run.data.tags["foundry.version"] == "v0001" and run.data.tags["foundry.model"] == cfg.model_name
    assert "foundry.drift_episode" not in run.data.tags
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1, 2]
    assert run.data.metrics["test_accuracy"] == 0.8 and run.data.metrics["test_rows"] == 100
    assert not list(client.list_artifacts(run.info.run_id))  # no artifacts: nothing that loads as code


def test_an_unreachable_tracking_server_leaves_the_job_untracked(monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    m = config.MlflowTrackingConfig(enabled=True, uri="http://127.0.0.1:9")
    said = []
    tracker = tracking.start(m, "/tmp/x", "churn", "run", {}, say=said.append)
    assert not tracker.enabled and "untracked" in said[0]
