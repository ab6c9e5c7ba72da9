"""Storage maintenance (``foundry.ops.maintenance``): retention collects exactly what is older than its setting,
never a version an alias points at or pointed at, and compaction leaves one file per hour."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from foundry import config
from foundry.drift.events import EventLog, read_events
from foundry.drift.live_store import LiveStore
from foundry.ops.maintenance import maintain
from foundry.registry import Registry

DAY = 86_400


@pytest.fixture
def cfg(tmp_path):
    return config.load([f"storage.root={tmp_path}", "model_name=churn"])


def _version(reg: Registry, tmp_path, name: str, promoted: bool) -> str:
    d = tmp_path / f"stage-{name}"
    d.mkdir()
    (d / "weights.bin").write_bytes(name.encode())
    return reg.register("churn", d, {"promotion": {"promoted": promoted}}).version


def test_versions_that_lost_the_gate_are_collected_but_never_an_aliased_one(cfg, tmp_path):
    reg = cfg.storage.layout.open_registry()
    champion = _version(reg, tmp_path, "a", True)
    reg.set_alias("churn", "production", champion)
    lost = _version(reg, tmp_path, "b", False)
    once_candidate = _version(reg, tmp_path, "c", False)
    reg.set_alias("churn", "candidate", once_candidate)
    reg.set_alias("churn", "candidate", champion)  # moved away: still in the alias history
    newest = _version(reg, tmp_path, "d", False)

    assert maintain(cfg)["versions"] == []  # all younger than rejected_versions_days
    report = maintain(cfg, now=time.time() + 31 * DAY)
    assert report["versions"] == [lost]
    assert {v.version for v in reg.versions("churn")} == {champion, once_candidate, newest}
    assert reg.get("churn", "production").version == champion


def test_checkpoints_and_retrain_sets_of_this_model_only_are_collected_after_their_retention(cfg, tmp_path):
    mine = tmp_path / "checkpoints" / "churn-20261101-000000-abcd"
    other = tmp_path / "checkpoints" / "parcels-20261101-000000-abcd"
    for d in (mine, other):
        (d / "checkpoint_000001").mkdir(parents=True)
        (d / "checkpoint_000001" / "model.safetensors").write_bytes(b"x")
    retrain = tmp_path / "monitoring" / "churn" / "retrain"
    retrain.mkdir(parents=True)
    (retrain / "churn-v1-e1-d1.parquet").write_bytes(b"x")
    assert maintain(cfg, now=time.time() + 29 * DAY)["checkpoints"] == []
    report = maintain(cfg, now=time.time() + 91 * DAY)
    assert report["checkpoints"] == [mine.name] and not mine.exists() and other.exists()
    assert report["retrain_sets"] == ["churn-v1-e1-d1.parquet"] and not list(retrain.iterdir())


def _write_live_rows(live: LiveStore, now: datetime, days: tuple[int, ...], per_day: int) -> None:
    """``per_day`` one-row files ``<days_ago>-<k>``, 10 minutes apart, ``days_ago`` days before ``now``."""
    for days_ago in days:
        for k in range(per_day):
            at = now - timedelta(days=days_ago, minutes=10 * k)
            live.write(pd.DataFrame({"request_id": [f"{days_ago}-{k}"], "received_at": [pd.Timestamp(at)]}), at)


def test_live_rows_and_events_are_compacted_and_expired(tmp_path):
    cfg = config.load([f"storage.root={tmp_path}", "model_name=churn", "storage.retention.events_days=30"])
    live = LiveStore(cfg.storage.root, "churn")
    now = datetime.now(timezone.utc).replace(minute=30)
    _write_live_rows(live, now, days=(40, 2), per_day=4)
    clock = iter([now - timedelta(days=40), now - timedelta(days=2, minutes=5), now - timedelta(days=2)])
    events = EventLog(cfg.storage.root, "churn", clock=lambda: next(clock))
    for kind in ("a", "b", "c"):
        events.write(kind, kind)
    report = maintain(cfg, now=now.timestamp())
    assert report["live"]["hours_expired"] >= 1 and report["events"]["hours_expired"] == 1
    assert sorted(live.read_range()["request_id"]) == [f"2-{k}" for k in range(4)]
    assert [e["kind"] for e in read_events(cfg.storage.root, "churn")] == ["b", "c"]
    assert live.table.file_count() <= 4  # one merged file and one manifest per remaining hour (at most 2 hours)


def test_a_routine_pass_compacts_only_recent_hours_and_a_full_pass_all(cfg):
    live = LiveStore(cfg.storage.root, "churn")
    now = datetime.now(timezone.utc).replace(minute=30)
    _write_live_rows(live, now, days=(5, 1), per_day=3)
    routine = maintain(cfg, now=now.timestamp(), full=False)["live"]["files_merged"]
    assert 0 < routine < 6  # the day-old hour(s) only
    assert maintain(cfg, now=now.timestamp(), full=True)["live"]["files_merged"] >= 3  # the 5-day-old hour now
    assert sorted(live.read_range()["request_id"]) == sorted(f"{d}-{k}" for d in (5, 1) for k in range(3))
