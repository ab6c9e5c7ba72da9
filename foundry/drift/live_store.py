"""Live traffic the monitor received, on storage: the raw rows a retrain learns from.

An ``HourlyTable`` (``foundry.storage.tables``: hour partitions by write time, compacted, expired)::

    <storage.monitoring>/<model>/live/date=YYYY-MM-DD/hour=HH/...

Columns: ``request_id``, ``received_at`` (UTC), ``model_version``, ``prediction`` (as a string, or a
float for regression), and every raw feature as the request sent it. Labels are not duplicated
here: ``POST /feedback`` stores them (``foundry.serving.feedback``); a retrain joins the two on
``request_id``.

The monitor buffers the rows it takes and writes them every ``storage.tables.live_flush_s`` in one
file (``LiveWriter``), so a monitor that dies loses at most that much of the live history (the
windows are rebuilt from what was written); rows are de-duplicated by ``request_id`` on read.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import pandas as pd
import pyarrow as pa

from foundry.storage.layout import StorageLayout
from foundry.storage.tables import HourlyTable

log = logging.getLogger(__name__)


def live_uri(storage_root: str, model: str) -> str:
    return StorageLayout(storage_root).live_rows(model)


class LiveStore:
    def __init__(self, storage_root: str, model: str):
        self.uri = live_uri(storage_root, model)
        self.table = HourlyTable(self.uri, "received_at")

    def write(self, frame: pd.DataFrame, now: datetime | None = None) -> str:
        return self.table.append(pa.Table.from_pandas(frame, preserve_index=False), now)

    def read_recent(self, max_rows: int, where=None) -> pd.DataFrame:
        """The newest rows (at most ``max_rows`` after ``where`` filters them), oldest first, de-duplicated.

        Reads hour partitions from the newest backwards and stops once enough rows are in, so the
        cost follows ``max_rows``, not the age of the deployment.
        """
        frames, have = [], 0
        for table in self.table.newest_first():
            frame = table.to_pandas()
            if where is not None:
                frame = where(frame)
            frames.append(frame)
            have += len(frame)
            if have >= max_rows:
                break
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, ignore_index=True).drop_duplicates("request_id", keep="last")
        return out.sort_values("received_at", kind="stable").tail(max_rows).reset_index(drop=True)

    def read_range(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        table = self.table.read_range(since, until)
        return pd.DataFrame() if table is None else table.to_pandas()


class LiveWriter:
    """The monitor's write buffer: rows go to storage in one file per ``flush_s``, never per batch.

    Bounded (``max_rows``): when storage is down for long, the oldest buffered rows are dropped and
    counted (``dropped``), so the monitor's memory stays flat. Thread-safe: ``add`` from ``ingest``,
    ``flush`` from the loop thread."""

    def __init__(self, store: LiveStore, flush_s: float, max_rows: int, clock):
        self.store = store
        self.flush_s = flush_s
        self.max_rows = max_rows
        self.clock = clock
        self._frames: list[pd.DataFrame] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._io = threading.Lock()  # one flush at a time
        self._last = clock()
        self.written = 0
        self.files = 0
        self.dropped = 0

    def add(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self._frames.append(frame)
            self._rows += len(frame)
            while self._rows > self.max_rows and len(self._frames) > 1:
                old = self._frames.pop(0)
                self._rows -= len(old)
                self.dropped += len(old)

    @property
    def buffered(self) -> int:
        return self._rows

    def flush(self, force: bool = False) -> int:
        """Write what is buffered when ``flush_s`` has passed (or ``force``); returns rows written."""
        with self._io:
            if not force and self.clock() - self._last < self.flush_s:
                return 0
            with self._lock:
                frames, self._frames, self._rows = self._frames, [], 0
            self._last = self.clock()
            if not frames:
                return 0
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            try:
                self.store.write(frame)
            except Exception:
                with self._lock:  # put them back (the bound still holds on the next add)
                    self._frames[:0] = frames
                    self._rows += len(frame)
                raise
            self.written += len(frame)
            self.files += 1
            return len(frame)
