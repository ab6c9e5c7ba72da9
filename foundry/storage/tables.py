"""Append-heavy, time-ranged tables on any pyarrow filesystem: live rows, labels and events.

Why not one file per write: a service writes for weeks. At 300 requests a second, one file per
request (or per sink flush) is hundreds of thousands of files a day, every read lists them all, and
on object storage every listing and move is a paid round trip. So each table is::

    <base>/date=YYYY-MM-DD/hour=HH/<HHMMSSffffff>-<uuid>.parquet     one file per flushed batch
    <base>/date=YYYY-MM-DD/hour=HH/_compact-<uuid>.parquet           the merged file (see below)
    <base>/date=YYYY-MM-DD/hour=HH/_compacted.json                   which files the merged one replaces

- **Partitioned by write time (UTC hour).** A row's own time (``time_column``) is at most
  ``slack`` before its file's write time (writers flush at least that often), so a range read
  lists only the hours of the range (plus ``slack``) and then filters rows on their own time: its
  cost follows the range, not the length of the history.
- **Compaction without a window of duplicates or gaps.** ``compact`` merges the files of a partition
  older than ``min_age`` into ``_compact-<uuid>.parquet`` (ignored by readers until named), then
  atomically writes ``_compacted.json`` naming it and the files it replaces, then deletes those.
  Readers take the manifest's file plus every data file it does not name, so at every instant each
  row is read exactly once; a reader that loses a race with the delete lists the partition again.
  Files a crash left behind (an unnamed ``_compact`` file, replaced files) are swept by the next run.
- **Retention** drops whole hour partitions that ended before the cut-off.

Hand-written on pyarrow rather than a table format (Delta Lake, Iceberg): the data is append-only
and never updated, readers need only hour pruning, and each commit of a table format adds a log
file of its own; the three operations above are about 200 lines with no new dependency, and work the
same on a local disk and on a bucket. README: "Stores that run for weeks".
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from foundry import storage

log = logging.getLogger(__name__)

MANIFEST = "_compacted.json"
COMPACT_PREFIX = "_compact-"
HOUR = timedelta(hours=1)


def _utc(at: datetime | None) -> datetime:
    at = at or datetime.now(timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Partition:
    path: str
    start: datetime  # the hour's start (UTC)

    @property
    def end(self) -> datetime:
        return self.start + HOUR


@dataclass
class CompactionReport:
    partitions: int = 0
    files_merged: int = 0
    rows: int = 0
    files_deleted: int = 0


class HourlyTable:
    """One table; ``time_column`` is the rows' own UTC time (a pyarrow timestamp column)."""

    def __init__(self, uri: str, time_column: str, slack: timedelta = timedelta(minutes=5)):
        self.uri = uri
        self.time_column = time_column
        self.slack = slack
        self.fs, self.base = storage.resolve(uri)

    # ---- writing ----------------------------------------------------------------------------------
    def append(self, table: pa.Table, now: datetime | None = None) -> str:
        """Write one batch as one file in the hour partition of ``now`` (atomically); returns its path."""
        now = _utc(now)
        folder = self._folder(now)
        name = f"{now:%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
        self._write(folder, name, table)
        return storage.join(folder, name)

    def _folder(self, at: datetime) -> str:
        return storage.join(self.base, f"date={at:%Y-%m-%d}", f"hour={at:%H}")

    def _write(self, folder: str, name: str, table: pa.Table) -> None:
        """Atomically (``storage.write_table_atomic``): readers list whole files only. On an object store
        that costs a copy per batch, accepted: a PUT cut off half-way must not land under a data name,
        where every reader of the hour would fail on it."""
        storage.write_table_atomic(self.fs, storage.join(folder, name), table)

    # ---- listing ----------------------------------------------------------------------------------
    def partitions(self, since: datetime | None = None, until: datetime | None = None) -> list[Partition]:
        """Hour partitions overlapping [since, until), oldest first; lists only the days in range."""
        if not storage.exists(self.fs, self.base):
            return []
        out = []
        for day in self._children(self.base, "date="):
            try:
                date = datetime.strptime(day.base_name[5:], "%Y-%m-%d").replace(tzinfo=timezone.utc)
            except ValueError:
                continue
            if (since and date + timedelta(days=1) <= since) or (until and date >= until):
                continue
            for hour in self._children(day.path, "hour="):
                try:
                    start = date + timedelta(hours=int(hour.base_name[5:]))
                except ValueError:
                    continue
                if (since and start + HOUR <= since) or (until and start >= until):
                    continue
                out.append(Partition(hour.path, start))
        return sorted(out, key=lambda p: p.start)

    def _children(self, path: str, prefix: str) -> list[pafs.FileInfo]:
        return [f for f in self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
                if f.type == pafs.FileType.Directory and f.base_name.startswith(prefix)]

    def visible_files(self, partition: Partition) -> list[str]:
        """The files a reader takes: the manifest's merged file plus every data file it does not replace."""
        names = {f.base_name: f.path for f in self.fs.get_file_info(pafs.FileSelector(partition.path,
                                                                                      allow_not_found=True))
                 if f.type == pafs.FileType.File}
        manifest = self._manifest(partition, names)
        replaced = set(manifest.get("replaces", []))
        files = [p for n, p in names.items() if n.endswith(".parquet") and not n.startswith((".", "_"))
                 and n not in replaced]
        merged = manifest.get("file")
        if merged and merged in names:
            files.append(names[merged])
        return sorted(files)

    def _manifest(self, partition: Partition, names: dict[str, str]) -> dict:
        if MANIFEST not in names:
            return {}
        try:
            return json.loads(storage.read_bytes(self.fs, names[MANIFEST]))
        except (OSError, ValueError) as exc:
            raise OSError(f"unreadable compaction manifest {names[MANIFEST]}: {exc}") from exc

    # ---- reading ----------------------------------------------------------------------------------
    def read_partition(self, partition: Partition, columns: list[str] | None = None) -> pa.Table | None:
        """Every row of one partition, exactly once; None if it holds no rows."""
        for attempt in range(5):
            files = self.visible_files(partition)
            if not files:
                return None
            try:
                tables = [pq.read_table(f, filesystem=self.fs, columns=columns) for f in files]
                return pa.concat_tables(tables, promote_options="default")
            except FileNotFoundError:  # a compaction replaced a file between the listing and the read
                time.sleep(0.05 * (attempt + 1))
        raise OSError(f"{partition.path} kept changing while it was read")

    def read_range(self, since: datetime | None = None, until: datetime | None = None,
                   columns: list[str] | None = None) -> pa.Table | None:
        """Rows whose own time is in [since, until); reads only the hours of the range (plus ``slack``)."""
        since = _utc(since) if since else None
        until = _utc(until) if until else None
        tables = [t for p in self.partitions(since, until + self.slack if until else None)
                  if (t := self.read_partition(p, columns)) is not None]
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="default")
        times = table[self.time_column]
        mask = None
        if since is not None:
            mask = pc.greater_equal(times, pa.scalar(since, times.type))
        if until is not None:
            upper = pc.less(times, pa.scalar(until, times.type))
            mask = upper if mask is None else pc.and_(mask, upper)
        return table if mask is None else table.filter(mask)

    def newest_first(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Partitions' rows from the newest hour backwards (callers stop when they have enough)."""
        for p in reversed(self.partitions()):
            t = self.read_partition(p, columns)
            if t is not None:
                yield t

    # ---- compaction and retention ---------------------------------------------------------------------
    def compact(self, min_age: timedelta = timedelta(minutes=5), now: datetime | None = None,
                since: datetime | None = None) -> CompactionReport:
        """Merge each partition's files older than ``min_age`` (by their write time) into one file."""
        now = _utc(now)
        report = CompactionReport()
        for p in self.partitions(since=since):
            if p.start > now - min_age:
                continue
            self._compact_partition(p, now - min_age, report)
        return report

    def _compact_partition(self, p: Partition, cutoff: datetime, report: CompactionReport) -> None:
        infos = [f for f in self.fs.get_file_info(pafs.FileSelector(p.path, allow_not_found=True))
                 if f.type == pafs.FileType.File]
        names = {f.base_name: f.path for f in infos}
        manifest = self._manifest(p, names)
        replaced = set(manifest.get("replaces", []))
        merged = manifest.get("file")
        fresh = [n for n in names if n.endswith(".parquet") and not n.startswith((".", "_")) and n not in replaced
                 and self._written_at(p, n) <= cutoff]
        leftovers = [n for n in replaced if n in names] + [
            n for n in names if n.startswith(COMPACT_PREFIX) and n != merged
            and self._age_ok(infos, n, cutoff)]
        if fresh and (merged in names or len(fresh) > 1):
            inputs = ([merged] if merged in names else []) + sorted(fresh)
            table = pa.concat_tables([pq.read_table(names[n], filesystem=self.fs) for n in inputs],
                                     promote_options="default")
            new_name = f"{COMPACT_PREFIX}{uuid.uuid4().hex}.parquet"
            with self.fs.open_output_stream(storage.join(p.path, new_name)) as out:
                pq.write_table(table, out)
            storage.write_bytes_atomic(self.fs, storage.join(p.path, MANIFEST), json.dumps(
                {"file": new_name, "replaces": sorted(set(inputs) | replaced), "rows": table.num_rows}).encode())
            leftovers += inputs
            report.partitions += 1
            report.files_merged += len(inputs)
            report.rows += table.num_rows
        for n in set(leftovers):
            report.files_deleted += self._delete(names[n])

    def _delete(self, path: str) -> int:
        try:
            self.fs.delete_file(path)
            return 1
        except FileNotFoundError:
            return 0

    @staticmethod
    def _written_at(p: Partition, name: str) -> datetime:
        try:
            t = datetime.strptime(name[:12], "%H%M%S%f").time()
        except ValueError:
            return p.end
        return datetime.combine(p.start.date(), t, tzinfo=timezone.utc)

    @staticmethod
    def _age_ok(infos: list[pafs.FileInfo], name: str, cutoff: datetime) -> bool:
        """An unnamed merged file is swept only once old: it may be a running compaction's."""
        info = next(f for f in infos if f.base_name == name)
        return info.mtime is None or _utc(info.mtime) <= cutoff

    def expire(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Delete every hour partition that ended before ``now - older_than``; returns how many."""
        cutoff = _utc(now) - older_than
        dropped = 0
        for p in self.partitions(until=cutoff):
            if p.end <= cutoff:
                self.fs.delete_dir(p.path)
                dropped += 1
        for day in self._children(self.base, "date=") if storage.exists(self.fs, self.base) else []:
            if not self.fs.get_file_info(pafs.FileSelector(day.path)):
                self.fs.delete_dir(day.path)
        return dropped

    def file_count(self) -> int:
        """Stored files (data, merged and manifests): what a listing of the whole table costs."""
        if not storage.exists(self.fs, self.base):
            return 0
        return sum(1 for f in self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True))
                   if f.type == pafs.FileType.File)


__all__ = ["COMPACT_PREFIX", "MANIFEST", "CompactionReport", "HourlyTable", "Partition"]
