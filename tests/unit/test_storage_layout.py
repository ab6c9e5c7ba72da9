"""The storage layout is pinned: data written by an older version must stay where a newer one looks.

Every path is spelled out literally below; a change to ``foundry.storage.layout`` that moves any of them
fails here first (and then needs a migration, not an edit of this file). The atomic table writer must
leave the old file or the whole new one, and no temporaries, whatever fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from foundry import storage
from foundry.config import StorageConfig
from foundry.drift.events import events_uri
from foundry.drift.live_store import live_uri
from foundry.drift.new_normal import reference_uri
from foundry.drift.retrain import dataset_uri
from foundry.drift.state import STATE_FILE, state_uri
from foundry.registry import Registry
from foundry.serving.feedback import feedback_uri
from foundry.serving.ledger import ledger_actor_name, ledger_uri
from foundry.storage.layout import MONITOR_STATE_FILE, StorageLayout
from foundry.storage.tables import HourlyTable

MODEL = "churn"


def expected(root: str) -> dict[str, str]:
    """Today's layout under a normalized ``root``, written out by hand."""
    return {
        "root": root,
        "registry": f"{root}/registry",
        "checkpoints": f"{root}/checkpoints",
        "datasets": f"{root}/datasets",
        "feedback": f"{root}/feedback",
        "monitoring": f"{root}/monitoring",
        "model_feedback": f"{root}/feedback/churn",
        "model_monitoring": f"{root}/monitoring/churn",
        "live_rows": f"{root}/monitoring/churn/live",
        "events": f"{root}/monitoring/churn/events",
        "ledger": f"{root}/monitoring/churn/ledger",
        "monitor_state": f"{root}/monitoring/churn/state.json",
        "retrain_sets": f"{root}/monitoring/churn/retrain",
        "retrain_set": f"{root}/monitoring/churn/retrain/churn-e3-d2.parquet",
        "new_normal": f"{root}/monitoring/churn/new_normal/churn-v4-n1.parquet",
    }


def actual(layout: StorageLayout) -> dict[str, str]:
    return {
        "root": layout.root,
        "registry": layout.registry,
        "checkpoints": layout.checkpoints,
        "datasets": layout.datasets,
        "feedback": layout.feedback,
        "monitoring": layout.monitoring,
        "model_feedback": layout.model_feedback(MODEL),
        "model_monitoring": layout.model_monitoring(MODEL),
        "live_rows": layout.live_rows(MODEL),
        "events": layout.events(MODEL),
        "ledger": layout.ledger(MODEL),
        "monitor_state": layout.monitor_state(MODEL),
        "retrain_sets": layout.retrain_sets(MODEL),
        "retrain_set": layout.retrain_set(MODEL, "churn-e3", 2),
        "new_normal": layout.new_normal(MODEL, "churn-v4-n1"),
    }


@pytest.mark.parametrize("root, normalized", [
    ("s3://bucket/foundry", "s3://bucket/foundry"),
    ("s3://bucket/foundry/", "s3://bucket/foundry"),
    ("gs://bucket/a/b", "gs://bucket/a/b"),
])
def test_uri_roots_keep_todays_paths(root, normalized):
    assert actual(StorageLayout(root)) == expected(normalized)


def test_local_roots_are_absolute(tmp_path, monkeypatch):
    real = str(tmp_path.resolve())
    assert actual(StorageLayout(str(tmp_path))) == expected(real)
    assert actual(StorageLayout(f"{tmp_path}/")) == expected(real)
    monkeypatch.chdir(tmp_path)  # a relative root is resolved where it is asked for (jobs run elsewhere)
    assert actual(StorageLayout("store")) == expected(f"{real}/store")
    monkeypatch.setenv("HOME", real)
    assert actual(StorageLayout("~/foundry")) == expected(f"{real}/foundry")


def test_a_symlinked_area_resolves_as_before(tmp_path):
    """Areas are normalized whole, as the per-module helpers did: a linked registry folder resolves."""
    (tmp_path / "big").mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "registry").symlink_to(tmp_path / "big")
    assert StorageLayout(str(root)).registry == str((tmp_path / "big").resolve())


