"""Live traffic the monitor received, on storage: the raw rows a retrain learns from.

Layout (Hive-partitioned Parquet, one file per ingested batch, written atomically)::

    <storage.monitoring>/<model>/live/date=YYYY-MM-DD/hour=HH/<HHMMSSffffff>-<uuid>.parquet

Columns: ``request_id``, ``received_at`` (UTC), ``model_version``, ``prediction`` (as a string, or a
float for regression), and every raw feature as the request sent it. Labels are not duplicated
here: ``POST /feedback`` already stores them durably (``foundry.serving.feedback``) before it
answers; a retrain joins the two on ``request_id``.

A batch is written before the monitor acknowledges it, so an actor restart loses nothing that was
acknowledged (a batch in flight when it died is retried by Ray, and duplicates are dropped on read
by ``request_id``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from foundry import storage
from foundry.config import StorageConfig


def live_uri(storage_root: str, model: str) -> str:
    return storage.join(storage.normalize(StorageConfig(root=storage_root).monitoring), model, "live")


class LiveStore:
    def __init__(self, storage_root: str, model: str):
        self.uri = live_uri(storage_root, model)
        self.fs, self.base = storage.resolve(self.uri)

    def write(self, frame: pd.DataFrame, now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        folder = storage.join(self.base, f"date={now:%Y-%m-%d}", f"hour={now:%H}")
        name = f"{now:%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
        self.fs.create_dir(folder, recursive=True)
        tmp = storage.join(folder, f".tmp-{name}")
        with self.fs.open_output_stream(tmp) as out:
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
        self.fs.move(tmp, storage.join(folder, name))
        return storage.join(folder, name)

    def _partitions(self) -> list[str]:
        """Hour folders, newest first."""
        if self.fs.get_file_info(self.base).type == pafs.FileType.NotFound:
            return []
        hours = [f.path for f in self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True))
                 if f.type == pafs.FileType.Directory and f.base_name.startswith("hour=")]
        return sorted(hours, key=lambda p: p.rsplit("date=", 1)[-1], reverse=True)

    def read_recent(self, max_rows: int, where=None) -> pd.DataFrame:
        """The newest rows (at most ``max_rows`` after ``where`` filters them), oldest first, de-duplicated.

        Reads hour partitions from the newest backwards and stops once enough rows are in, so the
        cost follows ``max_rows``, not the age of the deployment.
        """
        frames, have = [], 0
        for folder in self._partitions():
            files = [f.path for f in self.fs.get_file_info(pafs.FileSelector(folder))
                     if f.type == pafs.FileType.File and not f.base_name.startswith(".")]
            if not files:
                continue
            frame = pads.dataset(files, filesystem=self.fs, format="parquet").to_table().to_pandas()
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
