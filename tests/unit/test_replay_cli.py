"""``python -m jobs.replay``'s sources and version choice (the engine itself: tests/unit/test_drift_monitor.py,
benchmarks/drift_bench.py; the stored live rows: tests/integration/test_self_healing.py)."""

from __future__ import annotations

import json

import pytest

from foundry import config, datasets
from foundry.errors import DataSourceError
from jobs import replay
from tests.versions import register_version

MODEL = "replayed"


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """v1, then v2 (production): a replay without --version would take v2."""
    root = tmp_path_factory.mktemp("replay-root")
    cfg = config.load([f"storage.root={root}", f"model_name={MODEL}"])
    registry = cfg.storage.layout.open_registry()
    v1 = register_version(registry, cfg, root / "w1", alias=None)
    v2 = register_version(registry, cfg, root / "w2", steps=80)
    rows = datasets.generate("churn", "baseline", 1200, seed=4)
    return {"root": str(root), "v1": v1, "v2": v2, "rows": rows}


def _run(capsys, *argv: str) -> dict:
    replay.replay(replay.arguments([*argv, "--quiet"]))
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_csv_stream_is_read_like_a_parquet_one(two_versions, tmp_path, capsys):
    """Catches: a CSV history (what most users keep) refused, or read with other rows than its Parquet twin."""
    two_versions["rows"].to_csv(tmp_path / "history.csv", index=False)
    two_versions["rows"].to_parquet(tmp_path / "history.parquet")
    root = f"storage.root={two_versions['root']}"
    from_csv = _run(capsys, "--from-version", MODEL, "--stream", str(tmp_path / "history.csv"), root)
    from_parquet = _run(capsys, "--from-version", MODEL, "--stream", str(tmp_path / "history.parquet"), root)
    assert from_csv["rows"] == from_parquet["rows"] == 1200 and from_csv["labels"] == 1200
    assert from_csv["alarms"] == from_parquet["alarms"]
    assert replay.stream_format(str(tmp_path / "history.csv")) == "csv"
    assert replay.stream_format(str(tmp_path)) == "parquet"  # a folder of mixed files: Parquet, as before


def test_the_version_from_version_names_is_the_one_replayed(two_versions, tmp_path, capsys):
    """Catches: ``--from-version MODEL@v1`` replaying production (v2) with v1's config."""
    two_versions["rows"].to_parquet(tmp_path / "rows.parquet")
    root = f"storage.root={two_versions['root']}"
    stream = ["--stream", str(tmp_path / "rows.parquet"), root]
    assert _run(capsys, "--from-version", f"{MODEL}@{two_versions['v1']}", *stream)["version"] == two_versions["v1"]
    assert _run(capsys, "--from-version", MODEL, *stream)["version"] == two_versions["v2"]
    assert _run(capsys, "--from-version", f"{MODEL}@{two_versions['v1']}", "--version", f"{MODEL}@production",
                *stream)["version"] == two_versions["v2"]


@pytest.mark.parametrize("name", ["missing.parquet", "not-parquet.parquet", "notes.txt"])
def test_an_unreadable_stream_is_a_data_error_naming_it(two_versions, tmp_path, name):
    if name != "missing.parquet":
        (tmp_path / name).write_text("this is not a table\n")
    args = replay.arguments(["--from-version", MODEL, "--stream", str(tmp_path / name),
                             f"storage.root={two_versions['root']}", "--quiet"])
    with pytest.raises(DataSourceError, match=f"--stream {tmp_path / name}"):
        replay.replay(args)
