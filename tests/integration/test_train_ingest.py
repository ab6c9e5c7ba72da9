"""Training's fast paths on a real cluster: a split that fits is held in memory by each worker (no Ray Data
streaming split), one that does not streams; checkpoints follow ``trainer.checkpoint_every_s`` (always
one after the last epoch), and a run restarted under the same name resumes from that checkpoint with
the weights and optimizer it holds."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from foundry import config
from foundry.datasets import generate
from foundry.train import shards
from foundry.train.loop import SETTINGS_REF, STATE_FILE, loop_settings

ROWS = 3000
BASE = ["trainer.num_workers=1", "trainer.batch_size=64", "trainer.early_stopping_patience=100",
        "trainer.checkpoints_to_keep=10", "drift.enabled=false"]


@pytest.fixture(scope="module")
def prepared_churn(ray_cluster, tmp_path_factory):
    from foundry.data.pipeline import prepare
    from foundry.models import model_spec

    path = tmp_path_factory.mktemp("ingest") / "churn.parquet"
    generate("churn", "baseline", ROWS, seed=3).to_parquet(path, index=False)
    source = [f"data.source.path={path}", "data.source.format=parquet", "data.source.synthetic=null"]
    cfg = config.load([*ray_cluster.overrides, *source, *BASE])
    prepared = prepare(cfg.data)
    return prepared, model_spec(cfg.model, prepared.preprocessor), source


def _fit(ray_cluster, prepared_churn, extra: list[str], name: str | None = None):
    from foundry.train.trainer import build_trainer

    prepared, spec, source = prepared_churn
    cfg = config.load([*ray_cluster.overrides, *source, *BASE, *extra])
    name = name or f"ingest-{uuid.uuid4().hex[:6]}"
    result = build_trainer(cfg, {"train": prepared.train, "val": prepared.val}, spec, name).fit()
    with result.checkpoint.as_directory() as d:
        state = json.loads(Path(d, STATE_FILE).read_text())
    run_dir = Path(cfg.storage.layout.checkpoints) / name
    return state, sorted(p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()), name


PER_FIT_EXTRAS = ("PlacementGroupCleaner", "DatasetManager", "PreemptionWatcher")


def _actor_counts() -> dict[str, int]:
    """How many of Ray Train's optional per-fit actors have ever been started (the state API lists dead
    actors too)."""
    from ray.util.state import list_actors

    return {name: len(list_actors(filters=[("class_name", "=", name)], limit=10_000)) for name in PER_FIT_EXTRAS}


def _started_since(before: dict[str, int]) -> dict[str, int]:
    return {name: n - before[name] for name, n in _actor_counts().items()}


def test_the_plan_holds_small_materialized_splits_and_streams_the_rest(prepared_churn):
    prepared = prepared_churn[0]
    held = shards.plan({"train": prepared.train, "val": prepared.val}, 2, 512)
    assert set(held) == {"train", "val"} and held["train"].equal and not held["val"].equal
    assert held["train"].total_rows == prepared.split_rows["train"]
    assert shards.plan({"train": prepared.train}, 1, 1e-6) == {}  # over the budget: streamed
    assert shards.plan({"train": prepared.train}, 1, 0) == {}  # 0: always streamed
    lazy = prepared.train.map_batches(lambda b: b)  # not materialized: streamed
    assert shards.plan({"train": lazy}, 1, 512) == {}


def test_in_memory_and_streaming_runs_train_and_report_their_path(ray_cluster, prepared_churn):
    before = _actor_counts()
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=2"])
    # An in-memory fit starts none of Ray Train's optional processes (foundry/train/torch_trainer.py);
    # one worker, no sync.
    assert _started_since(before) == {"PlacementGroupCleaner": 0, "DatasetManager": 0, "PreemptionWatcher": 0}
    assert state["sync"] == {"strategy": "single_worker"}
    assert state["data_path"] == {"train": "InMemoryShard", "val": "InMemoryShard"}
    assert len(state["history"]) == 2 and all(h["val_loss"] > 0 for h in state["history"])
    before = _actor_counts()
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=2", "trainer.in_memory_max_mb=0"])
    assert state["data_path"] == {"train": "StreamingShard", "val": "StreamingShard"}
    assert len(state["history"]) == 2
    # Streamed splits need Ray Train's dataset manager: it is started for them.
    assert _started_since(before) == {"PlacementGroupCleaner": 0, "DatasetManager": 1, "PreemptionWatcher": 0}


def test_checkpoint_cadence_and_resume_from_the_last_checkpoint(ray_cluster, prepared_churn):
    # Every epoch with 0; with a long cadence only the last epoch's checkpoint is written.
    every_state, every, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=3", "trainer.checkpoint_every_s=0"])
    assert len(every) == 3 and every_state["reports"] == 3
    state, sparse, name = _fit(ray_cluster, prepared_churn, ["trainer.epochs=3", "trainer.checkpoint_every_s=3600"])
    assert len(sparse) == 1 and state["epoch"] == 3
    # With no callback reading every epoch, an epoch without a checkpoint is not reported: each report
    # waits for the controller's next poll.
    assert state["reports"] == 1
    # The same run name again, with more epochs: Ray Train restores the run's last checkpoint and the loop
    # continues from epoch 3 with the weights and optimizer state it holds (digests equal at the restore).
    resumed, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=5", "trainer.checkpoint_every_s=3600"],
                         name=name)
    (resume,) = resumed["resumes"]
    assert resume["at_epoch"] == 3 and resume["restored"] == resume["checkpoint"]
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3, 4]


def test_a_fit_asked_for_them_starts_the_cleaner_and_the_preemption_watcher(ray_cluster, prepared_churn):
    # Each is one more process per fit() (~1 s of CPU on 2 cores); a single fit goes without by default
    # (the test above); Tune trials and trainer.placement_group_cleaner keep the cleaner,
    # trainer.preemption_watcher (on in conf/trainer/gpu.yaml) starts the watcher.
    before = _actor_counts()
    _fit(ray_cluster, prepared_churn, ["trainer.epochs=1", "trainer.placement_group_cleaner=true",
                                       "trainer.preemption_watcher=true"])
    assert _started_since(before) == {"PlacementGroupCleaner": 1, "DatasetManager": 0, "PreemptionWatcher": 1}


def test_two_workers_keep_in_step_by_local_sgd_or_ddp_as_configured(ray_cluster, prepared_churn):
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=2", "trainer.num_workers=2",
                                                     "trainer.average_every_steps=4"])
    steps_in_two_epochs = sum(-(-(prepared_churn[0].split_rows["train"] // 2) // 64) for _ in range(2))
    assert state["sync"] == {"strategy": "local_sgd", "average_every_steps": 4, "steps": steps_in_two_epochs}
    assert all(h["val_loss"] > 0 for h in state["history"])
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=1", "trainer.num_workers=2",
                                                     "trainer.average_every_steps=1"])
    assert state["sync"] == {"strategy": "ddp"}


@pytest.mark.parametrize("override, watcher", [([], "0"), (["trainer.preemption_watcher=true"], "1"),
                                               (["trainer=gpu"], "1")])
def test_build_trainer_hands_the_controller_nothing_that_imports_torch(ray_cluster, prepared_churn, monkeypatch,
                                                                       override, watcher):
    # What the controller unpickles (foundry/train/torch_backend.py, loop.loop_settings) and the two
    # settings Ray reads from the driver's environment when fit() starts it (foundry/train/trainer.py).
    from foundry.train.torch_backend import LazyTorchConfig
    from foundry.train.torch_trainer import LeanTorchTrainer
    from foundry.train.trainer import POLL_ENV, PREEMPTION_WATCHER_ENV, build_trainer

    monkeypatch.setenv(PREEMPTION_WATCHER_ENV, "unset")
    monkeypatch.setenv(POLL_ENV, "unset")
    prepared, spec, source = prepared_churn
    cfg = config.load([*ray_cluster.overrides, *source, *BASE, *override])
    trainer = build_trainer(cfg, {"train": prepared.train, "val": prepared.val}, spec, "env-check")
    assert os.environ[PREEMPTION_WATCHER_ENV] == watcher
    assert float(os.environ[POLL_ENV]) == cfg.trainer.controller_poll_s
    assert isinstance(trainer, LeanTorchTrainer) and isinstance(trainer.backend_config, LazyTorchConfig)
    assert trainer.backend_config.backend == ("nccl" if cfg.trainer.use_gpu else "gloo")
    assert list(trainer.train_loop_config) == [SETTINGS_REF]  # a reference, not the settings
    settings = loop_settings(trainer.train_loop_config)
    assert settings["trainer"] == cfg.trainer and settings["spec"] == spec
    assert set(settings["in_memory"]) == {"train", "val"}


@pytest.mark.parametrize("worker_var", [None, "120"])
def test_the_workers_get_no_controller_variables_and_no_runtime_env_of_their_own(ray_cluster, tmp_path, monkeypatch,
                                                                                  worker_var):
    # foundry/train/train_controller.py: the controller's own variables go by argument, so a worker of a
    # driver without a runtime environment starts without Ray's setup_worker step; a variable meant for
    # the workers still reaches them. The controller got its own: the preemption-watcher counts above.
    from ray.train import RunConfig, ScalingConfig

    from foundry.train.torch_backend import LazyTorchConfig
    from foundry.train.torch_trainer import LeanTorchTrainer

    def report_worker_env():  # nested: pickled by value (a test module is not importable on the cluster)
        import ray

        return {"runtime_env": json.dumps(ray.get_runtime_context().runtime_env),
                "poll": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"),
                "collective": os.environ.get("RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S")}

    # A value of its own: a raylet started from this test process after an earlier build_trainer (which
    # sets the variable here for good) passes its own copy to every process it starts.
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.123")
    if worker_var is None:
        monkeypatch.delenv("RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S", raising=False)
    else:
        monkeypatch.setenv("RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S", worker_var)
    result = LeanTorchTrainer(report_worker_env, scaling_config=ScalingConfig(num_workers=1),
                              torch_config=LazyTorchConfig(),
                              run_config=RunConfig(name=f"env-{uuid.uuid4().hex[:6]}", storage_path=str(tmp_path))).fit()
    seen = result.return_value
    runtime_env = json.loads(seen["runtime_env"])
    assert seen["poll"] != "0.123"  # the controller's, never a worker's
    assert seen["collective"] == worker_var
    if worker_var is None:
        assert "env_vars" not in runtime_env
    else:
        assert runtime_env["env_vars"] == {"RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S": worker_var}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lone_cpu_worker_sets_up_no_process_group_and_never_imports_ray_train_torch(ray_cluster, tmp_path,
                                                                                    monkeypatch, workers):
    # foundry/train/torch_backend.py: one CPU worker has no peer and no device to select, so the backend
    # only sets torch's distributed variables and the worker never imports ray.train.torch (0.3 s of every
    # small retrain's start); two workers still get Ray's gloo process group.
    import random

    from ray.train import RunConfig, ScalingConfig

    from foundry.train.torch_backend import LazyTorchConfig
    from foundry.train.torch_trainer import LeanTorchTrainer

    def report_torch_setup():  # nested: pickled by value (a test module is not importable on the cluster)
        import sys

        import torch.distributed as dist

        from foundry.train.loop import worker_device

        device = worker_device()
        return {"ray_train_torch": "ray.train.torch" in sys.modules, "process_group": dist.is_initialized(),
                "world": dist.get_world_size() if dist.is_initialized() else None, "device": str(device),
                "env": [os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")]}

    # A worker variable of a value no earlier test used: the workers get a runtime environment of their own,
    # so fresh processes (an idle one that ran an earlier test's code could have imported anything).
    monkeypatch.setenv("RAY_TRAIN_COLLECTIVE_WARN_INTERVAL_S", str(random.randrange(1000, 10**6)))
    result = LeanTorchTrainer(report_torch_setup, scaling_config=ScalingConfig(num_workers=workers),
                              torch_config=LazyTorchConfig(),
                              run_config=RunConfig(name=f"pg-{uuid.uuid4().hex[:6]}", storage_path=str(tmp_path))).fit()
    seen = result.return_value
    assert seen["device"] == "cpu"
    if workers == 1:
        assert seen == {"ray_train_torch": False, "process_group": False, "world": None, "device": "cpu",
                        "env": ["0", "1", "0", None]}
    else:
        assert seen["process_group"] and seen["world"] == 2 and seen["ray_train_torch"]
        assert seen["env"][:3] == ["0", "2", "0"] and seen["env"][3]
