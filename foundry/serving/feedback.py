"""Ground-truth labels sent to POST /feedback, stored where the drift monitor and retraining read them.

Layout (Hive-partitioned Parquet, readable by pyarrow.dataset, pandas and Ray Data alike;
``storage.feedback`` is ``<storage.root>/feedback``)::

    <storage.feedback>/<model>/date=YYYY-MM-DD/<HHMMSS>-<uuid>.parquet

Columns: ``request_id`` (from /predict), ``label`` (a class label as a string, or a float for
regression), ``received_at`` (UTC), ``served_version`` (the version the replica served when the
label arrived; the version that made the prediction is joined via ``request_id`` later).

Why one file per request and not a buffer: a 200 from /feedback then means the labels are on
storage, so a replica that is restarted, scaled down or swapped loses nothing, and writers never
share a file (no locks, works on object stores that cannot append). Clients should therefore send
labels in batches (up to ``serve.limits.max_rows`` per request); compacting the small files is a
job for the reader's side. Each file appears atomically (written under a dot-name, then moved),
and readers skip dot-files, so a reader never sees half a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from foundry import storage
from foundry.config import StorageConfig, Task


def feedback_uri(storage_root: str, model: str) -> str:
    return storage.join(storage.normalize(StorageConfig(root=storage_root).feedback), model)


class FeedbackStore:
    def __init__(self, storage_root: str, model: str, task: Task):
        self.uri = feedback_uri(storage_root, model)
        self._fs, self._base = storage.resolve(self.uri)
        self._label_type = pa.float64() if task is Task.regression else pa.string()

    def write(self, labels: Sequence[Mapping[str, Any]], served_version: str | None,
              now: datetime | None = None) -> str:
        """Store one request's labels as one file; returns its path. Blocking: call it off the event loop."""
        now = now or datetime.now(timezone.utc)
        table = pa.table({
            "request_id": pa.array([item["request_id"] for item in labels], pa.string()),
            "label": pa.array([item["label"] for item in labels], self._label_type),
            "received_at": pa.array([now] * len(labels), pa.timestamp("ms", tz="UTC")),
            "served_version": pa.array([served_version] * len(labels), pa.string()),
        })
        folder = storage.join(self._base, f"date={now:%Y-%m-%d}")
        name = f"{now:%H%M%S}-{uuid.uuid4().hex}.parquet"
        self._fs.create_dir(folder, recursive=True)
        tmp = storage.join(folder, f".tmp-{name}")
        with self._fs.open_output_stream(tmp) as out:
            pq.write_table(table, out)
        self._fs.move(tmp, storage.join(folder, name))
        return storage.join(folder, name)


def read_feedback(storage_root: str, model: str) -> pd.DataFrame:
    """Every stored label of ``model`` (empty frame if none yet), with the ``date`` partition column."""
    fs, base = storage.resolve(feedback_uri(storage_root, model))
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return pd.DataFrame(columns=["request_id", "label", "received_at", "served_version", "date"])
    dataset = pads.dataset(base, filesystem=fs, format="parquet", partitioning="hive")
    return dataset.to_table().to_pandas()