def test_the_module_helpers_are_the_layout(tmp_path):
    """The per-area helpers that replicas and the monitor call with a bare root agree with the layout."""
    root = str(tmp_path)
    layout = StorageLayout(root)
    assert live_uri(root, MODEL) == layout.live_rows(MODEL)
    assert events_uri(root, MODEL) == layout.events(MODEL)
    assert ledger_uri(root, MODEL) == layout.ledger(MODEL)
    assert feedback_uri(root, MODEL) == layout.model_feedback(MODEL)
    assert state_uri(root, MODEL) == layout.monitor_state(MODEL)
    assert dataset_uri(root, MODEL, "churn-e3", 2) == layout.retrain_set(MODEL, "churn-e3", 2)
    assert dataset_uri(root, MODEL, "churn-e3") == layout.retrain_set(MODEL, "churn-e3", 1)
    assert reference_uri(root, MODEL, "n1") == layout.new_normal(MODEL, "n1")
    assert STATE_FILE == MONITOR_STATE_FILE == "state.json"
    # The ledger actor's name hashes the normalized root: the same for every spelling of it.
    assert ledger_actor_name(MODEL, root) == ledger_actor_name(MODEL, f"{root}/")


def test_config_section_and_registry_factory(tmp_path):
    section = StorageConfig(root=str(tmp_path))
    assert section.layout == StorageLayout(str(tmp_path)) == StorageLayout.of(section)
    registry = section.layout.open_registry()
    assert isinstance(registry, Registry)
    assert registry.root == f"{tmp_path.resolve()}/registry"


# ----- the atomic table writer ------------------------------------------------------------------------

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_a_table_or_a_frame(tmp_path):
    fs = pafs.LocalFileSystem()
    path = f"{tmp_path}/a/b/t.parquet"
    storage.write_table_atomic(fs, path, pa.table({"x": [1, 2]}))
    assert pq.read_table(path).column("x").to_pylist() == [1, 2]
    storage.write_table_atomic(fs, path, pd.DataFrame({"y": ["u", "v"]}, index=[7, 8]))
    back = pd.read_parquet(path)
    assert list(back.columns) == ["y"] and list(back.index) == [0, 1]  # no index column written
    assert _leftovers(tmp_path / "a" / "b") == []


def test_a_table_that_fails_to_encode_leaves_the_old_file(tmp_path):
    fs = pafs.LocalFileSystem()
    path = f"{tmp_path}/t.parquet"
    storage.write_table_atomic(fs, path, pa.table({"x": [1]}))
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        storage.write_table_atomic(fs, path, pd.DataFrame({"x": [1, "a", object()]}))
    assert pq.read_table(path).column("x").to_pylist() == [1]
    assert sorted(os.listdir(tmp_path)) == ["t.parquet"]


def test_a_failed_local_write_leaves_no_partial_file(tmp_path, monkeypatch):
    fs = pafs.LocalFileSystem()
    path = f"{tmp_path}/t.parquet"
    storage.write_table_atomic(fs, path, pa.table({"x": [1]}))

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # after the temporary is written, before it is renamed
    with pytest.raises(OSError, match="disk full"):
        storage.write_table_atomic(fs, path, pa.table({"x": [2, 3]}))
    monkeypatch.undo()
    assert pq.read_table(path).column("x").to_pylist() == [1]
    assert sorted(os.listdir(tmp_path)) == ["t.parquet"]


class _FailingMove(pafs._MockFileSystem):
    """pyarrow's in-memory filesystem (it stands in for a bucket) whose move fails."""

    def move(self, src, dest):
        raise OSError("copy failed")


def test_a_failed_object_store_write_leaves_no_partial_object():
    fs = _FailingMove()
    with pytest.raises(OSError, match="copy failed"):
        storage.write_table_atomic(fs, "bucket/t/x.parquet", pa.table({"x": [1]}))
    infos = fs.get_file_info(pafs.FileSelector("bucket/t", allow_not_found=True))
    assert [i.path for i in infos if i.type == pafs.FileType.File] == []


def test_object_store_writes_land_whole():
    fs = pafs._MockFileSystem()
    storage.write_table_atomic(fs, "bucket/t/x.parquet", pa.table({"x": [1, 2]}))
    infos = fs.get_file_info(pafs.FileSelector("bucket/t"))
    assert [i.base_name for i in infos] == ["x.parquet"]
    assert pq.read_table("bucket/t/x.parquet", filesystem=fs).num_rows == 2


def test_hourly_tables_append_through_the_atomic_writer(tmp_path, monkeypatch):
    table = HourlyTable(str(tmp_path / "live"), "at")
    rows = pa.table({"at": pa.array([pd.Timestamp.now(tz="UTC")], pa.timestamp("us", tz="UTC"))})
    path = table.append(rows)
    assert pq.read_table(path).num_rows == 1

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        table.append(rows)
    monkeypatch.undo()
    folder = Path(path).parent
    assert _leftovers(folder) == [] and [p.name for p in folder.iterdir()] == [Path(path).name]
