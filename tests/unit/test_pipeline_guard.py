"""``jobs.pipeline`` never leaves a model served without its drift monitor: when the monitor cannot start
after the deploy, Serve goes back to what it served before (or the new application is removed) and the
job fails with exit code 5. Before, the pipeline died with exit 1 and the model stayed served, unwatched.

Training, Serve and the monitor are replaced by recorders here: the subject is the pipeline's decision,
not those parts (each has its own integration tests on the real cluster)."""

from __future__ import annotations

import pytest

from foundry.serving import control
from foundry.serving.holder import user_config_for
from foundry.train.workflow import TrainOutcome
from jobs import monitor as monitor_job
from jobs import pipeline as pipeline_job


@pytest.fixture
def stage(monkeypatch, tmp_path):
    calls: list[tuple] = []
    monkeypatch.setenv("FOUNDRY_API_KEY", "pipeline-guard-key-" + "9D9E-7xW8MILWjh7ffrTuD7Z")
    monkeypatch.setattr("foundry.runtime.connection.connect", lambda *a, **k: None)
    monkeypatch.setattr("foundry.runtime.connection.configure_data", lambda *a, **k: None)
    monkeypatch.setattr("foundry.train.workflow.train_and_register",
                        lambda cfg, yaml: TrainOutcome(cfg.model_name, "v2", {"roc_auc": 0.9}, True, "better"))
    monkeypatch.setattr(control, "deploy", lambda cfg, **k: calls.append(("deploy",)) or control.Deployed(
        cfg.serve.app_name, "v2", "http://127.0.0.1:8000"))
    monkeypatch.setattr(control, "delete_app", lambda name, wait=True: calls.append(("delete", name)))
    monkeypatch.setattr(control, "set_model_version", lambda app, ref, data=None: calls.append(("set", app, ref)))

    def no_monitor(cfg, timeout_s=300.0):
        raise RuntimeError("the actor cannot be scheduled")

    monkeypatch.setattr(monitor_job, "start", no_monitor)
    # Not deployed before (a test may say otherwise): nothing here may reach a real Serve or Ray.
    monkeypatch.setattr(control, "current_user_config", lambda app: (_ for _ in ()).throw(
        control.ServeControlError("not deployed")))
    sources = pipeline_job.config_sources.ConfigSources((f"storage.root={tmp_path}",))
    return calls, sources


def test_a_new_application_is_removed_when_its_monitor_cannot_start(stage):
    calls, sources = stage
    with pytest.raises(pipeline_job.MonitorStartError, match="the Serve application was removed") as err:
        pipeline_job.pipeline(sources)
    assert err.value.exit_code == 5 and "cannot be scheduled" in str(err.value)
    assert calls == [("deploy",), ("delete", "foundry")]


def test_a_running_application_goes_back_to_its_previous_version(stage, monkeypatch, tmp_path):
    calls, sources = stage
    monkeypatch.setattr(control, "current_user_config",
                        lambda app: user_config_for(str(tmp_path), "churn", "production", "v1"))
    with pytest.raises(pipeline_job.MonitorStartError, match="Serve is back on v1"):
        pipeline_job.pipeline(sources)
    assert calls == [("deploy",), ("set", "foundry", "v1")]


def test_drift_disabled_serves_without_a_monitor_on_purpose(stage, tmp_path):
    calls, _ = stage
    sources = pipeline_job.config_sources.ConfigSources((f"storage.root={tmp_path}", "drift.enabled=false"))
    result = pipeline_job.pipeline(sources)
    assert result["monitor"] is None and calls == [("deploy",)]
