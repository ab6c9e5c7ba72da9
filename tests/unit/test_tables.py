"""``foundry.storage.tables.HourlyTable`` on many days of synthetic history: range reads touch only the files of
the range, compaction keeps every row exactly once, retention deletes exactly what is older."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from foundry.storage import tables
from foundry.storage.tables import HourlyTable

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _batch(start: int, n: int, at: datetime) -> pa.Table:
    return pa.table({"request_id": [f"r{start + i:08d}" for i in range(n)],
                     "received_at": pa.array([at] * n, pa.timestamp("ms", tz="UTC"))})


def _history(table: HourlyTable, hours: int, files_per_hour: int = 3, rows: int = 4) -> int:
    n = 0
    for h in range(hours):
        for k in range(files_per_hour):
            at = T0 + timedelta(hours=h, minutes=10 * k)
            table.append(_batch(n, rows, at), at)
            n += rows
    return n


def _checksum(t: pa.Table | None) -> tuple[int, str]:
    ids = sorted(t["request_id"].to_pylist()) if t is not None else []
    return len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()


def test_a_range_read_opens_only_the_files_of_its_hours(tmp_path, monkeypatch):
    table = HourlyTable(str(tmp_path / "t"), "received_at", slack=timedelta(minutes=5))
    _history(table, hours=24 * 10)  # ten days, 720 files
    opened = []
    real = pq.read_table
    monkeypatch.setattr(tables.pq, "read_table", lambda f, **kw: opened.append(f) or real(f, **kw))
    since = T0 + timedelta(days=9, hours=20)
    got = table.read_range(since, since + timedelta(hours=1))
    assert got.num_rows == 3 * 4
    # the hour itself and the next one (slack: rows written a little after they were received)
    assert len(opened) == 6 and all("date=2026-11-10/hour=20" in f or "hour=21" in f for f in opened)


def test_compaction_keeps_every_row_exactly_once_and_leaves_one_file_per_hour(tmp_path):
    table = HourlyTable(str(tmp_path / "t"), "received_at")
    n = _history(table, hours=30, files_per_hour=5)
    before = _checksum(table.read_range())
    assert before[0] == n and table.file_count() == 150
    now = T0 + timedelta(hours=40)
    report = table.compact(timedelta(minutes=5), now)
    assert report.partitions == 30 and report.files_merged == 150 and report.rows == n
    assert _checksum(table.read_range()) == before
    assert table.file_count() == 60  # one merged file and its manifest per hour
    # a late file in a compacted hour is read too, then merged on the next run; nothing is counted twice
    late_at = T0 + timedelta(hours=3, minutes=59)
    table.append(_batch(10**6, 2, late_at), late_at)
    assert _checksum(table.read_range())[0] == n + 2
    assert table.compact(timedelta(minutes=5), now).partitions == 1
    assert _checksum(table.read_range())[0] == n + 2 and table.file_count() == 60
    assert table.compact(timedelta(minutes=5), now).partitions == 0  # nothing left to do


def test_files_younger_than_min_age_wait_for_the_next_run(tmp_path):
    table = HourlyTable(str(tmp_path / "t"), "received_at")
    for minute in (0, 10, 50, 55):
        at = T0 + timedelta(minutes=minute)
        table.append(_batch(minute * 10, 3, at), at)
    table.compact(timedelta(minutes=8), T0 + timedelta(minutes=56))  # 50 and 55 are too young
    p = table.partitions()[0]
    names = sorted(f.rsplit("/", 1)[-1] for f in table.visible_files(p))
    assert len(names) == 3 and names[-1].startswith(tables.COMPACT_PREFIX)
    assert _checksum(table.read_range())[0] == 12


def test_a_reader_between_manifest_and_delete_sees_each_row_once(tmp_path, monkeypatch):
    """A compaction that crashed after its manifest: the replaced files are still there, and ignored."""
    table = HourlyTable(str(tmp_path / "t"), "received_at")
    n = _history(table, hours=1, files_per_hour=4)
    originals = table.visible_files(table.partitions()[0])
    with monkeypatch.context() as m:
        m.setattr(table, "_delete", lambda path: 0)  # the crash: nothing deleted
        table.compact(timedelta(minutes=5), T0 + timedelta(hours=2))
    assert all(table.fs.get_file_info(f).type.name == "File" for f in originals)  # left behind
    assert _checksum(table.read_range())[0] == n
    report = table.compact(timedelta(minutes=5), T0 + timedelta(hours=2))  # the next run sweeps them
    assert report.files_deleted == len(originals) and _checksum(table.read_range())[0] == n


@pytest.mark.parametrize("days", [1, 3, 7])
def test_retention_deletes_exactly_the_hours_older_than_the_setting(tmp_path, days):
    table = HourlyTable(str(tmp_path / "t"), "received_at")
    _history(table, hours=24 * 10, files_per_hour=1)
    now = T0 + timedelta(days=10)
    dropped = table.expire(timedelta(days=days), now)
    assert dropped == 24 * (10 - days)
    starts = [p.start for p in table.partitions()]
    assert min(starts) == now - timedelta(days=days) and len(starts) == 24 * days
    assert len(list((tmp_path / "t").glob("date=*"))) == days  # emptied days are removed too
