"""Training's fast paths on a real cluster: a split that fits is held in memory by each worker (no Ray Data
streaming split), one that does not streams; checkpoints follow ``trainer.checkpoint_every_s`` (always
one after the last epoch), and a run restarted under the same name resumes from that checkpoint with
the weights and optimizer it holds."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from foundry import config
from foundry.datasets import generate
from foundry.train import shards
from foundry.train.loop import STATE_FILE

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


def _cleaner_actors() -> int:
    from ray.util.state import list_actors

    return len(list_actors(filters=[("class_name", "=", "PlacementGroupCleaner")], limit=10_000))


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
    cleaners = _cleaner_actors()
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=2"])
    # A single fit starts no placement-group cleaner (foundry/train/torch_trainer.py); one worker, no sync.
    assert _cleaner_actors() == cleaners
    assert state["sync"] == {"strategy": "single_worker"}
    assert state["data_path"] == {"train": "InMemoryShard", "val": "InMemoryShard"}
    assert len(state["history"]) == 2 and all(h["val_loss"] > 0 for h in state["history"])
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=2", "trainer.in_memory_max_mb=0"])
    assert state["data_path"] == {"train": "StreamingShard", "val": "StreamingShard"}
    assert len(state["history"]) == 2


def test_checkpoint_cadence_and_resume_from_the_last_checkpoint(ray_cluster, prepared_churn):
    # Every epoch with 0; with a long cadence only the last epoch's checkpoint is written.
    _, every, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=3", "trainer.checkpoint_every_s=0"])
    assert len(every) == 3
    state, sparse, name = _fit(ray_cluster, prepared_churn, ["trainer.epochs=3", "trainer.checkpoint_every_s=3600"])
    assert len(sparse) == 1 and state["epoch"] == 3
    # The same run name again, with more epochs: Ray Train restores the run's last checkpoint and the loop
    # continues from epoch 3 with the weights and optimizer state it holds (digests equal at the restore).
    resumed, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=5", "trainer.checkpoint_every_s=3600"],
                         name=name)
    (resume,) = resumed["resumes"]
    assert resume["at_epoch"] == 3 and resume["restored"] == resume["checkpoint"]
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2, 3, 4]


def test_a_fit_asked_for_it_starts_ray_trains_placement_group_cleaner(ray_cluster, prepared_churn):
    # Ray Train's detached cleaner is one more process per fit() (~1 s of a small one here); a single fit
    # goes without by default (the test above), Tune trials and trainer.placement_group_cleaner keep it.
    # Counted through Ray's state API, which lists dead actors too.
    before = _cleaner_actors()
    _fit(ray_cluster, prepared_churn, ["trainer.epochs=1", "trainer.placement_group_cleaner=true"])
    assert _cleaner_actors() == before + 1


def test_two_workers_keep_in_step_by_local_sgd_or_ddp_as_configured(ray_cluster, prepared_churn):
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=2", "trainer.num_workers=2",
                                                     "trainer.average_every_steps=4"])
    steps_in_two_epochs = sum(-(-(prepared_churn[0].split_rows["train"] // 2) // 64) for _ in range(2))
    assert state["sync"] == {"strategy": "local_sgd", "average_every_steps": 4, "steps": steps_in_two_epochs}
    assert all(h["val_loss"] > 0 for h in state["history"])
    state, _, _ = _fit(ray_cluster, prepared_churn, ["trainer.epochs=1", "trainer.num_workers=2",
                                                     "trainer.average_every_steps=1"])
    assert state["sync"] == {"strategy": "ddp"}
